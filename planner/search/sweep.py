"""One phase's discrete candidates evaluated many at a time: candidates that differ only in how
the logical axes map onto physical pieces (same chips, stages, layouts and logical sizes) share
their layer costs (costmodel.layer_costs, once per group), and their collectives are timed on all
their meshes in one numpy pass (costmodel.network_costs). The arrays are those `evaluate` gives
each candidate, bit for bit; Evaluations are built only for the frontier's points."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from planner.cost.costmodel import Candidate, layer_costs, network_costs, timing
from planner.cost.network import LineCache
from planner.specs.plan import Plan


@dataclass(frozen=True, kw_only=True)
class Swept:
    """Figures of a phase's candidates, one row per candidate (in candidate order), one column
    per point (batch x formats)."""

    latency_s: np.ndarray
    step_s: np.ndarray
    mfu: np.ndarray
    hbm_bytes: np.ndarray


def group_key(c: Candidate) -> tuple:
    """What a candidate's layer costs depend on: all but how logical axes map onto physical pieces."""
    return (c.stages, c.ffn.name, c.attention.name, c.experts.name if c.experts is not None else "",
            c.mesh.chips, c.mesh.physical, c.mesh.wraparound, tuple(c.mesh.sizes.values()))


def sweep(plan: Plan, layouts: list[Candidate], batch: np.ndarray, formats, cost: Callable,
          step: Callable[[int], None], lines: LineCache | None = None) -> Swept:
    """Every candidate's latency, step, MFU and HBM use over the points (pipelined groups through
    pipeline.sweep_pipeline); `cost` is no longer called (kept for callers); `lines`: the
    collectives' lines, kept for the whole search (they depend on neither phase nor batch)."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(layouts):
        groups.setdefault(group_key(c), []).append(i)
    points = batch.size * len(formats)
    out = {name: np.empty((len(layouts), points)) for name in ("latency_s", "step_s", "mfu", "hbm_bytes")}
    lines, shared, chips = LineCache(plan.cluster) if lines is None else lines, {}, 0
    for members in groups.values():
        first = layouts[members[0]]
        if first.stages > 1:  # imported here: a plan without stages never loads the pipeline model
            from planner.cost.pipeline import sweep_pipeline
            figures = sweep_pipeline(plan.model, plan.cluster, plan.workload, [layouts[i] for i in members],
                                     batch, formats, lines)
        else:  # layouts' parts costed once per chip count (meshes of other sizes share none)
            if first.mesh.chips != chips:
                shared, chips = {}, first.mesh.chips
            layer = layer_costs(plan.model, plan.cluster, plan.workload, first, batch, formats, shared=shared)
            comm_s, prefetched_s = network_costs(plan.cluster, [layouts[i].mesh for i in members], layer, lines)
            _, step_s, latency_s, mfu = timing(plan.cluster, plan.workload, layer, comm_s, prefetched_s)
            figures = (latency_s, step_s, mfu, layer.hbm_bytes)
        for name, values in zip(("latency_s", "step_s", "mfu", "hbm_bytes"), figures):
            out[name][members] = values
        step(len(members))
    return Swept(**out)
