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

`decode_request` does this for one candidate from its Evaluations; `RequestParts` and
`static_decode_s` / `running_step_s` do the same arithmetic on arrays of many candidates' parts
at once (serve's pools, from the search's sweep): every figure the same, bit for bit, the sums
over the O steps in numpy's own order (`_sum_steps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.costmodel import Candidate, Evaluation, combine, evaluate
from planner.specs.hardware import Cluster, WeightFormat
from planner.specs.model import Model
from planner.specs.moe import Routing
from planner.specs.plan import Workload

PARTS = ("local_s", "comm_s", "prefetched_s")  # the parts of a step interpolated between contexts
CHUNK = 1 << 21  # steps x points summed at a time (memory: a few arrays of this many floats)


@dataclass(frozen=True, kw_only=True)
class DecodeRequest:
    """One decode candidate over a whole request, each figure an array over the batch axis
    (and weight formats, as `evaluate` sweeps them)."""

    last: Evaluation  # the step at the largest context (capacity: HBM use)
    decode_s: np.ndarray  # sum of the O steps (static batch)
    mfu: np.ndarray  # MFU of those O steps
    running_step_s: np.ndarray  # one step of a running batch (mean context)
    running_mfu: np.ndarray  # its MFU


def contexts(input_tokens: int, output_tokens: int) -> np.ndarray:
    """S_t for t = 1 .. O."""
    return input_tokens + np.arange(1, output_tokens + 1, dtype=float)


def context_workload(
    input_tokens: int, output_tokens: int, context: float, routing: Routing = Routing(), decode_tokens: int = 1
) -> Workload:
    """The workload of one decode step of a request, at `context` (MoE models: routed as `routing`;
    `decode_tokens` per sequence a step runs: K + 1 where it verifies K draft tokens)."""
    return Workload(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        context=context,
        routing=routing,
        decode_tokens=decode_tokens,
    )


def window_crossed(model: Model, input_tokens: int, output_tokens: int) -> float | None:
    """The local layers' window as a context, if the request's steps cross it (else None)."""
    S = contexts(input_tokens, output_tokens)
    return float(model.window_tokens) if model.n_local_layers and S[0] < model.window_tokens < S[-1] else None


def decode_request(
    model: Model,
    cluster: Cluster,
    input_tokens: int,
    output_tokens: int,
    candidate: Candidate,
    batch: np.ndarray,
    formats: tuple[WeightFormat, ...] | None = None,
    routing: Routing = Routing(),
) -> DecodeRequest:
    S = contexts(input_tokens, output_tokens)

    def at(context: float) -> Evaluation:
        w = context_workload(input_tokens, output_tokens, context, routing)
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
        terms = [
            np.where(
                below,
                getattr(first, n) + lo * (getattr(kink, n) - getattr(first, n)),
                getattr(kink, n) + hi * (getattr(last, n) - getattr(kink, n)),
            )
            for n in names
        ]
        decode_s = (combine(*terms[:2], last.overlap, terms[2]) + last.overhead_s).sum(axis=0)
        local, k, p = (t.mean(axis=0) for t in terms)
        running_step_s = combine(local, k, last.overlap, p) + last.overhead_s
    else:
        decode_s = step(share).sum(axis=0)
        running_step_s = step(mean_share)
    # MFU is inversely proportional to the time taken for the same tokens on the same chips
    mfu = last.mfu * last.latency_s / decode_s
    running_mfu = last.mfu * last.step_s / running_step_s
    return DecodeRequest(last=last, decode_s=decode_s, mfu=mfu, running_step_s=running_step_s, running_mfu=running_mfu)


@dataclass(frozen=True, kw_only=True)
class RequestParts:
    """Many candidates' step parts (PARTS, and overhead_s) at the contexts a request's decode is
    interpolated between: `first` (S_1), `last` (S_O) and, where the steps cross the local
    layers' window, `kink` (S = window), each a dict of 1-D arrays over the same points (of
    many candidates), with the values `decode_request`'s Evaluations hold."""

    first: dict
    last: dict
    kink: dict | None
    overhead_s: np.ndarray
    overlap: np.ndarray | float  # per point (two-batch overlap: 1; costmodel.step_overlap)
    input_tokens: int
    output_tokens: int
    window: float | None
    pairwise: bool  # decode_request's sums run over (O, 1) arrays: numpy sums those pairwise

    def picked(self, index) -> RequestParts:
        """The same parts at `index` (an index into the arrays)."""
        pick = lambda parts: None if parts is None else {n: parts[n][index] for n in PARTS}
        return RequestParts(
            first=pick(self.first),
            last=pick(self.last),
            kink=pick(self.kink),
            overhead_s=self.overhead_s[index],
            overlap=self.overlap if np.ndim(self.overlap) == 0 else self.overlap[index],
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            window=self.window,
            pairwise=self.pairwise,
        )

    def terms(self) -> list[np.ndarray]:
        """Every step of the request: each PART, (O, points)."""
        S = contexts(self.input_tokens, self.output_tokens)
        column = lambda x: x[:, None]  # noqa: E731
        if self.kink is None:
            share = column((S - S[0]) / max(S[-1] - S[0], 1.0))
            return [self.first[n] + share * (self.last[n] - self.first[n]) for n in PARTS]
        w = self.window
        below, down, up = column(S <= w), column((S - S[0]) / (w - S[0])), column((S - w) / (S[-1] - w))
        return [
            np.where(
                below,
                self.first[n] + down * (self.kink[n] - self.first[n]),
                self.kink[n] + up * (self.last[n] - self.kink[n]),
            )
            for n in PARTS
        ]


def static_decode_s(parts: RequestParts) -> np.ndarray:
    """decode_request's decode_s: the sum of the O steps, each combined on its own."""

    def one(part: RequestParts) -> np.ndarray:
        local, k, p = part.terms()
        return _sum_steps(combine(local, k, part.overlap, p) + part.overhead_s, part.pairwise)

    return _chunked(parts, one)


def running_step_s(parts: RequestParts) -> np.ndarray:
    """decode_request's running_step_s: one step of a running batch, every sequence at the mean
    context (crossing the window: the mean of the steps' terms)."""

    def one(part: RequestParts) -> np.ndarray:
        if part.kink is None:
            local, k, p = (part.first[n] + 0.5 * (part.last[n] - part.first[n]) for n in PARTS)
        else:  # numpy's mean: the sum, over the count
            local, k, p = (_sum_steps(t, part.pairwise) / part.output_tokens for t in part.terms())
        return combine(local, k, part.overlap, p) + part.overhead_s

    return one(parts) if parts.kink is None else _chunked(parts, one)


def _chunked(parts: RequestParts, one) -> np.ndarray:
    """`one(parts)` over 1-D parts, a few million steps x points at a time."""
    size, step = parts.last["local_s"].size, max(1, CHUNK // parts.output_tokens)
    if size <= step:
        return one(parts)
    return np.concatenate([one(parts.picked(slice(lo, lo + step))) for lo in range(0, size, step)])


def _sum_steps(steps: np.ndarray, pairwise: bool) -> np.ndarray:
    """The sum over the first axis of `steps` (O steps), added as numpy adds decode_request's
    (O, points) arrays along their first axis: one row after another, or, over (O, 1) arrays
    (`pairwise`), by numpy's pairwise summation of a contiguous run."""
    if pairwise:
        return np.ascontiguousarray(np.moveaxis(steps, 0, -1)).sum(axis=-1)
    total = steps[0].copy()
    for row in steps[1:]:
        total += row
    return total
