"""What to plan: a model on a cluster, a workload, and the search space."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from itertools import product

from planner.specs.engine_layouts import ENGINE_LAYOUTS, EngineLayouts
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
    # --runnable-on: an engine of planner.specs.engine_layouts; only what it runs as it is is
    # searched ("": every layout and format)
    runnable_on: str = ""

    def formats(self, chip: Chip) -> tuple[Formats, ...]:
        """Every combination of weight and KV-cache format, weights first, that `chip` has a
        peak for (a format without one is not searched on it) and, with `runnable_on`, that the
        engine serves."""
        combos = (
            Formats(weights=w, kv_cache=kv, sparsity=self.sparsity) for w, kv in product(self.weights, self.kv_cache)
        )
        return tuple(f for f in combos if chip.supports(f) and self.runs_formats(f))

    @property
    def engine(self) -> EngineLayouts | None:
        """The engine the search is restricted to (None: no restriction)."""
        return ENGINE_LAYOUTS[self.runnable_on] if self.runnable_on else None

    # The engine's table (EngineLayouts.runs) asks layout and formats together; its limits on the
    # layouts and on the formats are independent (tests/test_runnable_on.py checks it for every
    # name), so the search crosses the layouts it runs with the formats it runs, and the product
    # is exactly the candidates it runs.
    def runs_layout(self, ffn: str, attention: str, experts: str = "") -> bool:
        """Whether the engine runs this (FFN, attention, experts) layout in a format it serves."""
        e = self.engine
        return e is None or any(e.runs(ffn, attention, experts, kv, w) for kv in e.kv_cache for w in e.weights)

    def runs_formats(self, f: Formats) -> bool:
        """Whether the engine serves these weight and KV-cache formats in a layout it runs."""
        e = self.engine
        return e is None or any(e.runs(ffn, att, "", f.kv_cache.label, f.weights.label) for ffn, att in e.dense)


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
