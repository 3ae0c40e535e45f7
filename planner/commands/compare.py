"""Compare plan results: layouts side by side, two runs (the regression gate), and a pinned
deployment against the best alternatives. Pure functions over search results; `planner
cli_compare` parses the command line and renders what these return.

Definitions (the README's `planner compare` section repeats them):

- A run is the frontier of every phase, as `planner plan --format json` writes it. A fresh
  search is passed through the same JSON (6 significant digits), so a plan compared with its own
  saved run is identical, and "no change" means no difference at that precision.
- Points of two runs are matched by `Point.key`: (phase, chips, batch, ffn, attention, weights).
  A matched point whose figures differ has *moved*; a key in one run only has *appeared* or
  *disappeared*.
- A moved point regressed when its latency rose by more than `Tolerance.latency` (relative) or
  its MFU fell by more than `Tolerance.mfu` (absolute, a fraction: 0.005 is 0.5 percentage
  points). A phase regressed when its best (lowest) latency or best (highest) MFU did, or when it
  is missing from the current run. A point that disappeared regressed unless the current
  frontier covers it: some current point with at least its MFU (less the tolerance) that is no
  slower (plus the tolerance). Appearing is never a regression.
- The gap of a pinned deployment is `latency(pin) / latency(reference) - 1`, where the reference
  is either the fastest layout at the pin's phase, chips, batch and weight format (`layout`, the
  default: what can change without new hardware, batch or quantisation) or the fastest point
  of the phase's frontier with at least the pin's MFU, i.e. at no higher cost per token
  (`frontier`). Both are >= 0, and 0 means the pin is the reference.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np

from planner.cost.costmodel import evaluate
from planner.errors import ConfigError, InfeasibleError, UsageError
from planner.specs.plan import Phase, Pin, Plan, Workload
from planner.render.tables import plan_dict, to_json
from planner.search.search import DOES_NOT_FIT, Point, SearchResult, best, candidates, order_key, point, search
from planner.units import fmt_bytes, fmt_percent, fmt_seconds

SAVED_RUN_HINT = "a saved run is what `planner plan PLAN --format json -o FILE` writes"


def name(p: Point) -> str:
    """A point in words: 'decode 64 chips batch 512 ws2d+batch bf16'."""
    return f"{p.phase.value} {p.chips} chips batch {p.batch} {p.ffn}+{p.attention} {p.weights}"


percent = fmt_percent


def signed_percent(fraction: float) -> str:
    return "inf" if math.isinf(fraction) else f"{100.0 * fraction:+.1f}%"


def points_change(fraction: float) -> str:
    return f"{100.0 * fraction:+.1f} pp"


def _fastest(points, min_mfu: float) -> Point | None:
    """The fastest point with MFU >= min_mfu (ties: higher MFU, then key), or None."""
    able = [p for p in points if p.mfu >= min_mfu]
    return min(able, key=lambda p: (p.latency_s, -p.mfu, p.key)) if able else None


# --- saved runs ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Run:
    """The frontiers of one planner run, read back from (or passed through) its JSON."""

    source: str  # the file or plan it came from
    model: str
    cluster: str
    workload: Workload
    points: tuple[Point, ...]  # every phase's frontier, in file order
    calibration: tuple[tuple[str, float], ...] | None = None  # the cluster's constants (None: older runs)

    @property
    def phases(self) -> tuple[Phase, ...]:
        return tuple(dict.fromkeys(p.phase for p in self.points))

    def frontier(self, phase: Phase) -> tuple[Point, ...]:
        return tuple(p for p in self.points if p.phase is phase)


def run_from_result(result: SearchResult, source: str) -> Run:
    """A fresh search as a Run, rounded exactly as its saved JSON would be."""
    return run_from_dict(json.loads(to_json(plan_dict(result))), source)


def load_run(path: str) -> Run:
    """Read a saved run; any problem is a ConfigError naming the file (and line or key)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=path, hint=SAVED_RUN_HINT) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read: {error}", file=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"not valid JSON: {error.msg}", file=path, line=error.lineno,
                          column=error.colno, hint=SAVED_RUN_HINT) from None
    return run_from_dict(data, path)


