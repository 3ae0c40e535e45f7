"""The parts of one step, supplied to the cost model's formula (costmodel.step_costs): each
layout's `LayerCost` on the candidate's logical mesh, with the step's points, formats and shape.

This module is the machinery, not the physics: it tiles the batch over number formats, keeps
parts already costed for other candidates (`shared`, a sweep's), costs many meshes at once on a
`Grid` (every figure a leading axis over its rows, each row in its own phase), and gathers a
pipeline Grid's rows from its `base` rows. The layouts (planner.cost.layouts) say what each part
computes, reads and communicates; costmodel.step_costs says how the parts make a step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.grid import Grid, expanded, grid_shape, phase_column, phase_tokens, step_shape
from planner.cost.layouts.base import LayerCost, StepShape, Term, stacked
from planner.cost.layouts.experts import moe_layers
from planner.cost.layouts.head import output_projection
from planner.specs.formats import Formats
from planner.specs.hardware import Cluster
from planner.specs.model import Model
from planner.specs.plan import Workload


@dataclass(frozen=True, kw_only=True)
class StepParts:
    """One candidate's step, as parts per chip: `attention` on every layer, `ffn` on the dense
    layers, the MoE layers' parts, the output projection `head`; with what they were costed at.
    Figures are numbers or arrays over the points, with a leading axis over a Grid's rows."""

    batch: np.ndarray  # B per point (tiled once per format)
    formats: tuple[Formats, ...]
    sizes: dict  # the logical mesh sizes (arrays for a Grid)
    chips: int | np.ndarray  # n ((rows, 1) for a Grid)
    shape: StepShape  # B, L, the attended and cached context S
    weight_peak: float | np.ndarray  # FLOP/s of the weight format's peak, per point where formats differ
    tokens_per_sequence: int | np.ndarray  # L summed over the steps of a latency (decode: output_tokens)
    logits_per_sequence: int | np.ndarray  # tokens per sequence with logits
    steps: int | np.ndarray  # steps per latency: 1 (prefill) or output_tokens (decode)
    attention: LayerCost
    ffn: LayerCost
    dense_layers: int | np.ndarray  # layers with the FFN layout: all but the MoE layers
    moe: tuple[tuple[LayerCost, int], ...]  # MoE layers' parts (routed, shared experts), each with its layers
    head: LayerCost
    head_repeat: int | np.ndarray  # 1, or per Grid row of pipeline stages 0 or 1 (the last stage's)


