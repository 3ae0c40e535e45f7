"""Pipeline stages (planner.cost.pipeline): hand arithmetic from the one-stage costs, invariants
extended to stages, stage meshes and sends, and the CLI."""

import csv
import io
import json
from dataclasses import replace

import numpy as np
import pytest

from planner.commands.runs import plan_dict, run_from_dict
from planner.config import load_cluster, load_model, load_plan
from planner.cost.costmodel import Candidate, evaluate
from planner.cost.layouts import ATTENTION_LAYOUTS, FFN_LAYOUTS
from planner.cost.mesh import meshes, stage_meshes
from planner.cost.network import boundary_bytes_per_s, send_seconds, transfer_seconds
from planner.cost.pipeline import evaluate_pipeline, split_layers, stage_views
from planner.search.search import best, candidates, cost, search
from planner.specs.hardware import WeightFormat
from planner.specs.plan import Phase, Workload
from planner.units import to_json

BF16 = WeightFormat.BF16
WORKLOAD = Workload(input_tokens=2048, output_tokens=64, context=2048)


@pytest.fixture(scope="module")
def llama():
    return load_model("llama-3-405b")


@pytest.fixture(scope="module")
def h100():
    return load_cluster("h100-sxm")


def _tp8(model, cluster, phase, ffn="ws1d", attention="heads"):
    """PP2 x TP8 on 16 H100s: each stage one node, its 8 GPUs over NVLink."""
    (mesh,) = [m for m in stage_meshes(cluster, 16, 2) if m.sizes == {"x": 1, "y": 1, "z": 8}]
    return Candidate(
        phase=phase, mesh=mesh, ffn=FFN_LAYOUTS[ffn], attention=ATTENTION_LAYOUTS[attention], weights=BF16, stages=2
    )


def _stage(model, cluster, c, layers, batch, first, last):
    """The existing one-stage cost model on one stage's layers (a pipeline stage is that)."""
    return evaluate(
        replace(model, n_layers=layers),
        cluster,
        WORKLOAD,
        replace(c, stages=1),
        np.array([batch]),
        first=first,
        last=last,
    )


def test_split_layers_is_contiguous_and_charges_the_slowest():
    assert split_layers(126, 2) == (63, 63)
    assert split_layers(126, 4) == (32, 32, 31, 31)  # the last stage (output projection) is never longer
    for n in (1, 7, 80, 126):
        for p in range(1, min(n, 8) + 1):
            parts = split_layers(n, p)
            assert sum(parts) == n and max(parts) - min(parts) <= 1


def test_stage_meshes_are_whole_nodes_and_offered_slices(h100):
    assert stage_meshes(h100, 8, 2) == []  # half a node is not a stage over InfiniBand
    assert {m.chips for m in stage_meshes(h100, 16, 2)} == {8}
    assert all(name == "nvlink" for m in stage_meshes(h100, 16, 2) for name, _ in m.physical)
    assert {m.chips for m in stage_meshes(h100, 64, 2)} == {32}
    assert stage_meshes(h100, 16, 1) == meshes(h100, 16)
    tpu = load_cluster("tpu-v4")
    stage = stage_meshes(tpu, 128, 2)
    assert stage and {m.physical for m in stage} == {(("x", 4), ("y", 4), ("z", 4))}
    assert all(m.wraparound for m in stage)  # the 64-chip slice keeps its own wraparound
    assert stage_meshes(tpu, 128, 3) == []


def _send(h100, bytes_per_gpu: float) -> float:
    """A send between two 8-GPU H100 stages: every GPU over its own NIC (50 GB/s), a one-step
    collective of the InfiniBand level with its calibrated constants."""
    ib = h100.calibration.level("infiniband")
    return ib.latency_s + ib.step_latency_s + bytes_per_gpu / (50e9 * ib.efficiency)


