"""`--runnable-on ENGINE` (issue 28, item 2): the search keeps only what the engine runs as it is
(planner/specs/engine_layouts.py), on every planning command; a plan file's `search: runnable_on`
sets it too; the wrong kind of chip is exit 2, a search it leaves empty exit 1 with the engine's
limits; every output format says it was applied and saved runs record it."""

from __future__ import annotations

import json
from itertools import product

import pytest

from planner.commands.runs import load_run
from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS
from planner.specs.engine_layouts import ENGINE_LAYOUTS
from planner.specs.formats import Formats, KvFormat
from planner.specs.hardware import WeightFormat
from planner.specs.plan import SearchSpace

MOE = "deepseek-v3-h200"  # MoE on H200s: ws2d, wg-xyz and dp FFNs, heads and batch attention, four expert layouts
VLLM = ENGINE_LAYOUTS["vllm"]


def _runs(engine, row: dict) -> bool:
    """The table's verdict on a saved row (a plan point or a serve stage)."""
    return engine.runs(
        row["ffn"], row["attention"], row.get("experts", ""), row.get("kv_cache", "bf16"), row["weights"]
    )


@pytest.mark.parametrize("name", sorted(ENGINE_LAYOUTS))
def test_the_layouts_kept_crossed_with_the_formats_kept_are_exactly_what_the_engine_runs(name):
    """The search filters layouts and formats apart and crosses them: that is the table's `runs`
    on each candidate only while its limits on layouts and on formats are independent."""
    space = SearchSpace(phases=(), chips=(), batches=(), weights=(), ffn=(), attention=(), runnable_on=name)
    engine = ENGINE_LAYOUTS[name]
    for ffn, attention, experts, kv, w in product(
        FFN_LAYOUTS, ATTENTION_LAYOUTS, ("", *EXPERT_LAYOUTS), KvFormat, WeightFormat
    ):
        kept = space.runs_layout(ffn, attention, experts) and space.runs_formats(Formats(weights=w, kv_cache=kv))
        assert kept == engine.runs(ffn, attention, experts, kv.label, w.label), (ffn, attention, experts, kv, w)


@pytest.fixture(scope="module")
def moe_plans():
    """The MoE plan's JSON, unrestricted and with --runnable-on vllm."""
    from planner.commands.runs import plan_dict
    from planner.config import load_plan
    from planner.config.options import PlanOverrides
    from planner.search.search import search
    from planner.units import to_json

    return tuple(
        json.loads(to_json(plan_dict(search(load_plan(MOE, PlanOverrides(runnable_on=engine))))))
        for engine in (None, "vllm")
    )


def test_plan_keeps_only_layouts_vllm_runs_and_the_fastest_it_cannot_run_disappears(moe_plans):
    free, kept = moe_plans
    assert "runnable_on" not in free and kept["runnable_on"] == "vllm"
    rows = [r for phase in kept["frontier"].values() for r in phase]
    assert rows and all(_runs(VLLM, r) for r in rows)
    key = lambda r: (r["phase"], r["chips"], r["batch"], r["ffn"], r["attention"], r.get("experts"), r["weights"])  # noqa: E731
    for phase, points in free["frontier"].items():
        cannot = [r for r in points if not _runs(VLLM, r)]
        assert cannot, phase  # the unrestricted frontier holds layouts vLLM cannot run (ws2d, wg-xyz)
        fastest = min(cannot, key=lambda r: r["latency_s"])
        assert key(fastest) not in {key(r) for r in kept["frontier"][phase]}
        # and the restricted frontier is no faster than the free one
        assert min(r["latency_s"] for r in kept["frontier"][phase]) >= min(r["latency_s"] for r in points)


def test_serve_keeps_only_layouts_vllm_runs(planner):
    run = planner("serve", MOE, "--runnable-on", "vllm", "--format", "json")
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert data["runnable_on"] == "vllm"
    rows = [r for mode in data["modes"].values() for r in mode["frontier"]]
    assert rows
    for r in rows:
        for stage in ("prefill", "decode"):
            assert _runs(VLLM, r[stage]), (r["row"], r[stage])


