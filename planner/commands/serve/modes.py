"""Whole requests on the pools (`serve_pools`): the figures of every deployment per mode, the SLO
filters, and the frontier of output tokens/s per chip against tokens/s per user.

A request: one prefill of I = input_tokens, then O = output_tokens decode steps. Per deployment
(n chips, P = prefill pass at batch b_p, D = sum of a static batch's O decode steps, d = one step
of a running batch of B sequences at the mean context, k = KV transfer time):

- static batch (B requests start together; b_p = B; the paper's and FasterTransformer's setting):
  TTFT = P, TPOT = D / O, end-to-end = P + D, output tokens/s per chip = B O / (n (P + D));
  chip time: n P for B I input tokens, n D for B O output tokens.
- colocated running batch (continuous batching, prefill *alternating* with decode steps on the
  same chips, in passes of b_p <= B prompts): a step makes B tokens and B / O requests finish,
  so B / O prompts are prefilled per step: TPOT = d + (B / O) P / b_p (prefill stretches every
  step), TTFT = P, end-to-end = TTFT + O TPOT, output tokens/s per chip = B / (n TPOT);
  chip time: n P / b_p per request's I input tokens, n d per B output tokens.
- disaggregated: a prefill pool (n_p chips, batch b_p) and a decode pool (n_d chips, batch B),
  each with its own layout and weight format, in the ratio that balances their request rates:
  r = (B / (O d)) / (b_p / P) prefill pools per decode pool; TTFT = P + k (the prompt's KV cache
  crosses the scale-out network, `planner.cost.network.transfer_seconds`, in the cache's format,
  scales included: both pools hold it in the same format), TPOT = d,
  output tokens/s per chip = (B / d) / (n_d + r n_p); chip time as colocated, per pool.

Tokens/s per user = 1 / TPOT. Cost per token = price per chip-second x chip time / tokens.
Queueing (waiting for a batch to fill or a step to end) is not modelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from planner.commands.serve.pools import Pool, Stage
from planner.cost.network import transfer_seconds
from planner.specs.plan import Plan
from planner.units import fmt_seconds

RESOLUTION = 1e-3  # as the plan's frontier: relative differences below 0.1% are ties


class Mode(Enum):
    """How requests share chips; carries its name and a one-line description."""

    STATIC = ("static", "static batch: a batch of requests starts and ends together")
    COLOCATED = ("colocated", "running batch, prefill alternating with decode steps on the same chips")
    DISAGGREGATED = ("disaggregated", "prefill pool and decode pool, KV cache sent between them")

    def __init__(self, label: str, description: str) -> None:
        self.label = label
        self.description = description


@dataclass(frozen=True, kw_only=True)
class Targets:
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None


TARGETS = (("ttft_s", "TTFT", "--ttft"), ("tpot_s", "TPOT", "--tpot"), ("e2e_s", "end-to-end", "--e2e"))


@dataclass(frozen=True, kw_only=True)
class Deployment:
    mode: Mode
    prefill: Stage
    decode: Stage
    chips: float  # chips per decode pool, with its share of prefill pools (disaggregated)
    prefill_pools_per_decode_pool: float | None  # disaggregated only
    ttft_s: float
    tpot_s: float
    e2e_s: float
    tokens_per_s_per_user: float
    output_tokens_per_s_per_chip: float
    usd_per_input_token: float | None  # None: no price given
    usd_per_output_token: float | None
    kv_transfer_bytes: float  # per request (disaggregated; 0 otherwise)
    kv_transfer_s: float


@dataclass(frozen=True, kw_only=True)
class ModeResult:
    mode: Mode
    evaluated: int  # deployments whose stages fit in HBM
    dropped: tuple[tuple[str, int], ...]  # by the first target missed
    frontier: tuple[Deployment, ...]
    infeasible: str = ""


def deployments(
    mode: Mode, plan: Plan, prefill: Pool, static: Pool, running: Pool, price_usd_per_chip_s: float | None
) -> tuple[dict, Pairs]:
    """Every deployment of `mode` whose stages fit: its figures (name -> array) and stages.
    With --runnable-on, a colocated or static deployment is one engine server, which runs one
    layout (FFN, attention, experts) and one KV format for both phases: its prefill and decode are
    then paired candidate by candidate (the pools' by_layout); disaggregated pools may differ."""
    if mode is not Mode.DISAGGREGATED and prefill.by_layout is not None:
        prefill, static, running = prefill.by_layout, static.by_layout, running.by_layout
    I, O = plan.workload.input_tokens, plan.workload.output_tokens
    batches = np.array(prefill.batches, dtype=float)
    chips = np.array(prefill.chips, dtype=float)
    pkeys = prefill.keys()  # (entries, 3): chip, format and batch index, in C order
    if mode is Mode.STATIC:
        decode = static
        dkeys = static.keys()
        p_sel = d_sel = dkeys[np.isfinite(prefill.seconds)[tuple(dkeys.T)]]
    else:
        decode = running
        dkeys = running.keys()
        if mode is Mode.COLOCATED:  # the same chips and format, prefill passes of at most the batch
            match = (
                (pkeys[None, :, 0] == dkeys[:, None, 0])
                & (pkeys[None, :, 1] == dkeys[:, None, 1])
                & (batches[pkeys[:, 2]][None, :] <= batches[dkeys[:, 2]][:, None])
            )
        else:  # disaggregated: any prefill pool whose KV cache is in the decode pool's format (the
            # cache crosses between them as stored)
            cache = {}
            code = np.array([cache.setdefault(f.kv_cache, len(cache)) for f in prefill.formats], dtype=np.int64)
            match = code[pkeys[:, 1]][None, :] == code[dkeys[:, 1]][:, None]
        d_row, p_row = np.nonzero(match)  # decode entry by decode entry, its prefill entries in order
        p_sel, d_sel = pkeys[p_row], dkeys[d_row]
    p_idx, d_idx = tuple(p_sel.T), tuple(d_sel.T)
    n = len(p_sel)
    P, D = prefill.seconds[p_idx], decode.seconds[d_idx]
    n_p, n_d, b_p, B = chips[p_idx[0]], chips[d_idx[0]], batches[p_idx[2]], batches[d_idx[2]]
    kv_bytes = np.zeros(n)
    kv_s = np.zeros(n)
    ratio = np.zeros(n)
    if mode is Mode.STATIC:
        ttft, tpot, e2e = P, D / O, P + D
        per_chip = B * O / (n_d * e2e)
        chip_s_in, chip_s_out = n_p * P / (B * I), n_d * D / (B * O)
        total_chips = n_d
    else:
        if mode is Mode.COLOCATED:
            tpot = D + (B / O) * P / b_p
            ttft, total_chips = P, n_d
        else:
            per_token = np.array(
                [plan.model.kv_bytes_per_token(f.kv_cache.bytes_per_element(plan.model.d_head)) for f in decode.formats]
            )
            kv_bytes = kv_bytes + per_token[d_idx[1]] * I
            kv_s = transfer_seconds(plan.cluster, kv_bytes, n_p, n_d)
            ratio = (B / (O * D)) / (b_p / P)
            tpot, ttft, total_chips = D, P + kv_s, n_d + ratio * n_p
        e2e = ttft + O * tpot
        per_chip = B / (tpot * total_chips)
        chip_s_in, chip_s_out = n_p * P / (b_p * I), n_d * D / B
    figures = {
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "tokens_per_s_per_user": 1.0 / tpot,
        "output_tokens_per_s_per_chip": per_chip,
        "chips": total_chips,
        "ratio": ratio,
        "kv_bytes": kv_bytes,
        "kv_s": kv_s,
        "usd_in": None if price_usd_per_chip_s is None else price_usd_per_chip_s * chip_s_in,
        "usd_out": None if price_usd_per_chip_s is None else price_usd_per_chip_s * chip_s_out,
    }
    return figures, Pairs(prefill, decode, p_sel, d_sel)


class Pairs(Sequence):
    """The (prefill, decode) Stages of each deployment, made when a row is printed."""

    def __init__(self, prefill: Pool, decode: Pool, prefill_keys: np.ndarray, decode_keys: np.ndarray):
        self.prefill, self.decode, self.prefill_keys, self.decode_keys = prefill, decode, prefill_keys, decode_keys

    def __len__(self) -> int:
        return len(self.prefill_keys)

    def __getitem__(self, j: int) -> tuple[Stage, Stage]:
        return self.prefill.stage(self.prefill_keys[j]), self.decode.stage(self.decode_keys[j])


def mode_result(mode: Mode, figures: dict, stages: Sequence, targets: Targets, everything: bool = False) -> ModeResult:
    """Apply the targets (each dropped deployment counted under the first it misses), then keep
    the frontier (or, with `everything`, every deployment that meets them)."""
    n = len(stages)
    ok = np.ones(n, dtype=bool)
    dropped = []
    for key, label, _ in TARGETS:
        limit = getattr(targets, key)
        if limit is None:
            continue
        passes = figures[key] <= limit
        count = int((ok & ~passes).sum())
        if count:
            dropped.append((f"{label} above target", count))
        ok &= passes
    if n == 0:
        return ModeResult(
            mode=mode, evaluated=0, dropped=(), frontier=(), infeasible=f"{mode.label}: no deployment fits in HBM."
        )
    if not ok.any():
        return ModeResult(
            mode=mode,
            evaluated=n,
            dropped=tuple(dropped),
            frontier=(),
            infeasible=binding_message(mode, figures, targets, n, dropped),
        )
    keep = np.flatnonzero(ok) if everything else frontier(figures, ok)
    order = sorted(
        keep, key=lambda j: (-figures["tokens_per_s_per_user"][j], -figures["output_tokens_per_s_per_chip"][j], j)
    )
    return ModeResult(
        mode=mode,
        evaluated=n,
        dropped=tuple(dropped),
        frontier=tuple(_deployment(mode, figures, stages, j) for j in order),
    )


def frontier(figures: dict, ok: np.ndarray) -> np.ndarray:
    """Pareto frontier (maximise tokens/s per user and per chip): sort by per-user speed, keep
    a running best per chip; a point must beat every faster point by more than RESOLUTION."""
    idx = np.flatnonzero(ok)
    user, chip = figures["tokens_per_s_per_user"][idx], figures["output_tokens_per_s_per_chip"][idx]
    order = np.lexsort((-chip, -user))
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], chip[order][:-1]]))
    on = list(order[chip[order] > best_before * (1 + RESOLUTION)])
    for k in range(len(on) - 2, -1, -1):  # a slower neighbour within resolution wins
        if user[on[k + 1]] * (1 + RESOLUTION) >= user[on[k]]:
            del on[k]
    return idx[np.array(on, dtype=int)]


