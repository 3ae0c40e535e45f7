"""The pools a serving deployment is built from: for each chip count, weight format and batch, the
fastest layout that fits, for prefill (one pass over the prompt), for a static batch's decode
(the exact sum over the request's growing context) and for a running batch's decode step (the
mean context). Capacity is held at the largest context.

Every layout of the plan's search space is costed by the search's sweep (planner.search.sweep),
as `plan` costs it: prefill at the prompt, and each decode step's parts at the contexts a
request is interpolated between (planner.cost.request: the first and last step, and the local
layers' window where the steps cross it), each an array over (candidates, formats x batch); the
request figures are numpy over those arrays, bit for bit what `evaluate` and `decode_request`
give each candidate alone. A static batch's sum over its O steps is costed only for the
candidates that can be the fastest at their chip count, format and batch (bounds from the
steps' extremes); Stages are made only for the entries a mode prints.

The tables are (chips, formats, batch), reduced from (candidates, formats, batch) arrays; a
further axis (a running batch's concurrency, say) is one more trailing dimension of those arrays
and of the tables (`_Table.best` reduces over the candidates whatever follows)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from planner.cost.costmodel import BOUNDS, Candidate, critical_path
from planner.cost.line_tables import LineCache
from planner.cost.request import (
    PARTS,
    RequestParts,
    context_workload,
    contexts,
    running_step_s,
    static_decode_s,
    window_crossed,
)
from planner.cost.step import bound as step_bound  # the step's bound from its parts, as evaluate sets it
from planner.search.choices import Choice, PhaseCandidates
from planner.search.space import nonempty_choices
from planner.search.sweep import Swept, make_buckets, sweep_phases
from planner.specs.formats import Formats
from planner.specs.hardware import WeightFormat
from planner.specs.plan import Phase, Plan

PREFILL, STATIC_DECODE, RUNNING_DECODE = "prefill", "decode", "running decode"
MARGIN = 1e-6  # relative: far above the rounding of a sum of steps, far below any real difference


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
    chips: tuple[int, ...]  # per row: a chip count (by_layout's rows: each candidate's)
    weights: tuple[WeightFormat, ...]
    formats: tuple[Formats, ...]  # per format index: weights, KV cache and sparsity
    batches: tuple[int, ...]
    seconds: np.ndarray  # (chips, formats, batch): the figure (inf: nothing fits)
    owner: np.ndarray  # (chips, formats, batch): the candidate that has it (where finite)
    make: Callable[[int, int], Stage]  # (candidate, point) -> its Stage
    evaluated: int  # layout x batch x format points evaluated
    fits: int  # of which fit in HBM
    # with --runnable-on: the same figure with one row per candidate (its layouts at its chip count)
    # instead of per chip count, so that colocated and static deployments pair a prefill and a
    # decode of one layout (one engine server runs one layout for both phases); None otherwise
    by_layout: Pool | None = None

    def any(self) -> bool:
        """Whether anything fits."""
        return bool(np.isfinite(self.seconds).any())

    def keys(self) -> np.ndarray:
        """(entries, 3): (chip, format, batch) index of every finite entry, in C order."""
        return np.argwhere(np.isfinite(self.seconds))

    def stage(self, key) -> Stage:
        """The Stage of entry (chip, format, batch)."""
        ci, wi, bi = (int(i) for i in key)
        return self.make(int(self.owner[ci, wi, bi]), wi * len(self.batches) + bi)

    def get(self, key) -> Stage | None:
        """The Stage of entry (chip, format, batch), or None where nothing fits."""
        return self.stage(key) if np.isfinite(self.seconds[tuple(int(i) for i in key)]) else None


def pools(plan: Plan) -> tuple[Pool, Pool, Pool]:
    """(prefill, static decode, running decode) over the plan's chips, weights and batches.
    Pipeline stages are not served here: a plan's `stages` are searched as 1."""
    plan = replace(plan, space=replace(plan.space, stages=(1,)))
    discrete = nonempty_choices(plan)  # an empty search space is the user's mistake
    formats, w = plan.space.formats(plan.cluster.chip), plan.workload
    I, O = w.input_tokens, w.output_tokens
    batch = np.array(plan.space.batches, dtype=np.int64)
    lines, buckets = LineCache(plan.cluster), make_buckets(plan, discrete)

    def swept(phases: tuple[Phase, ...], workload) -> tuple[Swept, ...]:
        layouts = {phase: PhaseCandidates(phase, discrete, formats[0]) for phase in phases}
        out = sweep_phases(
            replace(plan, workload=workload), layouts, batch, formats, lambda count: None, lines, buckets, parts=True
        )
        return tuple(out[phase] for phase in phases)

    S, window = contexts(I, O), window_crossed(plan.model, I, O)
    # prefill does not read the decode context: it is costed in the last step's pass
    prefill, last = swept(
        (Phase.PREFILL, Phase.DECODE), context_workload(I, O, float(S[-1]), w.routing, w.decode_tokens)
    )
    first = (
        last if O == 1 else swept((Phase.DECODE,), context_workload(I, O, float(S[0]), w.routing, w.decode_tokens))[0]
    )
    kink = (
        None
        if window is None
        else swept((Phase.DECODE,), context_workload(I, O, window, w.routing, w.decode_tokens))[0]
    )
    flat = lambda sw: None if sw is None else {n: getattr(sw, n).reshape(-1) for n in PARTS}  # noqa: E731
    request = RequestParts(
        first=flat(first),
        last=flat(last),
        kink=flat(kink),
        overhead_s=last.overhead_s.reshape(-1),
        overlap=last.overlap.reshape(-1),
        input_tokens=I,
        output_tokens=O,
        window=window,
        pairwise=prefill.latency_s.shape[1] == 1,
    )

    hbm = plan.cluster.chip.usable_hbm_bytes  # HBM less the runtime's reserve
    table = _Table(plan, discrete, formats, batch)
    pre_fits, fits = prefill.hbm_bytes <= hbm, last.hbm_bytes <= hbm
    running = np.where(fits, running_step_s(request).reshape(fits.shape), np.inf)
    static = _static_decode(table, request, fits)
    joint = bool(plan.space.runnable_on)  # pools by layout too (Pool.by_layout)
    static_all = _static_decode(table, request, fits, prune=False) if joint else None

    def stage(phase: Phase, sw: Swept, latency_s, step_s, mfu, context):
        made: dict[tuple[int, int], Stage] = {}  # a stage is in many deployments

        def make(k: int, i: int) -> Stage:
            if (k, i) not in made:
                made[k, i] = table.stage(
                    phase, sw, k, i, float(latency_s(k, i)), float(step_s(k, i)), float(mfu(k, i)), context
                )
            return made[k, i]

        return make

    decode_context = I + O

    def static_stage(sums: np.ndarray):
        return stage(
            Phase.DECODE,
            last,
            at(sums),
            lambda k, i: sums[k, i] / O,
            lambda k, i: last.mfu[k, i] * last.latency_s[k, i] / sums[k, i],
            decode_context,
        )

    mean = I + (O + 1) / 2
    mean = int(mean) if mean == int(mean) else mean  # whole tokens where whole
    at = lambda x: lambda k, i: x[k, i]  # noqa: E731
    return (
        table.pool(
            PREFILL,
            np.where(pre_fits, prefill.latency_s, np.inf),
            pre_fits,
            stage(Phase.PREFILL, prefill, at(prefill.latency_s), at(prefill.step_s), at(prefill.mfu), I),
            joint,
        ),
        table.pool(
            STATIC_DECODE,
            static,
            fits,
            static_stage(static),
            joint,
            None if static_all is None else (static_all, static_stage(static_all)),
        ),
        table.pool(
            RUNNING_DECODE,
            running,
            fits,
            stage(
                Phase.DECODE,
                last,
                lambda k, i: running[k, i] * O,
                at(running),
                lambda k, i: last.mfu[k, i] * last.step_s[k, i] / running[k, i],
                mean,
            ),
            joint,
        ),
    )


