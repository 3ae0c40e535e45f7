"""Renderers of the request-level regression gate (`planner.commands.compare.serve`): text and
Markdown as the plan gate's report (`planner.render.compare.report_text`), JSON and CSV with
the serving figures."""

from __future__ import annotations

from planner.commands.compare.serve import FIGURES
from planner.render.compare import (
    calibration_cell,
    calibration_keys,
    cell_number,
    csv_text,
    engine_cell,
    pair,
    report_text,
)
from planner.units import fmt_seconds, signed_percent, to_json

STAGE_IDENTITY = ("chips", "batch", "ffn", "attention", "weights", "experts", "kv_cache")  # SavedStage.identity
IDENTITY = ("mode",) + tuple(f"{phase}_{f}" for phase in ("prefill", "decode") for f in STAGE_IDENTITY)


def serve_gate_text(report, fmt: str) -> str:
    if fmt == "json":
        return to_json(serve_gate_dict(report))
    if fmt == "csv":
        header = (
            ("status", "kind", "row_before", "row_after")
            + IDENTITY
            + tuple(
                f"{f.removesuffix('_s')}_{side}{'_s' if f.endswith('_s') else ''}"
                for f, *_ in FIGURES
                for side in ("before", "after")
            )
            + ("tpot_change", "description", "calibration", "engine")
        )
        rows = []
        for c in report.changes:
            b, a = c.before, c.after
            value = lambda r, f: "" if r is None or getattr(r, f) is None else cell_number(getattr(r, f))
            finite = "" if abs(c.tpot_change) == float("inf") else cell_number(c.tpot_change)
            rows.append(
                (
                    c.status,
                    c.kind.value,
                    b.row if b else "",
                    a.row if a else "",
                    *c.point.key,
                    *(value(r, f) for f, *_ in FIGURES for r in (b, a)),
                    finite,
                    c.describe(),
                    calibration_cell(report),
                    engine_cell(report),
                )
            )
        return csv_text(header, rows)
    return report_text(
        report,
        fmt,
        ("mode", "best TPOT", "change", "best tokens/s per chip", "change"),
        [_mode_cells(m) for m in report.modes],
        str,
    )


def _mode_cells(m) -> tuple[str, ...]:
    tpot = pair(m.tpot_before_s, m.tpot_after_s, fmt_seconds, lambda b, a: signed_percent(a / b - 1))
    per_chip = pair(m.per_chip_before, m.per_chip_after, lambda x: f"{x:.4g}", lambda b, a: signed_percent(a / b - 1))
    return (m.mode + (" (regressed)" if m.regressed else ""),) + tpot + per_chip


def _row_dict(r) -> dict | None:
    if r is None:
        return None
    figures = (
        "row",
        "mode",
        "chips",
        "ttft_s",
        "tpot_s",
        "e2e_s",
        "tokens_per_s_per_user",
        "output_tokens_per_s_per_chip",
        "usd_per_million_input_tokens",
        "usd_per_million_output_tokens",
        "kv_transfer_bytes",
        "kv_transfer_s",
        "prefill_pools_per_decode_pool",
    )
    stage = lambda s: {
        k: getattr(s, k)
        for k in (
            "chips",
            "batch",
            "ffn",
            "attention",
            "weights",
            "latency_s",
            "step_latency_s",
            "mfu",
            "hbm_fraction",
            "bound",
            "context",
            "kv_cache",
            "experts",
        )
    }
    return {**{k: getattr(r, k) for k in figures}, "prefill": stage(r.prefill), "decode": stage(r.decode)}


def serve_gate_dict(report) -> dict:
    """The gate's JSON for serve runs: the plan gate's keys where they apply (verdict, regressed,
    identical, baseline, current, model, cluster, tolerance, notes, changes) plus `kind`, `modes`."""
    t = report.tolerance
    return {
        "kind": "serve",
        "verdict": report.verdict(),
        "regressed": report.regressed,
        "identical": report.identical,
        "baseline": report.baseline.source,
        "current": report.current.source,
        "model": report.current.model,
        "cluster": report.current.cluster,
        "tolerance": {"latency": t.latency, "mfu": t.mfu, "throughput": t.throughput},
        "notes": list(report.notes),
        **calibration_keys(report),
        "modes": [
            {
                "mode": m.mode,
                "regressed": m.regressed,
                "tpot_before_s": m.tpot_before_s,
                "tpot_after_s": m.tpot_after_s,
                "output_tokens_per_s_per_chip_before": m.per_chip_before,
                "output_tokens_per_s_per_chip_after": m.per_chip_after,
            }
            for m in report.modes
        ],
        "changes": [
            {
                "status": c.status,
                "kind": c.kind.value,
                "regressed": c.regressed,
                "deployment": dict(zip(IDENTITY, c.point.key)),
                "before": _row_dict(c.before),
                "after": _row_dict(c.after),
                "reference": _row_dict(c.reference),
                "change": {f: cell_number(v) if abs(v) != float("inf") else None for f, v in c.changes().items()},
                "tpot_change": None if abs(c.tpot_change) == float("inf") else cell_number(c.tpot_change),
                "description": c.describe(),
            }
            for c in report.changes
        ],
    }
