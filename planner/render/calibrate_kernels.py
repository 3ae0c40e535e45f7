"""Renderers of `planner calibrate` on a file with row kinds (planner.commands.calibrate.kernels):
the residual tables per row kind, the cluster YAML with its fitted `calibration:` block, and
the accuracy page (Markdown)."""

from __future__ import annotations

import re
import textwrap

from planner.commands.calibrate.kernels import summary
from planner.units import fmt_seconds, signed_percent

KIND_TITLES = (
    ("collective", "Collectives (NCCL time against message size and GPUs)"),
    ("gemm", "GEMMs (time against m, n, k)"),
    ("latency", "End to end, fixed batch (prefill + decode)"),
    ("ttft", "Time to first token"),
    ("throughput", "Fixed-batch throughput (as end-to-end time)"),
)


def _what(row) -> str:
    if row.kind == "collective":
        return (
            f"{row['collective'].value} {row['implementation']} {row['gpus']} GPUs/{row['nodes']} node"
            f"{'s' * (row['nodes'] > 1)} {row['bytes'] / 1024:g} KiB" + (f" run {row['run']}" if row.get("run") else "")
        )
    if row.kind == "gemm":
        return f"{row['dtype']} m={row['m']} n={row['n']} k={row['k']}"
    return row.name


def _line(r) -> str:
    err = "" if r.error is None else signed_percent(r.error)
    pred = "" if r.predicted_s is None else fmt_seconds(r.predicted_s)
    return f"| {_what(r.row)} | {fmt_seconds(r.row.measured_s)} | {pred} | {err} | {'yes' if r.fitted else r.why} |"


def _summary_line(residuals) -> str:
    fitted = [r for r in residuals if r.fitted]
    median, worst, n = summary(fitted)
    if not n:
        return "no fitted rows"
    return f"{n} fitted rows: median |error| {100 * median:.1f}%, worst {100 * worst:.1f}%"


def constants(fit) -> list[str]:
    c = fit.cluster.calibration
    out = [
        f"matmul_efficiency {c.matmul_efficiency:g}",
        *(
            [f"narrow_matmul_efficiency {c.narrow_matmul_efficiency:g}"]
            if c.narrow_matmul_efficiency is not None
            else []
        ),
        f"hbm_efficiency {c.hbm_efficiency:g}",
        f"matmul_half_rows {c.matmul_half_rows:g}",
        f"kernel_overhead_s {fmt_seconds(c.kernel_overhead_s)}",
        f"layer_overhead_s {fmt_seconds(c.layer_overhead_s)}",
        f"token_overhead_s {fmt_seconds(c.token_overhead_s)}",
        f"overlap {c.overlap:g}",
    ]
    for name, level in c.levels.items():
        out.append(
            f"{name}: " + ", ".join(f"{k} {fmt_seconds(v) if k.endswith('_s') else f'{v:g}'}" for k, v in level.items())
        )
    return out


def report_text(data, fit) -> str:
    """The residual report printed by `planner calibrate` (summary per row kind)."""
    lines = [f"{fit.cluster.name} calibrated from {data.file}"]
    lines += [line for s in constants(fit) for line in _packed(s.split(", "), "  ", "      ")]
    for kind, title in KIND_TITLES:
        rows = fit.of(kind)
        if rows:
            line = f"{title}: {_summary_line(rows)}"
            lines += [line] if len(line) <= 80 else [f"{title}:", f"  {_summary_line(rows)}"]
    lines += [line for w in fit.warnings for line in textwrap.wrap(f"warning: {w}", 80, subsequent_indent="  ")]
    return "\n".join(lines) + "\n"


def _packed(items: list[str], first: str, then: str) -> list[str]:
    """`items` joined by ", " in lines of at most 80 columns, never splitting an item."""
    lines, line = [], first + items[0]
    for item in items[1:]:
        if len(line) + 2 + len(item) > 80:
            lines.append(line + ",")
            line = then + item
        else:
            line += ", " + item
    return lines + [line]


GPU_ASSUMPTIONS = """\
- **One set of constants per cluster**, shared by every model, layout and format on it (no
  per-model or per-point factor). A matmul kernel takes the larger of its FLOPs at
  `matmul_efficiency` of the bf16 peak (`narrow_matmul_efficiency` of a higher fp8/int8/fp4 peak),
  as if it had `matmul_half_rows` more rows (a matmul of m rows runs at e m / (m + m_h)), and its
  HBM bytes at `hbm_efficiency` of the bandwidth, plus `kernel_overhead_s`: a roofline plus a
  fixed time, what the GEMM tables show. The attention core (QK, AV and the KV-cache read
  it streams) is one kernel. Kernels run one after another: their times add.
- **Collectives** inside a switched level (an NVLink island) are one step at that level, whatever
  logical sub-axes a layout splits them into: the fastest of NCCL's lines (a low-latency protocol
  with a fixed latency plus a small latency per ring step, a pipelined bulk protocol slower to
  start, and NVLink SHARP's in-switch all-reduce where the level has it), each plus the bytes at
  the level's bandwidth times its efficiency (planner/cost/network.py). Across nodes, the
  InfiniBand level's own latency. Activation
  collectives do not overlap the kernels (`overlap` 0: NCCL and GEMM kernels back to back).
- **Fixed times**: `layer_overhead_s` per layer and step (launches, framework work) and
  `token_overhead_s` per token and layer for every token a chip holds (norms, activations,
  residual adds, rotary, quantisation, sampling: repeated on every GPU of a tensor-parallel group,
  split by a batch-sharded layout), fitted on the end-to-end rows. Empirical: the rows do not
  show how the per-token time grows with the model's width. Both come from the software and
  batch sizes of these rows; applied to other software, batching modes or much larger models
  they are an extrapolation, which small-batch decode (where they are a large share of a step)
  depends on most.
- **End-to-end rows** are static batches: one prefill pass of `input_tokens` per sequence, then
  `output_tokens - 1` decode steps whose context grows by one token each, summed step by step;
  time to first token is the prefill pass alone. The layout is the row's tensor parallelism
  (1D weight-stationary FFN, attention by heads) on its GPUs, the fastest mesh grouping.
"""

