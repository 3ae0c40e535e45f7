"""Benchmark result files read by `planner calibrate` (issue 28): a hand-written file in each
supported format (tests/bench_results/README.md cites each format's source and commit) with its
sidecar, and malformed files exiting 2 with the file, line and key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from planner.config.bench_results import load_bench_results
from planner.errors import ConfigError

HERE = Path(__file__).resolve().parent / "bench_results"
FILES = {
    "vllm": "vllm-c16.json",
    "sglang": "sglang.planner.yaml",
    "genai-perf": "profile_export_genai_perf.json",
    "aiperf": "profile_export_aiperf.json",
    "inferencex": "agg_inferencex.json",
}


@pytest.mark.parametrize("reader", FILES)
def test_calibrate_reads_each_format(planner, reader):
    run = planner("calibrate", HERE / FILES[reader], "--format", "json")
    assert run.code == 0, run.err
    out = json.loads(run.out)
    assert out["kind"] == "calibrate-serving"
    assert out["steady"] and all(r["predicted"]["tpot_s"] > 0 for r in out["steady"])


def test_measured_figures_as_the_files_give_them():
    (vllm,) = load_bench_results(str(HERE / FILES["vllm"])).runs
    assert (vllm.concurrency, vllm.input_tokens, vllm.output_tokens) == (16, 1024, 1024)
    assert (vllm.ttft_s, vllm.tpot_s) == pytest.approx((0.120, 0.0092))
    assert vllm.output_tok_s_per_gpu == pytest.approx(1706.7 / 8)  # the whole system's rate over 8 GPUs
    assert (vllm.decode.chips, vllm.decode.tp, vllm.policy) == (8, 8, "chunked")
    sglang = load_bench_results(str(HERE / FILES["sglang"])).runs
    assert [r.concurrency for r in sglang] == [4, 32]
    assert [r.line for r in sglang] == [1, 2]  # one run a JSONL line
    (genai,) = load_bench_results(str(HERE / FILES["genai-perf"])).runs
    assert (genai.concurrency, genai.output_tokens_mean, genai.ttft_s) == (16, 1010, pytest.approx(0.125))
    (aiperf,) = load_bench_results(str(HERE / FILES["aiperf"])).runs
    assert aiperf.concurrency == 16 and aiperf.tpot_s == pytest.approx(0.0093)
    (ix,) = load_bench_results(str(HERE / FILES["inferencex"])).runs
    assert (ix.decode.tp, ix.decode.ep, ix.decode.dp_attention, ix.concurrency) == (8, 1, False, 64)
    assert ix.output_tok_s_per_gpu == 260.0
    assert ix.output_tokens_mean == round(260.0 * 8 * 29.0 / 64)  # Little's law, as the shipped set


def _copy(tmp_path: Path, reader: str) -> Path:
    name = FILES[reader]
    for file in HERE.iterdir():
        if file.name.startswith(name.split(".")[0]):
            shutil.copy(file, tmp_path / file.name)
    return tmp_path / (name if reader != "sglang" else "sglang.jsonl")


def _edit(path: Path, change) -> None:
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        change(rows[1])
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    data = json.loads(path.read_text())
    change(data[0] if isinstance(data, list) else data)
    path.write_text(json.dumps(data, indent=2))


MISSING = {
    "vllm": "median_tpot_ms",
    "sglang": "total_output_tokens",
    "genai-perf": "time_to_first_token",
    "aiperf": "output_token_throughput",
    "inferencex": "median_ttft",
}


@pytest.mark.parametrize("reader", FILES)
def test_a_missing_key_exits_2_naming_it(planner, tmp_path, reader):
    result = _copy(tmp_path, reader)
    _edit(result, lambda d: d.pop(MISSING[reader]))
    shutil.copy(HERE / "sglang.planner.yaml", tmp_path)
    run = planner("calibrate", tmp_path / FILES[reader])
    assert run.code == 2
    assert f": missing key '{MISSING[reader]}" in run.err  # the key, or the statistic under it
    if reader == "sglang":
        assert "sglang.jsonl:2:" in run.err  # the JSONL line of the bad run


@pytest.mark.parametrize(
    "reader, key, value, words",
    [
        ("vllm", "median_ttft_ms", "fast", "median_ttft_ms: expected a positive time in milliseconds, found 'fast'"),
        ("vllm", "max_concurrency", None, "max_concurrency: the run has no concurrency"),
        ("vllm", "completed", 2.5, "completed: expected a positive whole number, found 2.5"),
        (
            "aiperf",
            "inter_token_latency",
            {"unit": "furlongs", "p50": 1},
            "inter_token_latency.unit: expected a time unit",
        ),
        ("inferencex", "dp_attention", "maybe", "dp_attention: expected true or false, found 'maybe'"),
    ],
)
def test_a_bad_value_exits_2_naming_the_key_and_line(planner, tmp_path, reader, key, value, words):
    result = _copy(tmp_path, reader)
    _edit(result, lambda d: d.__setitem__(key, value))
    run = planner("calibrate", result)
    assert run.code == 2 and words in run.err, run.err
    if value is not None and not isinstance(value, dict):
        line = next(i for i, text in enumerate(result.read_text().splitlines(), 1) if f'"{key}"' in text)
        assert f"{result.name}:{line}:" in run.err


def test_a_result_file_without_its_sidecar_says_what_to_write(planner, tmp_path):
    shutil.copy(HERE / "vllm-c16.json", tmp_path)
    run = planner("calibrate", tmp_path / "vllm-c16.json")
    assert run.code == 2 and "vllm-c16.json.planner.yaml" in run.err and "model, cluster" in run.err


def test_not_json_exits_2_with_the_line(planner, tmp_path):
    result = _copy(tmp_path, "vllm")
    result.write_text('{\n  "completed": 3,\n  oops\n}\n')
    run = planner("calibrate", result)
    assert run.code == 2 and "vllm-c16.json:3:" in run.err and "not valid JSON" in run.err


def test_sidecar_errors_name_the_sidecar_key(planner, tmp_path):
    result = _copy(tmp_path, "inferencex")
    sidecar = tmp_path / (result.name + ".planner.yaml")
    sidecar.write_text(sidecar.read_text() + "tp: 4\n")
    run = planner("calibrate", result)
    assert run.code == 2 and "tp:" in run.err and "states the layout" in run.err
    sidecar.write_text(sidecar.read_text().replace("weights: fp8", "weights: fp9").replace("tp: 4\n", ""))
    run = planner("calibrate", result)
    assert run.code == 2 and "weights: unknown weight format 'fp9'" in run.err


def test_a_sidecar_needs_its_results_listed(tmp_path):
    sidecar = tmp_path / "runs.yaml"
    sidecar.write_text((HERE / "sglang.planner.yaml").read_text().split("results:")[0])
    with pytest.raises(ConfigError, match="missing key 'results'"):
        load_bench_results(str(sidecar))


def test_inferencex_multinode_rows_are_disaggregated_runs(tmp_path):
    row = json.loads((HERE / "agg_inferencex.json").read_text())[0]
    for key in ("tp", "pp", "ep", "dp_attention", "dcp_size", "pcp_size"):
        row.pop(key)
    row |= {
        "is_multinode": True,
        "disagg": True,
        "spec_decoding": "mtp",
        "prefill_tp": 8,
        "prefill_ep": 8,
        "prefill_dp_attention": "true",
        "prefill_num_workers": 2,
        "num_prefill_gpu": 16,
        "decode_tp": 16,
        "decode_ep": 16,
        "decode_dp_attention": "true",
        "decode_num_workers": 1,
        "num_decode_gpu": 16,
        "output_tput_per_gpu": 300.0,  # per decode GPU, as process_result.py divides
    }
    (tmp_path / "agg.json").write_text(json.dumps([row], indent=2))
    (tmp_path / "agg.json.planner.yaml").write_text((HERE / "agg_inferencex.json.planner.yaml").read_text())
    (run,) = load_bench_results(str(tmp_path / "agg.json")).runs
    assert run.mode == "disaggregated" and run.spec_decode == "mtp"
    assert (run.prefill.chips, run.prefill.workers, run.prefill.dp_attention) == (8, 2, True)
    assert (run.decode.chips, run.decode.workers, run.decode.ep) == (16, 1, 16)
    assert run.output_tok_s_per_gpu == pytest.approx(300.0 * 16 / 32)  # over every GPU of the system


def test_a_precision_other_than_the_sidecars_weights_is_refused(planner, tmp_path):
    result = _copy(tmp_path, "inferencex")
    _edit(result, lambda d: d.__setitem__("precision", "fp4"))
    run = planner("calibrate", result)
    assert run.code == 2 and "precision:" in run.err and "'fp4'" in run.err


def test_a_listed_result_file_that_is_missing_names_the_sidecar_line(planner, tmp_path):
    sidecar = tmp_path / "runs.yaml"
    sidecar.write_text((HERE / "sglang.planner.yaml").read_text().replace("sglang.jsonl", "absent.jsonl"))
    run = planner("calibrate", sidecar)
    assert run.code == 2 and "runs.yaml:13:" in run.err and "no such result file" in run.err
