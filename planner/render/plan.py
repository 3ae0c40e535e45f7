"""Renderers of `planner plan`: the frontier of each phase as a table, JSON, CSV or Markdown."""

from __future__ import annotations

import csv
import io

from planner.commands.runs import numbered, point_dict
from planner.render.common import (
    Column,
    calibration_label,
    calibration_note,
    markdown_table,
    print_grid,
    print_wrapped,
    runnable_note,
)
from planner.search.search import Point, SearchResult
from planner.specs.plan import Phase
from planner.units import fmt_percent, fmt_seconds

EXPLAIN_HINT = "#: explain a row with planner explain PLAN --row N (and this command's flags)."
COLUMNS = ("#", "chips", "batch", "layout", "wts", "kv", "latency", "step", "MFU", "cost/tok", "HBM", "bound")
TEXT_COLUMNS = ("layout", "wts", "kv", "bound")
MFU_NOTE = "MFU is against the bf16 peak in every format (the paper's convention)"
OVER_100 = (
    "MFU above 100%: the point's format (fp8, int8, fp4 or 2:4 sparse) has a higher peak than "
    "bf16's; `explain` gives its share of that format's own peak"
)


def _mfu_note(result: SearchResult) -> str:
    """MFU_NOTE, and why when a point passes 100%."""
    over = any(p.mfu > 1 for ph in result.phases for p in ph.frontier)
    return MFU_NOTE + (f"; {OVER_100}" if over else "")


def _cells(p: Point, row: int) -> tuple[str, ...]:
    """A point's cells; `row` is its number (the `#` column, which `planner explain --row` takes)."""
    return (
        str(row),
        str(p.chips),
        str(p.batch),
        layout_name(p),
        p.weights,
        p.kv_cache,
        fmt_seconds(p.latency_s),
        fmt_seconds(p.step_latency_s),
        fmt_percent(p.mfu),
        fmt_seconds(p.cost_chip_s_per_token),
        fmt_percent(p.hbm_fraction),
        p.bound,
    )


def layout_name(p: Point) -> str:
    """`ws2d+heads`; with pipeline stages `PP2 ws2d+heads` (the inner layout runs on each stage); MoE
    models add the expert layout, `ws2d+batch+ep`."""
    return (
        (f"PP{p.stages} " if p.stages > 1 else "") + f"{p.ffn}+{p.attention}" + (f"+{p.experts}" if p.experts else "")
    )


def _shown(result: SearchResult, phase: Phase) -> list[int]:
    """Columns to show: no step for prefill (one step), no kv when only a bf16 cache is searched."""
    bf16_cache = [kv.label for kv in result.plan.space.kv_cache] == ["bf16"]
    return [
        i
        for i, col in enumerate(COLUMNS)
        if not (col == "step" and phase is Phase.PREFILL) and not (col == "kv" and bf16_cache)
    ]


def plan_markdown(result: SearchResult) -> str:
    lines = [_summary(result), ""]
    note = calibration_note(result.plan.cluster)
    if note:
        lines += [f"**{note}**", ""]
    rows = {p.key: row for row, p in numbered(result)}
    for ph in result.phases:
        if ph.infeasible:
            lines += [f"### {ph.phase.value}: nothing feasible", "", "```", ph.infeasible, "```", ""]
            continue
        keep = _shown(result, ph.phase)
        lines += [
            f"### {ph.phase.value} frontier ({len(ph.frontier)} point{'s' * (len(ph.frontier) != 1)})",
            "",
            markdown_table(
                [COLUMNS[i] for i in keep],
                [tuple(_cells(p, rows[p.key])[i] for i in keep) for p in ph.frontier],
                right=[k for k, i in enumerate(keep) if COLUMNS[i] not in TEXT_COLUMNS],
            ),
            "",
        ]
    lines += [f"{_mfu_note(result)}.", "", EXPLAIN_HINT, ""]
    return "\n".join(lines)


