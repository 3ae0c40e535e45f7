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

from dataclasses import dataclass, replace

import numpy as np

from planner.cost.costmodel import Candidate, Evaluation, evaluate
from planner.cost.layouts.base import StepShape, size, union
from planner.cost.layouts.ffn import FfnLayout
from planner.cost.network import send_seconds
from planner.specs.hardware import ACTIVATION_BYTES, Cluster, WeightFormat
from planner.specs.model import Model
from planner.specs.plan import Phase, Workload


def stage_key(stage_model: Model, first: bool, last: bool) -> tuple:
    """What a stage's costs depend on: its layers, which of them are local (sliding-window) and
    MoE layers, and whether it holds the input embedding (first) and output projection (last)."""
    moe = stage_model.experts.n_moe_layers(stage_model.n_layers) if stage_model.experts is not None else 0
    return stage_model.n_layers, stage_model.local_layers, moe, first, last


def split_layers(n_layers: int, stages: int) -> tuple[int, ...]:
    """Layers per stage: contiguous groups, the first n_layers mod stages one layer longer."""
    base, extra = divmod(n_layers, stages)
    return tuple(base + (i < extra) for i in range(stages))


@dataclass(frozen=True, kw_only=True)
class PipelineEvaluation(Evaluation):
    """A pipelined candidate: the Evaluation fields describe the whole pipeline (latency, step,
    MFU, cost) and, for compute/memory/comm/overhead, bound and HBM use, the stage that sets them
    (the slowest stage at its micro-batch; the stage with the most HBM in use)."""

    layers: tuple[int, ...]  # layers per stage
    stage_evaluations: tuple[Evaluation, ...]  # per stage, over `sizes` (x formats)
    sizes: np.ndarray  # the micro-batch and batch sizes the stages were evaluated at
    at: np.ndarray  # per point: index into a stage evaluation at its micro-batch
    at_batch: np.ndarray  # per point: index at the whole batch (its KV cache)
    micro_batches: np.ndarray  # m per point
    micro_batch: np.ndarray  # b = ceil(B / m) sequences per micro-batch
    send_bytes: np.ndarray  # per chip, one send between neighbouring stages
    send_s: np.ndarray  # one send between neighbouring stages
    stage_hbm_bytes: np.ndarray  # (stages, points): HBM in use per chip of each stage
    slowest: np.ndarray  # per point: index of the slowest stage
    bubble: np.ndarray  # the slowest stage's idle share of the latency (or step)


def evaluate_pipeline(
    model: Model,
    cluster: Cluster,
    workload: Workload,
    candidate: Candidate,
    batch: np.ndarray,
    detail: bool = False,
    formats: tuple[WeightFormat, ...] | None = None,
    lines=None,
) -> PipelineEvaluation:
    """Costs of a pipelined `candidate` (its mesh is one stage's) over `batch` (x `formats`, as in
    costmodel.evaluate: point i has batch[i % len(batch)] and formats[i // len(batch)])."""
    c, p = candidate, candidate.stages
    formats = (c.formats,) if formats is None else formats
    batch = np.asarray(batch, dtype=np.int64)
    m, b = micro_batches(c.phase, batch, p)  # (points, options) each
    sizes = np.unique(np.concatenate([batch, b[b > 0]]))
    layers = split_layers(model.n_layers, p)
    cache: dict[tuple, Evaluation] = {}
    stages = []
    for i, k in enumerate(layers):
        stage_model = model.layer_range(sum(layers[:i]), k)  # its own local and MoE layers
        key = stage_key(stage_model, i == 0, i == p - 1)
        if key not in cache:
            cache[key] = evaluate(
                stage_model,
                cluster,
                workload,
                c,
                sizes,
                detail=detail,
                formats=formats,
                first=i == 0,
                last=i == p - 1,
                lines=lines,
            )
        stages.append(cache[key])
    n_batch, n_sizes = batch.size, sizes.size
    offset = np.repeat(np.arange(len(formats)) * n_sizes, n_batch)  # per point: its format's block
    tile = lambda a: np.tile(a, (len(formats),) + (1,) * (a.ndim - 1))  # noqa: E731

    shape = StepShape(
        batch=sizes,
        tokens=workload.input_tokens if c.phase is Phase.PREFILL else 1,
        attended=0.0,
        cached=0,
        reads_cache=False,
    )
    send_bytes_sizes = send_bytes_per_chip(model, c.ffn, c.mesh.sizes, shape)
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
        for x in t[1:]:  # in stage order (pipeline_sweep sums them alike)
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

    stage_hbm = np.stack(
        [_values(ev, "weight_bytes")[at] + ev.kv_bytes[at_batch] + ev.activation_bytes[at] for ev in stages]
    )
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
        candidate=c,
        model=model,
        workload=workload,
        batch=points_batch,
        tokens=tokens,
        compute_s=pick("compute_s", slowest),
        memory_s=pick("memory_s", slowest),
        local_s=pick("local_s", slowest),
        comm_s=pick("comm_s", slowest),
        prefetched_s=pick("prefetched_s", slowest),
        critical_s=pick("critical_s", slowest),
        overlap=first.overlap,
        ring_steps=first.ring_steps,
        prefetched_ring_steps=first.prefetched_ring_steps,
        comm_latency_s=first.comm_latency_s,
        comm_latency_by_level_s=first.comm_latency_by_level_s,
        overhead_s=pick("overhead_s", slowest),
        step_s=step_s,
        latency_s=latency_s,
        mfu=mfu,
        cost_chip_s_per_token=chips * latency_s / tokens,
        tokens_per_s=tokens / latency_s,
        weight_bytes=weight_bytes,
        kv_bytes=kv_bytes,
        activation_bytes=activation_bytes,
        hbm_bytes=hbm_bytes,
        hbm_fraction=hbm_bytes / cluster.chip.hbm_bytes,
        bound=pick("bound", slowest),
        rows=(),
        formats=formats,
        layers=layers,
        stage_evaluations=tuple(stages),
        sizes=sizes,
        at=at,
        at_batch=at_batch,
        micro_batches=count,
        micro_batch=micro,
        send_bytes=np.tile(send_bytes_sizes, len(formats))[at],
        send_s=s[rows, choice],
        stage_hbm_bytes=stage_hbm,
        slowest=slowest,
        bubble=1.0 - count * slowest_t / step_s,
    )


