"""The result files of engines' benchmark clients, read as they are written: what one run
measured (its concurrency, mean input and output lengths, median TTFT and TPOT, output tokens/s
of the whole system) and, where the file states it, the layout it ran. Each bad value is named
by file, line and key. What a file lacks (model, cluster, formats) comes from the sidecar read by
`planner.config.bench_results`.

Each reader follows the writer's source at a stated commit (field names only; nothing copied):

- `vllm`: `vllm bench serve --save-result` (one JSON object), vllm-project/vllm
  `vllm/benchmarks/serve.py` at def9ce85ba1079af970a58ed3d42dd861ae35d58 (`result_json` is
  the run's settings, `max_concurrency` among them, merged with `benchmark()`'s `result`:
  `completed`, `total_input_tokens`, `total_output_tokens`, `output_throughput` in tokens/s and
  `median_{ttft,tpot}_ms` in milliseconds).
- `sglang`: `python -m sglang.bench_serving --output-file` (JSONL: one object a line, one line
  per run appended), sgl-project/sglang `python/sglang/bench_serving.py` at
  0033168f0f58b2bc05aa0273bd475d9c01bafb1c (the same names as vLLM's, and `random_input_len`,
  `random_output_len`).
- `genai-perf` and `aiperf`: their `inter_token_latency` is per request (end-to-end latency less
  TTFT) over (output tokens - 1), vLLM's TPOT; its median is read as TPOT.
- `genai-perf`: `profile_export_genai_perf.json`, triton-inference-server/perf_analyzer
  `genai-perf/genai_perf/export_data/json_exporter.py` at
  263c5f6e0c7a6c15472a54409174981f67930cfe (one statistics object per metric, `unit`, `avg`,
  `p50`, ..., and `input_config` with `perf_analyzer.stimulus.concurrency`).
- `aiperf`: `profile_export_aiperf.json`, ai-dynamo/aiperf
  `aiperf/common/models/export_models.py` at db4f6397d11ee2d4cfbb41f70b2327315163dcf0 (the
  genai-perf shape; `input_config.loadgen.concurrency`).
- `inferencex`: an `agg_<result>.json` row (or the collected `agg_bmk.json` list of them),
  SemiAnalysisAI/InferenceX `utils/process_result.py` at
  843c6254ff69b567f772f6a5fd97675af3d04431 (`conc`, `isl`, `osl`, the layout `tp`, `ep`,
  `dp_attention` or, multinode, `prefill_*`/`decode_*` with `num_prefill_gpu`/`num_decode_gpu`,
  `median_ttft`/`median_tpot`/`mean_e2el` in seconds, `output_tput_per_gpu` per GPU, of the
  decode GPUs when multinode).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from planner.config.yamlio import MAX_FILE_BYTES
from planner.errors import ConfigError

READERS = ("vllm", "sglang", "genai-perf", "aiperf", "inferencex")
WRITERS = {
    "vllm": "vllm bench serve --save-result",
    "sglang": "python -m sglang.bench_serving --output-file",
    "genai-perf": "genai-perf profile (profile_export_genai_perf.json)",
    "aiperf": "aiperf profile (profile_export_aiperf.json)",
    "inferencex": "InferenceX utils/process_result.py (agg_*.json)",
}
_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0}


@dataclass(frozen=True, kw_only=True)
class PoolLayout:
    """A pool as a result file states it (InferenceX)."""

    chips: int
    workers: int
    tp: int
    ep: int
    dp_attention: bool


@dataclass(frozen=True, kw_only=True)
class Measured:
    """One run as its result file gives it; seconds and tokens/s."""

    file: str
    line: int
    label: str  # the file name, with the record for files holding several
    concurrency: int | None
    input_tokens_mean: float
    output_tokens_mean: float
    nominal: tuple[int, int] | None  # (ISL, OSL) the client asked for, where the file says
    ttft_s: float
    tpot_s: float
    output_tok_s: float | None  # the whole system's output tokens/s (None: per GPU below)
    output_tok_s_per_gpu: float | None = None
    layout: tuple[PoolLayout, PoolLayout] | None = None  # (prefill, decode); colocated: the same
    disaggregated: bool = False
    spec_decode: str | None = None  # where the file states it (InferenceX `spec_decoding`)
    precision: str | None = None  # the weights' format where the file states it (InferenceX)


@dataclass(frozen=True)
class Record:
    """A JSON object of a result file and where it is, so each error names file, line and key."""

    file: str
    text: str  # the object's text (the file, or one JSONL line)
    first_line: int
    data: object
    writer: str

    def line(self, key: str) -> int:
        """The line of a dotted `key`: each part looked for after the one before (as far as found)."""
        at = 0
        for part in key.split("."):
            found = self.text.find(f'"{part}"', at)
            if found < 0:
                break
            at = found
        return self.first_line + self.text.count("\n", 0, at)

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line(key), key=key, hint=hint)

    def get(self, key: str, required: bool = True):
        """The value at a dotted `key`; a missing one is an error naming it (None if optional)."""
        value = self.data
        for part in key.split("."):
            if not isinstance(value, dict):
                raise self.error(key, f"expected an object holding {part!r}, found {_kind(value)}")
            if part not in value:
                if not required:
                    return None
                raise self.error(
                    key,
                    f"missing key {key!r} in a {self.writer} result",
                    hint=f"the reader expects the file as {self.writer} writes it; is the sidecar's reader right?",
                )
            value = value[part]
        return value

    def number(self, key: str, what: str = "a positive number", *, required: bool = True) -> float | None:
        value = self.get(key, required)
        if value is None and not required:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise self.error(key, f"expected {what}, found {_show(value)}")
        return float(value)

    def count(self, key: str, *, required: bool = True) -> int | None:
        value = self.number(key, "a positive whole number", required=required)
        if value is None:
            return None
        if value != int(value):
            raise self.error(key, f"expected a positive whole number, found {_show(self.get(key))}")
        return int(value)

    def flag(self, key: str) -> bool:
        value = self.get(key)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
        raise self.error(key, f"expected true or false, found {_show(value)}")

    def seconds(self, key: str, statistic: str) -> float:
        """A genai-perf/AIPerf statistic (`key.statistic`) in seconds, by the metric's `unit`."""
        unit = self.get(f"{key}.unit")
        if unit not in _TIME_UNITS:
            raise self.error(f"{key}.unit", f"expected a time unit ({', '.join(_TIME_UNITS)}), found {_show(unit)}")
        return self.number(f"{key}.{statistic}") * _TIME_UNITS[unit]


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _show(value) -> str:
    return "null" if value is None else repr(value) if not isinstance(value, (dict, list)) else _kind(value)