def test_tpu_engines_on_tpus(planner):
    run = planner("plan", "palm-540b-tpu-v4", "--phase", "decode", "--chips", "64", "--runnable-on", "vllm-tpu")
    assert run.code == 0, run.err
    assert "Only what vLLM on TPU runs as it is (--runnable-on vllm-tpu)" in " ".join(run.out.split())
    run = planner("plan", "palm-540b-tpu-v4", "--phase", "decode", "--chips", "64", "--runnable-on", "jetstream")
    assert run.code == 0, run.err


@pytest.mark.parametrize(
    ("plan", "engine", "kind", "hint"),
    [
        ("palm-540b-tpu-v4", "vllm", "TPU", "vllm-tpu, jetstream"),
        ("palm-540b-tpu-v4", "trtllm", "TPU", "vllm-tpu, jetstream"),
        ("llama-3-70b-h100", "jetstream", "GPU", "vllm, sglang, trtllm"),
        ("llama-3-70b-h100", "vllm-tpu", "GPU", "vllm, sglang, trtllm"),
    ],
)
def test_an_engine_for_the_other_kind_of_chip_is_exit_2(planner, plan, engine, kind, hint):
    for command in ("plan", "serve", "explain"):
        args = ("--row", "1") if command == "explain" else ()
        run = planner(command, plan, "--runnable-on", engine, *args)
        assert run.code == 2, (command, run.err)
        assert f"--runnable-on {engine}" in run.err and f"is a {kind} cluster" in run.err
        assert f"hint: restrict to a {kind} engine ({hint})" in run.err


def test_an_unknown_engine_is_exit_2_with_a_suggestion(planner):
    run = planner("plan", "llama-3-70b-h100", "--runnable-on", "vlm")
    assert run.code == 2 and "--runnable-on: unknown engine 'vlm'" in run.err and "did you mean 'vllm'?" in run.err
    run = planner("plan", "llama-3-70b-h100", "--runnable-on", "tgi")
    assert run.code == 2 and "expected one of vllm, sglang, trtllm, vllm-tpu, jetstream" in run.err
    assert "hint: drop --runnable-on to search every layout" in run.err


SMALL = ("--model", "llama-3-70b", "--cluster", "h100-sxm", "--phase", "decode", "--chips", "8", "--batch", "64")


def test_a_search_it_leaves_empty_is_exit_1_with_the_engines_limits_and_a_remedy(planner):
    run = planner("plan", *SMALL, "--ffn", "ws2d,wg-x", "--runnable-on", "vllm")
    assert run.code == 1 and not run.out
    err = " ".join(run.err.split())
    assert "--runnable-on vllm keeps only what vLLM runs as it is (ws1d+heads, dp+batch;" in err
    assert "none of the layouts searched is (vLLM has no ws2d FFN" in err and "vLLM has no wg-x FFN" in err
    assert "hint: add ws1d to --ffn" in err and "drop --runnable-on vllm" in err
    run = planner("serve", *SMALL[:4], "--chips", "8", "--weights", "int4", "--runnable-on", "vllm-tpu")
    assert run.code == 2  # a TPU engine on GPUs
    run = planner("serve", *SMALL[:4], "--chips", "8", "--kv-cache", "int8", "--runnable-on", "vllm")
    assert run.code == 1
    err = " ".join(run.err.split())
    assert "none of the formats searched is (vLLM has no int8 KV cache)" in err, err
    assert "(--kv-cache bf16,fp8)" in err
    # experts: none of those given is one vLLM runs
    run = planner("plan", MOE, "--phase", "decode", "--experts", "wg,ep-xy+tp-z", "--runnable-on", "vllm")
    assert run.code == 1 and "vLLM runs experts as ep, ep+tbo, tp: not wg" in run.err
    assert "add ep,ep+tbo,tp to --experts" in " ".join(run.err.split())


def test_empty_without_it_too_is_the_usual_usage_error(planner):
    run = planner("plan", *SMALL[:6], "--chips", "1", "--ffn", "ws2d", "--runnable-on", "vllm")
    assert run.code == 2 and "the search space is empty" in run.err and "--runnable-on" not in run.err


