"""The output projection: logits for one token per sequence, and the embedding tables a model or
pipeline stage stores (what is sharded and communicated, like every layout)."""

from __future__ import annotations

import numpy as np

from planner.cost.layouts.base import CollectiveKind, LayerCost, Term, ceil_div, collective_term
from planner.specs.hardware import ACTIVATION_BYTES
from planner.specs.model import Model


def output_projection(
    model: Model,
    chips: int,
    batch: np.ndarray,
    weight_bytes: int,
    first: bool = True,
    last: bool = True,
    replicated: bool = False,
) -> LayerCost:
    """Logits for one token per sequence: W_emb[E, V_xyz], after gathering the final hidden states;
    `replicated` (a data-parallel LM head, the `dp` layout's): W_emb[E, V] whole on every chip,
    each chip its own sequences' logits, nothing gathered.
    A pipeline's first stage stores the input embedding (a copy of a tied one) and its last the
    output projection, each one E x V table; a whole model stores `embedding_params`. With `first`
    and `last` arrays (a Grid of stages), the terms are there for every row, and layer_costs
    repeats them `last` (0 or 1) times."""
    E, V = model.d_model, model.vocab
    per_row = np.ndim(last) > 0
    if replicated:
        sequences = ceil_div(batch, chips)
        terms = (
            Term(
                name="einsum logits",
                notation="W_emb[E, V] on every chip -> B_xyz V",
                flops=2.0 * sequences * E * V,
                hbm_bytes=E * V * weight_bytes,
                rows=sequences,
            ),
        )
    else:
        gather = collective_term(
            "gather final hidden states", "B E", CollectiveKind.ALL_GATHER, "xyz", batch * E * ACTIVATION_BYTES
        )
        terms = (
            gather,
            Term(
                name="einsum logits",
                notation="W_emb[E, V_xyz] -> B V_xyz",
                flops=2.0 * batch * E * V / chips,
                hbm_bytes=E * V * weight_bytes / chips,
                rows=batch,
            ),
        )
    # stored: the output projection, and the input embedding table if it is a separate one
    if per_row:
        tables = np.where(
            first & last, model.embedding_params, E * V * (first.astype(np.int64) + last.astype(np.int64))
        )
    else:
        tables = model.embedding_params if first and last else E * V * (int(first) + int(last))
    return LayerCost(
        terms=terms if per_row or last else (), weight_bytes_stored=tables * weight_bytes / (1 if replicated else chips)
    )