def read_text(path: Path, shown: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such file", file=shown) from None
    except OSError as err:
        raise ConfigError(f"cannot read the file ({err.strerror or err})", file=shown) from None
    if len(data) > 64 * MAX_FILE_BYTES:
        raise ConfigError(f"file too large for a result file (the limit is {64 * MAX_FILE_BYTES} bytes)", file=shown)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=shown) from None


def _parse(text: str, shown: str, first_line: int, writer: str):
    try:
        return json.loads(text, parse_constant=lambda name: float("nan"))
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"not valid JSON: {err.msg}",
            file=shown,
            line=first_line + err.lineno - 1,
            column=err.colno,
            hint=f"the reader expects the file as {writer} writes it",
        ) from None


def records(path: Path, shown: str, reader: str) -> list[Record]:
    """The run objects of a result file: one per JSONL line (`sglang`), the items of a list
    (`inferencex` collected rows), else the file's one object."""
    writer = WRITERS[reader]
    text = read_text(path, shown)
    if reader == "sglang":
        found = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                found.append(Record(shown, line, number, _parse(line, shown, number, writer), writer))
    else:
        data = _parse(text, shown, 1, writer)
        if reader == "inferencex" and isinstance(data, list):
            found = [Record(shown, text, 1, item, writer) for item in data]
        else:
            found = [Record(shown, text, 1, data, writer)]
    if not found:
        raise ConfigError("no result in the file (it is empty)", file=shown, hint=f"expected what {writer} writes")
    for record in found:
        if not isinstance(record.data, dict):
            raise ConfigError(f"expected a JSON object, found {_kind(record.data)}", file=shown, line=record.first_line)
    return found


def _openai_style(r: Record, label: str) -> Measured:
    """vLLM's and SGLang's clients: the same names for the measured fields."""
    completed = r.count("completed")
    concurrency = r.get("max_concurrency", required=False)
    if concurrency is not None:
        concurrency = r.count("max_concurrency")
    nominal = None
    if r.get("random_input_len", required=False) is not None:
        nominal = (r.count("random_input_len"), r.count("random_output_len"))
    return Measured(
        file=r.file,
        line=r.first_line,
        label=label,
        concurrency=concurrency,
        input_tokens_mean=r.count("total_input_tokens") / completed,
        output_tokens_mean=r.count("total_output_tokens") / completed,
        nominal=nominal,
        ttft_s=r.number("median_ttft_ms", "a positive time in milliseconds") * 1e-3,
        tpot_s=r.number("median_tpot_ms", "a positive time in milliseconds") * 1e-3,
        output_tok_s=r.number("output_throughput", "a positive rate in tokens/s"),
    )