def binding_message(mode: Mode, figures: dict, targets: Targets, n: int, dropped: list) -> str:
    """Which target binds, and the best value reachable while meeting the others."""
    counts = ", ".join(f"{c} {r}" for r, c in dropped)
    lines = [f"{mode.label}: no deployment meets the targets among {n} that fit ({counts})."]
    given = [(key, label, flag) for key, label, flag in TARGETS if getattr(targets, key) is not None]
    for key, label, flag in given:
        others = np.ones(n, dtype=bool)
        for other, _, _ in given:
            if other != key:
                others &= figures[other] <= getattr(targets, other)
        limit = getattr(targets, key)
        alone = float(figures[key].min())
        if alone > limit:
            lines.append(
                f"  {label} binds: the best reachable is {fmt_seconds(alone)}; {flag} is {fmt_seconds(limit)}."
            )
        elif others.any() and float(figures[key][others].min()) > limit:
            lines.append(
                f"  {label} binds: the best {label} among deployments that meet the other targets "
                f"is {fmt_seconds(float(figures[key][others].min()))}; {flag} is {fmt_seconds(limit)}."
            )
    return "\n".join(lines + ["  hint: relax the binding target or allow more chips or smaller batches."])


def _deployment(mode: Mode, f: dict, stages: Sequence, j: int) -> Deployment:
    prefill, decode = stages[j]
    cost = lambda key: None if f[key] is None else float(f[key][j])
    return Deployment(
        mode=mode,
        prefill=prefill,
        decode=decode,
        chips=float(f["chips"][j]),
        prefill_pools_per_decode_pool=float(f["ratio"][j]) if mode is Mode.DISAGGREGATED else None,
        ttft_s=float(f["ttft_s"][j]),
        tpot_s=float(f["tpot_s"][j]),
        e2e_s=float(f["e2e_s"][j]),
        tokens_per_s_per_user=float(f["tokens_per_s_per_user"][j]),
        output_tokens_per_s_per_chip=float(f["output_tokens_per_s_per_chip"][j]),
        usd_per_input_token=cost("usd_in"),
        usd_per_output_token=cost("usd_out"),
        kv_transfer_bytes=float(f["kv_bytes"][j]),
        kv_transfer_s=float(f["kv_s"][j]),
    )