def _values(ev: Evaluation, field: str) -> np.ndarray:
    """A field of an Evaluation as an array over its points (weights may be one float)."""
    return np.broadcast_to(np.asarray(getattr(ev, field)), ev.batch.shape)


def micro_batches(phase: Phase, batch: np.ndarray, stages) -> tuple[np.ndarray, np.ndarray]:
    """Micro-batch counts m and sizes b = ceil(B / m) to consider per batch size, (points, options);
    m = 0 marks an option that does not apply. Decode: one option, min(p, B) (with `stages` an
    array (members, 1) of stage counts: (members, points, 1)). Prefill: 1, 2, 4, ... up to B, and
    B itself (a column of its own only where some B is not a power of two), whatever the stages."""
    if phase is Phase.DECODE:
        m = np.minimum(stages, batch)[..., None]
    else:
        powers = 2 ** np.arange(int(np.log2(max(int(batch.max()), 1))) + 1)
        m = np.broadcast_to(powers, (batch.size, powers.size))
        if np.any(batch & (batch - 1)):  # B itself where it is not a power of two (else it is one already)
            m = np.concatenate([m, np.where(batch & (batch - 1), batch, 0)[:, None]], axis=1)
        m = np.where(m <= batch[:, None], m, 0)
    b = np.where(m > 0, -(-batch[:, None] // np.maximum(m, 1)), 0)
    return m, b


def send_bytes_per_chip(model: Model, ffn: FfnLayout, sizes: dict, shape: StepShape) -> np.ndarray:
    """The residual stream each chip holds between layers, B_b L E_(f,e): what it sends on (on a
    mesh of logical `sizes`: ints, or a Grid's arrays)."""
    e_shards = size(sizes, union(ffn.f_axes, ffn.e_axes))
    return ffn.tokens_per_chip(sizes, shape) * model.d_model / e_shards * ACTIVATION_BYTES


@dataclass(frozen=True, kw_only=True)
class StageView:
    """One stage of one pipelined point, as `explain` shows it: its own Evaluation at the point's
    micro-batch (rows too, if evaluated with detail) and its memory with the whole batch's KV cache."""

    index: int  # 0-based
    first_layer: int  # 1-based
    n_layers: int
    holds: tuple[str, ...]  # "input embedding", "output projection"
    evaluation: Evaluation  # one point: the stage at its micro-batch
    weight_bytes: float
    kv_bytes: float  # the KV cache of all the batch's sequences for this stage's layers
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
        out.append(
            StageView(
                index=i,
                first_layer=first_layer,
                n_layers=k,
                holds=holds,
                evaluation=_one_point(ev, at),
                weight_bytes=weights,
                kv_bytes=kv,
                activation_bytes=act,
                hbm_bytes=weights + kv + act,
            )
        )
        first_layer += k
    return tuple(out)


def _one_point(ev: Evaluation, j: int) -> Evaluation:
    """`ev` cut down to its point j (a one-element Evaluation, rows included)."""
    n = ev.batch.shape
    cut = lambda a: a[j : j + 1] if isinstance(a, np.ndarray) and a.shape == n else a  # noqa: E731
    rows = tuple(
        replace(
            r,
            **{
                f: cut(np.broadcast_to(getattr(r, f), n))
                for f in ("flops", "hbm_bytes", "comm_bytes", "compute_s", "memory_s", "comm_s")
            },
        )
        for r in ev.rows
    )
    fields = {f: cut(getattr(ev, f)) for f in ev.__dataclass_fields__ if f not in ("rows", "formats")}
    return replace(ev, **fields, rows=rows, formats=(ev.formats_at(j),))
