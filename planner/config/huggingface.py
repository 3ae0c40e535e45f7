"""A Hugging Face `config.json` (or a folder holding one) to a `Model`, read offline: no network,
no `transformers`.

A config.json stores only what differs from its configuration class's defaults, so keys may be
absent. The shapes (hidden size, intermediate size, layers, heads, vocabulary, context limit)
must be given, except where real configs on the Hub rely on a class default (Gemma 3's nested
`text_config` omits `vocab_size` and `max_position_embeddings`): those defaults are listed per
architecture in `FAMILIES`, checked against transformers' `configuration_<type>.py`, and every
value taken from one, derived, or mapped is reported in `Imported.notes` and the model's `source`.
A missing key without such a default is an error naming the file, the key and the supported types.

Mapped: d_model (`hidden_size`), d_ff (`intermediate_size`; Falcon `ffn_hidden_size`), layers,
heads, kv heads (`num_key_value_heads`; Falcon by `multi_query`/`new_decoder_architecture`),
d_head (`head_dim`, or hidden_size / heads where the class derives it), vocab, tied embeddings
(`tie_word_embeddings`, each class's default), the FFN (gated SwiGLU or GeGLU by the activation,
or Falcon's plain GELU MLP), the block (Falcon `parallel_attn`, else serial), the context limit
(`max_position_embeddings`; a `rope_scaling` is noted: the limit already includes it), and local
attention (`sliding_window` with `layer_types`, Mistral/Phi-3 on every layer, Qwen's
`use_sliding_window` from `max_window_layers` on, Gemma 2 every other layer, Gemma 3 every
`sliding_window_pattern`-th layer global). Biases (Qwen2's q/k/v biases) are not modelled: well
below 0.1% of the parameters. Mixture-of-experts types (deepseek_v3, qwen3_moe, mixtral, llama4,
gpt_oss) add their experts and latent attention: `planner.config.huggingface_moe`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.config.huggingface_moe import MOE_TYPES, chunked_window, moe_shapes
from planner.config.jsonio import JsonObject
from planner.config.yamlio import MAX_COUNT, MAX_LOCAL_LAYERS
from planner.errors import ConfigError
from planner.specs.model import Block, FfnKind, Model

_ABSENT = object()


@dataclass(frozen=True)
class Family:
    """How one `model_type` maps to a Model."""

    class_name: str  # the transformers configuration class, for notes and errors
    gated: bool  # gate, up and down projections (SwiGLU/GeGLU) rather than up and down
    activation_key: str
    tied_default: bool  # tie_word_embeddings when absent
    kv_default_heads: bool  # num_key_value_heads absent: = num_attention_heads (else required)
    head_dim_derived: bool  # head_dim absent: hidden_size / num_attention_heads (else required)
    window: str  # "none", "all" (every layer), "qwen", "gemma2"/"alternate", "gemma3", "llama4"
    defaults: dict[str, Any] = field(default_factory=dict)  # class defaults real configs rely on


_QWEN = {"hidden_act": "silu", "use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28}
FAMILIES = {
    "llama": Family("LlamaConfig", True, "hidden_act", False, True, True, "none", {"hidden_act": "silu"}),
    "mistral": Family(
        "MistralConfig", True, "hidden_act", False, False, True, "all", {"hidden_act": "silu", "sliding_window": 4096}
    ),
    "qwen2": Family("Qwen2Config", True, "hidden_act", False, True, True, "qwen", _QWEN),
    "qwen3": Family("Qwen3Config", True, "hidden_act", False, False, False, "qwen", _QWEN),
    "gemma2": Family(
        "Gemma2Config",
        True,
        "hidden_activation",
        True,
        False,
        False,
        "gemma2",
        {"hidden_activation": "gelu_pytorch_tanh"},
    ),
    "gemma3_text": Family(
        "Gemma3TextConfig",
        True,
        "hidden_activation",
        True,
        False,
        False,
        "gemma3",
        {
            "hidden_activation": "gelu_pytorch_tanh",
            "vocab_size": 262208,
            "max_position_embeddings": 131072,
            "sliding_window_pattern": 6,
        },
    ),
    "phi3": Family(
        "Phi3Config", True, "hidden_act", False, True, True, "all", {"hidden_act": "silu", "sliding_window": None}
    ),
    "falcon": Family(
        "FalconConfig",
        False,
        "activation",
        True,
        True,
        True,
        "none",
        {
            "activation": "gelu",
            "max_position_embeddings": 2048,
            "parallel_attn": True,
            "multi_query": True,
            "new_decoder_architecture": False,
        },
    ),
    # mixtures of experts (planner.config.huggingface_moe)
    "deepseek_v3": Family("DeepseekV3Config", True, "hidden_act", False, True, False, "none", {"hidden_act": "silu"}),
    "qwen3_moe": Family("Qwen3MoeConfig", True, "hidden_act", False, False, False, "qwen", _QWEN),
    "mixtral": Family(
        "MixtralConfig", True, "hidden_act", False, False, True, "all", {"hidden_act": "silu", "sliding_window": None}
    ),
    "llama4_text": Family(
        "Llama4TextConfig",
        True,
        "hidden_act",
        False,
        False,
        False,
        "llama4",
        {
            "hidden_act": "silu",
            "interleave_moe_layer_step": 1,
            "no_rope_layer_interval": 4,
            "attention_chunk_size": 8192,
        },
    ),
    "gpt_oss": Family("GptOssConfig", True, "hidden_act", False, False, False, "alternate", {"hidden_act": "silu"}),
}
NESTED = {
    "gemma3": "gemma3_text",
    "llama4": "llama4_text",
}  # multimodal wrappers: the language model is their text_config
SUPPORTED = tuple(sorted([*FAMILIES, *NESTED]))
FALCON_ALIASES = {"num_hidden_layers": "n_layer", "num_attention_heads": "n_head", "hidden_size": "n_embed"}


@dataclass(frozen=True)
class Imported:
    model: Model
    notes: tuple[str, ...]  # what was derived, defaulted or mapped, for the reviewer


def read_hf_config(path: Path) -> Imported:
    if _is_dir(path):
        folder, path = path, path / "config.json"
        if not path.is_file():
            raise ConfigError(
                f"folder {str(folder)!r} holds no config.json",
                file=str(folder),
                hint="give a Hugging Face model folder (with config.json) or the file itself",
            )
    top = JsonObject.parse(path)
    model_type = top.text("model_type", hint=f"supported model types: {', '.join(SUPPORTED)}")
    cfg, notes = top, []
    if model_type in NESTED:
        cfg = top.child("text_config")
        notes.append(f"model_type {model_type}: the language model is text_config")
        model_type = NESTED[model_type]
    elif model_type not in FAMILIES:
        raise top.error(
            "model_type",
            f"unsupported model_type {model_type!r}",
            hint=f"supported model types: {', '.join(SUPPORTED)}; or write a planner model "
            "YAML by hand (see configs/models/)",
        )
    family = FAMILIES[model_type]
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    return _map(cfg, family, model_type, name or "model", notes)


def _map(cfg: JsonObject, fam: Family, model_type: str, name: str, notes: list[str]) -> Imported:
    get = _Getter(cfg, fam, model_type, notes)
    E, n_layers, heads = get.count("hidden_size"), get.count("num_hidden_layers"), get.count("num_attention_heads")
    moe = moe_shapes(get, model_type, n_layers) if model_type in MOE_TYPES else {}
    if model_type == "falcon":
        d_ff = get.count("ffn_hidden_size", default=4 * E, why="FalconConfig default 4 * hidden_size")
        if get.flag("new_decoder_architecture"):
            kv_key = "n_head_kv" if cfg.has("n_head_kv") and not cfg.has("num_kv_heads") else "num_kv_heads"
            kv = get.count(kv_key)
        else:
            kv = 1 if get.flag("multi_query") else heads
            notes.append(f"kv heads {kv}: multi_query is {str(kv == 1).lower()}")
    else:
        d_ff = get.count("intermediate_size")
        kv = get.count(
            "num_key_value_heads",
            default=heads if fam.kv_default_heads else _ABSENT,
            why=f"{fam.class_name} default: num_attention_heads",
        )
    if "n_kv_heads" not in moe and (kv > heads or heads % kv):
        raise cfg.error(
            "num_key_value_heads", f"num_attention_heads ({heads}) must be a multiple of the kv heads ({kv})"
        )
    if "d_head" in moe:
        d_head = moe["d_head"]
    elif fam.head_dim_derived and not cfg.has("head_dim"):
        if E % heads:
            raise cfg.error(
                "num_attention_heads",
                f"hidden_size ({E}) is not a multiple of num_attention_heads ({heads}), and head_dim is not given",
            )
        d_head = E // heads
        notes.append(f"d_head {d_head}: hidden_size / num_attention_heads ({fam.class_name} derives it)")
    else:
        d_head = get.count("head_dim")
    block = Block.PARALLEL if model_type == "falcon" and get.flag("parallel_attn") else Block.SERIAL
    window, local = _window(get, fam, n_layers)
    shape = dict(n_layers=n_layers, d_model=E, d_ff=d_ff, n_heads=heads, n_kv_heads=kv, d_head=d_head) | moe
    model = Model(
        name=name,
        **shape,
        vocab=get.count("vocab_size"),
        ffn=_ffn(get, fam),
        block=block,
        tied_embeddings=get.flag("tie_word_embeddings", default=fam.tied_default),
        max_context=get.count("max_position_embeddings"),
        window_tokens=window,
        local_layers=local,
        source=_source(cfg, model_type, fam, notes),
    )
    return Imported(model=model, notes=tuple(notes))


def _ffn(get: _Getter, fam: Family) -> FfnKind:
    key = fam.activation_key
    if fam.activation_key == "hidden_activation" and not get.cfg.has(key) and get.cfg.has("hidden_act"):
        key = "hidden_act"  # Gemma 2 configs carry both; older ones only hidden_act
    act = get.text(key)
    if act in ("silu", "swish") and fam.gated:
        kind = FfnKind.SWIGLU
    elif act.startswith("gelu"):
        kind = FfnKind.GEGLU if fam.gated else FfnKind.GELU
    else:
        expected = "silu or gelu*" if fam.gated else "gelu*"
        raise get.cfg.error(key, f"unsupported activation {act!r}; expected {expected}")
    get.notes.append(f"ffn {kind.label}: {'gated ' if fam.gated else ''}MLP with {key} {act}")
    return kind


def _window(get: _Getter, fam: Family, n: int) -> tuple[int | None, tuple[int, ...]]:
    """(window tokens, 0-based local layers), or (None, ()) without local attention."""
    cfg = get.cfg
    if fam.window == "none":
        return None, ()
    if n > MAX_LOCAL_LAYERS:
        raise cfg.error("num_hidden_layers", f"a model with local attention may have at most {MAX_LOCAL_LAYERS} layers")
    if fam.window == "llama4":
        return chunked_window(get, n)
    if cfg.has("layer_types") and fam.window != "all":
        types = cfg.value("layer_types")
        if not isinstance(types, list) or len(types) != n:
            raise cfg.error("layer_types", f"expected a list of {n} layer types (one per layer)")
        for t in types:
            if t not in ("sliding_attention", "full_attention"):
                raise cfg.error(
                    "layer_types", f"unsupported layer type {t!r}; expected sliding_attention or full_attention"
                )
        local = tuple(i for i, t in enumerate(types) if t == "sliding_attention")
        how = "layer_types"
    elif fam.window == "all":
        local, how = tuple(range(n)), "every layer"
    elif fam.window == "qwen":
        if not get.flag("use_sliding_window"):
            return None, ()
        first = get.count("max_window_layers")
        local, how = tuple(range(first, n)), f"layers from max_window_layers ({first}) on"
    elif fam.window in ("gemma2", "alternate"):
        local, how = tuple(range(0, n, 2)), f"every other layer from layer 0 ({fam.class_name})"
    else:
        period = get.count("sliding_window_pattern")
        local = tuple(i for i in range(n) if (i + 1) % period)
        how = f"all but every {period}th layer (sliding_window_pattern)"
    if not local:
        return None, ()
    window = get.count("sliding_window", nullable=True)
    if window is None:
        return None, ()
    get.notes.append(f"sliding window {window} tokens on {len(local)} of {n} layers: {how}")
    return window, local


def _source(cfg: JsonObject, model_type: str, fam: Family, notes: list[str]) -> str:
    text = f"Hugging Face config.json {cfg.doc.file} (model_type {model_type}, {fam.class_name})"
    rope = cfg.value("rope_scaling") if cfg.has("rope_scaling") else None
    if isinstance(rope, dict):
        kind = rope.get("rope_type", rope.get("type", "?"))
        original = rope.get("original_max_position_embeddings")
        note = f"rope_scaling {kind} x{rope.get('factor', '?')}" + (f" from {original} tokens" if original else "")
        notes.append(note + ": max_position_embeddings is the scaled limit")
        text += "; " + note
    defaults = [n.split(": absent", 1)[0] for n in notes if ": absent, " in n]
    return text + (f"; class defaults: {', '.join(defaults)}" if defaults else "")


class _Getter:
    """Typed reads of one config object, falling back to the family's class defaults (noted)."""

    def __init__(self, cfg: JsonObject, fam: Family, model_type: str, notes: list[str]) -> None:
        self.cfg, self.fam, self.model_type, self.notes = cfg, fam, model_type, notes

    def _raw(self, key: str, default: Any, why: str | None, nullable: bool = False) -> tuple[str, Any]:
        if self.model_type == "falcon" and not self.cfg.has(key) and self.cfg.has(FALCON_ALIASES.get(key, "")):
            key = FALCON_ALIASES[key]
        if self.cfg.has(key) or (nullable and self.cfg.present(key)):
            return key, self.cfg.value(key)
        if default is _ABSENT and key in self.fam.defaults:
            default, why = self.fam.defaults[key], None
        if default is _ABSENT:
            raise self.cfg.error(
                key,
                f"missing key {key!r} (model_type {self.model_type} needs it)",
                hint=f"{self.fam.class_name} has no default the planner can use for it; "
                f"supported model types: {', '.join(SUPPORTED)}",
            )
        self.notes.append(f"{key}={default}: absent, " + (why or f"{self.fam.class_name} (class default)"))
        return key, default

    def count(self, key: str, default: Any = _ABSENT, why: str | None = None, nullable: bool = False) -> Any:
        key, value = self._raw(key, default, why, nullable)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
            raise self.cfg.error(key, f"expected a positive whole number, found {json.dumps(value)}")
        return value

    def whole(self, key: str) -> int:
        """A count that may be 0 (no shared experts, no dense layers first)."""
        key, value = self._raw(key, _ABSENT, None)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise self.cfg.error(key, f"expected a whole number >= 0, found {json.dumps(value)}")
        return value

    def value(self, key: str, default: Any = _ABSENT) -> Any:
        """The raw JSON value (a list, say), or the default (noted)."""
        return self._raw(key, default, None)[1]

    def flag(self, key: str, default: Any = _ABSENT) -> bool:
        key, value = self._raw(key, default, f"{self.fam.class_name} (class default)")
        if not isinstance(value, bool):
            raise self.cfg.error(key, f"expected true or false, found {json.dumps(value)}")
        return value

    def text(self, key: str) -> str:
        key, value = self._raw(key, _ABSENT, None)
        if not isinstance(value, str):
            raise self.cfg.error(key, f"expected text, found {json.dumps(value)}")
        return value


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False
