"""The model schema: a model YAML file (or a Hugging Face `config.json`) to a `Model`, and the
YAML text of a `Model` (`model_yaml`, what `planner models import` writes)."""

from __future__ import annotations

from pathlib import Path

import yaml

from planner.config.presets import locate
from planner.config.yamlio import (
    MAX_COUNT,
    MAX_LOCAL_LAYERS,
    At,
    Field,
    boolean,
    choice,
    count,
    fields,
    list_of,
    load_document,
    number,
    scalar,
    text,
)
from planner.errors import ConfigError
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
    "routed": Field(count),  # n_routed_experts, num_local_experts, num_experts
    "top_k": Field(count),  # num_experts_per_tok, experts_per_token
    "d_ff": Field(count),  # moe_intermediate_size (one expert's FFN)
    "shared": Field(_whole, required=False),  # n_shared_experts (default 0)
    "shared_d_ff": Field(count, required=False),  # each shared expert's FFN size
    "first_dense": Field(_whole, required=False),  # first_k_dense_replace (default 0)
    "every": Field(count, required=False),  # moe_layer_freq, interleave_moe_layer_step (default 1)
    "router_bias": Field(boolean, required=False),
    "expert_bias": Field(boolean, required=False),
}
# Multi-head latent attention (planner.specs.moe.LatentAttention).
LATENT_FIELDS = {
    "q_rank": Field(_whole),  # q_lora_rank (0: no query compression)
    "kv_rank": Field(count),  # kv_lora_rank
    "qk_nope_dim": Field(count),  # qk_nope_head_dim
    "qk_rope_dim": Field(count),  # qk_rope_head_dim
    "v_head_dim": Field(count),  # v_head_dim
}

LOCAL_LAYERS = "all, a pattern of L (local) and G (global) layers such as LLLLLG, or a list of layer indices"


def _layer_index(at: At) -> int:
    value = number(minimum=0, inclusive=True, maximum=MAX_COUNT)(at)
    if value != int(value):
        raise at.error(f"expected a layer index (0, 1, ...), found {at.node.value!r} (not whole)")
    return int(value)


def _local_layers(at: At) -> str | tuple[int, ...]:
    """`all`, an L/G pattern repeated over the layers, or the 0-based indices of the local layers."""
    if isinstance(at.node, yaml.SequenceNode):
        return list_of(_layer_index)(at)
    raw = scalar(at, LOCAL_LAYERS).strip()
    if raw != "all" and not (raw and set(raw) <= {"L", "G"}):
        raise at.error(f"expected {LOCAL_LAYERS}, found {raw!r}")
    return raw


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
    "max_context": Field(count, required=False),
    "sliding_window": Field(count, required=False),
    "local_layers": Field(_local_layers, required=False),
    "source": Field(text, required=False),
    "experts": Field(lambda at: fields(at, EXPERT_FIELDS, "the experts"), required=False),
    "latent_attention": Field(lambda at: fields(at, LATENT_FIELDS, "the latent attention"), required=False),
}


def load_model(name_or_path: str, *, base: Path | None = None, at: At | None = None) -> Model:
    """A model from a preset name, a model YAML file, or a Hugging Face config.json (or a folder
    holding one)."""
    path = locate("models", name_or_path, base, at)
    if is_hf_config(path):
        # Imported here, not at the top: only a config.json needs the Hugging Face reader (and its
        # JSON reader), and leaving it out saves a bundled plan's start-up a few milliseconds.
        from planner.config.huggingface import read_hf_config

        return read_hf_config(path).model
    return read_model(load_document(path))


def is_hf_config(path: Path) -> bool:
    """A .json file or a folder (which must hold a config.json) is read as a Hugging Face config."""
    try:
        return path.suffix.lower() == ".json" or path.is_dir()
    except (OSError, ValueError):
        return False


