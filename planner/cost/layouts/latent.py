"""Multi-head latent attention (MLA) inside the attention layouts: what changes from K/V heads.

MLA is costed as multiquery attention (one kv "head", the latent, shared by all query heads; the
model has kv_heads 1), with these quantities in place of the K/V-head ones:

- weights: each query head owns W_UQ, W_UK, W_UV and its slice of W_O (sharded with the heads);
  the down-projections W_DQ and W_DKV are shared by all heads and, like a multiquery K/V
  projection, held by every head shard (the q down-projection is costed with them);
- the new cache entry and the cache: r_kv + h_r elements per token per layer (576 for
  DeepSeek-V3), not 2 K H;
- Q moved between shards (the all-to-alls of batch-sharded attention): h_n + h_r per head;
- scores and values: decode in the absorbed form, 2 (r_kv + h_r) + 2 r_kv FLOPs per head and
  cached token; prefill with the expanded heads, 2 (h_n + h_r) + 2 h_v per head and attended token.
  The absorbed projections (W_UK into the query, W_UV into the output) cost 2 FLOPs per parameter
  per token, as the expanded ones do, so the projection FLOPs stay 2 x parameters x tokens.

Head-sharded attention therefore replicates the latent cache on every head shard (as multiquery
attention does in the paper); batch-sharded attention splits it by sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.specs.hardware import ACTIVATION_BYTES
from planner.specs.model import Model


@dataclass(frozen=True, kw_only=True)
class LatentCost:
    qo_params: float  # per chip: the query heads' weights
    kv_params: float  # per chip: the shared down-projections
    q_bytes: object  # Q (or the output) of the chip's tokens and heads
    kv_new_bytes: object  # new latents to write
    kv_cache: object  # latent cache per chip
    core_flops: object  # scores and values per chip
    stored_params: float  # per layer, all chips: heads' weights + each replicated down-projection


def latent_cost(
    model: Model,
    *,
    heads: int,
    kv_proj: int,
    e: int,
    f: int,
    tokens,
    kv_tokens,
    core_batch,
    core_heads: float,
    kv_heads_per_chip: int,
    shape,
) -> LatentCost:
    mla, E, act = model.latent, model.d_model, ACTIVATION_BYTES
    per_head, shared = mla.per_head_params(E), mla.shared_params(E)
    return LatentCost(
        qo_params=heads * per_head / (e * f),
        kv_params=shared * kv_proj / (e * f),
        q_bytes=tokens * (heads / f) * mla.qk_head_dim * act,
        kv_new_bytes=kv_tokens * (kv_proj / f) * mla.cache_elements * act,
        kv_cache=core_batch * shape.cached * kv_heads_per_chip * mla.cache_elements * act,
        core_flops=core_batch
        * shape.tokens
        * shape.attended
        * core_heads
        * (
            mla.score_flops_per_token(absorbed=shape.reads_cache)
            if np.ndim(shape.reads_cache) == 0
            else np.where(shape.reads_cache, mla.score_flops_per_token(True), mla.score_flops_per_token(False))
        ),
        stored_params=heads * per_head + kv_proj * shared,
    )