def run_from_dict(data: object, source: str) -> Run:
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", file=source, hint=SAVED_RUN_HINT)
    get = _Reader(source)
    workload = get(data, "workload", dict, "an object")
    frontier = get(data, "frontier", dict, "an object with one list of points per phase")
    points: list[Point] = []
    for phase_name, entries in frontier.items():
        if phase_name not in {ph.value for ph in Phase}:
            raise get.error(f"frontier.{phase_name}", f"unknown phase; expected one of "
                                                      f"{', '.join(ph.value for ph in Phase)}")
        if not isinstance(entries, list):
            raise get.error(f"frontier.{phase_name}", "expected a list of points")
        seen = set()
        for i, entry in enumerate(entries):
            p = _point(get, entry, f"frontier.{phase_name}[{i}]")
            if p.phase.value != phase_name:
                raise get.error(f"frontier.{phase_name}[{i}].phase", f"{p.phase.value!r} point "
                                f"listed under {phase_name!r}")
            if p.key in seen:
                raise get.error(f"frontier.{phase_name}[{i}]", f"a second point for {name(p)}")
            seen.add(p.key)
            points.append(p)
    calibration = None
    if "calibration" in data:
        constants = get(data, "calibration", dict, "an object of calibration constants")
        calibration = tuple((key, get(constants, key, float, "a number", "calibration"))
                            for key in sorted(constants))
    return Run(source=source, model=get(data, "model", str, "a model name"),
               cluster=get(data, "cluster", str, "a cluster name"), calibration=calibration,
               workload=Workload(**{k: get(workload, k, int, "a whole number", "workload")
                                    for k in ("input_tokens", "output_tokens", "context")}),
               points=tuple(points))


