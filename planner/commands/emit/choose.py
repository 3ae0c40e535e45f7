"""The layout a pool runs on one engine (`runnable`): the row's where the engine runs it, else the
engine's (planner.specs.engine_layouts) that fits in HBM, whose tensor-parallel attention divides
the model's heads, and that serves a request in the fewest pool-seconds by the cost model; its
figures beside the row's (`figures`), and one pool's launch (`launch`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from planner.commands.emit.core import Context, Engine, Launch, Pool, Runnable, Step, layout_label
from planner.cost.costmodel import evaluate
from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS
from planner.specs.engine_layouts import ENGINE_LAYOUTS
from planner.specs.formats import KvFormat
from planner.specs.hardware import Switched
from planner.specs.plan import Plan


def _why(pool: Pool, table: str) -> list[str]:
    """Why the engine cannot run the pool as the row planned it: each phase's reasons (prefixed by
    the phase where only that phase's layout has it), and one server for two layouts."""
    t = ENGINE_LAYOUTS[table]
    steps = pool.steps or ()
    per_phase = [(s.phase, t.reasons(*s.parts, pool.kv_cache, pool.weights)) for s in steps]
    if not per_phase:
        return list(t.reasons(pool.ffn, pool.attention, pool.experts, pool.kv_cache, pool.weights))
    common = set(per_phase[0][1]).intersection(*(set(r) for _, r in per_phase[1:]))
    why = [r for r in per_phase[0][1] if r in common]
    why += [f"{phase}: {r}" for phase, reasons in per_phase for r in reasons if r not in common]
    if pool.phases_differ:
        why.append(f"one server runs one layout for both phases: the row's are {pool.layout}")
    return why


def heads_reason(plan: Plan, attention: str, tp: int) -> str:
    """Why tensor-parallel attention (`heads`) over `tp` GPUs does not run the model ("" where it
    does): engines split the query heads evenly over the TP ranks, and the KV heads too, or
    replicate them where TP is a multiple of the KV heads."""
    if attention != "heads" or tp <= 1:
        return ""
    q, kv = plan.model.n_heads, plan.model.n_kv_heads
    if q % tp:
        return f"tensor-parallel attention over {tp} ranks: {plan.model.name}'s {q} query heads do not divide by {tp}"
    if kv % tp and tp % kv:
        return (
            f"tensor-parallel attention over {tp} ranks: {plan.model.name}'s {kv} KV heads neither divide by {tp} "
            "nor divide it"
        )
    return ""


def per_request_s(plan: Plan, step: Step, step_s: float) -> float:
    """Seconds of the pool per request in `step`'s phase: one prefill pass per its batch of prompts,
    or the request's decode steps (output tokens over tokens per step) per the running batch."""
    if step.phase == "prefill":
        return step_s / step.batch
    return step.workload.output_tokens / max(1, plan.workload.decode_tokens) * step_s / step.batch


