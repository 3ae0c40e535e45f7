"""Serving runs against the planner (`planner calibrate` on a `planner-serving/1` file): each run
predicted by the steady state at its concurrency (`planner.commands.serve.steady_state` on the
serve pools) with its engine's profile (planner.commands.calibrate.engines fits them), MTP runs
with speculation (`planner.commands.serve.curve.speculative_steps`).

A run's layout is pinned as the engine ran it: tensor parallelism over a worker's GPUs is FFN
`ws1d` with attention `heads`; expert parallelism (ep > 1) the `ep` expert layout, else the
experts tensor-parallel (`tp`). DP attention (`dp_attention`) runs attention batch-sharded with
the dense FFN replicated beside it: FFN `dp`, attention `batch` (TensorRT-LLM's DeepSeek model
gives its dense MLP a tensor-parallel size of 1 under attention DP; SGLang's production commands
set `--moe-dense-tp-size 1`; docs/moe-notes.md). A DP-attention prefill pool schedules a
pass per attention rank: its passes hold tp times the token budget.

Disaggregated runs: the concurrency is spread over the decode workers, each fed by
prefill workers / decode workers prefill pools. Maximum-throughput runs: the best output
tokens/s per GPU of the steady state over every running batch that fits (all requests queued,
the largest batches run), under the chunked policy; a MoE run whose expert-parallel size the
source does not state takes the fastest expert and attention layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from planner.commands.serve.curve import Speculation, grid, speculative_steps
from planner.commands.serve.pools import pools
from planner.commands.serve.steady_state import (
    DEFAULT_TOKEN_BUDGET,
    Policy,
    colocated,
    disaggregated,
    max_running,
    prompts_per_pass,
)
from planner.config import load_plan
from planner.config.engines import DEFAULT_GPU_ENGINE
from planner.config.serving_runs import Pool, ServingMeasurements, ServingRun
from planner.cost.network import transfer_seconds
from planner.errors import InfeasibleError
from planner.specs.engine import ENGINES, EngineProfile
from planner.specs.formats import KvFormat
from planner.specs.hardware import Torus
from planner.units import fmt_bytes

METRICS = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("output_tok_s_per_gpu", "output tok/s per GPU"))


def engine_family(text: str) -> str | None:
    """The profile an engine's free-text name belongs to (vllm, sglang, trtllm; Dynamo over SGLang
    or TensorRT-LLM is that engine's), None if unknown."""
    t = text.lower()
    if "sglang" in t:
        return "sglang"
    if "tensorrt" in t or "trt" in t:
        return "trtllm"
    return "vllm" if "vllm" in t else None


def engine_of(run: ServingRun) -> str:
    """The engine profile a run is predicted with: its engine's (engine_family), else a GPU's
    default profile (planner.config.engines.DEFAULT_GPU_ENGINE), which `unknown_engine` says."""
    return engine_family(run.engine) or DEFAULT_GPU_ENGINE


def unknown_engine(run: ServingRun) -> str:
    """The note of a run whose engine is none of ENGINES ("" if it is one)."""
    if engine_family(run.engine) is not None:
        return ""
    return f"engine {run.engine!r} is none of {', '.join(ENGINES)}: predicted with the {DEFAULT_GPU_ENGINE} profile"


@dataclass(frozen=True, kw_only=True)
class ServingResidual:
    run: ServingRun
    predicted: dict  # metric -> seconds or tokens/s (max_throughput: output_tok_s_per_gpu only)
    layout: str
    note: str = ""

    def error(self, metric: str) -> float:
        """predicted / measured - 1"""
        return self.predicted[metric] / getattr(self.run, metric) - 1.0