def import_hf_yaml(path: Path) -> str:
    """The model YAML equivalent to a Hugging Face config.json (or its folder), headed by what
    was derived, defaulted or mapped, for a person to review before committing it."""
    if not path.exists():
        raise ConfigError(
            "no such file or folder",
            file=str(path),
            hint="give a Hugging Face model folder (holding config.json) or its config.json",
        )
    if not is_hf_config(path):
        raise ConfigError(
            "expected a Hugging Face config.json or a folder holding one",
            file=str(path),
            hint="planner model YAML files are used as they are (--model FILE)",
        )
    from planner.config.huggingface import read_hf_config

    imported = read_hf_config(path)
    comment = "\n".join(
        [
            f"Imported by `planner models import` from {path}.",
            "Review before committing; derived, defaulted or mapped values:",
            *(f"  - {note}" for note in imported.notes),
            "Not modelled: biases (beyond MoE routers' and experts'), norms and rotary embeddings.",
        ]
    )
    return model_yaml(imported.model, comment)


def read_model(root: At) -> Model:
    f = fields(root, MODEL_FIELDS, "a model")
    heads, kv_heads = f["heads"], f["kv_heads"]
    if kv_heads > heads or heads % kv_heads:
        raise f.where["kv_heads"].error(
            f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})",
            hint="kv_heads = heads for multihead, 1 for multiquery, a divisor for grouped-query",
        )
    return Model(
        name=f["name"],
        n_layers=f["layers"],
        d_model=f["d_model"],
        d_ff=f["d_ff"],
        n_heads=heads,
        n_kv_heads=kv_heads,
        d_head=f["d_head"],
        vocab=f["vocab"],
        ffn=f["ffn"],
        block=f["block"],
        tied_embeddings=f.get("tied_embeddings", True),
        n_params_nominal=f.get("params"),
        source=f.get("source", ""),
        experts=_read_experts(f["experts"], f["layers"]) if "experts" in f.values else None,
        latent=_read_latent(f["latent_attention"], kv_heads, f.where) if "latent_attention" in f.values else None,
        max_context=f.get("max_context"),
        **_window(f),
    )


def _read_experts(x, n_layers: int) -> Experts:
    if x["top_k"] > x["routed"]:
        raise x.where["top_k"].error(
            f"top_k ({x['top_k']}) exceeds the routed experts ({x['routed']})",
            hint="top_k is the number of distinct experts each token is sent to",
        )
    shared = x.get("shared", 0)
    if shared and "shared_d_ff" not in x.values:
        raise x.at.error(
            f"{shared} shared expert(s) but no 'shared_d_ff' in the experts",
            hint="give each shared expert's FFN size (DeepSeek-V3: moe_intermediate_size)",
        )
    experts = Experts(
        n_experts=x["routed"],
        top_k=x["top_k"],
        d_ff_expert=x["d_ff"],
        n_shared=shared,
        d_ff_shared=x.get("shared_d_ff", 0) if shared else 0,
        first_dense=x.get("first_dense", 0),
        every=x.get("every", 1),
        router_bias=x.get("router_bias", False),
        expert_bias=x.get("expert_bias", False),
    )
    if experts.n_moe_layers(n_layers) == 0:
        raise x.at.error(
            f"no layer of {n_layers} is an MoE layer with first_dense {experts.first_dense} and every {experts.every}",
            hint="layer i (from 0) is MoE when i >= first_dense and (i + 1) % every == 0",
        )
    return experts


def _read_latent(a, kv_heads: int, where) -> LatentAttention:
    if kv_heads != 1:
        raise where["kv_heads"].error(
            f"latent attention caches one latent shared by all heads; found kv_heads {kv_heads}",
            hint="set kv_heads: 1 with latent_attention",
        )
    return LatentAttention(
        q_rank=a["q_rank"],
        kv_rank=a["kv_rank"],
        qk_nope_dim=a["qk_nope_dim"],
        qk_rope_dim=a["qk_rope_dim"],
        v_head_dim=a["v_head_dim"],
    )


