"""Layout registries: FFN layouts and attention layouts, crossed by the search.

A layout states only *what is sharded and what is communicated*: per-chip FLOPs, HBM bytes and a
tuple of collectives with their bytes and logical mesh axes. It never turns bytes into seconds;
`planner.cost.costmodel` does that.

Adding an FFN layout is one registration line in `ffn.py` (a sharding spec); the generic
dataflow and the invariant tests pick it up. Attention layouts live in `attention.py`; expert
layouts of mixture-of-experts layers in `experts.py` (crossed in for MoE models only).
"""

from planner.cost.layouts.attention import ATTENTION_LAYOUTS, AttentionLayout
from planner.cost.layouts.base import Collective, CollectiveKind, LayerCost, Term
from planner.cost.layouts.experts import EXPERT_LAYOUTS, ExpertLayout
from planner.cost.layouts.ffn import FFN_LAYOUTS, FfnLayout

__all__ = [
    "ATTENTION_LAYOUTS",
    "AttentionLayout",
    "Collective",
    "CollectiveKind",
    "EXPERT_LAYOUTS",
    "ExpertLayout",
    "FFN_LAYOUTS",
    "FfnLayout",
    "LayerCost",
    "Term",
]
