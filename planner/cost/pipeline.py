"""Pipeline parallelism: `p` stages over the outermost level (planner.cost.mesh.stage_meshes),
each running every existing FFN and attention layout on its own mesh of n / p chips, built on the
one-stage cost model (`costmodel.evaluate` of a model with the stage's layers only).

Layers split into p contiguous groups, the first n_layers mod p stages one layer longer (so the
last stage, which also runs the output projection, is never the longer one). The first stage
holds the input embedding (for a tied embedding, a copy of the shared table: it looks tokens up
while the last stage projects to logits), the last the output projection and its gather.

Between neighbouring stages a micro-batch's residual stream, B_b L E_(f,e) on every chip (each
stage uses the same inner layout, so every chip sends its shard to its counterpart), crosses the
boundary by a point-to-point send (planner.cost.network.send_seconds); s below is one such send.
The batch of B sequences is split into m micro-batches of b = ceil(B / m) sequences (the last
padded); t_i is stage i's step at b (its compute, memory and collectives combined as in
costmodel), t = max t_i the slowest stage's.

- Prefill, a synchronous schedule that advances every stage once per slot, the slot set by the
  slowest stage (uneven splits are charged to it) or by a send, if slower:
      latency = (m + p - 1) * max(t, s) + (p - 1) * s
  The bubble, the slowest stage's idle share, is 1 - m t / latency ((p - 1) / (m + p - 1) for
  even stages without sends). m is chosen per point: the fastest of 1, 2, 4, ... and B itself, up
  to B (more, smaller micro-batches shrink the bubble but read the weights more often).
- Decode: a token passes every stage in turn, and stages work on other micro-batches meanwhile.
  With m = min(p, B) micro-batches in flight (the fewest that keep every stage busy), each
  sequence's next token comes once its micro-batch has gone round, and the slowest stage must
  serve all m micro-batches in that time:
      step = max(sum_i t_i + (p - 1) * s, m * t)
  so the step (time per output token) is p stages at a p-th of the batch, and throughput B tokens
  per step. The sampled tokens' return to the first stage (a few bytes per sequence) is not
  charged.

Capacity per stage: its weights, the KV cache of all B sequences for its layers (every micro-batch
in flight keeps its cache), and one micro-batch's activations; a point fits when every stage does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from planner.cost.costmodel import Candidate, Evaluation, evaluate, layer_costs, timing
from planner.cost.grid import Grid
from planner.cost.layouts.base import StepShape, size, union
from planner.cost.layouts.ffn import FfnLayout
from planner.cost.mesh import Mesh, first_rows
from planner.cost.network import send_seconds, send_seconds_many
from planner.specs.hardware import ACTIVATION_BYTES, Cluster, WeightFormat
from planner.specs.model import Model
from planner.specs.plan import Phase, Workload


def split_layers(n_layers: int, stages: int) -> tuple[int, ...]:
    """Layers per stage: contiguous groups, the first n_layers mod stages one layer longer."""
    base, extra = divmod(n_layers, stages)
    return tuple(base + (i < extra) for i in range(stages))


@dataclass(frozen=True, kw_only=True)
class PipelineEvaluation(Evaluation):
    """A pipelined candidate: the Evaluation fields describe the whole pipeline (latency, step,
    MFU, cost) and, for compute/memory/comm/overhead, bound and HBM use, the stage that sets them
    (the slowest stage at its micro-batch; the stage with the most HBM in use)."""

    layers: tuple[int, ...]             # layers per stage
    stage_evaluations: tuple[Evaluation, ...]  # per stage, over `sizes` (x formats)
    sizes: np.ndarray                   # the micro-batch and batch sizes the stages were evaluated at
    at: np.ndarray                      # per point: index into a stage evaluation at its micro-batch
    at_batch: np.ndarray                # per point: index at the whole batch (its KV cache)
    micro_batches: np.ndarray           # m per point
    micro_batch: np.ndarray             # b = ceil(B / m) sequences per micro-batch
    send_bytes: np.ndarray              # per chip, one send between neighbouring stages
    send_s: np.ndarray                  # one send between neighbouring stages
    stage_hbm_bytes: np.ndarray         # (stages, points): HBM in use per chip of each stage
    slowest: np.ndarray                 # per point: index of the slowest stage
    bubble: np.ndarray                  # the slowest stage's idle share of the latency (or step)


def evaluate_pipeline(model: Model, cluster: Cluster, workload: Workload, candidate: Candidate,
                      batch: np.ndarray, detail: bool = False,
                      formats: tuple[WeightFormat, ...] | None = None) -> PipelineEvaluation:
    """Costs of a pipelined `candidate` (its mesh is one stage's) over `batch` (x `formats`, as in
    costmodel.evaluate: point i has batch[i % len(batch)] and formats[i // len(batch)])."""
    c, p = candidate, candidate.stages
    formats = (c.formats,) if formats is None else formats
    batch = np.asarray(batch, dtype=np.int64)
    m, b = _micro_batches(c.phase, batch, p)  # (points, options) each
    sizes = np.unique(np.concatenate([batch, b[b > 0]]))
    layers = split_layers(model.n_layers, p)
    cache: dict[tuple[int, bool, bool], Evaluation] = {}
    stages = []
    for i, k in enumerate(layers):
        stage_model = model.layer_range(sum(layers[:i]), k)  # its own local (sliding-window) layers
        key = (k, stage_model.local_layers, i == 0, i == p - 1)
        if key not in cache:
            cache[key] = evaluate(stage_model, cluster, workload, c, sizes, detail=detail,
                                  formats=formats, first=key[2], last=key[3])
        stages.append(cache[key])
    n_batch, n_sizes = batch.size, sizes.size
    offset = np.repeat(np.arange(len(formats)) * n_sizes, n_batch)  # per point: its format's block
    tile = lambda a: np.tile(a, (len(formats),) + (1,) * (a.ndim - 1))  # noqa: E731

    shape = StepShape(batch=sizes, tokens=workload.input_tokens if c.phase is Phase.PREFILL else 1,
                      attended=0.0, cached=0, reads_cache=False)
    send_bytes_sizes = _send_bytes_per_chip(model, c.ffn, c.mesh.sizes, shape)
    send_s_sizes = send_seconds(cluster, c.mesh, send_bytes_sizes)

    at_options = offset[:, None] + np.searchsorted(sizes, np.maximum(tile(b), 1))
    t = np.stack([ev.step_s[at_options] for ev in stages])  # (stages, points, options)
    s = np.tile(send_s_sizes, len(formats))[at_options]
    slot = t.max(axis=0)
    m_all = tile(m)
    if c.phase is Phase.PREFILL:
        latency_options = (m_all + p - 1) * np.maximum(slot, s) + (p - 1) * s
    else:
        total = t[0]
        for x in t[1:]:  # in stage order (search.sweep's sweep_pipeline sums them alike)
            total = total + x
        latency_options = np.maximum(total + (p - 1) * s, m_all * slot)
    latency_options = np.where(m_all > 0, latency_options, np.inf)
    choice = np.argmin(latency_options, axis=1)
    rows = np.arange(choice.size)
    step_s = latency_options[rows, choice]
    at, micro, count = at_options[rows, choice], tile(b)[rows, choice], m_all[rows, choice]
    at_batch = offset + np.searchsorted(sizes, np.tile(batch, len(formats)))
    slowest = np.argmax(t[:, rows, choice], axis=0)

    def pick(field: str, index: np.ndarray, where: np.ndarray = at) -> np.ndarray:
        """`field` of stage index[j] at point j (at its micro-batch, or at `where`)."""
        return np.choose(index, [_values(ev, field)[where] for ev in stages])

    stage_hbm = np.stack([_values(ev, "weight_bytes")[at] + ev.kv_bytes[at_batch] + ev.activation_bytes[at]
                          for ev in stages])
    fullest = np.argmax(stage_hbm, axis=0)
    points_batch = np.tile(batch, len(formats))
    if c.phase is Phase.PREFILL:
        tokens, latency_s = points_batch * workload.input_tokens, step_s
        logit_tokens = points_batch
    else:
        tokens, latency_s = points_batch * workload.output_tokens, step_s * workload.output_tokens
        logit_tokens = tokens
    chips = c.mesh.chips * p
    mfu = model.mfu_flops(tokens, logit_tokens) / (chips * cluster.chip.peak_bf16_flop_per_s * latency_s)
    slowest_t = t[:, rows, choice].max(axis=0)
    first = stages[0]
    weight_bytes, activation_bytes = pick("weight_bytes", fullest), pick("activation_bytes", fullest)
    kv_bytes = pick("kv_bytes", fullest, at_batch)
    hbm_bytes = weight_bytes + kv_bytes + activation_bytes
    return PipelineEvaluation(
        candidate=c, model=model, workload=workload, batch=points_batch, tokens=tokens,
        compute_s=pick("compute_s", slowest), memory_s=pick("memory_s", slowest), comm_s=pick("comm_s", slowest),
        prefetched_s=pick("prefetched_s", slowest), critical_s=pick("critical_s", slowest),
        overlap=first.overlap, ring_steps=first.ring_steps, prefetched_ring_steps=first.prefetched_ring_steps,
        comm_latency_s=first.comm_latency_s,
        comm_latency_by_level_s=first.comm_latency_by_level_s, overhead_s=max(ev.overhead_s for ev in stages),
        step_s=step_s, latency_s=latency_s, mfu=mfu, cost_chip_s_per_token=chips * latency_s / tokens,
        tokens_per_s=tokens / latency_s, weight_bytes=weight_bytes, kv_bytes=kv_bytes,
        activation_bytes=activation_bytes, hbm_bytes=hbm_bytes, hbm_fraction=hbm_bytes / cluster.chip.hbm_bytes,
        bound=pick("bound", slowest), rows=(), formats=formats,
        layers=layers, stage_evaluations=tuple(stages), sizes=sizes, at=at, at_batch=at_batch,
        micro_batches=count, micro_batch=micro, send_bytes=np.tile(send_bytes_sizes, len(formats))[at],
        send_s=s[rows, choice], stage_hbm_bytes=stage_hbm, slowest=slowest,
        bubble=1.0 - count * slowest_t / step_s,
    )


def sweep_pipeline(model: Model, cluster: Cluster, workload: Workload, first: Candidate, grid: Grid,
                   stages: np.ndarray, row_of: np.ndarray, meshes: list[Mesh], batch: np.ndarray,
                   formats: tuple[WeightFormat, ...], network: Callable):
    """(latency_s, step_s, mfu, hbm_bytes), each (members, points): what `evaluate_pipeline` gives
    each member of a bucket of pipelined candidates (search.sweep: like `first` but on their own
    stage meshes, of the logical sizes and stage counts `stages` of `grid`'s row `row_of`), bit
    for bit; for a grid with phases (its rows the meshes once per phase), a list of those per
    phase. Without local layers every stage of every row is a row of one grid (stage i of row g:
    the grid's sizes, with its layers, first and last flags, in its phase), costed in one pass,
    so one bucket holds every stage count and phase; with local layers the bucket has one stage
    count and each distinct stage is costed on the grid apart (its own local layers).
    `network(layer, copies, which, repeat_rows, cache)`: the collectives' seconds on the members'
    meshes (search.sweep)."""
    c, members = first, len(row_of)
    phases = grid.phases or (c.phase,)
    batch = np.asarray(batch, dtype=np.int64)
    p = stages[row_of]  # (members, 1)
    options = [_micro_batches(phase, batch, p) for phase in phases]  # (points, options), or (members, ...)
    sizes = np.unique(np.concatenate([batch, *(b[b > 0] for _, b in options)]))
    cost = (_stages_on_one_grid if not model.n_local_layers else _stages_apart)
    step_stack, fields = cost(model, cluster, workload, c, grid, np.tile(stages, (len(phases), 1)), row_of, sizes,
                              formats, network)
    valid = (np.arange(int(stages.max()))[:, None] < p[:, 0])[:, :, None]  # (stages, members, 1)
    out = []
    for k, (phase, (m, b)) in enumerate(zip(phases, options)):
        copy = slice(k * members, (k + 1) * members)
        out.append(_pipeline_figures(model, cluster, workload, replace(c, phase=phase), grid, p, row_of, meshes, batch, formats, sizes, m, b, valid, step_stack[:, copy],
                                     [f[:, copy] for f in fields]))
    return out if grid.phases else out[0]


def _pipeline_figures(model, cluster, workload, c, grid: Grid, p, row_of, meshes, batch, formats, sizes, m, b,
                      valid, step_stack, fields):
    """sweep_pipeline's figures of one phase, from its stages' steps and memory at `sizes`."""
    n_batch, n_sizes, n_formats, members = batch.size, sizes.size, len(formats), len(row_of)
    offset = np.repeat(np.arange(n_formats) * n_sizes, n_batch)
    tile = lambda a: np.tile(a, (1,) * (a.ndim - 2) + (n_formats, 1))  # noqa: E731  (the points axis)
    shape = StepShape(batch=sizes, tokens=workload.input_tokens if c.phase is Phase.PREFILL else 1,
                      attended=0.0, cached=0, reads_cache=False)
    send_bytes = np.broadcast_to(_send_bytes_per_chip(model, c.ffn, grid.sizes, shape),
                                 (len(grid.chips), n_sizes))[row_of]  # the grid's first phase's rows
    send_s_sizes = send_seconds_many(cluster, meshes, send_bytes)
    who = np.arange(members)[:, None, None]
    at_options = np.broadcast_to(offset[:, None] + np.searchsorted(sizes, np.maximum(tile(b), 1)),
                                 (members, offset.size, b.shape[-1]))
    s = np.tile(send_s_sizes, (1, n_formats))[who, at_options]
    # the slowest stage (and for decode the stages' sum, in stage order, as evaluate_pipeline sums
    # them) at every micro-batch size, then at each point's options: the same figures, gathered once
    slot = np.max(np.where(valid, step_stack, -np.inf), axis=0)[who, at_options]
    m_all = tile(m)
    if c.phase is Phase.PREFILL:
        latency_options = (m_all + p[:, :, None] - 1) * np.maximum(slot, s) + (p[:, :, None] - 1) * s
    else:
        total = step_stack[0]
        for x, ok in zip(step_stack[1:], valid[1:]):
            total = total + np.where(ok, x, 0.0)
        latency_options = np.maximum(total[who, at_options] + (p[:, :, None] - 1) * s, m_all * slot)
    latency_options = np.where(m_all > 0, latency_options, np.inf)
    choice = np.argmin(latency_options, axis=2)[..., None]  # (members, points, 1)
    step_s = np.take_along_axis(latency_options, choice, axis=2)[..., 0]
    at = np.take_along_axis(at_options, choice, axis=2)[..., 0]
    at_batch = offset + np.searchsorted(sizes, np.tile(batch, n_formats))
    # the fullest stage's HBM in use: its weights + KV cache + activations, added in that order
    weights, kv, activations = fields
    at_stages = np.broadcast_to(at, (len(weights),) + at.shape)
    totals = (np.take_along_axis(weights, at_stages, axis=2) + kv[:, :, at_batch]
              + np.take_along_axis(activations, at_stages, axis=2))
    hbm_bytes = np.max(np.where(valid, totals, -np.inf), axis=0)
    points_batch = np.tile(batch, n_formats)
    if c.phase is Phase.PREFILL:
        tokens, latency_s, logit_tokens = points_batch * workload.input_tokens, step_s, points_batch
    else:
        tokens, latency_s = points_batch * workload.output_tokens, step_s * workload.output_tokens
        logit_tokens = tokens
    mfu = model.mfu_flops(tokens, logit_tokens) / (grid.chips[row_of] * p * cluster.chip.peak_bf16_flop_per_s
                                                   * latency_s)
    return latency_s, step_s, mfu, hbm_bytes


FIELDS = ("weight_bytes", "kv_bytes", "activation_bytes")


def _stages_on_one_grid(model, cluster, workload, c, grid: Grid, stages, row_of, sizes, formats, network):
    """(step_s, (weight, KV, activation bytes)), each (stages, copies, points), a copy per member
    and phase of the grid (phase-major): every distinct stage of every row (split_layers' layers,
    base + (i < extra), and first and last flags) costed as a row of one grid (0 past a member's
    last stage: masked). `stages`: per grid row."""
    rows, most = len(grid.chips), int(stages.max())
    meshes = rows // max(len(grid.phases), 1)
    copies = (np.arange(rows // meshes)[:, None] * meshes + row_of).reshape(-1)  # each copy's grid row
    i, counts = np.arange(most)[:, None], stages[:, 0]
    base, extra = model.n_layers // counts, model.n_layers % counts
    ok = i < counts  # (stages, rows)
    keys = np.stack([np.broadcast_to(np.arange(rows), ok.shape), base + (i < extra),
                     np.broadcast_to(i == 0, ok.shape), i == counts - 1], axis=-1)[ok]
    distinct, inverse = first_rows(keys.astype(np.int64))  # stage 0 of row g is the stacked grid's row g
    stage_row = np.zeros(ok.shape, dtype=np.int64)
    stage_row[ok] = inverse  # each row's stage i: its row of the stacked grid
    g, layers, is_first, is_last = (keys[distinct, j] for j in range(4))
    stacked = Grid(sizes={axis: v[g] for axis, v in grid.sizes.items()}, chips=grid.chips[g], core=grid.core,
                   phases=grid.phases, phase_of=grid.phase_index()[g] if grid.phases else None)
    layer = layer_costs(replace(model, n_layers=layers[:, None], local_layers=()), cluster, workload, c, sizes,
                        formats, first=is_first[:, None].astype(bool), last=is_last[:, None].astype(bool),
                        grid=stacked)
    valid = i < stages[copies, 0]  # (stages, copies)
    pairs = np.stack([np.broadcast_to(np.arange(len(copies)), valid.shape), stage_row[:, copies]], axis=-1)[valid]
    pseudo, where = first_rows(pairs)  # each distinct (copy, stacked row)
    which, at = pairs[pseudo, 0], pairs[pseudo, 1]
    step_s = timing(cluster, workload, layer, *network(layer, copies, which, at), rows=at)[1]
    shape = (len(g), len(formats) * sizes.size)
    out = []
    for values in (step_s, *(np.broadcast_to(getattr(layer, f), shape)[at] for f in FIELDS)):
        full = np.zeros((most, len(copies), shape[1]))
        full[valid] = np.broadcast_to(values, (len(at), shape[1]))[where]
        out.append(full)
    return out[0], out[1:]


def _stages_apart(model, cluster, workload, c, grid: Grid, stages, row_of, sizes, formats, network):
    """As `_stages_on_one_grid`, for a model with local layers: each distinct stage of the
    bucket's one stage count (its own local layers) costed on the grid apart."""
    variants, stage_variant = _variants(model, stages)
    parts: dict = {}  # the grid's layer parts, shared by the variants
    steps, costs = [], []
    for stage_model, is_first, is_last in variants:
        layer = layer_costs(stage_model, cluster, workload, c, sizes, formats, first=is_first, last=is_last,
                            grid=grid, shared=parts)
        step_s = timing(cluster, workload, layer, *network(layer, row_of, cache=True), rows=row_of)[1]
        steps.append(np.broadcast_to(step_s, (len(row_of), step_s.shape[-1])))
        costs.append(layer)
    shape = (len(grid.chips), len(formats) * sizes.size)
    which = stage_variant[:, row_of]  # (stages, members)
    members = np.arange(len(row_of))
    step_stack = np.stack(steps)[which, members]
    fields = [np.stack([np.broadcast_to(getattr(layer, f), shape)[row_of] for layer in costs])[which, members]
              for f in FIELDS]
    return step_stack, fields


def _variants(model: Model, stages: np.ndarray) -> tuple[list[tuple[Model, bool, bool]], np.ndarray]:
    """The distinct stages (stage model, first, last) of a bucket whose rows share one stage count
    `stages`, and each row's variant of its stage i, (stages, rows)."""
    p = int(stages[0, 0])
    layers, keys, variants, which = split_layers(model.n_layers, p), {}, [], []
    for i, k in enumerate(layers):
        stage_model = model.layer_range(sum(layers[:i]), k)
        key = (k, stage_model.local_layers, i == 0, i == p - 1)
        if key not in keys:
            keys[key] = len(variants)
            variants.append((stage_model, i == 0, i == p - 1))
        which.append(keys[key])
    return variants, np.repeat(np.array(which)[:, None], len(stages), axis=1)


def _values(ev: Evaluation, field: str) -> np.ndarray:
    """A field of an Evaluation as an array over its points (weights may be one float)."""
    return np.broadcast_to(np.asarray(getattr(ev, field)), ev.batch.shape)


def _micro_batches(phase: Phase, batch: np.ndarray, stages) -> tuple[np.ndarray, np.ndarray]:
    """Micro-batch counts m and sizes b = ceil(B / m) to consider per batch size, (points, options);
    m = 0 marks an option that does not apply. Decode: one option, min(p, B) (with `stages` an
    array (members, 1) of stage counts: (members, points, 1)). Prefill: 1, 2, 4, ... up to B, and
    B itself, whatever the stages."""
    if phase is Phase.DECODE:
        m = np.minimum(stages, batch)[..., None]
    else:
        powers = 2 ** np.arange(int(np.log2(max(int(batch.max()), 1))) + 1)
        m = np.concatenate([np.broadcast_to(powers, (batch.size, powers.size)), batch[:, None]], axis=1)
        m = np.where(m <= batch[:, None], m, 0)
    b = np.where(m > 0, -(-batch[:, None] // np.maximum(m, 1)), 0)
    return m, b


def _send_bytes_per_chip(model: Model, ffn: FfnLayout, sizes: dict, shape: StepShape) -> np.ndarray:
    """The residual stream each chip holds between layers, B_b L E_(f,e): what it sends on (on a
    mesh of logical `sizes`: ints, or a Grid's arrays)."""
    e_shards = size(sizes, union(ffn.f_axes, ffn.e_axes))
    return ffn.tokens_per_chip(sizes, shape) * model.d_model / e_shards * ACTIVATION_BYTES


@dataclass(frozen=True, kw_only=True)
class StageView:
    """One stage of one pipelined point, as `explain` shows it: its own Evaluation at the point's
    micro-batch (rows too, if evaluated with detail) and its memory with the whole batch's KV cache."""

    index: int             # 0-based
    first_layer: int       # 1-based
    n_layers: int
    holds: tuple[str, ...]  # "input embedding", "output projection"
    evaluation: Evaluation  # one point: the stage at its micro-batch
    weight_bytes: float
    kv_bytes: float        # the KV cache of all the batch's sequences for this stage's layers
    activation_bytes: float
    hbm_bytes: float


def stage_views(pev: PipelineEvaluation, point: int = 0) -> tuple[StageView, ...]:
    """Every stage of point `point` of `pev`."""
    out, first_layer = [], 1
    at, at_batch = int(pev.at[point]), int(pev.at_batch[point])
    p = len(pev.layers)
    for i, (k, ev) in enumerate(zip(pev.layers, pev.stage_evaluations)):
        holds = (("input embedding",) if i == 0 else ()) + (("output projection",) if i == p - 1 else ())
        weights = float(_values(ev, "weight_bytes")[at])
        kv, act = float(ev.kv_bytes[at_batch]), float(ev.activation_bytes[at])
        out.append(StageView(index=i, first_layer=first_layer, n_layers=k, holds=holds,
                             evaluation=_one_point(ev, at), weight_bytes=weights, kv_bytes=kv,
                             activation_bytes=act, hbm_bytes=weights + kv + act))
        first_layer += k
    return tuple(out)


def _one_point(ev: Evaluation, j: int) -> Evaluation:
    """`ev` cut down to its point j (a one-element Evaluation, rows included)."""
    n = ev.batch.shape
    cut = lambda a: a[j:j + 1] if isinstance(a, np.ndarray) and a.shape == n else a  # noqa: E731
    rows = tuple(replace(r, **{f: cut(np.broadcast_to(getattr(r, f), n)) for f in
                              ("flops", "hbm_bytes", "comm_bytes", "compute_s", "memory_s", "comm_s")})
                 for r in ev.rows)
    fields = {f: cut(getattr(ev, f)) for f in ev.__dataclass_fields__ if f not in ("rows", "formats")}
    return replace(ev, **fields, rows=rows, formats=(ev.formats_at(j),))
