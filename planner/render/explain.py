"""Renderers of `planner explain`: one layout's rows, totals and summary as a table, JSON, CSV
or Markdown."""

from __future__ import annotations

import csv
import io

import numpy as np

from planner.commands.runs import point_dict
from planner.cost.costmodel import Evaluation
from planner.cost.padding import batch_padding
from planner.render.common import (
    Column,
    Note,
    calibration_label,
    calibration_note,
    markdown_table,
    print_grid,
    print_wrapped,
)
from planner.render.explain_moe import moe_lines
from planner.search.search import capacity, point
from planner.specs.formats import Sparsity
from planner.specs.plan import Phase
from planner.units import fmt_bytes, fmt_chips, fmt_percent, fmt_rate, fmt_seconds, fmt_tokens, num


def _mfu_of_format_peak(ev: Evaluation, cluster) -> float:
    """MFU against the peak of the point's own weight format (MFU itself is of the bf16 peak)."""
    chip = cluster.chip
    return float(ev.mfu[0]) * chip.peak_bf16_flop_per_s / ev.formats_at(0).weight_peak_flop_per_s(chip)


def explain_dict(ev: Evaluation, cluster=None) -> dict:
    out = point_dict(point(ev, 0))
    out["model"] = ev.model.name
    f = ev.formats_at(0)
    out["formats"] = {
        "weights": f.weights.label,
        "weight_bytes_per_weight": num(f.weight_bytes),
        "compute": f.weights.compute.label,
        "kv_cache": f.kv_cache.label,
        "kv_cache_bytes_per_element": num(f.kv_cache.bytes_per_element(ev.model.d_head)),
        "sparsity": f.sparsity.label,
        "quality_modelled": False,
        "mfu_peak": "bf16",
    }
    if cluster is not None:
        out["cluster"] = cluster.name
        out["calibrated"] = cluster.calibrated
        out["calibration_status"] = cluster.calibration_status
        out["engine"] = cluster.engine
        out["mfu_of_format_peak"] = num(_mfu_of_format_peak(ev, cluster))
    c = ev.candidate
    w = ev.workload
    out["workload"] = (
        {"input_tokens": w.input_tokens}
        if c.phase is Phase.PREFILL
        else {"context": w.context, "output_tokens": w.output_tokens}
    )
    if ev.model.max_context is not None:
        out["max_context"] = ev.model.max_context
    if ev.model.n_local_layers:
        out["local_attention"] = {"layers": ev.model.n_local_layers, "window_tokens": ev.model.window_tokens}
    out["axes"] = {axis: c.mesh.names(axis) for axis in "xyz"}
    if ev.micro_batches > 1:  # two-batch overlap: its chains (the rows are one micro-batch's)
        out["two_batch_overlap"] = {
            "micro_batches": ev.micro_batches,
            "compute_chain_s": num(float(ev.compute_chain_s[0])),
            "link_chain_s": num(float(ev.comm_chain_s[0])),
        }
    out["notation"] = {
        "ffn": c.ffn.notation,
        "attention": c.attention.notation,
        **({"experts": c.experts.notation} if c.experts is not None else {}),
    }
    if ev.model.experts is not None:
        x = ev.model.experts
        out["moe"] = {
            "moe_layers": x.n_moe_layers(ev.model.n_layers),
            "routed_experts": x.n_experts,
            "top_k": x.top_k,
            "shared_experts": x.n_shared,
            "params_total": ev.model.n_params,
            "params_active": ev.model.n_active_params,
            "mfu_counts": "active parameters",
            "load_imbalance": w.routing.load_imbalance,
            "redundant_experts": c.experts.redundant(ev.model, c.mesh.sizes, w.routing),
            "redundant_experts_default": w.routing.redundant_experts is None,
        }
    if ev.model.latent is not None:
        out["latent_attention"] = {"cache_elements_per_token_per_layer": ev.model.latent.cache_elements}
    out["padding"] = [
        {"parts": list(p.parts), "batch_shards": p.shards, "sequences_per_chip": p.per_chip, "wasted": num(p.wasted)}
        for p in batch_padding(c, ev.model, int(ev.batch[0]))
    ]
    out["heads"] = {"heads": ev.model.n_heads, "padded": c.attention.padded_heads(ev.model, c.ffn, c.mesh.sizes)}
    out["layers"] = layer_rows(ev)
    out["memory"] = {
        "weights": num(float(ev.weight_bytes)),
        "kv_cache": num(float(ev.kv_bytes[0])),
        "activations": num(float(ev.activation_bytes[0])),
    }
    if cluster is not None:
        out["memory"].update(
            hbm=num(cluster.chip.hbm_bytes),
            reserve=num(cluster.chip.memory_reserve_bytes),
            usable=num(cluster.chip.usable_hbm_bytes),
        )
    out["combine"] = combine_dict(ev)
    return out


