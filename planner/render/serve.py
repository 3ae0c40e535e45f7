"""Renderers of `planner serve`: each mode's frontier as a table, CSV or Markdown (JSON is
`planner.commands.serve.serve.serve_dict`), and a row's stages explained (`--row`)."""

from __future__ import annotations

import csv
import io

from planner.commands.serve.modes import Deployment, Mode
from planner.commands.serve.pools import Stage
from planner.commands.serve.serve import NOT_MODELLED, ServeResult, deployment_dict, serving_name, serving_order
from planner.render.common import (
    Column,
    Note,
    calibration_label,
    calibration_note,
    markdown_table,
    print_grid,
    print_wrapped,
    runnable_note,
)
from planner.units import PER_MILLION, SECONDS_PER_HOUR, fmt_seconds

COLUMNS = ("#", "chips", "TTFT", "TPOT", "tok/s/user", "tok/s/chip", "$/M in", "$/M out")
MD_COLUMNS = COLUMNS[:2] + ("prefill", "decode") + COLUMNS[2:]
NO_PRICE = "no price"


def _stage(s: Stage) -> str:
    """'32x1 ws2d+heads+tp int8' (MoE: +experts layout), ' kv fp8' when the cache is not bf16."""
    layouts = f"{s.ffn}+{s.attention}" + (f"+{s.experts}" if s.experts else "")
    return f"{s.chips}x{s.batch} {layouts} {s.weights}" + (f" kv {s.kv_cache}" if s.kv_cache != "bf16" else "")


