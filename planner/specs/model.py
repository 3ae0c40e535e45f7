"""Model shapes.

Letters used in formulas and their fields (the one place this map lives):

    B batch            L tokens in this step     S context (KV length)
    E d_model          F d_ff                    N n_heads
    K n_kv_heads       H d_head                  V vocab
    n chips            x, y, z mesh axes (X, Y, Z their sizes)
    M n_experts, k top_k, F_e d_ff_expert: mixture-of-experts letters (planner.specs.moe)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from planner.specs.moe import Experts, LatentAttention


class FfnKind(Enum):
    """Feedforward variant; carries how many E x F input matrices it has."""

    GELU = ("gelu", 1)  # W_in[E, F], W_out[F, E]
    SWIGLU = ("swiglu", 2)  # W_gate[E, F], W_in[E, F], W_out[F, E]
    GEGLU = ("geglu", 2)  # gated GELU (Gemma): the same matrices as swiglu, another nonlinearity

    def __init__(self, label: str, n_input_matrices: int) -> None:
        self.label = label
        self.n_input_matrices = n_input_matrices

    @property
    def n_matrices(self) -> int:
        return self.n_input_matrices + 1


class Block(Enum):
    """Parallel (attention and FFN read the same normalised input) or serial Transformer block."""

    PARALLEL = "parallel"
    SERIAL = "serial"


@dataclass(frozen=True, kw_only=True)
class Model:
    name: str
    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    vocab: int
    ffn: FfnKind
    block: Block
    tied_embeddings: bool = True  # one E x V matrix for the input embedding and the output projection
    n_params_nominal: float | None = None  # the MFU convention's parameter count; None: computed
    source: str = ""
    experts: Experts | None = None  # MoE layers (None: a dense model)
    latent: LatentAttention | None = None  # multi-head latent attention (None: K/V heads of H)
    max_context: int | None = None  # longest sequence (prompt + generated) the model supports; None: unstated
    # Local (sliding-window) attention: the layers (0-based) whose queries see only the last
    # `window_tokens` tokens; their KV cache holds at most that many tokens per sequence.
    window_tokens: int | None = None
    local_layers: tuple[int, ...] = ()

    @property
    def n_local_layers(self) -> int:
        return len(self.local_layers) if self.window_tokens is not None else 0

    @property
    def n_global_layers(self) -> int:
        return self.n_layers - self.n_local_layers

    def layer_range(self, first: int, n_layers: int) -> Model:
        """The model of layers first .. first + n_layers - 1 only (a pipeline stage), its local
        layers renumbered from 0 and its MoE layers those of the whole model's range."""
        local = tuple(i - first for i in self.local_layers if first <= i < first + n_layers)
        experts = None if self.experts is None else replace(self.experts, offset=self.experts.offset + first)
        return replace(self, n_layers=n_layers, local_layers=local, experts=experts)

    @property
    def ffn_params_per_layer(self) -> int:
        return self.ffn.n_matrices * self.d_model * self.d_ff

    @property
    def attention_params_per_layer(self) -> int:
        """W_Q[E, N*H] + W_O[N*H, E] + W_K, W_V[E, K*H] (no biases); MLA: see LatentAttention."""
        if self.latent is not None:
            return self.n_heads * self.latent.per_head_params(self.d_model) + self.latent.shared_params(self.d_model)
        q_and_o = 2 * self.d_model * self.n_heads * self.d_head
        k_and_v = 2 * self.d_model * self.n_kv_heads * self.d_head
        return q_and_o + k_and_v

    @property
    def embedding_params(self) -> int:
        """E x V, shared by the input embedding and the output projection, or one each (untied)."""
        return self.d_model * self.vocab * (1 if self.tied_embeddings else 2)

    @property
    def n_params(self) -> int:
        if self.experts is not None:
            return self._moe_params(self.experts.n_experts)
        per_layer = self.ffn_params_per_layer + self.attention_params_per_layer
        return self.n_layers * per_layer + self.embedding_params

    @property
    def n_active_params(self) -> int:
        """Parameters one token uses: with experts, only its top-k routed experts (and the shared
        ones and the router); the input and output embeddings are both counted."""
        if self.experts is None:
            return self.n_params
        return self._moe_params(self.experts.top_k)

    def moe_layer_params(self, routed: int) -> int:
        """One MoE layer's FFN parameters with `routed` routed experts, shared experts and router."""
        x = self.experts
        return (
            routed * x.params_per_expert(self.ffn.n_input_matrices, self.d_model)
            + x.router_params(self.d_model)
            + self.ffn.n_matrices * self.d_model * x.shared_d_ff()
        )

    def _moe_params(self, routed: int) -> int:
        moe = self.experts.n_moe_layers(self.n_layers)
        return (
            self.n_layers * self.attention_params_per_layer
            + (self.n_layers - moe) * self.ffn_params_per_layer
            + moe * self.moe_layer_params(routed)
            + self.embedding_params
        )

    def mfu_flops(self, tokens, logit_tokens):
        """FLOPs the MFU numerator credits for `tokens` processed, of which `logit_tokens` produce
        logits. With a nominal parameter count: the reference convention, 2 * params * tokens.
        Otherwise the model's matmul FLOPs: 2 * layer parameters per token, plus the output
        projection for the tokens that produce logits (prefill: the last of each sequence; an
        untied input embedding is a lookup and counts nothing). Attention FLOPs are not counted.
        With experts, the active parameters (n_active_params) are counted, not the total."""
        if self.n_params_nominal is not None:
            return 2.0 * self.n_params_nominal * tokens
        layers = self.n_active_params - self.embedding_params
        return 2.0 * layers * tokens + 2.0 * self.d_model * self.vocab * logit_tokens

    def kv_bytes_per_token(self, kv_bytes_per_element: int = 2) -> int:
        """K and V cache bytes for one token of one sequence, all layers, unsharded (MLA: the
        latent)."""
        if self.latent is not None:
            return self.n_layers * self.latent.cache_elements * kv_bytes_per_element
        return self.n_layers * 2 * self.n_kv_heads * self.d_head * kv_bytes_per_element
