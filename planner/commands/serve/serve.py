"""`planner serve`: the serving view of a plan. Whole requests (a prefill of the prompt, then one
decode step per output token), their TTFT, TPOT and end-to-end latency, tokens/s per user and per
chip, and cost per million tokens, per mode (static batch, colocated running batch,
disaggregated pools); SLO targets filter before the frontier. The arithmetic is in
`serve_modes`, the pools (fastest layout per chips, weights and batch) in `serve_pools`.

The JSON (`serve_dict`) is a contract: add keys, never rename or remove them.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.commands.runs import provenance_dict
from planner.commands.serve.modes import Deployment, Mode, ModeResult, Targets, deployments, mode_result
from planner.commands.serve.pools import Stage, pools
from planner.cost.layouts import EXPERT_LAYOUTS, FFN_LAYOUTS
from planner.errors import InfeasibleError
from planner.search.search import weights_hint
from planner.specs.plan import Plan
from planner.units import PER_MILLION, SECONDS_PER_HOUR, num

# The names serving engineers use for the plan's layouts (a legend beside the layout names).
SERVING_NAMES = {
    "ws1d": "Megatron tensor parallelism over all chips",
    "ws2d": "2D tensor parallelism (d_model over x, d_ff over yz)",
    "wg-x": "data parallel over x with weights gathered (FSDP-style), tensor parallel over yz",
    "wg-xy": "data parallel over xy with weights gathered (FSDP-style), tensor parallel over z",
    "wg-xyz": "fully sharded data parallel (ZeRO-3 / FSDP: all weights gathered every layer)",
    "dp": "data parallel dense parts (attention, dense layers, shared experts and the head whole on every "
    "chip: SGLang's DP attention with --moe-dense-tp-size 1)",
    "heads": "head-parallel attention (tensor parallel attention)",
    "batch": "data parallel attention (batch-sharded attention, KV cache split by sequence)",
    # expert layouts of MoE models (planner.cost.layouts.experts)
    "ep": "expert parallelism over all chips (wide EP: all-to-all dispatch and combine)",
    "ep-xy+tp-z": "expert parallelism over xy, tensor parallelism inside each expert over z",
    "ep-x+tp-yz": "expert parallelism over x, tensor parallelism inside each expert over yz",
    "ep-yz": "expert parallelism over yz, experts replicated over x",
    "tp": "tensor-parallel experts (every expert sharded over all chips, no all-to-all)",
    "wg": "experts' weights gathered to the tokens (FSDP-style)",
}
TWO_BATCH = "+tbo"  # an expert layout's two-batch overlap variant (planner.cost.overlap)


def serving_name(layout: str) -> str:
    """A layout as serving engineers name it (a two-batch overlap variant: its base's, and so)."""
    base = layout.removesuffix(TWO_BATCH)
    overlap = " with two-batch overlap (one micro-batch's dispatch and combine under the other's compute)"
    return SERVING_NAMES[base] + (overlap if layout != base else "")


def serving_order(layout: str) -> tuple[int, bool]:
    """Where a layout's name goes in a legend: its base's place, a two-batch variant after it."""
    return list(SERVING_NAMES).index(layout.removesuffix(TWO_BATCH)), layout.endswith(TWO_BATCH)


NOT_MODELLED = "serve plans one pipeline stage: pipeline parallelism is planned by `planner plan --stages`"


@dataclass(frozen=True, kw_only=True)
class ServeRequest:
    plan: Plan
    modes: tuple[Mode, ...] = tuple(Mode)
    targets: Targets = Targets()
    price_usd_per_chip_s: float | None = None  # None: cost columns say "no price"
    price_source: str = ""  # "--price" or the cluster file
    everything: bool = False  # every deployment meeting the targets, not only the frontier


@dataclass(frozen=True, kw_only=True)
class ServeResult:
    request: ServeRequest
    modes: tuple[ModeResult, ...]

    def rows(self) -> list[Deployment]:
        """Every printed deployment in order; row N (1-based) of the tables is rows()[N - 1]."""
        return [d for m in self.modes for d in m.frontier]


def serve(request: ServeRequest, partial: bool = False) -> ServeResult:
    """Every mode's frontier. A mode with nothing feasible raises InfeasibleError, unless
    `partial` and another mode has a frontier (then its reason is in `infeasible`)."""
    plan = request.plan
    prefill, static, running = pools(plan)
    if not prefill.any() or not (static.any() or running.any()):
        raise InfeasibleError(
            "nothing fits in HBM for a whole request "
            f"(prefill {prefill.fits} of {prefill.evaluated}, decode {static.fits} of "
            f"{static.evaluated} points fit at context "
            f"{plan.workload.input_tokens + plan.workload.output_tokens}).\n  hint: " + weights_hint(plan)
        )
    results = []
    for mode in request.modes:
        figures, stages = deployments(mode, plan, prefill, static, running, request.price_usd_per_chip_s)
        results.append(mode_result(mode, figures, stages, request.targets, request.everything))
    failed = [m.infeasible for m in results if m.infeasible]
    if failed and (not partial or len(failed) == len(results)):
        raise InfeasibleError("\n".join(failed))
    return ServeResult(request=request, modes=tuple(results))


def serving_names(d: Deployment) -> str:
    """'prefill: <ffn>, <attention>; decode: ...' in the serving engineers' words (short form)."""
    short = lambda s: " + ".join(serving_name(name).split(" (")[0] for name in (s.ffn, s.attention, s.experts) if name)
    return f"prefill: {short(d.prefill)}; decode: {short(d.decode)}"


# --- the JSON contract (add keys, never rename them) ---------------------------------------------


def stage_dict(s: Stage) -> dict:
    return {
        "phase": s.phase.value,
        "chips": s.chips,
        "batch": s.batch,
        "ffn": s.ffn,
        "attention": s.attention,
        "weights": s.weights,
        "latency_s": num(s.latency_s),
        "step_latency_s": num(s.step_latency_s),
        "mfu": num(s.mfu),
        "hbm_fraction": num(s.hbm_fraction),
        "bound": s.bound,
        "context": num(s.context),
        "kv_cache": s.kv_cache,
        **({"experts": s.experts} if s.experts else {}),
    }


def deployment_dict(d: Deployment, index: int) -> dict:
    per_m = lambda v: None if v is None else num(v * PER_MILLION)
    return {
        "row": index,
        "mode": d.mode.label,
        "chips": num(d.chips),
        "prefill_pools_per_decode_pool": None
        if d.prefill_pools_per_decode_pool is None
        else num(d.prefill_pools_per_decode_pool),
        "ttft_s": num(d.ttft_s),
        "tpot_s": num(d.tpot_s),
        "e2e_s": num(d.e2e_s),
        "tokens_per_s_per_user": num(d.tokens_per_s_per_user),
        "output_tokens_per_s_per_chip": num(d.output_tokens_per_s_per_chip),
        "usd_per_million_input_tokens": per_m(d.usd_per_input_token),
        "usd_per_million_output_tokens": per_m(d.usd_per_output_token),
        "kv_transfer_bytes": num(d.kv_transfer_bytes),
        "kv_transfer_s": num(d.kv_transfer_s),
        "prefill": stage_dict(d.prefill),
        "decode": stage_dict(d.decode),
        "serving_names": serving_names(d),
    }


def serve_dict(result: ServeResult) -> dict:
    """A saved run of `planner serve`: figures, and what they depend on (hardware figures, model
    shape, planner version), so that a comparison can say why something moved."""
    req = result.request
    plan = req.plan
    w, t = plan.workload, req.targets
    out, index = {}, 1
    for mr in result.modes:
        out[mr.mode.label] = {
            "evaluated": mr.evaluated,
            "dropped": dict(mr.dropped),
            "frontier": [deployment_dict(d, index + k) for k, d in enumerate(mr.frontier)],
            **({"infeasible": mr.infeasible} if mr.infeasible else {}),
        }
        index += len(mr.frontier)
    price = req.price_usd_per_chip_s
    return {
        "kind": "serve",
        **provenance_dict(plan),
        "all": req.everything,
        "calibrated": plan.cluster.calibrated,  # false: ideal constants, never fitted to measurements
        "calibration_status": plan.cluster.calibration_status,  # or borrowed from another preset
        "workload": {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens},
        "search": {
            "chips": list(plan.space.chips),
            "batch": list(plan.space.batches),
            "weights": [f.label for f in plan.space.weights],
            # what was searched: a dense model runs no replicated FFN (dp), whatever the list said
            "ffn": [f for f in plan.space.ffn if plan.model.experts is not None or not FFN_LAYOUTS[f].replicated],
            "attention": list(plan.space.attention),
            "kv_cache": [kv.label for kv in plan.space.kv_cache],
            **(
                {
                    "experts": list(plan.space.experts or EXPERT_LAYOUTS),
                    "load_imbalance": plan.workload.routing.load_imbalance,
                }
                if plan.model.experts is not None
                else {}
            ),
        },
        "targets": {"ttft_s": t.ttft_s, "tpot_s": t.tpot_s, "e2e_s": t.e2e_s},
        "price_usd_per_chip_hour": None if price is None else num(price * SECONDS_PER_HOUR),
        "modes": out,
    }


def explain_row(result: ServeResult, row: int) -> tuple[Deployment, tuple, str]:
    """Row `row` (1-based, as printed), the cost breakdown of its prefill and decode stages, and
    a note that ties the decode breakdown to the row's TPOT. Decode is explained at the mean
    context of the request's steps, I + (O + 1) / 2: every term of a step is affine in the context
    (`planner.cost.request`), so the breakdown's compute, memory and network times are exactly
    the means over the O steps, and its step is the row's mean step (a static batch's TPOT; a
    running batch's step) unless the bound changes within the request, which the note says."""
    import numpy as np

    from planner.cost.costmodel import evaluate
    from planner.errors import UsageError
    from planner.specs.plan import Workload

    rows = result.rows()
    if not 1 <= row <= len(rows):
        raise UsageError(f"--row: expected a row number from 1 to {len(rows)} (the # column), got {row}")
    d, w = rows[row - 1], result.request.plan.workload
    mean = w.input_tokens + (w.output_tokens + 1) / 2
    contexts = (d.prefill.context, int(mean) if mean == int(mean) else mean)
    evs = tuple(
        evaluate(
            result.request.plan.model,
            result.request.plan.cluster,
            Workload(input_tokens=w.input_tokens, output_tokens=w.output_tokens, context=context, routing=w.routing),
            s.candidate,
            np.array([s.batch]),
            detail=True,
        )
        for s, context in zip((d.prefill, d.decode), contexts)
    )
    return d, evs, decode_note(d, w, float(evs[1].step_s[0]))


def decode_note(d: Deployment, w, explained_step_s: float) -> str:
    """What the decode breakdown is, against the row: the steps its TPOT is the mean of, the mean
    context it is explained at, and where HBM is held."""
    from planner.units import fmt_seconds, fmt_tokens

    I, O = w.input_tokens, w.output_tokens
    mean = I + (O + 1) / 2
    steps = (
        f"the {O} decode steps attend to contexts {I + 1} to {I + O}"
        if O > 1
        else f"the decode step attends to context {I + 1}"
    )
    step = d.decode.step_latency_s  # a static batch: decode_s / O; a running batch: its step
    if d.mode is Mode.STATIC:
        what = f"TPOT {fmt_seconds(d.tpot_s)} is the mean of their step times"
    elif d.mode is Mode.COLOCATED:
        what = (
            f"TPOT {fmt_seconds(d.tpot_s)} = a running batch's step {fmt_seconds(step)} (sequences at "
            f"every one of those contexts) + its share of prefill passes {fmt_seconds(d.tpot_s - step)}"
        )
    else:
        what = f"TPOT {fmt_seconds(d.tpot_s)} is a running batch's step (sequences at every one of those contexts)"
    agree = (
        ""
        if abs(explained_step_s - step) <= 1e-6 * step
        else f"; it differs from the row's mean step {fmt_seconds(step)}: the step is not affine in the "
        "context within this request (its bound changes, or local layers stop growing at their window)"
    )
    return (
        f"decode: {steps}; {what}. Below, decode is explained at their mean context, "
        f"{fmt_tokens(mean)} tokens (step {fmt_seconds(explained_step_s)}: its compute, memory and network "
        f"times are the steps' means){agree}. Its memory lines hold the KV cache at that mean context; "
        f"capacity is checked at the largest, {I + O} tokens: {d.decode.hbm_fraction:.1%} of HBM."
    )
