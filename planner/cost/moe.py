"""Routing statistics of mixture-of-experts layers: how many distinct experts a step touches.

A decode step reads only the weights of the experts its tokens are routed to. With T tokens each
sent to k distinct experts out of M, chosen uniformly and independently, one expert is missed by
one token with probability exactly 1 - k/M, by all T tokens with probability (1 - k/M)^T, so by
linearity of expectation the expected number of distinct experts touched is

    M_touched(T) = M (1 - (1 - k/M)^T)

exactly (not an approximation) under that routing, for every k; a chip holding m of the M experts
touches m (1 - (1 - k/M)^T) of them on average. DeepSeek-V3 (M = 256, k = 8) touches 8.0, 57.4,
163.3, 251.6 and 256.0 experts at T = 1, 8, 32, 128, 512 tokens.

Limits (what this expectation does not say):
- Real routing is skewed: popular experts take more tokens, so fewer distinct experts are touched
  (fewer weight bytes read) but the busiest chip gets more tokens than the mean. The planner models
  the second effect with a load-imbalance factor on the busiest chip's expert FLOPs
  (`Routing.load_imbalance`), not by changing this count.
- Group-limited routing (DeepSeek's n_group / topk_group) is not uniform over all M experts; it
  changes which chips a token visits, not the expected count per expert under balanced groups.
- It is an expectation: the step time is set by the busiest chip, whose count at small T is
  above the mean (at T = 1 one chip may hold all k experts of the token). Peers bound it instead:
  min(M/EP, T k/EP) per chip (an upper bound, aiconfigurator), max(1, ceil(k/EP)) (a lower bound
  for one token, GenZ), or all M (the large-T limit, the JAX scaling book).
"""

from __future__ import annotations

import numpy as np


def expected_distinct_experts(n_experts: int, top_k: int, tokens, held: float | None = None):
    """Expected distinct experts touched by `tokens` tokens routed top-`top_k` over `n_experts`
    (uniform, independent); with `held`, only among that many experts of one chip."""
    miss = np.power(1.0 - top_k / n_experts, np.asarray(tokens, dtype=float))
    return (n_experts if held is None else held) * (1.0 - miss)
