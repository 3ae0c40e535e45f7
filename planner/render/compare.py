"""Renderers of `planner compare`: layouts side by side, the regression gate's report and the
deployment check, as a table (text), JSON, CSV or Markdown."""

from __future__ import annotations

import csv
import io

from planner.commands.compare.compare import calibration_words
from planner.commands.runs import point_dict
from planner.render import common as render_common
from planner.search.frontier import RESOLUTION
from planner.units import to_json

# --- rendering: layouts side by side -----------------------------------------------------------

LAYOUT_COLUMNS = (
    "phase",
    "chips",
    "batch",
    "layout",
    "wts",
    "latency",
    "MFU",
    "cost/tok",
    "bound",
    "HBM",
    "vs best",
    "note",
)


def _layout_cells(r) -> tuple[str, ...]:
    from planner.units import fmt_percent as percent
    from planner.units import fmt_seconds, signed_percent

    head = (r.phase.value, str(r.chips), str(r.batch), _layout_label(r), r.weights.label)
    p = r.point
    if p is None:
        return head + ("-",) * 6 + (r.reason,)
    return head + (
        fmt_seconds(p.latency_s),
        percent(p.mfu),
        fmt_seconds(p.cost_chip_s_per_token),
        p.bound,
        percent(p.hbm_fraction),
        "best" if r.gap < RESOLUTION else signed_percent(r.gap),
        "",
    )


def _layout_label(r) -> str:
    """'ws1d+heads', 'PP2 ws1d+heads' for a pipelined layout, and an MoE model's expert layout
    (the fastest) after it: 'ws1d+heads+ep-yz' (as `plan` names them)."""
    experts = f"+{r.point.experts}" if r.point is not None and r.point.experts else ""
    return (f"PP{r.stages} " if r.stages > 1 else "") + f"{r.ffn}+{r.attention}{experts}"


def _pipelined(spec) -> bool:
    """The plan searches pipeline stages: its rows then carry `stages` (JSON, CSV)."""
    return any(p > 1 for p in spec.space.stages)


def _layouts_summary(spec) -> str:
    note = render_common.calibration_note(spec.cluster)
    w = spec.workload
    return (
        f"{spec.model.name} on {spec.cluster.name}: input {w.input_tokens}, output {w.output_tokens}, context "
        f"{w.context} tokens{'; ' + spec.cluster.engine_note if spec.cluster.engine_note else ''}; each "
        "layout at its best mesh grouping; 'vs best' is "
        "the latency relative to the fastest row of the same phase, chips and batch (within 0.1%: best)."
        + (f" {render_common.runnable_note(spec).rstrip()}" if spec.space.runnable_on else "")
        + (f"\n{note}" if note else "")
    )


def layouts_text(rows, spec, fmt: str, plan_arg: str) -> str:

    if fmt == "json":  # the plan as named on the command line: an installed preset's path varies
        return to_json(
            {
                "model": spec.model.name,
                "cluster": spec.cluster.name,
                "plan": str(plan_arg),
                "calibrated": spec.cluster.calibrated,
                "calibration_status": spec.cluster.calibration_status,
                "engine": spec.cluster.engine,
                **({"runnable_on": spec.space.runnable_on} if spec.space.runnable_on else {}),
                "rows": [
                    {
                        "phase": r.phase.value,
                        "chips": r.chips,
                        "batch": r.batch,
                        "ffn": r.ffn,
                        "attention": r.attention,
                        "weights": r.weights.label,
                        **({"stages": r.stages} if _pipelined(spec) else {}),
                        "point": point_dict(r.point) if r.point else None,
                        "gap": None if r.gap is None else cell_number(r.gap),
                        "reason": r.reason,
                    }
                    for r in rows
                ],
            }
        )
    if fmt == "csv":
        calibration = render_common.calibration_label(spec.cluster)
        staged, moe = _pipelined(spec), spec.model.experts is not None
        runnable = spec.space.runnable_on  # its column only when the layouts were kept to an engine
        return csv_text(
            (
                "phase",
                "chips",
                "batch",
                "ffn",
                "attention",
                "weights",
                "latency_s",
                "mfu",
                "cost_chip_s_per_token",
                "bound",
                "hbm_fraction",
                "hbm_bytes_per_chip",
                "gap",
                "reason",
                "calibration",
            )
            + (("stages",) if staged else ())
            + (("experts",) if moe else ())
            + ("engine",)
            + (("runnable_on",) if runnable else ()),
            [
                (r.phase.value, r.chips, r.batch, r.ffn, r.attention, r.weights.label)
                + (
                    (
                        cell_number(r.point.latency_s),
                        cell_number(r.point.mfu),
                        cell_number(r.point.cost_chip_s_per_token),
                        r.point.bound,
                        cell_number(r.point.hbm_fraction),
                        cell_number(r.point.hbm_bytes_per_chip),
                        cell_number(r.gap),
                    )
                    if r.point
                    else (
                        "",
                        "",
                        "",
                        "",
                        cell_number(r.need_bytes / spec.cluster.chip.hbm_bytes) if r.need_bytes else "",
                        cell_number(r.need_bytes) if r.need_bytes else "",
                        "",
                    )
                )
                + (r.reason, calibration)
                + ((r.stages,) if staged else ())
                + ((r.point.experts if r.point is not None else "",) if moe else ())
                + (spec.cluster.engine,)
                + ((runnable,) if runnable else ())
                for r in rows
            ],
        )
    return (
        md_escape(_layouts_summary(spec)).replace("\n", "\n\n")
        + "\n\n"
        + render_common.markdown_table(LAYOUT_COLUMNS, [_layout_cells(r) for r in rows], right=(1, 2, 5, 6, 7, 9, 10))
        + "\n"
    )


