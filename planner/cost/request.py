"""A whole request's decode: `output_tokens` steps whose context grows with every token.

Decode step t (t = 1 .. O, O = output_tokens) feeds generated token t and attends to the prompt
and the tokens generated so far: S_t = input_tokens + t positions (prefill's logits give the
first token; the O steps are the `plan` convention, one step per output token). The KV cache is
held at the largest context, S_O = input_tokens + output_tokens (capacity).

At a fixed layout and batch, every term of a step is affine in S: attention FLOPs and KV-cache
bytes grow linearly with it and nothing else depends on it (tests/test_serve.py checks this
against `evaluate` at every context). The local time is affine too: each kernel's compute and
HBM time are, and the one kernel whose figures grow with S, the attention core, grows both in
proportion (FLOPs and KV bytes per cached position), so its bound does not change with S. So
the local and network seconds of step t are exact linear interpolations between the first and
the last step, two evaluations. The step time itself is *not* affine (the collectives' overlap
takes a min and a max), so the steps are combined one by one with the cost model's own
`combine` and summed exactly:

    decode_s = sum_t combine(local_t, k_t) + overhead     (static batch: all sequences in step)

A running batch (continuous batching) holds sequences at every stage: its one step attends to
contexts S_1 .. S_O in equal shares, and since each term is affine in S, the step's totals are
exactly those of every sequence at the mean context S_mean = input_tokens + (O + 1) / 2.
Local (sliding-window) layers make the terms affine on each side of S = window instead: a
request that crosses its window is interpolated piecewise, with a third evaluation there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.costmodel import Candidate, Evaluation, combine, evaluate
from planner.specs.hardware import Cluster, WeightFormat
from planner.specs.model import Model
from planner.specs.plan import Workload


@dataclass(frozen=True, kw_only=True)
class DecodeRequest:
    """One decode candidate over a whole request, each figure an array over the batch axis
    (and weight formats, as `evaluate` sweeps them)."""

    last: Evaluation        # the step at the largest context (capacity: HBM use)
    decode_s: np.ndarray    # sum of the O steps (static batch)
    mfu: np.ndarray         # MFU of those O steps
    running_step_s: np.ndarray  # one step of a running batch (mean context)
    running_mfu: np.ndarray     # its MFU


def contexts(input_tokens: int, output_tokens: int) -> np.ndarray:
    """S_t for t = 1 .. O."""
    return input_tokens + np.arange(1, output_tokens + 1, dtype=float)


def decode_request(model: Model, cluster: Cluster, input_tokens: int, output_tokens: int,
                   candidate: Candidate, batch: np.ndarray,
                   formats: tuple[WeightFormat, ...] | None = None) -> DecodeRequest:
    S = contexts(input_tokens, output_tokens)

    def at(context: float) -> Evaluation:
        w = Workload(input_tokens=input_tokens, output_tokens=output_tokens, context=context)
        return evaluate(model, cluster, w, candidate, batch, formats=formats)

    last = at(float(S[-1]))
    first = last if output_tokens == 1 else at(float(S[0]))
    # share of the way from the first step to the last: (S_t - S_1) / (S_O - S_1), shape (O, 1)
    share = ((S - S[0]) / max(S[-1] - S[0], 1.0))[:, None]
    mean_share = 0.5  # S_mean is halfway between S_1 and S_O

    def parts(s) -> tuple:
        lerp = lambda name: getattr(first, name) + s * (getattr(last, name) - getattr(first, name))
        return tuple(lerp(name) for name in ("local_s", "comm_s", "prefetched_s"))

    def step(s):
        local, k, p = parts(s)
        return combine(local, k, last.overlap, p) + last.overhead_s

    if model.n_local_layers and S[0] < model.window_tokens < S[-1]:
        # Local layers stop growing at their window: the terms are affine on each side of
        # S = window, so each side interpolates between its own two evaluations, and a running
        # batch's step is the mean of the steps' terms (no longer those at the mean context).
        kink = at(float(model.window_tokens))
        names = ("local_s", "comm_s", "prefetched_s")
        below = (S <= model.window_tokens)[:, None]
        lo = ((S - S[0]) / (model.window_tokens - S[0]))[:, None]
        hi = ((S - model.window_tokens) / (S[-1] - model.window_tokens))[:, None]
        terms = [np.where(below, getattr(first, n) + lo * (getattr(kink, n) - getattr(first, n)),
                          getattr(kink, n) + hi * (getattr(last, n) - getattr(kink, n))) for n in names]
        decode_s = (combine(*terms[:2], last.overlap, terms[2]) + last.overhead_s).sum(axis=0)
        local, k, p = (t.mean(axis=0) for t in terms)
        running_step_s = combine(local, k, last.overlap, p) + last.overhead_s
    else:
        decode_s = step(share).sum(axis=0)
        running_step_s = step(mean_share)
    # MFU is inversely proportional to the time taken for the same tokens on the same chips
    mfu = last.mfu * last.latency_s / decode_s
    running_mfu = last.mfu * last.step_s / running_step_s
    return DecodeRequest(last=last, decode_s=decode_s, mfu=mfu, running_step_s=running_step_s,
                         running_mfu=running_mfu)