GPU_NOT_MODELLED = """\
- Continuous (in-flight) batching, chunked prefill, paged-KV bookkeeping, prefix caching and
  speculative decoding: the rows are static batches.
- CUDA graphs against eager launches, the scheduler, tokenisation and the serving stack: only as
  far as the fitted per-layer and per-token times absorb them, for the software each set measured.
- cuBLAS's per-shape kernel choice (tile shapes, wave quantisation) and NCCL's protocol and channel
  choices inside a line: the A100 GEMM and 2 MiB collective rows that show them are listed as such.
- Collective constants no row measures: across nodes only the InfiniBand level's fixed latency is
  fitted (two-node rows of small messages, where a set has them); its step latency and efficiency
  are taken from NVLink by a stated rule, so multi-node points rest on that rule.
- TensorRT-LLM's custom all-reduce (shown, not fitted), how a framework's attention kernel treats
  grouped KV heads (TensorRT-LLM v0.9's Mistral 7B runs as fast as Llama-2-7B with a quarter of
  its KV cache), and clocks or power limits that differ between runs.
"""


def accuracy_section(data, fit, command: str) -> str:
    """A Markdown page: constants, warnings, notes, the assumptions, what is not modelled and every
    residual, per row kind."""
    out = [
        f"## {fit.cluster.name}",
        "",
        f"Generated by `{command}`; do not edit by hand.",
        "",
        f"Data: {data.source}.",
        "",
        "Fitted constants:",
        "",
    ]
    out += [f"- {s}" for s in constants(fit)]
    out += ["", "Warnings (constants the data does not identify, rules used):", ""]
    out += [f"- {w}" for w in fit.warnings] or ["- none"]
    out += ["", "Notes of the measurements file:", "", *[f"> {line}" for line in data.notes.splitlines()], ""]
    out += ["### Assumptions", "", GPU_ASSUMPTIONS, "### Not modelled", "", GPU_NOT_MODELLED]
    for kind, title in KIND_TITLES:
        rows = fit.of(kind)
        if not rows:
            continue
        out += [
            f"### {title}",
            "",
            _summary_line(rows) + ".",
            "",
            "| row | measured | predicted | error | fitted |",
            "|---|---|---|---|---|",
        ]
        out += [_line(r) for r in rows] + [""]
    return "\n".join(out)


def without_borrowed(text: str) -> str:
    """A cluster YAML without its borrowed-calibration rule (comment and keys): fitted constants replace it."""
    text = re.sub(r"(?m)^# Calibration: no published.*\n(?:#.*\n)*", "", text)
    return re.sub(r"(?m)^calibration_(?:borrowed_from|confidence):.*\n", "", text)


def cluster_yaml(text: str, fit, data, command: str) -> str:
    """The cluster file with its calibration block replaced by the fitted one."""
    text = re.sub(r"(?m)^# calibration: omitted.*\n", "", text)
    text = without_borrowed(text)
    text = re.sub(r"(?m)^calibration:\n(?:[ #].*\n|\n)*", "", text)
    c = fit.cluster.calibration
    block = [
        "calibration:",
        f"  # Fitted by `{command}` (planner.commands.calibrate.kernels);",
        f"  # regenerate with that command, do not edit by hand. Residuals: docs/accuracy-gpu-{fit.cluster.name}.md.",
    ]
    for kind, _title in KIND_TITLES:
        rows = fit.of(kind)
        if rows:
            block.append(f"  # {kind}: {_summary_line(rows)}")
    block += [f"  # warning: {w}" for w in fit.warnings]
    for name in (
        "matmul_efficiency",
        "narrow_matmul_efficiency",
        "hbm_efficiency",
        "network_efficiency",
        "collective_latency_s",
        "layer_overhead_s",
        "token_overhead_s",
        "overlap",
        "kernel_overhead_s",
        "matmul_half_rows",
    ):
        if getattr(c, name) is not None:  # narrow_matmul_efficiency: absent where not identified
            block.append(f"  {name}: {getattr(c, name):g}")
    block.append("  levels:")
    for name, level in c.levels.items():
        block.append(f"    {name}: {{" + ", ".join(f"{k}: {v:g}" for k, v in level.items()) + "}")
    head, sep, tail = text.partition("\nsource:")
    return head.rstrip("\n") + "\n" + "\n".join(block) + "\n" + (sep.lstrip("\n") + tail if sep else "")
