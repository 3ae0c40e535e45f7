"""The model schema: a model YAML file to a `Model`."""

from __future__ import annotations

from pathlib import Path

from planner.config.presets import locate
from planner.config.yamlio import At, Field, boolean, choice, count, fields, load_document, number, text
from planner.specs.model import Block, FfnKind, Model

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
    )