def combine_dict(ev: Evaluation) -> dict:
    """How a one-point Evaluation's step follows from its columns (the JSON of combine_lines)."""
    return {
        "overlap": num(ev.overlap),
        "critical_path_s": num(float(ev.critical_s[0])),
        "kernels_s": num(float(ev.local_s[0])),
        "prefetched_comm_s": num(float(ev.prefetched_s[0])),
        "ring_steps": ev.ring_steps,
        "comm_latency_s": num(ev.comm_latency_s),
        "comm_latency_by_level_s": {name: num(t) for name, t in ev.comm_latency_by_level_s},
    }


def layer_rows(ev: Evaluation) -> list[dict]:
    """The explain rows of a one-point Evaluation, as JSON."""
    return [
        {
            "name": r.name,
            "notation": r.notation,
            "repeat": r.repeat,
            "collective": r.collective,
            "compute_format": r.compute_format,
            "peak_flop_per_s": num(r.peak_flop_per_s),
            "sustained_flop_per_s": num(r.sustained_flop_per_s),
            "flops": num(float(r.flops[0])),
            "hbm_bytes": num(float(r.hbm_bytes[0])),
            "comm_bytes": num(float(r.comm_bytes[0])),
            "seconds": {
                "compute": num(float(r.compute_s[0])),
                "memory": num(float(r.memory_s[0])),
                "comm": num(float(r.comm_s[0])),
            },
            **({"kernel": r.kernel} if r.kernel else {}),
        }
        for r in ev.rows
    ]


def combine_lines(ev: Evaluation) -> list[str]:
    """How the step time follows from the compute, memory and network columns (the overlap
    policy of planner.cost.costmodel), in words and numbers."""
    f = ev.overlap
    critical, prefetched = float(ev.critical_s[0]), float(ev.prefetched_s[0])
    active = float(ev.comm_s[0]) - prefetched
    lines = []
    if ev.ring_steps:
        latency = ev.comm_latency_s
        levels = ev.comm_latency_by_level_s
        per = (
            f"{ev.ring_steps} ring steps x {fmt_seconds(latency / ev.ring_steps)}"
            if [name for name, _ in levels] in ([], ["torus"])
            else ", ".join(f"{name} {fmt_seconds(t)}" for name, t in levels) + f"; {ev.ring_steps} ring steps"
        )
        lines.append(
            f"network  {fmt_seconds(float(ev.comm_s[0]))} = {fmt_seconds(float(ev.comm_s[0]) - latency)} "
            f"moving bytes + {fmt_seconds(latency)} latency ({per})"
        )
    compute, memory, local = (float(x[0]) for x in (ev.compute_s, ev.memory_s, ev.local_s))
    stall = (
        ""
        if local <= max(compute, memory) * (1 + 1e-12)
        else f"; {fmt_seconds(local - max(compute, memory))} more than max(compute, memory): kernels of different bounds"
    )
    lines += [
        f"kernels  {fmt_seconds(local)}: each kernel the larger of its compute and memory time, summed "
        f"(compute {fmt_seconds(compute)}, memory {fmt_seconds(memory)}{stall})"
    ]
    if ev.micro_batches > 1:
        comm = float(ev.comm_chain_s[0])
        lines += [
            f"two-batch overlap  {ev.micro_batches} micro-batches of {-(-int(ev.batch[0]) // ev.micro_batches)} "
            f"sequences; each row above sums both (its notation is one micro-batch's)",
            f"  compute chain  {fmt_seconds(local)}: every micro-batch's attention, expert matmuls and other kernels",
            f"  link chain     {fmt_seconds(comm)}: every micro-batch's dispatch, combine and other collectives",
            f"  step (before overhead) = the longer chain, {fmt_seconds(max(local, comm))} "
            f"(the sum of the two would be {fmt_seconds(local + comm)})",
        ]
    else:
        lines.append(
            f"overlap  kernels {fmt_seconds(local)} + activation collectives {fmt_seconds(active)} - "
            f"{f:.4g} x the smaller of the two = {fmt_seconds(critical)}"
        )
    if prefetched > 0:
        links = float(ev.comm_s[0])
        verdict = "hidden under it" if links <= critical else "the links are the bottleneck"
        lines.append(
            f"prefetch weight all-gathers {fmt_seconds(prefetched)} run ahead; links busy "
            f"{fmt_seconds(links)} in all: {verdict}"
        )
    return lines


