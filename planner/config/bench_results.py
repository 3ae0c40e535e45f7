"""Benchmark result files as serving runs: a short sidecar YAML (`format: planner-bench/1`)
says what the result files lack (model, cluster, formats, the engine's layout and policy) and
lists the files; `planner.config.bench_formats` reads each file as its client writes it. The
runs come out as the serving runs of `planner.config.serving_runs`, so `planner calibrate`
predicts them as it predicts the shipped serving set.

    format: planner-bench/1
    reader: vllm            # vllm | sglang | genai-perf | aiperf | inferencex
    engine: vLLM 0.11       # free text, shown with the residuals
    policy: chunked         # prefill-first | chunked
    cluster: h100-sxm
    model: llama-3-70b
    weights: fp8
    kv_cache: fp8
    chips: 8                # GPUs of the worker; tp, and ep / dp_attention for MoE
    tp: 8
    results: [c16.json, c64.json]   # relative to the sidecar; or {file, reader} each

`input_tokens`/`output_tokens` (the ISL/OSL the client asked for) default to what the file says
(SGLang's `random_*_len`, InferenceX `isl`/`osl`), else to the measured means. A result file
passed to `calibrate` itself finds its sidecar beside it, `<name>.planner.yaml`, which may then
omit `results`. InferenceX rows state their layout; a sidecar for them gives none.
"""

from __future__ import annotations

from pathlib import Path

from planner.config.bench_formats import READERS, Measured, read_results
from planner.config.clusters import load_cluster
from planner.config.models import load_model
from planner.config.serving_runs import POLICIES, Pool, ServingMeasurements, ServingRun, check_layout
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
    passthrough,
    text,
)
from planner.errors import ConfigError
from planner.specs.formats import KvFormat, WeightFormat

FORMAT = "planner-bench/1"
LAYOUT = ("chips", "tp", "ep", "dp_attention")
SIDECAR_FIELDS = {
    "format": Field(text),
    "reader": Field(choice(names(READERS), "result reader")),
    "engine": Field(text),
    "policy": Field(choice(names(POLICIES), "prefill policy")),
    "cluster": Field(text),
    "model": Field(text),
    "weights": Field(choice(names(w.label for w in WeightFormat), "weight format")),
    "kv_cache": Field(choice(names(k.label for k in KvFormat), "KV-cache format")),
    "chips": Field(count, required=False),
    "tp": Field(count, required=False),
    "ep": Field(count, required=False),
    "dp_attention": Field(boolean, required=False),
    "concurrency": Field(count, required=False),
    "input_tokens": Field(count, required=False),
    "output_tokens": Field(count, required=False),
    "spec_decode": Field(text, required=False),
    "source": Field(text, required=False),
    "notes": Field(text, required=False),
    "results": Field(list_of(passthrough, unique=False), required=False),
}
ENTRY_FIELDS = {"file": Field(text), "reader": Field(choice(names(READERS), "result reader"), required=False)}
SUFFIX = ".planner.yaml"


def is_result_file(path: str) -> bool:
    """A benchmark client's result file (JSON or JSONL), whose sidecar says the rest."""
    return Path(path).suffix.lower() in (".json", ".jsonl")


def is_bench_file(path: str) -> bool:
    """Whether `path` is a sidecar (`format: planner-bench/1`)."""
    if is_result_file(path):
        return False
    root = load_document(Path(path), shown=path)
    return any(
        getattr(k, "value", None) == "format" and getattr(v, "value", None) == FORMAT
        for k, v in getattr(root.node, "value", ())
        if hasattr(k, "value")
    )


def sidecar_of(result: str) -> str:
    """The sidecar a result file passed on its own is read with: `<name>.planner.yaml` beside it."""
    sidecar = str(Path(result).with_name(Path(result).name + SUFFIX))
    if not Path(sidecar).is_file():
        raise ConfigError(
            "a benchmark result file does not name its model, cluster, formats or layout",
            file=result,
            hint=f"write them in a sidecar {sidecar} (format: {FORMAT}; see `planner calibrate --help`)",
        )
    return sidecar