@dataclass(frozen=True, kw_only=True)
class ServingAssessment:
    steady: tuple[ServingResidual, ...]  # steady runs without MTP, in steady state
    apart: tuple[tuple[ServingRun, str], ...]  # listed apart, with the reason
    max_throughput: tuple[ServingResidual, ...]
    fitted: tuple[str, ...] = ()  # lines saying what was fitted (engine profiles, MTP acceptance)
    profiles: tuple[EngineProfile, ...] = ()  # the profiles the runs were predicted with
    shipped: bool = False  # the profiles are configs/engines/'s as shipped (False: fitted here)
    # (a run's engine as its file names it, the profile it was predicted with), once each
    engines: tuple[tuple[str, str], ...] = ()
    speculation: Speculation | None = None  # the MTP runs' (None: listed apart)

    def summary(self, metric: str, rows: tuple[ServingResidual, ...] | None = None) -> tuple[float, ServingResidual]:
        """(median |error|, the worst row) of `metric` over `rows` (default: the steady runs)."""
        rows = self.steady if rows is None else rows
        errors = [abs(r.error(metric)) for r in rows]
        return float(np.median(errors)), max(rows, key=lambda r: abs(r.error(metric)))


def assess_serving(
    data: ServingMeasurements,
    profiles: dict[str, EngineProfile] | None = None,
    speculation: Speculation | None = None,
) -> ServingAssessment:
    """Every run predicted with its engine's profile (`profiles`, by engine_of; None: the
    cluster files' own constants); MTP runs with `speculation` (None: listed apart)."""
    steady, apart, best = [], [], []
    for run in data.runs:
        # a TPU slice keeps its own constants (planner.config.engines.default_engine): no GPU profile
        tpu = isinstance(run.cluster.topology, Torus)
        profile = profiles.get(engine_of(run)) if profiles and not tpu else None
        note = unknown_engine(run) if profiles else ""
        if run.kind == "max_throughput":
            found = _max_throughput(run, profile)
            if found is None:
                apart.append((run, "nothing fits in HBM in the pinned layout at this context"))
            else:
                best.append(_noted(found, note))
        elif (run.spec_decode != "none" and speculation is None) or run.admission_limited:
            reasons = (
                [
                    f"speculative decoding ({run.spec_decode}): not assessed here; `planner serve --concurrency C "
                    "--speculative K` predicts it"
                ]
                if run.spec_decode != "none" and speculation is None
                else []
            ) + ([run.admission_limited] if run.admission_limited else [])
            apart.append((run, "; ".join(reasons)))
        else:
            found = predict_steady(run, profile, speculation if run.spec_decode != "none" else None)
            if all(np.isfinite(v) and v > 0 for v in found.predicted.values()):
                steady.append(_noted(found, note))
            else:
                apart.append((run, does_not_fit(run)))
    if not steady and not best:
        raise InfeasibleError(nothing_to_assess(data.file, apart))
    return ServingAssessment(
        steady=tuple(steady),
        apart=tuple(apart),
        max_throughput=tuple(best),
        profiles=tuple(profiles.values()) if profiles else (),
        speculation=speculation,
        engines=tuple(dict.fromkeys((r.engine, engine_of(r)) for r in data.runs)) if profiles else (),
    )


def nothing_to_assess(file: str, apart) -> str:
    """Why no run is left to assess, each run's reason, and what would help."""
    fit = any(why.startswith("does not fit") for _, why in apart)
    return (
        f"{file}: no run left to assess; every run is listed apart:\n"
        + "\n".join(f"  {run.name} (line {run.line}): {why}" for run, why in apart)
        + (
            "\n  hint: a layout that does not fit needs more GPUs per worker (chips and tp) or a chip with more HBM"
            if fit
            else "\n  hint: give steady runs at a concurrency without speculative decoding (kind: steady, spec_decode: none)"
        )
    )


def does_not_fit(run: ServingRun) -> str:
    """Why a run whose pinned layout holds no running batch is listed apart."""
    pools = (run.decode,) if run.mode == "colocated" else (run.prefill, run.decode)
    gpus = " and ".join(f"{p.chips} GPUs (tp {p.tp}" + (f", ep {p.ep}" if p.ep > 1 else "") + ")" for p in pools)
    return (
        f"does not fit in HBM: {run.model.name} ({run.weights} weights) on {gpus} of "
        f"{fmt_bytes(run.cluster.chip.hbm_bytes)} each "
        f"holds no running batch at {run.input_tokens}+{run.output_tokens} tokens: nothing to predict"
    )


