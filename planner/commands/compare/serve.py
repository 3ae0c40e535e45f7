"""The regression gate for request-level results: a saved `planner serve --format json` run
against a plan served again with the flags the run records (`serve_runs.request_for`) or against
a second saved serve run. The same gate as for plans (`planner.commands.compare.compare`: `Tolerance`,
`match`, `verdict`, `provenance_notes`), on deployments instead of frontier points:

- Rows are matched by `ServeRow.key`: mode, and each stage's chips, batch, FFN and attention
  layouts and weight format. A matched row whose figures differ has *moved*; others *appeared*
  or *disappeared*.
- A moved row regressed when its TTFT or TPOT rose by more than `Tolerance.latency` (relative),
  or its output tokens/s per chip fell, or its cost per million input or output tokens rose, by
  more than `Tolerance.throughput` (relative). A mode regressed when its best TPOT or best
  tokens/s per chip did, or when it has no rows now. A row that disappeared regressed unless the
  current frontier of its mode covers it: some row with at least its tokens/s per chip (less the
  tolerance) whose TPOT is no worse (plus the tolerance). Appearing is never a regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.commands.compare.compare import (
    Kind,
    Tolerance,
    best_regressed,
    extremes,
    match,
    material,
    provenance_notes,
    relative_change,
    verdict,
)
from planner.commands.serve.runs import ServeRow, ServeRun
from planner.errors import UsageError
from planner.units import fmt_seconds, signed_percent

# (field, words, +1 when higher is better, which tolerance, how it is shown)
_usd = lambda x: f"{x:.3g} USD"
FIGURES = (
    ("ttft_s", "TTFT", -1, "latency", fmt_seconds),
    ("tpot_s", "TPOT", -1, "latency", fmt_seconds),
    ("output_tokens_per_s_per_chip", "tokens/s per chip", +1, "throughput", lambda x: f"{x:.4g}"),
    ("usd_per_million_input_tokens", "$/M input", -1, "throughput", _usd),
    ("usd_per_million_output_tokens", "$/M output", -1, "throughput", _usd),
)
OTHER_FIGURES = (
    ("e2e_s", "end-to-end"),
    ("chips", "chips"),
    ("prefill_pools_per_decode_pool", "pool ratio"),
    ("kv_transfer_s", "KV transfer time"),
    ("tokens_per_s_per_user", "tokens/s per user"),
)


def _change(before: float | None, after: float | None) -> float | None:
    """Relative change after / before - 1 (None when a side has no figure)."""
    if before is None or after is None or before == after:
        return None if before is None or after is None else 0.0
    return after / before - 1 if before else math.inf


def _fastest(rows, min_per_chip: float) -> ServeRow | None:
    """The row with the lowest TPOT among those with at least `min_per_chip` tokens/s per chip."""
    able = [r for r in rows if r.output_tokens_per_s_per_chip >= min_per_chip]
    return min(able, key=lambda r: (r.tpot_s, -r.output_tokens_per_s_per_chip, r.key)) if able else None


@dataclass(frozen=True, kw_only=True)
class ServeChange:
    kind: Kind
    before: ServeRow | None  # None when the row appeared
    after: ServeRow | None  # None when it disappeared
    reference: ServeRow | None = None  # appeared/disappeared: the other run's fastest cover
    regressed: bool

    @property
    def point(self) -> ServeRow:
        return self.after or self.before

    def changes(self) -> dict[str, float]:
        """Moved: the relative change of each judged figure that has one on both sides."""
        if self.kind is not Kind.MOVED:
            return {}
        out = {f: _change(getattr(self.before, f), getattr(self.after, f)) for f, *_ in FIGURES}
        return {f: c for f, c in out.items() if c is not None}

    @property
    def tpot_change(self) -> float:
        """Relative TPOT change (see compare.relative_change)."""
        value = lambda row: None if row is None else row.tpot_s  # noqa: E731
        return relative_change(self.kind, value(self.before), value(self.after), value(self.reference))

    @property
    def status(self) -> str:
        if self.regressed:
            return "regressed"
        if self.kind is not Kind.MOVED:
            return {Kind.APPEARED: "new", Kind.DISAPPEARED: "gone"}[self.kind]
        signs = {f: sign for f, _, sign, *_ in FIGURES}
        changes = self.changes()
        if any(c != 0 for c in changes.values()) and all(c * signs[f] >= 0 for f, c in changes.items()):
            return "improved"
        return "changed"

    @property
    def size(self) -> tuple[float, ...]:
        if self.kind is Kind.MOVED:
            return (max((abs(c) for c in self.changes().values()), default=0.0),)
        return (abs(self.tpot_change),)

    def describe(self) -> str:
        r = self.point
        if self.kind is Kind.MOVED:
            b, a, changes = self.before, self.after, self.changes()
            parts = [
                f"{words} {show(getattr(b, f))} -> {show(getattr(a, f))} ({signed_percent(changes[f])})"
                for f, words, _, _, show in FIGURES
                if changes.get(f)
            ]
            if (b.usd_per_million_output_tokens is None) != (a.usd_per_million_output_tokens is None):
                parts.append("price " + ("added" if b.usd_per_million_output_tokens is None else "removed"))
            others = [words for f, words in OTHER_FIGURES if getattr(a, f) != getattr(b, f)]
            others += [
                f"{s} {words}"
                for s in ("prefill", "decode")
                for f, words in (("mfu", "MFU"), ("hbm_fraction", "HBM"), ("bound", "bound"), ("latency_s", "latency"))
                if getattr(getattr(a, s), f) != getattr(getattr(b, s), f)
            ]
            if others and not parts:
                parts.append("changed: " + ", ".join(others))
            return "; ".join(parts)
        at = f"TPOT {fmt_seconds(r.tpot_s)} at {r.output_tokens_per_s_per_chip:.4g} tokens/s per chip"
        ref = self.reference
        if self.kind is Kind.APPEARED:
            if ref is None:
                return f"joined the frontier ({at}); no baseline row reached that throughput per chip"
            return (
                f"joined the frontier ({at}); TPOT {signed_percent(self.tpot_change)} against the "
                f"baseline's fastest row with at least its tokens/s per chip ({ref})"
            )
        if ref is None:
            return f"left the frontier (was {at}); no current row reaches its tokens/s per chip"
        return (
            f"left the frontier (was {at}); the current fastest row with at least its tokens/s per "
            f"chip ({ref}) has TPOT {signed_percent(self.tpot_change)}"
        )


@dataclass(frozen=True, kw_only=True)
class ModeBest:
    """Best TPOT and best tokens/s per chip of one mode's frontier in both runs (None: no rows)."""

    mode: str
    tpot_before_s: float | None
    tpot_after_s: float | None
    per_chip_before: float | None
    per_chip_after: float | None
    regressed: bool


