"""A measurements file (`planner calibrate`'s input): measured points with their model, phase,
chips, batch, tokens, layout and latency; every bad row is named by file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from planner.config import load_model
from planner.config.yamlio import (
    At,
    Field,
    boolean,
    choice,
    count,
    fields,
    list_of,
    load_document,
    number,
    passthrough,
    text,
)
from planner.cost.layouts import ATTENTION_LAYOUTS, FFN_LAYOUTS
from planner.errors import ConfigError
from planner.specs.hardware import WeightFormat
from planner.specs.model import Model
from planner.specs.plan import Phase, Workload

WEIGHT_GATHERED = "weight-gathered"  # the fastest of the wg-* layouts
BEST = "best"  # the fastest layout
FFN_CHOICES = {
    **{name: (name,) for name in FFN_LAYOUTS},
    WEIGHT_GATHERED: tuple(n for n, layout in FFN_LAYOUTS.items() if layout.gather_axes),
    BEST: tuple(FFN_LAYOUTS),
}
ATTENTION_CHOICES = {**{name: (name,) for name in ATTENTION_LAYOUTS}, BEST: tuple(ATTENTION_LAYOUTS)}


# ---------------------------------------------------------------------------------------------
# The measurements file


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """One measured point. `latency_s` covers the whole request: the prefill pass, or every
    decode step (`step_latency_s` x output_tokens)."""

    name: str
    row: At  # where it is in the file (errors found later point here)
    model: Model
    phase: Phase
    chips: int
    batch: int
    workload: Workload
    ffn: str  # a layout, `weight-gathered` or `best`
    attention: str  # a layout or `best`
    weights: WeightFormat
    latency_s: float
    mfu: float | None
    chosen: bool  # the layout the authors chose here; the checks ask the planner to pick it too
    steps: int | None = None  # the file gave `step_latency_s`: latency_s is it times these steps

    @property
    def given_s(self) -> float:
        """The measured time as the file gives it: one step (step_latency_s) or the whole request."""
        return self.latency_s / self.steps if self.steps else self.latency_s

    @property
    def line(self) -> int:
        return self.row.node.start_mark.line + 1

    @property
    def layout(self) -> str:
        return f"{self.ffn}+{self.attention} {self.weights.label}"

    @property
    def setting(self) -> str:
        """Everything but the layout: points with the same setting are compared with each other."""
        w = self.workload
        tokens = f"in {w.input_tokens}" if self.phase is Phase.PREFILL else f"ctx {w.context} out {w.output_tokens}"
        return f"{self.model.name} {self.phase.value} {self.chips} chips batch {self.batch} {tokens}"

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        for key_node, value_node in self.row.node.value:
            if key_node.value == key:
                return self.row.child(value_node, key).error(message, hint)
        return self.row.error(message, hint)


@dataclass(frozen=True, kw_only=True)
class Measurements:
    file: str
    cluster: str | None  # the hardware measured (preset or path, resolved against the file)
    source: str
    notes: str  # what the authors of the file know about the data (the accuracy page prints it)
    points: tuple[Measurement, ...]
    at: At


_SECONDS = number("seconds")
ROW_FIELDS = {
    "name": Field(text, required=False),
    "model": Field(text),
    "phase": Field(choice({p.value: p for p in Phase}, "phase")),
    "chips": Field(count),
    "batch": Field(count),
    "input_tokens": Field(count, required=False),
    "output_tokens": Field(count, required=False),
    "context": Field(count, required=False),
    "ffn": Field(choice({n: n for n in FFN_CHOICES}, "FFN layout")),
    "attention": Field(choice({n: n for n in ATTENTION_CHOICES}, "attention layout")),
    "weights": Field(choice({w.label: w for w in WeightFormat}, "weight format")),
    "latency_s": Field(_SECONDS, required=False),
    "step_latency_s": Field(_SECONDS, required=False),
    "mfu": Field(number(maximum=1.0), required=False),
    "chosen": Field(boolean, required=False),
}
FILE_FIELDS = {
    "cluster": Field(text, required=False),
    "source": Field(text, required=False),
    "notes": Field(text, required=False),
    "measurements": Field(list_of(passthrough, unique=False)),
}
PHASE_KEYS = {Phase.PREFILL: ("input_tokens",), Phase.DECODE: ("context", "output_tokens")}


def load_measurements(path: str) -> Measurements:
    """Read and check a measurements file; every mistake names the file, line and field."""
    root = load_document(Path(path), shown=path)
    f = fields(root, FILE_FIELDS, "a measurements file")
    base = Path(path).parent
    models: dict[str, Model] = {}
    points = []
    for i, row in enumerate(f["measurements"]):
        v = fields(row, ROW_FIELDS, "a measurement")
        name = v.get("name", f"row {i + 1}")
        if v["model"] not in models:
            models[v["model"]] = load_model(v["model"], base=base, at=v.where["model"])
        phase = v["phase"]
        for key in (k for other, keys in PHASE_KEYS.items() if other is not phase for k in keys):
            if key in v.values:
                raise v.where[key].error(
                    f"{key!r} is not used by a {phase.value} measurement",
                    hint=f"a {phase.value} measurement gives {' and '.join(PHASE_KEYS[phase])}",
                )
        for key in PHASE_KEYS[phase]:
            if key not in v.values:
                raise row.child(row.node, key).error(f"missing key {key!r} in a {phase.value} measurement")
        workload = Workload(
            input_tokens=v.get("input_tokens", 1), context=v.get("context", 1), output_tokens=v.get("output_tokens", 1)
        )
        given = [key for key in ("latency_s", "step_latency_s") if key in v.values]
        if len(given) != 1:
            where = v.where[given[1]] if given else row.child(row.node, "latency_s")
            raise where.error(
                "give exactly one of 'latency_s' (the whole request) and 'step_latency_s' (one step)"
                if given
                else "missing key 'latency_s' (or 'step_latency_s') in a measurement"
            )
        steps = workload.output_tokens if phase is Phase.DECODE else 1
        latency = v["latency_s"] if "latency_s" in v.values else v["step_latency_s"] * steps
        points.append(
            Measurement(
                name=name,
                row=row,
                model=models[v["model"]],
                phase=phase,
                chips=v["chips"],
                batch=v["batch"],
                workload=workload,
                ffn=v["ffn"],
                attention=v["attention"],
                weights=v["weights"],
                latency_s=latency,
                mfu=v.get("mfu"),
                chosen=v.get("chosen", False),
                steps=steps if "step_latency_s" in v.values else None,
            )
        )
    return Measurements(
        file=path,
        cluster=f.get("cluster"),
        source=f.get("source", ""),
        notes=f.get("notes", ""),
        points=tuple(points),
        at=root,
    )
