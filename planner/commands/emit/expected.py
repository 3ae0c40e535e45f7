"""What the planner predicts for an emitted benchmark, exactly as `planner calibrate` will predict
the result file it writes: the sidecar read as a serving run (one pool, closed-loop clients at the
benchmark's concurrency, the engine's prefill policy) and predicted by the steady state with the
engine's shipped profile (planner.commands.calibrate.serving.predict_steady). A serve row's own
TTFT prices its prefill batch as one pass, and an explained step is one step: neither is what a
closed-loop benchmark measures, so the emission shows this figure beside them.

Colocated runs only: a disaggregated run has no sidecar (its pools go in a serving-runs file), and
speculative runs are predicted by `planner serve --concurrency C --speculative K`.
"""

from __future__ import annotations

import math

import yaml

from planner.specs.hardware import Torus
from planner.specs.plan import Plan


def expected_figures(plan: Plan, sidecar: str, concurrency: int) -> dict | None:
    """{ttft_s, tpot_s, output_tok_s_per_gpu, concurrency, policy, profile, layout, unit} or None (no
    sidecar, or nothing fits in the sidecar's layout). On a TPU slice the profile is the cluster's
    own (planner.config.engines.default_engine), and `unit` says "chip"."""
    from planner.commands.calibrate.serving import engine_of, predict_steady
    from planner.config.engines import default_engine, load_engine
    from planner.config.serving_runs import Pool, ServingRun

    if not sidecar:
        return None
    f = yaml.safe_load(sidecar)
    pool = Pool(
        chips=int(f["chips"]),
        workers=1,
        tp=int(f["tp"]),
        ep=int(f.get("ep", 1)),
        dp_attention=bool(f.get("dp_attention", False)),
    )
    w = plan.workload
    run = ServingRun(
        kind="steady",
        name="the emitted benchmark",
        line=0,
        source="",
        engine=str(f["engine"]),
        policy=str(f["policy"]),
        cluster=plan.cluster,
        model=plan.model,
        weights=str(f["weights"]),
        kv_cache=str(f["kv_cache"]),
        mode="colocated",
        prefill=pool,
        decode=pool,
        input_tokens=w.input_tokens,
        output_tokens=w.output_tokens,
        output_tokens_mean=w.output_tokens,
        concurrency=concurrency,
        spec_decode="none",
        ttft_s=None,
        tpot_s=None,
        output_tok_s_per_gpu=0.0,
        admission_limited="",
    )
    tpu = isinstance(plan.cluster.topology, Torus)
    # a TPU slice: its cluster's own constants (no engine profile is fitted to TPU serving)
    profile = default_engine(plan.cluster) if tpu else engine_of(run)
    predicted = predict_steady(run, load_engine(profile))
    layout = predicted.layout.replace(" GPUs ", " chips ", 1) if tpu else predicted.layout
    if not all(math.isfinite(v) and v > 0 for v in predicted.predicted.values()):
        return None
    return {
        **predicted.predicted,
        "concurrency": concurrency,
        "policy": run.policy,
        "profile": profile,
        "layout": layout,
        "unit": "chip" if tpu else "GPU",
        # the profile `planner calibrate` predicts the result with (a TPU slice: its own constants too)
        "calibrate_profile": profile,
    }
