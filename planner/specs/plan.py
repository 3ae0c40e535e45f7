"""What to plan: a model on a cluster, a workload, and the search space."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from itertools import product

from planner.specs.formats import Formats, KvFormat, Sparsity
from planner.specs.hardware import Chip, Cluster, WeightFormat
from planner.specs.model import Model
from planner.specs.moe import Routing


class Phase(Enum):
    PREFILL = "prefill"  # one forward pass over input_tokens per sequence
    DECODE = "decode"  # output_tokens steps of one token per sequence


@dataclass(frozen=True, kw_only=True)
class Workload:
    input_tokens: int  # prefill: tokens per sequence processed in one pass
    output_tokens: int  # decode: tokens generated per sequence
    context: int  # decode: KV-cache length each decode step attends to (and must hold)
    routing: Routing = Routing()  # MoE models: load imbalance and redundant experts
    # decode: tokens per sequence a step runs (1; K + 1 where a step verifies K draft tokens)
    decode_tokens: int = 1


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    phases: tuple[Phase, ...]
    chips: tuple[int, ...]
    batches: tuple[int, ...]
    weights: tuple[WeightFormat, ...]
    ffn: tuple[str, ...]
    attention: tuple[str, ...]
    experts: tuple[str, ...] = ()  # expert layouts (MoE models; empty: every registered one)
    stages: tuple[int, ...] = (1,)  # pipeline stage counts (planner.cost.pipeline); 1: no pipeline
    kv_cache: tuple[KvFormat, ...] = (KvFormat.BF16,)
    sparsity: Sparsity = Sparsity.DENSE

    def formats(self, chip: Chip) -> tuple[Formats, ...]:
        """Every combination of weight and KV-cache format, weights first, that `chip` has a
        peak for (a format without one is not searched on it)."""
        combos = (
            Formats(weights=w, kv_cache=kv, sparsity=self.sparsity) for w, kv in product(self.weights, self.kv_cache)
        )
        return tuple(f for f in combos if chip.supports(f))


@dataclass(frozen=True, kw_only=True)
class Constraints:
    max_latency_s: float | None = None  # per request: prefill pass, or all decode steps
    max_step_latency_s: float | None = None  # per decode step (time per output token)
    min_mfu: float | None = None


@dataclass(frozen=True, kw_only=True)
class Pin:
    """A deployed layout for one phase (for `compare --deployment`)."""

    phase: Phase
    chips: int
    batch: int
    ffn: str
    attention: str
    weights: WeightFormat
    kv_cache: KvFormat = KvFormat.BF16
    experts: str = ""  # MoE expert layout; "": the fastest that applies (a plan searches every one)
    stages: int = 1  # pipeline stages (chips counts all of them); 1: no pipeline
    line: int = 0  # the plan file's line the pin was read from (0: not read from a file)


@dataclass(frozen=True, kw_only=True)
class Plan:
    model: Model
    cluster: Cluster
    workload: Workload
    space: SearchSpace
    constraints: Constraints = Constraints()
    deployment: tuple[Pin, ...] = ()
    source: str = ""
    # settings that took their default, neither file nor flag ("weights", "stages", "context"): the
    # chip's formats, the stage counts splitting its nodes, input + output; headers say so
    defaults: tuple[str, ...] = ()