def test_every_format_says_it_was_applied_and_nothing_changes_without_it(planner):
    text = planner("plan", *SMALL, "--runnable-on", "vllm")
    assert text.code == 0 and "(--runnable-on vllm)" in " ".join(text.out.split())
    md = planner("plan", *SMALL, "--runnable-on", "vllm", "--format", "markdown")
    assert "Only what vLLM runs as it is (--runnable-on vllm)." in md.out
    csv_ = planner("plan", *SMALL, "--runnable-on", "vllm", "--format", "csv").out.splitlines()
    assert csv_[0].endswith(",runnable_on") and all(line.endswith(",vllm") for line in csv_[1:])
    assert json.loads(planner("plan", *SMALL, "--runnable-on", "vllm", "--format", "json").out)["runnable_on"] == "vllm"
    plot = planner("plan", *SMALL, "--runnable-on", "vllm", "--plot").out
    assert "Only what vLLM runs as it is (--runnable-on vllm)." in plot and "ws2d" not in plot
    for fmt in ("table", "markdown", "csv", "json"):
        out = planner("plan", *SMALL, "--format", fmt).out
        assert "runnable" not in out.lower(), fmt
    serve = [*SMALL[:4], "--chips", "8", "--batch", "8,64", "--runnable-on", "vllm"]
    for fmt, said in (("table", "(--runnable-on vllm)"), ("markdown", "(--runnable-on vllm)"), ("csv", ",vllm\n")):
        run = planner("serve", *serve, "--format", fmt)
        assert run.code == 0 and said in " ".join(run.out.split(" ")), fmt
    curve = planner("serve", *serve, "--concurrency", "8", "--format", "csv")
    assert curve.code == 0 and curve.out.splitlines()[0].endswith(",runnable_on")
    assert json.loads(planner("serve", *serve, "--concurrency", "8", "--format", "json").out)["runnable_on"] == "vllm"


def test_explain_refuses_a_layout_the_engine_does_not_run(planner):
    args = ("explain", *SMALL, "--weights", "bf16", "--attention", "heads", "--runnable-on", "vllm")
    run = planner(*args, "--ffn", "ws2d")
    assert run.code == 1 and "vLLM does not run ws2d+heads with bf16 weights" in run.err
    assert "the nearest: ws1d+heads" in run.err
    run = planner(*args, "--ffn", "ws1d", "--format", "json")
    assert run.code == 0 and json.loads(run.out)["runnable_on"] == "vllm"
    run = planner(*args, "--ffn", "ws1d", "--format", "csv")
    assert run.out.splitlines()[0].endswith(",runnable_on") and run.out.splitlines()[1].endswith(",vllm")
    row = planner("explain", "llama-3-70b-h100", "--row", "1", "--runnable-on", "vllm", "--format", "markdown")
    assert row.code == 0 and row.out.startswith("## row 1: ") and "(--runnable-on vllm)." in row.out.splitlines()[0]


def test_compare_side_by_side_and_deployment(planner, tmp_path):
    run = planner("compare", "llama-3-70b-h100", "--phase", "decode", "--chips", "8", "--batch", "64")
    assert "ws2d+heads" in run.out
    run = planner(
        "compare", "llama-3-70b-h100", "--phase", "decode", "--chips", "8", "--batch", "64", "--runnable-on", "vllm"
    )
    assert run.code == 0 and "ws2d" not in run.out and "ws1d+heads" in run.out
    run = planner(
        "compare", "llama-3-70b-h100", "--phase", "decode", "--layouts", "ws2d+heads", "--runnable-on", "vllm"
    )
    assert run.code == 2 and "vLLM does not run ws2d+heads" in run.err
    plan = tmp_path / "pinned.yaml"
    pinned = (
        "model: llama-3-70b\ncluster: h100-sxm\nworkload: {input_tokens: 2048, output_tokens: 256, context: 2048}\n"
    )
    plan.write_text(
        pinned + "deployment:\n  decode: {chips: 8, batch: 64, ffn: ws2d, attention: heads, weights: bf16}\n"
    )
    run = planner("compare", "--deployment", plan, "--runnable-on", "vllm")
    assert run.code == 2 and f"{plan}:5) is not one vLLM runs as it is" in run.err
    plan.write_text(
        pinned + "deployment:\n  decode: {chips: 8, batch: 64, ffn: ws1d, attention: heads, weights: bf16}\n"
    )
    run = planner("compare", "--deployment", plan, "--runnable-on", "vllm", "--format", "json")
    assert run.code == 0 and json.loads(run.out)["runnable_on"] == "vllm"


