"""The search's grouped evaluation (planner.search.sweep) gives every candidate exactly the figures
`evaluate` gives it alone, and the network's Lines exactly `collective_seconds`."""

from dataclasses import replace

import numpy as np
import pytest

from planner.config import load_plan
from planner.cost.layouts.base import Collective, CollectiveKind
from planner.cost.line_tables import LineCache, network_seconds
from planner.cost.network import collective_seconds
from planner.cost.pipeline import evaluate_pipeline
from planner.search.search import candidates, cost
from planner.search.sweep import sweep


@pytest.mark.parametrize("name", ["llama-3-70b-h100", "palm-540b-tpu-v4", "deepseek-v3-h200"])
def test_sweep_is_evaluate_bit_for_bit(name):
    plan = load_plan(name)
    formats = plan.space.formats(plan.cluster.chip)
    batch = np.array(plan.space.batches, dtype=np.int64)
    for phase in plan.space.phases:
        layouts = candidates(plan, phase)[:: len(formats)]
        swept = sweep(plan, layouts, batch, formats)
        for k in range(0, len(layouts), 7):  # a spread of candidates, every mesh family
            ev = cost(plan, layouts[k], batch, formats=formats)
            for mine, theirs in (
                (swept.latency_s[k], ev.latency_s),
                (swept.step_s[k], ev.step_s),
                (swept.mfu[k], ev.mfu),
                (swept.hbm_bytes[k], ev.hbm_bytes),
            ):
                assert np.array_equal(mine, np.broadcast_to(theirs, mine.shape))


@pytest.mark.parametrize("name", ["llama-3-70b-h100", "palm-540b-tpu-v4"])
def test_network_seconds_is_collective_seconds(name):
    plan = load_plan(name)
    meshes = [c.mesh for c in candidates(plan, plan.space.phases[0])]
    data = np.array([[1.0, 3e6, 7.5e8], [2.0, 5e5, 1e9]])
    lines = LineCache(plan.cluster)
    for kind in CollectiveKind:
        for axes in ("x", "yz", "xyz"):
            for prefetched in (False, True):
                collectives = [Collective(kind=kind, axes=axes, bytes_per_chip=d, prefetched=prefetched) for d in data]
                comm, pre = network_seconds(
                    lines, meshes, collectives, data, np.array([[3.0], [1.0]]), np.array([prefetched, False])
                )
                for m, mesh in enumerate(meshes):
                    one = 3.0 * collective_seconds(plan.cluster, mesh, collectives[0])
                    assert np.array_equal(comm[m], one + 1.0 * collective_seconds(plan.cluster, mesh, collectives[1]))
                    assert np.array_equal(pre[m], one if prefetched else 0.0 * one)


@pytest.mark.parametrize(
    "name, flags",
    [
        ("llama-3-70b-h100", {}),
        ("palm-540b-tpu-v4", {}),
        (None, {"model": "gemma-3-27b", "cluster": "h100-sxm", "chips": (8, 16)}),  # local layers
        (None, {"model": "deepseek-v3", "cluster": "h200-sxm", "chips": (16, 32), "weights": ("fp8",)}),  # MoE, MLA
        (
            None,
            {"model": "llama-4-maverick", "cluster": "h100-sxm", "chips": (16, 32), "weights": ("fp8",)},
        ),  # MoE every 2nd
        (None, {"model": "gpt-oss-120b", "cluster": "h100-sxm", "chips": (8, 16), "weights": ("int4",)}),  # MoE, local
    ],
)
@pytest.mark.slow
def test_pipelined_sweep_is_evaluate_pipeline_bit_for_bit(name, flags):
    plan = load_plan(name, **flags)
    plan = replace(plan, space=replace(plan.space, stages=(1, 2, 3, 4, 8)))
    formats = plan.space.formats(plan.cluster.chip)
    batch = np.array(plan.space.batches, dtype=np.int64)
    checked = 0
    for phase in plan.space.phases:
        layouts = candidates(plan, phase)[:: len(formats)]
        swept = sweep(plan, layouts, batch, formats)
        pipelined = [k for k, c in enumerate(layouts) if c.stages > 1]
        for k in pipelined[::5]:  # a spread of pipelined candidates, several per group
            ev = evaluate_pipeline(plan.model, plan.cluster, plan.workload, layouts[k], batch, formats=formats)
            for mine, theirs in (
                (swept.latency_s[k], ev.latency_s),
                (swept.step_s[k], ev.step_s),
                (swept.mfu[k], ev.mfu),
                (swept.hbm_bytes[k], ev.hbm_bytes),
            ):
                assert np.array_equal(mine, np.broadcast_to(theirs, mine.shape))
            checked += 1
    assert checked > 0


