"""One phase's discrete candidates evaluated many at a time. Candidates of one FFN, attention and
expert layout whose attention core has one dataflow (`Core`) form a bucket; the bucket's distinct
logical mesh sizes are a `Grid`, whose layer costs one pass of costmodel.layer_costs computes (a
row per mesh sizes), and the collectives of all the bucket's candidates (each on its own mesh
grouping) are timed in one numpy pass (line_tables.network_seconds). The arrays are those
`evaluate` gives each candidate, bit for bit; Evaluations are built only for the frontier's
points. With pipelines, a layout's candidates of every stage count, one stage included, form one
bucket (its rows carry the stage count; for a model with local layers, one bucket per stage
count), each bucket through pipeline_sweep.sweep_pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from planner.cost.costmodel import Candidate, layer_costs, step_overlap, timing
from planner.cost.grid import Grid, at_rows
from planner.cost.line_tables import LineCache, MeshLines, network_seconds, signature
from planner.cost.mesh import Mesh
from planner.cost.network import lines_seconds
from planner.specs.plan import Phase, Plan

FIGURES = ("latency_s", "step_s", "mfu", "hbm_bytes")
# the parts of a step `evaluate` combines (sweep_phases(parts=True)): what serve's requests
# interpolate between contexts (planner.cost.request) and what sets a step's bound
PARTS = ("local_s", "comm_s", "prefetched_s", "overhead_s", "compute_s", "memory_s", "critical_s", "overlap")


@dataclass(frozen=True, kw_only=True)
class Swept:
    """Figures of a phase's candidates, one row per candidate (in candidate order), one column
    per point (batch x formats); with parts, the step's parts too (else None)."""

    latency_s: np.ndarray
    step_s: np.ndarray
    mfu: np.ndarray
    hbm_bytes: np.ndarray
    local_s: np.ndarray | None = None
    comm_s: np.ndarray | None = None
    prefetched_s: np.ndarray | None = None
    overhead_s: np.ndarray | None = None
    compute_s: np.ndarray | None = None
    memory_s: np.ndarray | None = None
    critical_s: np.ndarray | None = None
    overlap: np.ndarray | None = None  # the step's overlap fraction (costmodel.step_overlap)


@dataclass(frozen=True)
class Bucket:
    """Candidates of one FFN, attention and expert layout and one attention Core (one-stage, or
    pipelined)."""

    rows: dict[tuple[int, ...], list[int]]  # by logical mesh sizes (and stages, pipelined): the Grid's rows
    members: np.ndarray  # every candidate, row after row
    meshes: list[Mesh]  # each member's mesh
    row_of: np.ndarray  # each member's row
    index: np.ndarray  # each member's mesh in Buckets.mesh_lines


@dataclass(frozen=True)
class Buckets:
    """A phase's candidates sorted for the sweep (the same for every phase of a search: their
    candidates are parallel lists), by ((group, FFN, attention, experts), attention Core), with
    group 1 in a search without pipelines, else 2 for the stage counts that are powers of two
    (one included) and 3 for the others (a model with local layers: its stage count). `tables`:
    each bucket's collectives' lines, kept for the next phase (they depend on the meshes only)."""

    buckets: dict[tuple, Bucket]
    tables: dict[tuple, tuple]
    mesh_lines: MeshLines  # the candidates' meshes (one stage's, for pipelined ones)


def sweep(
    plan: Plan,
    layouts: list[Candidate],
    batch: np.ndarray,
    formats,
    step: Callable[[int], None] = lambda count: None,
    lines: LineCache | None = None,
    buckets: Buckets | None = None,
    parts: bool = False,
) -> Swept:
    """Every candidate's latency, step, MFU and HBM use over the points, for candidates of one
    phase: `sweep_phases` of that phase alone."""
    lines = LineCache(plan.cluster) if lines is None else lines
    phase = layouts[0].phase
    return sweep_phases(
        plan, {phase: layouts}, batch, formats, step, lines, buckets or make_buckets(plan, layouts), parts=parts
    )[phase]


