"""`planner serve --concurrency`: each deployment's curve over concurrencies, as engines run it
(`steady_state` on the serve pools). A colocated deployment is (chips, weight and KV-cache
format); a disaggregated one is (prefill chips and format, decode chips and format), both pools
holding the KV cache in the same format. At each concurrency the pools' fastest layout at the
batch that runs is used (engines' serving configurations change with the load too); the layout
is printed beside each point.

The JSON (`curve_dict`) is a contract: add keys, never rename or remove them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.commands.runs import provenance_dict
from planner.commands.serve.modes import Mode
from planner.commands.serve.pools import Pool, Stage, pools
from planner.commands.serve.steady_state import (
    DEFAULT_TOKEN_BUDGET,
    Policy,
    SteadyState,
    colocated,
    disaggregated,
    max_running,
    prompts_per_pass,
    running_limit,
)
from planner.cost.network import transfer_seconds
from planner.errors import InfeasibleError, UsageError
from planner.search.search import weights_hint
from planner.specs.model import Model
from planner.specs.plan import Plan
from planner.units import PER_MILLION, SECONDS_PER_HOUR, fmt_chips, num

CURVE_MODES = (Mode.COLOCATED, Mode.DISAGGREGATED)


@dataclass(frozen=True, kw_only=True)
class CurveRequest:
    plan: Plan
    concurrency: tuple[int, ...]
    modes: tuple[Mode, ...] = CURVE_MODES
    policy: Policy = Policy.PREFILL_FIRST
    token_budget: int = DEFAULT_TOKEN_BUDGET
    max_running: int | None = None  # an engine's maximum running requests (None: what fits in HBM)
    price_usd_per_chip_s: float | None = None
    price_source: str = ""
    speculation: Speculation | None = None  # speculative decoding (None: none)


MTP_ACCEPTED = 1.889  # MTP's mean accepted length at 3 draft tokens: `planner calibrate` on the serving set
MTP_DRAFT_TOKENS = 3


@dataclass(frozen=True, kw_only=True)
class Speculation:
    """Speculative decoding: K draft tokens per step, A accepted per step on average; the drafter
    runs K passes of `draft_layers` layers of the target's shape (MTP, EAGLE: one), or, given a
    `draft_model`, K decode steps of that model on the same chips (tensor-parallel, `ws1d+heads`,
    as vLLM and SGLang run a draft model beside the target)."""

    draft_tokens: int
    accepted: float
    draft_layers: int = 1
    draft_model: Model | None = None  # a separate draft model (None: layers of the target's shape)


def speculative_steps(plan: Plan, running: Pool, speculation: Speculation | None) -> Pool:
    """`running` with each decode step's seconds per accepted token: a step verifies K + 1 tokens
    per sequence (the decode step at K + 1 tokens each: weights and KV cache read once, K + 1 times
    the FLOPs) plus the drafter's K passes, each draft_layers / n_layers of a one-token step;
    divided by A, so TPOT = step / A."""
    if speculation is None:
        return running
    k = speculation.draft_tokens
    verify = replace(plan, workload=replace(plan.workload, decode_tokens=k + 1))
    _, _, checked = pools(verify)
    if speculation.draft_model is None:
        draft = k * running.seconds * speculation.draft_layers / plan.model.n_layers
    else:  # the draft model's own decode step at the same chips, formats and batches, K times
        space = replace(plan.space, ffn=("ws1d",), attention=("heads",), experts=(), runnable_on=None)
        _, _, drafter = pools(replace(plan, model=speculation.draft_model, space=space))
        draft = k * drafter.seconds
    return replace(running, seconds=(checked.seconds + draft) / speculation.accepted)


@dataclass(frozen=True, kw_only=True)
class CurvePoint:
    concurrency: int
    running: int
    queued: int
    ttft_s: float
    queue_s: float
    tpot_s: float
    e2e_s: float
    tokens_per_s_per_user: float
    output_tokens_per_s_per_chip: float
    chips: float  # all the deployment's chips at this point
    prefill_pools: float  # per decode pool (disaggregated)
    prefill_wait_s: float
    usd_per_million_output_tokens: float | None  # all the chips' time charged to output tokens
    prefill: Stage
    decode: Stage


@dataclass(frozen=True, kw_only=True)
class Curve:
    mode: Mode
    chips: int  # the decode pool's (colocated: the one pool's)
    prefill_chips: int  # the prefill pool's (colocated: the same)
    max_running: int
    kv_transfer_bytes: float
    kv_transfer_s: float
    points: tuple[CurvePoint, ...]

    @property
    def name(self) -> str:
        d = self.points[0].decode
        if self.mode is Mode.COLOCATED:
            return f"colocated {fmt_chips(self.chips)} {d.weights} (KV {d.kv_cache})"
        return (
            f"disaggregated prefill {fmt_chips(self.prefill_chips)} {self.points[0].prefill.weights} + decode "
            f"{fmt_chips(self.chips)} {d.weights} (KV {d.kv_cache})"
        )


@dataclass(frozen=True, kw_only=True)
class CurveResult:
    request: CurveRequest
    curves: tuple[Curve, ...]


GRID_TOP = 2**16  # the largest running batch looked for


def grid(concurrency: tuple[int, ...], prompts: int = 1) -> tuple[int, ...]:
    """The batches the pools are costed at: every concurrency, the prompts of a full prefill pass
    (`prompts`), and 2^i and 3 x 2^i up to GRID_TOP (the largest running batch that fits is the
    largest of these that does, within a third of the true one)."""
    steps = {m * 2**i for i in range(17) for m in (2, 3) if m * 2**i <= 2 * GRID_TOP} | {1}
    return tuple(sorted(set(concurrency) | {prompts} | {b // 2 for b in steps if b // 2 >= 1}))


def serve_curve(request: CurveRequest) -> CurveResult:
    if not request.concurrency or min(request.concurrency) < 1:
        raise UsageError("--concurrency: expected positive whole numbers such as 1,4,16,64")
    plan = request.plan
    plan = replace(
        plan,
        space=replace(
            plan.space,
            batches=grid(request.concurrency, prompts_per_pass(plan.workload.input_tokens, request.token_budget)),
        ),
    )
    prefill, _, running = pools(plan)
    running = speculative_steps(plan, running, request.speculation)
    curves = []
    for mode in request.modes:
        curves += (
            _colocated(plan, request, prefill, running)
            if mode is Mode.COLOCATED
            else _disaggregated(plan, request, prefill, running)
        )
    if not curves:
        raise InfeasibleError(
            "nothing fits in HBM for a running batch of one request at context "
            f"{plan.workload.input_tokens + plan.workload.output_tokens}.\n  hint: " + weights_hint(plan)
        )
    return CurveResult(request=request, curves=tuple(curves))


def _colocated(plan: Plan, request: CurveRequest, prefill: Pool, running: Pool) -> list[Curve]:
    w, batches = plan.workload, np.array(running.batches)
    out = []
    for ci, n in enumerate(running.chips):
        for fi in range(len(running.formats)):
            top = max_running(batches, running.seconds[ci, fi], request.max_running)
            if top == 0 or not np.isfinite(prefill.seconds[ci, fi, 0]):
                continue
            s = colocated(
                concurrency=np.array(request.concurrency),
                input_tokens=w.input_tokens,
                output_tokens=w.output_tokens,
                batches=batches,
                prefill_pass_s=prefill.seconds[ci, fi],
                decode_step_s=running.seconds[ci, fi],
                max_running_batch=top,
                chips=n,
                policy=request.policy,
                token_budget=request.token_budget,
            )
            top = running_limit(top, w.input_tokens, w.output_tokens, request.policy, request.token_budget)
            out.append(_curve(Mode.COLOCATED, request, s, prefill, running, (ci, fi), (ci, fi), top, 0.0, 0.0))
    return out


def _disaggregated(plan: Plan, request: CurveRequest, prefill: Pool, running: Pool) -> list[Curve]:
    w, batches = plan.workload, np.array(running.batches)
    out = []
    for ci, n in enumerate(running.chips):
        for fi, f in enumerate(running.formats):
            top = max_running(batches, running.seconds[ci, fi], request.max_running)
            if top == 0:
                continue
            kv_bytes = float(
                plan.model.kv_bytes_per_token(f.kv_cache.bytes_per_element(plan.model.d_head)) * w.input_tokens
            )
            for pci, n_p in enumerate(prefill.chips):
                for pfi, pf in enumerate(prefill.formats):
                    if pf.kv_cache is not f.kv_cache or not np.isfinite(prefill.seconds[pci, pfi, 0]):
                        continue
                    kv_s = float(transfer_seconds(plan.cluster, kv_bytes, n_p, n))
                    s = disaggregated(
                        concurrency=np.array(request.concurrency),
                        input_tokens=w.input_tokens,
                        output_tokens=w.output_tokens,
                        batches=batches,
                        prefill_pass_s=prefill.seconds[pci, pfi],
                        decode_step_s=running.seconds[ci, fi],
                        max_running_batch=top,
                        prefill_chips=n_p,
                        decode_chips=n,
                        kv_transfer_s=kv_s,
                        token_budget=request.token_budget,
                    )
                    out.append(
                        _curve(
                            Mode.DISAGGREGATED, request, s, prefill, running, (pci, pfi), (ci, fi), top, kv_bytes, kv_s
                        )
                    )
    return out


def _curve(
    mode: Mode,
    request: CurveRequest,
    s: SteadyState,
    prefill: Pool,
    running: Pool,
    pkey,
    dkey,
    top: int,
    kv_bytes: float,
    kv_s: float,
) -> Curve:
    price = request.price_usd_per_chip_s
    batches = np.array(running.batches)
    points = []
    for j, c in enumerate(request.concurrency):
        b = int(min(c, top))  # the batch that runs (its layout is printed)
        w = request.plan.workload
        k_max = prompts_per_pass(w.input_tokens, request.token_budget)
        prompts = min(max(1.0, b / w.output_tokens), k_max) if mode is Mode.COLOCATED else 1.0
        pb = int(batches[batches <= prompts].max())  # the prefill pass's layout: the grid batch at or below
        per_chip = float(s.output_tokens_per_s_per_chip[j])
        points.append(
            CurvePoint(
                concurrency=c,
                running=b,
                queued=c - b,
                ttft_s=float(s.ttft_s[j]),
                queue_s=_no_noise(float(s.queue_s[j]), float(s.e2e_s[j])),
                tpot_s=float(s.tpot_s[j]),
                e2e_s=float(s.e2e_s[j]),
                tokens_per_s_per_user=float(s.tokens_per_s_per_user[j]),
                output_tokens_per_s_per_chip=per_chip,
                chips=float(s.chips[j]),
                prefill_pools=float(s.prefill_pools[j]),
                prefill_wait_s=float(s.prefill_wait_s[j]),
                usd_per_million_output_tokens=None if price is None else price / per_chip * PER_MILLION,
                prefill=prefill.stage((*pkey, int(np.flatnonzero(batches == pb)[0]))),
                decode=running.stage((*dkey, int(np.flatnonzero(batches == b)[0]))),
            )
        )
    n_p = prefill.chips[pkey[0]]
    return Curve(
        mode=mode,
        chips=running.chips[dkey[0]],
        prefill_chips=n_p,
        max_running=top,
        kv_transfer_bytes=kv_bytes,
        kv_transfer_s=kv_s,
        points=tuple(points),
    )


# --- the JSON contract (add keys, never rename them) ---------------------------------------------


def _stage(s: Stage) -> dict:
    return {
        "chips": s.chips,
        "batch": s.batch,
        "ffn": s.ffn,
        "attention": s.attention,
        **({"experts": s.experts} if s.experts else {}),
        "weights": s.weights,
        "kv_cache": s.kv_cache,
        "step_latency_s": num(s.step_latency_s),
    }


def point_dict(p: CurvePoint) -> dict:
    return {
        "concurrency": p.concurrency,
        "running": p.running,
        "queued": p.queued,
        "ttft_s": num(p.ttft_s),
        "queue_s": num(p.queue_s),
        "tpot_s": num(p.tpot_s),
        "e2e_s": num(p.e2e_s),
        "tokens_per_s_per_user": num(p.tokens_per_s_per_user),
        "output_tokens_per_s_per_chip": num(p.output_tokens_per_s_per_chip),
        "chips": num(p.chips),
        "prefill_pools_per_decode_pool": num(p.prefill_pools),
        "prefill_wait_s": num(p.prefill_wait_s),
        "usd_per_million_output_tokens": None
        if p.usd_per_million_output_tokens is None
        else num(p.usd_per_million_output_tokens),
        "prefill": _stage(p.prefill),
        "decode": _stage(p.decode),
    }


def curve_dict(result: CurveResult) -> dict:
    req, plan = result.request, result.request.plan
    w, price = plan.workload, req.price_usd_per_chip_s
    return {
        "kind": "serve-curve",
        **provenance_dict(plan),
        "calibrated": plan.cluster.calibrated,
        "calibration_status": plan.cluster.calibration_status,
        "workload": {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens},
        "concurrency": list(req.concurrency),
        "policy": req.policy.label,
        "token_budget": req.token_budget if req.policy is Policy.CHUNKED else None,
        "max_running": req.max_running,
        "speculative": None
        if req.speculation is None
        else {
            "draft_tokens": req.speculation.draft_tokens,
            "accepted_length": req.speculation.accepted,
            "draft_model": None if req.speculation.draft_model is None else req.speculation.draft_model.name,
        },
        "price_usd_per_chip_hour": None if price is None else num(price * SECONDS_PER_HOUR),
        "curves": [
            {
                "deployment": c.name,
                "mode": c.mode.label,
                "chips": c.chips,
                "prefill_chips": c.prefill_chips,
                "max_running": c.max_running,
                "kv_transfer_bytes": num(c.kv_transfer_bytes),
                "kv_transfer_s": num(c.kv_transfer_s),
                "points": [point_dict(p) for p in c.points],
            }
            for c in result.curves
        ],
    }


NOISE = 1e-9  # relative to a request's time: far above a difference's rounding (1e-16), far below any wait


def _no_noise(queue_s: float, e2e_s: float) -> float:
    """A wait that is rounding in C / x - O tpot - TTFT (about 1e-16 s below saturation) as 0, as the
    table prints it ('-'); a real wait as it is."""
    return queue_s if queue_s > NOISE * e2e_s else 0.0
