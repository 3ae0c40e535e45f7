"""`serve --row N --emit vllm` (issue 28): every emitted flag is one the pinned vLLM defines
(tests/data/engine_flags/, written by tests/tools/engine_flags.py), the JSON carries the emission,
and a row vLLM cannot run says so with the nearest runnable layout's figures beside the row's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.commands.serve.emit import emission_dict, emit_row
from planner.commands.serve.modes import Mode, Targets
from planner.commands.serve.serve import ServeRequest, serve
from planner.config import load_plan

FLAGS = Path(__file__).resolve().parent / "data" / "engine_flags"
ENGINE = set(json.loads((FLAGS / "vllm.json").read_text())["flags"])
BENCH = set(json.loads((FLAGS / "vllm-bench.json").read_text())["flags"])
GPU_PLANS = ("llama-3-70b-h100", "deepseek-v3-h200")


def _flags(argv) -> set[str]:
    return {w for w in argv if w.startswith("--")}


@pytest.fixture(scope="module", params=GPU_PLANS)
def served(request):
    plan = load_plan(request.param)
    result = serve(
        ServeRequest(plan=plan, modes=tuple(Mode), targets=Targets(), price_usd_per_chip_s=None, price_source=""),
        partial=True,
    )
    return result


def test_every_emitted_flag_is_in_the_pinned_flag_list(served):
    rows = served.rows()
    assert rows
    for i, d in enumerate(rows, start=1):
        e = emit_row(served, d, "vllm", i)
        for launch in e.launches:
            assert launch.command[:3] == ("vllm", "serve", "$MODEL")
            assert _flags(launch.command) <= ENGINE, (i, _flags(launch.command) - ENGINE)
        assert e.benchmark[:3] == ("vllm", "bench", "serve")
        assert _flags(e.benchmark) <= BENCH, (i, _flags(e.benchmark) - BENCH)
        assert "--max-concurrency" in e.benchmark and "--save-result" in e.benchmark


def test_a_layout_vllm_cannot_run_says_so_with_the_nearest_layouts_figures(served):
    found = 0
    for i, d in enumerate(served.rows(), start=1):
        for launch in emit_row(served, d, "vllm", i).launches:
            for n in launch.nearest:
                found += 1
                assert n["layout"] != n["row_layout"] or n["kv_cache"] != "int8"
                assert n["step_s"] > 0 and n["row_step_s"] > 0
                assert n["slower"] == pytest.approx(n["step_s"] / n["row_step_s"] - 1)
            if any(x in launch.layout for x in ("ws2d", "wg-x", "ep-xy", "ep-x+", "ep-yz")):
                assert launch.notes and launch.runnable != launch.layout
    assert found  # the bundled plans' rows include layouts vLLM does not have


def test_json_carries_the_emission(planner):
    run = planner(
        "serve", "llama-3-70b-h100", "--mode", "colocated", "--row", "1", "--emit", "vllm", "--format", "json"
    )
    assert run.code == 0, run.err
    emission = json.loads(run.out)["emit"]
    assert emission["engine"] == "vllm" and "99d7eb5d" in emission["pinned"]
    assert emission["launches"][0]["command"][:2] == ["vllm", "serve"]
    assert emission["sidecar"].startswith("format: planner-bench/1")


def test_the_table_shows_the_launch_and_benchmark(planner):
    run = planner("serve", "llama-3-70b-h100", "--mode", "colocated", "--row", "1", "--emit", "vllm")
    assert run.code == 0, run.err
    assert "vllm serve $MODEL" in run.out and "vllm bench serve" in run.out and "planner-bench/1" in run.out


def test_disaggregated_rows_launch_both_pools(served):
    rows = [d for d in served.rows() if d.mode is Mode.DISAGGREGATED]
    if not rows:
        pytest.skip("no disaggregated row")
    i = served.rows().index(rows[0]) + 1
    e = emission_dict(emit_row(served, rows[0], "vllm", i))
    assert [x["role"] for x in e["launches"]] == ["prefill", "decode"]
    assert all("--kv-transfer-config" in x["command"] for x in e["launches"])


@pytest.mark.parametrize(
    "args, words",
    [
        (("llama-3-70b-h100", "--emit", "vllm"), "give --row N"),
        (("llama-3-70b-h100", "--row", "1", "--emit", "sglang"), "not emitted yet"),
        (("palm-540b-tpu-v4", "--row", "1", "--emit", "vllm"), "TPU cluster"),
    ],
)
def test_what_is_not_emitted_exits_2(planner, args, words):
    run = planner("serve", *args)
    assert run.code == 2 and words in run.err, run.err


def test_the_emitted_sidecar_reads_the_benchmarks_result_file(planner, tmp_path):
    """The loop closes: the result file the emitted benchmark writes, with the emitted sidecar
    beside it, is read by calibrate (a hand-written vLLM result stands in for the run)."""
    run = planner(
        "serve", "llama-3-70b-h100", "--mode", "colocated", "--row", "1", "--emit", "vllm", "--format", "json"
    )
    emission = json.loads(run.out)["emit"]
    result = tmp_path / emission["result_file"]
    result.write_text((Path(__file__).resolve().parent / "bench_results" / "vllm-c16.json").read_text())
    (tmp_path / (result.name + ".planner.yaml")).write_text(emission["sidecar"])
    run = planner("calibrate", result, "--format", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["steady"][0]["run"] == result.name
