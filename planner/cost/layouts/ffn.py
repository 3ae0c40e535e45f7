"""FFN layouts (paper Figure 2). Each is a sharding spec run through one generic dataflow.

Weights are stored 2D weight-stationary, E over x and F over yz (`W_in[E_x, F_yz]`), so prefill
(weight-gathered) and decode (weight-stationary) share one copy. A layout says over which axes
tokens (batch) are sharded, F is sharded, E is sharded (partial sums), and weights are gathered:

    activations B_b L E_(f,e) -all-gather(f)-> B_b L E_e
    einsum W_in[E_e, F_f]      -> B_b L F_f {U_e}    -reduce-scatter(e)-> ... -all-gather(e)->
    einsum W_out[F_f, E_e]     -> B_b L E_e {U_f}    -reduce-scatter(f)-> B_b L E_(f,e)
    weights (stored E_x F_yz)  -all-gather(g)-> W[E_e, F_f]

For ws2d this is exactly the paper's dataflow; for ws1d, e is empty; for weight-gathered
layouts, b = g and e is empty.

`dp` keeps the dense weights whole on every chip (`replicated`): tokens are sharded over every
axis and nothing is communicated, W_in[E, F] -> B_xyz L F. It is the dense half of the serving
layout of large mixtures of experts (SGLang's DP attention with `--moe-dense-tp-size 1` and a DP
LM head; DeepSeek-V3's inference system): attention, dense FFN layers, shared experts and the
embedding tables whole on every chip, each chip holding its batch shard's KV cache, and only the
routed experts sharded (the expert layouts). The search offers it for MoE models only: a dense
model whole on every chip is n one-chip replicas, which the one-chip rows (and `serve`'s
replicas) already cost. Communication per chip (two-matrix FFN, bf16, T = B*L tokens) is
the paper's Figure 3: ws2d 2T(E/X + F/YZ)*2 bytes; wg-x (2EF X/n + 2TE/X)*2; wg-xyz 2EF*2.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.cost.layouts.base import (
    CollectiveKind,
    LayerCost,
    StepShape,
    Term,
    activation,
    ceil_div,
    collective_term,
    partial_sum,
    sharded,
    size,
    union,
)
from planner.specs.hardware import ACTIVATION_BYTES
from planner.specs.model import Model

AG, RS = CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER


@dataclass(frozen=True, kw_only=True)
class FfnLayout:
    name: str
    notation: str
    batch_axes: str  # b: tokens (batch) sharded over these axes
    f_axes: str  # f: d_ff (and heads, for attention projections) sharded over these
    e_axes: str  # e: d_model sharded over these inside the matmuls (partial sums)
    gather_axes: str  # g: weights all-gathered over these before use
    groups: tuple[str, ...]  # axis groups that must each span > 1 chip for the layout to be distinct
    replicated: bool = False  # the dense weights whole on every chip (data-parallel); else one copy over all

    def applies(self, sizes: dict[str, int]) -> bool:
        return all(size(sizes, group) > 1 for group in self.groups)

    def weight_shards(self, sizes: dict[str, int]):
        """The chips one copy of the dense weights (FFN, attention, embeddings) is spread over:
        every chip, or one when each chip holds them whole."""
        return 1 if self.replicated else size(sizes, "xyz")

    def tokens_per_chip(self, sizes: dict[str, int], shape: StepShape):
        """B_b * L: each chip works on its batch shard (padded to whole shards)."""
        return ceil_div(shape.batch, size(sizes, self.batch_axes)) * shape.tokens

    def residual_bytes(self, model: Model, sizes: dict[str, int], shape: StepShape):
        """The residual stream a chip holds between layers, B_b L E_(f,e) (its batch shard padded
        to whole shards), twice: the block's input and its output."""
        e_shards = size(sizes, union(self.f_axes, self.e_axes))
        return 2.0 * self.tokens_per_chip(sizes, shape) * model.d_model / e_shards * ACTIVATION_BYTES

    def cost(self, model: Model, sizes: dict[str, int], shape: StepShape, weight_bytes: int) -> LayerCost:
        E, F = model.d_model, model.d_ff
        e, f = size(sizes, self.e_axes), size(sizes, self.f_axes)
        n_in = model.ffn.n_input_matrices
        tokens = self.tokens_per_chip(sizes, shape)
        act = ACTIVATION_BYTES
        b, fx, ex = self.batch_axes, self.f_axes, self.e_axes
        used_weight_bytes = model.ffn.n_matrices * (E / e) * (F / f) * weight_bytes
        terms = [
            collective_term(
                "gather FFN input",
                lambda: f"{activation(b, ('E', union(fx, ex)))} -> {activation(b, ('E', ex))}",
                AG,
                self.f_axes,
                tokens * (E / e) * act,
            ),
            Term(
                name="einsum W_in",
                notation=lambda: f"W_in[{sharded('E', ex)}, {sharded('F', fx)}]",
                flops=2.0 * tokens * (E / e) * (F / f) * n_in,
                hbm_bytes=n_in * (E / e) * (F / f) * weight_bytes,
                rows=tokens,
            ),
            collective_term(
                "reduce-scatter hidden",
                lambda: activation(b, ("F", fx)) + partial_sum(ex),
                RS,
                self.e_axes,
                n_in * tokens * (F / f) * act,
            ),
            collective_term(
                "gather hidden", lambda: "-> " + activation(b, ("F", fx)), AG, self.e_axes, tokens * (F / f) * act
            ),
            Term(
                name="einsum W_out",
                notation=lambda: f"W_out[{sharded('F', fx)}, {sharded('E', ex)}]",
                flops=2.0 * tokens * (F / f) * (E / e),
                hbm_bytes=(E / e) * (F / f) * weight_bytes,
                rows=tokens,
            ),
            collective_term(
                "reduce-scatter output",
                lambda: activation(b, ("E", ex)) + partial_sum(fx),
                RS,
                self.f_axes,
                tokens * (E / e) * act,
            ),
            collective_term(
                "gather FFN weights",
                lambda: f"W[E_x, F_yz] -> W[{sharded('E', ex)}, {sharded('F', fx)}]",
                AG,
                self.gather_axes,
                used_weight_bytes,
                prefetched=True,
            ),
        ]
        return LayerCost(
            terms=tuple(t for t in terms if t is not None),
            weight_bytes_stored=model.ffn_params_per_layer * weight_bytes / self.weight_shards(sizes),
            working_bytes=used_weight_bytes if self.gather_axes else 0.0,
        )

    def boundary_collectives(self, sizes: dict[str, int], shape: StepShape, model: Model) -> tuple[Term, ...]:
        """The block's input all-gather and output reduce-scatter: a serial block pays them again
        for attention; the parallel block shares them with the FFN."""
        tokens = self.tokens_per_chip(sizes, shape)
        d = tokens * (model.d_model / size(sizes, self.e_axes)) * ACTIVATION_BYTES
        terms = (
            collective_term(
                "gather attention input", lambda: activation(self.batch_axes, ("E", self.e_axes)), AG, self.f_axes, d
            ),
            collective_term(
                "reduce-scatter attention output",
                lambda: activation(self.batch_axes, ("E", self.e_axes)) + partial_sum(self.f_axes),
                RS,
                self.f_axes,
                d,
            ),
        )
        return tuple(t for t in terms if t is not None)


