"""Mixture-of-experts `model_type`s of Hugging Face config.json files: their experts, latent
attention and local-attention keys, mapped to `Experts`, `LatentAttention` and the model's window
(the dense keys are read by `planner.config.huggingface`, which calls `moe_shapes`).

Keys per type (checked against transformers' configuration_<type>.py and modeling_<type>.py):

- deepseek_v3 (DeepseekV3Config): n_routed_experts, num_experts_per_tok, moe_intermediate_size (each
  routed and shared expert), n_shared_experts, first_k_dense_replace (dense layers first, of
  intermediate_size); moe_layer_freq must be 1 (transformers ignores it). The router has a bias per
  expert (e_score_correction_bias, always built). Latent attention: q_lora_rank (null: none),
  kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim; kv heads 1 (num_key_value_heads means
  nothing for MLA), d_head = qk_nope + qk_rope. Not modelled: group-limited routing (n_group,
  topk_group), the multi-token-prediction layer (num_nextn_predict_layers).
- qwen3_moe (Qwen3MoeConfig): num_experts, num_experts_per_tok, moe_intermediate_size; layer i is MoE
  when it is not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0, so mlp_only_layers must
  be the first layers (first_dense); dense layers use intermediate_size.
- mixtral (MixtralConfig): num_local_experts, num_experts_per_tok, intermediate_size (each expert);
  every layer MoE.
- llama4 (its text_config, Llama4TextConfig): num_local_experts, num_experts_per_tok,
  intermediate_size (each routed expert and the one shared expert modeling_llama4 always builds),
  intermediate_size_mlp (dense layers), interleave_moe_layer_step (MoE layers step - 1, 2 step - 1,
  ...; an explicit moe_layers must be that pattern). Chunked local attention of attention_chunk_size
  on the RoPE layers (layer_types chunked_attention, else no_rope_layers, else all but every
  no_rope_layer_interval-th layer), costed as a sliding window of the chunk: the same KV cache held
  (at most a chunk), attention FLOPs an upper bound (a chunked query sees half a chunk on average).
- gpt_oss (GptOssConfig): num_local_experts, num_experts_per_tok (or experts_per_token),
  intermediate_size (each expert); biases on the router and on every expert matrix; sliding window
  on the layer_types' sliding_attention layers (absent: the even layers, the class default).
  The release stores experts in MXFP4 (quantization_config), noted: plan it with --weights int4.
"""

from __future__ import annotations

from typing import Any

from planner.specs.moe import Experts, LatentAttention

MOE_TYPES = ("deepseek_v3", "qwen3_moe", "mixtral", "llama4_text", "gpt_oss")


