"""Serving at a fixed concurrency, as engines run it: pure functions over arrays of step times.

C closed-loop clients (`vllm bench serve`, SGLang's `bench_serving`, genai-perf, InferenceX): each
sends its next request as soon as the last one ends, so C requests are in flight. The inputs
are a deployment's step times over a grid of batches (`batches`, ascending): `prefill_pass_s[j]`,
one prefill pass of `batches[j]` prompts of I tokens; `decode_step_s[j]`, one decode step of a
running batch of `batches[j]` sequences (at the mean context, `planner.cost.request`); inf where
nothing fits. Between grid points both are interpolated linearly in the batch.

Colocated (one pool of n chips; O output tokens per request):

- The running batch is B = min(C, B_max), B_max the largest batch whose KV cache fits in HBM at
  the largest context (or an engine's maximum running requests, or a token budget's room).
- B / O requests finish per step, and as many arrive (closed loop). Their prompts are prefilled
  in passes of k = max(1, B / O) prompts, at most k_max = max(1, floor(T / I)) (a token budget T
  bounds a pass too: SGLang's `chunked_prefill_size`); each prompt costs p = P(k) / k.
- TPOT = d(B) + ((B - 1) / O) p: the decode step plus the other requests' prefill work
  interleaved per step (a request's own prompt is in its TTFT; one client alone sees none). Both
  policies do the same work per step; they differ in when a prompt's first token comes:
  * prefill-first (SGLang's default): a new prompt waits for the running step to end (half a
    step on average, when other requests run) and runs at once as its own pass:
    TTFT = w + P(k), w = d(B) / 2 if B > 1 else 0;
  * chunked prefill under a token budget T (vLLM's `max_num_batched_tokens`, SGLang's
    `chunked_prefill_size`, TensorRT-LLM's `max_num_tokens`): each step holds the B decode tokens
    and up to T - B prompt tokens, so the k prompts that arrive together span
    m = ceil(k I / (T - B)) steps (none when it runs alone), and a prompt's first token comes
    after them: TTFT = w + m d(B) + P(k). To keep up, a step must hold the B / O prompts that
    arrive per step: B (1 + I / O) <= T, so B is at most floor(T / (1 + I / O)).
- End to end E = TTFT + O TPOT; requests per second X = C / E. Past B_max the other C - B
  requests queue: the system still completes B per E_B, so X = B / E_B and, by Little's law,
  each request spends C / X in it: TTFT = TTFT_B + (C / B - 1) E_B.
- Output tokens/s per chip = C O / (TTFT + O TPOT) / n = X O / n (Little's law).

Disaggregated (r prefill pools of n_p chips per decode pool of n_d chips; KV transfer t_kv):
the decode pool runs B = min(C, B_max) at TPOT = d(B). Prompts reach the prefill pools at X
requests per second; passes run back to back once prompts wait, so a pass holds the prompts
that arrived during the last: k = max(1, X P(k) / r), at most k_max. A pool is busy
u = X P(k) / (r k) of the time; a prompt arriving during a pass waits for it to end (half a pass
on average), then runs: TTFT = u P(k) / 2 + P(k) + t_kv + d(B) / 2 (the request joins the
decode pool's running batch at its next step). X = B / (TTFT + O TPOT) is solved for (bisection:
the right side falls as X grows). The prefill pools complete at most r k_max / P(k_max) prompts
per second: past that the deployment is prefill-limited, X is that rate and the other requests
queue (Little's law: TTFT = C / X - O TPOT). `prefill_pools=None` takes the fewest whole prefill
pools that keep up with the decode pool at no wait, r = floor(X_0 P(k_max) / k_max) + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

DEFAULT_TOKEN_BUDGET = 8192  # vLLM's max_num_batched_tokens and TensorRT-LLM's max_num_tokens default
_BISECTIONS = 80


class Policy(Enum):
    """How an engine schedules prompts among decode steps; carries its name and description."""

    PREFILL_FIRST = ("prefill-first", "a new prompt runs at once as its own pass; decode waits (SGLang's default)")
    CHUNKED = ("chunked", "prompt tokens mixed into decode steps under a token budget (vLLM, TensorRT-LLM)")

    def __init__(self, label: str, description: str) -> None:
        self.label = label
        self.description = description


@dataclass(frozen=True, kw_only=True)
class SteadyState:
    """Figures per concurrency (arrays of the same length as `concurrency`)."""

    concurrency: np.ndarray
    running: np.ndarray  # the decode batch that runs, min(C, max running)
    queued: np.ndarray  # requests waiting for a slot, C - running
    ttft_s: np.ndarray  # queue included
    queue_s: np.ndarray  # the part of TTFT spent waiting for a slot
    tpot_s: np.ndarray
    e2e_s: np.ndarray  # TTFT + O TPOT
    requests_per_s: np.ndarray  # X
    output_tokens_per_s_per_chip: np.ndarray
    chips: np.ndarray  # all the deployment's chips (disaggregated: n_d + r n_p)
    prefill_pools: np.ndarray  # r per decode pool (disaggregated; 0 colocated)
    prefill_wait_s: np.ndarray  # disaggregated: the wait for a prefill pool (0 colocated)

    @property
    def tokens_per_s_per_user(self) -> np.ndarray:
        return 1.0 / self.tpot_s


def at_batch(batches: np.ndarray, seconds: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`seconds` (over `batches`, ascending) at batch b, linear between grid points; below the
    first batch, the first's (a pool holding less than one request on average runs that step when
    it runs); inf beyond the last."""
    batches = np.asarray(batches, dtype=float)
    b = np.asarray(b, dtype=float)
    return np.where(b > batches[-1], np.inf, np.interp(b, batches, seconds))


