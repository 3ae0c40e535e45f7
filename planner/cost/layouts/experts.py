"""Expert layouts of mixture-of-experts layers, crossed with the FFN and attention layouts.

An MoE layer's routed experts are sharded by an expert layout: experts (M) over `expert_axes`
(expert parallelism, EP), each expert's F_e over `f_axes` (tensor parallelism inside experts),
and the rest of the mesh holds replicas that serve their own tokens (batch over the rest). The
dense layers and the shared experts use the FFN layout (the shared experts as one dense FFN of
S F_s), and the residual stream between layers is the FFN layout's, B_b L E_(f,e): each chip
holds T_c = B_b L / |f e| tokens' worth of it (the token-equivalents below; T = B L in all).

Dataflow per MoE layer and chip (activations in bf16; k copies of each token leave for its k
experts; bytes are the Figure 3 convention, the network takes the share that leaves the chip):

    router      W_r[E, M] on its T_c tokens: 2 T_c E M FLOPs (no router with one expert)
    gather      tokens over f (TP inside experts): B L E_(f) -> B L E, T_c |f| E bytes out
    dispatch    all-to-all over the expert axes: T_c |f| k E elements (fp8 with fp8 weights)
    experts     W_in[M_ep, E, F_f], W_out[M_ep, F_f, E] on the T k / |ep| / R token-expert pairs the
                chip receives: 2 (n_in + 1) E F_e k T_c x rho FLOPs (rho: load imbalance on the
                busiest chip); weight reads: its share of the distinct experts the step touches,
                (M/EP)(1 - (1 - k/M)^ceil(T/R)) experts of (n_in + 1) E F_e / |f| (planner.cost.moe),
                for the busiest of the R replica groups: whole tokens (fewer tokens than groups
                leave groups idle; a token is never split across them)
    combine     all-to-all back over the expert axes: T_c |f| k E bytes
    reduce      partial sums over f: reduce-scatter, T_c |f| E bytes in
    shared      the FFN layout's dataflow with d_ff = S F_s

Weight-gathered experts (prefill, large batches) instead keep tokens where they are: the residual
is re-sharded by sequences over the FFN's f and e axes (an all-to-all), every expert's weights are
all-gathered over `gather_axes` (prefetched), and each chip runs its own tokens through their
experts, reading the experts they touch.

Redundant experts (`Routing.redundant_experts`, R; by default the fewest that make M + R divide
over the EP size, so every EP size applies: 32 for 256 experts at EP72) are copies of busy
experts (EPLB): the M + R copies are placed (M + R) / EP per expert shard, and a token's k slots
land on k of them, so a chip reads its share of the distinct copies touched,
((M + R)/EP)(1 - (1 - k/(M + R))^T): the same per token at small T, every held copy at large T.

Stored per chip: (M + R) / EP experts of (n_in + 1) E F_e / |f| each, and the router
(replicated); weight-gathered: the experts sharded over every chip, one layer's gathered as working
set. The dispatch moves `Formats.dispatch_bytes` per element (fp8 with fp8 W8A8 weights, as
DeepEP; else bf16), the combine bf16. Not modelled: the router logits' partial-sum reduction when
E is sharded (M values per token), group-limited routing, token dropping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.cost.dispatch import dispatch_kernels
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
)
from planner.cost.layouts.ffn import FfnLayout
from planner.cost.moe import expected_distinct_experts
from planner.specs.hardware import ACTIVATION_BYTES
from planner.specs.model import Model
from planner.specs.moe import Routing

AG, RS, A2A = CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER, CollectiveKind.ALL_TO_ALL


@dataclass(frozen=True, kw_only=True)
class ExpertLayout:
    name: str
    notation: str
    expert_axes: str  # ep: experts sharded over these (expert parallelism)
    f_axes: str  # each expert's F_e sharded over these
    gather_axes: str  # expert weights all-gathered over these before use (weight-gathered)
    groups: tuple[str, ...]  # axis groups that must each span > 1 chip for the layout to be distinct
    # two-batch overlap (planner.cost.costmodel): the step runs as this many micro-batches, one's
    # dispatch/combine under the other's compute; 1: one batch
    micro_batches: int = 1

    def applies(self, model: Model, sizes: dict[str, int], routing: Routing = Routing()) -> bool:
        """The axis groups span more than one chip each, and the M + R experts split evenly over
        the EP size (R: the plan's redundant experts, by default the fewest that make it so)."""
        ep = size(sizes, self.expert_axes)
        return all(size(sizes, g) > 1 for g in self.groups) and routing.divides(model.experts.n_experts, ep)

    def ep(self, sizes: dict[str, int]) -> int:
        """The EP size: the expert shards the experts are split over."""
        return size(sizes, self.expert_axes)

    def redundant(self, model: Model, sizes: dict[str, int], routing: Routing) -> int:
        """R, the redundant expert copies this layout holds on this mesh: only expert-parallel
        layouts hold copies (none with TP inside every expert alone, or weight-gathered)."""
        if self.gather_axes or not self.expert_axes:
            return 0
        return routing.redundant(model.experts.n_experts, self.ep(sizes))

    def replica_axes(self) -> str:
        return complement(union(self.expert_axes, self.f_axes, self.gather_axes))

    def cost(
        self,
        model: Model,
        ffn: FfnLayout,
        sizes: dict[str, int],
        shape: StepShape,
        weight_bytes,
        routing: Routing,
        dispatch_bytes=ACTIVATION_BYTES,
    ) -> LayerCost:
        x, E, act = model.experts, model.d_model, ACTIVATION_BYTES
        M, k, F = x.n_experts, x.top_k, x.d_ff_expert
        n = size(sizes, "xyz")
        ep, tp = size(sizes, self.expert_axes), size(sizes, self.f_axes)
        expert_params = x.params_per_expert(model.ffn.n_input_matrices, E)
        fe = union(ffn.f_axes, ffn.e_axes)
        tokens = ffn.tokens_per_chip(sizes, shape)  # B_b L, with E split over f e
        copies = M + self.redundant(model, sizes, routing)  # M + R: each copy serves a share of its expert's tokens
        if self.gather_axes:  # sequences re-sharded over f e: whole tokens per chip
            local = ceil_div(shape.batch, size(sizes, union(ffn.batch_axes, fe))) * shape.tokens
            group_tokens, held = local, M
        else:  # the busiest replica group's tokens, whole: a token is served by one group, so a
            # step with fewer tokens than groups leaves some idle rather than splitting a token.
            # A group serves its own chips' tokens, at most the step's B L: a batch sharded over
            # more chips than it has sequences leaves chips without any (one prompt on 8 DP ranks
            # is one rank's tokens spread over the 8 expert shards, not 8 prompts' worth)
            local = tokens / size(sizes, fe)
            group = np.minimum(np.round(local * n) / size(sizes, self.replica_axes()), shape.batch * shape.tokens)
            group_tokens, held = np.ceil(group), copies / ep
        # the M + R copies as experts of their own: a token's k slots land on k of them
        touched = expected_distinct_experts(copies, k, group_tokens, held=held)
        read_bytes = touched * expert_params / tp * weight_bytes
        b, ep_x, f_x = ffn.batch_axes, self.expert_axes, self.f_axes
        terms = []
        if M > 1:
            terms.append(
                Term(
                    name="einsum router",
                    notation=lambda: f"W_r[E, M] -> {activation(b, ('M', ''))}",
                    flops=2.0 * local * E * M,
                    hbm_bytes=x.router_params(E) * weight_bytes,
                    rows=local,
                )
            )
        if self.gather_axes:
            terms.append(
                collective_term(
                    "all-to-all tokens to sequence shards",
                    lambda: f"{activation(b, ('E', fe))} -> {activation(union(b, fe), ('E', ''))}",
                    A2A,
                    fe,
                    tokens * E / size(sizes, fe) * act,
                )
            )
        routed = local * tp  # token-equivalents per chip after the gather over f
        # the token-equivalents each chip's experts serve: its group's tokens over the expert
        # shards (the same as `routed` when every chip holds tokens; fewer when some hold none)
        served = routed if self.gather_axes else np.minimum(routed, group_tokens / ep)
        terms += [
            collective_term(
                "gather tokens for expert shards",
                lambda: f"-> {activation(b, ('E', ''))} on {f_x}",
                AG,
                f_x,
                routed * E * act,
            ),
            *(
                collective_term(
                    "dispatch all-to-all",
                    lambda: f"B L k E -> B L k E on the experts' chips ({k} per token){_dispatch_text(dispatch_bytes)}",
                    A2A,
                    ep_x,
                    routed * k * E * dispatch_bytes,
                    routed=kind,
                    layers=layers,
                )
                for kind, layers in dispatch_kernels(x, model, shape)
            ),
            Term(
                name="einsum experts W_in, W_out",
                notation=lambda: (
                    f"W_e[{sharded('M', ep_x)}, E, {sharded('F', f_x)}]; "
                    f"{_touched_text(touched, held, copies)}{_redundant_text(M, copies, ep, routing)}"
                    f"{'' if routing.load_imbalance == 1 else f'; load imbalance x{routing.load_imbalance:g}'}"
                ),
                flops=2.0 * model.ffn.n_matrices * E * (F / tp) * k * served * routing.load_imbalance,
                hbm_bytes=read_bytes,
                kernels=2,
                grouped=M > 1,
                # each expert's matmul multiplies the token slots routed to it: this chip's slots
                # spread over the experts it touches
                rows=served * k / np.maximum(touched, 1.0),
            ),
            *(
                collective_term(
                    "combine all-to-all",
                    lambda: "B L k E back to the tokens' chips" + partial_sum(f_x),
                    A2A,
                    ep_x,
                    routed * k * E * act,
                    routed=kind,
                    layers=layers,
                )
                for kind, layers in dispatch_kernels(x, model, shape)
            ),
            collective_term(
                "reduce-scatter expert output",
                lambda: activation(b, ("E", "")) + partial_sum(f_x),
                RS,
                f_x,
                routed * E * act,
            ),
        ]
        all_experts = M * expert_params * weight_bytes
        terms.append(
            collective_term(
                "gather expert weights",
                lambda: f"W_e[M_xyz, E, F] -> W_e[M, E, F] over {self.gather_axes}",
                AG,
                self.gather_axes,
                all_experts,
                prefetched=True,
            )
        )
        if self.gather_axes:
            stored = all_experts / n
        else:
            stored = -(-copies // ep) * expert_params / tp * weight_bytes
        stored += x.router_params(E) * weight_bytes if M > 1 else 0
        return LayerCost(
            terms=tuple(t for t in terms if t is not None),
            weight_bytes_stored=stored,
            working_bytes=all_experts if self.gather_axes else 0.0,
        )


def shared_cost(model: Model, ffn: FfnLayout, sizes: dict[str, int], shape: StepShape, weight_bytes) -> LayerCost:
    """The shared experts of an MoE layer: the FFN layout's dataflow on one FFN of S F_s."""
    dense = ffn.cost(replace(model, d_ff=model.experts.shared_d_ff()), sizes, shape, weight_bytes)
    terms = tuple(replace(t, name=f"shared expert: {t.name}") for t in dense.terms)
    return replace(dense, terms=terms)


def _dispatch_text(dispatch_bytes) -> str:
    """', in fp8' when the tokens leave in fp8 (one format costed), else nothing (bf16)."""
    values = set(np.atleast_1d(dispatch_bytes).tolist())
    return ", in fp8" if values == {1.0} else ", in fp8 with fp8 weights" if 1.0 in values else ""


def _redundant_text(M: int, copies: int, ep: int, routing: Routing) -> str:
    """'; 32 redundant copies (...)' when the layout holds any, saying where R came from."""
    R = copies - M
    if not R:
        return ""
    why = "the plan's" if routing.redundant_experts is not None else f"the fewest that make {M} divide over EP{ep}"
    return f"; {M} + {R} redundant experts ({why}), {copies // ep} per expert shard"


def _touched_text(touched, held, copies) -> str:
    """The distinct experts a chip reads, with their number when one batch size is costed."""
    if np.size(touched) == 1:
        return f"reads {float(np.asarray(touched).ravel()[0]):.1f} of {held:g} experts per chip"
    return f"reads {held:g} (1 - (1 - k/{copies:g})^T) of {held:g} experts per chip"


def _register(*layouts: ExpertLayout) -> dict[str, ExpertLayout]:
    return {layout.name: layout for layout in layouts}


EXPERT_LAYOUTS = _register(
    # wide EP: every chip holds M/n experts (with attention batch-sharded: DeepSeek's and SGLang's
    # attention data-parallel + wide EP)
    ExpertLayout(
        name="ep",
        notation="W_e[M_xyz, E, F]; tokens dispatched to their experts' chips",
        expert_axes="xyz",
        f_axes="",
        gather_axes="",
        groups=("xyz",),
    ),
    ExpertLayout(
        name="ep-xy+tp-z",
        notation="W_e[M_xy, E, F_z]; dispatch over xy, TP inside experts over z",
        expert_axes="xy",
        f_axes="z",
        gather_axes="",
        groups=("xy", "z"),
    ),
    ExpertLayout(
        name="ep-x+tp-yz",
        notation="W_e[M_x, E, F_yz]; dispatch over x, TP inside experts over yz",
        expert_axes="x",
        f_axes="yz",
        gather_axes="",
        groups=("x", "yz"),
    ),
    ExpertLayout(
        name="ep-yz",
        notation="W_e[M_yz, E, F] replicated over x; each x group serves its tokens",
        expert_axes="yz",
        f_axes="",
        gather_axes="",
        groups=("x", "yz"),
    ),
    # pure TP: every chip holds a slice of every expert; no all-to-all
    ExpertLayout(
        name="tp",
        notation="W_e[M, E, F_xyz]; tokens gathered over xyz, no dispatch",
        expert_axes="",
        f_axes="xyz",
        gather_axes="",
        groups=(),
    ),
    # weight-gathered experts: weights come to the tokens (prefill at large batch)
    ExpertLayout(
        name="wg",
        notation="W_e[M_xyz, E, F] -all-gather(xyz)-> W_e[M, E, F]; B_xyz L E",
        expert_axes="",
        f_axes="",
        gather_axes="xyz",
        groups=("xyz",),
    ),
)


# Two-batch overlap of every layout that dispatches (DeepSeek-V3 report section 3.4, SGLang):
# the same layout, its step split in two micro-batches (planner.cost.costmodel, two_batch).
EXPERT_LAYOUTS.update(
    {
        f"{name}+tbo": replace(
            layout, name=f"{name}+tbo", micro_batches=2, notation=layout.notation + "; two micro-batches overlapped"
        )
        for name, layout in list(EXPERT_LAYOUTS.items())
        if layout.expert_axes
    }
)


def moe_layers(
    model: Model,
    ffn: FfnLayout,
    experts: ExpertLayout,
    sizes: dict[str, int],
    shape: StepShape,
    weight_bytes,
    routing: Routing,
    dispatch_bytes=ACTIVATION_BYTES,
) -> tuple[int, tuple[tuple[LayerCost, int], ...]]:
    """The dense layers' count (they take the FFN layout's cost) and the MoE layers' parts with
    their repeats: the routed experts and, if any, the shared experts."""
    n_moe = model.experts.n_moe_layers(model.n_layers)
    parts = [(experts.cost(model, ffn, sizes, shape, weight_bytes, routing, dispatch_bytes), n_moe)]
    if model.experts.n_shared:
        parts.append((shared_cost(model, ffn, sizes, shape, weight_bytes), n_moe))
    return model.n_layers - n_moe, tuple(parts)
