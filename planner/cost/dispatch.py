"""What DeepEP's dispatch and combine kernels move over each switched level, per routed copy.

A layout states a dispatch (or combine) as an all-to-all of D = T k E b bytes per chip: T tokens,
each sent to k experts (`Routed`). DeepEP does not move every copy over every link
(deepseek-ai/DeepEP, docs/legacy.md and csrc/kernels):

- normal kernels (prefill): a token crosses InfiniBand once to each other node that holds one of
  its experts, and is then forwarded over NVLink to every distinct GPU of its experts there
  (its own node's GPUs straight over NVLink);
- low-latency kernels (decode): every copy goes straight to its expert's GPU, over NVLink when
  it is on the same node and over RDMA otherwise, with no deduplication.

With the k experts of a token drawn uniformly (without replacement) among M experts spread
evenly over R = g N GPUs (g per node, N nodes), the expected distinct nodes and GPUs of a token
are (a bin of s = M / bins experts is missed by all k draws with probability
prod_{i<k} (M - s - i) / (M - i)):

    d_N = N (1 - prod_i (M - M/N - i) / (M - i))      d_R = R (1 - prod_i (M - M/R - i) / (M - i))

and with node-limited routing (at most L < N nodes per token, DeepSeek-V3's top-4 groups when
groups are nodes) the draws are among the L chosen nodes' L M / N experts: d_N and d_R as above
with L nodes, L g GPUs and M' = L M / N. Per chip and per copy, the bytes each level carries
(factors of D):

    normal       NVLink  d_R / k                     InfiniBand  d_N (N - 1) / N / k
    low-latency  NVLink  g / R                       InfiniBand  (R - g) / R

NVLink counts every distinct GPU, the sender's own included, as DeepEP's tests count the bytes
received; InfiniBand the other nodes only. The two levels run at once (DeepEP's forwarders), so
a call takes its levels' fixed times plus the longer of their transfers (planner.cost.network).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # layouts import this module: Routed is imported where it is built
    from planner.cost.layouts.base import Routed


def distinct_bins(n_experts: float, top_k: int, bins: float) -> float:
    """Expected distinct bins (nodes or GPUs, each holding n_experts / bins experts) that top_k
    distinct experts drawn uniformly among n_experts fall into."""
    if bins <= 1:
        return float(bins)
    size, miss = n_experts / bins, 1.0
    for i in range(top_k):
        miss *= max(0.0, (n_experts - size - i) / (n_experts - i))
    return bins * (1.0 - miss)


def token_spread(routed: Routed, gpus_per_node: int, nodes: int) -> tuple[float, float]:
    """(d_N, d_R): expected distinct nodes and GPUs a token's experts occupy (module docstring)."""
    k, M = routed.top_k, float(routed.n_experts)
    if routed.node_limit and nodes > routed.node_limit:
        limit = routed.node_limit
        pool = M * limit / nodes
        return distinct_bins(pool, k, limit), distinct_bins(pool, k, limit * gpus_per_node)
    return distinct_bins(M, k, nodes), distinct_bins(M, k, nodes * gpus_per_node)


def level_factors(routed: Routed, gpus_per_node: int, nodes: int) -> tuple[float, float]:
    """(NVLink, InfiniBand) bytes per chip as factors of the stated T k E b (module docstring)."""
    ranks = gpus_per_node * nodes
    if routed.low_latency:
        return gpus_per_node / ranks, (ranks - gpus_per_node) / ranks
    d_nodes, d_ranks = token_spread(routed, gpus_per_node, nodes)
    return d_ranks / routed.top_k, d_nodes * (nodes - 1) / nodes / routed.top_k


def dispatch_kernels(experts, model, shape) -> tuple[tuple[Routed, object], ...]:
    """(Routed, layers) of the dispatch (and combine) kernels an MoE layer's step uses: DeepEP's
    low-latency kernels in decode (a step that reads the KV cache), its normal kernels in
    prefill; `layers` None (every MoE layer). On a Grid of both phases, one per phase with its
    rows' MoE layers (0 on the other phase's rows), so each row pays only its own."""
    from planner.cost.layouts.base import Routed

    def routed(low: bool) -> Routed:
        return Routed(top_k=experts.top_k, n_experts=experts.n_experts, low_latency=low)

    decode = np.asarray(shape.reads_cache, dtype=bool)
    if decode.ndim == 0 or decode.all() or not decode.any():
        return ((routed(bool(decode.flat[0])), None),)
    layers = experts.n_moe_layers(model.n_layers)
    if np.ndim(layers) and np.shape(layers)[0] != decode.shape[0]:  # a Grid of pipeline stages (not gated
        return ((routed(False), None),)  # per phase: the normal kernels for both, a stated limit)
    return tuple((routed(low), layers * (decode == low).astype(np.int64)) for low in (False, True))