@dataclass(frozen=True, kw_only=True)
class ServeComparison:
    baseline: ServeRun
    current: ServeRun
    tolerance: Tolerance
    changes: tuple[ServeChange, ...]  # regressions first, then the rest; largest change first in each
    modes: tuple[ModeBest, ...]
    notes: tuple[str, ...]  # why things may have moved: provenance, workload, targets, price, search

    @property
    def regressions(self) -> tuple[ServeChange, ...]:
        return tuple(c for c in self.changes if c.regressed)

    @property
    def regressed(self) -> bool:
        return bool(self.regressions) or any(m.regressed for m in self.modes)

    @property
    def identical(self) -> bool:
        return not self.changes and not material(self.notes) and self.baseline.modes == self.current.modes

    def verdict(self) -> str:
        t = self.tolerance
        limits = (
            f"TTFT and TPOT {signed_percent(t.latency)}, tokens/s per chip {signed_percent(-t.throughput)}, "
            f"$/Mtok {signed_percent(t.throughput)}"
        )
        return verdict(self, [m.mode for m in self.modes if m.regressed], "deployments", limits)


def compare_serve_runs(
    baseline: ServeRun, current: ServeRun, tolerance: Tolerance = Tolerance(), allow_different_model: bool = False
) -> ServeComparison:
    """Match the deployments of two serve runs row by row and judge every change."""
    if baseline.model != current.model and not allow_different_model:
        raise UsageError(
            f"{baseline.source}: model: {baseline.model!r}, but {current.source} serves "
            f"{current.model!r}\n  hint: pass --allow-different-model to compare anyway"
        )
    shared = set(baseline.modes) & set(current.modes)

    def worse(b: ServeRow, a: ServeRow) -> bool:
        for f, _, sign, which, _ in FIGURES:
            c = _change(getattr(b, f), getattr(a, f))
            if c is not None and -sign * c > getattr(tolerance, which):
                return True
        return False

    def disappeared(b: ServeRow) -> ServeChange:
        cover = _fastest(current.frontier(b.mode), b.output_tokens_per_s_per_chip * (1 - tolerance.throughput))
        lost = cover is None or cover.tpot_s > b.tpot_s * (1 + tolerance.latency)
        return ServeChange(kind=Kind.DISAPPEARED, before=b, after=None, reference=cover, regressed=lost)

    def appeared(a: ServeRow) -> ServeChange:
        ref = _fastest(baseline.frontier(a.mode), a.output_tokens_per_s_per_chip)
        return ServeChange(kind=Kind.APPEARED, before=None, after=a, reference=ref, regressed=False)

    changes = match(
        {r.key: r for r in baseline.rows if r.mode in shared},
        {r.key: r for r in current.rows if r.mode in shared},
        moved=lambda b, a: ServeChange(kind=Kind.MOVED, before=b, after=a, regressed=worse(b, a)),
        disappeared=disappeared,
        appeared=appeared,
    )
    changes.sort(key=lambda c: (not c.regressed, tuple(-s for s in c.size), c.point.key))
    modes = [m for m in baseline.modes] + [m for m in current.modes if m not in baseline.modes]
    return ServeComparison(
        baseline=baseline,
        current=current,
        tolerance=tolerance,
        changes=tuple(changes),
        modes=tuple(_mode_best(baseline, current, m, tolerance) for m in modes),
        notes=tuple(_notes(baseline, current)),
    )