def _rate(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"


def _usd(x: float | None) -> str:
    return NO_PRICE if x is None else f"{x * PER_MILLION:.3g}"


def _cells(d: Deployment, index: int) -> tuple[str, ...]:
    chips = f"{d.chips:.0f}" if d.chips == int(d.chips) else f"{d.chips:.1f}"
    return (
        str(index),
        chips,
        fmt_seconds(d.ttft_s),
        fmt_seconds(d.tpot_s),
        _rate(d.tokens_per_s_per_user),
        _rate(d.output_tokens_per_s_per_chip),
        _usd(d.usd_per_input_token),
        _usd(d.usd_per_output_token),
    )


def _md_cells(d: Deployment, index: int) -> tuple[str, ...]:
    cells = _cells(d, index)
    return cells[:2] + (_stage(d.prefill), _stage(d.decode)) + cells[2:]


def _numbered(result: ServeResult):
    index = 1
    for m in result.modes:
        yield m, range(index, index + len(m.frontier))
        index += len(m.frontier)


def summary(result: ServeResult) -> str:
    req = result.request
    plan, w, t = req.plan, req.plan.workload, req.targets
    targets = ", ".join(
        f"{name} <= {fmt_seconds(v)}"
        for name, v in (("TTFT", t.ttft_s), ("TPOT", t.tpot_s), ("end-to-end", t.e2e_s))
        if v is not None
    )
    price = (
        f"price {req.price_usd_per_chip_s * SECONDS_PER_HOUR:.4g} USD per chip-hour ({req.price_source})"
        if req.price_usd_per_chip_s is not None
        else "no price (give --price 2.50/h or price_usd_per_chip_hour in the cluster file)"
    )
    weights = ", ".join(f.label for f in plan.space.weights)
    defaults = f" ({plan.cluster.name}'s defaults)" if "weights" in plan.defaults else ""
    return (
        f"{plan.model.name} on {plan.cluster.name}: requests of {w.input_tokens} input and "
        f"{w.output_tokens} output tokens; targets: {targets or 'none'}; {price}. Weights: {weights}{defaults}"
        + (f". Engine profile {plan.cluster.engine}." if plan.cluster.engine else ".")
        + (" " + runnable_note(plan).rstrip() if plan.space.runnable_on else "")
    )


def _title(m) -> str:
    n = len(m.frontier)
    dropped = "; dropped: " + ", ".join(f"{c} {r}" for r, c in m.dropped) if m.dropped else ""
    return f"{m.mode.label} ({m.mode.description}): {n} point{'s' * (n != 1)} of {m.evaluated} that fit{dropped}"


def legend(result: ServeResult) -> list[str]:
    used = sorted(
        {
            name
            for d in result.rows()
            for s in (d.prefill, d.decode)
            for name in (s.ffn, s.attention, s.experts)
            if name
        },
        key=serving_order,
    )
    moe = result.request.plan.model.experts is not None
    lines = [
        "Under each row, prefill and decode: chips x batch, layouts (FFN+attention"
        + ("+experts" if moe else "")
        + "), weights, and the KV cache's format when not bf16 (kv fp8); "
        "chips: per deployment (disaggregated: "
        "per decode pool with its share of prefill pools); tok/s/user = 1/TPOT; tok/s/chip: output "
        "tokens; $/M: USD per million input or output tokens.",
        "Layouts as serving engineers name them: "
        + "; ".join(f"{name} = {serving_name(name)}" for name in used)
        + f" ({NOT_MODELLED}).",
        "Explain a row's layouts: add --row N.",
    ]
    if any(m.mode is Mode.DISAGGREGATED for m in result.modes):
        lines.append(
            "Disaggregated: the prompt's KV cache crosses to the decode pool in the cache's format "
            "(both pools hold it in the same format)."
        )
    if result.request.targets.ttft_s is None and any(m.mode is not Mode.STATIC for m in result.modes):
        lines.append("Without --ttft, running-batch modes pick prefill batches for throughput alone.")
    return lines


def serve_table(result: ServeResult, console, *, ascii_only: bool = False) -> None:
    print_wrapped(console, summary(result), hang=0)
    note = calibration_note(result.request.plan.cluster)
    if note:
        print_wrapped(console, note, hang=0, style="yellow")
    columns = [Column(c) for c in COLUMNS]
    for m, numbers in _numbered(result):
        console.print()
        if m.infeasible:
            print_wrapped(console, f"{m.mode.label}: nothing meets the targets (why is on stderr).", hang=0)
            continue
        rows = []
        for d, i in zip(m.frontier, numbers):
            rows += [_cells(d, i), Note(f"prefill {_stage(d.prefill)} | decode {_stage(d.decode)}")]
        print_grid(console, columns, rows, title=_title(m), ascii_only=ascii_only)
    console.print()
    for line in legend(result):
        print_wrapped(console, line, style="dim")


def serve_markdown(result: ServeResult) -> str:
    note = calibration_note(result.request.plan.cluster)
    lines = [summary(result), ""] + ([f"> {note}", ""] if note else [])
    for m, numbers in _numbered(result):
        if m.infeasible:
            lines += [f"### {m.mode.label}: nothing feasible", "", "```", m.infeasible, "```", ""]
            continue
        lines += [
            f"### {_title(m)}",
            "",
            markdown_table(
                MD_COLUMNS, [_md_cells(d, i) for d, i in zip(m.frontier, numbers)], right=(0, 1, 4, 5, 6, 7, 8, 9)
            ),
            "",
        ]
    return "\n".join(lines + [" ".join(legend(result)), ""])


CSV_FIELDS = (
    "row",
    "mode",
    "chips",
    "prefill_pools_per_decode_pool",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "tokens_per_s_per_user",
    "output_tokens_per_s_per_chip",
    "usd_per_million_input_tokens",
    "usd_per_million_output_tokens",
    "kv_transfer_bytes",
    "kv_transfer_s",
)
STAGE_FIELDS = (
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
)
NEW_STAGE_FIELDS = ("kv_cache", "experts")  # after serving_names: columns are added at the end


def serve_csv(result: ServeResult) -> str:
    runnable = result.request.plan.space.runnable_on  # its column only when the search was restricted
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        CSV_FIELDS
        + tuple(f"{phase}_{f}" for phase in ("prefill", "decode") for f in STAGE_FIELDS)
        + ("serving_names", "calibration")
        + tuple(f"{phase}_{f}" for phase in ("prefill", "decode") for f in NEW_STAGE_FIELDS)
        + ("engine",)
        + (("runnable_on",) if runnable else ())
    )
    calibration = calibration_label(result.request.plan.cluster)
    for m, numbers in _numbered(result):
        for d, i in zip(m.frontier, numbers):
            row = deployment_dict(d, i)
            writer.writerow(
                [("" if row[f] is None else row[f]) for f in CSV_FIELDS]
                + [row[phase][f] for phase in ("prefill", "decode") for f in STAGE_FIELDS]
                + [row["serving_names"], calibration]
                + [row[phase].get(f, "") for phase in ("prefill", "decode") for f in NEW_STAGE_FIELDS]
                + [result.request.plan.cluster.engine]
                + ([runnable] if runnable else [])
            )
    return buf.getvalue()
