"""The cost model: a layout's per-chip FLOPs, HBM bytes and collectives to seconds, MFU, cost and
memory use, vectorised over the batch axis.

Per step (prefill: one forward pass; decode: one token per sequence):

    compute_s = sum over einsums of FLOPs * (1 + matmul_half_rows / m) / (peak of its format * efficiency)
                (m: the einsum's per-chip rows; a matmul of m rows runs at
                 efficiency * m / (m + matmul_half_rows), as if it had matmul_half_rows more;
                 einsums against weights at the weight format's peak - bf16, fp8, int8 or fp4,
                 the sparse peak with --sparsity 2:4 - and QK, AV at the bf16 peak; efficiency:
                 matmul_efficiency, or narrow_matmul_efficiency at a peak above the bf16 one)
    memory_s  = sum(HBM bytes read) / (hbm_bytes_per_s * hbm_efficiency)
                (weights each chip reads, gathered or stationary, and in decode the whole KV cache)
    local_s   = sum over the step's kernels of max(compute_s of the kernel, memory_s of the kernel)
                (a kernel: one einsum with the weights it reads, one HBM read, or the attention
                 core - QK, AV and the KV-cache read it streams; `kernel_seconds`. An einsum row
                 that launches several matmuls, Q, K, V then O, is one roofline: they share its
                 rows, so their bounds differ only where K, V run on fewer tokens)
    comm_s    = sum of collective times (planner.cost.network) = k_a + k_w, where
                k_w: the weight all-gathers of weight-gathered layouts, and k_a: the rest
    step_s    = combine(local_s, comm_s) + n_layers * layer_overhead_s
                + n_kernels * kernel_overhead_s + n_layers * tokens_per_chip * token_overhead_s
                (tokens_per_chip: the FFN layout's batch shard times the tokens per sequence in
                 the step, FfnLayout.tokens_per_chip; the per-token work outside the matmuls and
                 the attention core - norms, activations, residual adds, rotary, quantisation,
                 sampling - done for every token a chip holds: a tensor-parallel group repeats
                 it on every chip, a batch-sharded layout splits it)
                (n_kernels: the matmul kernels of the step, Term.kernels of every einsum; the
                 roofline of one matmul plus a fixed time per kernel is what GPU GEMM tables show)

In code, `step_costs` is this formula top to bottom, from a step's parts (each layout's terms,
which planner.cost.step_parts supplies: formats, parts shared between candidates, a Grid's rows);
`evaluate` adds the collectives' seconds and combines them. `combine` (planner.cost.step) is the
overlap policy: the critical path of local time and the activation collectives, or all the
traffic if that lasts longer.

Each layer's terms repeat n_layers times; the output projection (logits, W_emb[E, V_xyz]) runs
once per step for one token per sequence. Metrics follow the reference file's conventions:
    MFU  = 2 * n_params_nominal * tokens / (chips * peak_bf16 * latency_s)  (bf16 peak in every format)
           (without a nominal count: Model.mfu_flops, the model's matmul FLOPs, in its place;
           for a mixture of experts, the active parameters: those one token uses)
    cost = chips * latency_s / tokens  (chip-seconds per token)
with tokens = batch * input_tokens (prefill) or batch * output_tokens (decode).

Memory per chip = stored weights + KV cache + working set (one layer's gathered weights for
weight-gathered layouts, and the residual stream in and out of a layer). F-sized intermediates
are assumed processed in chunks and are not counted. It must fit in the chip's HBM less the
runtime's `memory_reserve`. Weights and KV cache are stored in their formats (scales included,
`planner.specs.formats`); activations and collectives stay bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.grid import Grid, at_rows
from planner.cost.kernels import kernel_seconds, step_seconds
from planner.cost.layouts import AttentionLayout, ExpertLayout, FfnLayout, Term
from planner.cost.line_tables import LineCache, network_seconds
from planner.cost.mesh import Mesh
from planner.cost.network import latency_line, ring_steps
from planner.cost.overlap import two_batch
from planner.cost.step import BOUNDS, bound, combine, critical_path, step_overlap, step_time
from planner.cost.step_parts import StepParts, collective_arrays, on_layers, repeated, step_parts
from planner.specs.formats import Formats, KvFormat, Sparsity
from planner.specs.hardware import Cluster, WeightFormat
from planner.specs.model import Model
from planner.specs.plan import Phase, Workload


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One discrete choice of the search; the batch axis is swept alongside it."""

    phase: Phase
    mesh: Mesh
    ffn: FfnLayout
    attention: AttentionLayout
    weights: WeightFormat
    experts: ExpertLayout | None = None  # MoE models: the routed experts' layout
    stages: int = 1  # pipeline stages (planner.cost.pipeline); `mesh` is then one stage's mesh
    kv_cache: KvFormat = KvFormat.BF16
    sparsity: Sparsity = Sparsity.DENSE

    @property
    def formats(self) -> Formats:
        return Formats(weights=self.weights, kv_cache=self.kv_cache, sparsity=self.sparsity)

    @property
    def micro_batches(self) -> int:  # two-batch overlap: its expert layout's (1: none)
        return self.experts.micro_batches if self.experts is not None else 1


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """Costs of one candidate, each an array over `batch` (kept flat: pipeline.py builds, picks and
    cuts these fields by name, and the renderers read them by name)."""

    # what was costed: point i has batch[i] and formats_at(i)
    candidate: Candidate
    model: Model
    workload: Workload
    batch: np.ndarray
    formats: tuple[Formats, ...]  # formats of point i: formats[i * len(formats) // len(batch)]
    tokens: np.ndarray
    # one step's time and its parts (the module docstring's formula)
    compute_s: np.ndarray
    memory_s: np.ndarray
    local_s: np.ndarray  # compute and memory as the step's kernels combine them (each its max, summed)
    comm_s: np.ndarray
    prefetched_s: np.ndarray  # the part of comm_s that is prefetched weight all-gathers
    critical_s: np.ndarray  # compute, memory and activation collectives combined (before overhead)
    overlap: float  # the cluster's overlap fraction used to combine them
    overhead_s: float | np.ndarray  # per point with a token_overhead_s
    overhead_kernels: int = 0  # its parts: matmul kernels per step (LayerCosts.kernels) and the tokens
    overhead_tokens: float | np.ndarray = 0.0  # per chip that pay token_overhead_s per layer
    step_s: np.ndarray
    bound: np.ndarray  # index into BOUNDS
    micro_batches: int = 1  # two-batch overlap (planner.cost.overlap): its chains, each the whole step's
    compute_chain_s: np.ndarray | None = None
    comm_chain_s: np.ndarray | None = None
    # the collectives' fixed latency
    ring_steps: int  # ring steps of all collectives per step; each pays collective_latency_s
    prefetched_ring_steps: int  # those of the prefetched weight all-gathers
    comm_latency_s: float  # the part of comm_s that is latency: each collective's time at zero bytes
    comm_latency_by_level_s: tuple[tuple[str, float], ...]  # comm_latency_s per switched level ("torus": one)
    # per latency (prefill: one step; decode: output_tokens steps)
    latency_s: np.ndarray
    mfu: np.ndarray
    cost_chip_s_per_token: np.ndarray
    tokens_per_s: np.ndarray
    # memory per chip
    weight_bytes: np.ndarray | float
    kv_bytes: np.ndarray
    activation_bytes: np.ndarray
    hbm_bytes: np.ndarray
    hbm_fraction: np.ndarray
    # explain's rows (planner.cost.rows.Row), only with evaluate(detail=True)
    rows: tuple

    def formats_at(self, i: int) -> Formats:
        return self.formats[i * len(self.formats) // self.batch.size]

    def weights_at(self, i: int) -> WeightFormat:
        return self.formats_at(i).weights


def evaluate(
    model: Model,
    cluster: Cluster,
    workload: Workload,
    candidate: Candidate,
    batch: np.ndarray,
    detail: bool = False,
    formats: tuple[Formats, ...] | None = None,
    *,
    first: bool = True,
    last: bool = True,
    lines: LineCache | None = None,
) -> Evaluation:
    """Costs of `candidate` over the batch sizes `batch`; `detail` also keeps the explain rows.
    With `formats`, every combination of number formats is swept too (point i has
    batch[i % len(batch)] and formats[i // len(batch)]), and the candidate's own are ignored.
    Every format must have a peak on the chip (`Chip.supports`). A pipeline stage
    (planner.cost.pipeline) is `model` with its layers only, holding the input embedding if
    `first` and the output projection if `last`; a whole model is both. `lines`: the collectives'
    lines, if kept (a search's)."""
    c = candidate
    layer = layer_costs(model, cluster, workload, c, batch, formats, first=first, last=last)
    batch, formats, terms, cal = layer.batch, layer.formats, layer.terms, cluster.calibration
    lines, by_level = lines or LineCache(cluster), {}  # collective latency per switched level (or "torus")
    comm_s, prefetched_s = (a[0] for a in network_costs(cluster, (c.mesh,), layer, lines))
    mb = layer.micro_batches  # each micro-batch runs every collective
    for t, repeat in ((t, mb * r) for t, r in terms):
        if t.collective is not None:  # the line fastest at zero bytes, split by level
            for level, seconds in latency_line(
                lines(c.mesh, t.collective.kind, t.collective.axes, t.collective.prefetched, t.collective.routed)
            ).latency_by_level:
                by_level[level] = by_level.get(level, 0.0) + repeat * seconds
    steps = sum(mb * repeat * ring_steps(c.mesh, t.collective) for t, repeat in terms if t.collective is not None)
    prefetched_steps = sum(
        mb * repeat * ring_steps(c.mesh, t.collective)
        for t, repeat in terms
        if t.collective is not None and t.collective.prefetched
    )
    if detail:  # imported here: a search never builds explain rows
        from planner.cost.rows import explain_row
    rows = (
        tuple(
            explain_row(cluster, c.mesh, term, mb * repeat, batch.shape, formats[0])
            for term, repeat in terms
            if not c.mesh.moves_nothing(term)
        )
        if detail
        else ()
    )
    compute_s, memory_s, overhead_s = layer.compute_s, layer.memory_s, layer.overhead_s
    critical_s, step_s, latency_s, mfu = timing(cluster, workload, layer, comm_s, prefetched_s)
    tokens, hbm_bytes = layer.tokens, layer.hbm_bytes
    return Evaluation(
        candidate=c,
        model=model,
        workload=workload,
        batch=batch,
        tokens=tokens,
        compute_s=compute_s,
        memory_s=memory_s,
        local_s=layer.local_s,
        comm_s=comm_s,
        prefetched_s=prefetched_s,
        critical_s=critical_s,
        overlap=step_overlap(cal, mb),
        ring_steps=steps,
        prefetched_ring_steps=prefetched_steps,
        comm_latency_s=sum(by_level.values()),
        comm_latency_by_level_s=tuple(by_level.items()),
        overhead_s=overhead_s,
        overhead_kernels=layer.kernels,
        overhead_tokens=layer.tokens_per_chip,
        step_s=step_s,
        latency_s=latency_s,
        mfu=mfu,
        cost_chip_s_per_token=c.mesh.chips * latency_s / tokens,
        tokens_per_s=tokens / latency_s,
        weight_bytes=layer.weight_bytes,
        kv_bytes=layer.kv_bytes,
        activation_bytes=layer.activation_bytes,
        hbm_bytes=hbm_bytes,
        hbm_fraction=hbm_bytes / cluster.chip.hbm_bytes,
        bound=bound(compute_s, memory_s, layer.local_s, comm_s - prefetched_s, critical_s, comm_s),
        rows=rows,
        formats=formats,
        micro_batches=mb,
        compute_chain_s=layer.local_s if mb > 1 else None,
        comm_chain_s=comm_s if mb > 1 else None,
    )


@dataclass(frozen=True, kw_only=True)
class LayerCosts:
    """A candidate's costs up to its collectives' seconds: everything its logical mesh sizes set,
    the same for every mesh grouping with those sizes (which differ only in network time)."""

    candidate: Candidate
    chips: int | np.ndarray  # the mesh's chips ((meshes, 1) for a Grid)
    batch: np.ndarray
    formats: tuple[Formats, ...]
    terms: tuple[tuple[Term, int], ...]  # (term, layers it repeats over)
    collective_bytes: np.ndarray  # (collectives, points), or (collectives, meshes, points) for a Grid
    repeats: np.ndarray  # (collectives, 1), or (collectives, meshes, 1) for a Grid whose model's layers vary
    prefetched: np.ndarray  # (collectives,) bool
    compute_s: np.ndarray
    memory_s: np.ndarray
    local_s: np.ndarray  # each kernel's max(compute, memory), summed
    kernels: int | np.ndarray  # matmul kernels per step (Term.kernels), each paying kernel_overhead_s
    tokens_per_chip: float | np.ndarray  # tokens paying token_overhead_s per layer (0 where it is 0)
    overhead_s: float | np.ndarray  # per point with a token_overhead_s; per Grid row where the layers vary
    tokens: np.ndarray
    steps: int | np.ndarray  # steps per latency: 1 (prefill) or output_tokens (decode), per row with phases
    mfu_flops: np.ndarray  # MFU's numerator (Model.mfu_flops)
    weight_bytes: np.ndarray | float
    kv_bytes: np.ndarray
    activation_bytes: np.ndarray
    hbm_bytes: np.ndarray
    micro_batches: int = 1  # two-batch overlap: terms one micro-batch's, seconds and repeats the step's


def layer_costs(
    model: Model,
    cluster: Cluster,
    workload: Workload,
    candidate: Candidate,
    batch: np.ndarray,
    formats: tuple[Formats, ...] | None = None,
    *,
    first: bool = True,
    last: bool = True,
    shared: dict | None = None,
    grid: Grid | None = None,
) -> LayerCosts:
    """The part of `evaluate` that does not depend on how logical axes map onto physical pieces:
    `step_costs` of the candidate's parts (planner.cost.step_parts supplies them);
    `shared`: parts costed for candidates of the same phase, batch and formats (a sweep's), kept
    (the layers' parts are the same for a pipeline stage's model, but for its local layers).
    With `grid`, the candidate's layouts on every mesh of the grid (its mesh is not used): each
    figure gains a leading axis over the grid's meshes (`shared` then kept for that grid only)."""
    if candidate.micro_batches > 1:
        return two_batch(
            layer_costs,
            model,
            cluster,
            workload,
            candidate,
            batch,
            formats,
            first=first,
            last=last,
            shared=shared,
            grid=grid,
        )
    parts = step_parts(
        model, cluster, workload, candidate, batch, formats, first=first, last=last, shared=shared, grid=grid
    )
    return step_costs(model, cluster, candidate, parts)


def step_costs(model: Model, cluster: Cluster, candidate: Candidate, p: StepParts) -> LayerCosts:
    """One step from its parts, per chip: the formula of this module's docstring, top to bottom
    (docs/cost-model.md's notation: c_k, h_k a kernel's compute and HBM seconds, layers the
    model's, T_chip the tokens a chip holds). Figures are arrays over the points, with a Grid's
    rows first where `p` has them."""
    c, cal, layers = candidate, cluster.calibration, model.n_layers
    # the step's rows: attention on every layer, the FFN layout on the dense layers, the MoE
    # layers' parts (routed and shared experts), the output projection once (0 on a pipeline's
    # stages but the last)
    terms = repeated(((p.attention, layers), (p.ffn, p.dense_layers), *p.moe, (p.head, p.head_repeat)))

    # local = sum over kernels k of max(c_k, h_k); compute_s, memory_s: sum of c_k, of h_k
    compute_s, memory_s, local_s = step_seconds(kernel_seconds(cluster, terms, p.weight_peak), p.batch.shape)
    kernels = sum(repeat * term.kernels for term, repeat in terms if term.rows is not None)  # matmul kernels

    # fixed times: per layer, per matmul kernel, and per layer for each token a chip holds (T_chip,
    # only where it costs something)
    tokens_per_chip = c.ffn.tokens_per_chip(p.sizes, p.shape) if cal.token_overhead_s else 0.0
    overhead_s = (
        model.n_layers * cal.layer_overhead_s
        + kernels * cal.kernel_overhead_s
        + model.n_layers * cal.token_overhead_s * tokens_per_chip
    )

    # memory per chip: stored weights, the KV cache, and one layer's working set (the residual
    # stream in and out; gathered weights of a dense or an MoE layer, whichever is larger)
    if p.moe:
        weight_bytes = (
            layers * p.attention.weight_bytes_stored
            + p.dense_layers * p.ffn.weight_bytes_stored
            + sum(repeat * part.weight_bytes_stored for part, repeat in p.moe)
            + p.head.weight_bytes_stored
        )
        ffn_working = np.maximum(
            on_layers(p.dense_layers, p.ffn.working_bytes), sum(part.working_bytes for part, _ in p.moe)
        )
    else:  # the same with dense_layers = layers, summed in the order it always was (to the last bit)
        weight_bytes = (
            layers * (p.ffn.weight_bytes_stored + p.attention.weight_bytes_stored) + p.head.weight_bytes_stored
        )
        ffn_working = p.ffn.working_bytes
    kv_bytes = layers * p.attention.kv_bytes_stored + np.zeros(p.batch.shape)
    activation_bytes = c.ffn.residual_bytes(model, p.sizes, p.shape) + ffn_working + p.attention.working_bytes

    tokens = p.batch * p.tokens_per_sequence
    collective_bytes, repeats, prefetched = collective_arrays(terms, p.batch, p.chips)
    return LayerCosts(
        candidate=c,
        chips=p.chips,
        batch=p.batch,
        formats=p.formats,
        terms=tuple(terms),
        collective_bytes=collective_bytes,
        repeats=repeats,
        prefetched=prefetched,
        compute_s=compute_s,
        memory_s=memory_s,
        local_s=local_s,
        kernels=kernels,
        tokens_per_chip=tokens_per_chip,
        overhead_s=overhead_s,
        tokens=tokens,
        steps=p.steps,
        mfu_flops=model.mfu_flops(tokens, p.batch * p.logits_per_sequence),
        weight_bytes=weight_bytes,
        kv_bytes=kv_bytes,
        activation_bytes=activation_bytes,
        hbm_bytes=weight_bytes + kv_bytes + activation_bytes,
    )


def step_kernels(
    model: Model, cluster: Cluster, workload: Workload, candidate: Candidate, batch: np.ndarray
) -> list[tuple]:
    """`kernel_seconds` of `candidate`'s step at `batch` (its own formats): what `local_s` sums."""
    layer = layer_costs(model, cluster, workload, candidate, batch)
    return kernel_seconds(cluster, layer.terms, candidate.formats.weight_peak_flop_per_s(cluster.chip))


def network_costs(cluster: Cluster, meshes, layer: LayerCosts, lines: LineCache | None = None):
    """(comm_s, prefetched_s), each (meshes, points): the layer's collectives on each of `meshes`."""
    return network_seconds(
        LineCache(cluster) if lines is None else lines,
        meshes,
        [term.collective for term, _ in layer.terms if term.collective is not None],
        layer.collective_bytes,
        layer.repeats,
        layer.prefetched,
    )


def timing(cluster: Cluster, workload: Workload, layer: LayerCosts, comm_s, prefetched_s, rows=None):
    """(critical_s, step_s, latency_s, mfu) from a layer's costs and its network seconds (any
    shape that broadcasts against the points); `rows`: for a Grid's costs, the grid row of each
    row of the network seconds."""
    cal = cluster.calibration
    local_s, chips = (at_rows(x, rows) for x in (layer.local_s, layer.chips))
    critical_s = critical_path(local_s, comm_s - prefetched_s, step_overlap(cal, layer.micro_batches))
    step_s = step_time(critical_s, comm_s) + at_rows(layer.overhead_s, rows)  # combine's, its critical path once
    latency_s = step_s * at_rows(layer.steps, rows)
    mfu = at_rows(layer.mfu_flops, rows) / (chips * cluster.chip.peak_bf16_flop_per_s * latency_s)
    return critical_s, step_s, latency_s, mfu


__all__ = [
    "BOUNDS",
    "Candidate",
    "Evaluation",
    "LayerCosts",
    "combine",
    "critical_path",
    "evaluate",
    "layer_costs",
    "network_costs",
    "step_kernels",
    "step_overlap",
    "timing",
]
