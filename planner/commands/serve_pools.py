"""The pools a serving deployment is built from: for each chip count, weight format and batch, the
fastest layout that fits, for prefill (one pass over the prompt), for a static batch's decode
(the exact sum over the request's growing context) and for a running batch's decode step (the
mean context); every layout of the plan's search space is evaluated by the cost model
(`planner.cost.request` for the growing context). Capacity is held at the largest context."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.cost.costmodel import BOUNDS, Candidate, Evaluation, evaluate
from planner.cost.request import decode_request
from planner.search.search import candidates
from planner.specs.formats import Formats
from planner.specs.hardware import WeightFormat
from planner.specs.plan import Phase, Plan, Workload

PREFILL, STATIC_DECODE, RUNNING_DECODE = "prefill", "decode", "running decode"


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One phase of a deployment on one pool of chips (a row of `explain`)."""

    phase: Phase
    chips: int
    batch: int
    ffn: str
    attention: str
    weights: str
    kv_cache: str  # the KV cache's format (bf16, fp8, int8)
    experts: str  # MoE models: the routed experts' layout ("" for a dense model)
    latency_s: float  # prefill: the pass; decode: all output tokens
    step_latency_s: float  # prefill: the pass; decode: the mean step
    mfu: float
    hbm_fraction: float  # at the largest context
    bound: str  # of the step at the largest context
    candidate: Candidate  # for `--row` (explain); not in the JSON
    context: float  # tokens: the decode context the figures are for (prefill: the prompt); a running
    # batch's is the mean context, I + (O + 1) / 2, which may be a half


@dataclass(frozen=True, kw_only=True)
class Pool:
    """The fastest fitting layout per (chip count, weight format, batch) for one figure."""

    kind: str  # PREFILL, STATIC_DECODE or RUNNING_DECODE
    chips: tuple[int, ...]
    weights: tuple[WeightFormat, ...]
    formats: tuple[Formats, ...]  # per format index: weights, KV cache and sparsity
    batches: tuple[int, ...]
    seconds: np.ndarray  # (chips, weights, batch): the figure (inf: nothing fits)
    stages: dict  # (ci, wi, bi) -> Stage, for the finite entries
    evaluated: int  # layout x batch x format points evaluated
    fits: int  # of which fit in HBM


def pools(plan: Plan) -> tuple[Pool, Pool, Pool]:
    """(prefill, static decode, running decode) over the plan's chips, weights and batches.
    Pipeline stages are not served here: a plan's `stages` are searched as 1."""
    plan = replace(plan, space=replace(plan.space, stages=(1,)))
    formats, w = plan.space.formats(plan.cluster.chip), plan.workload
    batch = np.array(plan.space.batches, dtype=np.int64)
    shape = (len(plan.space.chips), len(formats), batch.size)
    chip_index = {n: i for i, n in enumerate(plan.space.chips)}
    best = {kind: (np.full(shape, np.inf), np.full(shape, -1), []) for kind in (PREFILL, STATIC_DECODE, RUNNING_DECODE)}
    counts = {PREFILL: [0, 0], STATIC_DECODE: [0, 0]}
    hbm = plan.cluster.chip.usable_hbm_bytes  # HBM less the runtime's reserve

    def offer(kind: str, candidate: Candidate, seconds: np.ndarray, fits: np.ndarray, make) -> None:
        table, owner, made = best[kind]
        ci = chip_index[candidate.mesh.chips]
        grid = np.where(fits, seconds, np.inf).reshape(len(formats), batch.size)
        better = grid < table[ci]
        if better.any():
            table[ci] = np.where(better, grid, table[ci])
            owner[ci] = np.where(better, len(made), owner[ci])
            made.append(make)

    for candidate in candidates(plan, Phase.PREFILL)[::len(formats)]:
        ev = evaluate(plan.model, plan.cluster, w, candidate, batch, formats=formats)
        fits = ev.hbm_bytes <= hbm
        counts[PREFILL][0] += fits.size
        counts[PREFILL][1] += int(fits.sum())
        stage = _prefill_stage(ev)
        offer(PREFILL, candidate, ev.latency_s, fits, stage)
    for candidate in candidates(plan, Phase.DECODE)[::len(formats)]:
        req = decode_request(plan.model, plan.cluster, w.input_tokens, w.output_tokens, candidate, batch, formats)
        fits = req.last.hbm_bytes <= hbm
        counts[STATIC_DECODE][0] += fits.size
        counts[STATIC_DECODE][1] += int(fits.sum())
        offer(STATIC_DECODE, candidate, req.decode_s, fits,
              _decode_stage(req.last, req.decode_s, req.decode_s / w.output_tokens, req.mfu, w))
        offer(RUNNING_DECODE, candidate, req.running_step_s, fits,
              _decode_stage(req.last, req.running_step_s * w.output_tokens, req.running_step_s,
                            req.running_mfu, w, running=True))
    out = []
    for kind, (table, owner, made) in best.items():
        stages = {}
        for ci, wi, bi in zip(*np.nonzero(np.isfinite(table))):
            stages[(int(ci), int(wi), int(bi))] = made[owner[ci, wi, bi]](wi * batch.size + bi)
        evaluated, fits = counts[PREFILL if kind == PREFILL else STATIC_DECODE]
        out.append(Pool(kind=kind, chips=plan.space.chips, weights=tuple(f.weights for f in formats),
                        formats=formats,                        batches=plan.space.batches,
                        seconds=table, stages=stages, evaluated=evaluated, fits=fits))
    return tuple(out)


def _prefill_stage(ev: Evaluation):
    def make(i: int) -> Stage:
        return _stage(ev, i, float(ev.latency_s[i]), float(ev.step_s[i]), float(ev.mfu[i]),
                      ev.workload.input_tokens)
    return make


def _decode_stage(last: Evaluation, latency_s, step_s, mfu, w: Workload, running: bool = False):
    context = w.input_tokens + (w.output_tokens + 1) / 2 if running else w.input_tokens + w.output_tokens
    context = int(context) if context == int(context) else context  # whole tokens where whole

    def make(i: int) -> Stage:
        return _stage(last, i, float(latency_s[i]), float(step_s[i]), float(mfu[i]), context)
    return make


def _stage(ev: Evaluation, i: int, latency_s: float, step_s: float, mfu: float, context: float) -> Stage:
    c, f = ev.candidate, ev.formats_at(i)
    return Stage(phase=c.phase, chips=c.mesh.chips, batch=int(ev.batch[i]), ffn=c.ffn.name,
                 attention=c.attention.name, weights=f.weights.label, kv_cache=f.kv_cache.label,
                 experts=c.experts.name if c.experts is not None else "", latency_s=latency_s,
                 step_latency_s=step_s, mfu=mfu, hbm_fraction=float(ev.hbm_fraction[i]),
                 bound=BOUNDS[int(ev.bound[i])],
                 candidate=replace(c, weights=f.weights, kv_cache=f.kv_cache, sparsity=f.sparsity),
                 context=context)