def test_frontier_prefilter_changes_nothing(monkeypatch):
    """The frontier's prefilter (points beaten by a faster latency bin) drops only points the
    frontier would drop: the same positions with and without it, ties and near-ties included."""
    import planner.search.frontier as search_module

    rng = np.random.default_rng(7)
    latency = np.exp(rng.normal(0.0, 2.0, 30000))
    mfu = rng.uniform(0.0, 0.6, latency.size) * np.minimum(1.0, latency / 10)  # slower points reach more
    latency[:300] = latency[300:600]  # exact ties
    mfu[:300] = mfu[300:600] * (1 + rng.uniform(-2e-3, 2e-3, 300))  # and near-ties of MFU
    with_prefilter = search_module.front(latency, mfu)
    assert search_module._beaten_by_faster(latency, mfu).sum() > latency.size // 2  # it does drop points
    monkeypatch.setattr(search_module, "_beaten_by_faster", lambda lat, m: np.zeros(lat.shape, dtype=bool))
    assert with_prefilter == search_module.front(latency, mfu)


@pytest.mark.parametrize(
    "name, flags, stages",
    [
        ("llama-3-70b-h100", {}, (1,)),
        ("palm-540b-tpu-v4", {}, (1,)),
        ("deepseek-v3-h200", {}, (1,)),
        ("llama-3-70b-h100", {}, (1, 2, 3, 4, 8)),
        ("palm-540b-tpu-v4", {}, (1, 2, 4)),
        (None, {"model": "gemma-3-27b", "cluster": "h100-sxm", "chips": (8, 16)}, (1, 2)),  # local layers: apart
        (None, {"model": "deepseek-v3", "cluster": "h200-sxm", "chips": (16, 32), "weights": ("fp8",)}, (1, 2, 4)),
    ],
)
@pytest.mark.slow
def test_both_phases_in_one_pass_are_evaluate_bit_for_bit(name, flags, stages):
    """sweep_phases costs a bucket's prefill and decode in one pass (a Grid of its meshes once
    per phase; for pipelines, of their stages once per phase): every figure is still
    `evaluate`'s (`evaluate_pipeline`'s), bit for bit."""
    from planner.search.choices import PhaseCandidates, choices
    from planner.search.sweep import make_buckets, sweep_phases

    plan = load_plan(name, **flags)
    plan = replace(plan, space=replace(plan.space, stages=stages))
    formats = plan.space.formats(plan.cluster.chip)
    batch = np.array(plan.space.batches, dtype=np.int64)
    discrete = choices(plan)
    layouts = {phase: PhaseCandidates(phase, discrete, formats[0]) for phase in plan.space.phases}
    swept = sweep_phases(
        plan, layouts, batch, formats, lambda n: None, LineCache(plan.cluster), make_buckets(plan, discrete)
    )
    for phase, candidates_ in layouts.items():
        for k in range(0, len(candidates_), 5):
            ev = cost(plan, candidates_[k], batch, formats=formats)
            for mine, theirs in (
                (swept[phase].latency_s[k], ev.latency_s),
                (swept[phase].step_s[k], ev.step_s),
                (swept[phase].mfu[k], ev.mfu),
                (swept[phase].hbm_bytes[k], ev.hbm_bytes),
            ):
                assert np.array_equal(mine, np.broadcast_to(theirs, mine.shape))


# --- serve's pools (issue 24): the sweep's step parts and the request's figures ------------------