def step_parts(
    model: Model,
    cluster: Cluster,
    workload: Workload,
    candidate,
    batch: np.ndarray,
    formats: tuple[Formats, ...] | None = None,
    *,
    first: bool = True,
    last: bool = True,
    shared: dict | None = None,
    grid: Grid | None = None,
) -> StepParts:
    """The parts of `candidate` (a costmodel.Candidate) at `batch`; costmodel.layer_costs says
    what `formats`, `first`, `last`, `shared` and `grid` mean. Parts are kept in `shared` under
    keys of what they depend on."""
    c, memo = candidate, {} if shared is None else shared  # parts keyed by what they depend on
    batch = np.asarray(batch, dtype=np.int64)
    formats = (
        (c.formats,) if formats is None else tuple(f if isinstance(f, Formats) else Formats(weights=f) for f in formats)
    )  # WeightFormat: bf16 KV
    n = batch.size
    if len(formats) > 1:
        batch = np.tile(batch, len(formats))
    wbytes = _per_point([f.weight_bytes for f in formats], n)
    kvbytes = _per_point([f.kv_cache.bytes_per_element(model.d_head) for f in formats], n)
    chip = cluster.chip
    if grid is not None and grid.phases:  # every phase at once: its shape, tokens and steps per row
        index = grid.phase_index()
        shape = grid_shape(grid.phases, workload, batch, index)
        per_phase = zip(*(phase_tokens(phase, workload) for phase in grid.phases))
        per_sequence, logits_per_sequence, steps = (phase_column(list(v), index, int) for v in per_phase)
    else:
        shape = step_shape(c.phase, workload, batch)
        per_sequence, logits_per_sequence, steps = phase_tokens(c.phase, workload)
    weight_peak = _per_point([f.weight_peak_flop_per_s(chip) for f in formats], n)
    if grid is None:
        sizes, chips, core, mesh_key = c.mesh.sizes, c.mesh.chips, None, (c.ffn.name, *c.mesh.sizes.values())
    else:  # memo is this grid's own: keys need not tell meshes apart
        sizes, chips, core, mesh_key = grid.sizes, grid.chips, grid.core, (c.ffn.name,)
    part_sizes, part_shape, grow = sizes, shape, lambda part: part
    if grid is not None and grid.base is not None:  # rows repeating base rows: parts costed there, gathered
        part_sizes = grid.base.sizes
        part_shape = grid_shape(grid.phases, workload, batch, grid.base.phase_index()) if grid.phases else shape
        grow = lambda part: expanded(part, len(grid.base.chips), grid.base_rows)  # noqa: E731
    ffn = memo.get(mesh_key) or memo.setdefault(mesh_key, grow(c.ffn.cost(model, part_sizes, part_shape, wbytes)))
    local = (model.n_layers, model.local_layers) if model.n_local_layers else ()  # a stage's own local layers
    attention = memo.get((c.attention, *local, *mesh_key)) or memo.setdefault(
        (c.attention, *local, *mesh_key),
        grow(c.attention.cost(model, c.ffn, part_sizes, part_shape, wbytes, kv_bytes=kvbytes, core=core)),
    )
    per_row = np.ndim(last) > 0  # a Grid of pipeline stages: first and last per row (its head repeats 0 or 1)
    head_key = (chips if grid is None else "grid", c.ffn.replicated, *((first, last) if not per_row else ("per row",)))
    head = memo.get(head_key) or memo.setdefault(
        head_key, output_projection(model, chips, batch, wbytes, first, last, replicated=c.ffn.replicated)
    )
    dense_layers, moe = model.n_layers, ()  # MoE: dense layers take the FFN layout, MoE layers these parts
    if model.experts is not None:
        dense_layers, moe = memo.get((c.experts, *mesh_key)) or memo.setdefault(
            (c.experts, *mesh_key),
            _grown(
                moe_layers(
                    model,
                    c.ffn,
                    c.experts,
                    part_sizes,
                    part_shape,
                    wbytes,
                    workload.routing,
                    dispatch_bytes=_per_point([f.dispatch_bytes for f in formats], n),
                ),
                grow,
            ),
        )
    return StepParts(
        batch=batch,
        formats=formats,
        sizes=sizes,
        chips=chips,
        shape=shape,
        weight_peak=weight_peak,
        tokens_per_sequence=per_sequence,
        logits_per_sequence=logits_per_sequence,
        steps=steps,
        attention=attention,
        ffn=ffn,
        dense_layers=dense_layers,
        moe=moe,
        head=head,
        head_repeat=last.astype(np.int64) if per_row else 1,
    )


def repeated(parts) -> list[tuple[Term, int]]:
    """Each term of `parts` ((LayerCost, layers) pairs) with the layers it repeats over: its
    part's, or its own `Term.layers` (local or global attention); parts on no layer (no Grid row)
    left out. Repeats are ints, or a Grid's per row."""
    return [
        (term, repeat if term.layers is None else term.layers)
        for part, repeat in parts
        if np.any(repeat)
        for term in part.terms
    ]


def on_layers(layers, quantity):
    """`quantity` where `layers` (a count, or per Grid row) is not 0, else 0."""
    if np.ndim(layers):
        return np.where(layers > 0, quantity, 0.0)
    return quantity if layers else 0.0


def collective_arrays(terms, batch: np.ndarray, chips) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes per chip, repeats, prefetched) of the step's collectives, stacked for
    planner.cost.line_tables.network_seconds: (collectives, points) and (collectives, 1), with a
    Grid's rows after the first axis, and (collectives,) bool."""
    collectives = [(term.collective, repeat) for term, repeat in terms if term.collective is not None]
    return (
        stacked([k.bytes_per_chip for k, _ in collectives], np.broadcast_shapes(batch.shape, np.shape(chips))),
        stacked(
            [repeat for _, repeat in collectives],
            np.broadcast_shapes((1,), *(np.shape(repeat) for _, repeat in collectives)),
        ),
        np.array([k.prefetched for k, _ in collectives], dtype=bool),
    )


def _per_point(values: list[float], n: int):
    """One value per format, as a scalar when all agree (the common case) or repeated per point."""
    return values[0] if len(set(values)) == 1 else np.repeat(values, n)


def _grown(moe, grow):
    """moe_layers' (dense layers, parts) with each part gathered by `grow`."""
    dense_layers, parts = moe
    return dense_layers, tuple((grow(part), repeat) for part, repeat in parts)
