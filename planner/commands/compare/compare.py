"""Compare plan results: two runs (the regression gate, here), layouts side by side and a pinned
deployment against the best alternatives (`planner.commands.compare.deployment`). Pure functions over
search results; `planner.cli.compare` parses the command line and `planner.render.compare`
renders what these return.

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

import math
from dataclasses import dataclass
from enum import Enum

from planner.commands.runs import Run, name
from planner.errors import UsageError
from planner.search.search import Point
from planner.specs.hardware import Calibration
from planner.specs.plan import Phase
from planner.units import fmt_percent, fmt_rate, fmt_seconds, points_change, signed_percent

percent = fmt_percent


def fastest(points, min_mfu: float) -> Point | None:
    """The fastest point with MFU >= min_mfu (ties: higher MFU, then key), or None."""
    able = [p for p in points if p.mfu >= min_mfu]
    return min(able, key=lambda p: (p.latency_s, -p.mfu, p.key)) if able else None


# --- the regression gate ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    latency: float = 0.01  # relative rise of latency (serve: TTFT, TPOT) that still passes
    mfu: float = 0.005  # absolute fall of MFU that still passes (0.005 = 0.5 percentage points)
    throughput: float = 0.01  # serve: relative fall of tokens/s per chip (rise of $/Mtok) that passes


class Kind(Enum):
    MOVED = "moved"
    APPEARED = "appeared"
    DISAPPEARED = "disappeared"


def relative_change(kind: Kind, before: float | None, after: float | None, reference: float | None) -> float:
    """Moved: after / before - 1. Appeared/disappeared: this point's figure relative to its
    reference's (disappeared: how much slower the cover is; inf when nothing covers it)."""
    if kind is Kind.MOVED:
        return after / before - 1
    if reference is None:
        return math.inf if kind is Kind.DISAPPEARED else -math.inf
    if kind is Kind.DISAPPEARED:
        return reference / before - 1
    return after / reference - 1


@dataclass(frozen=True, kw_only=True)
class Change:
    kind: Kind
    before: Point | None  # None when the point appeared
    after: Point | None  # None when it disappeared
    # appeared/disappeared: the other run's fastest point with at least this point's MFU
    reference: Point | None = None
    regressed: bool

    @property
    def point(self) -> Point:
        return self.after or self.before

    @property
    def latency_change(self) -> float:
        """Relative latency change (see relative_change)."""
        value = lambda p: None if p is None else p.latency_s  # noqa: E731
        return relative_change(self.kind, value(self.before), value(self.after), value(self.reference))

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
                parts.append(
                    f"latency {fmt_seconds(b.latency_s)} -> {fmt_seconds(a.latency_s)} "
                    f"({signed_percent(self.latency_change)})"
                )
            if a.mfu != b.mfu:
                parts.append(f"MFU {percent(b.mfu)} -> {percent(a.mfu)} ({points_change(self.mfu_change)})")
            if a.bound != b.bound:
                parts.append(f"bound {b.bound} -> {a.bound}")
            if a.hbm_fraction != b.hbm_fraction:
                parts.append(f"HBM {percent(b.hbm_fraction)} -> {percent(a.hbm_fraction)}")
            others = [
                words
                for f, words in (
                    ("mesh", "mesh"),
                    ("partition", "axis groups"),
                    ("step_latency_s", "step time"),
                    ("cost_chip_s_per_token", "cost per token"),
                    ("tokens_per_s", "tokens/s"),
                    ("hbm_bytes_per_chip", "HBM bytes"),
                    ("compute_s", "compute time"),
                    ("memory_s", "memory time"),
                    ("comm_s", "network time"),
                    ("overhead_s", "overhead"),
                )
                if getattr(a, f) != getattr(b, f)
            ]
            if others and not parts:
                parts.append("changed: " + ", ".join(others))
            return "; ".join(parts)
        at = f"{fmt_seconds(p.latency_s)} at {percent(p.mfu)} MFU"
        ref = self.reference
        if self.kind is Kind.APPEARED:
            if ref is None:
                return f"joined the frontier ({at}); no baseline point reached that MFU"
            return (
                f"joined the frontier ({at}); {percent(abs(self.latency_change))} "
                f"{'faster' if self.latency_change <= 0 else 'slower'} than the baseline's fastest "
                f"point with at least its MFU ({name(ref)}, {fmt_seconds(ref.latency_s)})"
            )
        if ref is None:
            return f"left the frontier (was {at}); no current point reaches its MFU"
        return (
            f"left the frontier (was {at}); the current fastest point with at least its MFU "
            f"({name(ref)}, {fmt_seconds(ref.latency_s)}) is {percent(abs(self.latency_change))} "
            f"{'slower' if self.latency_change > 0 else 'faster'}"
        )


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
    notes: tuple[str, ...]  # model, cluster or workload differences

    @property
    def regressions(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.regressed)

    @property
    def regressed(self) -> bool:
        return any(c.regressed for c in self.changes) or any(p.regressed for p in self.phases)

    @property
    def identical(self) -> bool:
        return not self.changes and not material(self.notes) and self.baseline.phases == self.current.phases

    def verdict(self) -> str:
        limits = f"latency {signed_percent(self.tolerance.latency)}, MFU {points_change(-self.tolerance.mfu)}"
        return verdict(self, [p.phase.value for p in self.phases if p.regressed], "frontier points", limits)


