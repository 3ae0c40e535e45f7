"""A serving measurements file (`format: planner-serving/1`, written by
configs/measurements/build_serving.py): whole serving runs of an engine, each checked and named by
file, line and key when wrong.

Run kinds:
- `steady`: closed-loop clients at a fixed `concurrency`; the measured medians `ttft_s`,
  `tpot_s` and `output_tok_s_per_gpu` (over all the system's GPUs). Colocated runs give the
  worker's layout (`chips`, `tp`, `ep`, `dp_attention`); disaggregated runs a `prefill` and a
  `decode` pool, each also with `workers` (replicas). `admission_limited` (a reason) marks a run
  that is not in steady state.
- `max_throughput`: an offline run with every request queued; `output_tok_s_per_gpu` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from planner.config.clusters import load_cluster
from planner.config.models import load_model
from planner.config.yamlio import (
    At,
    Field,
    boolean,
    choice,
    count,
    fields,
    list_of,
    load_document,
    names,
    number,
    passthrough,
    text,
)
from planner.errors import ConfigError
from planner.specs.hardware import Cluster
from planner.specs.model import Model

FORMAT = "planner-serving/1"
KINDS = ("steady", "max_throughput")
POLICIES = ("prefill-first", "chunked")
_ANY = Field(passthrough, required=False)
POOL_FIELDS = {
    "chips": Field(count),
    "workers": Field(count, required=False),
    "tp": Field(count),
    "ep": Field(count, required=False),
    "dp_attention": Field(boolean, required=False),
}
RUN_FIELDS = {
    "kind": Field(choice(names(KINDS), "run kind")),
    "name": Field(text),
    "source": Field(text),
    "engine": Field(text),
    "policy": Field(choice(names(POLICIES), "prefill policy")),
    "cluster": Field(text),
    "model": Field(text),
    "weights": Field(text),
    "kv_cache": Field(text),
    "mode": Field(choice(names(("colocated", "disaggregated")), "mode"), required=False),
    "chips": Field(count, required=False),
    "tp": Field(count, required=False),
    "ep": Field(count, required=False),
    "dp_attention": Field(boolean, required=False),
    "prefill": Field(passthrough, required=False),
    "decode": Field(passthrough, required=False),
    "input_tokens": Field(count),
    "output_tokens": Field(count),
    "output_tokens_mean_derived": Field(count, required=False),
    "concurrency": Field(count, required=False),
    "spec_decode": Field(text, required=False),
    "ttft_s": Field(number("seconds"), required=False),
    "tpot_s": Field(number("seconds"), required=False),
    "output_tok_s_per_gpu": Field(number()),
    "admission_limited": Field(text, required=False),
    **{key: _ANY for key in ("framework", "image", "model_published", "gpus")},
}
NEEDS = {"steady": ("mode", "concurrency", "ttft_s", "tpot_s", "spec_decode"), "max_throughput": ("chips", "tp")}
FILE_FIELDS = {
    "format": Field(text),
    "source": Field(text, required=False),
    "notes": Field(text, required=False),
    "conventions": _ANY,
    "sources": _ANY,
    "runs": Field(list_of(passthrough, unique=False)),
}


@dataclass(frozen=True, kw_only=True)
class Pool:
    """One tensor-parallel group and how many replicas of it serve."""

    chips: int
    workers: int
    tp: int
    ep: int
    dp_attention: bool


@dataclass(frozen=True, kw_only=True)
class ServingRun:
    kind: str
    name: str
    line: int
    source: str
    engine: str
    policy: str
    cluster: Cluster
    model: Model
    weights: str
    kv_cache: str
    mode: str  # colocated | disaggregated (max_throughput: colocated)
    prefill: Pool  # colocated: the one pool (prefill is decode)
    decode: Pool
    input_tokens: int
    output_tokens: int  # nominal
    output_tokens_mean: int  # the real mean where derived, else nominal
    concurrency: int | None
    spec_decode: str
    ttft_s: float | None
    tpot_s: float | None
    output_tok_s_per_gpu: float
    admission_limited: str

    @property
    def steady(self) -> bool:
        """In the residual tables: a steady run without speculative decoding, not admission-limited."""
        return self.kind == "steady" and self.spec_decode == "none" and not self.admission_limited


@dataclass(frozen=True, kw_only=True)
class ServingMeasurements:
    file: str
    source: str
    notes: str
    runs: tuple[ServingRun, ...]


def is_serving_file(path: str) -> bool:
    """Whether `path` says `format: planner-serving/1`."""
    root = load_document(Path(path), shown=path)
    return any(
        getattr(k, "value", None) == "format" and getattr(v, "value", None) == FORMAT
        for k, v in getattr(root.node, "value", ())
        if hasattr(k, "value")
    )


def check_layout(pool: Pool, model: Model, where: dict[str, At]) -> None:
    """A worker's layout the planner can pin (planner.commands.calibrate.serving): tensor
    parallelism over all the worker's GPUs (tp = chips), experts parallel over all of them or not
    at all (ep 1 or chips), and ep only on a MoE model. `where`: the At of each key given."""
    if pool.tp != pool.chips:
        raise where["tp"].error(
            f"{pool.tp} on a worker of chips: {pool.chips}: expected {pool.chips} (a worker is one engine "
            "instance, tensor-parallel over all its GPUs)",
            hint=f"give chips: {pool.tp}, tp: {pool.tp} for one instance of tp {pool.tp}"
            + ("" if pool.tp > pool.chips else " (replicas: one run per instance, or workers in a pool)"),
        )
    if pool.ep > 1 and model.experts is None:
        raise where["ep"].error(
            f"{pool.ep} on {model.name}, a dense model (no experts): expected 1",
            hint="remove ep (expert parallelism is for MoE models)",
        )
    if pool.ep not in (1, pool.chips):
        raise where["ep"].error(
            f"{pool.ep} on a worker of chips: {pool.chips}: expected 1 or {pool.chips} (experts "
            "parallel over all the worker's GPUs, or tensor-parallel)",
            hint=f"ep: {pool.chips}, or remove ep",
        )


def _pool(at: At, workers_required: bool, model: Model) -> Pool:
    v = fields(at, POOL_FIELDS, "a pool (chips, workers, tp, ep, dp_attention)")
    if workers_required and "workers" not in v.values:
        raise at.child(at.node, "workers").error("missing key 'workers' in a disaggregated pool")
    pool = Pool(
        chips=v["chips"],
        workers=v.get("workers", 1),
        tp=v["tp"],
        ep=v.get("ep", 1),
        dp_attention=v.get("dp_attention", False),
    )
    check_layout(pool, model, v.where)
    return pool


def load_serving_measurements(path: str) -> ServingMeasurements:
    root = load_document(Path(path), shown=path)
    f = fields(root, FILE_FIELDS, "a serving measurements file")
    if f["format"] != FORMAT:
        raise f.where["format"].error(f"unknown format {f['format']!r}", hint=f"this planner reads {FORMAT}")
    base = Path(path).parent
    models: dict[str, Model] = {}
    clusters: dict[str, Cluster] = {}
    runs = []
    for row in f["runs"]:
        v = fields(row, RUN_FIELDS, "a serving run")
        missing = [key for key in NEEDS[v["kind"]] if key not in v.values]
        if missing:
            raise row.child(row.node, missing[0]).error(f"missing key {missing[0]!r} in a {v['kind']} run")
        if v["model"] not in models:
            models[v["model"]] = load_model(v["model"], base=base, at=v.where["model"])
        if v["cluster"] not in clusters:
            clusters[v["cluster"]] = load_cluster(v["cluster"], base=base, at=v.where["cluster"])
        mode = v.get("mode", "colocated")
        if mode == "disaggregated":
            for phase in ("prefill", "decode"):
                if phase not in v.values:
                    raise row.child(row.node, phase).error(f"missing key {phase!r} in a disaggregated run")
            model = models[v["model"]]
            prefill, decode = _pool(v["prefill"], True, model), _pool(v["decode"], True, model)
        else:
            if "chips" not in v.values or "tp" not in v.values:
                raise row.child(row.node, "chips").error("a colocated run gives 'chips' and 'tp'")
            prefill = decode = Pool(
                chips=v["chips"], workers=1, tp=v["tp"], ep=v.get("ep", 1), dp_attention=v.get("dp_attention", False)
            )
            check_layout(prefill, models[v["model"]], v.where)
        runs.append(
            ServingRun(
                kind=v["kind"],
                name=v["name"],
                line=row.node.start_mark.line + 1,
                source=v["source"],
                engine=v["engine"],
                policy=v["policy"],
                cluster=clusters[v["cluster"]],
                model=models[v["model"]],
                weights=v["weights"],
                kv_cache=v["kv_cache"],
                mode=mode,
                prefill=prefill,
                decode=decode,
                input_tokens=v["input_tokens"],
                output_tokens=v["output_tokens"],
                output_tokens_mean=v.get("output_tokens_mean_derived", v["output_tokens"]),
                concurrency=v.get("concurrency"),
                spec_decode=v.get("spec_decode", "none"),
                ttft_s=v.get("ttft_s"),
                tpot_s=v.get("tpot_s"),
                output_tok_s_per_gpu=v["output_tok_s_per_gpu"],
                admission_limited=v.get("admission_limited", ""),
            )
        )
    if not runs:
        raise ConfigError("no serving runs", file=path)
    return ServingMeasurements(file=path, source=f.get("source", ""), notes=f.get("notes", ""), runs=tuple(runs))