def layouts_table(rows, spec, console, ascii_only: bool) -> None:
    """Per phase and chip count, one row per layout and weight format, batches apart by a blank
    line; a row that does not fit shows the HBM it would need, one that does not apply is n/a."""
    from planner.units import fmt_percent as percent

    render_common.print_wrapped(console, _layouts_summary(spec), hang=0)
    columns = [render_common.Column(col, right=col not in ("layout", "wts", "bound")) for col in LAYOUT_COLUMNS[2:-1]]
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
        render_common.print_grid(console, columns, cells, title=f"{phase}, {chips} chips", ascii_only=ascii_only)
    console.print()
    render_common.print_wrapped(
        console,
        "vs best: latency relative to the fastest row at the same batch (within "
        "0.1%: best). no fit: needs more HBM than the chip has (HBM shows how much); n/a: "
        "the layout does not apply on this mesh.",
        hang=0,
        style="dim",
    )


# --- rendering: the regression gate ------------------------------------------------------------


def gate_text(report, fmt: str) -> str:
    from planner.commands.runs import name

    if fmt == "json":
        return to_json(_gate_dict(report))
    if fmt == "csv":
        rows = []
        for c in report.changes:
            b, a = c.before, c.after
            num = lambda p, field: cell_number(getattr(p, field)) if p else ""
            finite = lambda x: cell_number(x) if abs(x) != float("inf") else ""
            rows.append(
                (
                    c.status,
                    c.kind.value,
                    *c.point.key[:7],  # phase .. weights, kv_cache (the key's experts and stages vary in length)
                    c.point.experts,
                    c.point.stages,
                    num(b, "latency_s"),
                    num(a, "latency_s"),
                    finite(c.latency_change),
                    num(b, "mfu"),
                    num(a, "mfu"),
                    cell_number(c.mfu_change),
                    c.describe(),
                    calibration_cell(report),
                    engine_cell(report),
                )
            )
        return csv_text(
            (
                "status",
                "kind",
                "phase",
                "chips",
                "batch",
                "ffn",
                "attention",
                "weights",
                "kv_cache",
                "experts",
                "stages",
                "latency_before_s",
                "latency_after_s",
                "latency_change",
                "mfu_before",
                "mfu_after",
                "mfu_change",
                "description",
                "calibration",
                "engine",
            ),
            rows,
        )
    return report_text(
        report,
        fmt,
        ("phase", "best latency", "change", "best MFU", "change"),
        [_phase_cells(p) for p in report.phases],
        name,
    )


def _workload_words(run) -> str:
    """', input 2048, output 256, context 4096 tokens': the current run's workload (the verdict
    comes first, then the runs and what they plan)."""
    w = getattr(run, "workload", None)
    if w is None:
        return ""
    d = (
        w
        if isinstance(w, dict)
        else dict(w)
        if isinstance(w, tuple)
        else {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens, "context": w.context}
    )
    parts = [f"{key} {d[key]}" for key in ("input_tokens", "output_tokens", "context") if d.get(key)]
    return (", " + ", ".join(p.replace("_tokens", "") for p in parts) + " tokens") if parts else ""


def report_text(report, fmt: str, best_columns: tuple[str, ...], best_rows: list[tuple[str, ...]], name) -> str:
    """A gate's report as text or Markdown (both gates): verdict, the runs, notes, the best figures
    per phase or mode (`best_rows`: name, best, change, best, change), then every change in words."""
    sources = (
        f"baseline {report.baseline.source}, current {report.current.source} "
        f"({report.current.model} on {report.current.cluster}{_workload_words(report.current)})"
    )
    if fmt == "markdown":
        out = [f"**planner compare: {report.verdict()}**", "", md_escape(sources) + ".", ""]
        notes = list(report.notes) + ([calibration_words(report)] if calibration_words(report) else [])
        out += [f"- {md_escape(note)}" for note in notes] + ([""] if notes else [])
        out += [render_common.markdown_table(best_columns, best_rows, right=range(1, 5)), ""]
        if report.changes:
            out += [
                "Changes, largest first:",
                "",
                render_common.markdown_table(
                    ("status", "point", "change"),
                    [(c.status, name(c.point), c.describe()) for c in report.changes],
                    right=(),
                ),
                "",
            ]
        return "\n".join(out)
    out = wrapped(report.verdict(), 2) + wrapped(sources, 2)
    out += [line for note in report.notes for line in wrapped(f"note: {note}", 6)]
    if calibration_words(report):
        out += wrapped(f"note: {calibration_words(report)}", 6)
    for cells in best_rows:
        out += wrapped(
            f"{cells[0]}: {best_columns[1]} {cells[1]} ({cells[2]}), {best_columns[3]} {cells[3]} ({cells[4]})", 2
        )
    if report.changes:
        out.append("changes, largest first:")
        width = max(len(c.status) for c in report.changes)
        out += [
            line
            for c in report.changes
            for line in wrapped(f"  {c.status:<{width}}  {name(c.point)}: {c.describe()}", width + 4)
        ]
    return "\n".join(out) + "\n"