def verdict(report, regressed_groups: list[str], what: str, limits: str) -> str:
    """The first line of a gate's report (plan or serve): 'no change', 'ok: ...' or 'REGRESSION: ...'."""
    if report.identical:
        return "no change"
    if report.regressed:
        text = f"{len(report.regressions)} of {len(report.changes)} changed {what}"
        if regressed_groups:
            text += f" and the best of {', '.join(regressed_groups)}"
        return f"REGRESSION: {text} beyond tolerance ({limits})"
    return f"ok: {len(report.changes)} changed {what}, none beyond tolerance ({limits})"


def match(before: dict, after: dict, *, moved, disappeared, appeared) -> list:
    """The changes between two runs' keyed items (both gates match this way): `moved(b, a)` for a
    key in both whose item differs, `disappeared(b)` and `appeared(a)` for a key in one run only."""
    changes = [
        disappeared(b) if key not in after else moved(b, after[key]) for key, b in before.items() if after.get(key) != b
    ]
    return changes + [appeared(a) for key, a in after.items() if key not in before]


def compare_runs(
    baseline: Run, current: Run, tolerance: Tolerance = Tolerance(), allow_different_model: bool = False
) -> Comparison:
    """Match the frontiers of two runs point by point and judge every change."""
    if baseline.model != current.model and not allow_different_model:
        raise UsageError(
            f"{baseline.source}: model: {baseline.model!r}, but {current.source} plans "
            f"{current.model!r}\n  hint: pass --allow-different-model to compare anyway"
        )
    # A phase only one run has is a note and a phase verdict, not a list of its every point.
    shared = set(baseline.phases) & set(current.phases)

    def disappeared(b: Point) -> Change:
        cover = fastest(current.frontier(b.phase), b.mfu - tolerance.mfu)
        lost = cover is None or cover.latency_s > b.latency_s * (1 + tolerance.latency)
        return Change(kind=Kind.DISAPPEARED, before=b, after=None, reference=cover, regressed=lost)

    def moved(b: Point, a: Point) -> Change:
        worse = a.latency_s > b.latency_s * (1 + tolerance.latency) or a.mfu < b.mfu - tolerance.mfu
        return Change(kind=Kind.MOVED, before=b, after=a, regressed=worse)

    def appeared(a: Point) -> Change:
        ref = fastest(baseline.frontier(a.phase), a.mfu)
        return Change(kind=Kind.APPEARED, before=None, after=a, reference=ref, regressed=False)

    changes = match(
        {p.key: p for p in baseline.points if p.phase in shared},
        {p.key: p for p in current.points if p.phase in shared},
        moved=moved,
        disappeared=disappeared,
        appeared=appeared,
    )
    changes.sort(key=lambda c: (not c.regressed, tuple(-s for s in c.size), c.point.key))
    return Comparison(
        baseline=baseline,
        current=current,
        tolerance=tolerance,
        changes=tuple(changes),
        phases=tuple(
            _phase_best(baseline, current, ph, tolerance)
            for ph in sorted(set(baseline.phases + current.phases), key=list(Phase).index)
        ),  # prefill first, as plan
        notes=_notes(baseline, current),
    )


def extremes(points, lower, higher) -> tuple:
    """(the lowest `lower`, the highest `higher`) over `points`, or (None, None) when there are none."""
    if not points:
        return None, None
    return min(lower(p) for p in points), max(higher(p) for p in points)


def best_regressed(before: tuple, after: tuple, worse) -> bool:
    """Whether a phase's (or mode's) best figures regressed: it had points and has none left, or
    `worse(before, after)` on their (lowest latency, highest figure of merit)."""
    if before[0] is None:
        return False
    return after[0] is None or worse(before, after)