def _blank_zero(text: str, value: float) -> str:
    return "-" if value == 0 else text


def explain_table(ev: Evaluation, cluster, console, *, ascii_only: bool = False) -> None:
    """Every einsum and collective of one layout, in dataflow order, with its sharding notation
    on its own line; the rows add up to the step's compute, memory and network times."""
    title, header = _explain_header(ev)
    console.print(title, highlight=False, markup=False)
    for label, text in header:
        print_wrapped(console, f"{label:<11}{text}", indent="  ", hang=11)
    console.print()
    columns = [Column(EXPLAIN_COLUMNS[0], right=False, wrap=True)] + [Column(h) for h in EXPLAIN_COLUMNS[1:]]
    rows: list = []
    repeat_width = len(f"x{max(r.repeat for r in ev.rows)}")
    for r in ev.rows:
        rows.append(_explain_cells(r))
        rows.append(Note(f"{f'x{r.repeat}':<{repeat_width}}  {r.notation}{_peak(r)}{_kernel(r, ev)}".rstrip()))
    print_grid(console, columns, rows, total=_explain_total(ev), ascii_only=ascii_only)
    console.print()
    for line in _explain_summary(ev, cluster):
        print_wrapped(console, line, hang=9)
    print_wrapped(console, _explain_footnote(ev), style="dim")
    note = calibration_note(cluster)
    if note:
        print_wrapped(console, note, style="yellow")


EXPLAIN_COLUMNS = ("per step", "FLOP", "HBM", "net", "compute", "memory", "network")


def _peak(r) -> str:
    """'  [fp8 at 1.45 PFLOP/s: 73% of peak]': the format an einsum runs at and the rate large
    matmuls sustain there (planner.cost.kernels.matmul_flop_per_s), with its share of the
    format's peak ('  [fp8 at 1.98 PFLOP/s]' at the peak itself; '' for other rows)."""
    if not r.compute_format:
        return ""
    rate = f"{r.compute_format} at {fmt_rate(r.sustained_flop_per_s, 'FLOP/s')}"
    if r.sustained_flop_per_s == r.peak_flop_per_s:
        return f"  [{rate}]"
    return f"  [{rate}: {100 * r.sustained_flop_per_s / r.peak_flop_per_s:.0f}% of peak]"


def _kernel(r, ev: Evaluation) -> str:
    """'  {one kernel with: read KV cache}': the rows that run as one kernel with row r (one
    roofline: their compute and memory overlap); '' for a row that is its own kernel."""
    others = [o.name for o in ev.rows if r.kernel and o.kernel == r.kernel and o is not r]
    return f"  {{one kernel with: {', '.join(others)}}}" if others else ""


def _formats_line(ev: Evaluation) -> str:
    f, d_head = ev.formats_at(0), ev.model.d_head
    text = (
        f"{f.weights.label} weights ({f.weight_bytes:.4g} B per weight: {f.weights.description}), "
        f"{f.kv_cache.label} KV cache ({f.kv_cache.bytes_per_element(d_head):.4g} B per element); "
        "activations and collectives bf16"
    )
    if ev.model.experts is not None and f.dispatch_bytes == 1:
        text += " except the MoE dispatch all-to-all: tokens leave for their experts in fp8 (as DeepEP), combine bf16"
    if f.sparsity is Sparsity.TWO_FOUR:
        text += (
            "; 2:4 sparsity what-if: weight matmuls at the chip's sparse peak, weights at half plus "
            "2-bit indices; quality is not modelled"
        )
    return text