def moe_shapes(get: Any, model_type: str, n_layers: int) -> dict:
    """The Model fields an MoE config sets beyond (or instead of) the dense mapping: `experts`, and
    where they differ from it `latent`, `n_kv_heads`, `d_head` and `d_ff`. `get` is the
    importer's typed reader of the config (huggingface._Getter)."""
    out: dict = {}
    if model_type == "deepseek_v3":
        freq = get.count("moe_layer_freq", default=1, why="DeepseekV3Config default")
        if freq != 1:
            raise get.cfg.error(
                "moe_layer_freq",
                f"moe_layer_freq {freq} is not supported (expected 1: every layer after first_k_dense_replace is MoE)",
            )
        d_ff_e = get.count("moe_intermediate_size")
        shared = get.whole("n_shared_experts")
        experts = Experts(
            n_experts=get.count("n_routed_experts"),
            top_k=get.count("num_experts_per_tok"),
            d_ff_expert=d_ff_e,
            n_shared=shared,
            d_ff_shared=d_ff_e if shared else 0,
            first_dense=get.whole("first_k_dense_replace"),
            router_bias=True,
        )
        latent = LatentAttention(
            q_rank=get.count("q_lora_rank", nullable=True) or 0,
            kv_rank=get.count("kv_lora_rank"),
            qk_nope_dim=get.count("qk_nope_head_dim"),
            qk_rope_dim=get.count("qk_rope_head_dim"),
            v_head_dim=get.count("v_head_dim"),
        )
        out.update(latent=latent, n_kv_heads=1, d_head=latent.qk_head_dim)
        get.notes += [
            f"latent attention: kv heads 1 (one latent of kv_lora_rank + qk_rope_head_dim = "
            f"{latent.cache_elements} per token; num_key_value_heads is unused), d_head "
            f"{latent.qk_head_dim} = qk_nope_head_dim + qk_rope_head_dim",
            f"{shared} shared expert(s) of moe_intermediate_size; router bias (e_score_correction_bias)",
            "not modelled: group-limited routing (n_group, topk_group), the multi-token-prediction "
            "layer (num_nextn_predict_layers)",
        ]
    elif model_type == "qwen3_moe":
        mlp_only = get.value("mlp_only_layers", default=[])
        if not isinstance(mlp_only, list) or mlp_only != list(range(len(mlp_only))):
            raise get.cfg.error(
                "mlp_only_layers",
                f"expected the first layers ([0, 1, ..., k - 1]), found {mlp_only!r}",
                hint="the planner's dense layers come first",
            )
        experts = Experts(
            n_experts=get.count("num_experts"),
            top_k=get.count("num_experts_per_tok"),
            d_ff_expert=get.count("moe_intermediate_size"),
            first_dense=len(mlp_only),
            every=get.count("decoder_sparse_step", default=1, why="Qwen3MoeConfig default"),
        )
    elif model_type == "mixtral":
        d_ff_e = get.count("intermediate_size")
        experts = Experts(
            n_experts=get.count("num_local_experts"), top_k=get.count("num_experts_per_tok"), d_ff_expert=d_ff_e
        )
        get.notes.append("every layer MoE; intermediate_size is each expert's")
    elif model_type == "llama4_text":
        d_ff_e, every = get.count("intermediate_size"), get.count("interleave_moe_layer_step")
        moe_layers = get.cfg.value("moe_layers") if get.cfg.has("moe_layers") else None
        if moe_layers is not None and moe_layers != list(range(every - 1, n_layers, every)):
            raise get.cfg.error(
                "moe_layers",
                f"expected every {every}th layer from layer {every - 1} (interleave_moe_layer_step)",
                hint="other MoE layer sets are not supported",
            )
        experts = Experts(
            n_experts=get.count("num_local_experts"),
            top_k=get.count("num_experts_per_tok"),
            d_ff_expert=d_ff_e,
            n_shared=1,
            d_ff_shared=d_ff_e,
            every=every,
        )
        out["d_ff"] = get.count("intermediate_size_mlp")
        get.notes.append(
            "one shared expert of intermediate_size (modeling_llama4 Llama4TextMoe always "
            "builds it); dense layers of intermediate_size_mlp"
        )
    else:  # gpt_oss
        top_k_key = "num_experts_per_tok" if get.cfg.has("num_experts_per_tok") else "experts_per_token"
        experts = Experts(
            n_experts=get.count("num_local_experts"),
            top_k=get.count(top_k_key),
            d_ff_expert=get.count("intermediate_size"),
            router_bias=True,
            expert_bias=True,
        )
        quant = get.cfg.value("quantization_config") if get.cfg.has("quantization_config") else {}
        if isinstance(quant, dict) and quant.get("quant_method") == "mxfp4":
            get.notes.append(
                "quantization_config mxfp4: experts stored in MXFP4 (0.53 B per weight), the rest "
                "bf16; the planner has one weight format: --weights int4 costs it on chips without "
                "an fp4 peak"
            )
    if experts.top_k > experts.n_experts:
        raise get.cfg.error(
            "num_experts_per_tok", f"{experts.top_k} experts per token exceed the {experts.n_experts} routed experts"
        )
    if experts.n_moe_layers(n_layers) == 0:
        raise get.cfg.error("num_hidden_layers", f"no layer of {n_layers} is an MoE layer")
    get.notes.append(
        f"experts: {experts.n_experts} routed, top {experts.top_k}, each of {experts.d_ff_expert}; "
        f"{experts.n_moe_layers(n_layers)} of {n_layers} layers MoE"
    )
    out["experts"] = experts
    return out


def chunked_window(get: Any, n: int) -> tuple[int | None, tuple[int, ...]]:
    """Llama 4: (chunk tokens, the chunked layers), costed as a sliding window of the chunk."""
    cfg = get.cfg
    if cfg.has("layer_types"):
        types = cfg.value("layer_types")
        if (
            not isinstance(types, list)
            or len(types) != n
            or any(t not in ("chunked_attention", "full_attention") for t in types)
        ):
            raise cfg.error(
                "layer_types", f"expected a list of {n} layer types, each chunked_attention or full_attention"
            )
        local, how = tuple(i for i, t in enumerate(types) if t == "chunked_attention"), "layer_types"
    elif cfg.has("no_rope_layers"):
        flags = cfg.value("no_rope_layers")
        if not isinstance(flags, list) or len(flags) != n or any(f not in (0, 1) for f in flags):
            raise cfg.error("no_rope_layers", f"expected a list of {n} flags (1: a RoPE, chunked layer)")
        local, how = tuple(i for i, f in enumerate(flags) if f), "no_rope_layers"
    else:
        interval = get.count("no_rope_layer_interval")
        local = tuple(i for i in range(n) if (i + 1) % interval)
        how = f"all but every {interval}th layer (no_rope_layer_interval)"
    chunk = get.count("attention_chunk_size", nullable=True)
    if chunk is None or not local:
        return None, ()
    get.notes.append(
        f"chunked attention ({chunk} tokens) on {len(local)} of {n} layers ({how}), costed as a "
        "sliding window of the chunk: the same KV cache held, attention FLOPs an upper bound"
    )
    return chunk, local
