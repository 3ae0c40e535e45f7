"""Layouts side by side, and a pinned deployment's gap to the best alternatives (definitions in
`planner.commands.compare.compare`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.commands.compare.compare import fastest, percent
from planner.errors import InfeasibleError, UsageError
from planner.search.search import DOES_NOT_FIT, Point, best, candidates, cost, order_key, point, search
from planner.specs.formats import Formats, KvFormat
from planner.specs.hardware import WeightFormat
from planner.specs.plan import Phase, Pin, Plan
from planner.units import fmt_bytes, fmt_chips, fmt_seconds

# --- layouts side by side -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LayoutRow(Pin):
    """One layout (best mesh grouping) at one phase, chip count, batch and weight format: the
    layout as a pin would name it, with its point or the reason there is none."""

    point: Point | None  # None when the layout does not apply or does not fit
    reason: str = ""  # why there is no point
    need_bytes: float | None = None  # HBM per chip the best grouping needs, when it does not fit
    gap: float | None = None  # latency / fastest row's latency at the same phase, chips, batch - 1


def side_by_side(plan: Plan, layouts: tuple[tuple[str, str], ...]) -> tuple[LayoutRow, ...]:
    """Each (ffn, attention) layout in every weight format of the plan, and in each of its stage
    counts (a pipelined layout is a layout of its own: PP2 ws1d+heads), at every phase, chip count
    and batch of its search space (the rows of one phase, chips and batch are consecutive)."""
    plan = _widened(plan, ffn=[f for f, _ in layouts], attention=[a for _, a in layouts])
    space, hbm = plan.space, plan.cluster.chip.usable_hbm_bytes
    batch = np.array(space.batches, dtype=np.int64)
    rows: list[LayoutRow] = []
    for phase in space.phases:
        for chips in space.chips:
            picked = [c for c in candidates(plan, phase, chips=(chips,)) if (c.ffn.name, c.attention.name) in layouts]
            evs = [cost(plan, c, batch) for c in picked]  # pipelined candidates by the pipeline model
            stage_counts = sorted({c.stages for c in picked}) or [1]
            for i, b in enumerate(space.batches):
                group = [
                    _layout_row(
                        evs,
                        i,
                        hbm,
                        LayoutRow(
                            phase=phase,
                            chips=chips,
                            batch=b,
                            ffn=ffn,
                            attention=attention,
                            weights=weights,
                            stages=p,
                            point=None,
                        ),
                    )
                    for p in stage_counts
                    for ffn, attention in layouts
                    for weights in space.weights
                ]
                fastest = min((r.point.latency_s for r in group if r.point), default=None)
                rows += [replace(r, gap=r.point.latency_s / fastest - 1) if r.point else r for r in group]
    return tuple(rows)


def _layout_row(evs, i: int, hbm_bytes: float, row: LayoutRow) -> LayoutRow:
    """`row` with its point: the fastest of its layout's evaluations (mesh groupings) that fits
    at batch index i; or with the reason there is none."""
    mine = [
        ev
        for ev in evs
        if (ev.candidate.ffn.name, ev.candidate.attention.name, ev.candidate.weights, ev.candidate.stages)
        == (row.ffn, row.attention, row.weights, row.stages)
    ]
    fits = [ev for ev in mine if ev.hbm_bytes[i] <= hbm_bytes]
    if fits:
        return replace(row, point=point(min(fits, key=lambda ev: order_key(ev, i)), i))
    if mine:
        need = min(float(ev.hbm_bytes[i]) for ev in mine)
        return replace(
            row, need_bytes=need, reason=f"{DOES_NOT_FIT}: needs {fmt_bytes(need)} per chip, has {fmt_bytes(hbm_bytes)}"
        )
    return replace(row, reason=f"does not apply on {fmt_chips(row.chips)}")


# --- a pinned deployment ------------------------------------------------------------------------

GAP_REFERENCES = ("layout", "frontier")


@dataclass(frozen=True, kw_only=True)
class PinGap:
    pin: Pin
    point: Point  # the pinned layout (its best mesh grouping)
    best: Point  # fastest layout at the pin's phase, chips, batch and weights
    layout_gap: float  # point.latency / best.latency - 1
    frontier: Point  # fastest of the phase's frontier (and the pin) with MFU >= the pin's
    frontier_gap: float  # point.latency / frontier.latency - 1


@dataclass(frozen=True, kw_only=True)
class Deployment:
    source: str
    gaps: tuple[PinGap, ...]
    max_gap: float
    gap_to: str  # one of GAP_REFERENCES
    cluster: str = ""
    calibrated: bool = True  # False: the cluster's constants are ideal, never fitted ("uncalibrated")
    calibration_status: str = "calibrated"  # Cluster.calibration_status (borrowed constants say so)
    runnable_on: str = ""  # --runnable-on: the references are what this engine runs ("": every layout)
    engine: str = ""  # the engine profile the figures used (planner.specs.engine)

    def gap(self, g: PinGap) -> float:
        return g.layout_gap if self.gap_to == "layout" else g.frontier_gap

    def reference(self, g: PinGap) -> Point:
        return g.best if self.gap_to == "layout" else g.frontier

    @property
    def regressed(self) -> bool:
        return any(self.gap(g) > self.max_gap for g in self.gaps)

    def describe(self, g: PinGap) -> str:
        ref, gap, pinned = self.reference(g), self.gap(g), g.point
        at = lambda p: f"{fmt_seconds(p.latency_s)} at {percent(p.mfu)} MFU"
        if gap <= 0:
            where = (
                "the fastest layout on its chips, batch and weights" if self.gap_to == "layout" else "on the frontier"
            )
            return f"{g.pin.phase.value}: the pinned {_pin_name(g.pin)} is {where} ({at(pinned)})"
        where = (
            "on the same chips, batch and weights"
            if self.gap_to == "layout"
            else f"on {ref.chips} chips at batch {ref.batch}, at no lower MFU"
        )
        name = (
            (f"PP{ref.stages} " if ref.stages > 1 else "")
            + f"{ref.ffn}+{ref.attention}"
            + (f"+{ref.experts}" if ref.experts else "")
        )
        return (
            f"{g.pin.phase.value}: {percent(gap)} slower than {name} {ref.weights} "
            f"{where} (pinned {_pin_name(g.pin)}: {at(pinned)}; {name}: {at(ref)})"
        )

    def verdict(self) -> str:
        worst = max(self.gaps, key=self.gap)
        limit = f"--max-gap {percent(self.max_gap)}"
        if self.regressed:
            return f"BEHIND: {worst.pin.phase.value} is {percent(self.gap(worst))} behind, beyond {limit}"
        return f"ok: every pinned layout within {limit} of the {self.gap_to} reference"


def _pin_name(pin: Pin) -> str:
    """'ws2d+batch bf16 on 64 chips at batch 512' (the keys a pin may omit only when given)."""
    experts = f"+{pin.experts}" if pin.experts else ""
    kv = f" (KV cache {pin.kv_cache.label})" if pin.kv_cache is not KvFormat.BF16 else ""
    stages = f" in {pin.stages} stages" if pin.stages > 1 else ""
    return (
        f"{pin.ffn}+{pin.attention}{experts} {pin.weights.label}{kv} on {pin.chips} chips{stages} at batch {pin.batch}"
    )


def check_deployment(plan: Plan, max_gap: float = 0.05, gap_to: str = "layout") -> Deployment:
    """How far each pinned layout is from its reference (see the module docstring)."""
    if gap_to not in GAP_REFERENCES:
        raise UsageError(f"--gap-to: expected one of {', '.join(GAP_REFERENCES)}, got {gap_to!r}")
    pins = plan.deployment
    if not pins:
        raise UsageError(
            f"{plan.source or 'the plan'}: no 'deployment:' section to check\n  hint: pin a "
            "layout per phase, e.g. deployment: {decode: {chips: 64, batch: 512, ffn: ws2d, "
            "attention: batch, weights: bf16}}"
        )
    _check_runnable(plan, pins)
    experts = [p.experts for p in pins if p.experts] if plan.space.experts else []  # (): every one
    plan = _widened(
        plan,
        phases=tuple(dict.fromkeys(p.phase for p in pins)),
        ffn=[p.ffn for p in pins],
        attention=[p.attention for p in pins],
        weights=[p.weights for p in pins],
        kv_cache=[p.kv_cache for p in pins],
        stages=[p.stages for p in pins],
        experts=experts,
    )
    frontiers = {ph.phase: ph.frontier for ph in search(plan).phases}
    gaps = []
    for pin in pins:
        ev = best(
            plan,
            pin.phase,
            pin.chips,
            pin.batch,
            pin.weights,
            pin.ffn,
            pin.attention,
            experts=pin.experts or None,
            kv_cache=pin.kv_cache,
            stages=pin.stages,
        )
        if ev is None:
            raise InfeasibleError(_pin_infeasible(plan, pin))
        pinned = point(ev, 0)
        quickest = point(best(plan, pin.phase, pin.chips, pin.batch, pin.weights, kv_cache=pin.kv_cache), 0)
        ref = fastest(frontiers[pin.phase] + (pinned,), pinned.mfu)
        gaps.append(
            PinGap(
                pin=pin,
                point=pinned,
                best=quickest,
                layout_gap=pinned.latency_s / quickest.latency_s - 1,
                frontier=ref,
                frontier_gap=pinned.latency_s / ref.latency_s - 1,
            )
        )
    return Deployment(
        source=plan.source,
        gaps=tuple(gaps),
        max_gap=max_gap,
        gap_to=gap_to,
        cluster=plan.cluster.name,
        calibrated=plan.cluster.calibrated,
        calibration_status=plan.cluster.calibration_status,
        runnable_on=plan.space.runnable_on,
        engine=plan.cluster.engine,
    )


def _check_runnable(plan: Plan, pins: tuple[Pin, ...]) -> None:
    """With --runnable-on, each pin must be a layout the engine runs as it is (the references are)."""
    e = plan.space.engine
    for pin in pins if e is not None else ():
        layout = (pin.ffn, pin.attention, pin.experts, pin.kv_cache.label)
        why = e.reasons(*layout, pin.weights.label)
        if why:
            near = e.nearest(*layout)
            raise UsageError(
                f"--runnable-on {e.name}: the pinned {pin.phase.value} layout ({_pin_name(pin)}; "
                f"{plan.source}:{pin.line}) is not one {e.label} runs as it is ({'; '.join(why)})\n  hint: pin the "
                f"nearest it runs ({'+'.join(x for x in near[:3] if x)}, KV cache {near[3]}), or drop --runnable-on"
            )


def _widened(plan: Plan, phases: tuple[Phase, ...] | None = None, **extra) -> Plan:
    """`plan` whose search space also holds the `extra` names per axis (ffn, attention, weights)."""
    space = plan.space
    axes = {
        axis: getattr(space, axis) + tuple(v for v in dict.fromkeys(values) if v not in getattr(space, axis))
        for axis, values in extra.items()
    }
    return replace(plan, space=replace(space, phases=phases or space.phases, **axes))


def _pin_infeasible(plan: Plan, pin: Pin) -> str:
    where = (
        f"{plan.source or 'the plan'}{f':{pin.line}' if pin.line else ''}: "
        f"deployment.{pin.phase.value}: {_pin_name(pin)}"
    )
    need = _pinned_need_bytes(
        plan, pin, Formats(weights=pin.weights, kv_cache=pin.kv_cache, sparsity=plan.space.sparsity)
    )
    if need is None:
        return f"{where} does not apply (its mesh axis groups would be trivial on {pin.chips} chips)"
    hbm = plan.cluster.chip.usable_hbm_bytes
    mine = Formats(weights=pin.weights, kv_cache=pin.kv_cache, sparsity=plan.space.sparsity)
    remedies = (
        (["a smaller batch"] if pin.batch > 1 else [])
        + _smaller_formats(plan, pin, mine, hbm)
        + ["more chips"]
        + (["the batch attention layout"] if pin.attention != "batch" else [])
    )
    return (
        f"{where} {DOES_NOT_FIT}: needs {fmt_bytes(need)} per chip, has {fmt_bytes(hbm)}\n"
        f"  hint: pin {', '.join(remedies[:-1])} or {remedies[-1]}"
    )


def _smaller_formats(plan: Plan, pin: Pin, mine: Formats, hbm_bytes: float) -> list[str]:
    """['fp8 or int8 weights (they fit)', 'an fp8 KV cache (it fits)']: the widest weight formats
    the chip runs, smaller than the pin's, in which the pinned layout fits (fastest first, as
    search's weights hint); likewise KV-cache formats with the pin's weights."""
    chip, d_head, out = plan.cluster.chip, plan.model.d_head, []
    for options, size, what in (
        ([replace(mine, weights=w) for w in WeightFormat], lambda f: f.weight_bytes, "{} weights (they fit)"),
        (
            [replace(mine, kv_cache=kv) for kv in KvFormat],
            lambda f: f.kv_cache.bytes_per_element(d_head),
            "an {} KV cache (it fits)",
        ),
    ):
        fit = [
            f
            for f in options
            if chip.supports(f)
            and size(f) < size(mine)
            and _pinned_need_bytes(plan, pin, f) is not None
            and _pinned_need_bytes(plan, pin, f) <= hbm_bytes
        ]
        widest = sorted(
            (f for f in fit if size(f) == max(map(size, fit))), key=lambda f: -f.weight_peak_flop_per_s(chip)
        )  # stable: enum order on ties
        labels = list(dict.fromkeys(f.weights.label if "weights" in what else f.kv_cache.label for f in widest))
        if labels:
            out.append(what.format(labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]))
    return out


def _pinned_need_bytes(plan: Plan, pin: Pin, formats: Formats) -> float | None:
    """HBM per chip the pinned layout's best mesh grouping needs in `formats` (None: it does not apply)."""
    mine = [
        c
        for c in candidates(plan, pin.phase, chips=(pin.chips,), formats=(formats,))
        if (c.ffn.name, c.attention.name, c.stages) == (pin.ffn, pin.attention, pin.stages)
        and (not pin.experts or (c.experts is not None and c.experts.name == pin.experts))
    ]
    if not mine:
        return None
    return min(float(cost(plan, c, np.array([pin.batch])).hbm_bytes[0]) for c in mine)