def _genai_perf(r: Record, label: str, concurrency_key: str) -> Measured:
    concurrency = r.get(concurrency_key, required=False)
    if concurrency is not None:
        concurrency = r.count(concurrency_key)
    unit = r.get("output_token_throughput.unit")
    if unit not in ("tokens/sec", "tokens/s"):
        raise r.error("output_token_throughput.unit", f"expected 'tokens/sec', found {_show(unit)}")
    return Measured(
        file=r.file,
        line=r.first_line,
        label=label,
        concurrency=concurrency,
        input_tokens_mean=r.number("input_sequence_length.avg"),
        output_tokens_mean=r.number("output_sequence_length.avg"),
        nominal=None,
        ttft_s=r.seconds("time_to_first_token", "p50"),
        tpot_s=r.seconds("inter_token_latency", "p50"),
        output_tok_s=r.number("output_token_throughput.avg", "a positive rate in tokens/s"),
    )


def _inferencex(r: Record, label: str) -> Measured:
    conc, isl, osl = r.count("conc"), r.count("isl"), r.count("osl")
    multinode = r.flag("is_multinode")
    if multinode:
        pools = []
        for phase in ("prefill", "decode"):
            gpus, workers = r.count(f"num_{phase}_gpu"), r.count(f"{phase}_num_workers")
            if gpus % workers:
                raise r.error(f"num_{phase}_gpu", f"{gpus} GPUs do not split over {workers} {phase} workers")
            pools.append(
                PoolLayout(
                    chips=gpus // workers,
                    workers=workers,
                    tp=r.count(f"{phase}_tp"),
                    ep=r.count(f"{phase}_ep"),
                    dp_attention=r.flag(f"{phase}_dp_attention"),
                )
            )
        prefill, decode = pools
        per_gpu = r.number("output_tput_per_gpu") * (decode.chips * decode.workers)
        per_gpu /= prefill.chips * prefill.workers + decode.chips * decode.workers
    else:
        pp = r.get("pp", required=False)
        if pp is not None and r.count("pp") != 1:
            raise r.error("pp", f"pipeline-parallel serving runs are not read yet (pp {pp})")
        tp = r.count("tp")
        prefill = decode = PoolLayout(chips=tp, workers=1, tp=tp, ep=r.count("ep"), dp_attention=r.flag("dp_attention"))
        per_gpu = r.number("output_tput_per_gpu")
    total = per_gpu * (prefill.chips * prefill.workers + (decode.chips * decode.workers if multinode else 0))
    return Measured(
        file=r.file,
        line=r.first_line,
        label=label,
        concurrency=conc,
        input_tokens_mean=float(isl),
        output_tokens_mean=total * r.number("mean_e2el", "a positive time in seconds") / conc,  # Little's law
        nominal=(isl, osl),
        ttft_s=r.number("median_ttft", "a positive time in seconds"),
        tpot_s=r.number("median_tpot", "a positive time in seconds"),
        output_tok_s=None,
        output_tok_s_per_gpu=per_gpu,
        layout=(prefill, decode),
        disaggregated=multinode,
        spec_decode=str(r.get("spec_decoding")),
        precision=str(r.get("precision")),
    )


PARSERS: dict[str, Callable[[Record, str], Measured]] = {
    "vllm": _openai_style,
    "sglang": _openai_style,
    "genai-perf": lambda r, label: _genai_perf(r, label, "input_config.perf_analyzer.stimulus.concurrency"),
    "aiperf": lambda r, label: _genai_perf(r, label, "input_config.loadgen.concurrency"),
    "inferencex": _inferencex,
}


def read_results(path: Path, shown: str, reader: str) -> list[Measured]:
    """Every run in one result file."""
    found = records(path, shown, reader)
    name = Path(shown).name
    return [
        PARSERS[reader](
            r, name if len(found) == 1 else f"{name} #{i + 1}" + (f" (line {r.first_line})" * (reader == "sglang"))
        )
        for i, r in enumerate(found)
    ]