def _register(*layouts: FfnLayout) -> dict[str, FfnLayout]:
    return {layout.name: layout for layout in layouts}


FFN_LAYOUTS = _register(
    FfnLayout(
        name="ws1d",
        notation="W_in[E, F_xyz], W_out[F_xyz, E]; BLE_xyz",
        batch_axes="",
        f_axes="xyz",
        e_axes="",
        gather_axes="",
        groups=(),
    ),
    FfnLayout(
        name="ws2d",
        notation="W_in[E_x, F_yz], W_out[F_yz, E_x]; BLE_xyz",
        batch_axes="",
        f_axes="yz",
        e_axes="x",
        gather_axes="",
        groups=("x", "yz"),
    ),
    FfnLayout(
        name="wg-x",
        notation="W[E_x, F_yz] -all-gather(x)-> W[E, F_yz]; B_x L E_yz",
        batch_axes="x",
        f_axes="yz",
        e_axes="",
        gather_axes="x",
        groups=("x", "yz"),
    ),
    FfnLayout(
        name="wg-xy",
        notation="W[E_x, F_yz] -all-gather(xy)-> W[E, F_z]; B_xy L E_z",
        batch_axes="xy",
        f_axes="z",
        e_axes="",
        gather_axes="xy",
        groups=("x", "y", "z"),
    ),
    FfnLayout(
        name="wg-xyz",
        notation="W[E_x, F_yz] -all-gather(xyz)-> W[E, F]; B_xyz L E",
        batch_axes="xyz",
        f_axes="",
        e_axes="",
        gather_axes="xyz",
        groups=("xyz",),
    ),
    FfnLayout(
        name="dp",
        notation="W_in[E, F], W_out[F, E] whole on every chip (data-parallel); B_xyz L E",
        batch_axes="xyz",
        f_axes="",
        e_axes="",
        gather_axes="",
        groups=("xyz",),
        replicated=True,
    ),
)