class _Reader:
    """Takes typed values out of parsed JSON; a wrong or missing one names the file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.source, key=key, hint=SAVED_RUN_HINT)

    def __call__(self, obj: dict, key: str, kind, expected: str, path: str = ""):
        where = f"{path}.{key}" if path else key
        if key not in obj:
            raise self.error(where, f"missing (expected {expected})")
        value = obj[key]
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            raise self.error(where, f"expected {expected}, found {json.dumps(value)[:60]}")
        return float(value) if kind is float else value


def _point(get: _Reader, d: object, path: str) -> Point:
    if not isinstance(d, dict):
        raise get.error(path, "expected an object (a frontier point)")
    phases = {ph.value: ph for ph in Phase}
    phase = get(d, "phase", str, "prefill or decode", path)
    if phase not in phases:
        raise get.error(f"{path}.phase", f"unknown phase {phase!r}")
    number = lambda key, sub=None: get(get(d, sub, dict, "an object", path) if sub else d, key,
                                       float, "a number", f"{path}.{sub}" if sub else path)
    mesh = get(d, "mesh", dict, "an object of axis sizes", path)
    partition = get(d, "partition", dict, "an object of axis groups", path)
    return Point(
        phase=phases[phase], chips=get(d, "chips", int, "a whole number", path),
        mesh=tuple((axis, get(mesh, axis, int, "a whole number", f"{path}.mesh")) for axis in mesh),
        partition=tuple((group, tuple(get(partition, group, list, "a list of axes", f"{path}.partition")))
                        for group in partition),
        batch=get(d, "batch", int, "a whole number", path), ffn=get(d, "ffn", str, "a layout name", path),
        attention=get(d, "attention", str, "a layout name", path),
        weights=get(d, "weights", str, "a weight format", path), latency_s=number("latency_s"),
        step_latency_s=number("step_latency_s"), mfu=number("mfu"),
        cost_chip_s_per_token=number("cost_chip_s_per_token"), tokens_per_s=number("tokens_per_s"),
        hbm_bytes_per_chip=number("hbm_bytes_per_chip"), hbm_fraction=number("hbm_fraction"),
        bound=get(d, "bound", str, "compute, memory or comm", path),
        compute_s=number("compute", "time_s"), memory_s=number("memory", "time_s"),
        comm_s=number("comm", "time_s"), overhead_s=number("overhead", "time_s"),
    )


# --- the regression gate ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    latency: float = 0.01  # relative rise of latency that still passes
    mfu: float = 0.005     # absolute fall of MFU that still passes (0.005 = 0.5 percentage points)


class Kind(Enum):
    MOVED = "moved"
    APPEARED = "appeared"
    DISAPPEARED = "disappeared"


@dataclass(frozen=True, kw_only=True)
class Change:
    kind: Kind
    before: Point | None  # None when the point appeared
    after: Point | None   # None when it disappeared
    # appeared/disappeared: the other run's fastest point with at least this point's MFU
    reference: Point | None = None
    regressed: bool

    @property
    def point(self) -> Point:
        return self.after or self.before

    @property
    def latency_change(self) -> float:
        """Moved: relative latency change. Appeared/disappeared: this point's latency relative to
        its reference's (disappeared: how much slower the cover is; inf when nothing covers it)."""
        if self.kind is Kind.MOVED:
            return self.after.latency_s / self.before.latency_s - 1
        if self.reference is None:
            return math.inf if self.kind is Kind.DISAPPEARED else -math.inf
        if self.kind is Kind.DISAPPEARED:
            return self.reference.latency_s / self.before.latency_s - 1
        return self.after.latency_s / self.reference.latency_s - 1

    @property
    def mfu_change(self) -> float:
        return self.after.mfu - self.before.mfu if self.kind is Kind.MOVED else 0.0

    @property
    def status(self) -> str:
        if self.regressed:
            return "regressed"
        if self.kind is not Kind.MOVED:
            return {Kind.APPEARED: "new", Kind.DISAPPEARED: "gone"}[self.kind]
        if self.latency_change <= 0 and self.mfu_change >= 0:
            return "improved" if (self.latency_change, self.mfu_change) != (0, 0) else "changed"
        return "changed"

    @property
    def size(self) -> tuple[float, float]:
        return abs(self.latency_change), abs(self.mfu_change)

    def describe(self) -> str:
        """What happened to this point, in words, after its name."""
        p = self.point
        if self.kind is Kind.MOVED:
            b, a = self.before, self.after
            parts = []
            if a.latency_s != b.latency_s:
                parts.append(f"latency {fmt_seconds(b.latency_s)} -> {fmt_seconds(a.latency_s)} "
                             f"({signed_percent(self.latency_change)})")
            if a.mfu != b.mfu:
                parts.append(f"MFU {percent(b.mfu)} -> {percent(a.mfu)} ({points_change(self.mfu_change)})")
            if a.bound != b.bound:
                parts.append(f"bound {b.bound} -> {a.bound}")
            if a.hbm_fraction != b.hbm_fraction:
                parts.append(f"HBM {percent(b.hbm_fraction)} -> {percent(a.hbm_fraction)}")
            others = [words for f, words in (
                ("mesh", "mesh"), ("partition", "axis groups"), ("step_latency_s", "step time"),
                ("cost_chip_s_per_token", "cost per token"), ("tokens_per_s", "tokens/s"),
                ("hbm_bytes_per_chip", "HBM bytes"), ("compute_s", "compute time"), ("memory_s", "memory time"),
                ("comm_s", "network time"), ("overhead_s", "overhead")) if getattr(a, f) != getattr(b, f)]
            if others and not parts:
                parts.append("changed: " + ", ".join(others))
            return "; ".join(parts)
        at = f"{fmt_seconds(p.latency_s)} at {percent(p.mfu)} MFU"
        ref = self.reference
        if self.kind is Kind.APPEARED:
            if ref is None:
                return f"joined the frontier ({at}); no baseline point reached that MFU"
            return (f"joined the frontier ({at}); {percent(abs(self.latency_change))} "
                    f"{'faster' if self.latency_change <= 0 else 'slower'} than the baseline's fastest "
                    f"point with at least its MFU ({name(ref)}, {fmt_seconds(ref.latency_s)})")
        if ref is None:
            return f"left the frontier (was {at}); no current point reaches its MFU"
        return (f"left the frontier (was {at}); the current fastest point with at least its MFU "
                f"({name(ref)}, {fmt_seconds(ref.latency_s)}) is {percent(abs(self.latency_change))} "
                f"{'slower' if self.latency_change > 0 else 'faster'}")


@dataclass(frozen=True, kw_only=True)
class PhaseBest:
    """Best latency and best MFU of one phase's frontier in both runs (None: phase absent)."""

    phase: Phase
    latency_before_s: float | None
    latency_after_s: float | None
    mfu_before: float | None
    mfu_after: float | None
    regressed: bool


