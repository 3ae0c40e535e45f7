"""A measurements file with row kinds (`format: planner-measurements/2`, the GPU calibration sets
written by configs/measurements/build_gpu.py): every bad row is named by file, line and field.

Row kinds and what each measures (seconds):
- `latency`: one fixed batch end to end, `latency_s`: prefill of `input_tokens`, then decode
  steps until `output_tokens` tokens exist;
- `ttft`: time to first token at batch 1, `ttft_s` (the prefill pass);
- `throughput`: a fixed batch's output tokens per second; its end-to-end time is
  `latency_s_derived` = batch x output_tokens / `tokens_per_s_total` (a latency row then);
- `collective`: `seconds` of one `collective` (all-reduce, all-gather, reduce-scatter) of
  `bytes` per GPU (nccl-tests' size: the planner's bytes_per_chip) over `gpus` GPUs on `nodes`;
- `gemm`: `seconds` of y[m, n] = x[m, k] W[k, n] in `dtype` (bf16, or fp8 weights and inputs);
  `activation_quantisation: dynamic-per-tensor` where the time includes quantising x to fp8
  with a scale computed on the fly (planner.cost.kernels.dynamic_quantisation_seconds).
Other keys (framework, device, source, ...) describe the row and are kept as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from planner.config.models import read_model
from planner.config.yamlio import (
    At,
    Field,
    boolean,
    choice,
    count,
    entries,
    fields,
    list_of,
    load_document,
    number,
    passthrough,
    text,
)
from planner.cost.layouts import CollectiveKind
from planner.errors import ConfigError
from planner.specs.model import Model

FORMAT = "planner-measurements/2"
MODEL_KINDS = ("latency", "ttft", "throughput")
KERNEL_KINDS = ("collective", "gemm")
KINDS = MODEL_KINDS + KERNEL_KINDS
WEIGHTS = {
    "fp16": "bf16",
    "bf16": "bf16",
    "fp8": "fp8",
    "int8": "int8",
}  # fp16: the planner's bf16 (2 bytes, same peak)
COLLECTIVES = {
    k.value: k for k in (CollectiveKind.ALL_REDUCE, CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER)
}
_S = number("seconds")
_ANY = Field(passthrough, required=False)
ROW_FIELDS = {
    "kind": Field(choice({k: k for k in KINDS}, "row kind")),
    "name": Field(text, required=False),
    "source": Field(text),
    "model": Field(text, required=False),
    "chips": Field(count, required=False),
    "tp": Field(count, required=False),
    "pp": Field(count, required=False),
    "batch": Field(count, required=False),
    "input_tokens": Field(count, required=False),
    "output_tokens": Field(count, required=False),
    "weights": Field(choice(WEIGHTS, "format"), required=False),
    "activations": Field(choice(WEIGHTS, "format"), required=False),
    "kv_cache": Field(choice(WEIGHTS, "format"), required=False),
    "ffn": Field(text, required=False),
    "attention": Field(text, required=False),
    "latency_s": Field(_S, required=False),
    "ttft_s": Field(_S, required=False),
    "latency_s_derived": Field(_S, required=False),
    "seconds": Field(_S, required=False),
    "tokens_per_s_total": Field(number(), required=False),
    "tokens_per_s_per_gpu": Field(number(), required=False),
    "collective": Field(choice(COLLECTIVES, "collective"), required=False),
    "implementation": Field(text, required=False),
    "gpus": Field(count, required=False),
    "nodes": Field(count, required=False),
    "bytes": Field(number("bytes"), required=False),
    "elements": Field(count, required=False),
    "dtype": Field(text, required=False),
    "m": Field(count, required=False),
    "n": Field(count, required=False),
    "k": Field(count, required=False),
    "unit_ambiguous": Field(boolean, required=False),
    "run": Field(count, required=False),
    "activation_quantisation": Field(
        choice({"dynamic-per-tensor": "dynamic-per-tensor"}, "activation quantisation"), required=False
    ),
    **{
        key: _ANY
        for key in (
            "framework",
            "sampling",
            "device",
            "network",
            "caveat",
            "nccl_version",
            "includes",
            "published_as",
            "published_value",
            "sku_note",
            "ttft_resolution_s",
        )
    },
}
NEEDS = {
    "latency": ("model", "chips", "batch", "input_tokens", "output_tokens", "weights", "latency_s"),
    "ttft": ("model", "chips", "batch", "input_tokens", "weights", "ttft_s"),
    "throughput": ("model", "chips", "batch", "input_tokens", "output_tokens", "weights", "latency_s_derived"),
    "collective": ("collective", "implementation", "gpus", "nodes", "bytes", "seconds"),
    "gemm": ("m", "n", "k", "dtype", "seconds"),
}
FILE_FIELDS = {
    "format": Field(text),
    "cluster": Field(text, required=False),
    "source": Field(text, required=False),
    "notes": Field(text, required=False),
    "conventions": _ANY,
    "sources": _ANY,
    "models": Field(passthrough, required=False),
    "measurements": Field(list_of(passthrough, unique=False)),
    "infeasible": _ANY,
}


@dataclass(frozen=True, kw_only=True)
class Row:
    """One measured row; `values` holds its keys as read (formats as planner labels)."""

    kind: str
    name: str
    line: int
    values: dict
    model: Model | None

    @property
    def measured_s(self) -> float:
        key = {"latency": "latency_s", "ttft": "ttft_s", "throughput": "latency_s_derived"}.get(self.kind, "seconds")
        return self.values[key]

    def __getitem__(self, key: str):
        return self.values[key]

    def get(self, key: str, default=None):
        return self.values.get(key, default)


@dataclass(frozen=True, kw_only=True)
class KernelMeasurements:
    file: str
    cluster: str | None
    source: str
    notes: str
    rows: tuple[Row, ...]
    at: At

    def of(self, *kinds: str) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.kind in kinds)


def is_kernel_file(path: str) -> bool:
    """Whether `path` is a measurements file with row kinds (it says `format: planner-measurements/2`)."""
    root = load_document(Path(path), shown=path)
    return any(k.value == "format" for k, _ in getattr(root.node, "value", ()) if hasattr(k, "value"))


def load_kernel_measurements(path: str) -> KernelMeasurements:
    root = load_document(Path(path), shown=path)
    f = fields(root, FILE_FIELDS, "a measurements file")
    if f["format"] != FORMAT:
        raise f.where["format"].error(f"unknown format {f['format']!r}", hint=f"this planner reads {FORMAT}")
    models: dict[str, Model] = {}
    if "models" in f.values:
        for name, _, at in entries(f["models"], "models (name: shape)"):
            models[name] = read_model(at)
    rows = []
    for i, row in enumerate(f["measurements"]):
        v = fields(row, ROW_FIELDS, "a measurement")
        missing = [key for key in NEEDS[v["kind"]] if key not in v.values]
        if missing:
            raise row.child(row.node, missing[0]).error(f"missing key {missing[0]!r} in a {v['kind']} row")
        model = None
        if "model" in v.values:
            if v["model"] not in models:
                raise v.where["model"].error(
                    f"model {v['model']!r} is not in the file's `models:`", hint=f"known: {', '.join(models) or 'none'}"
                )
            model = models[v["model"]]
        rows.append(
            Row(
                kind=v["kind"],
                name=v.get("name", f"row {i + 1}"),
                line=row.node.start_mark.line + 1,
                values=dict(v.values),
                model=model,
            )
        )
    if not rows:
        raise ConfigError("no measurements", file=path)
    return KernelMeasurements(
        file=path,
        cluster=f.get("cluster"),
        source=f.get("source", ""),
        notes=f.get("notes", ""),
        rows=tuple(rows),
        at=root,
    )
