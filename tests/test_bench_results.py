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


def test_a_vllm_run_is_predicted_with_the_vllm_profile(planner):
    """Each run's engine picks its shipped profile (a vLLM run is not predicted as TensorRT-LLM),
    and the header says which shipped profile predicted which engine's runs."""
    from planner.commands.calibrate.refine_serving import refine_profile
    from planner.commands.calibrate.serving import predict_steady
    from planner.config.engines import load_engine

    data = load_bench_results(str(HERE / FILES["vllm"]))
    run = planner("calibrate", HERE / FILES["vllm"], "--format", "json")
    out = json.loads(run.out)
    expected = predict_steady(data.runs[0], load_engine("vllm")).predicted["tpot_s"]
    assert out["steady"][0]["predicted"]["tpot_s"] == pytest.approx(expected, rel=1e-4)
    # the before column of `--engine vllm --fit` is the same prediction
    before = refine_profile(data, load_engine("vllm"), ("layer_overhead_s",)).before[0].predicted["tpot_s"]
    assert before == pytest.approx(expected, rel=1e-12)
    assert expected != pytest.approx(predict_steady(data.runs[0], load_engine("trtllm")).predicted["tpot_s"])
    assert "configs/engines/vllm.yaml (sglang's constants, borrowed) for vLLM" in out["predicted_with"]
    table = planner("calibrate", HERE / FILES["vllm"])
    assert "shipped engine profiles, not fitted to it" in " ".join(table.out.split())
    assert "fitted to it." not in " ".join(table.out.split())


def test_a_run_of_an_unknown_engine_says_which_profile_predicted_it(planner, tmp_path):
    result = _copy(tmp_path, "vllm")
    sidecar = tmp_path / (result.name + ".planner.yaml")
    sidecar.write_text(sidecar.read_text().replace("engine: vLLM", "engine: MyServe 2"))
    run = planner("calibrate", result, "--format", "json")
    assert run.code == 0, run.err
    note = json.loads(run.out)["steady"][0]["note"]
    assert "engine 'MyServe 2' is none of vllm, sglang, trtllm: predicted with the sglang profile" in note


def _sidecar(tmp_path: Path, change) -> Path:
    result = _copy(tmp_path, "vllm")
    sidecar = tmp_path / (result.name + ".planner.yaml")
    sidecar.write_text(change(sidecar.read_text()))
    return result


@pytest.mark.parametrize(
    "change, key, words, hint",
    [
        (lambda t: t.replace("tp: 8", "tp: 16"), "tp", "16 on a worker of chips: 8: expected 8", "give chips: 16"),
        (lambda t: t + "ep: 8\n", "ep", "8 on llama-3-70b, a dense model (no experts): expected 1", "remove ep"),
        (
            lambda t: t.replace("llama-3-70b", "deepseek-v3") + "ep: 4\n",
            "ep",
            "4 on a worker of chips: 8: expected 1 or 8",
            "ep: 8",
        ),
    ],
)
def test_an_inconsistent_layout_exits_2_naming_the_sidecar_key(planner, tmp_path, change, key, words, hint):
    result = _sidecar(tmp_path, change)
    run = planner("calibrate", result)
    sidecar = result.name + ".planner.yaml"
    line = next(i for i, t in enumerate((tmp_path / sidecar).read_text().splitlines(), 1) if t.startswith(f"{key}:"))
    assert run.code == 2, run.out
    assert f"{sidecar}:{line}:" in run.err and f"{key}: {words}" in run.err and f"hint: {hint}" in run.err


def test_a_layout_that_does_not_fit_is_listed_apart_without_nan(planner, tmp_path):
    """DeepSeek-V3 on 8 H100s holds no batch: listed apart with the reason; alone, exit 1 saying
    why and what would help; no nan, no numpy warning."""
    result = _sidecar(tmp_path, lambda t: t.replace("llama-3-70b", "deepseek-v3"))
    run = planner("calibrate", result)
    assert run.code == 1, run.out
    assert "no run left to assess" in run.err and "does not fit in HBM: deepseek-v3 (fp8 weights) on 8 GPUs" in run.err
    assert "hint:" in run.err and "Warning" not in run.err and "nan" not in run.out + run.err
    # beside a run that fits, it is listed apart and the other is assessed
    from planner.commands.calibrate.engines import shipped_assessment
    from planner.config.serving_runs import ServingMeasurements

    fits, big = load_bench_results(str(HERE / FILES["vllm"])), load_bench_results(str(result))
    both = shipped_assessment(ServingMeasurements(file="both", source="", notes="", runs=fits.runs + big.runs))
    assert [r.run.model.name for r in both.steady] == ["llama-3-70b"]
    assert [why.split(":")[0] for _, why in both.apart] == ["does not fit in HBM"]
