"""`--emit ENGINE` on `serve --row N` and `explain` (issue 28): every emitted flag is one the pinned
engine defines (tests/data/engine_flags/, written by tests/tools/engine_flags.py), the JSON carries
the emission as data, a layout an engine cannot run says so with the nearest runnable layout's
figures beside the row's, and what cannot be emitted exits 2."""

from __future__ import annotations

import dataclasses
import json
import re
from functools import cache
from pathlib import Path

import pytest

from planner.commands.emit.choose import figures, per_request_s, runnable
from planner.commands.emit.core import MAX_TOKENS_PER_RANK, emission_dict, whole_counts
from planner.commands.emit.emit import emit_pools, emit_row, serve_pools
from planner.commands.serve.modes import Mode, Targets
from planner.commands.serve.serve import ServeRequest, serve
from planner.config import load_plan
from planner.specs.engine_layouts import ENGINE_LAYOUTS

FLAGS = Path(__file__).resolve().parent / "data" / "engine_flags"
GPU_PLANS = ("llama-3-70b-h100", "deepseek-v3-h200")
TPU_PLANS = ("palm-540b-tpu-v4",)
GPU_ENGINES = ("vllm", "sglang", "trtllm", "dynamo")
TPU_ENGINES = ("vllm-tpu", "jetstream")
TRTLLM_FILES = ("extra-llm-api-",)  # files whose top-level keys are TorchLlmArgs fields


@cache
def _pinned(name: str) -> dict:
    path = FLAGS / f"{name}.json"
    assert path.exists(), f"no pinned flag list {path.name}: an emitted command names it"
    return json.loads(path.read_text())


def flag_list(name: str) -> frozenset[str]:
    return frozenset(_pinned(name)["flags"])


def key_list(name: str) -> frozenset[str]:
    """Configuration keys (MaxText's key=value words, TensorRT-LLM's YAML keys, dotted when nested)."""
    return frozenset(_pinned(name).get("keys", ()))


def _unknown(argv, lists) -> set[str]:
    """The words of `argv` that name a flag (--x) or a key (x=...) none of `lists` holds."""
    flags = frozenset().union(*(flag_list(n) for n in lists))
    keys = frozenset().union(*(key_list(n) for n in lists))
    found = {w for w in argv if w.startswith("--") and w not in flags}
    return found | {w.split("=")[0] for w in argv if re.fullmatch(r"[a-z_]+=\S*", w) and w.split("=")[0] not in keys}