def calibration_keys(report) -> dict:
    """A gate's JSON keys on calibration (plan and serve runs): each side's (null: not recorded)."""
    from planner.commands.compare.compare import calibrated

    return {
        "calibrated": {"baseline": calibrated(report.baseline), "current": calibrated(report.current)},
        "calibration_note": calibration_words(report),
    }


def calibration_cell(report) -> str:
    """A gate's CSV cell on calibration: 'baseline uncalibrated; current calibrated' ('' when unknown)."""
    from planner.commands.compare.compare import calibrated

    words = {True: "calibrated", False: "uncalibrated", None: ""}
    cells = [
        f"{which} {words[calibrated(run)]}"
        for which, run in (("baseline", report.baseline), ("current", report.current))
        if calibrated(run) is not None
    ]
    return "; ".join(cells)


def engine_cell(report) -> str:
    """A gate's CSV cell on the engine profile: its name when both runs used it, else 'baseline
    vllm; current sglang' (a side that did not record one, older runs, is left out)."""
    sides = [(which, run.engine) for which, run in (("baseline", report.baseline), ("current", report.current))]
    known = [(which, e) for which, e in sides if e]
    if len(known) == 2 and known[0][1] == known[1][1]:
        return known[0][1]
    return "; ".join(f"{which} {e}" for which, e in known)


def pair(before, after, show, change) -> tuple[str, str]:
    """A best figure of two runs and its change, as two cells ('absent', 'new: ...' when missing)."""
    if before is None or after is None:
        return (f"{show(before)} -> absent" if after is None else f"new: {show(after)}"), "-"
    if before == after:
        return show(after), "no change"
    return f"{show(before)} -> {show(after)}", change(before, after)


def _phase_cells(p) -> tuple[str, ...]:
    from planner.units import fmt_percent as percent
    from planner.units import fmt_seconds, points_change, signed_percent

    latency = pair(p.latency_before_s, p.latency_after_s, fmt_seconds, lambda b, a: signed_percent(a / b - 1))
    mfu = pair(p.mfu_before, p.mfu_after, percent, lambda b, a: points_change(a - b))
    return (p.phase.value + (" (regressed)" if p.regressed else ""),) + latency + mfu


def _gate_dict(report) -> dict:

    inf = float("inf")
    return {
        "verdict": report.verdict(),
        "regressed": report.regressed,
        "identical": report.identical,
        "baseline": report.baseline.source,
        "current": report.current.source,
        "model": report.current.model,
        "cluster": report.current.cluster,
        "tolerance": {"latency": report.tolerance.latency, "mfu": report.tolerance.mfu},
        "notes": list(report.notes),
        **calibration_keys(report),
        "phases": [
            {
                "phase": p.phase.value,
                "regressed": p.regressed,
                "latency_before_s": p.latency_before_s,
                "latency_after_s": p.latency_after_s,
                "mfu_before": p.mfu_before,
                "mfu_after": p.mfu_after,
            }
            for p in report.phases
        ],
        "changes": [
            {
                "status": c.status,
                "kind": c.kind.value,
                "regressed": c.regressed,
                "point": dict(zip(("phase", "chips", "batch", "ffn", "attention", "weights"), c.point.key)),
                "before": point_dict(c.before) if c.before else None,
                "after": point_dict(c.after) if c.after else None,
                "reference": point_dict(c.reference) if c.reference else None,
                "latency_change": None if abs(c.latency_change) == inf else cell_number(c.latency_change),
                "mfu_change": cell_number(c.mfu_change),
                "description": c.describe(),
            }
            for c in report.changes
        ],
    }


def wrapped(text: str, hang: int) -> list[str]:
    """`text` as plain-text lines 80 columns wide, continuation lines indented `hang`."""
    import textwrap

    return textwrap.wrap(text, 80, subsequent_indent=" " * hang, break_on_hyphens=False) or [""]


def cell_number(x: float) -> float:
    """Rounded as `planner plan` rounds (6 significant digits)."""
    return float(f"{x:.6g}")


def csv_text(header, rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def md_escape(text: str) -> str:
    """Text outside a table: keep file names and arrows from turning into Markdown."""
    for ch in "\\`*_[]<>|":
        text = text.replace(ch, "\\" + ch)
    return text
