"""`calibrate RUNS --engine PROFILE --fit NAMES` refits a profile only to the runs its engine
served (Dynamo over SGLang is SGLang's); the others are listed apart with the reason, and with
none of its engine's it is exit 2. Runs on several clusters are fine for profile constants."""

from __future__ import annotations

import json

from planner.commands.calibrate.serving import engine_of
from planner.config.serving_runs import load_serving_measurements

SET = "configs/measurements/serving.yaml"


def test_sglang_is_refitted_to_sglang_runs_only_and_the_others_are_listed_apart(planner):
    run = planner("calibrate", SET, "--engine", "sglang", "--fit", "layer_overhead_s,overlap", "--format", "json")
    assert run.code == 0, run.err
    data = json.loads(run.out)
    runs = {r.line: r for r in load_serving_measurements(SET).runs}
    fitted = [runs[r["line"]] for r in data["runs"]]
    assert fitted and {engine_of(r) for r in fitted} == {"sglang"}
    assert {r.cluster.name for r in fitted} == {"h200-sxm", "mi300x"}  # several clusters: fine
    other = [a for a in data["apart"] if a["reason"].startswith("another engine's run: ")]
    assert {a["line"] for a in other} == {line for line, r in runs.items() if engine_of(r) != "sglang"}
    assert any("TensorRT-LLM" in a["reason"] and a["reason"].endswith("not sglang") for a in other)
    assert not [w for w in data["warnings"] if "fitted into" in w]  # no longer fitted with a warning
    # every run is either fitted or listed apart, once
    assert sorted([r["line"] for r in data["runs"]] + [a["line"] for a in data["apart"]]) == sorted(runs)


def test_no_run_of_the_engine_is_exit_2_naming_the_file_and_a_remedy(planner, tmp_path):
    path = tmp_path / "vllm.yaml"  # a set of vLLM runs only, refitted as sglang
    row = (
        "{kind: steady, name: v, source: synthetic, engine: vLLM 0.11, policy: chunked, cluster: h100-sxm, "
        "model: llama-3-8b, weights: bf16, kv_cache: bf16, mode: colocated, chips: 1, tp: 1, input_tokens: 1024, "
        "output_tokens: 256, concurrency: 8, spec_decode: none, ttft_s: 0.05, tpot_s: 0.01, output_tok_s_per_gpu: 700}"
    )
    path.write_text(f"format: planner-serving/1\nsource: synthetic\nruns:\n  - {row}\n")
    run = planner("calibrate", str(path), "--engine", "sglang", "--fit", "layer_overhead_s")
    assert run.code == 2 and not run.out
    assert str(path) in run.err and "no serving run of sglang" in run.err and "vLLM 0.11" in run.err
    assert "hint:" in run.err and "--engine vllm" in run.err and "Traceback" not in run.err
    assert planner("calibrate", str(path), "--engine", "vllm", "--fit", "layer_overhead_s").code == 0
