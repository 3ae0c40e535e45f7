"""Mixture-of-experts and latent-attention models: parameter counts against the recounted totals of
the reference file, the schema, routing statistics, expert layouts and their invariants."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from planner.config import load_model
from planner.cost.moe import expected_distinct_experts

REFERENCE = yaml.safe_load((Path(__file__).parent / "reference" / "moe-models.yaml").read_text())["shapes"]

# preset -> (reference entry, derived total key, derived active key, input embedding counted in active)
PRESETS = {
    "deepseek-v3": ("deepseek-v3", "total_params", "active_params_incl_emb_and_unemb", True),
    "qwen3-235b-a22b": ("qwen3-235b-a22b", "total_params", "active_params_incl_emb_and_unemb", True),
    "qwen3-30b-a3b": ("qwen3-30b-a3b", "total_params", "active_params_incl_emb_and_unemb", True),
    "mixtral-8x7b": ("mixtral-8x7b", "total_params", "active_params_incl_emb_and_unemb", True),
    "mixtral-8x22b": ("mixtral-8x22b", "total_params", "active_params_incl_emb_and_unemb", True),
    "llama-4-maverick": (
        "llama-4-maverick-17b-128e",
        "text_total_params",
        "text_active_params_incl_emb_and_unemb",
        True,
    ),
    "gpt-oss-120b": ("gpt-oss-120b", "total_params", "active_params_model_card_convention", False),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_parameter_counts_match_the_recounted_totals(preset):
    entry, total_key, active_key, with_input_embedding = PRESETS[preset]
    derived = REFERENCE[entry]["derived"]
    model = load_model(preset)
    active = model.n_active_params - (0 if with_input_embedding else model.d_model * model.vocab)
    # the reference rounds to 0.01e9 and counts the norms (< 2M parameters here), the planner not
    assert abs(model.n_params - float(derived[total_key])) <= 0.0075e9
    assert abs(active - float(derived[active_key])) <= 0.0075e9
    assert model.n_active_params < model.n_params


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_follow_their_reference_shapes(preset):
    entry = REFERENCE[PRESETS[preset][0]]
    model = load_model(preset)
    x = model.experts
    assert (model.n_layers, model.d_model, model.n_heads, model.vocab) == (
        entry["layers"],
        entry["hidden"],
        entry["heads"],
        entry["vocab"],
    )
    assert (x.n_experts, x.top_k, x.d_ff_expert, x.n_shared) == (
        entry["routed_experts"],
        entry["top_k"],
        entry["expert_intermediate"],
        entry["shared_experts"],
    )
    assert model.source


def test_deepseek_v3_layers_and_latent_cache():
    model = load_model("deepseek-v3")
    assert model.experts.n_moe_layers(model.n_layers) == 58
    assert model.latent.cache_elements == 576
    assert model.kv_bytes_per_token(2) == 61 * 576 * 2  # 68.6 KiB per token in bf16
    assert model.experts.shared_d_ff() == 2048


def test_maverick_alternates_dense_and_moe_layers():
    model = load_model("llama-4-maverick")
    assert [model.experts.is_moe(i) for i in range(4)] == [False, True, False, True]
    assert model.experts.n_moe_layers(model.n_layers) == 24


# --- routing statistics -----------------------------------------------------------------------


def _monte_carlo_distinct(n_experts, top_k, tokens, trials, rng):
    """Each token picks top_k distinct experts uniformly at random; count distinct experts per step."""
    counts = np.empty(trials)
    for t in range(trials):
        picks = np.argsort(rng.random((tokens, n_experts)), axis=1)[:, :top_k]
        counts[t] = np.unique(picks).size
    return counts


@pytest.mark.parametrize(
    "n_experts,top_k,tokens",
    [(256, 8, 1), (256, 8, 8), (256, 8, 32), (256, 8, 128), (128, 4, 16), (8, 2, 3), (128, 1, 64), (16, 16, 2)],
)
def test_expected_distinct_experts_matches_a_monte_carlo_count(n_experts, top_k, tokens):
    rng = np.random.default_rng(20260214)
    counts = _monte_carlo_distinct(n_experts, top_k, tokens, 4000, rng)
    expected = expected_distinct_experts(n_experts, top_k, tokens)
    stderr = counts.std(ddof=1) / np.sqrt(counts.size)
    assert abs(counts.mean() - expected) <= 4 * stderr + 1e-9, (counts.mean(), expected)


def test_expected_distinct_experts_worked_example_and_limits():
    # moe-notes section 3: DeepSeek-V3 at T = 1, 8, 32, 128, 512
    got = expected_distinct_experts(256, 8, np.array([1, 8, 32, 128, 512]))
    np.testing.assert_allclose(got, [8.0, 57.4, 163.3, 251.6, 256.0], atol=0.05)
    assert expected_distinct_experts(256, 8, 0) == 0
    assert expected_distinct_experts(8, 8, 1) == 8  # every expert on one token
    # one chip holding 32 of the 256 experts touches an eighth of them on average
    assert expected_distinct_experts(256, 8, 32, held=32) == pytest.approx(163.3 / 8, abs=0.01)


# --- expert layouts: invariants and the dense limit ----------------------------------------------

import dataclasses  # noqa: E402
import itertools  # noqa: E402

from planner.config import load_cluster, load_plan  # noqa: E402
from planner.cost.costmodel import Candidate, evaluate  # noqa: E402
from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS  # noqa: E402
from planner.cost.mesh import Mesh, meshes  # noqa: E402
from planner.specs.hardware import WeightFormat  # noqa: E402
from planner.specs.moe import Experts, Routing  # noqa: E402
from planner.specs.plan import Phase, Workload  # noqa: E402

WORKLOAD = Workload(input_tokens=512, output_tokens=16, context=1024)
BATCH = np.array([1, 2, 4, 8, 16, 64, 256, 1024])
ONE_CHIP = Mesh(chips=1, physical=(("x", 1),), logical=((), (), ()), torus=True)


def _candidates(model, cluster, chips):
    for mesh in meshes(cluster, chips):
        sizes = mesh.sizes
        for ffn, attention, experts in itertools.product(
            FFN_LAYOUTS.values(), ATTENTION_LAYOUTS.values(), EXPERT_LAYOUTS.values()
        ):
            if ffn.applies(sizes) and attention.applies(model, ffn, sizes) and experts.applies(model, sizes):
                for phase in Phase:
                    yield Candidate(
                        phase=phase, mesh=mesh, ffn=ffn, attention=attention, weights=WeightFormat.INT8, experts=experts
                    )


@pytest.mark.parametrize("experts", EXPERT_LAYOUTS.values(), ids=list(EXPERT_LAYOUTS))
@pytest.mark.parametrize("phase", list(Phase))
def test_one_chip_has_no_communication(experts, phase):
    model, cluster = load_model("qwen3-30b-a3b"), load_cluster("h100-sxm")
    for ffn, attention in itertools.product(FFN_LAYOUTS.values(), ATTENTION_LAYOUTS.values()):
        ev = evaluate(
            model,
            cluster,
            WORKLOAD,
            Candidate(
                phase=phase, mesh=ONE_CHIP, ffn=ffn, attention=attention, weights=WeightFormat.BF16, experts=experts
            ),
            BATCH,
        )
        assert np.all(ev.comm_s == 0)


@pytest.mark.parametrize(
    "model_name,chips",
    [
        pytest.param("deepseek-v3", 32, marks=pytest.mark.slow),
        ("mixtral-8x7b", 8),
        pytest.param("llama-4-maverick", 16, marks=pytest.mark.slow),
        pytest.param("deepseek-v3", 24, marks=pytest.mark.slow),
    ],
)  # 24: redundant experts (256 + 8)
def test_expert_layout_invariants(model_name, chips):
    model, cluster = load_model(model_name), load_cluster("h100-sxm")
    seen = set()
    for c in _candidates(model, cluster, chips):
        ev = evaluate(model, cluster, WORKLOAD, c, BATCH, detail=True)
        what = (c.ffn.name, c.attention.name, c.experts.name, c.phase)
        seen.add(c.experts.name)
        assert ev.weight_bytes * chips >= model.n_params * c.weights.bytes_per_element * (1 - 1e-9), what
        assert np.all(ev.mfu > 0) and np.all(ev.mfu <= 1), what
        assert np.all(np.diff(ev.latency_s) >= -1e-12 * ev.latency_s[1:]), what
        for total, part in ((ev.compute_s, "compute_s"), (ev.memory_s, "memory_s"), (ev.comm_s, "comm_s")):
            np.testing.assert_allclose(sum(getattr(r, part) for r in ev.rows), total, rtol=1e-12)
        names = {r.name for r in ev.rows}
        if c.experts.expert_axes and c.mesh.sizes and any(c.mesh.sizes[a] > 1 for a in c.experts.expert_axes):
            assert {"dispatch all-to-all", "combine all-to-all"} <= names, what
    assert seen == set(EXPERT_LAYOUTS)  # every EP size applies, with the fewest redundant experts


def _one_expert(dense):
    return dataclasses.replace(dense, experts=Experts(n_experts=1, top_k=1, d_ff_expert=dense.d_ff))


@pytest.mark.parametrize("ffn,experts", [("ws1d", "tp"), ("wg-xyz", "wg")])
@pytest.mark.parametrize("phase", list(Phase))
def test_one_expert_with_top_1_costs_the_same_as_the_dense_model(ffn, experts, phase):
    dense, cluster = load_model("llama-3-8b"), load_cluster("h100-sxm")
    moe = _one_expert(dense)
    assert moe.n_params == dense.n_params and moe.n_active_params == dense.n_params
    for mesh in meshes(cluster, 8):
        for attention in ATTENTION_LAYOUTS.values():
            if not (FFN_LAYOUTS[ffn].applies(mesh.sizes) and attention.applies(dense, FFN_LAYOUTS[ffn], mesh.sizes)):
                continue
            c = Candidate(phase=phase, mesh=mesh, ffn=FFN_LAYOUTS[ffn], attention=attention, weights=WeightFormat.BF16)
            a = evaluate(dense, cluster, WORKLOAD, c, BATCH)
            b = evaluate(moe, cluster, WORKLOAD, dataclasses.replace(c, experts=EXPERT_LAYOUTS[experts]), BATCH)
            for field in ("compute_s", "memory_s", "comm_s", "step_s", "mfu", "hbm_bytes"):
                np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-12, err_msg=field)


def test_load_imbalance_scales_the_expert_einsums_only():
    model, cluster = load_model("mixtral-8x7b"), load_cluster("h100-sxm")
    mesh = meshes(cluster, 8)[0]
    c = Candidate(
        phase=Phase.PREFILL,
        mesh=mesh,
        ffn=FFN_LAYOUTS["ws1d"],
        attention=ATTENTION_LAYOUTS["batch"],
        weights=WeightFormat.BF16,
        experts=EXPERT_LAYOUTS["tp"],
    )
    skewed = dataclasses.replace(WORKLOAD, routing=Routing(load_imbalance=1.5))
    a = evaluate(model, cluster, WORKLOAD, c, BATCH, detail=True)
    b = evaluate(model, cluster, skewed, c, BATCH, detail=True)
    for ra, rb in zip(a.rows, b.rows):
        factor = 1.5 if ra.name == "einsum experts W_in, W_out" else 1.0
        np.testing.assert_allclose(rb.flops, factor * ra.flops)
        np.testing.assert_allclose(rb.hbm_bytes, ra.hbm_bytes)


def test_decode_reads_only_the_experts_the_batch_touches():
    model, cluster = load_model("deepseek-v3"), load_cluster("h100-sxm")
    mesh = next(m for m in meshes(cluster, 32) if m.sizes["x"] == 32)
    c = Candidate(
        phase=Phase.DECODE,
        mesh=mesh,
        ffn=FFN_LAYOUTS["ws1d"],
        attention=ATTENTION_LAYOUTS["batch"],
        weights=WeightFormat.INT8,
        experts=EXPERT_LAYOUTS["ep"],
    )
    ev = evaluate(model, cluster, WORKLOAD, c, np.array([1, 8, 1024]), detail=True)
    row = next(r for r in ev.rows if r.name == "einsum experts W_in, W_out")
    per_expert = model.experts.params_per_expert(2, model.d_model)  # int8: 1 byte per weight
    held = 256 / 32
    touched = row.hbm_bytes / (58 * per_expert)
    np.testing.assert_allclose(touched, expected_distinct_experts(256, 8, np.array([1, 8, 1024]), held=held))
    assert touched[0] < 0.3 and touched[-1] == pytest.approx(held)


def test_replicated_experts_read_for_the_busiest_group_whole_tokens():
    """ep-yz on 8 chips (x = 4 replica groups of 2 chips): a step of 1 or 2 tokens is served by
    one or two groups, each reading its token's experts (whole tokens, not a quarter of one
    spread over the groups); 8 tokens give each group 2."""
    model, cluster = load_model("deepseek-v3"), load_cluster("h200-sxm")
    mesh = next(m for m in meshes(cluster, 8) if (m.sizes["x"], m.sizes["y"] * m.sizes["z"]) == (4, 2))
    c = Candidate(
        phase=Phase.DECODE,
        mesh=mesh,
        ffn=FFN_LAYOUTS["ws1d"],
        attention=ATTENTION_LAYOUTS["heads"],
        weights=WeightFormat.FP8,
        experts=EXPERT_LAYOUTS["ep-yz"],
    )
    batch = np.array([1, 2, 8])
    ev = evaluate(model, cluster, WORKLOAD, c, batch, detail=True)
    row = next(r for r in ev.rows if r.name == "einsum experts W_in, W_out")
    per_expert = model.experts.params_per_expert(2, model.d_model)  # fp8: 1 byte per weight
    touched = row.hbm_bytes / (58 * per_expert)
    np.testing.assert_allclose(touched, expected_distinct_experts(256, 8, np.array([1, 1, 2]), held=128))
    assert touched[0] == pytest.approx(128 * 8 / 256, rel=0.02)  # a token's 8 experts over the group's 2 chips


def test_redundant_experts_take_memory_and_are_read_at_large_batches():
    """256 + 32 experts over EP32: 9 per chip, one more than 256 alone. A token's 8 slots land on 8
    of the 288 copies, so one token reads the same weights (8/32 of an expert per chip) and a
    large batch reads all 9 held copies, not 8."""
    model, cluster = load_model("deepseek-v3"), load_cluster("h100-sxm")
    mesh = meshes(cluster, 32)[0]
    c = Candidate(
        phase=Phase.DECODE,
        mesh=mesh,
        ffn=FFN_LAYOUTS["ws1d"],
        attention=ATTENTION_LAYOUTS["batch"],
        weights=WeightFormat.INT8,
        experts=EXPERT_LAYOUTS["ep"],
    )
    extra = dataclasses.replace(WORKLOAD, routing=Routing(redundant_experts=32))
    a, b = (evaluate(model, cluster, w, c, BATCH, detail=True) for w in (WORKLOAD, extra))
    per_expert = model.experts.params_per_expert(2, model.d_model)
    assert b.weight_bytes - a.weight_bytes == pytest.approx(58 * 1 * per_expert)  # one more expert per chip
    read = [
        next(r for r in ev.rows if r.name == "einsum experts W_in, W_out").hbm_bytes / (58 * per_expert)
        for ev in (a, b)
    ]
    np.testing.assert_allclose(read[1], expected_distinct_experts(288, 8, BATCH, held=9))
    assert read[0][0] == pytest.approx(read[1][0]) == pytest.approx(8 / 32)
    assert read[0][-1] == pytest.approx(8) and read[1][-1] == pytest.approx(9)
    assert np.all(b.step_s >= a.step_s)
    # the same token-expert pairs per chip (FLOPs), spread over more copies: fewer rows per expert
    # copy, so the grouped GEMM runs at its rate at fewer rows (never faster)
    flops = [sum(r.flops for r in ev.rows if r.name == "einsum experts W_in, W_out") for ev in (a, b)]
    np.testing.assert_allclose(flops[1], flops[0])
    assert np.all(b.compute_s >= a.compute_s)


def test_any_ep_size_takes_the_fewest_redundant_experts_that_make_it_divide():
    """EP72 for 256 experts: 32 redundant (288 = 4 x 72), as SGLang's 96-GPU decode runs; EP32
    needs none. With the plan's own R, an EP size applies only where M + R divides over it."""
    model, cluster = load_model("deepseek-v3"), load_cluster("h100-sxm")
    assert Routing().redundant(256, 72) == 32 and Routing().redundant(256, 32) == 0
    assert Routing().redundant(256, 320) == 64  # DeepSeek's decode EP320 layout: 64 GPUs of copies
    ep = EXPERT_LAYOUTS["ep"]
    mesh = next(m for m in meshes(cluster, 72))
    assert ep.applies(model, mesh.sizes) and ep.redundant(model, mesh.sizes, Routing()) == 32
    assert not ep.applies(model, mesh.sizes, Routing(redundant_experts=0))
    assert not ep.applies(model, mesh.sizes, Routing(redundant_experts=16))
    assert ep.applies(model, mesh.sizes, Routing(redundant_experts=104))  # 360 = 5 x 72
    assert EXPERT_LAYOUTS["tp"].redundant(model, mesh.sizes, Routing(redundant_experts=32)) == 0
    c = Candidate(
        phase=Phase.DECODE,
        mesh=mesh,
        ffn=FFN_LAYOUTS["dp"],
        attention=ATTENTION_LAYOUTS["batch"],
        weights=WeightFormat.FP8,
        experts=ep,
    )
    ev = evaluate(model, cluster, WORKLOAD, c, BATCH, detail=True)
    per_expert = model.experts.params_per_expert(2, model.d_model)
    stored = ev.weight_bytes - _non_expert_bytes(model, 1.0)
    assert stored == pytest.approx(58 * (4 * per_expert + model.experts.router_params(model.d_model)))
    row = next(r for r in ev.rows if r.name == "einsum experts W_in, W_out")
    assert "256 + 32 redundant experts (the fewest that make 256 divide over EP72), 4 per expert shard" in row.notation