def sweep_phases(
    plan: Plan,
    layouts: dict[Phase, list[Candidate]],
    batch: np.ndarray,
    formats,
    step: Callable[[int], None],
    lines: LineCache,
    buckets: Buckets,
    parts: bool = False,
) -> dict[Phase, Swept]:
    """Every candidate's latency, step, MFU and HBM use over the points, per phase (the phases'
    candidates are parallel lists, sorted into `buckets`; `lines`: the collectives' lines, kept
    for the whole search): a bucket's phases costed in one pass (a model with local layers, and
    pipelines of stage counts that are not powers of two: phase by phase). `parts`: the step's
    PARTS too, each as `evaluate` has it (one-stage candidates only)."""
    phases, points = tuple(layouts), batch.size * len(formats)
    names = FIGURES + (PARTS if parts else ())
    out = {phase: {name: np.empty((len(c), points)) for name in names} for phase, c in layouts.items()}
    together = len(phases) > 1 and not plan.model.n_local_layers
    for key, bucket in buckets.buckets.items():
        first = [layouts[phase][int(bucket.members[0])] for phase in phases]
        # group 3 (see make_buckets): phases apart, their sizes differ; a pipelined MoE bucket too
        # (its dispatch kernels differ by phase, and a Grid of stages holds one kind: dispatch_kernels)
        if together and (key[0][0] == 1 or (key[0][0] == 2 and plan.model.experts is None)):
            figures = _bucket(plan, first[0], bucket, key, batch, formats, lines, buckets, phases, parts)
        else:
            figures = [_bucket(plan, c, bucket, key, batch, formats, lines, buckets, parts=parts) for c in first]
        for phase, values in zip(phases, figures):
            for name, value in zip(names, values):
                out[phase][name][bucket.members] = value
            step(len(bucket.members))
    return {phase: Swept(**figures) for phase, figures in out.items()}


def make_buckets(plan: Plan, layouts) -> Buckets:
    """`layouts` (Candidates, or the Choices they are made of) sorted into Buckets."""
    buckets: dict[tuple, dict[tuple, list[int]]] = {}
    cores: dict[tuple, object] = {}
    # with pipelines, every stage count of a layout in one bucket, one stage included (see
    # pipeline_sweep); for a model with local layers, one bucket per stage count
    merged = not plan.model.n_local_layers and any(c.stages > 1 for c in layouts)
    for i, c in enumerate(layouts):
        sizes = c.mesh.sizes
        key = (c.ffn.name, c.attention.name, c.experts.name if c.experts is not None else "", *sizes.values())
        core = cores.get(key)
        if core is None:
            core = cores[key] = c.attention.core(plan.model, c.ffn, sizes)
        # stage counts that are not powers of two split power-of-two batches into micro-batches
        # of sizes of their own (ceil(B/3)): group 3, apart, so that the others do not cost those
        # sizes too, and costed phase by phase (prefill's micro-batches are powers of two)
        group = (2 if not c.stages & (c.stages - 1) else 3) if merged else c.stages
        rows = buckets.setdefault(((group, *key[:3]), core), {})  # rows: sizes, and stages if pipelined
        rows.setdefault(key[3:] if group == 1 else (*key[3:], c.stages), []).append(i)
    out, distinct = {}, {}  # distinct: the meshes, by identity (choices share them)
    for key, rows in buckets.items():
        members = [i for ms in rows.values() for i in ms]
        meshes = [layouts[i].mesh for i in members]
        index = np.array([distinct.setdefault(id(mesh), (len(distinct), mesh))[0] for mesh in meshes], dtype=np.int64)
        out[key] = Bucket(
            rows=rows,
            members=np.array(members, dtype=np.int64),
            meshes=meshes,
            index=index,
            row_of=np.repeat(np.arange(len(rows)), [len(ms) for ms in rows.values()]),
        )
    return Buckets(out, {}, MeshLines(plan.cluster, [mesh for _, mesh in distinct.values()]))


