"""`serve --row N --emit ENGINE` and `explain ... --emit ENGINE`: the pools of a serve row (or of
the one layout explain shows) launched on an engine, the engine's benchmark at the row's workload
and the sidecar `planner calibrate` reads its result file with (planner.commands.emit.core).

Engines: `vllm`, `sglang`, `trtllm` (the names `--engine` uses), `dynamo` over the row's engine
(the `--engine` profile the row was planned with when it names one of those, else vLLM, said in
the notes), and on TPU slices `vllm-tpu` and `jetstream`.
"""

from __future__ import annotations

import dataclasses
import math

from planner.commands.emit import dynamo, sglang, tpu, trtllm, vllm
from planner.commands.emit.choose import heads_reason, launch, runnable
from planner.commands.emit.core import (
    DISAGGREGATED_SIDECAR,
    Context,
    Emission,
    Engine,
    Pool,
    Step,
    amd,
    bench_of,
    sidecar,
    whole_counts,
)
from planner.commands.emit.expected import expected_figures
from planner.commands.serve.modes import Mode
from planner.commands.serve.steady_state import DEFAULT_TOKEN_BUDGET
from planner.errors import UsageError
from planner.specs.engine_layouts import ENGINE_LAYOUTS
from planner.specs.hardware import Torus
from planner.specs.plan import Plan, Workload

BASES = {e.name: e for e in (vllm.ENGINE, sglang.ENGINE, trtllm.ENGINE)}
TPU = {e.name: e for e in (tpu.VLLM_TPU, tpu.JETSTREAM)}
ENGINES = (*BASES, "dynamo", *TPU)
DYNAMO_DEFAULT = "vllm"  # dynamo's workers when the row's engine profile names no engine


def check(name: str, plan: Plan, flag: str = "--emit") -> None:
    """A usage error for an engine that is not one, or not for the plan's chips."""
    if name not in ENGINES:
        raise UsageError(
            f"{flag}: expected one of {', '.join(ENGINES)}, got {name!r}\n  hint: GPU engines vllm, sglang, trtllm, "
            "dynamo; TPU engines vllm-tpu, jetstream"
        )
    on_tpu = isinstance(plan.cluster.topology, Torus)
    if on_tpu and name not in TPU:
        raise UsageError(
            f"{flag} {name}: {plan.cluster.name} is a TPU cluster and {name} runs on GPUs\n  hint: --emit vllm-tpu "
            "or --emit jetstream"
        )
    if _nvidia_only(name) and amd(plan):
        raise UsageError(
            f"{flag} {name}: {plan.cluster.name} is an AMD GPU cluster and TensorRT-LLM runs on NVIDIA GPUs only\n"
            "  hint: --emit vllm or --emit sglang (both run on ROCm)"
        )
    if not on_tpu and name in TPU:
        raise UsageError(
            f"{flag} {name}: {plan.cluster.name} is a GPU cluster and {name} runs on TPU slices\n  hint: --emit "
            "vllm, sglang, trtllm or dynamo"
        )


def _nvidia_only(name: str) -> bool:
    """Whether the engine table says `name` runs on NVIDIA GPUs only (TensorRT-LLM)."""
    return name in ENGINE_LAYOUTS and ENGINE_LAYOUTS[name].nvidia_only


def engine_for(name: str, plan: Plan) -> tuple[Engine, str]:
    """The engine record, and a note where dynamo's workers take a stated default."""
    check(name, plan)
    if name in TPU:
        return TPU[name], ""
    if name != "dynamo":
        return BASES[name], ""
    base, note = plan.cluster.engine, ""
    if _nvidia_only(base) and amd(plan):
        raise UsageError(
            f"--emit dynamo: the row's engine profile is trtllm and {plan.cluster.name} is an AMD GPU cluster: "
            "TensorRT-LLM runs on NVIDIA GPUs only\n  hint: --emit vllm or --emit sglang, or plan with --engine "
            "vllm or --engine sglang for Dynamo's workers"
        )
    if base not in BASES:
        note = (
            f"dynamo runs {BASES[DYNAMO_DEFAULT].label} workers: the row's engine profile "
            f"({base or 'the cluster file'}'s constants) names no engine; plan with --engine sglang or "
            "--engine trtllm for those workers"
        )
        base = DYNAMO_DEFAULT
    return dynamo.over(BASES[base]), note