def load_bench_results(path: str) -> ServingMeasurements:
    """The serving runs of a sidecar's result files (or of one result file and its sidecar)."""
    only = None
    if is_result_file(path):
        if not Path(path).is_file():
            raise ConfigError("no such file", file=path)
        only, path = path, sidecar_of(path)
    root = load_document(Path(path), shown=path)
    f = fields(root, SIDECAR_FIELDS, "a benchmark sidecar")
    if f["format"] != FORMAT:
        raise f.where["format"].error(f"unknown format {f['format']!r}", hint=f"a sidecar says format: {FORMAT}")
    base = Path(path).parent
    model = load_model(f["model"], base=base, at=f.where["model"])
    cluster = load_cluster(f["cluster"], base=base, at=f.where["cluster"])
    runs = []
    for file, reader, at in _files(f, only, base):
        result = base / file if only is None else Path(file)
        if not result.is_file():
            raise at.error(f"no such result file {str(result)!r}", hint="paths are relative to the sidecar")
        for measured in read_results(result, file, reader):
            runs.append(_run(f, reader, measured, model, cluster))
    return ServingMeasurements(
        file=path,
        source=f.get("source", f"benchmark results read by planner ({FORMAT})"),
        notes=f.get("notes", ""),
        runs=tuple(runs),
    )


def _files(f, only: str | None, base: Path) -> list[tuple[str, str, At]]:
    if only is not None:
        return [(only, f["reader"], f.at)]
    if "results" not in f.values:
        raise f.at.child(f.at.node, "results").error(
            "missing key 'results' in a benchmark sidecar", hint="list the result files, e.g. results: [c16.json]"
        )
    found = []
    for at in f["results"]:
        if hasattr(at.node, "value") and isinstance(at.node.value, str):
            found.append((text(at), f["reader"], at))
        else:
            entry = fields(at, ENTRY_FIELDS, "a result entry (file, reader)")
            found.append((entry["file"], entry.get("reader", f["reader"]), at))
    return found


def _pool(f, measured: Measured) -> Pool | None:
    """The sidecar's pool; None where the result file states the layout (InferenceX)."""
    given = [key for key in LAYOUT if key in f.values]
    if measured.layout is not None:
        if given:
            raise f.where[given[0]].error(
                f"{given[0]!r}: the result file states the layout; a sidecar for it gives none", hint="remove the key"
            )
        return None
    for key in ("chips", "tp"):
        if key not in f.values:
            raise f.at.child(f.at.node, key).error(
                f"missing key {key!r}: the result file does not say how the engine ran (GPUs and tensor parallelism)"
            )
    return Pool(chips=f["chips"], workers=1, tp=f["tp"], ep=f.get("ep", 1), dp_attention=f.get("dp_attention", False))


def _run(f, reader: str, m: Measured, model, cluster) -> ServingRun:
    pool = _pool(f, m)
    if pool is not None:
        check_layout(pool, model, f.where)
    if m.precision is not None and m.precision != f["weights"]:
        raise ConfigError(
            f"the run's precision is {m.precision!r}, the sidecar's weights {f['weights']!r}",
            file=m.file,
            line=m.line,
            key="precision",
            hint="give the sidecar the weights the run used (one sidecar per precision)",
        )
    if pool is None:
        prefill, decode = (Pool(**vars(p)) for p in m.layout)
    else:
        prefill = decode = pool
    concurrency = f.get("concurrency", m.concurrency)
    if concurrency is None:
        raise ConfigError(
            "the run has no concurrency (the client ran at a request rate, not a closed loop)",
            file=m.file,
            line=m.line,
            key="max_concurrency",
            hint="the planner predicts closed-loop runs: rerun with --max-concurrency, or give concurrency in the sidecar",
        )
    nominal = m.nominal or (round(m.input_tokens_mean), round(m.output_tokens_mean))
    gpus = prefill.chips * prefill.workers + (decode.chips * decode.workers if m.disaggregated else 0)
    return ServingRun(
        kind="steady",
        name=m.label,
        line=m.line,
        source=f"{reader} result {m.file}",
        engine=f["engine"],
        policy=f["policy"],
        cluster=cluster,
        model=model,
        weights=f["weights"],
        kv_cache=f["kv_cache"],
        mode="disaggregated" if m.disaggregated else "colocated",
        prefill=prefill,
        decode=decode,
        input_tokens=f.get("input_tokens", nominal[0]),
        output_tokens=f.get("output_tokens", nominal[1]),
        output_tokens_mean=max(1, round(m.output_tokens_mean)),
        concurrency=concurrency,
        spec_decode=f.get("spec_decode", m.spec_decode or "none"),
        ttft_s=m.ttft_s,
        tpot_s=m.tpot_s,
        output_tok_s_per_gpu=m.output_tok_s_per_gpu if m.output_tok_s is None else m.output_tok_s / gpus,
        admission_limited="",
    )
