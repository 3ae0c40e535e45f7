"""Engine profiles: the serving software's constants, apart from the chip's.

A step's fixed times (per layer, per token a chip holds) and whether activation collectives
hide under compute belong to the engine that runs the model (CUDA graphs, fused kernels, its
scheduler), not to the chip: two engines on the same GPUs and layout differ by 40%. The chip
keeps its efficiencies, bandwidths, link latencies and kernel-table fits (`kernel_overhead_s`,
fitted to GEMM tables, is the kernel's, not the engine's). A profile replaces the engine fields
of a cluster's `Calibration` (ENGINE_FIELDS); a profile with no constants (`static-batch`) keeps
the cluster file's own, fitted to static-batch runs.

Rule for every GPU: a profile's times carry to every GPU as they are (they are host-side and
launch times of the software, not of the die), fitted on the GPU its data ran on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.specs.hardware import Cluster

ENGINE_FIELDS = ("layer_overhead_s", "token_overhead_s", "overlap")
ENGINES = ("vllm", "sglang", "trtllm")  # the engines named by serving runs and launch configs
STATIC = "static-batch"  # the cluster file's own constants


@dataclass(frozen=True, kw_only=True)
class EngineProfile:
    name: str
    source: str  # where its constants come from (a fit, or the rule it carries another's by)
    # the engine's constants, ENGINE_FIELDS; None: the cluster file's own
    layer_overhead_s: float | None = None  # fixed time per layer per step
    token_overhead_s: float | None = None  # fixed time per token a chip holds, per layer
    overlap: float | None = None  # share of activation collectives hidden under the kernels
    borrowed_from: str | None = None  # a profile whose constants it carries by a stated rule

    def constants(self) -> dict[str, float]:
        """The constants it sets (the others stay the cluster file's)."""
        return {k: getattr(self, k) for k in ENGINE_FIELDS if getattr(self, k) is not None}

    def apply(self, cluster: Cluster) -> Cluster:
        """`cluster` with this profile's constants in place of its file's."""
        return replace(cluster, calibration=replace(cluster.calibration, **self.constants()), engine=self.name)