@dataclass(frozen=True, kw_only=True)
class Comparison:
    baseline: Run
    current: Run
    tolerance: Tolerance
    changes: tuple[Change, ...]  # regressions first, then the rest; largest change first in each
    phases: tuple[PhaseBest, ...]
    notes: tuple[str, ...]       # model, cluster or workload differences

    @property
    def regressions(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.regressed)

    @property
    def regressed(self) -> bool:
        return any(c.regressed for c in self.changes) or any(p.regressed for p in self.phases)

    @property
    def identical(self) -> bool:
        return not self.changes and not self.notes and self.baseline.phases == self.current.phases

    def verdict(self) -> str:
        if self.identical:
            return "no change"
        limits = (f"latency {signed_percent(self.tolerance.latency)}, "
                  f"MFU {points_change(-self.tolerance.mfu)}")
        if self.regressed:
            phases = [p.phase.value for p in self.phases if p.regressed]
            what = f"{len(self.regressions)} of {len(self.changes)} changed frontier points"
            if phases:
                what += f" and the best of {', '.join(phases)}"
            return f"REGRESSION: {what} beyond tolerance ({limits})"
        return f"ok: {len(self.changes)} changed frontier points, none beyond tolerance ({limits})"


def compare_runs(baseline: Run, current: Run, tolerance: Tolerance = Tolerance(),
                 allow_different_model: bool = False) -> Comparison:
    """Match the frontiers of two runs point by point and judge every change."""
    if baseline.model != current.model and not allow_different_model:
        raise UsageError(f"{baseline.source}: model: {baseline.model!r}, but {current.source} plans "
                         f"{current.model!r}\n  hint: pass --allow-different-model to compare anyway")
    # A phase only one run has is a note and a phase verdict, not a list of its every point.
    shared = set(baseline.phases) & set(current.phases)
    before = {p.key: p for p in baseline.points if p.phase in shared}
    after = {p.key: p for p in current.points if p.phase in shared}
    changes = []
    for key, b in before.items():
        if key not in after:
            cover = _fastest(current.frontier(b.phase), b.mfu - tolerance.mfu)
            lost = cover is None or cover.latency_s > b.latency_s * (1 + tolerance.latency)
            changes.append(Change(kind=Kind.DISAPPEARED, before=b, after=None, reference=cover, regressed=lost))
        elif after[key] != b:
            a = after[key]
            worse = a.latency_s > b.latency_s * (1 + tolerance.latency) or a.mfu < b.mfu - tolerance.mfu
            changes.append(Change(kind=Kind.MOVED, before=b, after=a, regressed=worse))
    for key, a in after.items():
        if key not in before:
            ref = _fastest(baseline.frontier(a.phase), a.mfu)
            changes.append(Change(kind=Kind.APPEARED, before=None, after=a, reference=ref, regressed=False))
    changes.sort(key=lambda c: (not c.regressed, tuple(-s for s in c.size), c.point.key))
    return Comparison(baseline=baseline, current=current, tolerance=tolerance, changes=tuple(changes),
                      phases=tuple(_phase_best(baseline, current, ph, tolerance)
                                   for ph in dict.fromkeys(baseline.phases + current.phases)),
                      notes=_notes(baseline, current))


def _phase_best(baseline: Run, current: Run, phase: Phase, tol: Tolerance) -> PhaseBest:
    def bests(run):
        points = run.frontier(phase)
        if not points:
            return None, None
        return min(p.latency_s for p in points), max(p.mfu for p in points)

    (lb, mb), (la, ma) = bests(baseline), bests(current)
    if lb is None:
        regressed = False
    elif la is None:
        regressed = True
    else:
        regressed = la > lb * (1 + tol.latency) or ma < mb - tol.mfu
    return PhaseBest(phase=phase, latency_before_s=lb, latency_after_s=la, mfu_before=mb, mfu_after=ma,
                     regressed=regressed)