class _Table:
    """The plan's candidates (its one-stage choices) as the pools' rows: their chip counts, the
    best per (chip count, format, batch), and Stages made on demand."""

    def __init__(self, plan: Plan, discrete: list[Choice], formats: tuple[Formats, ...], batch: np.ndarray):
        self.plan, self.discrete, self.formats, self.batch = plan, discrete, formats, batch
        chip_index = {n: i for i, n in enumerate(plan.space.chips)}
        chip = np.array([chip_index[c.mesh.chips] for c in discrete], dtype=np.int64)
        # the choices come chip count by chip count (choices: in search order)
        self.bounds = np.searchsorted(chip, np.arange(len(plan.space.chips) + 1))
        self.points = (len(formats), batch.size)

    def best(self, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(table, owner), each (chips, *rest): the least of `seconds` (candidates, *rest; inf
        where it does not fit) per chip count, and the first candidate that has it (what a pass
        over the candidates keeping strict improvements keeps). `rest`: formats and batch, and
        any further axis (a running batch's concurrency) alike."""
        shape = (len(self.bounds) - 1, *seconds.shape[1:])
        table, owner = np.full(shape, np.inf), np.full(shape, -1, dtype=np.int64)
        for ci, (lo, hi) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            if hi > lo:
                first = np.argmin(seconds[lo:hi], axis=0)
                table[ci] = np.take_along_axis(seconds[lo:hi], first[None], axis=0)[0]
                owner[ci] = lo + first
        return table, owner

    def chip_of(self) -> np.ndarray:
        """Each candidate's chip count index."""
        return np.repeat(np.arange(len(self.bounds) - 1), np.diff(self.bounds))

    def pool(self, kind: str, seconds: np.ndarray, fits: np.ndarray, make, by_layout=False, every=None) -> Pool:
        """The pool of `seconds` (candidates, points) where `fits`; with `by_layout`, its
        by_layout pool too, of `every` ((seconds, make) of every fitting candidate) if given."""
        table, owner = self.best(seconds.reshape(-1, *self.points))
        space = self.plan.space
        common = dict(
            kind=kind,
            weights=tuple(f.weights for f in self.formats),
            formats=self.formats,
            batches=space.batches,
            evaluated=fits.size,
            fits=int(fits.sum()),
        )
        joint = None
        if by_layout:
            all_s, all_make = every if every is not None else (seconds, make)
            per = all_s.reshape(-1, *self.points)
            joint = Pool(
                chips=tuple(c.mesh.chips for c in self.discrete),
                seconds=per,
                owner=np.broadcast_to(np.arange(per.shape[0])[:, None, None], per.shape),
                make=all_make,
                **common,
            )
        return Pool(chips=space.chips, seconds=table, owner=owner, make=make, by_layout=joint, **common)

    def stage(
        self, phase: Phase, sw: Swept, k: int, i: int, latency_s: float, step_s: float, mfu: float, context: float
    ) -> Stage:
        c, f = self.discrete[k], self.formats[i // self.batch.size]
        bound = step_bound(
            *(getattr(sw, n)[k, i] for n in ("compute_s", "memory_s", "local_s")),
            sw.comm_s[k, i] - sw.prefetched_s[k, i],
            sw.critical_s[k, i],
            sw.comm_s[k, i],
        )
        candidate = c.candidate(phase, f)
        return Stage(
            phase=phase,
            chips=c.mesh.chips,
            batch=int(self.batch[i % self.batch.size]),
            ffn=c.ffn.name,
            attention=c.attention.name,
            weights=f.weights.label,
            kv_cache=f.kv_cache.label,
            experts=c.experts.name if c.experts is not None else "",
            latency_s=latency_s,
            step_latency_s=step_s,
            mfu=mfu,
            hbm_fraction=float(sw.hbm_bytes[k, i] / self.plan.cluster.chip.hbm_bytes),
            bound=BOUNDS[int(bound)],
            candidate=candidate,
            context=context,
        )


def _static_decode(table: _Table, request: RequestParts, fits: np.ndarray, prune: bool = True) -> np.ndarray:
    """A static batch's decode seconds (candidates, points): the exact sum of the O steps where
    a candidate fits and may be the fastest at its chip count, format and batch; inf elsewhere.
    Each step's parts lie between their values at the contexts interpolated between, and a step
    grows with each part (combine is monotone in local time and both kinds of collectives for an
    overlap in [0, 1]), so O steps at the parts' least and greatest values bound the sum; a
    candidate whose least exceeds another's greatest at the same entry cannot be the fastest.
    Without `prune`: every candidate where it fits (--runnable-on pairs phases by layout)."""
    O, shape = request.output_tokens, fits.shape
    keep = fits.reshape(-1).copy()
    if prune and np.all((0.0 <= np.asarray(request.overlap)) & (np.asarray(request.overlap) <= 1.0)):
        ends = [e for e in (request.first, request.last, request.kink) if e is not None]
        lo, hi = (_step_at(request, ends, pick) * O for pick in (np.minimum, np.maximum))
        lo = np.where(fits, lo.reshape(shape) * (1 - MARGIN), np.inf)
        hi = np.where(fits, hi.reshape(shape) * (1 + MARGIN), np.inf)
        keep &= (lo <= table.best(hi)[0][table.chip_of()]).reshape(-1)
    out = np.full(fits.size, np.inf)
    index = np.flatnonzero(keep)
    if index.size:
        out[index] = static_decode_s(request.picked(index))
    return out.reshape(shape)


def _step_at(request: RequestParts, ends: list[dict], pick) -> np.ndarray:
    """A step at each part's least (pick=np.minimum) or greatest (np.maximum) value over `ends`."""
    value = lambda f: _reduce(pick, [f(e) for e in ends])  # noqa: E731
    local, k, active = (
        value(lambda e: e["local_s"]),
        value(lambda e: e["comm_s"]),
        value(lambda e: e["comm_s"] - e["prefetched_s"]),
    )
    return np.maximum(critical_path(local, active, request.overlap), k) + request.overhead_s


def _reduce(pick, values: list[np.ndarray]) -> np.ndarray:
    out = values[0]
    for v in values[1:]:
        out = pick(out, v)
    return out