def _noted(r: ServingResidual, note: str) -> ServingResidual:
    return replace(r, note="; ".join(n for n in (r.note, note) if n)) if note else r


def _layout(run: ServingRun, pool: Pool) -> dict:
    if pool.chips == 1:
        return {}  # one chip: every layout is the same one
    moe = run.model.experts is not None
    return {
        "ffn": ("dp",) if pool.dp_attention else ("ws1d",),
        "attention": ("batch",) if pool.dp_attention else ("heads",),
        **({"experts": ("ep",) if pool.ep > 1 else ("tp",)} if moe else {}),
    }


def _pools(run: ServingRun, pool: Pool, batches: tuple[int, ...], layout: dict | None = None, profile=None):
    """The run's pools at `batches` with `profile`'s constants (None: the cluster file's). A
    profile is anything with `apply(cluster) -> cluster`: an EngineProfile, or the constants a
    refine tries (planner.commands.calibrate.refine_serving.Constants)."""
    pinned = None if layout is None else tuple(sorted(layout.items()))
    # everything _plan reads: two files' runs of one name and line are not one plan
    key = (
        run.model.name,
        run.cluster.name,
        run.weights,
        run.kv_cache,
        run.input_tokens,
        run.output_tokens_mean,
        run.model.experts is not None,
        pool,
        batches,
        pinned,
    )
    if key not in _PLANS:
        _PLANS[key] = _plan(run, pool, batches, pinned)
    plan = _PLANS[key]
    if profile is not None:
        plan = replace(plan, cluster=profile.apply(plan.cluster))
    prefill, _, running = pools(plan)
    return plan, prefill, running


_PLANS: dict = {}  # the runs' plans, read once: the engine fits predict each run many times


def _plan(run: ServingRun, pool: Pool, batches: tuple[int, ...], layout: tuple | None):
    return load_plan(
        None,
        model=run.model.name,
        cluster=run.cluster.name,
        chips=(pool.chips,),
        phases=("prefill", "decode"),
        batches=batches,
        weights=(run.weights,),
        kv_cache=(run.kv_cache,),
        input_tokens=run.input_tokens,
        output_tokens=run.output_tokens_mean,
        engine="static-batch",
        **(_layout(run, pool) if layout is None else dict(layout)),
    )


def _name(stage) -> str:
    return f"{stage.ffn}+{stage.attention}" + (f"+{stage.experts}" if stage.experts else "")


def _decode_steps(run, pool, batches, profile, speculation):
    """(plan, prefill pool, decode step seconds over the batches, the running pool): with
    speculation a step verifies K + 1 tokens per sequence and the drafter runs K passes of its
    layers, and the step's seconds per accepted token take the step's place (TPOT = step / A)."""
    plan, prefill, running = _pools(run, pool, batches, profile=profile)
    return plan, prefill, speculative_steps(plan, running, speculation).seconds[0, 0], running


