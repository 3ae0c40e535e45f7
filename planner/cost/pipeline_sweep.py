"""Pipelined candidates costed many at a time (planner.search.sweep): what
`pipeline.evaluate_pipeline` gives each, bit for bit. A bucket's candidates share one FFN,
attention and expert layout; its Grid's rows are their logical mesh sizes and stage counts (once
per phase, phase-major, when the phases are costed together). Without local layers every distinct
stage of every row (split_layers' layers, first and last flags, phase) is a row of one stacked
grid, costed by one pass of costmodel.layer_costs, so one bucket holds every stage count; and a
one-stage candidate of the same layout is one stage of the whole model, a row of the same grid,
timed as `evaluate` times it. With local layers a bucket has one stage count (never one) and each
distinct stage is costed on the grid apart (its own local layers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from planner.cost.costmodel import Candidate, layer_costs, timing
from planner.cost.grid import Grid
from planner.cost.layouts.base import StepShape
from planner.cost.mesh import Mesh, first_rows
from planner.cost.network import send_seconds_many
from planner.cost.pipeline import micro_batches, send_bytes_per_chip, split_layers, stage_key
from planner.specs.hardware import Cluster, WeightFormat
from planner.specs.model import Model
from planner.specs.plan import Phase, Workload

FIELDS = ("weight_bytes", "kv_bytes", "activation_bytes")


def sweep_pipeline(
    model: Model,
    cluster: Cluster,
    workload: Workload,
    first: Candidate,
    grid: Grid,
    stages: np.ndarray,
    row_of: np.ndarray,
    meshes: list[Mesh],
    batch: np.ndarray,
    formats: tuple[WeightFormat, ...],
    network: Callable,
):
    """(latency_s, step_s, mfu, hbm_bytes), each (members, points): what `evaluate_pipeline` (for
    one stage, `evaluate`) gives each member of a bucket (search.sweep: like `first` but on its
    own stage mesh, of the logical sizes and stage count `stages` of `grid`'s row `row_of`); for
    a grid with phases, a list of those per phase. `network(layer, copies, which, repeat_rows,
    cache, owners)`: the collectives' seconds on the members' meshes (search.sweep)."""
    c, members = first, len(row_of)
    phases = grid.phases or (c.phase,)
    batch = np.asarray(batch, dtype=np.int64)
    p = stages[row_of]  # (members, 1)
    piped, single = np.flatnonzero(p[:, 0] > 1), np.flatnonzero(p[:, 0] == 1)
    options = [micro_batches(phase, batch, p[piped]) for phase in phases]  # (points, options), or (members, ...)
    sizes = np.unique(np.concatenate([batch, *(b[b > 0] for _, b in options)]))
    cost = _stages_on_one_grid if not model.n_local_layers else _stages_apart
    step_stack, fields, singles = cost(
        model,
        cluster,
        workload,
        c,
        grid,
        np.tile(stages, (len(phases), 1)),
        row_of,
        sizes,
        formats,
        network,
        meshes,
        piped,
        single,
    )
    n_formats = len(formats)
    at_batch = np.repeat(np.arange(n_formats) * sizes.size, batch.size) + np.searchsorted(
        sizes, np.tile(batch, n_formats)
    )  # each point's column
    valid = (np.arange(step_stack.shape[0])[:, None] < p[piped, 0])[:, :, None]  # (stages, piped, 1)
    sends = (
        _sends(model, cluster, workload, c.ffn, grid, phases, row_of[piped], [meshes[i] for i in piped], sizes)
        if piped.size
        else None
    )
    out = []
    for k, (phase, (m, b)) in enumerate(zip(phases, options)):
        figures = tuple(np.empty((members, at_batch.size)) for _ in range(4))
        if piped.size:
            copy = slice(k * piped.size, (k + 1) * piped.size)
            values = _pipeline_figures(
                model,
                cluster,
                workload,
                replace(c, phase=phase),
                grid,
                p[piped],
                row_of[piped],
                sends[k],
                batch,
                formats,
                sizes,
                at_batch,
                m,
                b,
                valid,
                step_stack[:, copy],
                (fields[0], fields[1][:, copy]),
            )
            for figure, value in zip(figures, values):
                figure[piped] = value
        if single.size:
            for figure, value in zip(figures, singles[k]):
                figure[single] = value[:, at_batch]
        out.append(figures)
    return out if grid.phases else out[0]


def _pipeline_figures(
    model,
    cluster,
    workload,
    c,
    grid: Grid,
    p,
    row_of,
    send_s_sizes,
    batch,
    formats,
    sizes,
    at_batch,
    m,
    b,
    valid,
    step_stack,
    fields,
):
    """sweep_pipeline's figures of one phase for pipelined members, from their stages' steps,
    memory and sends at `sizes` (`at_batch`: each point's column, its whole batch)."""
    n_batch, n_sizes, n_formats = batch.size, sizes.size, len(formats)
    offset = np.repeat(np.arange(n_formats) * n_sizes, n_batch)
    tile = lambda a: np.tile(a, (1,) * (a.ndim - 2) + (n_formats, 1))  # noqa: E731  (the points axis)
    # the slowest stage (and for decode the stages' sum, in stage order, as evaluate_pipeline sums
    # them) at every micro-batch size, then at each point's options: the same figures, gathered once
    send_s = np.tile(send_s_sizes, (1, n_formats))  # (members, formats x sizes)
    slowest = np.max(step_stack, axis=0)  # 0 past a member's last stage, and every step > 0
    m_all = tile(m)
    at_options = offset[:, None] + np.searchsorted(sizes, np.maximum(tile(b), 1))  # prefill: one for all members
    who, points = np.arange(len(row_of))[:, None], np.arange(offset.size)
    if c.phase is Phase.PREFILL:  # options 1, 2, 4, ... micro-batches
        s, slot = send_s[:, at_options], slowest[:, at_options]  # (members, points, options)
        latency_options = (m_all + p[:, :, None] - 1) * np.maximum(slot, s) + (p[:, :, None] - 1) * s
        latency_options = np.where(m_all > 0, latency_options, np.inf)
        choice = np.argmin(latency_options, axis=2)  # (members, points)
        step_s, at = latency_options[who, points, choice], at_options[points, choice]
    else:  # one option, min(p, B) micro-batches
        at = at_options[..., 0]  # (members, points)
        total = step_stack[0]
        for x in step_stack[1:]:  # + 0.0 past a member's last stage: exactly nothing
            total = total + x
        s, slot = send_s[who, at], slowest[who, at]
        step_s = np.maximum(total[who, at] + (p - 1) * s, m_all[..., 0] * slot)
    # the fullest stage's HBM in use: its weights + KV cache + activations, added in that order
    (weights, kv, activations), rows = fields  # figures (rows, formats x sizes), flat; each stage's row
    start = rows[:, :, None] * (n_formats * n_sizes)  # (stages, members, 1)
    totals = weights[start + at] + kv[start + at_batch] + activations[start + at]
    hbm_bytes = np.max(np.where(valid, totals, -np.inf), axis=0)
    points_batch = np.tile(batch, n_formats)
    if c.phase is Phase.PREFILL:
        tokens, latency_s, logit_tokens = points_batch * workload.input_tokens, step_s, points_batch
    else:
        tokens, latency_s = points_batch * workload.output_tokens, step_s * workload.output_tokens
        logit_tokens = tokens
    mfu = model.mfu_flops(tokens, logit_tokens) / (
        grid.chips[row_of] * p * cluster.chip.peak_bf16_flop_per_s * latency_s
    )
    return latency_s, step_s, mfu, hbm_bytes


def _sends(model, cluster, workload, ffn, grid: Grid, phases, row_of, meshes, sizes) -> list[np.ndarray]:
    """One send between neighbouring stages of each member, (members, sizes), per phase: both
    phases' bytes in one call."""
    send_bytes = []
    for phase in phases:
        shape = StepShape(
            batch=sizes,
            tokens=workload.input_tokens if phase is Phase.PREFILL else 1,
            attended=0.0,
            cached=0,
            reads_cache=False,
        )
        send_bytes.append(
            np.broadcast_to(send_bytes_per_chip(model, ffn, grid.sizes, shape), (len(grid.chips), sizes.size))[row_of]
        )  # the grid's first phase's rows
    return np.split(send_seconds_many(cluster, meshes, np.concatenate(send_bytes, axis=1)), len(phases), axis=1)


def _stages_on_one_grid(
    model, cluster, workload, c, grid: Grid, stages, row_of, sizes, formats, network, meshes, piped, single
):
    """(step_s, fields, singles): step_s (stages, copies, points), a copy per pipelined member
    (`piped`) and phase (phase-major), 0 past its last stage; fields ((weight, KV, activation
    bytes), rows): the figures (rows, points), flat, and each (stage, copy)'s row of them (any
    past its last stage). Every distinct stage of every row (split_layers' layers, base + (i <
    extra), and first and last flags) costed as a row of one stacked grid. `singles`, per phase: (latency_s, step_s, mfu,
    hbm_bytes) of the one-stage members (`single`), each (members, points), as `evaluate` gives
    them. `stages`: per grid row. Members on one mesh (one stage and pipelines of every stage
    count with that stage mesh) carry the same collectives' bytes in a phase: timed once."""
    rows, most, members = len(grid.chips), int(stages.max()), len(row_of)
    per_phase = rows // max(len(grid.phases), 1)
    n_phases = rows // per_phase
    copies = (np.arange(n_phases)[:, None] * per_phase + row_of).reshape(-1)  # each copy's grid row
    i, counts = np.arange(most)[:, None], stages[:, 0]
    base, extra = model.n_layers // counts, model.n_layers % counts
    ok = i < counts  # (stages, rows)
    columns = [
        np.broadcast_to(np.arange(rows), ok.shape),
        base + (i < extra),
        np.broadcast_to(i == 0, ok.shape),
        i == counts - 1,
    ]
    if model.experts is not None:  # a stage's MoE layers depend on where it starts; stages alike in count share
        start = i * base + np.minimum(i, extra)  # each stage's first layer
        columns += [replace(model.experts, offset=start).n_moe_layers(base + (i < extra)), start]
    keys = np.stack(columns, axis=-1)[ok]
    distinct, inverse = first_rows(keys[:, :5].astype(np.int64))  # stage 0 of row g is the stacked grid's row g
    stage_row = np.zeros(ok.shape, dtype=np.int64)
    stage_row[ok] = inverse  # each row's stage i: its row of the stacked grid
    g, layers, is_first, is_last = (keys[distinct, j] for j in range(4))
    phase_index = grid.phase_index() if grid.phases else np.zeros(rows, dtype=np.int64)
    alike, base_of = first_rows(np.concatenate([*grid.sizes.values(), phase_index[:, None]], axis=1))
    base_grid = Grid(
        sizes={axis: v[alike] for axis, v in grid.sizes.items()},
        chips=grid.chips[alike],
        core=grid.core,
        phases=grid.phases,
        phase_of=phase_index[alike] if grid.phases else None,
    )
    stacked = Grid(
        sizes={axis: v[g] for axis, v in grid.sizes.items()},
        chips=grid.chips[g],
        core=grid.core,
        phases=grid.phases,
        phase_of=phase_index[g] if grid.phases else None,
        base=base_grid,
        base_rows=base_of[g],
    )  # its layers' parts costed once per sizes and phase
    experts = None if model.experts is None else replace(model.experts, offset=keys[distinct, 5][:, None])
    layer = layer_costs(
        replace(model, n_layers=layers[:, None], local_layers=(), experts=experts),
        cluster,
        workload,
        c,
        sizes,
        formats,
        first=is_first[:, None].astype(bool),
        last=is_last[:, None].astype(bool),
        grid=stacked,
    )
    valid = i < stages[copies, 0]  # (stages, copies)
    pairs = np.stack([np.broadcast_to(np.arange(len(copies)), valid.shape), stage_row[:, copies]], axis=-1)[valid]
    pseudo, where = first_rows(pairs)  # each distinct (copy, stacked row)
    which, at = pairs[pseudo, 0], pairs[pseudo, 1]
    ids: dict[int, int] = {}
    mesh_of = np.array([ids.setdefault(id(mesh), len(ids)) for mesh in meshes], dtype=np.int64)
    owners = np.unique(mesh_of, return_index=True)[1]  # each mesh's first member
    phase_of, member = np.divmod(which, members)
    timed = (np.arange(n_phases)[:, None] * members + owners).reshape(-1)  # the copies timed
    _, step_s, latency_s, mfu = timing(
        cluster,
        workload,
        layer,
        *network(layer, copies[timed], phase_of * len(owners) + mesh_of[member], at, owners=np.tile(owners, n_phases)),
        rows=at,
    )
    points = len(formats) * sizes.size
    pair = np.full(valid.shape, -1)
    pair[valid] = where  # each (stage, copy): its pair
    chosen = pair[:, (np.arange(n_phases)[:, None] * members + piped).reshape(-1)]  # (stages, piped copies)
    step_stack = np.where((chosen >= 0)[..., None], np.broadcast_to(step_s, (len(at), points))[chosen], 0.0)
    fields = tuple(np.broadcast_to(getattr(layer, f), (len(g), points)).ravel() for f in FIELDS), at[chosen]
    singles = []
    for k in range(n_phases):
        q = pair[0, k * members + single]
        singles.append(
            tuple(np.broadcast_to(x, (len(at), points))[q] for x in (latency_s, step_s, mfu))
            + (np.broadcast_to(layer.hbm_bytes, (len(g), points))[at[q]],)
        )
    return step_stack, fields, singles


def _stages_apart(
    model, cluster, workload, c, grid: Grid, stages, row_of, sizes, formats, network, meshes, piped, single
):
    """As `_stages_on_one_grid`, for a model with local layers: each distinct stage of the
    bucket's one stage count (its own local layers) costed on the grid apart; no one-stage member."""
    assert not single.size, "a model with local layers buckets each stage count apart"
    variants, stage_variant = _variants(model, stages)
    parts: dict = {}  # the grid's layer parts, shared by the variants
    steps, costs = [], []
    for stage_model, is_first, is_last in variants:
        layer = layer_costs(
            stage_model, cluster, workload, c, sizes, formats, first=is_first, last=is_last, grid=grid, shared=parts
        )
        step_s = timing(cluster, workload, layer, *network(layer, row_of, cache=True), rows=row_of)[1]
        steps.append(np.broadcast_to(step_s, (len(row_of), step_s.shape[-1])))
        costs.append(layer)
    shape = (len(grid.chips), len(formats) * sizes.size)
    which = stage_variant[:, row_of]  # (stages, members)
    members = np.arange(len(row_of))
    step_stack = np.stack(steps)[which, members]
    fields = (
        tuple(np.concatenate([np.broadcast_to(getattr(layer, f), shape) for layer in costs]).ravel() for f in FIELDS),
        which * shape[0] + row_of,
    )  # variant v's grid row g: row v x rows + g
    return step_stack, fields, None


def _variants(model: Model, stages: np.ndarray) -> tuple[list[tuple[Model, bool, bool]], np.ndarray]:
    """The distinct stages (stage model, first, last) of a bucket whose rows share one stage count
    `stages`, and each row's variant of its stage i, (stages, rows)."""
    p = int(stages[0, 0])
    layers, keys, variants, which = split_layers(model.n_layers, p), {}, [], []
    for i, k in enumerate(layers):
        stage_model = model.layer_range(sum(layers[:i]), k)
        key = stage_key(stage_model, i == 0, i == p - 1)
        if key not in keys:
            keys[key] = len(variants)
            variants.append((stage_model, i == 0, i == p - 1))
        which.append(keys[key])
    return variants, np.repeat(np.array(which)[:, None], len(stages), axis=1)
