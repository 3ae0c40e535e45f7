"""Exhaustive search: every chip count, pipeline stage count, mesh grouping, FFN layout, attention
layout and weight format, with the batch axis swept as a numpy array; infeasible points are dropped with a named
reason; the Pareto frontier of latency against MFU is kept per phase."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from planner.cost.costmodel import BOUNDS, Candidate, Evaluation, evaluate
from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS
from planner.cost.line_tables import LineCache
from planner.errors import InfeasibleError
from planner.search.choices import PhaseCandidates, candidates  # noqa: F401 (candidates: for callers)
from planner.search.frontier import front
from planner.search.space import nonempty_choices
from planner.search.sweep import Swept, make_buckets, sweep_phases
from planner.specs.formats import Formats, WeightFormat
from planner.specs.plan import Phase, Plan
from planner.units import fmt_bytes, fmt_chips, fmt_percent, fmt_seconds

DOES_NOT_FIT = "does not fit in HBM"
TOO_SLOW = "latency above max_latency_s"
STEP_TOO_SLOW = "decode step above max_step_latency_s"
LOW_MFU = "MFU below min_mfu"


@dataclass(frozen=True, kw_only=True)
class Point:
    """One evaluated layout at one batch size (what the frontier and `explain` report)."""

    phase: Phase
    chips: int
    mesh: tuple[tuple[str, int], ...]
    partition: tuple[tuple[str, tuple[str, ...]], ...]  # ("x", axes), ("yz", axes), ("gather", axes)
    batch: int
    ffn: str
    attention: str
    weights: str
    latency_s: float
    step_latency_s: float
    mfu: float
    cost_chip_s_per_token: float
    tokens_per_s: float
    hbm_bytes_per_chip: float
    hbm_fraction: float
    bound: str
    compute_s: float
    memory_s: float
    comm_s: float
    overhead_s: float
    # compute and memory as the kernels combine them (saved runs before it: None); not compared:
    # it follows from the compared figures, and older baselines lack it
    kernels_s: float | None = field(default=None, compare=False)
    experts: str = ""  # MoE models: the expert layout ("" for a dense model)
    stages: int = 1  # pipeline stages (chips and mesh: all stages; partition: one stage's)
    micro_batches: int = 1
    kv_cache: str = "bf16"  # KV-cache format (saved runs from before it existed: bf16)

    @property
    def key(self) -> tuple:
        """What identifies a point across two runs (compare matches on this)."""
        return (
            (self.phase.value, self.chips, self.batch, self.ffn, self.attention, self.weights, self.kv_cache)
            + ((self.experts,) if self.experts else ())
            + ((self.stages,) if self.stages > 1 else ())
        )


@dataclass(frozen=True, kw_only=True)
class PhaseResult:
    phase: Phase
    evaluated: int
    feasible: int
    dropped: tuple[tuple[str, int], ...]
    frontier: tuple[Point, ...]
    infeasible: str = ""  # why nothing is feasible (then the frontier is empty)


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    plan: Plan
    phases: tuple[PhaseResult, ...]

    @property
    def evaluated(self) -> int:
        return sum(p.evaluated for p in self.phases)

    @property
    def feasible(self) -> int:
        return sum(p.feasible for p in self.phases)

    @property
    def dropped(self) -> tuple[tuple[str, int], ...]:
        totals: dict[str, int] = {}
        for phase in self.phases:
            for reason, count in phase.dropped:
                totals[reason] = totals.get(reason, 0) + count
        return tuple(sorted(totals.items()))


def search(plan: Plan, progress: Callable[[int, int], None] | None = None, partial: bool = False) -> SearchResult:
    """Search every phase; `progress(done, total)` is called after each evaluation, if given.
    A phase with nothing feasible raises InfeasibleError, unless `partial` and another phase has
    a frontier: then that phase comes back empty, with the reason in `infeasible`."""
    formats = plan.space.formats(plan.cluster.chip)
    # one evaluation sweeps every batch size and format combination of a layout on a mesh
    discrete = nonempty_choices(plan)  # the same for every phase; none: the flags left nothing to search
    work = [(phase, PhaseCandidates(phase, discrete, formats[0])) for phase in plan.space.phases]
    total, done = sum(len(c) for _, c in work), [0]

    def step(count: int = 1) -> None:
        done[0] += count
        if progress is not None:
            progress(done[0], total)

    collecting = gc.isenabled()
    gc.disable()  # the sweep makes many short-lived objects without cycles, which reference counting frees;
    try:  # the cycle collector's passes over every candidate held would find nothing and cost ~10%
        lines = LineCache(plan.cluster)  # shared by the phases, as are the buckets of their (parallel) candidates
        buckets = make_buckets(plan, discrete)
        batch = np.array(plan.space.batches, dtype=np.int64)
        swept = sweep_phases(plan, dict(work), batch, formats, step, lines, buckets)
        phases = tuple(_search_phase(plan, phase, c, swept[phase], lines) for phase, c in work)
    finally:
        if collecting:
            gc.enable()
    failed = [ph.infeasible for ph in phases if ph.infeasible]
    if failed and (not partial or len(failed) == len(phases)):
        raise InfeasibleError("\n".join(failed))
    return SearchResult(plan=plan, phases=phases)


def _search_phase(
    plan: Plan, phase: Phase, layouts: Sequence[Candidate], swept: Swept, lines: LineCache | None = None
) -> PhaseResult:
    batch = np.array(plan.space.batches, dtype=np.int64)
    formats = plan.space.formats(plan.cluster.chip)
    dropped = {DOES_NOT_FIT: 0, TOO_SLOW: 0, STEP_TOO_SLOW: 0, LOW_MFU: 0}
    reach = _Reach()
    ok = _feasible(plan, phase, swept, dropped, reach)
    evaluated, feasible = swept.latency_s.size, int(ok.sum())
    dropped_items = tuple((r, c) for r, c in sorted(dropped.items()) if c)
    if feasible == 0:
        return PhaseResult(
            phase=phase,
            evaluated=evaluated,
            feasible=0,
            dropped=dropped_items,
            frontier=(),
            infeasible=_nothing_feasible(plan, phase, evaluated, dropped, reach),
        )
    owner, index = np.nonzero(ok)  # candidate and point of each feasible point, in candidate order
    evaluations: dict[int, Evaluation] = {}
    points = []
    for j in front(swept.latency_s[ok], swept.mfu[ok]):
        k = int(owner[j])
        if k not in evaluations:  # the candidate's Evaluation, as explain and compare get it
            evaluations[k] = cost(plan, layouts[k], batch, formats=formats, lines=lines)
        points.append((evaluations[k], int(index[j])))
    points.sort(key=lambda p: order_key(*p))
    return PhaseResult(
        phase=phase,
        evaluated=evaluated,
        feasible=feasible,
        dropped=dropped_items,
        frontier=tuple(point(ev, i) for ev, i in points),
    )


@dataclass
class _Reach:
    """The best a phase reaches among points that fit in HBM: the lowest latency (with its step),
    and the highest MFU among those within the latency limit."""

    latency_s: float = np.inf
    step_s: float = np.inf
    mfu: float = 0.0


def _feasible(plan: Plan, phase: Phase, swept: Swept, dropped: dict[str, int], reach: _Reach) -> np.ndarray:
    """Boolean mask over (candidates, points); each dropped point is counted under its first reason."""
    limits = plan.constraints
    latency_s, step_s, mfu = swept.latency_s, swept.step_s, swept.mfu
    ok = swept.hbm_bytes <= plan.cluster.chip.usable_hbm_bytes
    dropped[DOES_NOT_FIT] += int((~ok).sum())
    step_limit = limits.max_step_latency_s if phase is Phase.DECODE else None
    if ok.any():
        i = np.unravel_index(int(np.argmin(np.where(ok, latency_s, np.inf))), ok.shape)
        reach.latency_s, reach.step_s = float(latency_s[i]), float(step_s[i])
        fast = ok if limits.max_latency_s is None else ok & (latency_s <= limits.max_latency_s)
        fast = fast if step_limit is None else fast & (step_s <= step_limit)
        if fast.any():
            reach.mfu = max(reach.mfu, float(mfu[fast].max()))
    for reason, passes in (
        (TOO_SLOW, None if limits.max_latency_s is None else latency_s <= limits.max_latency_s),
        (STEP_TOO_SLOW, None if step_limit is None else step_s <= step_limit),
        (LOW_MFU, None if limits.min_mfu is None else mfu >= limits.min_mfu),
    ):
        if passes is not None:
            dropped[reason] += int((ok & ~passes).sum())
            ok = ok & passes
    return ok


def order_key(ev: Evaluation, i: int) -> tuple:
    """Lowest latency first; ties go to higher MFU, then less traffic, then registry order."""
    c = ev.candidate
    return (
        float(ev.latency_s[i]),
        -float(ev.mfu[i]),
        float(ev.comm_s[i]),
        float(ev.memory_s[i]),
        list(FFN_LAYOUTS).index(c.ffn.name),
        list(ATTENTION_LAYOUTS).index(c.attention.name),
        c.mesh.chips * c.stages,
        int(ev.batch[i]),
        ev.formats_at(i).weight_bytes,
        ev.formats_at(i).kv_cache.bytes_per_element(ev.model.d_head),
        c.stages,
    ) + ((list(EXPERT_LAYOUTS).index(c.experts.name),) if c.experts is not None else ())


def frontier(kept: list[tuple[Evaluation, np.ndarray]]) -> list[Point]:
    """Pareto frontier (minimise latency, maximise MFU): sort by latency, keep running-best MFU.
    Differences below RESOLUTION count as ties: a point must beat every faster point's MFU by
    more than that, and a point is dropped when a slower one within that latency has more MFU
    (twice the chips for 0.03% less latency is not a trade-off)."""
    latency = np.concatenate([ev.latency_s[ok] for ev, ok in kept])
    mfu = np.concatenate([ev.mfu[ok] for ev, ok in kept])
    owner = np.concatenate([np.full(int(ok.sum()), k) for k, (_, ok) in enumerate(kept)])
    index = np.concatenate([np.flatnonzero(ok) for _, ok in kept])
    points = [(kept[owner[j]][0], int(index[j])) for j in front(latency, mfu)]
    points.sort(key=lambda p: order_key(*p))
    return [point(ev, i) for ev, i in points]


def point(ev: Evaluation, i: int) -> Point:
    c, mesh = ev.candidate, ev.candidate.mesh
    return Point(
        phase=c.phase,
        chips=mesh.chips * c.stages,
        mesh=_stacked(mesh.physical, c.stages),
        partition=(
            ("x", tuple(mesh.names("x"))),
            ("yz", tuple(mesh.names("yz"))),
            ("gather", tuple(mesh.names(c.ffn.gather_axes))),
        ),
        batch=int(ev.batch[i]),
        ffn=c.ffn.name,
        attention=c.attention.name,
        weights=ev.weights_at(i).label,
        kv_cache=ev.formats_at(i).kv_cache.label,
        latency_s=float(ev.latency_s[i]),
        step_latency_s=float(ev.step_s[i]),
        mfu=float(ev.mfu[i]),
        cost_chip_s_per_token=float(ev.cost_chip_s_per_token[i]),
        tokens_per_s=float(ev.tokens_per_s[i]),
        hbm_bytes_per_chip=float(ev.hbm_bytes[i]),
        hbm_fraction=float(ev.hbm_fraction[i]),
        bound=BOUNDS[int(ev.bound[i])],
        compute_s=float(ev.compute_s[i]),
        memory_s=float(ev.memory_s[i]),
        comm_s=float(ev.comm_s[i]),
        overhead_s=float(np.broadcast_to(ev.overhead_s, ev.batch.shape)[i]),
        kernels_s=float(ev.local_s[i]),
        stages=c.stages,
        micro_batches=int(ev.micro_batches[i]) if c.stages > 1 else 1,
        experts=c.experts.name if c.experts is not None else "",
    )


def _stacked(physical: tuple[tuple[str, int], ...], stages: int) -> tuple[tuple[str, int], ...]:
    """All stages' chips: a stage's mesh with a `stages` axis in front (p = 1: the mesh itself)."""
    return physical if stages == 1 else (("stages", stages),) + physical


def cost(
    plan: Plan,
    candidate: Candidate,
    batch: np.ndarray,
    detail: bool = False,
    formats=None,
    lines: LineCache | None = None,
) -> Evaluation:
    """costmodel.evaluate, or pipeline.evaluate_pipeline for a candidate with stages (`lines`: the
    search's collective lines, if kept)."""
    run = evaluate
    if candidate.stages > 1:  # imported here: a plan without stages never loads the pipeline model
        from planner.cost.pipeline import evaluate_pipeline

        run = evaluate_pipeline
    return run(plan.model, plan.cluster, plan.workload, candidate, batch, detail=detail, formats=formats, lines=lines)


def best(
    plan: Plan,
    phase: Phase,
    chips: int,
    batch: int,
    weights=None,
    ffn=None,
    attention=None,
    experts=None,
    kv_cache=None,
    stages=None,
) -> Evaluation | None:
    """The lowest-latency feasible evaluation at one chip count and batch (optionally with a
    weight or KV-cache format, layout or stage count fixed), as a one-element Evaluation; None if
    nothing fits."""
    found = None
    for c in candidates(plan, phase, chips=(chips,)):
        if (
            (weights and c.weights is not weights)
            or (ffn and c.ffn.name != ffn)
            or (attention and c.attention.name != attention)
            or (kv_cache and c.kv_cache is not kv_cache)
            or (experts and (c.experts is None or c.experts.name != experts))
            or (stages and c.stages != stages)
        ):
            continue
        ev = cost(plan, c, np.array([batch]))
        if ev.hbm_bytes[0] > plan.cluster.chip.usable_hbm_bytes:
            continue
        if found is None or order_key(ev, 0) < order_key(found, 0):
            found = ev
    if found is None:
        return None
    return cost(plan, found.candidate, found.batch, detail=True)


def _nothing_feasible(plan: Plan, phase: Phase, evaluated: int, dropped: dict[str, int], reach: _Reach) -> str:
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items()) if count)
    text = f"{phase.value}: nothing feasible among {evaluated} candidates ({reasons})."
    if not np.isfinite(reach.latency_s):  # nothing fits in HBM at all
        return text + "\n  hint: " + weights_hint(plan)
    limits = plan.constraints
    if dropped[TOO_SLOW]:
        steps = (
            f" ({fmt_seconds(reach.step_s)} per step for {plan.workload.output_tokens} output tokens: "
            f"--max-latency covers the whole request)"
            if phase is Phase.DECODE
            else ""
        )
        text += (
            f"\n  hint: the fastest {phase.value} that fits takes {fmt_seconds(reach.latency_s)}{steps}; "
            f"--max-latency is {fmt_seconds(limits.max_latency_s)}."
        )
    if dropped[STEP_TOO_SLOW]:
        text += (
            f"\n  hint: the fastest decode step that fits takes {fmt_seconds(reach.step_s)}; "
            f"--max-step-latency is {fmt_seconds(limits.max_step_latency_s)}."
        )
    if dropped[LOW_MFU] and reach.mfu > 0:
        within = " within the latency limits" if limits.max_latency_s or limits.max_step_latency_s else ""
        text += (
            f"\n  hint: the highest MFU that fits{within} is {fmt_percent(reach.mfu)}; "
            f"--min-mfu is {fmt_percent(limits.min_mfu)}."
        )
    return text + "\n  hint: relax the constraints (--max-latency, --max-step-latency, --min-mfu) or allow more chips."


