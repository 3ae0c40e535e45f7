"""Mixture-of-experts and multi-head latent attention shapes, referenced from `Model` as optional
fields (`experts`, `latent`), and the routing settings of a plan.

Letters (beside those of `planner.specs.model`): M routed experts, k experts per token (top-k),
F_e one expert's FFN size, S shared experts of size F_s, F_d the dense layers' FFN size (the
model's `d_ff`). MLA: r_q and r_kv the query and key/value low ranks, h_n and h_r the no-position
and rotary parts of a query/key head, h_v a value head.

Which layers are MoE: layer i (counting from 0) is an MoE layer when i >= `first_dense` and
(i + 1) is a multiple of `every` (DeepSeek-V3: first 3 dense, then every layer; Llama 4
Maverick: every 2nd layer, i.e. layers 1, 3, ..., 47, as transformers' configuration_llama4.py
builds them); the others are dense FFN layers of size F_d. A pipeline stage's model counts
from its first layer, `offset` layers into the whole model.

Parameters are counted as in `../shared/docs/moe-notes.md` section 1.1, less the norms (two
vectors of E per layer, a few hundred thousand parameters in all), which the planner counts for
no model: matrices, plus the biases that scale with the experts (gpt-oss's expert biases, 40M)
and router biases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Experts:
    """Routed (and shared) experts of the MoE layers."""

    n_experts: int  # M
    top_k: int  # k: distinct experts each token is routed to
    d_ff_expert: int  # F_e
    n_shared: int = 0  # S: experts every token goes through
    d_ff_shared: int = 0  # F_s (each shared expert)
    first_dense: int = 0  # the first layers are dense FFN layers
    every: int = 1  # after those, every n-th layer is an MoE layer (see module docstring)
    router_bias: bool = False  # a bias per expert on the router logits (DeepSeek, gpt-oss)
    expert_bias: bool = False  # biases on every expert matrix (gpt-oss)
    # layer i of this model is layer i + offset of the model it was cut from (a pipeline stage's
    # layers: Model.layer_range); an array of offsets for a Grid of stages
    offset: int = 0

    def is_moe(self, layer: int) -> bool:
        whole = layer + self.offset
        return whole >= self.first_dense and (whole + 1) % self.every == 0

    def n_moe_layers(self, n_layers):
        """Layers i < n_layers with i + offset >= first_dense and (i + offset + 1) % every == 0
        (ints, or arrays of layer counts and offsets alike)."""
        return self._moe_before(self.offset + n_layers) - self._moe_before(self.offset)

    def _moe_before(self, layers):
        """MoE layers among the whole model's first `layers`."""
        count = layers // self.every - self.first_dense // self.every
        return max(0, count) if isinstance(count, int) else np.maximum(0, count)

    def params_per_expert(self, n_input_matrices: int, d_model: int) -> int:
        """(n_in + 1) E F_e, plus biases n_in F_e + E when the experts have them."""
        params = (n_input_matrices + 1) * d_model * self.d_ff_expert
        if self.expert_bias:
            params += n_input_matrices * self.d_ff_expert + d_model
        return params

    def router_params(self, d_model: int) -> int:
        """W_router[E, M] (+ M biases); a single expert needs no router."""
        if self.n_experts == 1:
            return 0
        return self.n_experts * d_model + (self.n_experts if self.router_bias else 0)

    def shared_d_ff(self) -> int:
        """The shared experts as one dense FFN: S F_s (0 without shared experts)."""
        return self.n_shared * self.d_ff_shared


@dataclass(frozen=True, kw_only=True)
class LatentAttention:
    """Multi-head latent attention (DeepSeek-V2/V3): queries and keys/values pass through low-rank
    latents; the KV cache holds one latent of r_kv + h_r elements per token per layer, shared by
    all heads. Decode runs the absorbed form (W_UK folded into the query, W_UV into the output):
    per head and cached token, 2 (r_kv + h_r) FLOPs for scores and 2 r_kv for values. Prefill runs
    the expanded heads: 2 (h_n + h_r) + 2 h_v per head and attended token."""

    q_rank: int  # r_q (0: queries projected from E directly)
    kv_rank: int  # r_kv
    qk_nope_dim: int  # h_n
    qk_rope_dim: int  # h_r
    v_head_dim: int  # h_v

    @property
    def cache_elements(self) -> int:
        """r_kv + h_r: the latent and the shared rotary key, per token per layer (576 for V3)."""
        return self.kv_rank + self.qk_rope_dim

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_dim + self.qk_rope_dim

    def per_head_params(self, d_model: int) -> int:
        """What one query head owns: W_UQ[r_q, h_n + h_r], W_UK and W_UV[r_kv, h_n + h_v],
        W_O[h_v, E]."""
        q_in = self.q_rank or d_model
        return q_in * self.qk_head_dim + self.kv_rank * (self.qk_nope_dim + self.v_head_dim) + self.v_head_dim * d_model

    def shared_params(self, d_model: int) -> int:
        """What all heads share: W_DQ[E, r_q] and W_DKV[E, r_kv + h_r], with their norms."""
        q_down = d_model * self.q_rank + self.q_rank
        return q_down + d_model * self.cache_elements + self.kv_rank

    def score_flops_per_token(self, absorbed: bool) -> int:
        """FLOPs per query, per head, per attended token (scores and values)."""
        if absorbed:
            return 2 * self.cache_elements + 2 * self.kv_rank
        return 2 * self.qk_head_dim + 2 * self.v_head_dim


@dataclass(frozen=True, kw_only=True)
class Routing:
    """How a plan's MoE layers are routed and deployed (ignored for dense models).

    `load_imbalance` rho >= 1: the busiest chip's expert work over the mean chip's; it multiplies
    the expert einsums' FLOPs. SGLang's "balancedness" (mean over max tokens per GPU) is 1/rho.
    1 is perfectly balanced routing, which DeepSeek's published profiles simulate. Published
    figures for DeepSeek-V3 on H100s (SGLang, lmsys.org/blog/2025-05-05-large-scale-ep): expert
    load balancing (EPLB, 32 redundant experts) raised throughput 1.49x in prefill and 2.54x in
    decode over no balancing at EP32-72, and a simulated perfect balance ran prefill a further
    1.18x faster than EPLB (59,337 against 50,302 tokens/s per node). Where expert work sets the
    step, that puts rho near 1.2 with EPLB in prefill and well above 1.5 without it; 1.2-1.5 is
    the band moe-notes section 3 recommends for EP >= 32 without balancing.

    `redundant_experts` R: extra expert copies held for load balancing, spread over the expert
    shards: M + R must divide over the EP size (DeepSeek-V3 serves 256 + 32: 9 per GPU at
    EP32 in prefill, 2 at EP144 in decode). None: for each layout the fewest that make M divide
    over its EP size (`redundant`): 0 where the EP size divides M, 32 for 256 experts at EP72.
    The copies take memory and spread each expert's tokens over its copies (more weights read
    per step at small batches, the same per token); how evenly EPLB places them is `load_imbalance`.
    """

    load_imbalance: float = 1.0
    redundant_experts: int | None = None

    def redundant(self, n_experts: int, ep: int) -> int:
        """R for M experts over `ep` expert shards: the plan's, or the fewest that make M + R divide."""
        if self.redundant_experts is not None:
            return self.redundant_experts
        return -n_experts % ep

    def divides(self, n_experts: int, ep: int) -> bool:
        """Whether M + R experts split evenly over `ep` shards."""
        return (n_experts + self.redundant(n_experts, ep)) % ep == 0
