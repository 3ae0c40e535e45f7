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
    "llama-4-maverick": ("llama-4-maverick-17b-128e", "text_total_params",
                         "text_active_params_incl_emb_and_unemb", True),
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
    assert (model.n_layers, model.d_model, model.n_heads, model.vocab) == \
        (entry["layers"], entry["hidden"], entry["heads"], entry["vocab"])
    assert (x.n_experts, x.top_k, x.d_ff_expert, x.n_shared) == \
        (entry["routed_experts"], entry["top_k"], entry["expert_intermediate"], entry["shared_experts"])
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


@pytest.mark.parametrize("n_experts,top_k,tokens", [
    (256, 8, 1), (256, 8, 8), (256, 8, 32), (256, 8, 128), (128, 4, 16), (8, 2, 3), (128, 1, 64), (16, 16, 2),
])
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
