"""A batch's padding across a layout's batch shards: what explain notes when a batch does not
divide evenly (the cost model computes whole sequences per chip, ceil(batch / shards))."""

from __future__ import annotations

from dataclasses import dataclass

from planner.cost.costmodel import Candidate
from planner.cost.layouts.base import size
from planner.specs.model import Model


@dataclass(frozen=True, kw_only=True)
class Padding:
    """Parts of a layout whose batch shards a batch does not fill evenly."""

    parts: tuple[str, ...]  # "FFN", "attention"
    shards: int  # batch shards
    per_chip: int  # sequences each chip computes: ceil(batch / shards)
    wasted: float  # share of that work that is padding: 1 - batch / (per_chip * shards)


def batch_padding(candidate: Candidate, model: Model, batch: int) -> tuple[Padding, ...]:
    """The padding of the FFN's batch shards and the attention core's (one entry when both
    have the same shards), for `batch` sequences."""
    sizes = candidate.mesh.sizes
    by_shards: dict[int, list[str]] = {}
    for part, axes in (
        ("FFN", candidate.ffn.batch_axes),
        ("attention", candidate.attention.core_axes(model, candidate.ffn, sizes)[0]),
    ):
        shards = size(sizes, axes)
        if batch % shards:
            by_shards.setdefault(shards, []).append(part)
    out = []
    for shards, parts in by_shards.items():
        per_chip = -(-batch // shards)
        out.append(
            Padding(parts=tuple(parts), shards=shards, per_chip=per_chip, wasted=1.0 - batch / (per_chip * shards))
        )
    return tuple(out)