def _notes(baseline: Run, current: Run) -> tuple[str, ...]:
    notes = []
    for what in ("model", "cluster"):
        b, a = getattr(baseline, what), getattr(current, what)
        if b != a:
            notes.append(f"{what} {b} -> {a}")
    if baseline.calibration is not None and current.calibration is not None:
        before, after = dict(baseline.calibration), dict(current.calibration)
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                notes.append(f"calibration {key} {before.get(key, 'absent')} -> {after.get(key, 'absent')}")
    for key, b in vars(baseline.workload).items():
        a = getattr(current.workload, key)
        if a != b:
            notes.append(f"workload {key} {b} -> {a} tokens")
    for ph in baseline.phases:
        if ph not in current.phases:
            notes.append(f"phase {ph.value} is in {baseline.source} but not in {current.source}")
    for ph in current.phases:
        if ph not in baseline.phases:
            notes.append(f"phase {ph.value} is in {current.source} but not in {baseline.source}")
    return tuple(notes)


# --- layouts side by side -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LayoutRow(Pin):
    """One layout (best mesh grouping) at one phase, chip count, batch and weight format: the
    layout as a pin would name it, with its point or the reason there is none."""

    point: Point | None   # None when the layout does not apply or does not fit
    reason: str = ""      # why there is no point
    need_bytes: float | None = None  # HBM per chip the best grouping needs, when it does not fit
    gap: float | None = None  # latency / fastest row's latency at the same phase, chips, batch - 1


def side_by_side(plan: Plan, layouts: tuple[tuple[str, str], ...]) -> tuple[LayoutRow, ...]:
    """Each (ffn, attention) layout in every weight format of the plan, at every phase, chip count
    and batch of its search space (the rows of one phase, chips and batch are consecutive)."""
    plan = _widened(plan, ffn=[f for f, _ in layouts], attention=[a for _, a in layouts])
    space, hbm = plan.space, plan.cluster.chip.hbm_bytes
    batch = np.array(space.batches, dtype=np.int64)
    rows: list[LayoutRow] = []
    for phase in space.phases:
        for chips in space.chips:
            evs = [evaluate(plan.model, plan.cluster, plan.workload, c, batch)
                   for c in candidates(plan, phase, chips=(chips,)) if (c.ffn.name, c.attention.name) in layouts]
            for i, b in enumerate(space.batches):
                group = [_layout_row(evs, i, hbm, LayoutRow(phase=phase, chips=chips, batch=b, ffn=ffn,
                                                            attention=attention, weights=weights, point=None))
                         for ffn, attention in layouts for weights in space.weights]
                fastest = min((r.point.latency_s for r in group if r.point), default=None)
                rows += [replace(r, gap=r.point.latency_s / fastest - 1) if r.point else r for r in group]
    return tuple(rows)


def _layout_row(evs, i: int, hbm_bytes: float, row: LayoutRow) -> LayoutRow:
    """`row` with its point: the fastest of its layout's evaluations (mesh groupings) that fits
    at batch index i; or with the reason there is none."""
    mine = [ev for ev in evs if (ev.candidate.ffn.name, ev.candidate.attention.name, ev.candidate.weights)
            == (row.ffn, row.attention, row.weights)]
    fits = [ev for ev in mine if ev.hbm_bytes[i] <= hbm_bytes]
    if fits:
        return replace(row, point=point(min(fits, key=lambda ev: order_key(ev, i)), i))
    if mine:
        need = min(float(ev.hbm_bytes[i]) for ev in mine)
        return replace(row, need_bytes=need,
                       reason=f"{DOES_NOT_FIT}: needs {fmt_bytes(need)} per chip, has {fmt_bytes(hbm_bytes)}")
    return replace(row, reason=f"does not apply on {row.chips} chips")


# --- a pinned deployment ------------------------------------------------------------------------

GAP_REFERENCES = ("layout", "frontier")


@dataclass(frozen=True, kw_only=True)
class PinGap:
    pin: Pin
    point: Point              # the pinned layout (its best mesh grouping)
    best: Point               # fastest layout at the pin's phase, chips, batch and weights
    layout_gap: float         # point.latency / best.latency - 1
    frontier: Point           # fastest of the phase's frontier (and the pin) with MFU >= the pin's
    frontier_gap: float       # point.latency / frontier.latency - 1