SERVE_CASES = [  # (plan, flags): dense, TPU, MoE with latent attention, local layers crossing the
    # window, a request of one output token, one point per candidate (numpy's pairwise sums)
    ("llama-3-70b-h100", {"chips": (8, 16)}),
    ("palm-540b-tpu-v4", {}),
    ("deepseek-v3-h200", {"chips": (8, 16), "load_imbalance": 1.3}),
    (
        None,
        {
            "model": "gemma-3-27b",
            "cluster": "h100-sxm",
            "chips": (1, 2, 4),
            "input_tokens": 1000,
            "output_tokens": 100,
            "kv_cache": ("bf16", "fp8"),
        },
    ),
    (
        None,
        {
            "model": "mistral-7b",
            "cluster": "a100-80gb",
            "chips": (1, 2),
            "input_tokens": 4090,
            "output_tokens": 12,
            "batches": (1, 8, 64),
        },
    ),
    (None, {"model": "gpt-oss-120b", "cluster": "h100-sxm", "chips": (2, 4), "weights": ("int4",), "output_tokens": 1}),
    (
        None,
        {
            "model": "llama-3-8b",
            "cluster": "h200-sxm",
            "chips": (1, 2),
            "weights": ("fp8",),
            "batches": (16,),
            "output_tokens": 40,
        },
    ),
]
STEP_PARTS = ("local_s", "comm_s", "prefetched_s", "overhead_s", "compute_s", "memory_s", "critical_s")


def _serve_plan(name, flags):
    plan = load_plan(name, phases=("prefill", "decode"), **flags)
    return replace(plan, space=replace(plan.space, stages=(1,)))


@pytest.mark.parametrize("name, flags", SERVE_CASES[:4])
def test_swept_step_parts_are_evaluate_bit_for_bit(name, flags):
    """sweep(parts=True): every part of a step serve's requests are made of (and the bound they
    set) is `evaluate`'s, bit for bit, at the prompt and at a decode context."""
    from planner.cost.request import context_workload
    from planner.cost.step import bound as _bound

    plan = _serve_plan(name, flags)
    formats = plan.space.formats(plan.cluster.chip)
    batch = np.array(plan.space.batches, dtype=np.int64)
    w = plan.workload
    for phase, workload in (
        (plan.space.phases[0], w),
        (plan.space.phases[1], context_workload(w.input_tokens, w.output_tokens, 777.0)),
    ):
        at = replace(plan, workload=workload)
        layouts = candidates(at, phase)[:: len(formats)]
        swept = sweep(at, layouts, batch, formats, parts=True)
        for k in range(0, len(layouts), 5):
            ev = cost(at, layouts[k], batch, formats=formats)
            for part in STEP_PARTS:
                mine = getattr(swept, part)[k]
                assert np.array_equal(mine, np.broadcast_to(getattr(ev, part), mine.shape)), part
            bound = _bound(
                swept.compute_s[k],
                swept.memory_s[k],
                swept.local_s[k],
                swept.comm_s[k] - swept.prefetched_s[k],
                swept.critical_s[k],
                swept.comm_s[k],
            )
            assert np.array_equal(bound, ev.bound)


def _slow_pools(plan):
    """serve's pools as they were costed before issue 24, one `evaluate` (prefill) and one
    `decode_request` (decode) per candidate, the best kept by strict improvement in candidate
    order: the reference the swept pools must equal."""
    from planner.commands.serve.pools import Stage
    from planner.cost.costmodel import BOUNDS, evaluate
    from planner.cost.request import decode_request
    from planner.specs.plan import Phase

    formats, w = plan.space.formats(plan.cluster.chip), plan.workload
    batch = np.array(plan.space.batches, dtype=np.int64)
    shape = (len(plan.space.chips), len(formats), batch.size)
    best = {kind: [np.full(shape, np.inf), {}] for kind in ("prefill", "decode", "running")}
    hbm = plan.cluster.chip.usable_hbm_bytes

    def stage(ev, i, latency_s, step_s, mfu, context):
        c, f = ev.candidate, ev.formats_at(i)
        return Stage(
            phase=c.phase,
            chips=c.mesh.chips,
            batch=int(ev.batch[i]),
            ffn=c.ffn.name,
            attention=c.attention.name,
            weights=f.weights.label,
            kv_cache=f.kv_cache.label,
            experts=c.experts.name if c.experts is not None else "",
            latency_s=float(latency_s[i]),
            step_latency_s=float(step_s[i]),
            mfu=float(mfu[i]),
            hbm_fraction=float(ev.hbm_fraction[i]),
            bound=BOUNDS[int(ev.bound[i])],
            candidate=replace(c, weights=f.weights, kv_cache=f.kv_cache, sparsity=f.sparsity),
            context=context,
        )

    def offer(kind, c, seconds, fits, make):
        table, stages = best[kind]
        ci = plan.space.chips.index(c.mesh.chips)
        grid = np.where(fits, seconds, np.inf).reshape(len(formats), batch.size)
        for wi, bi in zip(*np.nonzero(grid < table[ci])):
            table[ci, wi, bi] = grid[wi, bi]
            stages[ci, wi, bi] = make(wi * batch.size + bi)

    O = w.output_tokens
    mean = w.input_tokens + (O + 1) / 2
    mean = int(mean) if mean == int(mean) else mean
    for c in candidates(plan, Phase.PREFILL)[:: len(formats)]:
        ev = evaluate(plan.model, plan.cluster, w, c, batch, formats=formats)
        offer(
            "prefill",
            c,
            ev.latency_s,
            ev.hbm_bytes <= hbm,
            lambda i: stage(ev, i, ev.latency_s, ev.step_s, ev.mfu, w.input_tokens),
        )
    for c in candidates(plan, Phase.DECODE)[:: len(formats)]:
        req = decode_request(plan.model, plan.cluster, w.input_tokens, O, c, batch, formats, w.routing)
        fits = req.last.hbm_bytes <= hbm
        offer(
            "decode",
            c,
            req.decode_s,
            fits,
            lambda i: stage(req.last, i, req.decode_s, req.decode_s / O, req.mfu, w.input_tokens + O),
        )
        offer(
            "running",
            c,
            req.running_step_s,
            fits,
            lambda i: stage(req.last, i, req.running_step_s * O, req.running_step_s, req.running_mfu, mean),
        )
    return best


