"""Renderers: plan and explain results to table (rich), JSON, CSV and Markdown.

Output is deterministic: sorted JSON keys, floats rounded to 6 significant digits, no times.
Only this module and the CLI import rich; no formula lives here.
"""

from __future__ import annotations

import csv
import io
import json

from planner.costmodel import Evaluation
from planner.search import Point, SearchResult, point
from planner.units import fmt_bytes, fmt_percent, fmt_seconds

FORMATS = ("table", "json", "csv", "markdown")


def _num(x: float) -> float | int:
    if isinstance(x, int):
        return x
    return float(f"{x:.6g}")


def point_dict(p: Point) -> dict:
    return {
        "phase": p.phase.value, "chips": p.chips, "mesh": {name: n for name, n in p.mesh},
        "partition": {group: list(axes) for group, axes in p.partition},
        "batch": p.batch, "ffn": p.ffn, "attention": p.attention, "weights": p.weights,
        "latency_s": _num(p.latency_s), "step_latency_s": _num(p.step_latency_s), "mfu": _num(p.mfu),
        "cost_chip_s_per_token": _num(p.cost_chip_s_per_token), "tokens_per_s": _num(p.tokens_per_s),
        "hbm_bytes_per_chip": _num(p.hbm_bytes_per_chip), "hbm_fraction": _num(p.hbm_fraction),
        "bound": p.bound,
        "time_s": {"compute": _num(p.compute_s), "memory": _num(p.memory_s), "comm": _num(p.comm_s),
                   "overhead": _num(p.overhead_s)},
    }


def plan_dict(result: SearchResult) -> dict:
    plan = result.plan
    w = plan.workload
    return {
        "model": plan.model.name, "cluster": plan.cluster.name,
        "workload": {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens, "context": w.context},
        "search": {"evaluated": result.evaluated, "feasible": result.feasible,
                   "dropped": dict(result.dropped)},
        "frontier": {ph.phase.value: [point_dict(p) for p in ph.frontier] for ph in result.phases},
    }


def explain_dict(ev: Evaluation) -> dict:
    out = point_dict(point(ev, 0))
    c = ev.candidate
    out["notation"] = {"ffn": c.ffn.notation, "attention": c.attention.notation}
    out["layers"] = [
        {"name": r.name, "notation": r.notation, "repeat": r.repeat, "collective": r.collective,
         "flops": _num(float(r.flops[0])), "hbm_bytes": _num(float(r.hbm_bytes[0])),
         "comm_bytes": _num(float(r.comm_bytes[0])),
         "seconds": {"compute": _num(float(r.compute_s[0])), "memory": _num(float(r.memory_s[0])),
                     "comm": _num(float(r.comm_s[0]))}}
        for r in ev.rows
    ]
    out["memory"] = {"weights": _num(float(ev.weight_bytes)), "kv_cache": _num(float(ev.kv_bytes[0])),
                     "activations": _num(float(ev.activation_bytes[0]))}
    return out


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


# --- tables ---------------------------------------------------------------------------------

COLUMNS = ("chips", "batch", "layout", "wts", "latency", "step", "MFU", "cost/tok", "HBM", "bound")


def _cells(p: Point) -> tuple[str, ...]:
    return (
        str(p.chips), str(p.batch), f"{p.ffn}+{p.attention}", p.weights, fmt_seconds(p.latency_s),
        fmt_seconds(p.step_latency_s), fmt_percent(p.mfu), fmt_seconds(p.cost_chip_s_per_token),
        fmt_percent(p.hbm_fraction), p.bound,
    )


def plan_markdown(result: SearchResult) -> str:
    lines = [_summary(result), ""]
    for ph in result.phases:
        lines += [f"### {ph.phase.value} frontier ({len(ph.frontier)} points)", "",
                  markdown_table(COLUMNS, [_cells(p) for p in ph.frontier]), ""]
    return "\n".join(lines)


def markdown_table(header, rows, right=None) -> str:
    """A GitHub table; columns listed in `right` (default: all but text ones) align right."""
    right = set(range(len(header))) if right is None else set(right)
    esc = lambda s: str(s).replace("|", "\\|")
    out = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join("---:" if i in right else ":---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def plan_csv(result: SearchResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fields = ("phase", "chips", "batch", "ffn", "attention", "weights", "latency_s", "step_latency_s",
              "mfu", "cost_chip_s_per_token", "tokens_per_s", "hbm_bytes_per_chip", "hbm_fraction",
              "bound", "compute_s", "memory_s", "comm_s", "overhead_s", "mesh", "partition_x",
              "partition_yz", "partition_gather")
    writer.writerow(fields)
    for ph in result.phases:
        for p in ph.frontier:
            d = point_dict(p)
            writer.writerow([d["phase"], p.chips, p.batch, p.ffn, p.attention, p.weights, d["latency_s"],
                             d["step_latency_s"], d["mfu"], d["cost_chip_s_per_token"], d["tokens_per_s"],
                             d["hbm_bytes_per_chip"], d["hbm_fraction"], p.bound, d["time_s"]["compute"],
                             d["time_s"]["memory"], d["time_s"]["comm"], d["time_s"]["overhead"],
                             "x".join(str(n) for _, n in p.mesh), *(" ".join(a) for _, a in p.partition)])
    return buf.getvalue()


