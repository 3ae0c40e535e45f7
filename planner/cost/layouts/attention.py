"""Attention layouts (paper Figure 5), crossed with every FFN layout.

Projections follow the FFN's layout with heads in place of d_ff: W_Q[E_e, N_f H] etc.; with the
parallel block their input all-gather and output reduce-scatter are shared with the FFN's.
The attention core (QK, softmax, AV and the KV cache) is then sharded one of two ways:

- `heads`: heads over every axis the FFN does not shard batch over; batch over the FFN's batch
  axes. A multiquery KV cache is replicated on every head shard.
- `batch`: batch over every axis except those kv heads can be split over (none for multiquery,
  some for grouped-query), reached by an all-to-all of Q and back; the KV cache shrinks by the
  number of batch shards. With fewer sequences than batch shards, shards are padded. When
  every chip holds all kv heads' projection weights (multiquery), it projects K and V only for
  the sequences it attends to (times its e group, whose partial sums it helps reduce).

Head counts that do not divide their shards are padded (as the paper pads PaLM 540B's 48 heads
to 64 on 64 chips), and the extra parameters are charged in weights, FLOPs and bytes; kv heads
fewer than their shards are replicated.

What the core's dataflow looks like on a mesh (`Core`: its axes, whether a chip projects K, V
for its own sequences only, how new K, V reach the cache) is decided from the mesh's logical
sizes; `cost` then computes its figures with arithmetic alone, so it also runs on many meshes
at once (sizes as (meshes, 1) arrays) whose dataflow is the same (the search's sweep).

Local (sliding-window) layers attend to at most their window and hold at most that many tokens
of KV cache per sequence: with local layers the core's rows split into global and local layers
(each row says how many layers it runs on), and the KV cache per layer is their mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np

from planner.cost.layouts.base import (
    CollectiveKind,
    LayerCost,
    StepShape,
    Term,
    activation,
    ceil_div,
    collective_term,
    complement,
    partial_sum,
    sharded,
    size,
    union,
    windowed,
)
from planner.cost.layouts.ffn import FfnLayout
from planner.specs.hardware import ACTIVATION_BYTES
from planner.specs.model import Block, Model

AG, RS = CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER
AR, A2A = CollectiveKind.ALL_REDUCE, CollectiveKind.ALL_TO_ALL


@dataclass(frozen=True)
class Core:
    """The attention core's dataflow on a mesh, decided from its logical sizes."""

    batch_axes: str  # axes sharding the batch
    head_axes: str  # axes sharding the heads
    own_kv: bool  # each chip projects K, V for its own sequences only (its own batch shard)
    kv_reshard: str  # axes of the all-to-all taking new K, V to the cache ("": none)
    reduce_kv: CollectiveKind  # how new K, V partial sums over e are reduced


