"""`planner explain` of a pipelined layout: a row per stage group and per send between stages,
then how the latency follows from them (planner.cost.pipeline), as a table, JSON, CSV or Markdown."""

from __future__ import annotations

import csv
import io

import numpy as np

from planner.commands.runs import point_dict
from planner.cost.costmodel import BOUNDS
from planner.cost.mesh import joined_axis
from planner.cost.pipeline import PipelineEvaluation, StageView, stage_views
from planner.render.common import (
    Column,
    Note,
    calibration_label,
    calibration_note,
    markdown_table,
    print_grid,
    print_wrapped,
)
from planner.render.explain import combine_dict, combine_lines, layer_rows, overhead_parts
from planner.search.search import point
from planner.specs.plan import Phase
from planner.units import fmt_bytes, fmt_chips, fmt_percent, fmt_rate, fmt_seconds, num

COLUMNS = ("per micro-batch", "FLOP", "HBM", "net", "compute", "memory", "network", "step")


def _stage_name(s: StageView) -> str:
    last = s.first_layer + s.n_layers - 1
    holds = f", {' and '.join(s.holds)}" if s.holds else ""
    return f"stage {s.index + 1}: layers {s.first_layer}-{last}{holds}"


def _blank(text: str, value: float) -> str:
    return "-" if value == 0 else text


def _rows(ev: PipelineEvaluation) -> list[tuple[str, tuple[str, ...], str]]:
    """(kind, cells, note) per stage and per send, in pipeline order."""
    out = []
    stages = stage_views(ev)
    send_bytes, send_s = float(ev.send_bytes[0]), float(ev.send_s[0])
    for s in stages:
        e = s.evaluation
        flops = sum(float(r.flops[0]) for r in e.rows)
        hbm = sum(float(r.hbm_bytes[0]) for r in e.rows)
        comm = sum(float(r.comm_bytes[0]) for r in e.rows)
        times = (float(e.compute_s[0]), float(e.memory_s[0]), float(e.comm_s[0]), float(e.step_s[0]))
        out.append(
            (
                "stage",
                (
                    _stage_name(s),
                    _blank(fmt_rate(flops, ""), flops),
                    _blank(fmt_bytes(hbm), hbm),
                    _blank(fmt_bytes(comm), comm),
                    *(_blank(fmt_seconds(t), t) for t in times),
                ),
                f"{fmt_chips(e.candidate.mesh.chips)}, {bound_of(e)}-bound",
            )
        )
        if s.index < len(stages) - 1:
            out.append(
                (
                    "send",
                    (
                        f"send {s.index + 1} -> {s.index + 2}",
                        "-",
                        "-",
                        fmt_bytes(send_bytes),
                        "-",
                        "-",
                        fmt_seconds(send_s),
                        fmt_seconds(send_s),
                    ),
                    "point-to-point: every chip sends its share of the residual stream B_b L E to its counterpart",
                )
            )
    return out


def bound_of(e) -> str:
    return BOUNDS[int(e.bound[0])]


def _header(ev: PipelineEvaluation) -> tuple[str, list[tuple[str, str]]]:
    d, c, w = point(ev, 0), ev.candidate, ev.workload
    p, m, b = c.stages, int(ev.micro_batches[0]), int(ev.micro_batch[0])
    joined = f", joined along {c.mesh.physical[joined_axis(c.mesh)][0]}" if c.mesh.torus else ""
    title = (
        f"{d.phase.value}: {fmt_chips(d.chips)} ({p} stages of {c.mesh.chips}, stage mesh "
        f"{'x'.join(str(n) for _, n in c.mesh.physical)}{joined}), batch {d.batch}, PP{p} {d.ffn}+{d.attention}"
        f"{'+' + d.experts if d.experts else ''}, {d.weights} weights"
    )
    tokens = (
        f"{w.input_tokens} input tokens per sequence"
        if c.phase is Phase.PREFILL
        else f"{w.output_tokens} output tokens per sequence, each step attending to {w.context} cached tokens"
    )
    layers = " + ".join(str(k) for k in ev.layers) + " layers"
    if ev.model.experts is not None:  # each stage's MoE layers (the first layers of DeepSeek-V3 are dense)
        layers += (
            ", "
            + " + ".join(str(s.evaluation.model.experts.n_moe_layers(s.n_layers)) for s in stage_views(ev))
            + " of them MoE"
        )
    experts = [("experts", c.experts.notation)] if c.experts is not None else []
    return title, [
        ("tokens", tokens),
        ("pipeline", f"{p} stages ({layers}); {m} micro-batch{'es' * (m != 1)} of {b} sequence{'s' * (b != 1)}"),
        ("FFN", c.ffn.notation),
        ("attention", c.attention.notation),
        *experts,
        ("axes", "each stage: " + ", ".join(f"{a}=[{' '.join(c.mesh.names(a))}]" for a in "xyz")),
    ]


