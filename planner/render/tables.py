"""Renderers: plan and explain results to table (rich), JSON, CSV and Markdown.

Output is deterministic: sorted JSON keys, floats rounded to 6 significant digits, no times.
Only this module and the CLI import rich; no formula lives here.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from dataclasses import dataclass

from planner.cost.costmodel import Evaluation, batch_padding
from planner.specs.hardware import FIELDS_OF_CALIBRATION
from planner.specs.plan import Phase
from planner.search.search import Point, SearchResult, point
from planner.units import fmt_bytes, fmt_percent, fmt_rate, fmt_seconds

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
        "calibration": {name: getattr(plan.cluster.calibration, name) for name in FIELDS_OF_CALIBRATION},
        "workload": {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens, "context": w.context},
        "search": {"evaluated": result.evaluated, "feasible": result.feasible,
                   "dropped": dict(result.dropped)},
        "frontier": {ph.phase.value: [point_dict(p) for p in ph.frontier] for ph in result.phases},
        **({"infeasible": {ph.phase.value: ph.infeasible for ph in result.phases if ph.infeasible}}
           if any(ph.infeasible for ph in result.phases) else {}),
    }


def explain_dict(ev: Evaluation, cluster=None) -> dict:
    out = point_dict(point(ev, 0))
    out["model"] = ev.model.name
    if cluster is not None:
        out["cluster"] = cluster.name
    c = ev.candidate
    w = ev.workload
    out["workload"] = ({"input_tokens": w.input_tokens} if c.phase is Phase.PREFILL
                       else {"context": w.context, "output_tokens": w.output_tokens})
    out["axes"] = {axis: c.mesh.names(axis) for axis in "xyz"}
    out["notation"] = {"ffn": c.ffn.notation, "attention": c.attention.notation}
    out["padding"] = [{"parts": list(p.parts), "batch_shards": p.shards, "sequences_per_chip": p.per_chip,
                       "wasted": _num(p.wasted)} for p in batch_padding(c, ev.model, int(ev.batch[0]))]
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
    out["combine"] = {"overlap": _num(ev.overlap), "critical_path_s": _num(float(ev.critical_s[0])),
                      "prefetched_comm_s": _num(float(ev.prefetched_s[0])), "ring_steps": ev.ring_steps,
                      "comm_latency_s": _num(ev.comm_latency_s)}
    return out


def combine_lines(ev: Evaluation) -> list[str]:
    """How the step time follows from the compute, memory and network columns (the overlap
    policy of planner.cost.costmodel), in words and numbers."""
    f = ev.overlap
    critical, prefetched = float(ev.critical_s[0]), float(ev.prefetched_s[0])
    active = float(ev.comm_s[0]) - prefetched
    lines = []
    if ev.ring_steps:
        latency = ev.comm_latency_s
        lines.append(f"network  {fmt_seconds(float(ev.comm_s[0]))} = {fmt_seconds(float(ev.comm_s[0]) - latency)} "
                     f"moving bytes + {fmt_seconds(latency)} latency ({ev.ring_steps} ring steps x "
                     f"{fmt_seconds(latency / ev.ring_steps)})")
    lines += [f"overlap  max(compute {fmt_seconds(float(ev.compute_s[0]))}, memory "
             f"{fmt_seconds(float(ev.memory_s[0]))}) + activation collectives {fmt_seconds(active)} - "
             f"{f:.4g} x the smaller of the two = {fmt_seconds(critical)}"]
    if prefetched > 0:
        links = float(ev.comm_s[0])
        verdict = "hidden under it" if links <= critical else "the links are the bottleneck"
        lines.append(f"prefetch weight all-gathers {fmt_seconds(prefetched)} run ahead; links busy "
                     f"{fmt_seconds(links)} in all: {verdict}")
    return lines


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
        if ph.infeasible:
            lines += [f"### {ph.phase.value}: nothing feasible", "", "```", ph.infeasible, "```", ""]
            continue
        lines += [f"### {ph.phase.value} frontier ({len(ph.frontier)} point{'s' * (len(ph.frontier) != 1)})", "",
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


def calibration_note(cluster) -> str | None:
    """A warning for a cluster whose calibration constants were never fitted."""
    from planner.specs.hardware import Calibration

    if cluster.calibration != Calibration():
        return None
    return (f"{cluster.name} has ideal calibration constants (never fitted to measurements): peak "
            f"FLOP/s and bandwidths with no latency per collective (optimistic: small batches over "
            f"many chips look better than they are), and no overlap of activation collectives with "
            f"compute (pessimistic). Fit them with `planner calibrate`.")


def plan_table(result: SearchResult, console, *, ascii_only: bool = False) -> None:
    """Per phase, the frontier as a table that fits `console.width` (80 when not a terminal)."""
    _print_wrapped(console, _summary(result), hang=0)
    note = calibration_note(result.plan.cluster)
    if note:
        _print_wrapped(console, note, hang=0, style="yellow")
    legend = ["cost/tok in chip-seconds per token", "HBM: share of each chip's memory in use"]
    for ph in result.phases:
        # A prefill request is one step, so its step column would repeat the latency.
        keep = [i for i, col in enumerate(COLUMNS) if not (col == "step" and ph.phase is Phase.PREFILL)]
        columns = [Column(COLUMNS[i], right=COLUMNS[i] not in ("layout", "wts", "bound"),
                          wrap=COLUMNS[i] == "layout") for i in keep]
        rows = [tuple(_cells(p)[i] for i in keep) for p in ph.frontier]
        console.print()
        if ph.infeasible:
            _print_wrapped(console, f"{ph.phase.value}: nothing feasible (the reason is on stderr).", hang=0)
            continue
        title = f"{ph.phase.value} frontier: latency vs MFU, {len(ph.frontier)} point{'s' * (len(ph.frontier) != 1)}"
        if ph.phase is Phase.DECODE:
            title += f" ({result.plan.workload.output_tokens} output tokens)"
            legend.insert(0, "step: one decode step")
        print_grid(console, columns, rows, title=title, ascii_only=ascii_only)
    console.print()
    _print_wrapped(console, "; ".join(legend) + ".", style="dim")


@dataclass(frozen=True)
class Column:
    header: str
    right: bool = True   # numbers align right
    wrap: bool = False   # may wrap onto several lines when the table is too wide


@dataclass(frozen=True)
class Note:
    """A full-width line under the previous row (e.g. a sharding in the book's notation)."""

    text: str


def print_grid(console, columns, rows, *, title: str | None = None, ascii_only: bool = False,
               total: tuple[str, ...] | None = None) -> None:
    """A plain table: bold header, one rule, rows, an optional total under a second rule.

    Columns are two spaces apart, or one when that is what it takes to fit `console.width`;
    past that, the `wrap` columns wrap. Only ASCII when `ascii_only`."""
    from rich.text import Text

    width = max(console.width, 20)
    cells = [r for r in rows if not isinstance(r, Note)] + ([total] if total else [])
    widths = [max([len(c.header)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    gap = 2 if sum(widths) + 2 * (len(widths) - 1) <= width else 1
    excess = sum(widths) + gap * (len(widths) - 1) - width
    for i, c in enumerate(columns):
        if excess > 0 and c.wrap:
            shrink = max(0, min(excess, widths[i] - max(len(c.header), 8)))
            widths[i] -= shrink
            excess -= shrink
    line_width = sum(widths) + gap * (len(widths) - 1)
    rule = ("-" if ascii_only else "\u2500") * line_width

    def lines_of(row) -> list[str]:
        parts = [textwrap.wrap(cell, widths[i], break_on_hyphens=False) or [""]
                 if columns[i].wrap and len(cell) > widths[i] else [cell]
                 for i, cell in enumerate(row)]
        out = []
        for k in range(max(len(p) for p in parts)):
            texts = [(p[k] if k < len(p) else "") for p in parts]
            out.append((" " * gap).join(t.rjust(w) if c.right else t.ljust(w)
                                         for t, w, c in zip(texts, widths, columns)).rstrip())
        return out

    if title:
        _print_wrapped(console, title, style="bold")
    console.print(Text(lines_of(tuple(c.header for c in columns))[0], style="bold"), soft_wrap=True)
    console.print(Text(rule), soft_wrap=True)
    for row in rows:
        if isinstance(row, Note):
            _print_wrapped(console, row.text, style="dim", indent="  ")
            continue
        for line in lines_of(row):
            console.print(Text(line), soft_wrap=True)
    if total:
        console.print(Text(rule), soft_wrap=True)
        for line in lines_of(total):
            console.print(Text(line, style="bold"), soft_wrap=True)


def _print_wrapped(console, text: str, *, style: str = "", indent: str = "", hang: int = 2) -> None:
    """Wrap at the console width (continuation lines indented `hang` more) and print the text
    as literal characters (no markup, no highlighting)."""
    from rich.text import Text

    width = max(console.width, 20)
    for paragraph in text.split("\n"):
        for line in textwrap.wrap(paragraph, width, initial_indent=indent,
                                  subsequent_indent=indent + " " * hang,
                                  break_on_hyphens=False, break_long_words=True) or [""]:
            console.print(Text(line, style=style), soft_wrap=True)


def _blank_zero(text: str, value: float) -> str:
    return "-" if value == 0 else text


def explain_table(ev: Evaluation, cluster, console, *, ascii_only: bool = False) -> None:
    """Every einsum and collective of one layout, in dataflow order, with its sharding notation
    on its own line; the rows add up to the step's compute, memory and network times."""
    title, header = _explain_header(ev)
    console.print(title, highlight=False, markup=False)
    for label, text in header:
        _print_wrapped(console, f"{label:<11}{text}", indent="  ", hang=11)
    console.print()
    columns = [Column(EXPLAIN_COLUMNS[0], right=False, wrap=True)] + [Column(h) for h in EXPLAIN_COLUMNS[1:]]
    rows: list = []
    repeat_width = len(f"x{max(r.repeat for r in ev.rows)}")
    for r in ev.rows:
        rows.append(_explain_cells(r))
        rows.append(Note(f"{f'x{r.repeat}':<{repeat_width}}  {r.notation}".rstrip()))
    print_grid(console, columns, rows, total=_explain_total(ev), ascii_only=ascii_only)
    console.print()
    for line in _explain_summary(ev):
        _print_wrapped(console, line, hang=9)
    _print_wrapped(console, _explain_footnote(ev), style="dim")
    note = calibration_note(cluster)
    if note:
        _print_wrapped(console, note, style="yellow")


EXPLAIN_COLUMNS = ("per step", "FLOP", "HBM", "net", "compute", "memory", "network")


def _explain_header(ev: Evaluation) -> tuple[str, list[tuple[str, str]]]:
    """The title line and the (label, text) lines under it."""
    d, c, w = point(ev, 0), ev.candidate, ev.workload
    title = (f"{d.phase.value}: {d.chips} chips (mesh {'x'.join(str(n) for _, n in d.mesh)}), "
             f"batch {d.batch}, {d.ffn}+{d.attention}, {d.weights} weights")
    tokens = (f"{w.input_tokens} input token{'s' * (w.input_tokens != 1)} per sequence" if c.phase is Phase.PREFILL
              else f"{w.output_tokens} output token{'s' * (w.output_tokens != 1)} per sequence, each step attending "
                   f"to {w.context} cached tokens")
    axes = ", ".join(f"{axis}=[{' '.join(c.mesh.names(axis))}]" for axis in "xyz")
    return title, [("tokens", tokens), ("FFN", c.ffn.notation), ("attention", c.attention.notation),
                   ("axes", axes)]


def _explain_cells(r) -> tuple[str, ...]:
    flops, hbm, comm = float(r.flops[0]), float(r.hbm_bytes[0]), float(r.comm_bytes[0])
    times = (float(r.compute_s[0]), float(r.memory_s[0]), float(r.comm_s[0]))
    return (r.name, _blank_zero(fmt_rate(flops, ""), flops), _blank_zero(fmt_bytes(hbm), hbm),
            _blank_zero(fmt_bytes(comm), comm), *(_blank_zero(fmt_seconds(t), t) for t in times))


def _explain_total(ev: Evaluation) -> tuple[str, ...]:
    d = point(ev, 0)
    flops = sum(float(r.flops[0]) for r in ev.rows)
    hbm = sum(float(r.hbm_bytes[0]) for r in ev.rows)
    comm = sum(float(r.comm_bytes[0]) for r in ev.rows)
    return ("total", fmt_rate(flops, ""), fmt_bytes(hbm), fmt_bytes(comm), fmt_seconds(d.compute_s),
            fmt_seconds(d.memory_s), fmt_seconds(d.comm_s))


def _explain_summary(ev: Evaluation) -> list[str]:
    """How the step follows from the columns, the metrics, the memory and any padding."""
    d, c = point(ev, 0), ev.candidate
    latency = f"latency {fmt_seconds(d.latency_s)}"
    if c.phase is Phase.DECODE:
        latency += " for all output tokens"
    lines = [
        *combine_lines(ev),
        f"step     {fmt_seconds(d.step_latency_s)} (overhead {fmt_seconds(d.overhead_s)}), {latency}, "
        f"{d.bound}-bound",
        f"MFU      {fmt_percent(d.mfu)}; cost {fmt_seconds(d.cost_chip_s_per_token)} of chip time per "
        f"token; {d.tokens_per_s:,.0f} tokens/s",
        f"memory   weights {fmt_bytes(ev.weight_bytes)} + KV cache {fmt_bytes(float(ev.kv_bytes[0]))} "
        f"+ activations {fmt_bytes(float(ev.activation_bytes[0]))} = {fmt_bytes(d.hbm_bytes_per_chip)} "
        f"per chip ({fmt_percent(d.hbm_fraction)} of HBM)",
    ]
    for p in batch_padding(c, ev.model, d.batch):
        lines.append(f"padding  {' and '.join(p.parts)}: batch {d.batch} over {p.shards} batch shards, so every "
                     f"chip computes {p.per_chip} sequence{'s' * (p.per_chip != 1)}; {fmt_percent(p.wasted)} of "
                     f"that work is padding")
    return lines


def _explain_footnote(ev: Evaluation) -> str:
    layers = max(r.repeat for r in ev.rows)
    return (f"Rows are per step and per chip, already multiplied by their repeat (x{layers}: once per layer; "
            f"x1: once per step); net: the collective's size per chip (the paper's Figure 3 convention: "
            f"without the (K-1)/K factor).")


def presets_table(console, *, ascii_only: bool = False) -> None:
    """The bundled models, clusters and plans with their key figures."""
    from planner.config import list_presets, load_cluster, load_model, load_plan

    models = [load_model(name) for name in list_presets("models")]
    print_grid(console, [Column("model", right=False), Column("params"), Column("layers"), Column("E"),
                         Column("F"), Column("heads"), Column("kv"), Column("H"),
                         Column("ffn", right=False), Column("block", right=False)],
               [(name, f"{m.n_params / 1e9:.1f} B", str(m.n_layers), str(m.d_model), str(m.d_ff),
                 str(m.n_heads), str(m.n_kv_heads), str(m.d_head), m.ffn.label, m.block.value)
                for name, m in zip(list_presets("models"), models)],
               ascii_only=ascii_only)
    console.print()
    rows = []
    for name in list_presets("clusters"):
        c = load_cluster(name)
        rows.append((name, fmt_rate(c.chip.peak_bf16_flop_per_s, "FLOP/s"), fmt_bytes(c.chip.hbm_bytes),
                     fmt_rate(c.chip.hbm_bytes_per_s, "B/s"), _topology(c.topology),
                     _counts(c.topology.chip_counts)))
    print_grid(console, [Column("cluster", right=False), Column("bf16 peak"), Column("HBM"),
                         Column("HBM bw"), Column("network", right=False),
                         Column("chips", right=False, wrap=True)], rows, ascii_only=ascii_only)
    console.print()
    rows = []
    for name in list_presets("plans"):
        p = load_plan(name)
        rows.append((name, p.model.name, p.cluster.name,
                     ",".join(ph.value for ph in p.space.phases)))
    print_grid(console, [Column("plan", right=False), Column("model", right=False),
                         Column("cluster", right=False), Column("phases", right=False)], rows,
               ascii_only=ascii_only)
    console.print()
    _print_wrapped(console, "E d_model, F d_ff, H d_head; params counted from the shapes. Use a name "
                   "wherever a file is expected: --model palm-540b, planner plan palm-540b-tpu-v4.",
                   style="dim")


def _counts(counts: tuple[int, ...]) -> str:
    """'8, 16, ..., 512' for a doubling sequence, else the list."""
    doubling = len(counts) > 3 and all(b == 2 * a for a, b in zip(counts, counts[1:]))
    shown = (counts[0], counts[1], "...", counts[-1]) if doubling else counts
    return ", ".join(map(str, shown))


def _topology(topology) -> str:
    axes = getattr(topology, "axes", None)
    if axes is not None:
        return f"{len(axes)}D torus"
    return " + ".join(level.name for level in topology.levels)


def explain_markdown(ev: Evaluation) -> str:
    """For a pull-request comment: the table's header, rows (with their notation), total and
    summary in human units; `--format csv` or `json` has the raw numbers."""
    title, header = _explain_header(ev)
    lines = [f"**{title}**", ""] + [f"- {label}: `{text}`" if label != "tokens" else f"- {label}: {text}"
                                    for label, text in header] + [""]
    rows = [(cells[0], f"`{r.notation}` x{r.repeat}", *cells[1:])
            for r, cells in ((r, _explain_cells(r)) for r in ev.rows)]
    total = _explain_total(ev)
    rows.append((f"**{total[0]}**", "", *total[1:]))
    lines += [markdown_table((EXPLAIN_COLUMNS[0], "sharding", *EXPLAIN_COLUMNS[1:]), rows, right=range(2, 8)), ""]
    lines += [f"- {line}" for line in _explain_summary(ev)] + ["", _explain_footnote(ev)]
    return "\n".join(lines) + "\n"


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