def capacity(chip) -> str:
    """What a chip offers the model: '71.3 GiB (79.2 GiB HBM less 7.92 GiB runtime reserve)'."""
    if not chip.memory_reserve_bytes:
        return fmt_bytes(chip.hbm_bytes)
    return (
        f"{fmt_bytes(chip.usable_hbm_bytes)} ({fmt_bytes(chip.hbm_bytes)} HBM less "
        f"{fmt_bytes(chip.memory_reserve_bytes)} runtime reserve)"
    )


def _smallest_weights(plan: Plan) -> tuple[Formats, float, int, int]:
    """(the smallest weight format searched, its weights' bytes, the chips they need at least,
    the most chips searched)."""
    chip = plan.cluster.chip
    smallest = min(plan.space.formats(chip), key=lambda f: f.weight_bytes)
    need = plan.model.n_params * smallest.weight_bytes
    searched = max(plan.space.chips) if plan.space.chips else max(plan.cluster.topology.chip_counts)
    return smallest, need, int(np.ceil(need / chip.usable_hbm_bytes)), searched


def _weights_fit(plan: Plan) -> bool:
    """The smallest weights searched fit on the most chips searched (the KV cache and activations
    are then what overflows; weights_hint says so)."""
    _, _, at_least, searched = _smallest_weights(plan)
    return searched >= at_least