@dataclass(frozen=True, kw_only=True)
class Deployment:
    source: str
    gaps: tuple[PinGap, ...]
    max_gap: float
    gap_to: str  # one of GAP_REFERENCES

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
            where = ("the fastest layout on its chips, batch and weights" if self.gap_to == "layout"
                     else "on the frontier")
            return f"{g.pin.phase.value}: the pinned {_pin_name(g.pin)} is {where} ({at(pinned)})"
        where = ("on the same chips, batch and weights" if self.gap_to == "layout"
                 else f"on {ref.chips} chips at batch {ref.batch}, at no lower MFU")
        return (f"{g.pin.phase.value}: {percent(gap)} slower than {ref.ffn}+{ref.attention} {ref.weights} "
                f"{where} (pinned {_pin_name(g.pin)}: {at(pinned)}; {ref.ffn}+{ref.attention}: {at(ref)})")

    def verdict(self) -> str:
        worst = max(self.gaps, key=self.gap)
        limit = f"--max-gap {percent(self.max_gap)}"
        if self.regressed:
            return f"BEHIND: {worst.pin.phase.value} is {percent(self.gap(worst))} behind, beyond {limit}"
        return f"ok: every pinned layout within {limit} of the {self.gap_to} reference"


def _pin_name(pin: Pin) -> str:
    return f"{pin.ffn}+{pin.attention} {pin.weights.label} on {pin.chips} chips at batch {pin.batch}"


def check_deployment(plan: Plan, max_gap: float = 0.05, gap_to: str = "layout") -> Deployment:
    """How far each pinned layout is from its reference (see the module docstring)."""
    if gap_to not in GAP_REFERENCES:
        raise UsageError(f"--gap-to: expected one of {', '.join(GAP_REFERENCES)}, got {gap_to!r}")
    pins = plan.deployment
    if not pins:
        raise UsageError(f"{plan.source or 'the plan'}: no 'deployment:' section to check\n  hint: pin a "
                         "layout per phase, e.g. deployment: {decode: {chips: 64, batch: 512, ffn: ws2d, "
                         "attention: batch, weights: bf16}}")
    plan = _widened(plan, phases=tuple(dict.fromkeys(p.phase for p in pins)), ffn=[p.ffn for p in pins],
                    attention=[p.attention for p in pins], weights=[p.weights for p in pins])
    frontiers = {ph.phase: ph.frontier for ph in search(plan).phases}
    gaps = []
    for pin in pins:
        ev = best(plan, pin.phase, pin.chips, pin.batch, pin.weights, pin.ffn, pin.attention)
        if ev is None:
            raise InfeasibleError(_pin_infeasible(plan, pin))
        pinned = point(ev, 0)
        fastest = point(best(plan, pin.phase, pin.chips, pin.batch, pin.weights), 0)
        ref = _fastest(frontiers[pin.phase] + (pinned,), pinned.mfu)
        gaps.append(PinGap(pin=pin, point=pinned, best=fastest,
                           layout_gap=pinned.latency_s / fastest.latency_s - 1,
                           frontier=ref, frontier_gap=pinned.latency_s / ref.latency_s - 1))
    return Deployment(source=plan.source, gaps=tuple(gaps), max_gap=max_gap, gap_to=gap_to)


def _widened(plan: Plan, phases: tuple[Phase, ...] | None = None, **extra) -> Plan:
    """`plan` whose search space also holds the `extra` names per axis (ffn, attention, weights)."""
    space = plan.space
    axes = {axis: getattr(space, axis) + tuple(v for v in dict.fromkeys(values) if v not in getattr(space, axis))
            for axis, values in extra.items()}
    return replace(plan, space=replace(space, phases=phases or space.phases, **axes))


def _pin_infeasible(plan: Plan, pin: Pin) -> str:
    mine = [c for c in candidates(plan, pin.phase, chips=(pin.chips,))
            if (c.ffn.name, c.attention.name, c.weights) == (pin.ffn, pin.attention, pin.weights)]
    where = f"{plan.source or 'the plan'}: deployment.{pin.phase.value}: {_pin_name(pin)}"
    if not mine:
        return f"{where} does not apply (its mesh axis groups would be trivial on {pin.chips} chips)"
    need = min(float(evaluate(plan.model, plan.cluster, plan.workload, c, np.array([pin.batch])).hbm_bytes[0])
               for c in mine)
    return (f"{where} {DOES_NOT_FIT}: needs {fmt_bytes(need)} per chip, has "
            f"{fmt_bytes(plan.cluster.chip.hbm_bytes)}\n  hint: pin a smaller batch, int8 weights, "
            "more chips or the batch attention layout")