def _budget(tokens: int) -> int:
    """Tokens one step batches: the row's prefill pass in one, at least the engines' default."""
    return max(DEFAULT_TOKEN_BUDGET, tokens)


def _stage_pool(plan: Plan, stage, role: str, count: float, steps: tuple, running: int, tokens: int) -> Pool:
    return Pool(
        role=role,
        count=count,
        chips=stage.chips,
        stages=1,
        ffn=stage.ffn,
        attention=stage.attention,
        experts=stage.experts,
        weights=stage.weights,
        kv_cache=stage.kv_cache,
        running=running,
        batched_tokens=_budget(tokens),
        steps=steps,
    )


def _stage_step(plan: Plan, stage) -> Step:
    w = plan.workload
    work = Workload(
        input_tokens=w.input_tokens, output_tokens=w.output_tokens, context=stage.context, routing=w.routing
    )
    return Step(
        phase=stage.phase.value,
        candidate=stage.candidate,
        batch=stage.batch,
        workload=work,
        step_s=stage.step_latency_s,
    )


def serve_pools(plan: Plan, d) -> tuple[tuple[Pool, ...], tuple[str, ...]]:
    """The pools of serve deployment `d`, and notes on what the engine-neutral pools leave out."""
    I = plan.workload.input_tokens
    prefill_tokens = d.prefill.batch * I  # one prefill pass of the row
    pre, dec = _stage_step(plan, d.prefill), _stage_step(plan, d.decode)
    if d.mode is Mode.DISAGGREGATED:
        ratio = d.prefill_pools_per_decode_pool or 1.0
        pools = (
            _stage_pool(plan, d.prefill, "prefill", ratio, (pre,), d.prefill.batch, prefill_tokens),
            _stage_pool(plan, d.decode, "decode", 1.0, (dec,), d.decode.batch, d.decode.batch),
        )
        return pools, (_counts(ratio),)
    notes = []
    if pre.layout != dec.layout:
        notes.append(
            f"the row's prefill layout ({pre.layout}) differs from its decode layout ({dec.layout}): one server runs "
            "one layout for both; `planner serve --ffn/--attention/--experts` with one value each plans rows an "
            "engine runs as they are"
        )
    if d.mode is Mode.STATIC:
        notes.append("engines schedule a running batch: the row's static batch is the server's running sequences")
    pool = _stage_pool(plan, d.decode, "server", 1.0, (pre, dec), d.decode.batch, prefill_tokens)
    return (pool,), tuple(notes)


def _counts(ratio: float) -> str:
    """Whole pool counts nearest the row's prefill-to-decode ratio, up to 8 decode pools."""
    best = whole_counts(ratio)
    pools = lambda n: f"{n} pool{'s' * (n != 1)}"  # noqa: E731
    return (
        f"the row runs {ratio:.3g} prefill pools per decode pool: launch {pools(best[0])} of prefill and "
        f"{pools(best[1])} of decode (ratio {best[0] / best[1]:.3g}); the benchmark's concurrency is the running "
        f"batch of {'every decode pool' if best[1] != 1 else 'the decode pool'}"
    )


def explain_pools(plan: Plan, ev) -> tuple[tuple[Pool, ...], tuple[str, ...]]:
    """The one pool of a layout `explain` shows (evaluation `ev`, its first point)."""
    c = ev.candidate
    batch = int(ev.batch[0])
    phase = c.phase.value
    step = Step(phase=phase, candidate=c, batch=batch, workload=ev.workload, step_s=float(ev.step_s[0]))
    tokens = batch * plan.workload.input_tokens if phase == "prefill" else batch
    pool = Pool(
        role="server",
        count=1.0,
        chips=c.mesh.chips * c.stages,
        stages=c.stages,
        ffn=c.ffn.name,
        attention=c.attention.name,
        experts=c.experts.name if c.experts else "",
        weights=c.weights.label,
        kv_cache=c.kv_cache.label,
        running=batch,
        batched_tokens=_budget(tokens),
        steps=(step,),
    )
    note = (
        f"explain shows the {phase} layout: the server runs it for both phases; `planner serve --row N --emit` "
        "launches a whole request's pools"
    )
    return (pool,), (note,)