def _dotted(data: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in data.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _dotted(v, prefix + k + ".")
    return out


@cache
def served(plan_name: str):
    plan = load_plan(plan_name)
    return serve(
        ServeRequest(plan=plan, modes=tuple(Mode), targets=Targets(), price_usd_per_chip_s=None, price_source=""),
        partial=True,
    )


def _emissions(plan_name: str, engine: str):
    result = served(plan_name)
    rows = result.rows()
    assert rows
    return [(i, emit_row(result, d, engine, i)) for i, d in enumerate(rows, start=1)]


@pytest.mark.parametrize(
    "plan_name, engine",
    [(p, e) for p in GPU_PLANS for e in GPU_ENGINES] + [(p, e) for p in TPU_PLANS for e in TPU_ENGINES],
)
def test_every_emitted_flag_is_in_the_pinned_flag_list(plan_name, engine):
    for i, e in _emissions(plan_name, engine):
        for launch in e.launches:
            assert launch.flags, (i, launch.role)
            unknown = _unknown(launch.command, launch.flags)
            assert not unknown, (i, launch.role, unknown)
            for f in launch.files:
                if f.name.startswith(TRTLLM_FILES):  # TensorRT-LLM's extra options, nested keys dotted
                    assert _dotted(f.data) <= key_list("trtllm"), (i, _dotted(f.data) - key_list("trtllm"))
        assert e.benchmark_flags
        unknown = _unknown(e.benchmark, e.benchmark_flags)
        assert not unknown, (i, unknown)
        assert e.version and e.pinned


@pytest.mark.parametrize("engine", GPU_ENGINES)
def test_the_benchmark_runs_at_the_rows_workload_and_writes_a_file_calibrate_reads(engine):
    plan = load_plan("llama-3-70b-h100")
    w = plan.workload
    result = served("llama-3-70b-h100")
    for i, e in _emissions("llama-3-70b-h100", engine):
        d = result.rows()[i - 1]
        words = " ".join(e.benchmark)
        assert str(w.input_tokens) in words and str(w.output_tokens) in words
        pools = whole_counts(d.prefill_pools_per_decode_pool)[1] if d.mode is Mode.DISAGGREGATED else 1
        assert str(d.decode.batch * pools) in e.benchmark  # closed loop at the row's running batch
        assert e.reader and e.result_file in " ".join(e.benchmark)
        if d.mode is Mode.DISAGGREGATED:  # a sidecar describes one pool: none, and the notes say what to do
            assert e.sidecar == "" and any("planner-serving/1" in n for n in e.notes)
            continue
        assert e.sidecar.count("format: planner-bench/1") == 1
        assert f"reader: {e.reader}" in e.sidecar


@pytest.mark.parametrize("engine", GPU_ENGINES + TPU_ENGINES)
def test_a_layout_the_engine_cannot_run_names_the_nearest_with_its_figures(engine):
    plans = TPU_PLANS if engine in TPU_ENGINES else GPU_PLANS
    found = 0
    for plan_name in plans:
        for _, e in _emissions(plan_name, engine):
            for launch in e.launches:
                if launch.nearest:  # every phase's figures, where one phase's layout differs from the runnable's
                    assert any(
                        (n["layout"], n["kv_cache"]) != (n["row_layout"], n["row_kv_cache"]) for n in launch.nearest
                    )
                for n in launch.nearest:
                    found += 1
                    assert n["step_s"] > 0 and n["row_step_s"] > 0
                    assert n["slower"] == pytest.approx(n["step_s"] / n["row_step_s"] - 1)
                    assert launch.notes and n["layout"] in launch.runnable
                if any(x in launch.layout for x in ("ws2d", "wg-x", "ep-xy", "ep-x+", "ep-yz")):
                    assert launch.nearest and launch.runnable != launch.layout
    assert found  # the bundled plans' rows include layouts no engine runs on GPUs (ws2d, wg-*)


def _disaggregated(plan_name: str):
    result = served(plan_name)
    rows = [d for d in result.rows() if d.mode is Mode.DISAGGREGATED]
    assert rows
    return result, rows[0], result.rows().index(rows[0]) + 1


def test_disaggregated_rows_launch_each_engines_own_prefill_and_decode_pools():
    result, d, i = _disaggregated("deepseek-v3-h200")
    roles = {}
    for engine in GPU_ENGINES:
        e = emission_dict(emit_row(result, d, engine, i))
        roles[engine] = [x["role"] for x in e["launches"]]
        by_role = {x["role"]: x for x in e["launches"]}
        assert by_role["prefill"]["count"] == pytest.approx(d.prefill_pools_per_decode_pool)
        if engine == "vllm":
            assert all("--kv-transfer-config" in by_role[r]["command"] for r in ("prefill", "decode"))
        if engine in ("sglang", "dynamo"):  # the default profile is sglang: dynamo's workers are SGLang's
            for r in ("prefill", "decode"):
                argv = by_role[r]["command"]
                assert argv[argv.index("--disaggregation-mode") + 1] == r
        if engine == "trtllm":
            (config,) = by_role["frontend"]["files"]
            assert config["data"]["context_servers"]["num_instances"] >= 1
            assert by_role["frontend"]["command"][:2] == ["trtllm-serve", "disaggregated"]
    assert roles["dynamo"] == ["frontend", "prefill", "decode"]
    assert roles["sglang"] == ["prefill", "decode"]


def test_dynamo_runs_the_workers_of_the_rows_engine(planner):
    for profile, module in (("trtllm", "dynamo.trtllm"), ("vllm", "dynamo.vllm"), ("sglang", "dynamo.sglang")):
        run = planner(
            "serve", "llama-3-70b-h100", "--engine", profile, "--row", "1", "--emit", "dynamo", "--format", "json"
        )
        assert run.code == 0, run.err
        emission = json.loads(run.out)["emit"]
        assert emission["over"] == profile
        assert emission["launches"][0]["command"][:3] == ["python", "-m", "dynamo.frontend"]
        assert emission["launches"][1]["command"][2] == module


def test_json_carries_the_emission_as_data(planner):
    run = planner(
        "serve", "deepseek-v3-h200", "--mode", "colocated", "--row", "1", "--emit", "trtllm", "--format", "json"
    )
    assert run.code == 0, run.err
    emission = json.loads(run.out)["emit"]
    assert emission["engine"] == "trtllm" and "TensorRT-LLM" in emission["version"]
    (server,) = emission["launches"]
    assert server["command"][:3] == ["trtllm-serve", "serve", "$MODEL"]
    (extra,) = server["files"]
    assert extra["name"] == server["command"][server["command"].index("--extra_llm_api_options") + 1]
    assert isinstance(extra["data"]["enable_attention_dp"], bool)
    assert emission["sidecar"].startswith("format: planner-bench/1") and emission["reader"] == "vllm"


def test_the_table_and_markdown_show_the_launch_and_benchmark(planner):
    run = planner("serve", "llama-3-70b-h100", "--mode", "colocated", "--row", "1", "--emit", "sglang")
    assert run.code == 0, run.err
    assert "python -m sglang.launch_server" in run.out and "sglang.bench_serving" in run.out
    assert "planner-bench/1" in run.out
    run = planner("serve", "llama-3-70b-h100", "--row", "1", "--emit", "vllm", "--format", "markdown")
    assert run.code == 0 and "```\nvllm: " in run.out


def test_explain_emits_the_layout_it_shows(planner):
    args = ("explain", "llama-3-70b-h100", "--row", "1")
    run = planner(*args, "--emit", "sglang", "--format", "json")
    assert run.code == 0, run.err
    data = json.loads(run.out)
    emission = data["emit"]
    (server,) = emission["launches"]
    assert server["command"][:3] == ["python", "-m", "sglang.launch_server"]
    assert f"{data['chips']} GPUs" in server["layout"]
    run = planner(*args, "--emit", "trtllm")
    assert run.code == 0 and "trtllm-serve serve $MODEL" in run.out
    run = planner(*args, "--emit", "dynamo", "--format", "markdown")
    assert run.code == 0 and "```\ndynamo over sglang: " in run.out
    run = planner(
        "explain", "--model", "llama-3-70b", "--cluster", "h100-sxm", "--chips", "8", "--phase", "decode",
        "--batch", "64", "--ffn", "ws2d", "--attention", "heads", "--weights", "bf16", "--emit", "vllm",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert "not the row's ws2d+heads" in run.out  # what vLLM cannot run, with the nearest layout's figures


def test_the_tpu_plan_emits_for_the_tpu_engines(planner):
    run = planner("serve", "palm-540b-tpu-v4", "--row", "1", "--emit", "jetstream", "--format", "json")
    assert run.code == 0, run.err
    emission = json.loads(run.out)["emit"]
    assert emission["launches"][0]["command"][:3] == ["python", "-m", "MaxText.maxengine_server"]
    assert emission["reader"] == "" and emission["sidecar"] == ""
    assert any("no reader" in n for n in emission["notes"])  # said, not pretended
    run = planner("serve", "palm-540b-tpu-v4", "--row", "1", "--emit", "vllm-tpu", "--format", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["emit"]["reader"] == "vllm"


@pytest.mark.parametrize(
    "args, words",
    [
        (("serve", "llama-3-70b-h100", "--emit", "vllm"), "give --row N"),
        (("serve", "llama-3-70b-h100", "--row", "1", "--emit", "tgi"), "expected one of"),
        (("serve", "palm-540b-tpu-v4", "--row", "1", "--emit", "sglang"), "TPU cluster"),
        (("serve", "llama-3-70b-h100", "--row", "1", "--emit", "jetstream"), "GPU cluster"),
        (("serve", "llama-3-70b-h100", "--row", "1", "--emit", "vllm", "--format", "csv"), "not csv"),
        (("explain", "llama-3-70b-h100", "--row", "1", "--emit", "vllm-tpu"), "GPU cluster"),
        (("explain", "llama-3-70b-h100", "--row", "1", "--emit", "nope"), "expected one of"),
    ],
)
def test_what_is_not_emitted_exits_2(planner, args, words):
    run = planner(*args)
    assert run.code == 2 and words in run.err, run.err
    assert "Traceback" not in run.err


@pytest.mark.parametrize("engine, fixture", [("vllm", "vllm-c16.json"), ("sglang", "sglang.jsonl")])
def test_the_emitted_sidecar_reads_the_benchmarks_result_file(planner, tmp_path, engine, fixture):
    """The loop closes: the result file the emitted benchmark writes, with the emitted sidecar
    beside it, is read by calibrate (a hand-written result stands in for the run)."""
    run = planner(
        "serve", "llama-3-70b-h100", "--mode", "colocated", "--row", "1", "--emit", engine, "--format", "json"
    )
    emission = json.loads(run.out)["emit"]
    result = tmp_path / emission["result_file"]
    result.write_text((Path(__file__).resolve().parent / "bench_results" / fixture).read_text())
    (tmp_path / (result.name + ".planner.yaml")).write_text(emission["sidecar"])
    run = planner("calibrate", result, "--format", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["steady"][0]["run"].startswith(result.name)


@pytest.mark.parametrize("engine", ("vllm", "sglang", "trtllm", "dynamo"))
def test_speculative_decoding_is_launched_when_the_plan_verifies_draft_tokens(engine):
    """A plan whose decode steps verify K draft tokens (workload decode_tokens K + 1) launches the
    engine's MTP speculative decoding with K draft tokens, in flags the pinned lists hold."""
    result = served("deepseek-v3-h200")
    plan = result.request.plan
    spec = dataclasses.replace(plan, workload=dataclasses.replace(plan.workload, decode_tokens=4))
    pools, notes = serve_pools(spec, result.rows()[0])
    e = emit_pools(spec, pools, notes, engine, "row1")
    text = " ".join(w for x in e.launches for w in x.command)
    data = [f.data for x in e.launches for f in x.files]
    expected = {
        "vllm": '"num_speculative_tokens": 3',
        "sglang": "--speculative-num-steps 3",
        "dynamo": "--speculative-num-steps 3",  # the default profile is sglang: SGLang workers
    }
    if engine in expected:
        assert expected[engine] in text
    else:
        # TensorRT-LLM's MTP validator sets max_draft_len from num_nextn_predict_layers (default 1)
        assert all(d["speculative_config"] == {"decoding_type": "MTP", "num_nextn_predict_layers": 3} for d in data)
    assert not any("no speculative decoding" in n for n in e.notes)
    for x in e.launches:
        assert not _unknown(x.command, x.flags)
        for f in x.files:
            if f.name.startswith(TRTLLM_FILES):
                assert _dotted(f.data) <= key_list("trtllm")


def test_a_pipelined_layout_launches_pipeline_parallel_stages(planner):
    args = (
        "explain", "--model", "llama-3-70b", "--cluster", "h100-sxm", "--chips", "16", "--stages", "2",
        "--phase", "decode", "--batch", "64", "--ffn", "ws1d", "--attention", "heads", "--weights", "bf16",
        "--emit", "vllm", "--format", "json",
    )  # fmt: skip
    run = planner(*args)
    assert run.code == 0, run.err
    emission = json.loads(run.out)["emit"]
    argv = emission["launches"][0]["command"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    assert emission["sidecar"] == "" and any("pipeline stages" in n for n in emission["notes"])
    assert "16 GPUs (2 pipeline stages of 8)" in emission["launches"][0]["layout"]
    text = planner(*args[:-2]).out
    assert "x2 stages" not in text and "has no `planner calibrate` reader" not in text
    assert "benchmark (pipeline stages: no sidecar" in text


def _value(argv, flag: str) -> str:
    return argv[list(argv).index(flag) + 1]


def test_trtllm_benchmark_runs_fixed_lengths_of_random_ids():
    """TensorRT-LLM's random dataset draws lengths from [X(1-r), X(1+r)], rejects r >= 1, and asserts
    a --download-path dataset unless --random-ids is given."""
    for _, e in _emissions("llama-3-70b-h100", "trtllm"):
        assert _value(e.benchmark, "--random-range-ratio") == "0"
        assert "--random-ids" in e.benchmark and "--random-ids" in flag_list("trtllm-bench")


@pytest.mark.parametrize("engine, policy", [("sglang", "prefill-first"), ("vllm", "chunked"), ("trtllm", "chunked")])
def test_the_sidecar_names_the_engines_own_scheduling(engine, policy):
    """SGLang's default scheduling is prefill-first (the planner's --policy help, steady_state)."""
    sidecars = [e.sidecar for _, e in _emissions("llama-3-70b-h100", engine) if e.sidecar]
    assert sidecars and all(f"policy: {policy}\n" in s for s in sidecars)


_BUDGET_FLAGS = {
    "vllm": "--max-num-batched-tokens",
    "trtllm": "--max_num_tokens",
    "sglang": "--max-prefill-tokens",
    "dynamo": "--max-prefill-tokens",  # the default profile is sglang: SGLang workers
}


@pytest.mark.parametrize("engine", GPU_ENGINES)
def test_a_steps_token_budget_is_per_rank_and_capped(engine):
    """A prefill pool's whole pass (2M tokens on DeepSeek's widest rows) is not one step: the
    budget per rank with a scheduler of its own is at most MAX_TOKENS_PER_RANK, said where capped."""
    capped = 0
    for plan_name in GPU_PLANS:
        for i, e in _emissions(plan_name, engine):
            for x in e.launches:
                if _BUDGET_FLAGS[engine] not in x.command:
                    continue
                per_rank = int(_value(x.command, _BUDGET_FLAGS[engine]))
                assert 8192 <= per_rank <= MAX_TOKENS_PER_RANK, (plan_name, i, x.role, per_rank)
                if "--chunked-prefill-size" in x.command:  # SGLang's: the server's, divided by --dp-size
                    ranks = int(_value(x.command, "--dp-size")) if "--dp-size" in x.command else 1
                    assert int(_value(x.command, "--chunked-prefill-size")) == per_rank * ranks
                if per_rank == MAX_TOKENS_PER_RANK and any("capped at 16384" in n for n in x.notes):
                    capped += 1
    assert capped  # DeepSeek's prefill pools batch more than 16384 tokens per rank


def test_trtllm_max_num_tokens_is_per_attention_rank_like_max_batch_size():
    """A DeepSeek row colocated on 16 GPUs with DP attention at batch 64 of 2048 tokens: 4 sequences
    and 131072 / 16 = 8192 tokens per attention rank."""
    result = served("deepseek-v3-h200")
    row, d = next(
        (i, d)
        for i, d in enumerate(result.rows(), 1)
        if d.mode is Mode.COLOCATED and d.decode.attention == "batch" and (d.decode.chips, d.decode.batch) == (16, 64)
    )
    assert d.prefill.batch == 64
    e = emit_row(result, d, "trtllm", row)
    (server,) = e.launches
    assert server.files[0].data["enable_attention_dp"]
    assert _value(server.command, "--max_batch_size") == "4"
    assert _value(server.command, "--max_num_tokens") == "8192"


def test_the_runnable_layout_is_the_fastest_that_fits_not_a_fixed_fallback():
    """DeepSeek row 20's prefill pool (wg-xyz+batch+wg) on SGLang: the tensor-parallel fallback
    (ws1d+heads+ep) does not fit in HBM at its batch and is 3x slower; DP attention with expert
    parallelism does fit, and the cost model prices it near the row's pass."""
    result = served("deepseek-v3-h200")
    d = next(d for d in result.rows() if d.mode is Mode.DISAGGREGATED and d.prefill.experts == "wg")
    assert (d.prefill.chips, d.prefill.batch, d.prefill.ffn) == (8, 1024, "wg-xyz")
    pools, _ = serve_pools(result.request.plan, d)
    run = runnable(pools[0], "sglang", result.request.plan)
    assert (run.ffn, run.attention) == ("dp", "batch") and run.expert_parallel
    (chosen,) = [figures(result.request.plan, s, run) for s in pools[0].steps]
    fallback = dataclasses.replace(run, ffn="ws1d", attention="heads", experts="ep")
    (tp,) = [figures(result.request.plan, s, fallback) for s in pools[0].steps]
    assert chosen["fits"] and not tp["fits"] and chosen["step_s"] < tp["step_s"]
    for engine in ("sglang", "vllm", "trtllm"):  # of every engine's runnable layouts, none that fits is faster
        t = ENGINE_LAYOUTS[engine]
        run = runnable(pools[0], engine, result.request.plan)
        best = figures(result.request.plan, pools[0].steps[0], run)["step_s"]
        for f, a in t.dense:
            for x in t.experts:
                other = figures(
                    result.request.plan, pools[0].steps[0], dataclasses.replace(run, ffn=f, attention=a, experts=x)
                )
                assert not other["fits"] or other["step_s"] >= best, (engine, f, a, x)


def test_a_colocated_row_with_two_layouts_shows_each_phase_at_the_one_the_server_runs():
    """A colocated row whose phases run different layouts (Llama 3 70B: prefill wg-xyz+batch, decode
    ws1d+heads; DeepSeek-V3: experts differ too): one server runs one layout, so both phases get
    figures, each beside its own layout (experts included)."""

    def name(stage) -> str:
        return f"{stage.ffn}+{stage.attention}" + (f"+{stage.experts}" if stage.experts else "")

    for plan_name in ("llama-3-70b-h100", "deepseek-v3-h200"):
        result = served(plan_name)
        row, d = next(
            (i, d)
            for i, d in enumerate(result.rows(), 1)
            if d.mode is Mode.COLOCATED and name(d.prefill) != name(d.decode)
        )
        prefill, decode = name(d.prefill), name(d.decode)
        e = emit_row(result, d, "vllm", row)
        (server,) = e.launches
        by_phase = {n["phase"]: n for n in server.nearest}
        assert by_phase["prefill"]["row_layout"] == prefill and by_phase["decode"]["row_layout"] == decode
        assert f"prefill {prefill}, decode {decode}" in server.layout
        assert any(f"({prefill}) differs from its decode layout ({decode})" in n for n in e.notes)
        assert any("one server runs one layout" in n for n in server.notes)


def test_jetstream_runs_the_experts_tensor_parallel_as_its_table_says():
    """MaxText's expert axis is a mesh axis of its own: the emitted launch runs experts `tp`, and so
    does the table --runnable-on jetstream reads."""
    t = ENGINE_LAYOUTS["jetstream"]
    assert t.runs("ws1d", "heads", "tp", "bf16", "bf16") and not t.runs("ws1d", "heads", "ep", "bf16", "bf16")


@pytest.mark.parametrize("engine", ("vllm", "sglang", "trtllm"))
def test_expert_parallel_pools_name_a_deepep_style_all_to_all(engine):
    """The planner prices `ep` as wide EP with DeepEP-style dispatch/combine; each engine's default
    MoE all-to-all is something else, so the launch names it (normal/high-throughput kernels for
    prefill pools, low-latency for decode pools)."""
    spelled = {
        "vllm": ("--all2all-backend", {"prefill": "deepep_high_throughput", "decode": "deepep_low_latency"}),
        "sglang": ("--deepep-mode", {"prefill": "normal", "decode": "low_latency", "server": "auto"}),
    }
    seen = set()
    for _, e in _emissions("deepseek-v3-h200", engine):
        for x in e.launches:
            if engine == "trtllm":
                if "--ep_size" in x.command and _value(x.command, "--ep_size") != "1":
                    assert x.files[0].data["moe_config"] == {"backend": "WIDEEP"}
                    seen.add(x.role)
                continue
            if "--enable-expert-parallel" in x.command or "--ep-size" in x.command:
                flag, values = spelled[engine]
                if engine == "sglang":
                    assert _value(x.command, "--moe-a2a-backend") == "deepep"
                if x.role in values:
                    assert _value(x.command, flag) == values[x.role], (x.role, x.command)
                seen.add(x.role)
    assert {"prefill", "decode", "server"} <= seen


@pytest.mark.parametrize("engine", GPU_ENGINES)
def test_a_pool_over_more_gpus_than_a_node_launches_over_its_nodes(engine):
    """DeepSeek's 16- and 32-GPU pools span nodes of 8 (h200-sxm's NVLink level): the launch takes
    the engine's multi-node flags with placeholders and a note gives the node count; a pool within
    one node has neither."""
    multi = 0
    for i, e in _emissions("deepseek-v3-h200", engine):
        pools, _ = serve_pools(served("deepseek-v3-h200").request.plan, served("deepseek-v3-h200").rows()[i - 1])
        workers = [x for x in e.launches if x.role in ("server", "prefill", "decode")]
        for pool, x in zip(pools, workers, strict=True):
            nodes = -(-pool.chips // 8)
            said = [n for n in x.notes if n.startswith("multi-node:")]
            if nodes == 1:
                assert not said and "$HEAD_IP" not in " ".join(x.command) + " ".join(x.notes)
                continue
            multi += 1
            assert len(said) == 1 and f"span {nodes} nodes of 8" in said[0]
            words = x.command
            if "sglang.launch_server" in words or "dynamo.sglang" in words:  # the default profile is sglang
                assert _value(words, "--nnodes") == str(nodes) and _value(words, "--node-rank") == "$NODE_RANK"
                assert _value(words, "--dist-init-addr").startswith("$HEAD_IP")
            elif words[0] == "vllm":
                if "--data-parallel-size" in words:
                    assert _value(words, "--data-parallel-size-local") == str(
                        int(_value(words, "--data-parallel-size")) // nodes
                    )
                    assert _value(words, "--data-parallel-address") == "$HEAD_IP" and "--headless" in said[0]
                else:
                    assert _value(words, "--distributed-executor-backend") == "ray"
            else:
                assert _value(words, "--gpus_per_node") == "8" and "trtllm-llmapi-launch" in said[0]
    assert multi


def test_trtllm_context_and_generation_servers_listen_where_the_disaggregated_config_finds_them(planner):
    result, d, i = _disaggregated("deepseek-v3-h200")
    e = emit_row(result, d, "trtllm", i)
    by_role = {x.role: x for x in e.launches}
    config = by_role["frontend"].files[0].data
    for role, servers in (("prefill", "context_servers"), ("decode", "generation_servers")):
        port = _value(by_role[role].command, "--port")
        assert all(url.endswith(f":{port}") for url in config[servers]["urls"])
    assert emission_dict(e)["sidecar"] == ""  # the JSON keeps the key


def test_a_disaggregated_dynamo_emission_gives_its_gpu_count(planner):
    run = planner(
        "serve", "deepseek-v3-h200", "--mode", "disaggregated", "--ffn", "dp", "--attention", "batch",
        "--experts", "ep", "--weights", "fp8", "--engine", "trtllm", "--row", "3", "--emit", "dynamo",
        "--format", "json",
    )  # fmt: skip
    assert run.code == 0, run.err
    emission = json.loads(run.out)["emit"]
    workers = {x["role"]: x for x in emission["launches"]}
    p, d = whole_counts(workers["prefill"]["count"])
    total = p * workers["prefill"]["chips"] + d * workers["decode"]["chips"]
    assert any(n.startswith("in all:") and n.endswith(f", {total} GPUs") for n in emission["notes"])
    for role in ("prefill", "decode"):  # TensorRT-LLM workers: max_num_tokens per attention rank too
        argv = workers[role]["command"]
        (extra,) = workers[role]["files"]
        if extra["data"]["enable_attention_dp"]:
            assert int(_value(argv, "--max-num-tokens")) <= MAX_TOKENS_PER_RANK


def test_the_expected_figures_are_what_calibrate_predicts_for_the_result(planner, tmp_path):
    """The emission's prediction for its benchmark is the figure `planner calibrate` compares the
    result file with: write a result at the emitted concurrency with the emitted sidecar, read it."""
    plan = Path(__file__).resolve().parents[1] / "configs" / "plans" / "llama-3-70b-h100.yaml"
    doc = json.loads(planner("serve", plan, "--row", "5", "--emit", "vllm", "--format", "json").out)
    e = doc["emit"]
    x = e["expected"]
    assert x and x["concurrency"] > 0 and x["policy"] == "chunked" and x["profile"] == "vllm"
    result = json.loads((Path(__file__).resolve().parent / "bench_results" / "vllm-c16.json").read_text())
    n = 10 * x["concurrency"]
    result.update(
        max_concurrency=x["concurrency"],
        max_concurrent_requests=x["concurrency"],
        num_prompts=n,
        completed=n,
        total_input_tokens=n * 2048,
        total_output_tokens=n * 256,
    )
    path = tmp_path / e["result_file"]
    path.write_text(json.dumps(result), encoding="utf-8")
    (tmp_path / (e["result_file"] + ".planner.yaml")).write_text(e["sidecar"], encoding="utf-8")
    run = planner("calibrate", path, "--format", "json")
    assert run.code == 0, run.err
    predicted = json.loads(run.out)["steady"][0]["predicted"]
    for metric in ("ttft_s", "tpot_s", "output_tok_s_per_gpu"):
        assert predicted[metric] == pytest.approx(x[metric], rel=1e-5), metric  # JSON: 6 significant digits
    text = planner("serve", plan, "--row", "5", "--emit", "vllm").out
    assert "predicted for this benchmark" in " ".join(text.split())
    disaggregated = json.loads(planner("serve", plan, "--row", "24", "--emit", "vllm", "--format", "json").out)
    assert disaggregated["emit"]["sidecar"] or disaggregated["emit"]["expected"] is None


def test_tensor_parallel_attention_runs_only_where_tp_divides_the_heads(planner):
    """Llama 3 8B has 32 query heads: vLLM refuses TP 64, so 64 GPUs of ws1d+heads run DP attention;
    PaLM 540B's 48 heads on a 64-chip slice have no layout the TPU engines run, and the notes say so."""
    run = planner(
        "explain", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "64", "--phase", "decode",
        "--batch", "64", "--ffn", "ws1d", "--attention", "heads", "--weights", "bf16", "--emit", "vllm",
        "--format", "json",
    )  # fmt: skip
    assert run.code == 0, run.err
    (server,) = json.loads(run.out)["emit"]["launches"]
    assert _value(server["command"], "--tensor-parallel-size") in ("1", "2", "4", "8", "16", "32")
    assert any("32 query heads do not divide by 64" in n for n in server["notes"])
    for engine in ("vllm-tpu", "jetstream"):
        run = planner("serve", "palm-540b-tpu-v4", "--row", "2", "--emit", engine, "--format", "json")
        assert run.code == 0, run.err
        emission = json.loads(run.out)["emit"]
        notes = " ".join(emission["launches"][0]["notes"])
        assert "48 query heads do not divide by 64" in notes and "will not start" in notes
        assert "64 chips per stage" in notes and "1, 2, 3, 4, 6, 8, 12, 16, 24, 48" in notes
        assert emission["expected"] is None  # no prediction for a server that does not start


def test_a_colocated_runnable_layout_is_weighed_per_request():
    """A colocated server's runnable layout is the one that serves a request (one prefill share and
    its output's decode steps) in the fewest pool-seconds among the engine's layouts that fit: a
    layout that passes prefill faster but decodes slower (dp+batch+ep+tbo against dp+batch+ep on
    DeepSeek-V3) loses when decode steps dominate."""
    result = served("deepseek-v3-h200")
    plan = result.request.plan
    table = ENGINE_LAYOUTS["sglang"]
    checked = 0
    for d in [d for d in result.rows() if d.mode is Mode.COLOCATED][:4]:
        (pool,), _ = serve_pools(plan, d)
        run = runnable(pool, "sglang", plan)
        per_request = lambda r: sum(  # noqa: E731
            per_request_s(plan, s, figures(plan, s, r)["step_s"]) for s in pool.steps
        )
        best = per_request(run)
        for f, a in table.dense:
            for x in table.experts:
                other = dataclasses.replace(run, ffn=f, attention=a, experts=x)
                if all(figures(plan, s, other)["fits"] for s in pool.steps):
                    assert best <= per_request(other) * (1 + 1e-12), (d, other.layout)
                    checked += 1
    assert checked > 4


def _explain_moe(planner, cluster, engine, ffn="dp", attention="batch", *more):
    return planner(
        "explain", "--model", "deepseek-v3", "--cluster", cluster, "--chips", "16", "--phase", "decode",
        "--batch", "256", "--ffn", ffn, "--attention", attention, "--experts", "ep", "--weights", "fp8",
        "--emit", engine, *more,
    )  # fmt: skip


@pytest.mark.parametrize("more", [(), ("--engine", "trtllm")])
def test_nvidia_only_software_is_not_emitted_for_amd_gpus(planner, more):
    """TensorRT-LLM (and Dynamo over it) runs on NVIDIA GPUs only; DeepEP too, so SGLang and vLLM
    with expert parallelism on MI300X name no all-to-all backend and say why."""
    run = _explain_moe(planner, "mi300x", "trtllm" if not more else "dynamo", "dp", "batch", *more)
    assert run.code == 2 and "NVIDIA GPUs only" in run.err and "hint: --emit vllm or --emit sglang" in run.err
    for engine, expert_flag in (("sglang", "--ep-size"), ("vllm", "--enable-expert-parallel")):
        run = _explain_moe(planner, "mi300x", engine, "dp", "batch", "--format", "json")
        assert run.code == 0, run.err
        (server,) = json.loads(run.out)["emit"]["launches"]
        assert expert_flag in server["command"]
        assert not any("deepep" in w for w in server["command"]), server["command"]
        assert "--moe-a2a-backend" not in server["command"] and "--all2all-backend" not in server["command"]
        assert any("DeepEP" in n and "NVIDIA GPUs only" in n for n in server["notes"])
        nvidia = _explain_moe(planner, "h200-sxm", engine, "dp", "batch", "--format", "json")
        assert any("deepep" in w for w in json.loads(nvidia.out)["emit"]["launches"][0]["command"])


def test_vllm_expert_parallelism_without_data_parallelism_names_no_all_to_all(planner):
    """vLLM's all-to-all kernels act only with --data-parallel-size above 1: TP + EP gets no
    --all2all-backend, and a note says the planner's `ep` figures assume DeepEP's dispatch."""
    run = _explain_moe(planner, "h200-sxm", "vllm", "ws1d", "heads", "--format", "json")
    assert run.code == 0, run.err
    (server,) = json.loads(run.out)["emit"]["launches"]
    assert "--enable-expert-parallel" in server["command"] and "--data-parallel-size" not in server["command"]
    assert "--all2all-backend" not in server["command"]
    assert any("runs no all-to-all" in n for n in server["notes"])


def test_a_two_batch_overlap_server_gets_no_expected_figure():
    """The sidecar and the steady state cannot express two-batch overlap: a DeepSeek row vLLM runs
    as dp+batch+ep+tbo gets no predicted figure, and says why; one without it gets one."""
    result = served("deepseek-v3-h200")
    emissions = [
        emit_row(result, d, "vllm", i) for i, d in enumerate(result.rows(), 1) if d.mode is not Mode.DISAGGREGATED
    ]
    tbo = [e for e in emissions if e.launches[0].runnable.endswith("+tbo")]
    plain = [e for e in emissions if not e.launches[0].runnable.endswith("+tbo") and e.sidecar]
    assert tbo and plain
    for e in tbo:
        assert "--enable-dbo" in e.launches[0].command and e.sidecar and e.expected is None
        assert any("two-batch overlap" in n and "without the overlap" in n for n in e.notes)
    assert any(e.expected is not None for e in plain)


def test_tpu_emissions_predict_with_the_slices_constants_and_count_chips_and_hosts(planner):
    """On a TPU slice the expected figure takes the cluster's own constants (static-batch), not a
    GPU-fitted engine profile, the text says chips, and a slice over 4 chips spans TPU hosts."""
    from planner.config.clusters import load_cluster
    from planner.config.engines import default_engine

    args = (
        "explain", "--model", "llama-3-8b", "--cluster", "tpu-v4", "--chips", "8", "--phase", "decode",
        "--batch", "64", "--ffn", "ws1d", "--attention", "heads", "--weights", "bf16",
    )  # fmt: skip
    run = planner(*args, "--emit", "vllm-tpu", "--format", "json")
    assert run.code == 0, run.err
    emission = json.loads(run.out)["emit"]
    x = emission["expected"]
    assert x["profile"] == default_engine(load_cluster("tpu-v4")) == "static-batch" and x["unit"] == "chip"
    assert "8 chips" in x["layout"] and "GPU" not in x["layout"]
    assert any("multi-host: 8 chips span 2 TPU hosts of 4" in n for n in emission["launches"][0]["notes"])
    text = planner(*args, "--emit", "vllm-tpu").out
    assert "output tokens/s per chip" in text and "engine profile static-batch" in text
    assert "64 GPUs" not in text and "per GPU" not in text.split("vllm: ")[-1]
    run = planner(*args, "--emit", "jetstream", "--format", "json")
    assert any("multi-host" in n and "every host" in n for n in json.loads(run.out)["emit"]["launches"][0]["notes"])


@pytest.mark.parametrize("engine", ("trtllm", "dynamo", "sglang"))
def test_each_launch_says_how_many_of_it_to_launch(planner, engine):
    """A disaggregated DeepSeek row runs a fractional number of prefill pools per decode pool: JSON
    keeps that ratio as `count` and gives the whole pools launched as `instances`, as the text says."""
    result = served("deepseek-v3-h200")
    row, d = next(
        (i, d)
        for i, d in enumerate(result.rows(), 1)
        if d.mode is Mode.DISAGGREGATED and whole_counts(d.prefill_pools_per_decode_pool)[1] > 1
    )
    ratio = d.prefill_pools_per_decode_pool
    p, q = whole_counts(ratio)
    run = planner("serve", "deepseek-v3-h200", "--row", str(row), "--emit", engine, "--format", "json")
    assert run.code == 0, run.err
    launches = json.loads(run.out)["emit"]["launches"]
    by_role = {x["role"]: x for x in launches}
    assert by_role["prefill"]["count"] == pytest.approx(ratio, rel=1e-5) and by_role["decode"]["count"] == 1.0
    assert (by_role["prefill"]["instances"], by_role["decode"]["instances"]) == (p, q)
    assert all(x["instances"] == 1 for x in launches if x["role"] not in ("prefill", "decode"))
    text = planner("serve", "deepseek-v3-h200", "--row", str(row), "--emit", engine).out
    assert f"prefill x{ratio:.3g} per decode pool (launch {p})" in text and f"decode (launch {q})" in text


def test_tensorrt_llm_is_no_search_restriction_on_amd(planner):
    run = planner("serve", "--model", "deepseek-v3", "--cluster", "mi300x", "--chips", "8", "--runnable-on", "trtllm")
    assert run.code == 2 and "NVIDIA GPUs only" in run.err and "restrict to vllm or sglang" in run.err


def test_a_tpu_benchmark_is_predicted_by_calibrate_with_the_slices_own_constants(planner, tmp_path):
    """vllm-tpu's emitted figure and `planner calibrate` on its result agree: both take the TPU
    slice's own constants, not a GPU-fitted engine profile."""
    args = (
        "explain", "--model", "llama-3-8b", "--cluster", "tpu-v4", "--chips", "8", "--phase", "decode",
        "--batch", "64", "--ffn", "ws1d", "--attention", "heads", "--weights", "bf16",
    )  # fmt: skip
    e = json.loads(planner(*args, "--emit", "vllm-tpu", "--format", "json").out)["emit"]
    x = e["expected"]
    assert x and x["calibrate_profile"] == x["profile"] == "static-batch"
    result = json.loads((Path(__file__).resolve().parent / "bench_results" / "vllm-c16.json").read_text())
    bench = e["benchmark"]
    i, o = (int(bench[bench.index(flag) + 1]) for flag in ("--random-input-len", "--random-output-len"))
    n = 10 * x["concurrency"]
    result.update(
        max_concurrency=x["concurrency"],
        max_concurrent_requests=x["concurrency"],
        num_prompts=n,
        completed=n,
        total_input_tokens=n * i,
        total_output_tokens=n * o,
    )
    path = tmp_path / e["result_file"]
    path.write_text(json.dumps(result), encoding="utf-8")
    (tmp_path / (e["result_file"] + ".planner.yaml")).write_text(e["sidecar"], encoding="utf-8")
    run = planner("calibrate", path, "--format", "json")
    assert run.code == 0, run.err
    predicted = json.loads(run.out)["steady"][0]["predicted"]
    assert predicted["tpot_s"] == pytest.approx(x["tpot_s"], rel=1e-5)