def _summary(ev: PipelineEvaluation, cluster=None) -> list[str]:
    d, c = point(ev, 0), ev.candidate
    p, m = c.stages, int(ev.micro_batches[0])
    t = [float(s.evaluation.step_s[0]) for s in stage_views(ev)]
    slowest, send = max(t), float(ev.send_s[0])
    if c.phase is Phase.PREFILL:
        how = (
            f"pipeline (m + p - 1) x max(slowest stage, send) + (p - 1) x send = ({m} + {p} - 1) x "
            f"{fmt_seconds(max(slowest, send))} + {p - 1} x {fmt_seconds(send)} = {fmt_seconds(d.latency_s)}; "
            f"bubble {fmt_percent(float(ev.bubble[0]))} of the slowest stage's time"
        )
    else:
        how = (
            f"pipeline step = max(sum of stages + (p - 1) sends, m x slowest stage) = max("
            f"{fmt_seconds(sum(t))} + {p - 1} x {fmt_seconds(send)}, {m} x {fmt_seconds(slowest)}) = "
            f"{fmt_seconds(d.step_latency_s)} per output token for {_all(d.batch)}; stages idle "
            f"{fmt_percent(float(ev.bubble[0]))} of the time"
        )
    latency = f"latency {fmt_seconds(d.latency_s)}" + (" for all output tokens" if c.phase is Phase.DECODE else "")
    for s in stage_views(ev):  # each stage's step from its columns, as explain says it for one layout
        e = s.evaluation
        stage_step = (
            f"step     {fmt_seconds(float(e.step_s[0]))} (overhead "
            f"{fmt_seconds(float(np.ravel(e.overhead_s)[0]))}{overhead_parts(e, cluster)})"
        )
        how += "\n" + f"stage {s.index + 1}:\n" + "\n".join([*combine_lines(e), stage_step])
    lines = [
        *how.split("\n"),
        f"step     {fmt_seconds(d.step_latency_s)}, {latency}, slowest stage {d.bound}-bound",
        f"MFU      {fmt_percent(d.mfu)}; cost {fmt_seconds(d.cost_chip_s_per_token)} of chip time per token; "
        f"{d.tokens_per_s:,.0f} tokens/s",
    ]
    for s in stage_views(ev):
        lines.append(
            f"memory   stage {s.index + 1}: weights {fmt_bytes(s.weight_bytes)} + KV cache "
            f"{fmt_bytes(s.kv_bytes)} ({_all(d.batch)}) + activations "
            f"{fmt_bytes(s.activation_bytes)} (one micro-batch) = {fmt_bytes(s.hbm_bytes)} per chip"
        )
    return lines


FOOTNOTE = (
    "Rows are per micro-batch and per chip of a stage; a stage's step combines its compute, memory "
    "and network as one layout does (explain --format json lists every einsum of each stage). "
    "net: bytes each chip sends."
)


def pipeline_table(ev: PipelineEvaluation, cluster, console, *, ascii_only: bool = False) -> None:
    title, header = _header(ev)
    console.print(title, highlight=False, markup=False)
    for label, text in header:
        print_wrapped(console, f"{label:<11}{text}", indent="  ", hang=11)
    console.print()
    columns = [Column(COLUMNS[0], right=False, wrap=True)] + [Column(h) for h in COLUMNS[1:]]
    rows: list = []
    for _, cells, note in _rows(ev):
        rows += [cells, Note(note)]
    print_grid(console, columns, rows, ascii_only=ascii_only)
    console.print()
    for line in _summary(ev, cluster):
        print_wrapped(console, line, hang=9)
    print_wrapped(console, FOOTNOTE, style="dim")
    note = calibration_note(cluster)
    if note:
        print_wrapped(console, note, style="yellow")