def test_a_plan_file_sets_it_and_a_bad_value_names_file_line_and_key(planner, tmp_path):
    plan = tmp_path / "plan.yaml"
    head = "model: llama-3-70b\ncluster: h100-sxm\nworkload: {input_tokens: 2048, output_tokens: 256, context: 2304}\n"
    plan.write_text(head + "search:\n  chips: [8]\n  phases: [decode]\n  runnable_on: vllm\n")
    run = planner("plan", plan, "--format", "json")
    assert run.code == 0 and json.loads(run.out)["runnable_on"] == "vllm"
    assert all(_runs(VLLM, r) for r in json.loads(run.out)["frontier"]["decode"])
    assert (
        json.loads(planner("plan", plan, "--runnable-on", "sglang", "--format", "json").out)["runnable_on"] == "sglang"
    )
    plan.write_text(head + "search:\n  chips: [8]\n  runnable_on: vlm\n")
    run = planner("plan", plan)
    assert run.code == 2
    assert f"{plan}:6:16: search.runnable_on: unknown engine 'vlm'; expected one of vllm" in run.err
    assert "hint: did you mean 'vllm'?" in run.err
    plan.write_text(head + "search:\n  runnable_on: jetstream\n")
    run = planner("plan", plan)
    assert run.code == 2 and f"{plan}:5" in run.err and "h100-sxm is a GPU cluster" in run.err


def test_saved_runs_record_it_and_compare_reads_runs_without_it(planner, tmp_path):
    free, kept = tmp_path / "free.json", tmp_path / "kept.json"
    assert planner("plan", *SMALL, "--format", "json", "-o", free).code == 0
    assert planner("plan", *SMALL, "--runnable-on", "vllm", "--format", "json", "-o", kept).code == 0
    assert load_run(str(free)).runnable_on is None and load_run(str(kept)).runnable_on == "vllm"
    run = planner("compare", free, kept)
    assert "--runnable-on) none -> vllm" in " ".join(run.out.split())
    bad = json.loads(kept.read_text())
    bad["runnable_on"] = "tgi"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    run = planner("compare", tmp_path / "bad.json", kept)
    assert run.code == 2 and "runnable_on: unknown engine 'tgi'" in run.err


def test_a_saved_serve_run_is_served_again_restricted(planner, tmp_path):
    saved = tmp_path / "serve.json"
    # --ffn ws1d,ws2d: a dense model's serve run recorded with every FFN (dp included) is not served again
    args = ("serve", *SMALL[:4], "--chips", "8", "--batch", "8,64", "--ffn", "ws1d,ws2d", "--runnable-on", "vllm")
    assert planner(*args, "--format", "json", "-o", saved).code == 0
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "model: llama-3-70b\ncluster: h100-sxm\nworkload: {input_tokens: 1024, output_tokens: 1024, context: 2048}\n"
    )
    run = planner("compare", saved, plan)
    assert run.code == 0, run.out + run.err
    assert "runnable-on" not in run.out  # served again as recorded: nothing differs
    free = tmp_path / "free.json"
    assert planner(*args[:-2], "--format", "json", "-o", free).code == 0
    run = planner("compare", free, plan, "--runnable-on", "vllm")  # the flag replaces the recorded (none)
    assert "--runnable-on) none -> vllm" in " ".join(run.out.split())


@pytest.mark.parametrize("command", ["plan", "explain", "serve", "compare"])
def test_help_names_it(planner, command):
    run = planner(command, "--help")
    assert run.code == 0 and "--runnable-on" in run.out


def test_pipelined_plans_keep_to_the_engine_too(planner):
    args = ("--model", "llama-3-70b", "--cluster", "h100-sxm", "--chips", "16", "--stages", "2", "--phase", "decode")
    run = planner("plan", *args, "--runnable-on", "trtllm", "--format", "json")
    rows = json.loads(run.out)["frontier"]["decode"]
    assert rows and all(r["stages"] == 2 and _runs(ENGINE_LAYOUTS["trtllm"], r) for r in rows)
    free = json.loads(planner("plan", *args, "--format", "json").out)["frontier"]["decode"]
    assert any(not _runs(ENGINE_LAYOUTS["trtllm"], r) for r in free)  # the restriction removed something