def predict_steady(run: ServingRun, profile=None, speculation: Speculation | None = None) -> ServingResidual:
    """The run predicted at its concurrency; a pinned layout that holds no batch predicts nan
    (no numpy warning): callers list the run apart (does_not_fit)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _predict_steady(run, profile, speculation)


def _predict_steady(run: ServingRun, profile, speculation: Speculation | None) -> ServingResidual:
    policy = next(p for p in Policy if p.label == run.policy)
    I, O = run.input_tokens, run.output_tokens_mean
    budget = DEFAULT_TOKEN_BUDGET
    if run.mode == "colocated":
        k_max = prompts_per_pass(I, budget)
        plan, prefill, step, running = _decode_steps(
            run, run.decode, grid((run.concurrency,), k_max), profile, speculation
        )
        b = np.array(running.batches)
        s = colocated(
            concurrency=np.array([run.concurrency]),
            input_tokens=I,
            output_tokens=O,
            batches=b,
            prefill_pass_s=prefill.seconds[0, 0],
            decode_step_s=step,
            max_running_batch=max_running(b, step),
            chips=run.decode.chips,
            policy=policy,
            token_budget=budget,
        )
        stage = running.get((0, 0, int(np.flatnonzero(b == min(run.concurrency, b.max()))[0])))
        layout = f"{run.decode.chips} GPUs " + (_name(stage) if stage else "nothing fits")
    else:
        per_pool = run.concurrency / run.decode.workers
        pbudget = budget * (run.prefill.tp if run.prefill.dp_attention else 1)
        k_max = prompts_per_pass(I, pbudget)
        batches = grid((max(1, math.ceil(per_pool)),), k_max)
        plan, _, step, running = _decode_steps(run, run.decode, batches, profile, speculation)
        _, prefill, _ = _pools(run, run.prefill, batches, profile=profile)
        per_element = next(k for k in KvFormat if k.label == run.kv_cache).bytes_per_element(run.model.d_head)
        kv_s = float(
            transfer_seconds(
                plan.cluster, float(run.model.kv_bytes_per_token(per_element) * I), run.prefill.chips, run.decode.chips
            )
        )
        b = np.array(running.batches)
        s = disaggregated(
            concurrency=np.array([per_pool]),
            input_tokens=I,
            output_tokens=O,
            batches=b,
            prefill_pass_s=prefill.seconds[0, 0],
            decode_step_s=step,
            max_running_batch=max_running(b, step),
            prefill_chips=run.prefill.chips,
            decode_chips=run.decode.chips,
            kv_transfer_s=kv_s,
            prefill_pools=run.prefill.workers / run.decode.workers,
            token_budget=pbudget,
        )
        d = running.get((0, 0, int(np.flatnonzero(b == max(1, math.ceil(per_pool)))[0])))
        p = prefill.get((0, 0, 0))
        layout = (
            f"prefill {run.prefill.workers}x{run.prefill.chips} GPUs {_name(p) if p else 'nothing fits'}; "
            f"decode {run.decode.workers}x{run.decode.chips} GPUs {_name(d) if d else 'nothing fits'}"
        )
    predicted = {
        "ttft_s": float(s.ttft_s[0]),
        "tpot_s": float(s.tpot_s[0]),
        "output_tok_s_per_gpu": float(s.output_tokens_per_s_per_chip[0]),
    }
    return ServingResidual(run=run, predicted=predicted, layout=layout)


def _max_throughput(run: ServingRun, profile=None) -> ServingResidual | None:
    I, O = run.input_tokens, run.output_tokens
    moe = run.model.experts is not None
    layout = {"ffn": ("ws1d",), "attention": ("heads", "batch")} if moe and run.decode.chips > 1 else None
    k_max = prompts_per_pass(I, DEFAULT_TOKEN_BUDGET)
    _, prefill, running = _pools(run, run.decode, grid((1,), k_max), layout, profile)
    b = np.array(running.batches)
    top = max_running(b, running.seconds[0, 0])
    levels = b[(b >= 1) & (b <= top)]
    if not levels.size or not np.isfinite(prefill.seconds[0, 0, 0]):
        return None
    s = colocated(
        concurrency=levels,
        input_tokens=I,
        output_tokens=O,
        batches=b,
        prefill_pass_s=prefill.seconds[0, 0],
        decode_step_s=running.seconds[0, 0],
        max_running_batch=top,
        chips=run.decode.chips,
        policy=Policy.CHUNKED,
        token_budget=DEFAULT_TOKEN_BUDGET,
    )
    j = int(np.argmax(s.output_tokens_per_s_per_chip))
    stage = running.stage((0, 0, int(np.flatnonzero(b == levels[j])[0])))
    note = "expert-parallel size not stated: the fastest expert and attention layout" if moe else ""
    return ServingResidual(
        run=run,
        predicted={"output_tok_s_per_gpu": float(s.output_tokens_per_s_per_chip[j])},
        layout=f"{run.decode.chips} GPUs {_name(stage)} at batch {int(levels[j])}",
        note=note,
    )