def _summary(result: SearchResult) -> str:
    plan = result.plan
    dropped = ", ".join(f"{c} {r}" for r, c in result.dropped) or "none"
    w = plan.workload
    return (f"{plan.model.name} on {plan.cluster.name}: input {w.input_tokens}, output {w.output_tokens}, "
            f"context {w.context} tokens. Evaluated {result.evaluated}, feasible {result.feasible}, "
            f"dropped: {dropped}.")


def plan_table(result: SearchResult, console) -> None:
    from rich.table import Table
    from rich import box

    console.print(_summary(result), highlight=False, markup=False)
    for ph in result.phases:
        table = Table(title=f"{ph.phase.value}: latency vs MFU frontier", box=box.SIMPLE_HEAD,
                      title_justify="left", pad_edge=False)
        for i, col in enumerate(COLUMNS):
            table.add_column(col, justify="left" if col in ("layout", "wts", "bound") else "right",
                             no_wrap=col in ("layout", "latency", "step"))
        for p in ph.frontier:
            table.add_row(*_cells(p))
        console.print(table)


def explain_table(ev: Evaluation, console) -> None:
    from rich.table import Table
    from rich import box

    d = point(ev, 0)
    c = ev.candidate
    console.print(f"{d.phase.value}: {d.chips} chips (mesh {'x'.join(str(n) for _, n in d.mesh)}), "
                  f"batch {d.batch}, {d.ffn}+{d.attention}, {d.weights} weights", highlight=False, markup=False)
    console.print(f"  FFN:       {c.ffn.notation}\n  attention: {c.attention.notation}", highlight=False, markup=False)
    console.print("  partition: " + ", ".join(f"{g}=[{' '.join(a)}]" for g, a in d.partition), highlight=False, markup=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("row", "x", "FLOP", "HBM", "comm", "compute", "memory", "network"):
        table.add_column(col, justify="left" if col == "row" else "right")
    for r in ev.rows:
        table.add_row(f"{r.name} {r.collective}".strip(), str(r.repeat), f"{float(r.flops[0]):.3g}",
                      fmt_bytes(float(r.hbm_bytes[0])), fmt_bytes(float(r.comm_bytes[0])),
                      fmt_seconds(float(r.compute_s[0])), fmt_seconds(float(r.memory_s[0])),
                      fmt_seconds(float(r.comm_s[0])))
    table.add_row("total per step", "", "", "", "", fmt_seconds(d.compute_s), fmt_seconds(d.memory_s),
                  fmt_seconds(d.comm_s))
    console.print(table)
    console.print(
        f"step {fmt_seconds(d.step_latency_s)} (overhead {fmt_seconds(d.overhead_s)}), latency "
        f"{fmt_seconds(d.latency_s)}, MFU {fmt_percent(d.mfu)}, cost {fmt_seconds(d.cost_chip_s_per_token)} "
        f"chip-s/token, {d.tokens_per_s:.4g} tokens/s, {d.bound}-bound", highlight=False, markup=False)
    console.print(
        f"memory per chip: weights {fmt_bytes(ev.weight_bytes)} + KV cache {fmt_bytes(float(ev.kv_bytes[0]))} "
        f"+ activations {fmt_bytes(float(ev.activation_bytes[0]))} = {fmt_bytes(d.hbm_bytes_per_chip)} "
        f"({fmt_percent(d.hbm_fraction)} of HBM)", highlight=False, markup=False)


def explain_markdown(ev: Evaluation) -> str:
    d = explain_dict(ev)
    rows = [(r["name"], r["collective"], r["repeat"], r["flops"], r["hbm_bytes"], r["comm_bytes"],
             r["seconds"]["compute"], r["seconds"]["memory"], r["seconds"]["comm"]) for r in d["layers"]]
    header = ("row", "collective", "repeat", "flops", "hbm_bytes", "comm_bytes", "compute_s", "memory_s", "comm_s")
    return markdown_table(header, rows, right=range(2, 9)) + "\n"


def explain_csv(ev: Evaluation) -> str:
    d = explain_dict(ev)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("row", "notation", "collective", "repeat", "flops", "hbm_bytes", "comm_bytes",
                     "compute_s", "memory_s", "comm_s"))
    for r in d["layers"]:
        writer.writerow((r["name"], r["notation"], r["collective"], r["repeat"], r["flops"], r["hbm_bytes"],
                         r["comm_bytes"], r["seconds"]["compute"], r["seconds"]["memory"], r["seconds"]["comm"]))
    return buf.getvalue()