def test_send_crosses_the_outer_level(h100):
    mesh = stage_meshes(h100, 16, 2)[0]
    assert boundary_bytes_per_s(h100, mesh) == 8 * 50e9  # one 400 Gb/s NIC per GPU
    # a one-step InfiniBand collective: the level's fixed and step latency, bytes at its efficiency
    ib = h100.calibration.levels["infiniband"]
    assert ib["latency_s"] > 0 and ib["efficiency"] < 1 and "bulk_latency_s" not in ib
    assert send_seconds(h100, mesh, 1e6) == pytest.approx(_send(h100, 1e6), rel=1e-12)
    assert send_seconds(h100, mesh, 1e6) == pytest.approx(
        ib["latency_s"] + ib["step_latency_s"] + 1e6 / (50e9 * ib["efficiency"]), rel=1e-12
    )
    # PP2 on 16 H100s, 128 KiB per GPU: not the raw 2.62 us at 50 GB/s
    assert send_seconds(h100, mesh, 128 * 1024) > 128 * 1024 / 50e9 + ib["latency_s"]
    tpu = load_cluster("tpu-v4")
    cube = stage_meshes(tpu, 128, 2)[0]
    # a 4x4 face carries it, one 45 GB/s link per face chip one way; those links no longer close
    # the cube's ring along the joined axis (its first shortest: x), the others still wrap
    assert boundary_bytes_per_s(tpu, cube) == 16 * 45e9
    assert cube.physical == (("x", 4), ("y", 4), ("z", 4)) and cube.wraparound == (False, True, True)
    assert meshes(tpu, 64)[0].wraparound == (True, True, True)  # the same cube in one stage
    cal = tpu.calibration
    assert send_seconds(tpu, cube, 1e6) == pytest.approx(
        64e6 / (16 * 45e9) / cal.network_efficiency + cal.collective_latency_s
    )