def weights_hint(plan: Plan) -> str:
    """How many chips the smallest weight format needs, and the smallest slice that fits."""
    chip = plan.cluster.chip
    smallest, need, at_least, searched = _smallest_weights(plan)
    fits = [n for n in plan.cluster.topology.chip_counts if n >= at_least]
    text = (
        f"{smallest.weights.label} weights need {fmt_bytes(need)}: at least {at_least} "
        f"chip{'s' if at_least != 1 else ''} of "
        f"{capacity(chip)}"
    )
    if searched >= at_least:  # the weights fit: the KV cache and activations are what overflow
        other = "" if "batch" in plan.space.attention else ", or the batch attention layout"
        return (
            text
            + f", which {fmt_chips(searched)} {'has' if searched == 1 else 'have'}; the KV cache (batch x context) and activations "
            f"are what overflow: use a smaller batch or context{other}."
        )
    text += f"; smallest slice that fits: {fits[0]}" if fits else "; no slice of this cluster is that large"
    return text + " (plus room for the KV cache)" + _smaller_format_hint(plan, smallest, searched) + "."


def _smaller_format_hint(plan: Plan, smallest, searched: int) -> str:
    """', or fp8 weights (625 GiB) fit on 8 chips (--weights fp8)': the widest weight formats the
    chip runs, smaller than the smallest searched, whose weights fit on the chips searched."""
    chip = plan.cluster.chip
    options = [
        f
        for f in (Formats(weights=w, sparsity=smallest.sparsity) for w in WeightFormat)
        if chip.supports(f)
        and f.weight_bytes < smallest.weight_bytes
        and plan.model.n_params * f.weight_bytes <= searched * chip.usable_hbm_bytes
    ]
    if not options:
        return ""
    widest = max(f.weight_bytes for f in options)
    fastest_first = sorted(
        (f for f in options if f.weight_bytes == widest), key=lambda f: -f.weight_peak_flop_per_s(chip)
    )  # stable: enum order on ties
    labels = [f.weights.label for f in fastest_first]
    names = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]
    return (
        f"; or {names} weights ({fmt_bytes(plan.model.n_params * widest)}) fit on "
        f"{searched} chip{'s' if searched != 1 else ''} (--weights {labels[0]})"
    )