def _mode_best(baseline: ServeRun, current: ServeRun, mode: str, tol: Tolerance) -> ModeBest:
    before, after = (
        extremes(run.frontier(mode), lambda r: r.tpot_s, lambda r: r.output_tokens_per_s_per_chip)
        for run in (baseline, current)
    )
    (tb, pb), (ta, pa) = before, after
    regressed = best_regressed(
        before, after, lambda b, a: a[0] > b[0] * (1 + tol.latency) or a[1] < b[1] * (1 - tol.throughput)
    )
    return ModeBest(
        mode=mode, tpot_before_s=tb, tpot_after_s=ta, per_chip_before=pb, per_chip_after=pa, regressed=regressed
    )


def _notes(baseline: ServeRun, current: ServeRun) -> list[str]:
    notes = provenance_notes(baseline, current)
    show = lambda v: "none" if v is None else fmt_seconds(v) if isinstance(v, float) else str(v)
    for what, unit in (("workload", " tokens"), ("targets", ""), ("search", "")):
        before, after = dict(getattr(baseline, what)), dict(getattr(current, what))
        for key in before:
            b, a = before[key], after.get(key)
            if b != a:
                b, a = ((",".join(map(str, v)) if isinstance(v, tuple) else show(v)) for v in (b, a))
                notes.append(f"{what} {key} {b} -> {a}{unit}")
    b, a = baseline.price_usd_per_chip_hour, current.price_usd_per_chip_hour
    if b != a:
        notes.append(
            f"price {'none' if b is None else f'{b:g}'} -> {'none' if a is None else f'{a:g}'} USD per chip-hour"
        )
    if baseline.all != current.all:
        notes.append(f"--all {'on' if baseline.all else 'off'} -> {'on' if current.all else 'off'}")
    notes += [
        f"mode {m} is in {baseline.source} but not in {current.source}"
        for m in baseline.modes
        if m not in current.modes
    ]
    notes += [
        f"mode {m} is in {current.source} but not in {baseline.source}"
        for m in current.modes
        if m not in baseline.modes
    ]
    for m in baseline.modes:
        if m in current.modes and baseline.frontier(m) and not current.frontier(m):
            notes.append(f"mode {m}: nothing meets the targets in {current.source}")
    return notes