def _window(f) -> dict:
    """window_tokens and local_layers from `sliding_window` and `local_layers` (both or neither)."""
    given = [key for key in ("sliding_window", "local_layers") if key in f.values]
    if not given:
        return {}
    if len(given) == 1:
        other = "local_layers" if given[0] == "sliding_window" else "sliding_window"
        raise f.where[given[0]].error(
            f"{given[0]} needs {other!r} too",
            hint=f"sliding_window: the tokens a local layer attends to; local_layers: {LOCAL_LAYERS}",
        )
    n, spec, at = f["layers"], f["local_layers"], f.where["local_layers"]
    if n > MAX_LOCAL_LAYERS:
        raise f.where["layers"].error(f"a model with local attention may have at most {MAX_LOCAL_LAYERS} layers")
    if spec == "all":
        local = tuple(range(n))
    elif isinstance(spec, str):
        local = tuple(i for i in range(n) if spec[i % len(spec)] == "L")
    else:
        for i, index in enumerate(spec):
            if index >= n:
                raise at.item(i).error(f"layer {index} does not exist (the model has {n} layers, 0 to {n - 1})")
        local = tuple(sorted(spec))
    if not local:
        raise at.error(
            "no layer is local", hint="remove sliding_window and local_layers for a model with global attention only"
        )
    return {"window_tokens": f["sliding_window"], "local_layers": local}


def model_yaml(model: Model, comment: str = "") -> str:
    """The model YAML file of `model`: loading it gives the same Model (`comment` heads it)."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += [
        f"name: {_quoted(model.name)}",
        f"layers: {model.n_layers}",
        f"d_model: {model.d_model}",
        f"d_ff: {model.d_ff}",
        f"heads: {model.n_heads}",
        f"kv_heads: {model.n_kv_heads}",
        f"d_head: {model.d_head}",
        f"vocab: {model.vocab}",
        f"ffn: {model.ffn.label}",
        f"block: {model.block.value}",
        f"tied_embeddings: {str(model.tied_embeddings).lower()}",
    ]
    if model.n_params_nominal is not None:
        lines.append(f"params: {model.n_params_nominal!r}")
    if model.max_context is not None:
        lines.append(f"max_context: {model.max_context}")
    if model.n_local_layers:
        lines += [
            f"sliding_window: {model.window_tokens}",
            f"local_layers: {_local_layers_text(model.local_layers, model.n_layers)}",
        ]
    if model.latent is not None:
        a = model.latent
        lines.append(
            f"latent_attention: {{q_rank: {a.q_rank}, kv_rank: {a.kv_rank}, qk_nope_dim: {a.qk_nope_dim}, "
            f"qk_rope_dim: {a.qk_rope_dim}, v_head_dim: {a.v_head_dim}}}"
        )
    if model.experts is not None:
        lines.append(f"experts: {{{_experts_text(model.experts)}}}")
    if model.source:
        lines.append(f"source: {_quoted(model.source)}")
    return "\n".join(lines) + "\n"


def _experts_text(x: Experts) -> str:
    """The experts mapping's fields, those at their default left out."""
    items = [f"routed: {x.n_experts}", f"top_k: {x.top_k}", f"d_ff: {x.d_ff_expert}"]
    if x.n_shared:
        items += [f"shared: {x.n_shared}", f"shared_d_ff: {x.d_ff_shared}"]
    items += [f"first_dense: {x.first_dense}"] if x.first_dense else []
    items += [f"every: {x.every}"] if x.every != 1 else []
    items += [f"{key}: true" for key, on in (("router_bias", x.router_bias), ("expert_bias", x.expert_bias)) if on]
    return ", ".join(items)


def _local_layers_text(local: tuple[int, ...], n_layers: int) -> str:
    """`all`, the shortest L/G pattern that repeats to exactly these layers, or the list."""
    if len(local) == n_layers:
        return "all"
    marks = "".join("L" if i in set(local) else "G" for i in range(n_layers))
    for period in range(1, min(16, n_layers) + 1):
        if all(marks[i] == marks[i % period] for i in range(n_layers)):
            return marks[:period]
    return "[" + ", ".join(map(str, local)) + "]"


def _quoted(value: str) -> str:
    """A YAML double-quoted string (JSON escapes are valid YAML)."""
    import json

    return json.dumps(value, ensure_ascii=False)
