"""Models from Hugging Face config.json files: the mapping per architecture, the presets they
match, `planner models import` round trips, and the plans they give.

The configs below are written with the keys of the real files on the Hub (checked against
transformers' configuration_<type>.py and published config.json files; see the preset comments)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from planner.config import load_model, load_plan
from planner.config.huggingface import read_hf_config
from planner.errors import ConfigError
from planner.search.search import search
from planner.specs.model import Block, FfnKind

LLAMA_31_70B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "hidden_size": 8192,
    "initializer_range": 0.02,
    "intermediate_size": 28672,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 64,
    "num_hidden_layers": 80,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0",
    "use_cache": True,
    "vocab_size": 128256,
}
# google/gemma-3-27b-it: a multimodal wrapper whose text_config lists only non-default keys
GEMMA_3_27B = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "boi_token_index": 255999,
    "eoi_token_index": 256000,
    "eos_token_id": [1, 106],
    "image_token_index": 262144,
    "initializer_range": 0.02,
    "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {
        "head_dim": 128,
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "model_type": "gemma3_text",
        "num_attention_heads": 32,
        "num_hidden_layers": 62,
        "num_key_value_heads": 16,
        "query_pre_attn_scalar": 168,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0.dev0",
    "vision_config": {
        "hidden_size": 1152,
        "image_size": 896,
        "intermediate_size": 4304,
        "model_type": "siglip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": 27,
        "patch_size": 14,
        "vision_use_head": False,
    },
}
MISTRAL_7B_V01 = {
    "architectures": ["MistralForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}
QWEN3_32B = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 5120,
    "initializer_range": 0.02,
    "intermediate_size": 25600,
    "max_position_embeddings": 40960,
    "max_window_layers": 64,
    "model_type": "qwen3",
    "num_attention_heads": 64,
    "num_hidden_layers": 64,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
GEMMA_2_9B = {  # google/gemma-2-9b: Gemma2Config keys; every other layer local from layer 0
    "architectures": ["Gemma2ForCausalLM"],
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "head_dim": 256,
    "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 3584,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "gemma2",
    "num_attention_heads": 16,
    "num_hidden_layers": 42,
    "num_key_value_heads": 8,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "vocab_size": 256000,
}
PHI3_MINI = {  # microsoft/Phi-3-mini-4k-instruct: no num_key_value_heads, sliding_window on every layer
    "architectures": ["Phi3ForCausalLM"],
    "hidden_act": "silu",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "max_position_embeddings": 4096,
    "model_type": "phi3",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "original_max_position_embeddings": 4096,
    "sliding_window": 2047,
    "tie_word_embeddings": False,
    "vocab_size": 32064,
}
FALCON_7B = {  # tiiuae/falcon-7b: old key names, multi-query, parallel attention, no max_position_embeddings
    "architectures": ["FalconForCausalLM"],
    "alibi": False,
    "bias": False,
    "hidden_size": 4544,
    "model_type": "falcon",
    "multi_query": True,
    "n_head": 71,
    "n_layer": 32,
    "new_decoder_architecture": False,
    "parallel_attn": True,
    "vocab_size": 65024,
}
QWEN2_WINDOWED = {  # a Qwen2 config with use_sliding_window: local from max_window_layers on
    "hidden_act": "silu",
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "num_key_value_heads": 16,
    "sliding_window": 4096,
    "tie_word_embeddings": True,
    "use_sliding_window": True,
    "vocab_size": 151936,
}
ALL = {
    "llama": LLAMA_31_70B,
    "gemma3": GEMMA_3_27B,
    "mistral": MISTRAL_7B_V01,
    "qwen3": QWEN3_32B,
    "gemma2": GEMMA_2_9B,
    "phi3": PHI3_MINI,
    "falcon": FALCON_7B,
    "qwen2": QWEN2_WINDOWED,
}


def write_config(folder: Path, config: dict, name: str = "model") -> Path:
    path = folder / name / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


def same_shape(model, preset) -> bool:
    return dataclasses.replace(model, name=preset.name, source=preset.source) == preset


@pytest.mark.parametrize(
    "config,preset",
    [
        (LLAMA_31_70B, "llama-3.1-70b"),
        (GEMMA_3_27B, "gemma-3-27b"),
        (MISTRAL_7B_V01, "mistral-7b"),
        (QWEN3_32B, "qwen3-32b"),
    ],
)
def test_config_json_gives_the_preset(tmp_path, config, preset):
    model = load_model(str(write_config(tmp_path, config)))
    assert same_shape(model, load_model(preset)), (model, load_model(preset))


def test_llama_31_70b_config_plans_identically_to_the_preset(tmp_path):
    folder = write_config(tmp_path, LLAMA_31_70B, "Llama-3.1-70B").parent
    flags = dict(cluster="h100-sxm", chips=(8, 16), batches=(1, 16, 128), input_tokens=4096, context=8192)
    mine, preset = (search(load_plan(None, model=m, **flags)) for m in (str(folder), "llama-3.1-70b"))

    def figures(result):
        return [
            (
                ph.phase,
                [
                    (p.chips, p.batch, p.ffn, p.attention, p.weights, p.latency_s, p.mfu, p.hbm_bytes_per_chip)
                    for p in ph.frontier
                ],
            )
            for ph in result.phases
        ]

    assert figures(mine) == figures(preset) and figures(mine)[0][1]
    assert load_model(str(folder)).name == "Llama-3.1-70B"  # the folder names it


def test_each_architecture_maps_its_keys(tmp_path):
    m = {t: load_model(str(write_config(tmp_path, c, t))) for t, c in ALL.items()}
    assert (m["llama"].ffn, m["llama"].block, m["llama"].tied_embeddings, m["llama"].d_head) == (
        FfnKind.SWIGLU,
        Block.SERIAL,
        False,
        128,
    )
    assert (m["gemma3"].ffn, m["gemma3"].vocab, m["gemma3"].max_context, m["gemma3"].tied_embeddings) == (
        FfnKind.GEGLU,
        262208,
        131072,
        True,
    )  # Gemma3TextConfig defaults
    assert [i for i in range(62) if i not in m["gemma3"].local_layers] == list(range(5, 62, 6))
    assert m["mistral"].local_layers == tuple(range(32)) and m["mistral"].window_tokens == 4096
    assert m["qwen3"].d_head == 128 and m["qwen3"].window_tokens is None  # head_dim, not 5120 / 64
    assert m["gemma2"].local_layers == tuple(range(0, 42, 2)) and m["gemma2"].d_head == 256
    assert (m["phi3"].n_kv_heads, m["phi3"].d_head, m["phi3"].window_tokens) == (32, 96, 2047)
    f = m["falcon"]
    assert (
        f.n_layers,
        f.n_heads,
        f.n_kv_heads,
        f.d_head,
        f.d_ff,
        f.ffn,
        f.block,
        f.tied_embeddings,
        f.max_context,
    ) == (32, 71, 1, 64, 4 * 4544, FfnKind.GELU, Block.PARALLEL, True, 2048)
    assert m["qwen2"].local_layers == (21, 22, 23) and m["qwen2"].tied_embeddings


def test_layer_types_decide_the_local_layers(tmp_path):
    config = dict(
        GEMMA_2_9B,
        num_hidden_layers=4,
        layer_types=["full_attention", "sliding_attention", "sliding_attention", "full_attention"],
    )
    assert load_model(str(write_config(tmp_path, config))).local_layers == (1, 2)


def test_defaults_and_derivations_are_reported(tmp_path):
    imported = read_hf_config(write_config(tmp_path, GEMMA_3_27B))
    notes = "\n".join(imported.notes)
    for expected in (
        "vocab_size=262208: absent",
        "max_position_embeddings=131072: absent",
        "sliding_window_pattern=6: absent",
        "tie_word_embeddings=True: absent",
        "ffn geglu",
        "sliding window 1024 tokens on 52 of 62 layers",
        "rope_scaling linear x8.0",
    ):
        assert expected in notes, notes
    assert "class defaults: " in imported.model.source and "vocab_size" in imported.model.source


@pytest.mark.parametrize("kind", sorted(ALL))
def test_models_import_round_trips(planner, tmp_path, kind):
    config = write_config(tmp_path, ALL[kind], kind)
    out = tmp_path / f"{kind}.yaml"
    code, stdout, err = planner("models", "import", str(config), "-o", str(out))
    assert (code, stdout, err) == (0, "", "")
    assert load_model(str(out)) == load_model(str(config))
    assert out.read_text().startswith("# Imported by `planner models import`")


def test_models_import_prints_to_stdout_and_refuses_yaml(planner, tmp_path):
    code, out, err = planner("models", "import", str(write_config(tmp_path, MISTRAL_7B_V01).parent))
    assert code == 0 and "sliding_window: 4096\nlocal_layers: all\n" in out
    code, out, err = planner("models", "import", "configs/models/palm-8b.yaml")
    assert code == 2 and out == "" and "expected a Hugging Face config.json" in err
    code, out, err = planner("models", "import", str(tmp_path / "no-such-model"))
    assert code == 2 and out == "" and "no such file or folder" in err and "config.json" in err


def test_plan_file_names_a_config_json(tmp_path):
    write_config(tmp_path, MISTRAL_7B_V01, "mistral")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "model: mistral/config.json\ncluster: h100-sxm\n"
        "workload: {input_tokens: 2048, output_tokens: 8, context: 8192}\n"
        "search: {phases: both, chips: [8], batch: [8]}\n"
    )
    loaded = load_plan(str(plan))
    assert loaded.model.window_tokens == 4096 and len(loaded.space.phases) == 2


def test_folder_without_config_json(tmp_path):
    with pytest.raises(ConfigError, match="holds no config.json"):
        load_model(str(tmp_path))


# --- mixtures of experts ------------------------------------------------------------------------
# deepseek-ai/DeepSeek-V3 config.json keys with the values of ../shared/reference/moe-models.yaml
DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "first_k_dense_replace": 3,
    "hidden_act": "silu",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 8,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "tie_word_embeddings": False,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "v_head_dim": 128,
    "vocab_size": 129280,
}
QWEN3_235B_A22B = {  # the Qwen3-235B-A22B-FP8 copy in ai-dynamo/aiconfigurator, less its quantization_config
    "architectures": ["Qwen3MoeForCausalLM"],
    "attention_bias": False,
    "decoder_sparse_step": 1,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "max_position_embeddings": 40960,
    "max_window_layers": 94,
    "mlp_only_layers": [],
    "model_type": "qwen3_moe",
    "moe_intermediate_size": 1536,
    "norm_topk_prob": True,
    "num_attention_heads": 64,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 94,
    "num_key_value_heads": 4,
    "rope_scaling": None,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
MIXTRAL_8X22B = {  # mistralai/Mixtral-8x22B-v0.1 (copy in ai-dynamo/aiconfigurator)
    "architectures": ["MixtralForCausalLM"],
    "hidden_act": "silu",
    "hidden_size": 6144,
    "intermediate_size": 16384,
    "max_position_embeddings": 65536,
    "model_type": "mixtral",
    "num_attention_heads": 48,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 56,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}
LLAMA_4_MAVERICK = {  # meta-llama/Llama-4-Maverick-17B-128E-Instruct (copy in ai-dynamo/aiconfigurator)
    "architectures": ["Llama4ForConditionalGeneration"],
    "model_type": "llama4",
    "text_config": {
        "attention_bias": False,
        "attention_chunk_size": 8192,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 5120,
        "interleave_moe_layer_step": 2,
        "intermediate_size": 8192,
        "intermediate_size_mlp": 16384,
        "max_position_embeddings": 1048576,
        "model_type": "llama4_text",
        "num_attention_heads": 40,
        "num_experts_per_tok": 1,
        "num_hidden_layers": 48,
        "num_key_value_heads": 8,
        "num_local_experts": 128,
        "rope_scaling": None,
        "use_qk_norm": False,
        "vocab_size": 202048,
    },
    "torch_dtype": "bfloat16",
}
GPT_OSS_120B = {  # openai/gpt-oss-120b (copy in ai-dynamo/aiconfigurator)
    "architectures": ["GptOssForCausalLM"],
    "attention_bias": True,
    "experts_per_token": 4,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2880,
    "initial_context_length": 4096,
    "intermediate_size": 2880,
    "layer_types": ["sliding_attention", "full_attention"] * 18,
    "max_position_embeddings": 131072,
    "model_type": "gpt_oss",
    "num_attention_heads": 64,
    "num_experts_per_tok": 4,
    "num_hidden_layers": 36,
    "num_key_value_heads": 8,
    "num_local_experts": 128,
    "quantization_config": {
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
        "quant_method": "mxfp4",
    },
    "rope_scaling": {
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "factor": 32.0,
        "original_max_position_embeddings": 4096,
        "rope_type": "yarn",
        "truncate": False,
    },
    "sliding_window": 128,
    "swiglu_limit": 7.0,
    "tie_word_embeddings": False,
    "vocab_size": 201088,
}
MOE = {
    "deepseek_v3": DEEPSEEK_V3,
    "qwen3_moe": QWEN3_235B_A22B,
    "mixtral": MIXTRAL_8X22B,
    "llama4": LLAMA_4_MAVERICK,
    "gpt_oss": GPT_OSS_120B,
}


@pytest.mark.parametrize(
    "config,preset",
    [
        (DEEPSEEK_V3, "deepseek-v3"),
        (QWEN3_235B_A22B, "qwen3-235b-a22b"),
        (MIXTRAL_8X22B, "mixtral-8x22b"),
        (LLAMA_4_MAVERICK, "llama-4-maverick"),
        (GPT_OSS_120B, "gpt-oss-120b"),
    ],
)
def test_moe_config_json_gives_the_preset(tmp_path, config, preset):
    model = load_model(str(write_config(tmp_path, config)))
    assert same_shape(model, load_model(preset)), (model, load_model(preset))


def test_deepseek_v3_config_plans_identically_to_the_preset(tmp_path):
    folder = write_config(tmp_path, DEEPSEEK_V3, "DeepSeek-V3").parent
    flags = dict(
        cluster="h200-sxm",
        chips=(8, 16),
        batches=(1, 64),
        weights=("fp8", "bf16"),
        ffn=("ws2d", "wg-xyz"),
        output_tokens=16,
        context=4096,
    )
    mine, preset = (search(load_plan(None, model=m, **flags)) for m in (str(folder), "deepseek-v3"))

    def figures(result):
        return [
            (
                ph.phase,
                [
                    (
                        p.chips,
                        p.batch,
                        p.ffn,
                        p.attention,
                        p.experts,
                        p.weights,
                        p.latency_s,
                        p.mfu,
                        p.hbm_bytes_per_chip,
                    )
                    for p in ph.frontier
                ],
            )
            for ph in result.phases
        ]

    assert figures(mine) == figures(preset) and any(p[4] for p in figures(mine)[1][1])


def test_moe_notes_say_what_was_mapped(tmp_path):
    notes = "\n".join(read_hf_config(write_config(tmp_path, DEEPSEEK_V3)).notes)
    for expected in (
        "latent attention: kv heads 1",
        "576 per token",
        "d_head 192",
        "e_score_correction_bias",
        "not modelled: group-limited routing",
        "experts: 256 routed, top 8, each of 2048; 58 of 61",
    ):
        assert expected in notes, notes
    notes = "\n".join(read_hf_config(write_config(tmp_path, LLAMA_4_MAVERICK, "m")).notes)
    assert "chunked attention (8192 tokens) on 36 of 48 layers" in notes and "one shared expert" in notes
    assert "no_rope_layer_interval=4: absent" in notes
    notes = "\n".join(read_hf_config(write_config(tmp_path, GPT_OSS_120B, "g")).notes)
    assert "mxfp4" in notes and "--weights int4" in notes


def test_moe_layer_sets_and_chunked_layers_from_explicit_keys(tmp_path):
    text = dict(
        LLAMA_4_MAVERICK["text_config"],
        num_hidden_layers=4,
        moe_layers=[1, 3],
        layer_types=["chunked_attention", "full_attention", "chunked_attention", "full_attention"],
    )
    m = load_model(str(write_config(tmp_path, dict(LLAMA_4_MAVERICK, text_config=text))))
    assert m.local_layers == (0, 2) and m.experts.n_moe_layers(4) == 2
    m = load_model(str(write_config(tmp_path, dict(QWEN3_235B_A22B, num_hidden_layers=8, mlp_only_layers=[0, 1]), "q")))
    assert m.experts.first_dense == 2 and m.experts.n_moe_layers(8) == 6


@pytest.mark.parametrize("kind", sorted(MOE))
def test_moe_models_import_round_trips(planner, tmp_path, kind):
    config = write_config(tmp_path, MOE[kind], kind)
    out = tmp_path / f"{kind}.yaml"
    code, stdout, err = planner("models", "import", str(config), "-o", str(out))
    assert (code, stdout, err) == (0, "", "")
    assert load_model(str(out)) == load_model(str(config))
    text = out.read_text()
    assert "\nexperts: {routed: " in text
    assert ("\nlatent_attention: {q_rank: 1536, kv_rank: 512" in text) == (kind == "deepseek_v3")