def _phase_best(baseline: Run, current: Run, phase: Phase, tol: Tolerance) -> PhaseBest:
    before, after = (
        extremes(run.frontier(phase), lambda p: p.latency_s, lambda p: p.mfu) for run in (baseline, current)
    )
    (lb, mb), (la, ma) = before, after
    regressed = best_regressed(before, after, lambda b, a: a[0] > b[0] * (1 + tol.latency) or a[1] < b[1] - tol.mfu)
    return PhaseBest(
        phase=phase, latency_before_s=lb, latency_after_s=la, mfu_before=mb, mfu_after=ma, regressed=regressed
    )


def calibrated(run) -> bool | None:
    """Whether a saved run's cluster was calibrated: its `calibrated` key (serve runs), else from
    the calibration constants it records (ideal constants: uncalibrated); None when it records
    neither (older runs)."""
    from planner.specs.hardware import FIELDS_OF_CALIBRATION, Calibration

    if getattr(run, "calibrated", None) is not None:
        return run.calibrated
    if run.calibration is None:
        return None
    ideal = Calibration()
    recorded = dict(run.calibration)
    return any(name in recorded and recorded[name] != getattr(ideal, name) for name in FIELDS_OF_CALIBRATION)


def calibration_words(report) -> str:
    """A gate's word on calibration (plan and serve runs): which side's cluster is uncalibrated
    (ideal constants, or constants borrowed from another cluster, never fitted: its absolute
    figures are optimistic or another chip's), as the run's recorded `calibration_status` says,
    or '' when both are calibrated or neither says. Not one of the report's notes: it does not
    make two runs differ."""
    ideal = "ideal calibration constants, never fitted to measurements"
    by_status: dict[str, list[str]] = {}
    for which, run in (("baseline", report.baseline), ("current", report.current)):
        if calibrated(run) is False:
            status = getattr(run, "calibration_status", None)
            by_status.setdefault(ideal if status in (None, "uncalibrated") else status, []).append(
                f"{which} ({run.cluster})"
            )
    if not by_status:
        return ""
    return (
        "uncalibrated: "
        + "; ".join(f"the cluster of the {' and the '.join(sides)} has {status}" for status, sides in by_status.items())
        + " (fit them with `planner calibrate`)"
    )


VERSION_NOTE = "planner version"  # a note that alone does not make two runs differ


def material(notes) -> list[str]:
    """The notes that say the two runs' inputs differ (a new planner version alone does not)."""
    return [n for n in notes if not n.startswith(VERSION_NOTE)]


def _figure(key: str, value) -> str:
    """A recorded hardware figure in human units."""
    if isinstance(value, str) or value is None:
        return str(value)
    for suffix, unit in (("flop_per_s", "FLOP/s"), ("bytes_per_s", "B/s"), ("bytes", "B")):
        if key.endswith(suffix):
            return fmt_rate(value, unit)
    return f"{value:g}"


def provenance_notes(baseline, current) -> list[str]:
    """Why figures may have moved, from what both saved runs record (`runs.provenance_dict`):
    model, cluster, calibration constants, chip figures, model shape, planner version. A run that
    lacks a record (older runs) says nothing about it."""
    notes = [
        f"{what} {getattr(baseline, what)} -> {getattr(current, what)}"
        for what in ("model", "cluster")
        if getattr(baseline, what) != getattr(current, what)
    ]
    for what, show in (
        ("calibration", lambda k, v: str(v)),
        ("hardware", _figure),
        ("model_shape", lambda k, v: str(v)),
    ):
        b, a = getattr(baseline, what), getattr(current, what)
        if b is None or a is None:
            continue
        before, after = dict(b), dict(a)
        if what == "calibration":  # a constant a run does not record (it predates it) had its default
            defaults = {k: v for k, v in vars(Calibration()).items() if isinstance(v, (int, float))}
            before, after = (
                {k: v for k, v in defaults.items() if k in after} | before,
                {k: v for k, v in defaults.items() if k in before} | after,
            )
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                old, new = (show(key, d[key]) if key in d else "absent" for d in (before, after))
                notes.append(f"{what.replace('_', ' ')} {key} {old} -> {new}")
    b, a = baseline.runnable_on, current.runnable_on  # None: every layout searched (and older runs)
    if b != a:
        notes.append(f"search kept to what an engine runs (--runnable-on) {b or 'none'} -> {a or 'none'}")
    b, a = baseline.planner_version, current.planner_version
    if b is not None and a is not None and b != a:
        notes.append(f"{VERSION_NOTE} {b} -> {a}")
    return notes


def _notes(baseline: Run, current: Run) -> tuple[str, ...]:
    notes = provenance_notes(baseline, current)
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