def test_prefill_pp2_tp8_step_is_hand_arithmetic(llama, h100):
    """Llama 405B bf16 on 16 H100s, PP2 x TP8, prefill batch 8: (m + p - 1) x slowest + sends,
    with the micro-batch count the fastest of 1, 2, 4, 8."""
    c = _tp8(llama, h100, Phase.PREFILL)
    ev = evaluate_pipeline(llama, h100, WORKLOAD, c, np.array([8]))
    send = 2048 * 16384 * 2 / 8  # one sequence's residual stream, an eighth per GPU, one NIC each
    by_m = {}
    for m in (1, 2, 4, 8):
        b = 8 // m
        t1 = _stage(llama, h100, c, 63, b, True, False).step_s[0]
        t2 = _stage(llama, h100, c, 63, b, False, True).step_s[0]
        by_m[m] = (m + 2 - 1) * max(t1, t2, _send(h100, b * send)) + (2 - 1) * _send(h100, b * send)
    m = min(by_m, key=by_m.get)
    assert int(ev.micro_batches[0]) == m
    assert ev.latency_s[0] == pytest.approx(by_m[m], rel=1e-12)
    assert ev.send_s[0] == pytest.approx(_send(h100, 8 // m * send), rel=1e-12)
    t = max(_stage(llama, h100, c, 63, 8 // m, i == 0, i == 1).step_s[0] for i in range(2))
    assert ev.bubble[0] == pytest.approx(1 - m * t / by_m[m])
    chips_peak = 16 * h100.chip.peak_bf16_flop_per_s
    assert ev.mfu[0] == pytest.approx(llama.mfu_flops(8 * 2048, 8) / (chips_peak * by_m[m]))


def test_decode_pp2_tp8_step_is_hand_arithmetic(llama, h100):
    """Decode batch 64: two micro-batches of 32 in flight; a token passes both stages and the send."""
    c = _tp8(llama, h100, Phase.DECODE)
    ev = evaluate_pipeline(llama, h100, WORKLOAD, c, np.array([64]))
    first = _stage(llama, h100, c, 63, 32, True, False)
    last = _stage(llama, h100, c, 63, 32, False, True)
    send = _send(h100, 32 * 16384 * 2 / 8)
    step = max(first.step_s[0] + last.step_s[0] + send, 2 * max(first.step_s[0], last.step_s[0]))
    assert int(ev.micro_batches[0]) == 2 and int(ev.micro_batch[0]) == 32
    assert ev.step_s[0] == pytest.approx(step, rel=1e-12)
    assert ev.latency_s[0] == pytest.approx(64 * step, rel=1e-12)
    assert ev.tokens_per_s[0] == pytest.approx(64 / step)
    # memory: a stage's weights, the KV cache of all 64 sequences, one micro-batch's activations
    whole = [_stage(llama, h100, c, 63, 64, i == 0, i == 1) for i in range(2)]
    micro = (first, last)
    need = [float(w.weight_bytes + w.kv_bytes[0] + m.activation_bytes[0]) for w, m in zip(whole, micro)]
    assert ev.hbm_bytes[0] == pytest.approx(max(need), rel=1e-12)
    assert [s.hbm_bytes for s in stage_views(ev)] == pytest.approx(need, rel=1e-12)


def test_pp2_tp8_is_searched_and_explained(llama, h100):
    plan = load_plan(
        None, model="llama-3-405b", cluster="h100-sxm", chips=(16,), weights=("bf16",), stages=(1, 2), batches=(8, 64)
    )
    found = [c for c in candidates(plan, Phase.DECODE) if c.stages == 2]
    assert found and all(c.mesh.chips == 8 and c.mesh.physical == (("nvlink", 8),) for c in found)
    ev = best(plan, Phase.DECODE, 16, 64, BF16, "ws1d", "heads")
    assert ev.candidate.stages in (1, 2)
    plan2 = replace(plan, space=replace(plan.space, stages=(2,)))
    ev = best(plan2, Phase.DECODE, 16, 64, BF16, "ws1d", "heads")
    views = stage_views(ev)
    assert [(v.first_layer, v.n_layers, v.holds) for v in views] == [
        (1, 63, ("input embedding",)),
        (64, 63, ("output projection",)),
    ]
    assert all(v.evaluation.rows for v in views)


PIPELINES = [
    ("llama-3-405b", "h100-sxm", 16, 2),
    ("llama-3-405b", "h100-sxm", 64, 4),
    ("llama-3-70b", "h100-sxm", 64, 8),
    ("palm-62b", "tpu-v4", 128, 2),
    ("mt-nlg-530b", "a100-80gb", 32, 2),
    ("mixtral-8x7b", "h100-sxm", 16, 2),
    ("deepseek-v3", "h200-sxm", 16, 2),
]


@pytest.mark.parametrize("model_name,cluster_name,chips,stages", PIPELINES)
def test_pipeline_invariants(model_name, cluster_name, chips, stages):
    """Weights per chip x chips >= the model; a point fits only when every stage does; latency
    never falls as the batch grows at a fixed layout; MFU positive."""
    model = load_model(model_name)
    plan = load_plan(None, model=model_name, cluster=cluster_name, chips=(chips,), stages=(stages,))
    batch = np.array([1, 2, 3, 4, 8, 16, 64, 256])
    checked = 0
    for phase in Phase:
        for c in candidates(plan, phase)[::2]:
            ev = cost(plan, c, batch, formats=plan.space.weights)
            assert c.stages == stages and c.mesh.chips * stages == chips
            for f, fmt in enumerate(plan.space.weights):
                part = slice(f * batch.size, (f + 1) * batch.size)
                need = model.n_params * fmt.bytes_per_element
                stored = sum(
                    float(np.broadcast_to(s.weight_bytes, s.batch.shape)[ev.at[part][0]]) * c.mesh.chips
                    for s in ev.stage_evaluations
                )
                assert stored >= need * (1 - 1e-9)
                assert np.all(ev.weight_bytes[part] * chips >= need * (1 - 1e-9))
                latency = ev.latency_s[part]
                assert np.all(np.diff(latency) >= -1e-12 * latency[1:]), (c.ffn.name, c.attention.name, phase)
            assert np.all(ev.mfu > 0) and np.all(np.isfinite(ev.latency_s))
            assert np.allclose(ev.hbm_bytes, ev.stage_hbm_bytes.max(axis=0), rtol=1e-12)
            assert np.all(ev.hbm_bytes == ev.weight_bytes + ev.kv_bytes + ev.activation_bytes)
            checked += 1
    assert checked


def test_stage_memory_decides_feasibility():
    plan = load_plan(
        None,
        model="llama-3-405b",
        cluster="h100-sxm",
        chips=(16,),
        stages=(2,),
        weights=("bf16",),
        phases=("decode",),
        batches=(1, 1024),
    )
    for phase in search(plan, partial=True).phases:
        for p in phase.frontier:
            assert p.hbm_bytes_per_chip <= plan.cluster.chip.usable_hbm_bytes  # what the search enforces
            ev = cost(plan, best_candidate(plan, p), np.array([p.batch]))
            assert float(ev.stage_hbm_bytes.max()) == pytest.approx(p.hbm_bytes_per_chip, rel=1e-12)


def best_candidate(plan, p):
    return next(
        c
        for c in candidates(plan, p.phase)
        if c.ffn.name == p.ffn
        and c.attention.name == p.attention
        and c.stages == p.stages
        and tuple(c.mesh.names("x")) == p.partition[0][1]
        and tuple(c.mesh.names("yz")) == p.partition[1][1]
    )


def test_one_stage_plans_write_what_they_wrote_before():
    plan = load_plan(None, model="palm-62b", cluster="tpu-v4", chips=(16,), batches=(1, 8))
    assert "stages" not in to_json(plan_dict(search(plan)))
    staged = replace(plan, space=replace(plan.space, stages=(1, 2)))
    data = json.loads(to_json(plan_dict(search(staged))))
    points = [p for ph in data["frontier"].values() for p in ph]
    assert all("stages" in p and "micro_batches" in p for p in points)
    run = run_from_dict(data, "test")
    assert {p.stages for p in run.points} <= {1, 2}
    # a one-stage point's figures are the same whether or not the plan also searches stages
    before = {
        (p["phase"], p["batch"], p["ffn"], p["attention"]): p
        for ph in json.loads(to_json(plan_dict(search(plan))))["frontier"].values()
        for p in ph
    }
    for p in points:
        key = (p["phase"], p["batch"], p["ffn"], p["attention"])
        if p["stages"] == 1 and key in before:
            assert {k: v for k, v in p.items() if k not in ("stages", "micro_batches")} == before[key]


def test_cli_explain_shows_two_stages_and_the_send(planner):
    args = [
        "explain",
        "--model",
        "llama-3-405b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "16",
        "--stages",
        "2",
        "--phase",
        "decode",
        "--batch",
        "64",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
    ]
    code, out, err = planner(*args)
    assert code == 0, err
    assert "stage 1: layers 1-63" in out and "stage 2: layers 64-126" in out
    assert "send 1 -> 2" in out and "PP2 ws1d+heads" in out
    data = json.loads(planner(*args, "--format", "json")[1])
    assert data["stages"] == 2 and len(data["pipeline"]["stages"]) == 2
    assert data["pipeline"]["send"]["count"] == 1
    assert data["pipeline"]["send"]["bytes_per_chip"] == 32 * 16384 * 2 / 8
    csv_rows = list(csv.reader(io.StringIO(planner(*args, "--format", "csv")[1])))
    assert [r[0] for r in csv_rows[1:]] == [
        "stage 1: layers 1-63, input embedding",
        "send 1 -> 2",
        "stage 2: layers 64-126, output projection",
    ]
    assert "| send 1 -> 2 |" in planner(*args, "--format", "markdown")[1]


def test_cli_plan_searches_stages(planner):
    args = [
        "plan",
        "--model",
        "llama-3-405b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "16",
        "--weights",
        "bf16",
        "--batch",
        "8,512",
        "--phase",
        "decode",
    ]
    code, out, err = planner(*args, "--stages", "1,2", "--format", "csv")
    assert code == 0, err
    assert out.splitlines()[0].endswith(",stages,micro_batches,engine")
    assert "stages" not in planner(*args, "--stages", "1", "--format", "csv")[1]
    # 16 H100s span two nodes: without --stages, 2 stages are searched too (issue 29)
    assert planner(*args, "--format", "csv")[1].splitlines()[0].endswith(",stages,micro_batches,engine")
    code, out, err = planner(*args, "--stages", "0")
    assert code == 2 and "--stages" in err and out == ""


@pytest.mark.parametrize(
    "model, cluster, chips, stages, works",
    [
        ("llama-3-8b", "h100-sxm", "8", "2", "2 stages need 16, 32"),
        ("llama-3-8b", "h100-sxm", "8", "3", "3 stages need 24, 48, 72"),
        ("palm-62b", "tpu-v4", "64", "3", "64 chips: 2, 4, 8"),
    ],
)
def test_stages_the_chips_cannot_form_are_refused_when_the_plan_is_read(planner, model, cluster, chips, stages, works):
    """A stage count no chip count can form is a mistake in the plan (exit 2), not an empty search:
    the error says which, the rule, and what would form it."""
    code, out, err = planner("plan", "--model", model, "--cluster", cluster, "--chips", chips, "--stages", stages)
    assert code == 2 and out == ""
    assert f"cannot form {stages} pipeline stages from {chips} chips" in err and works in err
    assert "0 candidates" not in err and "KV cache" not in err


def test_a_stage_count_some_chip_count_forms_is_searched(planner):
    code, out, err = planner(
        "plan",
        "--model",
        "llama-3-8b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "8,16",
        "--stages",
        "1,2",
        "--phase",
        "decode",
        "--format",
        "csv",
    )
    assert code == 0, err
    assert ",2," in out  # a PP2 point on 16 chips


def test_a_plan_file_with_unformable_stages_names_its_line(tmp_path, planner):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "model: llama-3-8b\ncluster: h100-sxm\nworkload: {input_tokens: 2048, output_tokens: 64, context: 2048}\n"
        "search:\n  chips: [8]\n  stages: [2]\n"
    )
    code, out, err = planner("plan", str(plan))
    assert code == 2 and f"{plan}:6" in err and "cannot form 2 pipeline stages" in err


def test_moe_stages_hold_their_own_dense_and_moe_layers():
    """DeepSeek-V3 (61 layers, the first 3 dense) in 2 stages: 31 layers of which 3 dense and 28
    MoE, then 30 MoE; each stage's expert layouts shard its own MoE layers (PP2 x EP8 on 16 H200s)
    and its weights are its own layers' (hand count: parameters per layer type, fp8)."""
    model = load_model("deepseek-v3")
    plan = load_plan(
        None,
        model="deepseek-v3",
        cluster="h200-sxm",
        chips=(16,),
        stages=(2,),
        weights=("fp8",),
        phases=("decode",),
        batches=(64,),
    )
    ev = best(plan, Phase.DECODE, 16, 64, WeightFormat.FP8, "ws1d", "heads")
    assert ev.candidate.stages == 2 and ev.layers == (31, 30)
    x = model.experts
    assert [model.layer_range(0, 31).experts.n_moe_layers(31), model.layer_range(31, 30).experts.n_moe_layers(30)] == [
        28,
        30,
    ]
    views = stage_views(ev)
    chips = ev.candidate.mesh.chips  # one stage's
    routed = x.n_experts * x.params_per_expert(model.ffn.n_input_matrices, model.d_model)
    moe_layer = routed + x.router_params(model.d_model) + model.ffn.n_matrices * model.d_model * x.shared_d_ff()
    attention, dense = model.attention_params_per_layer, model.ffn_params_per_layer
    embed = model.d_model * model.vocab  # untied: the input table on stage 1, the output projection on stage 2
    for view, (n_dense, n_moe) in zip(views, ((3, 28), (0, 30))):
        params = (n_dense + n_moe) * attention + n_dense * dense + n_moe * moe_layer + embed
        assert view.weight_bytes * chips >= params * (1 - 1e-9)  # fp8: a byte per weight, sharded over the stage
        assert view.weight_bytes * chips <= params * 1.05  # replicated pieces (router, norms-free) at most a few %
    assert ev.candidate.experts is not None  # an expert layout inside each stage


def test_moe_stages_are_searched(planner):
    code, out, err = planner(
        "plan",
        "--model",
        "mixtral-8x7b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "16",
        "--stages",
        "1,2",
        "--phase",
        "decode",
        "--format",
        "csv",
    )
    assert code == 0, err
    assert "stages" in out.splitlines()[0]
    code, out, err = planner(
        "explain",
        "--model",
        "deepseek-v3",
        "--cluster",
        "h200-sxm",
        "--chips",
        "16",
        "--stages",
        "2",
        "--phase",
        "decode",
        "--batch",
        "8",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "fp8",
    )
    assert code == 0, err
    assert "2 stages (31 + 30 layers, 28 + 30 of them MoE)" in out and "experts" in out


def test_nothing_to_evaluate_says_why(planner):
    code, _, err = planner("plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "1", "--ffn", "ws2d")
    # an empty search space is invalid input (issue 24): exit 2, naming the flag that emptied it
    assert code == 2 and "search space is empty: --ffn ws2d" in err and "0 candidates" not in err and "()" not in err


def test_pool_transfer_pays_the_outer_level_constants(h100):
    """serve's KV transfer between pools is the same one-step collective of the outermost level;
    on a torus it stays bytes at the scale-out bandwidth and `network_efficiency`."""
    ib = h100.calibration.level("infiniband")
    assert transfer_seconds(h100, 1e6, 8, 4) == pytest.approx(
        ib.latency_s + ib.step_latency_s + 1e6 / (4 * 50e9 * ib.efficiency), rel=1e-12
    )
    tpu = load_cluster("tpu-v4")
    assert transfer_seconds(tpu, 1e6, 8, 4) == pytest.approx(
        1e6 / (4 * 2 * 45e9 * tpu.calibration.network_efficiency), rel=1e-12
    )


def test_compare_shows_pipelined_layouts_side_by_side(tmp_path, planner):
    """`compare PLAN` costs a pipelined layout by the pipeline model and shows it as a layout of
    its own (PP2 ...), with `stages` in JSON and CSV; the same figures as `plan`'s."""
    plan = tmp_path / "pp.yaml"
    plan.write_text(
        "model: llama-3.1-405b\ncluster: h100-sxm\n"
        "workload: {input_tokens: 2048, output_tokens: 64, context: 2048}\n"
        "search: {phases: [decode], chips: [16], batch: [32], weights: [bf16], ffn: [ws1d],"
        " attention: [heads], stages: [1, 2]}\n"
    )
    code, out, err = planner("compare", plan)
    assert code == 0, err
    assert "PP2 ws1d+heads" in out
    rows = json.loads(planner("compare", plan, "--format", "json").out)["rows"]
    by_stages = {r["stages"]: r["point"] for r in rows}
    assert set(by_stages) == {1, 2}
    frontier = json.loads(planner("plan", plan, "--format", "json").out)
    pp2 = [p for p in frontier["frontier"]["decode"] if p.get("stages") == 2]
    assert pp2 and pp2[0]["latency_s"] == by_stages[2]["latency_s"]
    csv_rows = list(csv.DictReader(io.StringIO(planner("compare", plan, "--format", "csv").out)))
    assert sorted(r["stages"] for r in csv_rows) == ["1", "2"]


def test_tp8_pp3_on_three_nodes(planner):
    """FasterTransformer's MT-NLG 530B layout, TP8 x PP3 on 24 A100s: any whole number of nodes
    can be asked for (the cluster file's `chips` are only the default search), and three stages of
    one node each are searched and explained (35 layers each)."""
    code, out, err = planner(
        "plan",
        "--model",
        "mt-nlg-530b",
        "--cluster",
        "a100-80gb",
        "--chips",
        "24",
        "--stages",
        "3",
        "--weights",
        "bf16",
        "--phase",
        "decode",
        "--format",
        "json",
    )
    assert code == 0, err
    points = json.loads(out)["frontier"]["decode"]
    assert points and all(p["stages"] == 3 and p["mesh"]["stages"] == 3 and p["chips"] == 24 for p in points)
    code, out, err = planner(
        "explain",
        "--model",
        "mt-nlg-530b",
        "--cluster",
        "a100-80gb",
        "--chips",
        "24",
        "--stages",
        "3",
        "--phase",
        "decode",
        "--batch",
        "8",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
    )
    assert code == 0, err
    assert "send 2 -> 3" in out and "3 stages (35 + 35 + 35 layers)" in out
    code, _, err = planner("plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "12")
    assert code == 2 and "any whole number of 8-chip nvlink groups" in err


def test_torus_stages_are_joined_across_a_face(planner):
    """PaLM 540B in 2 stages on 128 TPU v4 chips: two 4x4x4 cubes joined along x, whose links
    there carry the sends, so each stage's x ring is open; slower than the same cubes would be
    with every ring closed."""
    args = (
        "explain",
        "--model",
        "palm-540b",
        "--cluster",
        "tpu-v4",
        "--chips",
        "128",
        "--stages",
        "2",
        "--phase",
        "decode",
        "--batch",
        "64",
        "--ffn",
        "ws2d",
        "--attention",
        "batch",
        "--weights",
        "int8",
    )
    code, out, err = planner(*args)
    assert code == 0, err
    assert "stage mesh 4x4x4, joined along x" in out
    tpu = load_cluster("tpu-v4")
    plan = load_plan(
        None,
        model="palm-540b",
        cluster="tpu-v4",
        chips=(128,),
        stages=(2,),
        weights=("int8",),
        phases=("decode",),
        batches=(64,),
    )
    ev = best(plan, Phase.DECODE, 128, 64, WeightFormat.INT8, "ws2d", "batch")
    closed = replace(ev.candidate, mesh=replace(ev.candidate.mesh, wraparound=(True, True, True)))
    assert ev.candidate.mesh.wraparound == (False, True, True)
    assert float(ev.step_s[0]) > float(
        evaluate_pipeline(plan.model, tpu, plan.workload, closed, np.array([64]), formats=plan.space.weights).step_s[0]
    )