def plan_csv(result: SearchResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fields = (
        "phase",
        "chips",
        "batch",
        "ffn",
        "attention",
        "weights",
        "latency_s",
        "step_latency_s",
        "mfu",
        "cost_chip_s_per_token",
        "tokens_per_s",
        "hbm_bytes_per_chip",
        "hbm_fraction",
        "bound",
        "compute_s",
        "memory_s",
        "comm_s",
        "overhead_s",
        "mesh",
        "partition_x",
        "partition_yz",
        "partition_gather",
        "kv_cache",
        "calibration",
    )
    staged = max(result.plan.space.stages) > 1  # the pipeline's columns only when it searches stages
    moe = result.plan.model.experts is not None  # the expert layout's column only for an MoE model
    runnable = result.plan.space.runnable_on  # the engine's column only when the search was restricted to it
    writer.writerow(
        fields
        + ("row",)
        + (("stages", "micro_batches") if staged else ())
        + (("experts",) if moe else ())
        + ("engine",)
        + (("runnable_on",) if runnable else ())
    )
    calibration = calibration_label(result.plan.cluster)
    for row, p in numbered(result):
        d = point_dict(p)
        writer.writerow(
            [
                d["phase"],
                p.chips,
                p.batch,
                p.ffn,
                p.attention,
                p.weights,
                d["latency_s"],
                d["step_latency_s"],
                d["mfu"],
                d["cost_chip_s_per_token"],
                d["tokens_per_s"],
                d["hbm_bytes_per_chip"],
                d["hbm_fraction"],
                p.bound,
                d["time_s"]["compute"],
                d["time_s"]["memory"],
                d["time_s"]["comm"],
                d["time_s"]["overhead"],
                "x".join(str(n) for _, n in p.mesh),
                *(" ".join(a) for _, a in p.partition),
                p.kv_cache,
                calibration,
                row,
                *((p.stages, p.micro_batches) if staged else ()),
                *((p.experts,) if moe else ()),
                result.plan.cluster.engine,
                *((runnable,) if runnable else ()),
            ]
        )
    return buf.getvalue()


def _summary(result: SearchResult) -> str:
    plan = result.plan
    dropped = ", ".join(f"{c} {r}" for r, c in result.dropped) or "none"
    w = plan.workload
    return (
        f"{plan.model.name} on {plan.cluster.name}: input {w.input_tokens}, output {w.output_tokens}, "
        f"context {w.context} tokens{context_note(plan)}. {searched_note(plan)}Evaluated {result.evaluated}, "
        f"feasible {result.feasible}, dropped: {dropped}." + moe_note(plan.model, w)
    )


def context_note(plan) -> str:
    """Which context the decode steps are timed at, when it was not given."""
    if "context" not in plan.defaults or not any(ph.value == "decode" for ph in plan.space.phases):
        return ""
    return " (input + output: each decode step is timed at, and the KV cache must hold, a whole request)"


def searched_note(plan) -> str:
    """The weight formats searched and, when the chips span nodes, the default stage counts."""
    weights = ", ".join(w.label for w in plan.space.weights)
    note = f"Weights: {weights}" + (f" ({plan.cluster.name}'s defaults)" if "weights" in plan.defaults else "")
    stages = plan.space.stages
    if "stages" in plan.defaults and max(stages) > 1:
        note += (
            f"; pipeline stages {', '.join(map(str, stages))} (by default where the chips span more "
            "than one node; --stages 1 for none)"
        )
    elif max(stages) > 1:
        note += f"; pipeline stages {', '.join(map(str, stages))}"
    engine = plan.cluster.engine_note
    return note + ". " + (f"{engine[0].upper()}{engine[1:]}. " if engine else "") + runnable_note(plan)


def moe_note(model, workload) -> str:
    """For a mixture of experts: what MFU counts and the routing settings (empty for dense models)."""
    if model.experts is None:
        return ""
    r = workload.routing
    return (
        f" Mixture of experts: MFU counts the {model.n_active_params / 1e9:.2f}B active parameters "
        f"(of {model.n_params / 1e9:.2f}B); layouts are FFN+attention+experts; expert load imbalance "
        f"{r.load_imbalance:g}"
        + (
            f", {r.redundant_experts} redundant experts"
            if r.redundant_experts
            else ", redundant experts the fewest that make each EP size divide"
            if r.redundant_experts is None
            else ""
        )
        + "."
    )


def plan_table(result: SearchResult, console, *, ascii_only: bool = False) -> None:
    """Per phase, the frontier as a table that fits `console.width` (80 when not a terminal)."""
    print_wrapped(console, _summary(result), hang=0)
    note = calibration_note(result.plan.cluster)
    if note:
        print_wrapped(console, note, hang=0, style="yellow")
    legend = [
        "cost/tok in chip-seconds per token",
        "HBM: share of each chip's memory in use",
        _mfu_note(result),
        EXPLAIN_HINT[:-1],
    ]
    numbers = {p.key: row for row, p in numbered(result)}
    for ph in result.phases:
        # A prefill request is one step, so its step column would repeat the latency.
        keep = _shown(result, ph.phase)
        columns = [Column(COLUMNS[i], right=COLUMNS[i] not in TEXT_COLUMNS, wrap=COLUMNS[i] == "layout") for i in keep]
        rows = [tuple(_cells(p, numbers[p.key])[i] for i in keep) for p in ph.frontier]
        console.print()
        if ph.infeasible:
            print_wrapped(console, f"{ph.phase.value}: nothing feasible (the reason is on stderr).", hang=0)
            continue
        title = f"{ph.phase.value} frontier: latency vs MFU, {len(ph.frontier)} point{'s' * (len(ph.frontier) != 1)}"
        if ph.phase is Phase.DECODE:
            title += f" ({result.plan.workload.output_tokens} output tokens)"
            legend.insert(0, "step: one decode step")
        print_grid(console, columns, rows, title=title, ascii_only=ascii_only)
    console.print()
    print_wrapped(console, "; ".join(legend) + ".", style="dim")