def pipeline_markdown(ev: PipelineEvaluation, cluster=None) -> str:
    title, header = _header(ev)
    lines = [f"**{title}**", ""] + [f"- {label}: {text}" for label, text in header] + [""]
    lines += [markdown_table(COLUMNS, [cells for _, cells, _ in _rows(ev)], right=range(1, 8)), ""]
    note = calibration_note(cluster) if cluster is not None else None
    return (
        "\n".join(
            lines
            + [f"- {line}" for line in _summary(ev, cluster)]
            + ["", FOOTNOTE]
            + (["", f"**{note}**"] if note else [])
        )
        + "\n"
    )


def pipeline_dict(ev: PipelineEvaluation, cluster=None) -> dict:
    out = point_dict(point(ev, 0), stages=True)
    out["model"] = ev.model.name
    if cluster is not None:
        out["cluster"] = cluster.name
        out["calibrated"] = cluster.calibrated
        out["calibration_status"] = cluster.calibration_status
    c, w = ev.candidate, ev.workload
    out["workload"] = (
        {"input_tokens": w.input_tokens}
        if c.phase is Phase.PREFILL
        else {"context": w.context, "output_tokens": w.output_tokens}
    )
    out["axes"] = {axis: c.mesh.names(axis) for axis in "xyz"}
    out["notation"] = {"ffn": c.ffn.notation, "attention": c.attention.notation}
    out["pipeline"] = {
        "micro_batch": int(ev.micro_batch[0]),
        "bubble": num(float(ev.bubble[0])),
        "send": {
            "bytes_per_chip": num(float(ev.send_bytes[0])),
            "seconds": num(float(ev.send_s[0])),
            "count": c.stages - 1,
        },
        "stages": [
            {
                "stage": s.index + 1,
                "first_layer": s.first_layer,
                "layers": s.n_layers,
                "holds": list(s.holds),
                "chips": c.mesh.chips,
                "step_s": num(float(s.evaluation.step_s[0])),
                "time_s": {
                    "compute": num(float(s.evaluation.compute_s[0])),
                    "memory": num(float(s.evaluation.memory_s[0])),
                    "comm": num(float(s.evaluation.comm_s[0])),
                    "overhead": num(float(np.ravel(s.evaluation.overhead_s)[0])),
                    "kernels": num(float(s.evaluation.local_s[0])),
                },
                "combine": combine_dict(s.evaluation),
                "memory": {
                    "weights": num(s.weight_bytes),
                    "kv_cache": num(s.kv_bytes),
                    "activations": num(s.activation_bytes),
                },
                "rows": layer_rows(s.evaluation),
            }
            for s in stage_views(ev)
        ],
    }
    return out


def pipeline_csv(ev: PipelineEvaluation, cluster=None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    calibration = calibration_label(cluster) if cluster is not None else ""
    engine = cluster.engine if cluster is not None else ""
    writer.writerow(
        (
            "row",
            "chips",
            "flops",
            "hbm_bytes",
            "comm_bytes",
            "compute_s",
            "memory_s",
            "comm_s",
            "step_s",
            "calibration",
            "engine",
        )
    )
    for s in stage_views(ev):
        e = s.evaluation
        writer.writerow(
            (
                _stage_name(s),
                ev.candidate.mesh.chips,
                *(num(sum(float(getattr(r, f)[0]) for r in e.rows)) for f in ("flops", "hbm_bytes", "comm_bytes")),
                num(float(e.compute_s[0])),
                num(float(e.memory_s[0])),
                num(float(e.comm_s[0])),
                num(float(e.step_s[0])),
                calibration,
                engine,
            )
        )
        if s.index < ev.candidate.stages - 1:
            send = num(float(ev.send_s[0]))
            writer.writerow(
                (
                    f"send {s.index + 1} -> {s.index + 2}",
                    ev.candidate.mesh.chips,
                    0,
                    0,
                    num(float(ev.send_bytes[0])),
                    0,
                    0,
                    send,
                    send,
                    calibration,
                    engine,
                )
            )
    return buf.getvalue()


def _all(batch: int) -> str:
    """'all 8 sequences', or 'the one sequence'."""
    return "the one sequence" if batch == 1 else f"all {batch} sequences"