def _explain_header(ev: Evaluation) -> tuple[str, list[tuple[str, str]]]:
    """The title line and the (label, text) lines under it."""
    d, c, w = point(ev, 0), ev.candidate, ev.workload
    title = (
        f"{d.phase.value}: {fmt_chips(d.chips)} (mesh {'x'.join(str(n) for _, n in d.mesh)}), "
        f"batch {d.batch}, {d.ffn}+{d.attention}{'+' + d.experts if d.experts else ''}, {d.weights} weights"
    )
    tokens = (
        f"{w.input_tokens} input token{'s' * (w.input_tokens != 1)} per sequence"
        if c.phase is Phase.PREFILL
        else f"{w.output_tokens} output token{'s' * (w.output_tokens != 1)} per sequence, each step attending "
        + (
            f"to {fmt_tokens(w.context)} cached tokens"
            if w.context == int(w.context)
            else f"to a mean context of {fmt_tokens(w.context)} cached tokens"
        )
    )
    axes = ", ".join(f"{axis}=[{' '.join(c.mesh.names(axis))}]" for axis in "xyz")
    experts = [("experts", c.experts.notation)] if c.experts is not None else []
    m = ev.model
    local = (
        [
            (
                "local",
                f"{m.n_local_layers} of {m.n_layers} layers attend to the last {m.window_tokens} tokens "
                f"(sliding window): their KV cache holds at most {m.window_tokens} tokens per sequence",
            )
        ]
        if m.n_local_layers
        else []
    )
    return title, [
        ("tokens", tokens),
        *local,
        ("formats", _formats_line(ev)),
        ("FFN", c.ffn.notation),
        ("attention", c.attention.notation),
        *experts,
        ("axes", axes),
    ]


def _explain_cells(r) -> tuple[str, ...]:
    flops, hbm, comm = float(r.flops[0]), float(r.hbm_bytes[0]), float(r.comm_bytes[0])
    times = (float(r.compute_s[0]), float(r.memory_s[0]), float(r.comm_s[0]))
    return (
        r.name,
        _blank_zero(fmt_rate(flops, ""), flops),
        _blank_zero(fmt_bytes(hbm), hbm),
        _blank_zero(fmt_bytes(comm), comm),
        *(_blank_zero(fmt_seconds(t), t) for t in times),
    )


def _explain_total(ev: Evaluation) -> tuple[str, ...]:
    d = point(ev, 0)
    flops = sum(float(r.flops[0]) for r in ev.rows)
    hbm = sum(float(r.hbm_bytes[0]) for r in ev.rows)
    comm = sum(float(r.comm_bytes[0]) for r in ev.rows)
    return (
        "total",
        fmt_rate(flops, ""),
        fmt_bytes(hbm),
        fmt_bytes(comm),
        fmt_seconds(d.compute_s),
        fmt_seconds(d.memory_s),
        fmt_seconds(d.comm_s),
    )


def overhead_parts(ev: Evaluation, cluster) -> str:
    """': 32 layers x 86 us + 128 kernels x 5.83 us + 896 tokens per chip x 32 layers x 124 ns':
    the step's fixed times (costmodel's overhead), each part that is not 0."""
    if cluster is None:
        return ""
    cal, layers = cluster.calibration, ev.model.n_layers
    kernels, tokens = int(ev.overhead_kernels), float(np.ravel(ev.overhead_tokens)[0])
    parts = [
        f"{layers} layers x {fmt_seconds(cal.layer_overhead_s)}" if cal.layer_overhead_s else "",
        f"{kernels} kernels x {fmt_seconds(cal.kernel_overhead_s)}" if kernels and cal.kernel_overhead_s else "",
        f"{tokens:,.0f} tokens per chip x {layers} layers x {fmt_seconds(cal.token_overhead_s)}"
        if tokens and cal.token_overhead_s
        else "",
    ]
    parts = [p for p in parts if p]
    engine = f"; {cluster.engine_note}'s layer and token times" if cluster.engine_note else ""
    return (": " + " + ".join(parts) if parts else "") + engine