def max_running(batches: np.ndarray, decode_step_s: np.ndarray, limit: int | None = None) -> int:
    """The largest batch on the grid that fits (finite step), at most `limit`; 0 if none fits."""
    fits = np.asarray(batches)[np.isfinite(decode_step_s)]
    top = int(fits.max()) if fits.size else 0
    return top if limit is None else min(top, limit)


def running_limit(
    max_running_batch: int, input_tokens: int, output_tokens: int, policy: Policy, token_budget: int
) -> int:
    """The most requests that run at once: what fits in HBM (or an engine's maximum), and under
    chunked prefill what the token budget keeps up with. A step holds the B decode tokens and the
    prompt tokens of the B / O requests that arrive per step: B (1 + I / O) <= T."""
    if policy is Policy.PREFILL_FIRST:
        return max_running_batch
    return min(max_running_batch, max(1, int(token_budget // (1 + input_tokens / output_tokens))))


def prompts_per_pass(input_tokens: int, token_budget: int) -> int:
    """k_max: the prompts one prefill pass may hold under the token budget (at least one)."""
    return max(1, token_budget // input_tokens)


def colocated(
    *,
    concurrency: np.ndarray,
    input_tokens: int,
    output_tokens: int,
    batches: np.ndarray,
    prefill_pass_s: np.ndarray,
    decode_step_s: np.ndarray,
    max_running_batch: int,
    chips: float,
    policy: Policy = Policy.PREFILL_FIRST,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
) -> SteadyState:
    """One pool running both phases at each concurrency (see the module docstring)."""
    C = np.asarray(concurrency, dtype=float)
    O = float(output_tokens)
    B = np.minimum(C, running_limit(max_running_batch, input_tokens, output_tokens, policy, token_budget))
    d = at_batch(batches, decode_step_s, B)
    k = np.clip(B / O, 1.0, prompts_per_pass(input_tokens, token_budget))
    pass_s = at_batch(batches, prefill_pass_s, k)
    per_prompt = pass_s / k
    others = np.maximum(B - 1.0, 0.0)  # a request's own prompt is in its TTFT, not its TPOT
    tpot = d + (others / O) * per_prompt
    wait = np.where(others > 0, d / 2, 0.0)  # a running step to finish first: only if others run
    if policy is Policy.PREFILL_FIRST:
        ttft_b = wait + pass_s
    else:
        steps = np.where(others > 0, np.ceil(k * input_tokens / (token_budget - B)), 0.0)
        ttft_b = wait + steps * d + pass_s
    zero = np.zeros_like(C)
    return _queued(C, B / (ttft_b + O * tpot), ttft_b, tpot, O, np.full_like(C, chips), zero, zero)


def disaggregated(
    *,
    concurrency: np.ndarray,
    input_tokens: int,
    output_tokens: int,
    batches: np.ndarray,
    prefill_pass_s: np.ndarray,
    decode_step_s: np.ndarray,
    max_running_batch: int,
    prefill_chips: float,
    decode_chips: float,
    kv_transfer_s: float,
    prefill_pools: float | None = None,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
) -> SteadyState:
    """A decode pool at each concurrency fed by r prefill pools (see the module docstring)."""
    C = np.asarray(concurrency, dtype=float)
    B = np.minimum(C, max_running_batch)
    O = float(output_tokens)
    tpot = at_batch(batches, decode_step_s, B)
    k_max = float(prompts_per_pass(input_tokens, token_budget))
    full_s = float(at_batch(batches, prefill_pass_s, np.array(k_max)))
    one_s = float(at_batch(batches, prefill_pass_s, np.array(1.0)))
    fixed = kv_transfer_s + tpot / 2
    x0 = B / (one_s + fixed + O * tpot)
    r = np.floor(x0 * full_s / k_max) + 1.0 if prefill_pools is None else np.full_like(C, float(prefill_pools))
    cap = r * k_max / full_s  # prompts per second the prefill pools complete at most

    def ttft(x):
        k = np.ones_like(x)
        for _ in range(_PASS_ITERATIONS):  # k = max(1, X P(k) / r): a contraction (P(k) / k falls)
            k = np.clip(x * at_batch(batches, prefill_pass_s, k) / r, 1.0, k_max)
        pass_s = at_batch(batches, prefill_pass_s, k)
        wait = np.minimum(x * pass_s / (r * k), 1.0) * pass_s / 2
        return wait + pass_s + fixed, wait

    lo, hi = np.zeros_like(C), np.minimum(x0, cap)
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        above = mid > B / (ttft(mid)[0] + O * tpot)
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    limited = cap < B / (ttft(cap)[0] + O * tpot)  # prefill-limited: the pools run flat out
    x = np.where(limited, cap, lo)
    ttft_b, waited = ttft(x)
    return _queued(C, x, ttft_b, tpot, O, decode_chips + r * prefill_chips, r, waited)


_PASS_ITERATIONS = 40


def _queued(C, x, ttft_b, tpot, O, chips, prefill_pools, prefill_wait) -> SteadyState:
    """The figures at concurrency C of a system completing x requests per second, whose request
    waits ttft_b once admitted (Little's law: each request spends C / x in it)."""
    queue = np.maximum(C / x - O * tpot - ttft_b, 0.0)  # rounding aside, > 0 only past saturation
    ttft = ttft_b + queue
    e2e = ttft + O * tpot
    running = np.minimum(C, x * (ttft_b + O * tpot))
    return SteadyState(
        concurrency=C,
        running=running,
        queued=C - running,
        ttft_s=ttft,
        queue_s=queue,
        tpot_s=tpot,
        e2e_s=e2e,
        requests_per_s=x,
        output_tokens_per_s_per_chip=x * O / chips,
        chips=chips,
        prefill_pools=prefill_pools,
        prefill_wait_s=prefill_wait,
    )
