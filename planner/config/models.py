"""The model schema: a model YAML file to a `Model`."""

from __future__ import annotations

from pathlib import Path

from planner.config.presets import locate
from planner.config.yamlio import At, Field, boolean, choice, count, fields, load_document, number, text
from planner.specs.model import Block, FfnKind, Model
from planner.specs.moe import Experts, LatentAttention


def _whole(at: At) -> int:
    """A whole number >= 0 (a count that may be zero, e.g. no dense layers first)."""
    value = number(minimum=0, inclusive=True)(at)
    if value != int(value):
        raise at.error(f"expected a whole number >= 0, found {at.node.value!r} (not whole)")
    return int(value)


# Mixture-of-experts FFN (planner.specs.moe.Experts); config.json names in comments.
EXPERT_FIELDS = {
    "routed": Field(count),                        # n_routed_experts, num_local_experts, num_experts
    "top_k": Field(count),                         # num_experts_per_tok, experts_per_token
    "d_ff": Field(count),                          # moe_intermediate_size (one expert's FFN)
    "shared": Field(_whole, required=False),       # n_shared_experts (default 0)
    "shared_d_ff": Field(count, required=False),   # each shared expert's FFN size
    "first_dense": Field(_whole, required=False),  # first_k_dense_replace (default 0)
    "every": Field(count, required=False),         # moe_layer_freq, interleave_moe_layer_step (default 1)
    "router_bias": Field(boolean, required=False),
    "expert_bias": Field(boolean, required=False),
}
# Multi-head latent attention (planner.specs.moe.LatentAttention).
LATENT_FIELDS = {
    "q_rank": Field(_whole),        # q_lora_rank (0: no query compression)
    "kv_rank": Field(count),        # kv_lora_rank
    "qk_nope_dim": Field(count),    # qk_nope_head_dim
    "qk_rope_dim": Field(count),    # qk_rope_head_dim
    "v_head_dim": Field(count),     # v_head_dim
}

MODEL_FIELDS = {
    "name": Field(text),
    "layers": Field(count),
    "d_model": Field(count),
    "d_ff": Field(count),
    "heads": Field(count),
    "kv_heads": Field(count),
    "d_head": Field(count),
    "vocab": Field(count),
    "ffn": Field(choice({kind.label: kind for kind in FfnKind}, "FFN kind")),
    "block": Field(choice({block.value: block for block in Block}, "block kind")),
    "tied_embeddings": Field(boolean, required=False),
    "params": Field(number(), required=False),
    "source": Field(text, required=False),
    "experts": Field(lambda at: fields(at, EXPERT_FIELDS, "the experts"), required=False),
    "latent_attention": Field(lambda at: fields(at, LATENT_FIELDS, "the latent attention"),
                              required=False),
}


def load_model(name_or_path: str, *, base: Path | None = None, at: At | None = None) -> Model:
    return _read_model(load_document(locate("models", name_or_path, base, at)))


def _read_model(root: At) -> Model:
    f = fields(root, MODEL_FIELDS, "a model")
    heads, kv_heads = f["heads"], f["kv_heads"]
    if kv_heads > heads or heads % kv_heads:
        raise f.where["kv_heads"].error(
            f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})",
            hint="kv_heads = heads for multihead, 1 for multiquery, a divisor for grouped-query")
    return Model(
        name=f["name"], n_layers=f["layers"], d_model=f["d_model"], d_ff=f["d_ff"],
        n_heads=heads, n_kv_heads=kv_heads, d_head=f["d_head"], vocab=f["vocab"],
        ffn=f["ffn"], block=f["block"], tied_embeddings=f.get("tied_embeddings", True),
        n_params_nominal=f.get("params"),
        source=f.get("source", ""),
        experts=_read_experts(f["experts"], f["layers"]) if "experts" in f.values else None,
        latent=_read_latent(f["latent_attention"], kv_heads, f.where) if "latent_attention" in f.values else None,
    )


def _read_experts(x, n_layers: int) -> Experts:
    if x["top_k"] > x["routed"]:
        raise x.where["top_k"].error(f"top_k ({x['top_k']}) exceeds the routed experts ({x['routed']})",
                                     hint="top_k is the number of distinct experts each token is sent to")
    shared = x.get("shared", 0)
    if shared and "shared_d_ff" not in x.values:
        raise x.at.error(f"{shared} shared expert(s) but no 'shared_d_ff' in the experts",
                         hint="give each shared expert's FFN size (DeepSeek-V3: moe_intermediate_size)")
    experts = Experts(n_experts=x["routed"], top_k=x["top_k"], d_ff_expert=x["d_ff"], n_shared=shared,
                      d_ff_shared=x.get("shared_d_ff", 0) if shared else 0,
                      first_dense=x.get("first_dense", 0), every=x.get("every", 1),
                      router_bias=x.get("router_bias", False), expert_bias=x.get("expert_bias", False))
    if experts.n_moe_layers(n_layers) == 0:
        raise x.at.error(f"no layer of {n_layers} is an MoE layer with first_dense "
                         f"{experts.first_dense} and every {experts.every}",
                         hint="layer i (from 0) is MoE when i >= first_dense and (i + 1) % every == 0")
    return experts


def _read_latent(a, kv_heads: int, where) -> LatentAttention:
    if kv_heads != 1:
        raise where["kv_heads"].error(f"latent attention caches one latent shared by all heads; found "
                                      f"kv_heads {kv_heads}", hint="set kv_heads: 1 with latent_attention")
    return LatentAttention(q_rank=a["q_rank"], kv_rank=a["kv_rank"], qk_nope_dim=a["qk_nope_dim"],
                           qk_rope_dim=a["qk_rope_dim"], v_head_dim=a["v_head_dim"])