def _explain_summary(ev: Evaluation, cluster=None) -> list[str]:
    """How the step follows from the columns, the metrics, the memory and any padding."""
    d, c = point(ev, 0), ev.candidate
    latency = f"latency {fmt_seconds(d.latency_s)}"
    if c.phase is Phase.DECODE:
        latency += " for all output tokens"
    lines = [
        *combine_lines(ev),
        f"step     {fmt_seconds(d.step_latency_s)} (overhead {fmt_seconds(d.overhead_s)}{overhead_parts(ev, cluster)}), "
        f"{latency}, {d.bound}-bound",
        f"MFU      {fmt_percent(d.mfu)} (against the bf16 peak in every format, the paper's convention"
        + (
            f"; {fmt_percent(_mfu_of_format_peak(ev, cluster))} of the {ev.formats_at(0).weights.compute.label}"
            f"{' 2:4' if ev.formats_at(0).sparsity is Sparsity.TWO_FOUR else ''} peak"
            if cluster is not None and _mfu_of_format_peak(ev, cluster) != d.mfu
            else ""
        )
        + "); "
        f"cost {fmt_seconds(d.cost_chip_s_per_token)} of chip time per token; {d.tokens_per_s:,.0f} tokens/s",
        f"memory   weights {fmt_bytes(ev.weight_bytes)} + KV cache {fmt_bytes(float(ev.kv_bytes[0]))} "
        f"+ activations {fmt_bytes(float(ev.activation_bytes[0]))} = {fmt_bytes(d.hbm_bytes_per_chip)} "
        f"per chip ({fmt_percent(d.hbm_fraction)} of HBM)"
        + (f"; it must fit in {capacity(cluster.chip)}" if cluster is not None else ""),
    ]
    lines += moe_lines(ev)
    if ev.formats_at(0).sparsity is Sparsity.TWO_FOUR:
        lines.append("quality  2:4 sparsity is a what-if: its effect on model quality is not modelled")
    for p in batch_padding(c, ev.model, d.batch):
        lines.append(
            f"padding  {' and '.join(p.parts)}: batch {d.batch} over {p.shards} batch shards, so every "
            f"chip computes {p.per_chip} sequence{'s' * (p.per_chip != 1)}; {fmt_percent(p.wasted)} of "
            f"that work is padding"
        )
    heads = c.attention.padded_heads(ev.model, c.ffn, c.mesh.sizes)
    if heads > ev.model.n_heads:
        lines.append(
            f"padding  {ev.model.n_heads} query heads padded to {heads} to fill their head shards: the "
            f"extra heads' weights, FLOPs and bytes are charged"
        )
    return lines


def _explain_footnote(ev: Evaluation) -> str:
    layers = max(r.repeat for r in ev.rows)
    return (
        f"Rows are per step and per chip, already multiplied by their repeat (x{layers}: once per layer; "
        f"x1: once per step); net: the collective's size per chip (the paper's Figure 3 convention: "
        f"without the (K-1)/K factor)."
    )


def explain_markdown(ev: Evaluation, cluster=None) -> str:
    """For a pull-request comment: the table's header, rows (with their notation), total and
    summary in human units; `--format csv` or `json` has the raw numbers."""
    title, header = _explain_header(ev)
    lines = (
        [f"**{title}**", ""]
        + [f"- {label}: `{text}`" if label != "tokens" else f"- {label}: {text}" for label, text in header]
        + [""]
    )
    rows = [
        (cells[0], f"`{r.notation}` x{r.repeat}{_peak(r)}{_kernel(r, ev)}", *cells[1:])
        for r, cells in ((r, _explain_cells(r)) for r in ev.rows)
    ]
    total = _explain_total(ev)
    rows.append((f"**{total[0]}**", "", *total[1:]))
    lines += [markdown_table((EXPLAIN_COLUMNS[0], "sharding", *EXPLAIN_COLUMNS[1:]), rows, right=range(2, 8)), ""]
    lines += [f"- {line}" for line in _explain_summary(ev, cluster)] + ["", _explain_footnote(ev)]
    note = calibration_note(cluster) if cluster is not None else None
    if note:
        lines += ["", f"**{note}**"]
    return "\n".join(lines) + "\n"


def explain_csv(ev: Evaluation, cluster=None) -> str:
    d = explain_dict(ev)
    calibration = calibration_label(cluster) if cluster is not None else ""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        (
            "row",
            "notation",
            "collective",
            "repeat",
            "flops",
            "hbm_bytes",
            "comm_bytes",
            "compute_s",
            "memory_s",
            "comm_s",
            "compute_format",
            "peak_flop_per_s",
            "calibration",
            "kernel",
            "engine",
        )
    )
    for r in d["layers"]:
        writer.writerow(
            (
                r["name"],
                r["notation"],
                r["collective"],
                r["repeat"],
                r["flops"],
                r["hbm_bytes"],
                r["comm_bytes"],
                r["seconds"]["compute"],
                r["seconds"]["memory"],
                r["seconds"]["comm"],
                r["compute_format"],
                r["peak_flop_per_s"],
                calibration,
                r.get("kernel", ""),
                cluster.engine if cluster is not None else "",
            )
        )
    return buf.getvalue()