def explain_infeasible(
    plan: Plan, phase: Phase, chips: int, batch: int, weights, ffn: str, attention: str, kv_cache=None, experts=None
) -> str:
    """Why one layout cannot be explained: the engine of --runnable-on does not run it, it does not
    apply on this mesh, or it does not fit."""
    e = plan.space.engine
    kv = (kv_cache or plan.space.kv_cache[0]).label
    if e is not None and e.reasons(ffn, attention, experts or "", kv, weights.label):
        why = "; ".join(e.reasons(ffn, attention, experts or "", kv, weights.label))
        near = "+".join(x for x in e.nearest(ffn, attention, experts or "", kv)[:3] if x)
        return (
            f"--runnable-on {e.name}: {e.label} does not run {ffn}+{attention}{'+' + experts if experts else ''} "
            f"with {weights.label} weights and a {kv} KV cache as it is ({why}).\n  hint: explain a layout it runs "
            f"(the nearest: {near}, KV cache {e.nearest(ffn, attention, experts or '', kv)[3]}), or drop --runnable-on."
        )
    evs = [
        cost(plan, c, np.array([batch]))
        for c in candidates(plan, phase, chips=(chips,))
        if c.ffn.name == ffn
        and c.attention.name == attention
        and c.weights is weights
        and (kv_cache is None or c.kv_cache is kv_cache)
    ]
    if not evs and plan.model.experts is None and FFN_LAYOUTS[ffn].replicated:
        return (
            f"{ffn} applies to mixtures of experts only: {plan.model.name} whole on every chip is "
            f"{chips} one-chip replicas; plan it on 1 chip (or serve replicas)."
        )
    if not evs:
        return (
            f"{ffn}+{attention} does not apply on {fmt_chips(chips)} of {plan.cluster.name} "
            "(its axis groups would be trivial, or it coincides with the other attention layout); "
            "try another layout or chip count."
        )
    fewest = min(evs, key=lambda ev: float(ev.hbm_bytes[0]))
    need, usable = float(fewest.hbm_bytes[0]), plan.cluster.chip.usable_hbm_bytes
    layout, where = f"{ffn}+{attention}", "per chip"
    if fewest.candidate.stages > 1:  # a pipeline: its fullest stage
        fullest = int(np.argmax(fewest.stage_hbm_bytes[:, 0]))
        layout, where = f"PP{fewest.candidate.stages} {layout}", f"per chip of stage {fullest + 1}"
    needs = fmt_bytes(need)
    if needs == fmt_bytes(usable):  # equal when rounded: say by how much
        needs += f" ({fmt_bytes(need - usable)} more than it has)"
    return (
        f"{layout} at batch {batch} on {fmt_chips(chips)} does not fit in HBM: needs "
        f"{needs} {where}, has {capacity(plan.cluster.chip)}.\n  hint: "
        + weights_hint(plan)
        + ("" if _weights_fit(plan) else _other_remedies(batch, attention))
    )


def _other_remedies(batch: int, attention: str) -> str:
    remedies = (["a smaller batch"] if batch > 1 else []) + (
        ["the batch attention layout"] if attention != "batch" else []
    )
    return f" Or use {' or '.join(remedies)}." if remedies else ""