def _non_expert_bytes(model, weight_bytes):
    """Every parameter but the routed experts' and the routers' (what `dp` keeps whole on every chip)."""
    x = model.experts
    moe = x.n_moe_layers(model.n_layers)
    experts = moe * (
        x.n_experts * x.params_per_expert(model.ffn.n_input_matrices, model.d_model) + x.router_params(model.d_model)
    )
    return (model.n_params - experts) * weight_bytes


# --- replicated (data-parallel) dense parts -------------------------------------------------------


@pytest.mark.parametrize("model_name,chips", [("deepseek-v3", 64), ("llama-4-maverick", 16), ("qwen3-30b-a3b", 8)])
def test_dp_keeps_every_non_expert_weight_whole_on_every_chip(model_name, chips):
    """SGLang's DP attention + --moe-dense-tp-size 1 + DP LM head: attention, dense FFN layers,
    shared experts and embedding tables whole on every chip, its batch shard's KV cache, and no
    collective but the experts' dispatch and combine."""
    model, cluster = load_model(model_name), load_cluster("h100-sxm")
    mesh = next(m for m in meshes(cluster, chips) if m.sizes["x"] == 1 and m.sizes["y"] == 1)
    c = Candidate(
        phase=Phase.DECODE,
        mesh=mesh,
        ffn=FFN_LAYOUTS["dp"],
        attention=ATTENTION_LAYOUTS["batch"],
        weights=WeightFormat.FP8,
        experts=EXPERT_LAYOUTS["ep"],
    )
    batch = np.array([chips, 4 * chips])
    ev = evaluate(model, cluster, WORKLOAD, c, batch, detail=True)
    x = model.experts
    per_expert = x.params_per_expert(model.ffn.n_input_matrices, model.d_model)
    moe = x.n_moe_layers(model.n_layers)
    held = -(-x.n_experts // chips)
    expected = _non_expert_bytes(model, 1.0) + moe * (held * per_expert + x.router_params(model.d_model))
    assert ev.weight_bytes == pytest.approx(expected)
    one = evaluate(model, cluster, WORKLOAD, dataclasses.replace(c, mesh=ONE_CHIP), batch // chips)
    np.testing.assert_allclose(ev.kv_bytes, one.kv_bytes)  # each chip its own sequences' cache
    collectives = {r.name for r in ev.rows if np.any(r.comm_bytes)}
    assert collectives == {"dispatch all-to-all", "combine all-to-all"}
    logits = next(r for r in ev.rows if r.name == "einsum logits")
    np.testing.assert_allclose(logits.flops, 2.0 * (batch // chips) * model.d_model * model.vocab)


def test_dp_is_offered_for_mixtures_of_experts_only():
    """A dense model whole on every chip is n one-chip replicas: the search leaves it out."""
    from planner.search.choices import choices

    for model, has in (("llama-3-8b", False), ("mixtral-8x7b", True)):
        plan = load_plan(None, model=model, cluster="h100-sxm", chips=(8,))
        assert any(c.ffn.name == "dp" for c in choices(plan)) is has


@pytest.mark.parametrize("phase", list(Phase))
def test_one_expert_with_top_1_under_dp_costs_the_same_as_the_dense_model(phase):
    """dp with the experts replicated too (ep-yz where y and z span one chip: every chip holds the
    expert and serves its own tokens) is the dense model under dp."""
    dense, cluster = load_model("llama-3-8b"), load_cluster("h100-sxm")
    moe = _one_expert(dense)
    mesh = next(m for m in meshes(cluster, 8) if m.sizes["x"] == 8)
    c = Candidate(
        phase=phase, mesh=mesh, ffn=FFN_LAYOUTS["dp"], attention=ATTENTION_LAYOUTS["batch"], weights=WeightFormat.BF16
    )
    a = evaluate(dense, cluster, WORKLOAD, c, BATCH)
    b = evaluate(moe, cluster, WORKLOAD, dataclasses.replace(c, experts=EXPERT_LAYOUTS["ep-yz"]), BATCH)
    for field in ("compute_s", "memory_s", "comm_s", "step_s", "mfu", "hbm_bytes"):
        np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-12, err_msg=field)
    assert np.all(a.comm_s == 0)


# --- latent attention ----------------------------------------------------------------------------


def test_mla_cache_is_replicated_on_head_shards_and_split_by_sequences():
    model, cluster = load_model("deepseek-v3"), load_cluster("h100-sxm")
    mesh = next(m for m in meshes(cluster, 8) if m.sizes["x"] == 8)
    batch = np.array([64])
    evs = {
        a: evaluate(
            model,
            cluster,
            WORKLOAD,
            Candidate(
                phase=Phase.DECODE,
                mesh=mesh,
                ffn=FFN_LAYOUTS["ws1d"],
                attention=ATTENTION_LAYOUTS[a],
                weights=WeightFormat.INT8,
                experts=EXPERT_LAYOUTS["ep"],
            ),
            batch,
        )
        for a in ("heads", "batch")
    }
    per_sequence = 61 * 576 * 2 * WORKLOAD.context
    assert float(evs["heads"].kv_bytes[0]) == pytest.approx(64 * per_sequence)  # every head shard: all
    assert float(evs["batch"].kv_bytes[0]) == pytest.approx(64 * per_sequence / 8)  # its sequences only


def test_mla_attention_flops_absorbed_in_decode_expanded_in_prefill():
    model, cluster = load_model("deepseek-v3"), load_cluster("h100-sxm")
    mesh = meshes(cluster, 1)[0]
    for phase, per_token in ((Phase.DECODE, 2 * 576 + 2 * 512), (Phase.PREFILL, 2 * 192 + 2 * 128)):
        c = Candidate(
            phase=phase,
            mesh=mesh,
            ffn=FFN_LAYOUTS["ws1d"],
            attention=ATTENTION_LAYOUTS["batch"],
            weights=WeightFormat.INT8,
            experts=EXPERT_LAYOUTS["tp"],
        )
        ev = evaluate(model, cluster, WORKLOAD, c, np.array([2]), detail=True)
        row = next(r for r in ev.rows if r.name == "einsum QK, AV")
        tokens, attended = (1, WORKLOAD.context) if phase is Phase.DECODE else (512, 513 / 2)
        assert float(row.flops[0]) == pytest.approx(61 * 2 * tokens * attended * 128 * per_token)


# --- plans --------------------------------------------------------------------------------------


def test_mixtral_plans_on_one_to_eight_h100s():
    for chips in (1, 2, 4, 8):
        plan = load_plan(None, model="mixtral-8x7b", cluster="h100-sxm", chips=(chips,), batches=(1, 16, 128))
        from planner.search.search import search

        result = search(plan)
        assert all(ph.frontier for ph in result.phases)
        assert all(p.experts in EXPERT_LAYOUTS for ph in result.phases for p in ph.frontier)


def test_deepseek_v3_on_256_h200s_decodes_with_wide_ep_and_batch_sharded_attention():
    """With ideal constants (the formula alone). With h200-sxm's fitted constants the fixed
    per-level collective latency makes ep-yz with head-sharded attention the faster at batch 64
    (34.4 ms per step), so the calibrated preset is replaced by its ideal variant here."""
    from dataclasses import replace as _replace

    from planner.search.search import search
    from planner.specs.hardware import Calibration

    plan = load_plan(
        None,
        model="deepseek-v3",
        cluster="h200-sxm",
        chips=(256,),
        batches=(64, 256),
        weights=("fp8", "bf16"),
        ffn=("ws2d",),
        phases=("decode",),
        output_tokens=256,
        context=4096,
    )
    plan = _replace(plan, cluster=_replace(plan.cluster, calibration=Calibration()))
    frontier = search(plan).phases[0].frontier
    # wide EP, with or without two-batch overlap (issue 27: the overlap wins here)
    assert frontier and all(p.experts.startswith("ep") and p.attention == "batch" for p in frontier)


def test_deepseek_v3_in_bf16_does_not_fit_on_8_h200s_and_the_hint_says_what_would():
    from planner.errors import InfeasibleError
    from planner.search.search import search

    plan = load_plan(
        None, model="deepseek-v3", cluster="h200-sxm", chips=(8,), batches=(1,), weights=("bf16",), phases=("decode",)
    )
    with pytest.raises(InfeasibleError) as error:
        search(plan)
    # 671.03e9 x 2 B = 1.22 TiB over 126 GiB usable per H200: 10 chips, two nodes; fp8 (1 B) fits on 8
    assert "at least 10 chips" in str(error.value) and "smallest slice that fits: 16" in str(error.value)
    assert "or fp8, int8-w8a8 or int8 weights (625 GiB) fit on 8 chips (--weights fp8)" in str(error.value)
    fp8 = dataclasses.replace(plan, space=dataclasses.replace(plan.space, weights=(WeightFormat.FP8,)))
    assert search(fp8).phases[0].frontier


def test_gpt_oss_and_maverick_local_attention_follow_their_configs():
    gpt = load_model("gpt-oss-120b")  # layer_types: sliding (128) on even layers, full on odd
    assert (gpt.window_tokens, gpt.local_layers) == (128, tuple(range(0, 36, 2)))
    maverick = load_model("llama-4-maverick")  # chunked (8192) on RoPE layers; NoPE global when (i+1) % 4 == 0
    assert maverick.window_tokens == 8192
    assert maverick.local_layers == tuple(i for i in range(48) if (i + 1) % 4)


def test_gpt_oss_120b_plans_and_explains_on_one_h100_in_int4():
    from planner.errors import InfeasibleError
    from planner.search.search import best, search

    plan = load_plan(
        None,
        model="gpt-oss-120b",
        cluster="h100-sxm",
        chips=(1,),
        batches=(1, 8),
        weights=("int4",),
        context=8192,
        output_tokens=1024,
    )
    result = search(plan)
    assert all(ph.frontier for ph in result.phases)
    ev = best(plan, Phase.DECODE, chips=1, batch=8, ffn="ws1d", attention="batch", experts="tp")
    # 116.83e9 weights x (0.5 + 2/128) B = 60.2e9 B; the KV cache of 8 sequences: 18 global layers at
    # 8192 tokens and 18 local ones at the 128-token window, K and V of 8 heads of 64 in bf16
    kv = 8 * (18 * 8192 + 18 * 128) * 2 * 8 * 64 * 2
    local = next(r for r in ev.rows if r.name.startswith("read KV cache (local"))
    assert float(local.hbm_bytes[0]) == pytest.approx(8 * 18 * 128 * 2 * 8 * 64 * 2)
    assert float(ev.hbm_bytes[0]) == pytest.approx(116.83e9 * 0.515625 + kv, rel=2e-3)
    int8 = dataclasses.replace(plan, space=dataclasses.replace(plan.space, weights=(WeightFormat.INT8,)))
    with pytest.raises(InfeasibleError, match=r"or int4 weights \(56.1 GiB\) fit on 1 chip \(--weights int4\)"):
        search(int8)


def test_cli_explains_gpt_oss_120b_on_one_h100(monkeypatch, capsys):
    import sys

    from planner.cli import main as cli

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "planner",
            "explain",
            "--model",
            "gpt-oss-120b",
            "--cluster",
            "h100-sxm",
            "--chips",
            "1",
            "--phase",
            "decode",
            "--batch",
            "8",
            "--ffn",
            "ws1d",
            "--attention",
            "batch",
            "--experts",
            "tp",
            "--weights",
            "int4",
            "--context",
            "8k",
            "--output-tokens",
            "1k",
        ],
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 0 and err == ""
    assert "18 of 36 layers attend to the last 128 tokens" in out
    assert "einsum experts W_in, W_out" in out and "weights 56.1 GiB" in out


def test_dispatch_moves_fp8_with_fp8_weights_and_combine_stays_bf16():
    from planner.search.search import best

    plan = load_plan(
        None,
        model="deepseek-v3",
        cluster="h200-sxm",
        chips=(64,),
        batches=(64,),
        weights=("fp8", "bf16", "int8"),
        phases=("decode",),
        stages=(1,),
    )
    rows = {
        w: {
            r.name: float(r.comm_bytes[0])
            for r in best(
                plan, Phase.DECODE, chips=64, batch=64, weights=w, ffn="ws2d", attention="batch", experts="ep"
            ).rows
        }
        for w in (WeightFormat.FP8, WeightFormat.BF16, WeightFormat.INT8)
    }
    fp8, bf16, int8 = rows[WeightFormat.FP8], rows[WeightFormat.BF16], rows[WeightFormat.INT8]
    # 64 tokens over 64 chips, 8 copies of 7168 elements each, 58 MoE layers: bf16 2 B, fp8 1 B
    assert bf16["dispatch all-to-all"] == pytest.approx(58 * 1 * 8 * 7168 * 2)
    assert fp8["dispatch all-to-all"] == pytest.approx(bf16["dispatch all-to-all"] / 2)
    assert int8["dispatch all-to-all"] == bf16["dispatch all-to-all"]  # weight-only int8: bf16 activations
    assert fp8["combine all-to-all"] == bf16["combine all-to-all"] == bf16["dispatch all-to-all"]


# --- command line ---------------------------------------------------------------------------------


def _cli(monkeypatch, capsys, *args):
    import sys

    from planner.cli import main as cli

    monkeypatch.setattr(sys, "argv", ["planner", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_cli_plans_deepseek_v3_at_ep72_and_explain_says_the_redundant_experts(monkeypatch, capsys):
    args = (
        "--model",
        "deepseek-v3",
        "--cluster",
        "h100-sxm",
        "--chips",
        "72",
        "--phase",
        "decode",
        "--weights",
        "fp8",
        "--batch",
        "256",
    )
    code, out, err = _cli(monkeypatch, capsys, "plan", *args, "--experts", "ep", "--ffn", "dp")
    assert code == 0 and err == "" and "dp+batch+ep" in out and "redundant experts the fewest" in " ".join(out.split())
    code, out, err = _cli(monkeypatch, capsys, "explain", *args, "--row", "1")
    assert code == 0 and err == ""
    text = " ".join(out.split())
    assert "256 + 32 redundant experts (the fewest that make 256 divide over EP72), 4 per expert shard" in text
    assert "32 redundant experts held (the fewest that make 256 divide over EP72; 4 per expert shard)" in text
    code, out, err = _cli(
        monkeypatch, capsys, "plan", *args, "--experts", "ep", "--redundant-experts", "0", "--stages", "1"
    )  # PP3 or PP9 would make EP 24 or 8, which divide
    # 256 experts do not divide over 72 chips without copies: the flags leave nothing to search
    assert code == 2 and "--redundant-experts 0" in err and "drop --redundant-experts" in err


@pytest.mark.parametrize(
    "flags,message",
    [
        (
            ("--model", "llama-3-8b", "--redundant-experts", "8"),
            "--redundant-experts applies to mixtures of experts only",
        ),
        (("--model", "deepseek-v3", "--redundant-experts", "-1"), "--redundant-experts: expected a whole number >= 0"),
        (("--model", "llama-3-8b", "--ffn", "dp"), "--ffn dp: keeps the dense parts whole"),
    ],
)
def test_cli_rejects_redundant_experts_it_cannot_use(monkeypatch, capsys, flags, message):
    code, out, err = _cli(monkeypatch, capsys, "plan", "--cluster", "h100-sxm", "--chips", "8", *flags)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_cli_explains_why_dp_is_not_offered_for_a_dense_model(monkeypatch, capsys):
    code, out, err = _cli(
        monkeypatch,
        capsys,
        "explain",
        "--model",
        "llama-3-8b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "8",
        "--ffn",
        "dp",
        "--attention",
        "batch",
        "--weights",
        "bf16",
    )
    assert code == 2 and "dp: keeps the dense parts whole" in err and "mixtures of experts only" in err
    assert "one-chip replicas" in err and "Traceback" not in err


def test_a_batch_smaller_than_the_dp_ranks_sends_only_its_own_tokens_to_the_experts():
    """dp+batch on 8 chips with experts over all 8: one prompt sits on one attention rank, and its
    tokens spread over the 8 expert shards, so each chip's experts serve 1/8 of one prompt (the
    batch's ceil share on the other ranks is no token of theirs): B = 1 to 8 scale the expert work
    and the experts touched, while the attention on the busiest rank stays one prompt's."""
    model, cluster = load_model("deepseek-v3"), load_cluster("h200-sxm")
    mesh = next(m for m in meshes(cluster, 8) if m.sizes["x"] == 8)
    c = Candidate(
        phase=Phase.PREFILL,
        mesh=mesh,
        ffn=FFN_LAYOUTS["dp"],
        attention=ATTENTION_LAYOUTS["batch"],
        experts=EXPERT_LAYOUTS["ep"],
        weights=WeightFormat.FP8,
    )
    ev = evaluate(model, cluster, WORKLOAD, c, np.array([1, 2, 8]), detail=True)
    experts = next(r for r in ev.rows if r.name == "einsum experts W_in, W_out")
    np.testing.assert_allclose(experts.flops / experts.flops[-1], [1 / 8, 2 / 8, 1.0], rtol=1e-12)
    attention = next(r for r in ev.rows if r.name.startswith("einsum W_Q"))
    np.testing.assert_allclose(attention.flops, attention.flops[0])  # one prompt per busiest rank