@dataclass(frozen=True, kw_only=True)
class AttentionLayout:
    name: str
    notation: str
    shards_batch: bool  # True: batch-sharded core; False: head-sharded core

    def core_axes(self, model: Model, ffn: FfnLayout, sizes: dict[str, int]) -> tuple[str, str]:
        """(axes sharding the batch, axes sharding the heads) of the attention core."""
        return self._core_axes(model.n_kv_heads, ffn, sizes)

    def _core_axes(self, n_kv_heads: int, ffn: FfnLayout, sizes: dict[str, int]) -> tuple[str, str]:
        free = complement(ffn.batch_axes)
        if not self.shards_batch:
            return ffn.batch_axes, free
        kv_axes = _kv_axes(n_kv_heads, free, ffn.f_axes, sizes["x"], sizes["y"], sizes["z"])
        return complement(kv_axes), kv_axes

    def applies(self, model: Model, ffn: FfnLayout, sizes: dict[str, int]) -> bool:
        """False when this layout would coincide with the other one on this mesh."""
        head_sharded = size(sizes, complement(ffn.batch_axes)) > 1
        if not self.shards_batch:
            return head_sharded
        batch_axes, _ = self.core_axes(model, ffn, sizes)
        return size(sizes, batch_axes) > size(sizes, ffn.batch_axes) or not head_sharded

    def padded_heads(self, model: Model, ffn: FfnLayout, sizes: dict[str, int]) -> int:
        shards = size(sizes, ffn.f_axes)
        if not self.shards_batch:
            shards = _lcm(shards, size(sizes, complement(ffn.batch_axes)))
        return -(-model.n_heads // shards) * shards

    def core(self, model: Model, ffn: FfnLayout, sizes: dict[str, int]) -> Core:
        """The core's dataflow on a mesh of logical `sizes` (plain ints). New K, V (partial sums
        over e) reach the cache's sharding. Head-sharded: a reduce-scatter when the chips of an
        e group need different kv heads of the ones they projected, else an all-reduce (a head
        every chip of the group needs). Batch-sharded: a reduce-scatter along batch, then, unless
        the chip already projected exactly its kv heads for its sequences, an all-to-all over
        the axes the attention re-shards. When every chip holds all kv heads' projection weights
        and attends only to its batch shard, it projects K, V for those sequences alone."""
        return _core(self, model.n_kv_heads, ffn, sizes["x"], sizes["y"], sizes["z"])

    def _core(self, K: int, ffn: FfnLayout, sizes: dict[str, int]) -> Core:
        f, e = size(sizes, ffn.f_axes), size(sizes, ffn.e_axes)
        batch_axes, head_axes = self._core_axes(K, ffn, sizes)
        projected = -(-K // f)  # kv heads each chip projects (replicated up to the head shards)
        kv_heads_per_chip = -(-K // size(sizes, head_axes))
        if not self.shards_batch:
            return Core(batch_axes, head_axes, False, "", RS if kv_heads_per_chip * e <= projected else AR)
        own_kv = not head_axes and projected == K
        to_batch = "".join(a for a in batch_axes if a not in ffn.batch_axes)
        aligned = (
            projected == kv_heads_per_chip
            and _spanned(head_axes, sizes) == _spanned(ffn.f_axes, sizes)
            and set(to_batch) <= set(ffn.e_axes)
        )
        return Core(batch_axes, head_axes, own_kv, "" if own_kv or aligned else union(to_batch, head_axes), RS)

    def cost(
        self,
        model: Model,
        ffn: FfnLayout,
        sizes: dict[str, int],
        shape: StepShape,
        weight_bytes,
        kv_bytes=ACTIVATION_BYTES,
        core: Core | None = None,
    ) -> LayerCost:
        """`kv_bytes`: stored bytes per KV-cache element (the cache's format; new K, V move in
        bf16). `core`: the core's dataflow, given when `sizes` are arrays of many meshes."""
        core = self.core(model, ffn, sizes) if core is None else core
        E, H, K = model.d_model, model.d_head, model.n_kv_heads
        e, f = size(sizes, ffn.e_axes), size(sizes, ffn.f_axes)
        heads = self.padded_heads(model, ffn, sizes)
        kv_proj = -(-K // f) * f  # kv heads replicated up to the head shards of the projections
        batch_axes, head_axes = core.batch_axes, core.head_axes
        core_batch = ceil_div(shape.batch, size(sizes, batch_axes))
        core_heads = heads / size(sizes, head_axes)
        kv_heads_per_chip = -(-K // size(sizes, head_axes))
        tokens = ffn.tokens_per_chip(sizes, shape)
        act = ACTIVATION_BYTES
        b, fx, ex = ffn.batch_axes, ffn.f_axes, ffn.e_axes

        qo_params = 2 * E * heads * H / (e * f)
        kv_params = 2 * E * kv_proj * H / (e * f)
        q_bytes = tokens * (heads / f) * H * act
        kv_tokens, kv_rows = tokens, ""
        if core.own_kv:  # its own batch shard and, for the partial sums over e, its e group's
            kv_tokens = np.minimum(tokens, core_batch * e * shape.tokens)
            kv_rows = " (K, V for own batch shard)"
        kv_new_bytes = kv_tokens * (kv_proj / f) * H * 2 * act
        kv_cache = core_batch * shape.cached * 2 * kv_heads_per_chip * H * kv_bytes
        core_flops = 4.0 * core_batch * shape.tokens * shape.attended * core_heads * H
        shards = ffn.weight_shards(sizes)  # every chip, or one (the weights whole on every chip)
        stored = 2 * E * (heads + kv_proj) * H * weight_bytes / shards

        def latent_at(s: StepShape):
            from planner.cost.layouts.latent import latent_cost  # MLA models only: imported when one is costed

            return latent_cost(
                model,
                heads=heads,
                kv_proj=kv_proj,
                e=e,
                f=f,
                tokens=tokens,
                kv_tokens=kv_tokens,
                core_batch=core_batch,
                core_heads=core_heads,
                kv_heads_per_chip=kv_heads_per_chip,
                shape=s,
            )

        if model.latent is not None:  # multi-head latent attention (planner.cost.layouts.latent)
            mla = latent_at(shape)
            qo_params, kv_params, q_bytes = mla.qo_params, mla.kv_params, mla.q_bytes
            kv_new_bytes, kv_cache, core_flops = mla.kv_new_bytes, mla.kv_cache * kv_bytes / act, mla.core_flops
            stored = mla.stored_params * weight_bytes / shards

        def core_at(s: StepShape) -> tuple:
            """(QK/AV FLOPs, KV cache bytes) of the attention core at step shape `s`."""
            if s is shape:
                return core_flops, kv_cache
            if model.latent is not None:
                return latent_at(s).core_flops, latent_at(s).kv_cache * kv_bytes / act
            return (
                4.0 * core_batch * s.tokens * s.attended * core_heads * H,
                core_batch * s.cached * 2 * kv_heads_per_chip * H * kv_bytes,
            )

        groups = _layer_groups(model, shape)
        cores = [core_at(s) for _, s, _ in groups]
        if groups[0][0] is not None:  # local layers: the KV cache per layer is the mean over layers
            kv_cache = sum(layers * kv for (layers, _, _), (_, kv) in zip(groups, cores)) / model.n_layers
        to_batch = "".join(a for a in batch_axes if a not in b)
        reduce_kv, kv_reshard = core.reduce_kv, core.kv_reshard
        terms = [
            Term(
                name="einsum W_Q, W_K, W_V, W_O",
                notation=lambda: (
                    f"W_Q[{sharded('E', ex)}, {sharded('N', fx)} H], "
                    f"W_KV[{sharded('E', ex)}, {sharded('K', fx)} H]{kv_rows}"
                ),
                flops=2.0 * (tokens * qo_params + kv_tokens * kv_params),
                hbm_bytes=(qo_params + kv_params) * weight_bytes,
                rows=tokens,
                kernels=2,
            ),
            collective_term("reduce-scatter Q", lambda: _q(b, fx) + partial_sum(ex), RS, ex, q_bytes),
            collective_term(
                f"{reduce_kv.value} new K, V", lambda: _kv(b, fx) + partial_sum(ex), reduce_kv, ex, kv_new_bytes
            ),
            collective_term(
                "all-to-all new K, V to the cache",
                lambda: "-> " + _kv(batch_axes, head_axes),
                A2A,
                kv_reshard,
                kv_new_bytes / e,
            ),
        ]
        if self.shards_batch:
            terms.append(
                collective_term(
                    "all-to-all Q to batch shards",
                    lambda: "-> " + _q(batch_axes, head_axes),
                    A2A,
                    to_batch,
                    q_bytes / e,
                )
            )
        for (layers, _, which), (flops, _) in zip(groups, cores):
            terms.append(
                Term(
                    name="einsum QK, AV" + which,
                    layers=layers,
                    notation=lambda: activation(batch_axes, ("S", ""), ("N", head_axes), ("H", "")),
                    flops=flops,
                    rows=shape.tokens * core_heads / kv_heads_per_chip,  # queries sharing a K, V head
                    activation_matmul=True,
                    kernel="attention" + which,
                )
            )
        if np.any(shape.reads_cache):  # decode (a Grid of both phases: per row, prefill's read nothing)

            def cache() -> str:
                replicas = size(sizes, head_axes) // K if K < size(sizes, head_axes) else 1
                copies = f" (each kv head on {replicas} chips)" if replicas > 1 else ""
                return f"KV[{sharded('B', batch_axes)}, S, {sharded('K', head_axes)}, H]{copies}"

            for (layers, _, which), (_, kv) in zip(groups, cores):
                terms.append(
                    Term(
                        name="read KV cache" + which,
                        notation=cache,
                        layers=layers,
                        kernel="attention" + which,
                        hbm_bytes=kv if np.ndim(shape.reads_cache) == 0 else kv * shape.reads_cache,
                    )
                )
        if self.shards_batch:
            terms.append(
                collective_term(
                    "all-to-all output to head shards", lambda: "-> " + _q(b, union(fx, ex)), A2A, to_batch, q_bytes / e
                )
            )
        terms.append(collective_term("gather attention output", lambda: "-> " + _q(b, fx), AG, ex, q_bytes))
        used_weight_bytes = (qo_params + kv_params) * weight_bytes
        terms.append(
            collective_term(
                "gather attention weights",
                lambda: f"W_QKVO -> [{sharded('E', ex)}, {sharded('N', fx)} H]",
                AG,
                ffn.gather_axes,
                used_weight_bytes,
                prefetched=True,
            )
        )
        if model.block is Block.SERIAL:
            terms.extend(ffn.boundary_collectives(sizes, shape, model))
        return LayerCost(
            terms=tuple(t for t in terms if t is not None),
            weight_bytes_stored=stored,
            kv_bytes_stored=kv_cache,
            working_bytes=used_weight_bytes if ffn.gather_axes else 0.0,
        )


def _layer_groups(model: Model, shape: StepShape) -> list[tuple[int | None, StepShape, str]]:
    """(layers, step shape, row suffix) of the attention core: one group for all layers (None),
    or, with local attention, the global layers and the local ones with the step as their
    window bounds it (each group left out when it has no layers)."""
    if not model.n_local_layers:
        return [(None, shape, "")]
    local = windowed(shape, model.window_tokens)
    groups = [
        (model.n_global_layers, shape, " (global layers)"),
        (model.n_local_layers, local, f" (local layers, window {model.window_tokens})"),
    ]
    return [group for group in groups if group[0]]


def _lcm(a, b):
    """Least common multiple of two chip counts (ints, or arrays over many meshes)."""
    return np.lcm(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else math.lcm(a, b)


def _spanned(axes: str, sizes: dict[str, int]) -> set[str]:
    """The axes of `axes` that span more than one chip."""
    return {a for a in axes if sizes[a] > 1}


def _q(batch_axes: str, head_axes: str) -> str:
    """Q (or the attention output) sharded over batch and heads: `B_x L N_yz H`."""
    return activation(batch_axes, ("N", head_axes), ("H", ""))


def _kv(batch_axes: str, head_axes: str) -> str:
    """New K (or V) sharded over batch and kv heads: `B_x L K_yz H`."""
    return activation(batch_axes, ("K", head_axes), ("H", ""))


@lru_cache(maxsize=1 << 16)
def _core(layout: AttentionLayout, n_kv_heads: int, ffn: FfnLayout, x: int, y: int, z: int) -> Core:
    """AttentionLayout.core, kept per layouts and sizes (a search asks for it once per mesh)."""
    return layout._core(n_kv_heads, ffn, {"x": x, "y": y, "z": z})


@lru_cache(maxsize=1 << 16)
def _kv_axes(n_kv_heads: int, free: str, f_axes: str, x: int, y: int, z: int) -> str:
    """The largest group of `free` axes whose chip count divides the kv heads (ties: prefer axes
    the projections already shard heads over, then the last axes), on a mesh of logical sizes
    x, y, z."""
    sizes = {"x": x, "y": y, "z": z}
    best, best_key = "", (1, 0, "")
    for r in range(1, len(free) + 1):
        for axes in combinations(free, r):
            group = "".join(axes)
            k = size(sizes, group)
            if k > 1 and n_kv_heads % k == 0:
                key = (k, sum(a in f_axes for a in group), group)
                if key > best_key:
                    best, best_key = group, key
    return best


ATTENTION_LAYOUTS = {
    layout.name: layout
    for layout in (
        AttentionLayout(
            name="heads", notation="B_b L N_rest H; KV heads split like N (replicated if fewer)", shards_batch=False
        ),
        AttentionLayout(
            name="batch", notation="all-to-all Q -> B_rest L N_kv H; KV cache B_rest L K_kv H", shards_batch=True
        ),
    )
}