@pytest.mark.parametrize("name, flags", SERVE_CASES)
def test_serve_pools_are_the_slow_path_bit_for_bit(name, flags):
    """Every entry of serve's three pools (prefill pass, a static batch's decode, a running
    batch's step) and its Stage (figures, layouts, formats, bound, candidate) equals what one
    `evaluate` and `decode_request` per candidate give, bit for bit; the static batch's sums
    skipped for candidates that cannot be fastest change nothing."""
    from planner.commands.serve.pools import pools

    plan = _serve_plan(name, flags)
    slow = _slow_pools(plan)
    for pool, kind in zip(pools(plan), ("prefill", "decode", "running")):
        table, stages = slow[kind]
        assert np.array_equal(pool.seconds, table), kind
        assert sorted(map(tuple, pool.keys().tolist())) == sorted(stages), kind
        for key, expected in stages.items():
            assert pool.stage(key) == expected, (kind, key)


@pytest.mark.parametrize("name, flags", SERVE_CASES[3:])
def test_request_arrays_are_decode_request_bit_for_bit(name, flags):
    """RequestParts' static decode sums and running steps over every candidate's points (no
    skipping) equal decode_request's, bit for bit: the window's bend, one output token, and one
    point per candidate (numpy's pairwise sums of (O, 1) arrays) included."""
    from planner.cost.request import (
        RequestParts,
        context_workload,
        contexts,
        decode_request,
        running_step_s,
        static_decode_s,
        window_crossed,
    )
    from planner.specs.plan import Phase

    plan = _serve_plan(name, flags)
    formats, w = plan.space.formats(plan.cluster.chip), plan.workload
    I, O = w.input_tokens, w.output_tokens
    batch = np.array(plan.space.batches, dtype=np.int64)
    layouts = candidates(plan, Phase.DECODE)[:: len(formats)]
    S, window = contexts(I, O), window_crossed(plan.model, I, O)
    at = lambda context: sweep(
        replace(plan, workload=context_workload(I, O, context, w.routing)), layouts, batch, formats, parts=True
    )
    last = at(float(S[-1]))
    first = last if O == 1 else at(float(S[0]))
    kink = None if window is None else at(window)
    flat = lambda sw: (
        None if sw is None else {n: getattr(sw, n).reshape(-1) for n in ("local_s", "comm_s", "prefetched_s")}
    )
    parts = RequestParts(
        first=flat(first),
        last=flat(last),
        kink=flat(kink),
        overhead_s=last.overhead_s.reshape(-1),
        overlap=last.overlap.reshape(-1),
        input_tokens=I,
        output_tokens=O,
        window=window,
        pairwise=last.local_s.shape[1] == 1,
    )
    static = static_decode_s(parts).reshape(last.local_s.shape)
    running = running_step_s(parts).reshape(last.local_s.shape)
    assert (window is not None) == (flags.get("model") in ("gemma-3-27b", "mistral-7b"))  # both cross it
    for k, c in enumerate(layouts):
        req = decode_request(plan.model, plan.cluster, I, O, c, batch, formats, w.routing)
        assert np.array_equal(static[k], req.decode_s) and np.array_equal(running[k], req.running_step_s)