def unit(plan: Plan) -> str:
    """What the cluster's chips are called: "chips" on a TPU slice, "GPUs" on a switched cluster."""
    return "GPUs" if isinstance(plan.cluster.topology, Switched) else "chips"


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def runnable(pool: Pool, table: str, plan: Plan) -> Runnable:
    """The layout `table`'s engine runs for `pool`, with why it differs from the row's: the row's
    where the engine runs it, else of the engine's (FFN, attention) pairs and expert layouts the
    one that fits in HBM, whose tensor-parallel attention divides the model's heads, and whose
    pool-seconds per request (every phase the pool runs: a prefill pass per prompt of its batch
    and the request's decode steps per running sequence) the cost model predicts fewest; where
    none fits, the table's fallback (`nearest`), said not to run where the heads forbid it."""
    t = ENGINE_LAYOUTS[table]
    tp = pool.chips // pool.stages
    why = _why(pool, table)
    heads = heads_reason(plan, pool.attention, tp)
    if heads:
        why.append(heads)
    ffn, attention, experts, kv = t.nearest(pool.ffn, pool.attention, pool.experts, pool.kv_cache)
    if not why:
        return Runnable(
            chips=pool.chips, stages=pool.stages, ffn=ffn, attention=attention, experts=experts, kv_cache=kv, why=()
        )
    scored = []
    for f, a in sorted(t.dense):
        if heads_reason(plan, a, tp):
            continue
        for e in sorted(t.experts) if pool.experts else [""]:
            run = Runnable(chips=pool.chips, stages=pool.stages, ffn=f, attention=a, experts=e, kv_cache=kv, why=())
            figs = [figures(plan, s, run) for s in pool.steps]
            if figs and all(x["fits"] for x in figs):
                seconds = sum(per_request_s(plan, s, x["step_s"]) for s, x in zip(pool.steps, figs, strict=True))
                scored.append((seconds, f, a, e))
    if scored:
        _, ffn, attention, experts = min(scored)
        why.append(
            f"it runs {layout_label(ffn, attention, experts)}: of the {t.label} layouts that fit in HBM, the one the cost "
            "model predicts fastest"
            + (
                " (per request: a prefill pass per prompt of the pass's batch plus the request's decode steps per "
                "running sequence)"
                if len(pool.steps) > 1
                else ""
            )
        )
    elif heads_reason(plan, attention, tp):
        why.append(
            f"no {t.label} layout runs {tp} {unit(plan)} per stage of {plan.model.name}: tensor "
            f"parallelism needs a TP size dividing its {plan.model.n_heads} heads ({_divisors(plan.model.n_heads)})"
            + (
                ", or DP attention (attention `batch`) that fits in HBM"
                if any(a == "batch" for _, a in t.dense)
                else f", and {t.label} has no DP attention"
            )
            + f"; the command below ({layout_label(ffn, attention, experts)}) will not start as it is: plan a pool of one of "
            f"those sizes per stage (replicas of it for more {unit(plan)})"
        )
    else:
        why.append(
            f"no {t.label} layout fits in HBM at the row's batch: it runs {layout_label(ffn, attention, experts)}, its "
            "fallback (the tensor-parallel layout)"
        )
    return Runnable(
        chips=pool.chips, stages=pool.stages, ffn=ffn, attention=attention, experts=experts, kv_cache=kv, why=tuple(why)
    )


def figures(plan: Plan, step: Step, run: Runnable) -> dict:
    """The step (or pass) of `step`'s phase at the runnable layout, beside the row's (the phase's
    own layout), by the cost model."""
    kv = next(k for k in KvFormat if k.label == run.kv_cache)
    c = dataclasses.replace(
        step.candidate,
        ffn=FFN_LAYOUTS[run.ffn],
        attention=ATTENTION_LAYOUTS[run.attention],
        experts=EXPERT_LAYOUTS[run.experts] if run.experts else step.candidate.experts,
        kv_cache=kv,
    )
    evaluate_at = evaluate
    if c.stages > 1:
        from planner.cost.pipeline import evaluate_pipeline

        evaluate_at = evaluate_pipeline
    ev = evaluate_at(plan.model, plan.cluster, step.workload, c, np.array([step.batch]))
    seconds = float(ev.step_s[0])
    return {
        "phase": step.phase,
        "row_layout": step.layout,
        "row_kv_cache": step.kv_cache,
        "layout": run.layout,
        "kv_cache": run.kv_cache,
        "step_s": seconds,
        "row_step_s": step.step_s,
        "slower": seconds / step.step_s - 1.0,
        "fits": bool(ev.hbm_bytes[0] <= plan.cluster.chip.usable_hbm_bytes),
    }


def launch(engine: Engine, pool: Pool, run: Runnable, ctx: Context) -> Launch:
    """One pool's launch on `engine` at `run` (`runnable`), with the runnable layout's figures for
    every phase beside the row's where it differs from a phase's."""
    cmd = engine.launch(pool, run, ctx)
    unit = "chips" if engine.tpu else "GPUs"
    differs = run.why and any((s.layout, s.kv_cache) != (run.layout, run.kv_cache) for s in pool.steps)
    nearest = tuple(figures(ctx.plan, s, run) for s in pool.steps) if differs else ()
    kv = f" KV {pool.kv_cache}" if pool.kv_cache != "bf16" else ""
    stages = f" ({pool.stages} pipeline stages of {pool.chips // pool.stages})" if pool.stages > 1 else ""
    return Launch(
        role=pool.role,
        count=pool.count,
        layout=f"{pool.chips} {unit}{stages} {pool.layout} {pool.weights}{kv}",
        runnable=f"{pool.chips} {unit}{stages} {run.layout}"
        + (f" KV {run.kv_cache}" if run.kv_cache != "bf16" else ""),
        command=cmd.argv,
        notes=run.why + cmd.notes,
        nearest=nearest,
        flags=cmd.flags,
        files=cmd.files,
        chips=pool.chips,
    )
