"""`planner compare`: compare layouts and gate regressions (the logic is in planner.compare).

This module parses the command line, calls one function of `planner.compare`, and renders what
it returns as a table (text), JSON, CSV or Markdown.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Optional

import typer

from planner.cli import (
    AsciiOpt, ClusterOpt, FormatOpt, ModelOpt, OutputOpt, _ascii, _check_format, _emit, _ints, _phases,
    _render_table, _words, app,
)
from planner.errors import UsageError

HELP = """Compare layouts side by side, gate regressions between two runs, or check a
pinned deployment. The arguments choose which:

\b
planner compare PLAN [--phase --chips --batch --layouts --attention --weights]
    per batch, each layout's latency, MFU, cost, bound and HBM use, and its
    latency relative to the fastest layout at that batch
planner compare BASELINE.json PLAN|CURRENT.json [--latency-tolerance ...]
    match the frontier points of two runs; exit 1 if any got slower or less
    efficient beyond the tolerances
planner compare --deployment PLAN [--max-gap --gap-to]
    how far each pinned layout (the plan's deployment: section) is behind the
    fastest alternative; exit 1 beyond --max-gap

\b
Example:
  planner compare configs/plans/palm-540b-tpu-v4.yaml --phase decode --chips 64 \\
                  --layouts ws1d,ws2d --attention heads,batch --format markdown

Exit codes: 0 ok or no change; 1 a regression, a gap beyond --max-gap or nothing
feasible; 2 invalid input.
"""


@app.command(help=HELP)
def compare(
    first: Optional[str] = typer.Argument(None, metavar="PLAN|BASELINE.json",
                                          help="A plan (preset name or YAML path), or the baseline run."),
    second: Optional[str] = typer.Argument(None, metavar="PLAN|CURRENT.json",
                                           help="With a baseline: a plan to search now, or a saved run."),
    deployment: bool = typer.Option(False, "--deployment", help="Check the plan's pinned deployment."),
    model: Optional[str] = ModelOpt,
    cluster: Optional[str] = ClusterOpt,
    phase: Optional[str] = typer.Option(None, "--phase", metavar="PHASE", help="prefill, decode or both (default: the plan's)."),
    chips: Optional[str] = typer.Option(None, "--chips", metavar="LIST", help="Chip counts, comma list [chips] (default: the plan's)."),
    batch: Optional[str] = typer.Option(None, "--batch", metavar="LIST", help="Batch sizes, comma list [sequences] (default: the plan's)."),
    weights: Optional[str] = typer.Option(None, "--weights", metavar="LIST", help="Weight formats, comma list: bf16, int8 (default: the plan's)."),
    layouts: Optional[str] = typer.Option(None, "--layouts", "--ffn", metavar="LIST", help="FFN layouts, comma list (ws1d, ws2d, wg-x, wg-xy, wg-xyz); side by side also takes ffn+attention, e.g. ws2d+batch."),
    attention: Optional[str] = typer.Option(None, "--attention", metavar="LIST", help="Attention layouts, comma list: heads, batch (default: the plan's)."),
    latency_tolerance: Optional[float] = typer.Option(None, "--latency-tolerance", metavar="PERCENT", help="Gate: allowed latency rise [%] (default 1)."),
    mfu_tolerance: Optional[float] = typer.Option(None, "--mfu-tolerance", metavar="POINTS", help="Gate: allowed MFU fall [percentage points] (default 0.5)."),
    allow_different_model: bool = typer.Option(False, "--allow-different-model", help="Gate: compare runs of different models."),
    max_gap: Optional[float] = typer.Option(None, "--max-gap", metavar="PERCENT", help="Deployment: allowed gap [%] (default 5)."),
    gap_to: Optional[str] = typer.Option(None, "--gap-to", metavar="REFERENCE", help="Deployment: 'layout' (fastest layout on the pin's chips, batch and weights; default) or 'frontier' (fastest frontier point with at least the pin's MFU)."),
    fmt: str = FormatOpt,
    output: Optional[Path] = OutputOpt,
    ascii_only: bool = AsciiOpt,
) -> None:
    from planner import compare as core

    _check_format(fmt)
    given = lambda **flags: [flag for flag, value in flags.items() if value not in (None, False)]
    plan_flags = dict(model=model, cluster=cluster, phase=phase, chips=chips, batch=batch, weights=weights,
                      layouts=layouts, attention=attention)
    gate_flags = given(**{"--latency-tolerance": latency_tolerance, "--mfu-tolerance": mfu_tolerance,
                          "--allow-different-model": allow_different_model})
    deployment_flags = given(**{"--max-gap": max_gap, "--gap-to": gap_to})

    if deployment:
        if first is None or second is not None or _is_run(first):
            raise UsageError("--deployment takes exactly one plan (a preset name or YAML path)")
        _only(gate_flags, "a regression gate (two runs)")
        report = core.check_deployment(_plan(first, pairs_ok=False, **plan_flags),
                                       max_gap=_percent_flag(max_gap, 5.0, "--max-gap"), gap_to=gap_to or "layout")
        _emit_report(_deployment_text(report, fmt), report.regressed, report.verdict(), output)
        return
    _only(deployment_flags, "--deployment")
    if first is None:
        raise UsageError("give a plan (layouts side by side), a baseline run and a plan or run (regression "
                         "gate), or --deployment PLAN; see planner compare --help")
    if second is None:
        if _is_run(first):
            raise UsageError(f"{first}: a saved run needs a plan or a second run to compare against, e.g. "
                             f"planner compare {first} PLAN.yaml")
        _only(gate_flags, "a regression gate (two runs)")
        spec = _plan(first, pairs_ok=True, **plan_flags)
        rows = core.side_by_side(spec, _pairs(layouts, spec, attention_flag=plan_flags["attention"]))
        if fmt == "table":
            _render_table(lambda console: _layouts_table(rows, spec, console, _ascii(ascii_only)), output)
        else:
            _emit(_layouts_text(rows, spec, fmt, first), output)
        return
    if not _is_run(first):
        raise UsageError(f"{first}: the baseline must be a saved run (.json), as written by "
                         f"planner plan PLAN --format json -o FILE")
    tolerance = core.Tolerance(latency=_percent_flag(latency_tolerance, 1.0, "--latency-tolerance"),
                               mfu=_percent_flag(mfu_tolerance, 0.5, "--mfu-tolerance"))
    baseline = core.load_run(first)
    if _is_run(second):
        if given(**plan_flags):
            raise UsageError(f"{', '.join('--' + f for f in given(**plan_flags))}: only for a plan, not for "
                             f"the saved run {second}")
        current = core.load_run(second)
    else:
        from planner.search import search
        current = core.run_from_result(search(_plan(second, pairs_ok=False, **plan_flags)), second)
    report = core.compare_runs(baseline, current, tolerance, allow_different_model)
    _emit_report(_gate_text(report, fmt), report.regressed, report.verdict(), output)


# --- parsing ------------------------------------------------------------------------------------


def _is_run(ref: str) -> bool:
    return ref.lower().endswith(".json")


def _only(flags: list[str], where: str) -> None:
    if flags:
        raise UsageError(f"{', '.join(flags)}: only for {where}")


def _percent_flag(value: Optional[float], default: float, flag: str) -> float:
    """A percentage (or percentage points) from the command line, as a fraction."""
    value = default if value is None else value
    if not 0 <= value < 1e6:
        raise UsageError(f"{flag}: expected a percentage >= 0, got {value}")
    return value / 100.0


def _plan(ref: str, *, pairs_ok: bool, model, cluster, phase, chips, batch, weights, layouts, attention):
    """The plan with the command line's overrides; --layouts sets the FFN layouts (the FFN half
    of each ffn+attention item, which only side by side takes)."""
    from planner.config import load_plan

    ffn = None
    if layouts is not None:
        items = _words(layouts)
        if not pairs_ok and any("+" in item for item in items):
            raise UsageError(f"--layouts: ffn+attention pairs ({layouts!r}) are only for layouts side by "
                             "side; use --layouts FFN,... --attention ATTENTION,...")
        ffn = tuple(dict.fromkeys(item.split("+", 1)[0] for item in items))
    return load_plan(ref, model=model, cluster=cluster, phases=_phases(phase), chips=_ints(chips, "--chips"),
                     batches=_ints(batch, "--batch"), weights=_words(weights), ffn=ffn,
                     attention=_words(attention))


def _pairs(layouts: Optional[str], spec, attention_flag: Optional[str] = None) -> tuple[tuple[str, str], ...]:
    """The (ffn, attention) layouts to show: each ffn+attention item as given, each plain ffn item
    crossed with every attention layout of the plan (after --attention)."""
    from planner.errors import did_you_mean
    from planner.layouts import ATTENTION_LAYOUTS

    pairs = []
    for item in _words(layouts) if layouts is not None else spec.space.ffn:
        ffn, plus, attention = item.partition("+")
        if plus and attention_flag is not None and attention not in spec.space.attention and \
                attention in ATTENTION_LAYOUTS:
            raise UsageError(f"--layouts: {item!r} names attention {attention!r}, but --attention allows only "
                             f"{', '.join(spec.space.attention)}; drop one of the two")
        if plus and attention not in ATTENTION_LAYOUTS:
            hint = did_you_mean(attention, ATTENTION_LAYOUTS)
            raise UsageError(f"--layouts: unknown attention layout {attention!r} in {item!r}; expected one of "
                             f"{', '.join(ATTENTION_LAYOUTS)}" + (f" ({hint})" if hint else ""))
        pairs += [(ffn, attention)] if plus else [(ffn, a) for a in spec.space.attention]
    return tuple(dict.fromkeys(pairs))


def _emit_report(text: str, failed: bool, verdict: str, output: Optional[Path]) -> None:
    _emit(text, output)
    if failed:
        if output is not None:
            print(f"planner compare: {verdict} (report in {output})", file=sys.stderr)
        raise typer.Exit(1)


# --- rendering: layouts side by side -----------------------------------------------------------

LAYOUT_COLUMNS = ("phase", "chips", "batch", "layout", "wts", "latency", "MFU", "cost/tok", "bound", "HBM",
                  "vs best", "note")


def _layout_cells(r) -> tuple[str, ...]:
    from planner.compare import percent, signed_percent
    from planner.units import fmt_seconds

    head = (r.phase.value, str(r.chips), str(r.batch), f"{r.ffn}+{r.attention}", r.weights.label)
    p = r.point
    if p is None:
        return head + ("-",) * 6 + (r.reason,)
    return head + (fmt_seconds(p.latency_s), percent(p.mfu), fmt_seconds(p.cost_chip_s_per_token), p.bound,
                   percent(p.hbm_fraction), "best" if r.gap == 0 else signed_percent(r.gap), "")


def _layouts_summary(spec) -> str:
    return (f"{spec.model.name} on {spec.cluster.name}: each layout at its best mesh grouping; 'vs best' is "
            "the latency relative to the fastest row of the same phase, chips and batch.")


def _layouts_text(rows, spec, fmt: str, plan_arg: str) -> str:
    from planner import render

    if fmt == "json":  # the plan as named on the command line: an installed preset's path varies
        return render.to_json({
            "model": spec.model.name, "cluster": spec.cluster.name, "plan": str(plan_arg),
            "rows": [{"phase": r.phase.value, "chips": r.chips, "batch": r.batch, "ffn": r.ffn,
                      "attention": r.attention, "weights": r.weights.label,
                      "point": render.point_dict(r.point) if r.point else None,
                      "gap": None if r.gap is None else _num(r.gap), "reason": r.reason} for r in rows]})
    if fmt == "csv":
        return _csv(("phase", "chips", "batch", "ffn", "attention", "weights", "latency_s", "mfu",
                     "cost_chip_s_per_token", "bound", "hbm_fraction", "hbm_bytes_per_chip", "gap", "reason"),
                    [(r.phase.value, r.chips, r.batch, r.ffn, r.attention, r.weights.label)
                     + ((_num(r.point.latency_s), _num(r.point.mfu),
                         _num(r.point.cost_chip_s_per_token), r.point.bound,
                         _num(r.point.hbm_fraction), _num(r.point.hbm_bytes_per_chip),
                         _num(r.gap)) if r.point else
                        ("", "", "", "", _num(r.need_bytes / spec.cluster.chip.hbm_bytes) if r.need_bytes else "",
                         _num(r.need_bytes) if r.need_bytes else "", "")) + (r.reason,) for r in rows])
    return (_layouts_summary(spec) + "\n\n"
            + render.markdown_table(LAYOUT_COLUMNS, [_layout_cells(r) for r in rows], right=(1, 2, 5, 6, 7, 9, 10)) + "\n")


def _layouts_table(rows, spec, console, ascii_only: bool) -> None:
    """Per phase and chip count, one row per layout and weight format, batches apart by a blank
    line; a row that does not fit shows the HBM it would need, one that does not apply is n/a."""
    from planner import render
    from planner.compare import percent

    console.print(_layouts_summary(spec), highlight=False, markup=False)
    columns = [render.Column(col, right=col not in ("layout", "wts", "bound"))
               for col in LAYOUT_COLUMNS[2:-1]]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r.phase.value, r.chips), []).append(r)
    for (phase, chips), group in groups.items():
        cells = []
        for i, r in enumerate(group):
            if i and group[i - 1].batch != r.batch:
                cells.append(("",) * len(columns))
            row = _layout_cells(r)[2:-1]
            if r.point is None and r.need_bytes is not None:
                row = row[:-2] + (percent(r.need_bytes / spec.cluster.chip.hbm_bytes), "no fit")
            elif r.point is None:
                row = row[:-1] + ("n/a",)
            cells.append(row)
        console.print()
        render.print_grid(console, columns, cells, title=f"{phase}, {chips} chips", ascii_only=ascii_only)
    console.print()
    console.print("vs best: latency relative to the fastest row at the same batch. no fit: needs more HBM "
                  "than the chip has (HBM shows how much); n/a: the layout does not apply on this mesh.",
                  highlight=False, markup=False, style="dim")


# --- rendering: the regression gate ------------------------------------------------------------


def _gate_text(report, fmt: str) -> str:
    from planner import render
    from planner.compare import name

    if fmt == "json":
        return render.to_json(_gate_dict(report))
    if fmt == "csv":
        rows = []
        for c in report.changes:
            b, a = c.before, c.after
            num = lambda p, field: _num(getattr(p, field)) if p else ""
            finite = lambda x: _num(x) if abs(x) != float("inf") else ""
            rows.append((c.status, c.kind.value, *c.point.key, num(b, "latency_s"), num(a, "latency_s"),
                         finite(c.latency_change), num(b, "mfu"), num(a, "mfu"), _num(c.mfu_change),
                         c.describe()))
        return _csv(("status", "kind", "phase", "chips", "batch", "ffn", "attention", "weights", "latency_before_s",
                     "latency_after_s", "latency_change", "mfu_before", "mfu_after", "mfu_change", "description"),
                    rows)
    sources = (f"baseline {report.baseline.source}, current {report.current.source} "
               f"({report.current.model} on {report.current.cluster})")
    if fmt == "markdown":
        out = [f"**planner compare: {report.verdict()}**", "", _md_escape(sources) + ".", ""]
        out += [f"- {_md_escape(note)}" for note in report.notes] + ([""] if report.notes else [])
        out += [render.markdown_table(("phase", "best latency", "change", "best MFU", "change"),
                                      [_phase_cells(p) for p in report.phases], right=range(1, 5)), ""]
        if report.changes:
            out += ["Changes, largest first:", "",
                    render.markdown_table(("status", "point", "change"),
                                          [(c.status, name(c.point), c.describe()) for c in report.changes],
                                          right=()), ""]
        return "\n".join(out)
    out = wrapped(report.verdict(), 2) + wrapped(sources, 2)
    out += [line for note in report.notes for line in wrapped(f"note: {note}", 6)]
    for p in report.phases:
        cells = _phase_cells(p)
        out += wrapped(f"{cells[0]}: best latency {cells[1]} ({cells[2]}), best MFU {cells[3]} ({cells[4]})", 2)
    if report.changes:
        out.append("changes, largest first:")
        width = max(len(c.status) for c in report.changes)
        out += [line for c in report.changes
                for line in wrapped(f"  {c.status:<{width}}  {name(c.point)}: {c.describe()}", width + 4)]
    return "\n".join(out) + "\n"


def _phase_cells(p) -> tuple[str, ...]:
    from planner.compare import percent, points_change, signed_percent
    from planner.units import fmt_seconds

    def pair(before, after, show, change):
        if before is None or after is None:
            return (f"{show(before)} -> absent" if after is None else f"new: {show(after)}"), "-"
        if before == after:
            return show(after), "no change"
        return f"{show(before)} -> {show(after)}", change(before, after)

    latency = pair(p.latency_before_s, p.latency_after_s, fmt_seconds, lambda b, a: signed_percent(a / b - 1))
    mfu = pair(p.mfu_before, p.mfu_after, percent, lambda b, a: points_change(a - b))
    return (p.phase.value + (" (regressed)" if p.regressed else ""),) + latency + mfu


def _gate_dict(report) -> dict:
    from planner import render

    inf = float("inf")
    return {
        "verdict": report.verdict(), "regressed": report.regressed, "identical": report.identical,
        "baseline": report.baseline.source, "current": report.current.source,
        "model": report.current.model, "cluster": report.current.cluster,
        "tolerance": {"latency": report.tolerance.latency, "mfu": report.tolerance.mfu},
        "notes": list(report.notes),
        "phases": [{"phase": p.phase.value, "regressed": p.regressed, "latency_before_s": p.latency_before_s,
                    "latency_after_s": p.latency_after_s, "mfu_before": p.mfu_before, "mfu_after": p.mfu_after}
                   for p in report.phases],
        "changes": [{"status": c.status, "kind": c.kind.value, "regressed": c.regressed,
                     "point": dict(zip(("phase", "chips", "batch", "ffn", "attention", "weights"), c.point.key)),
                     "before": render.point_dict(c.before) if c.before else None,
                     "after": render.point_dict(c.after) if c.after else None,
                     "reference": render.point_dict(c.reference) if c.reference else None,
                     "latency_change": None if abs(c.latency_change) == inf else _num(c.latency_change),
                     "mfu_change": _num(c.mfu_change), "description": c.describe()}
                    for c in report.changes],
    }


# --- rendering: a pinned deployment ------------------------------------------------------------


def _deployment_text(report, fmt: str) -> str:
    from planner import render
    from planner.compare import name, percent

    if fmt in ("json", "csv"):
        pins = [{"phase": g.pin.phase.value, "gap": _num(report.gap(g)),
                 "layout_gap": _num(g.layout_gap), "frontier_gap": _num(g.frontier_gap),
                 "pinned": render.point_dict(g.point), "best_layout": render.point_dict(g.best),
                 "frontier_reference": render.point_dict(g.frontier), "description": report.describe(g)}
                for g in report.gaps]
        if fmt == "json":
            return render.to_json({"verdict": report.verdict(), "regressed": report.regressed,
                                   "plan": report.source, "max_gap": report.max_gap, "gap_to": report.gap_to,
                                   "pins": pins})
        return _csv(("phase", "pinned", "latency_s", "mfu", "reference", "reference_latency_s", "gap",
                     "layout_gap", "frontier_gap", "description"),
                    [(g.pin.phase.value, name(g.point), _num(g.point.latency_s), _num(g.point.mfu),
                      name(report.reference(g)), _num(report.reference(g).latency_s),
                      p["gap"], p["layout_gap"], p["frontier_gap"], p["description"])
                     for g, p in zip(report.gaps, pins)])
    if fmt == "markdown":
        from planner.units import fmt_seconds
        rows = [(g.pin.phase.value, name(g.point), fmt_seconds(g.point.latency_s), percent(g.point.mfu),
                 name(report.reference(g)), fmt_seconds(report.reference(g).latency_s),
                 percent(report.reference(g).mfu), percent(report.gap(g))) for g in report.gaps]
        return "\n".join([f"**planner compare --deployment: {report.verdict()}**", "",
                          _md_escape(f"Plan {report.source}; gap = pinned latency / {report.gap_to} reference "
                                     "latency - 1."), "",
                          render.markdown_table(("phase", "pinned", "latency", "MFU", f"{report.gap_to} reference",
                                                 "latency", "MFU", "gap"), rows, right=(2, 3, 5, 6, 7)), ""])
    return "\n".join(wrapped(report.verdict(), 2) +
                     [line for g in report.gaps for line in wrapped(report.describe(g), 2)]) + "\n"


# --- helpers ------------------------------------------------------------------------------------


def wrapped(text: str, hang: int) -> list[str]:
    """`text` as plain-text lines 80 columns wide, continuation lines indented `hang`."""
    import textwrap
    return textwrap.wrap(text, 80, subsequent_indent=" " * hang, break_on_hyphens=False) or [""]


def _num(x: float) -> float:
    """Rounded as `planner plan` rounds (6 significant digits)."""
    return float(f"{x:.6g}")


def _csv(header, rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _md_escape(text: str) -> str:
    """Text outside a table: keep file names and arrows from turning into Markdown."""
    for ch in "\\`*_[]<>|":
        text = text.replace(ch, "\\" + ch)
    return text
