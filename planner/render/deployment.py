"""Renderer of `planner compare --deployment`: a pinned deployment's gap to the best alternatives,
as a table (text), JSON, CSV or Markdown."""

from __future__ import annotations

from planner.commands.runs import point_dict
from planner.render import common as render_common
from planner.render.compare import cell_number, csv_text, md_escape, wrapped
from planner.units import to_json


def deployment_text(report, fmt: str) -> str:
    from planner.commands.runs import name
    from planner.units import fmt_percent as percent

    if fmt in ("json", "csv"):
        pins = [
            {
                "phase": g.pin.phase.value,
                "gap": cell_number(report.gap(g)),
                "layout_gap": cell_number(g.layout_gap),
                "frontier_gap": cell_number(g.frontier_gap),
                "pinned": point_dict(g.point),
                "best_layout": point_dict(g.best),
                "frontier_reference": point_dict(g.frontier),
                "description": report.describe(g),
            }
            for g in report.gaps
        ]
        if fmt == "json":
            return to_json(
                {
                    "verdict": report.verdict(),
                    "regressed": report.regressed,
                    "plan": report.source,
                    "max_gap": report.max_gap,
                    "gap_to": report.gap_to,
                    "cluster": report.cluster,
                    "calibrated": report.calibrated,
                    "calibration_status": report.calibration_status,
                    "engine": report.engine,
                    "pins": pins,
                    **({"runnable_on": report.runnable_on} if report.runnable_on else {}),
                }
            )
        calibration = report.calibration_status
        return csv_text(
            (
                "phase",
                "pinned",
                "latency_s",
                "mfu",
                "reference",
                "reference_latency_s",
                "gap",
                "layout_gap",
                "frontier_gap",
                "description",
                "calibration",
                "engine",
            )
            + (("runnable_on",) if report.runnable_on else ()),
            [
                (
                    g.pin.phase.value,
                    name(g.point),
                    cell_number(g.point.latency_s),
                    cell_number(g.point.mfu),
                    name(report.reference(g)),
                    cell_number(report.reference(g).latency_s),
                    p["gap"],
                    p["layout_gap"],
                    p["frontier_gap"],
                    p["description"],
                    calibration,
                    report.engine,
                )
                + ((report.runnable_on,) if report.runnable_on else ())
                for g, p in zip(report.gaps, pins)
            ],
        )
    if fmt == "markdown":
        from planner.units import fmt_seconds

        rows = [
            (
                g.pin.phase.value,
                name(g.point),
                fmt_seconds(g.point.latency_s),
                percent(g.point.mfu),
                name(report.reference(g)),
                fmt_seconds(report.reference(g).latency_s),
                percent(report.reference(g).mfu),
                percent(report.gap(g)),
            )
            for g in report.gaps
        ]
        return "\n".join(
            [
                f"**planner compare --deployment: {report.verdict()}**",
                "",
                md_escape(
                    f"Plan {report.source}{_engine(report)}; gap = pinned latency / {report.gap_to} reference "
                    "latency - 1." + _runnable(report)
                ),
                "",
                *([md_escape(_deployment_calibration(report)), ""] if not report.calibrated else []),
                render_common.markdown_table(
                    ("phase", "pinned", "latency", "MFU", f"{report.gap_to} reference", "latency", "MFU", "gap"),
                    rows,
                    right=(2, 3, 5, 6, 7),
                ),
                "",
            ]
        )
    return (
        "\n".join(
            wrapped(report.verdict() + _engine(report), 2)
            + [line for g in report.gaps for line in wrapped(report.describe(g), 2)]
            + (wrapped(_runnable(report).strip(), 2) if report.runnable_on else [])
            + (wrapped(_deployment_calibration(report), 2) if not report.calibrated else [])
        )
        + "\n"
    )


def _engine(report) -> str:
    """' (engine profile sglang)', or '' where none was applied."""
    return f" (engine profile {report.engine})" if report.engine else ""


def _runnable(report) -> str:
    """' References: only what vLLM runs as it is (--runnable-on vllm).' ('' without it)."""
    if not report.runnable_on:
        return ""
    from planner.specs.engine_layouts import ENGINE_LAYOUTS

    label = ENGINE_LAYOUTS[report.runnable_on].label
    return f" References: only what {label} runs as it is (--runnable-on {report.runnable_on})."


def _deployment_calibration(report) -> str:
    return (
        f"note: {report.cluster} is {render_common.UNCALIBRATED}: ideal calibration constants, never fitted to "
        "measurements; gaps between layouts on the same chips are what the ideal model predicts (fit the "
        "constants with `planner calibrate`)."
    )


# --- helpers ------------------------------------------------------------------------------------
