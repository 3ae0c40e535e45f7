"""Many meshes (and phases) costed at once: a Grid of logical mesh sizes as (rows, 1) arrays, the
step shape of each phase, and a figure's rows picked for the candidates that share them
(planner.search.sweep, planner.cost.pipeline)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.cost.layouts.attention import Core
from planner.cost.layouts.base import LayerCost, StepShape
from planner.specs.plan import Phase, Workload


@dataclass(frozen=True, kw_only=True)
class Grid:
    """Many meshes' logical sizes at once, as (meshes, 1) arrays, on which a layout's dataflow has
    one shape (one attention `Core`): `layer_costs` costs them all in one pass, a row each."""

    sizes: dict[str, np.ndarray]
    chips: np.ndarray
    core: Core
    # with phases, each row is costed in its phase (the candidate's own phase is then not used):
    # row i in phases[phase_of[i]], or without phase_of the meshes once per phase, phase-major
    phases: tuple[Phase, ...] = ()
    phase_of: np.ndarray | None = None
    # rows that repeat others' sizes and phase (a pipeline's stages): the layers' parts are costed
    # once on `base` and row i takes base row base_rows[i]'s (planner.cost.pipeline_sweep)
    base: Grid | None = None
    base_rows: np.ndarray | None = None

    def phase_index(self) -> np.ndarray:
        """Each row's phase, an index into `phases`."""
        if self.phase_of is not None:
            return self.phase_of
        return np.repeat(np.arange(len(self.phases)), len(self.chips) // len(self.phases))


def step_shape(phase: Phase, workload: Workload, batch: np.ndarray) -> StepShape:
    if phase is Phase.PREFILL:
        L = workload.input_tokens
        return StepShape(batch=batch, tokens=L, attended=(L + 1) / 2, cached=L, reads_cache=False)
    L = workload.decode_tokens  # 1, or the K + 1 tokens a speculative step verifies
    return StepShape(batch=batch, tokens=L, attended=workload.context, cached=workload.context, reads_cache=True)


def phase_tokens(phase: Phase, workload: Workload) -> tuple[int, int, int]:
    """(tokens per sequence, logit tokens per sequence, steps per latency) of a phase: prefill one
    step of input_tokens (logits for one), decode output_tokens steps of one token each."""
    if phase is Phase.PREFILL:
        return workload.input_tokens, 1, 1
    return workload.output_tokens, workload.output_tokens, workload.output_tokens


def phase_column(values: list, index: np.ndarray, dtype) -> np.ndarray:
    """One value per phase of a Grid's phases, as a (rows, 1) column: row i's is values[index[i]]."""
    return np.array(values, dtype=dtype)[index][:, None]


def grid_shape(phases: tuple[Phase, ...], workload: Workload, batch: np.ndarray, index: np.ndarray) -> StepShape:
    """The step shapes of `phases` as columns over a Grid's rows (row i in phases[index[i]])."""
    shapes = [step_shape(phase, workload, batch) for phase in phases]
    return StepShape(
        batch=batch,
        tokens=phase_column([s.tokens for s in shapes], index, np.int64),
        attended=phase_column([s.attended for s in shapes], index, float),
        cached=phase_column([s.cached for s in shapes], index, np.int64),
        reads_cache=phase_column([s.reads_cache for s in shapes], index, bool),
    )


def at_rows(values, rows):
    """A Grid figure's rows `rows` (figures without the grid's axis as they are; all with no rows)."""
    return values if rows is None or np.ndim(values) < 2 else values[rows]


def expanded(part: LayerCost, count: int, rows: np.ndarray) -> LayerCost:
    """A layer part costed on a Grid of `count` rows, at rows `rows` of it: every figure with a
    leading axis over the grid's rows gathered (the very values costing it on those rows gives)."""

    def at(q):
        return q[rows] if isinstance(q, np.ndarray) and q.ndim >= 2 and q.shape[0] == count else q

    terms = tuple(
        replace(
            t,
            flops=at(t.flops),
            hbm_bytes=at(t.hbm_bytes),
            rows=at(t.rows),
            collective=None
            if t.collective is None
            else replace(t.collective, bytes_per_chip=at(t.collective.bytes_per_chip)),
        )
        for t in part.terms
    )
    return replace(
        part,
        terms=terms,
        weight_bytes_stored=at(part.weight_bytes_stored),
        kv_bytes_stored=at(part.kv_bytes_stored),
        working_bytes=at(part.working_bytes),
    )