def _bucket(
    plan: Plan,
    first: Candidate,
    bucket: Bucket,
    key: tuple,
    batch: np.ndarray,
    formats,
    lines: LineCache,
    buckets: Buckets,
    phases: tuple[Phase, ...] = (),
    parts: bool = False,
):
    """(latency_s, step_s, mfu, hbm_bytes), each (members, points), of the bucket `key`, whose
    first member is `first`, followed with `parts` by the PARTS; with `phases`, a list of those
    per phase, all costed in one pass (a Grid of the bucket's meshes once per phase)."""
    table = np.array(list(bucket.rows), dtype=np.int64)  # (meshes, 3): logical sizes x, y, z (, stages)
    count = max(len(phases), 1)
    grid = Grid(
        sizes={axis: np.tile(table[:, [j]], (count, 1)) for j, axis in enumerate("xyz")},
        chips=np.tile(table[:, [0]] * table[:, [1]] * table[:, [2]], (count, 1)),
        core=key[1],
        phases=phases,
    )
    times: dict[tuple, np.ndarray] = {}  # a pipeline's stages (costed apart) share their collectives' times
    members = len(bucket.row_of)

    def network(layer, copies, which=None, repeat_rows=None, cache=False, owners=None):
        """(comm_s, prefetched_s), (rows, points): the layer's collectives on the members' meshes.
        Copy i carries the collective bytes of grid row copies[i] on the mesh of member owners[i]
        (default: member i % members); row j of the result is copy which[j] (default: every copy
        in order), repeated as at grid row repeat_rows[j] (default: `copies`). `cache`: keep the
        copies' seconds for layers with the same bytes (a pipeline's stages costed apart)."""
        every = which is None  # every copy in order
        which = np.arange(len(copies)) if every else which
        repeat_rows = copies if repeat_rows is None else repeat_rows
        collectives = [term.collective for term, _ in layer.terms if term.collective is not None]
        if not collectives:
            return network_seconds(lines, which, (), np.zeros((0, layer.batch.size)), None, None)
        known, tables = (key, signature(collectives)), buckets.tables
        stacks = tables.get(known) or tables.setdefault(known, buckets.mesh_lines.tables(lines, bucket.index, known[1]))
        repeats = layer.repeats if layer.repeats.ndim < 3 else layer.repeats[:, repeat_rows].swapaxes(0, 1)
        data, formats = layer.collective_bytes, len(layer.formats)
        blocks = data.reshape(data.shape[:-1] + (formats, -1))
        if formats > 1 and (blocks == blocks[..., :1, :]).all():  # the formats move the same bytes: time one
            data = blocks[..., 0, :]
        same = (known, copies.tobytes(), data.tobytes()) if cache else None
        seconds = times.get(same) if cache else None
        if seconds is None:  # each copy with its own bytes, on its member's lines
            owners = np.tile(np.arange(members), len(copies) // members) if owners is None else owners
            seconds = lines_seconds(stacks[0][owners], stacks[1][owners], data[:, copies].swapaxes(0, 1))
            if cache:
                times[same] = seconds
        if not every:
            seconds = seconds[which]
        comm_s, prefetched_s = network_seconds(
            lines, which, collectives, seconds, repeats, layer.prefetched, None, seconds
        )
        if data is not layer.collective_bytes:  # each format's points: the same seconds
            comm_s, prefetched_s = np.tile(comm_s, formats), np.tile(prefetched_s, formats)
        return comm_s, prefetched_s

    if table.shape[1] > 3:  # imported here: a plan without stages never loads the pipeline model
        assert not parts, "a pipeline's step parts are its stages'"
        from planner.cost.pipeline_sweep import sweep_pipeline

        return sweep_pipeline(
            plan.model,
            plan.cluster,
            plan.workload,
            first,
            grid,
            table[:, [3]],
            bucket.row_of,
            bucket.meshes,
            batch,
            formats,
            network,
        )
    layer = layer_costs(plan.model, plan.cluster, plan.workload, first, batch, formats, grid=grid)
    meshes = len(bucket.rows)
    rows = (np.arange(count)[:, None] * meshes + bucket.row_of).reshape(-1)
    comm_s, prefetched_s = network(layer, rows)
    critical_s, step_s, latency_s, mfu = timing(plan.cluster, plan.workload, layer, comm_s, prefetched_s, rows=rows)
    hbm_bytes = at_rows(
        np.broadcast_to(layer.hbm_bytes, np.broadcast_shapes(np.shape(layer.hbm_bytes), (count * meshes, 1))), rows
    )
    values = (latency_s, step_s, mfu, hbm_bytes)
    if parts:
        values += (
            at_rows(layer.local_s, rows),
            comm_s,
            prefetched_s,
            at_rows(layer.overhead_s, rows),
            at_rows(layer.compute_s, rows),
            at_rows(layer.memory_s, rows),
            critical_s,
            step_overlap(plan.cluster.calibration, layer.micro_batches),
        )
    figures = [
        tuple(np.broadcast_to(x, (count * members, step_s.shape[-1]))[i * members : (i + 1) * members] for x in values)
        for i in range(count)
    ]
    return figures if phases else figures[0]