def emit_pools(plan: Plan, pools: tuple[Pool, ...], notes: tuple[str, ...], name: str, tag: str) -> Emission:
    """The emission of `pools` on engine `name`; `tag` names the result file (row3, explain)."""
    engine, note = engine_for(name, plan)
    w = plan.workload
    ctx = Context(
        plan=plan,
        disaggregated=any(p.role == "prefill" for p in pools),
        input_tokens=w.input_tokens,
        output_tokens=w.output_tokens,
        draft_tokens=w.decode_tokens - 1,
    )
    runs = tuple(runnable(p, engine.table, plan) for p in pools)
    starts = not any(heads_reason(plan, r.attention, r.per_stage) for r in runs)  # else no prediction
    launches = tuple(launch(engine, p, r, ctx) for p, r in zip(pools, runs, strict=True))
    if ctx.disaggregated:
        whole = dict(zip(("prefill", "decode"), whole_counts(pools[0].count), strict=True))
        launches = tuple(dataclasses.replace(x, instances=whole.get(x.role, 1)) for x in launches)
    launches, front_notes = engine.front(launches, ctx)
    decode_pools = whole_counts(pools[0].count)[1] if ctx.disaggregated else 1
    concurrency = max(1, math.ceil(pools[-1].running)) * decode_pools  # every decode pool's running batch
    bench, result_file = engine.benchmark(bench_of(engine, tag, ctx, concurrency))
    extra = [] if ctx.draft_tokens else ["the row plans no speculative decoding: no draft-model flags"]
    if ctx.disaggregated and engine.reader:
        extra.append(DISAGGREGATED_SIDECAR)
    reader, side = engine.reader, sidecar(engine, ctx, pools, runs, concurrency)
    unread = ""
    if any(p.stages > 1 for p in pools) and reader:
        reader, side = "", ""
        unread = "pipeline stages: no sidecar, as `planner calibrate` predicts serving runs of one stage per pool"
        extra.append(
            "pipeline stages: `planner calibrate` predicts serving runs of one stage per pool, so no sidecar is "
            "written for this run's result file"
        )
    overlap = any(r.two_batch_overlap for r in runs)
    if overlap and side:
        extra.append(
            "two-batch overlap (+tbo): a sidecar has no key for it and the steady state does not model it, so "
            "`planner calibrate` reads this result as the layout without the overlap; no predicted figure is given "
            "for it"
        )
    return Emission(
        engine=engine.name,
        pinned=engine.pinned,
        launches=launches,
        benchmark=bench.argv,
        result_file=result_file,
        sidecar=side,
        notes=tuple(n for n in (note, *notes, *front_notes, *bench.notes, *extra) if n),
        version=engine.version,
        benchmark_flags=bench.flags,
        reader=reader,
        over=engine.over,
        unread=unread,
        expected=expected_figures(plan, side, concurrency)
        if side and not ctx.draft_tokens and starts and not overlap
        else None,
    )


def emit_row(result, d, engine: str, row: int) -> Emission:
    """What realises serve deployment `d` (row `row` of `result`) on `engine`."""
    plan = result.request.plan
    check(engine, plan)
    pools, notes = serve_pools(plan, d)
    return emit_pools(plan, pools, notes, engine, f"row{row}")


def emit_explained(plan: Plan, ev, engine: str, row: int | None) -> Emission:
    """What realises the layout `explain` shows (evaluation `ev`) on `engine`."""
    check(engine, plan)
    pools, notes = explain_pools(plan, ev)
    return emit_pools(plan, pools, notes, engine, f"plan-row{row}" if row is not None else "explain")
