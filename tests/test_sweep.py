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
        layouts = candidates(plan, phase)[::len(formats)]
        swept = sweep(plan, layouts, batch, formats)
        for k in range(0, len(layouts), 7):  # a spread of candidates, every mesh family
            ev = cost(plan, layouts[k], batch, formats=formats)
            for mine, theirs in ((swept.latency_s[k], ev.latency_s), (swept.step_s[k], ev.step_s),
                                 (swept.mfu[k], ev.mfu), (swept.hbm_bytes[k], ev.hbm_bytes)):
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
                comm, pre = network_seconds(lines, meshes, collectives, data, np.array([[3.0], [1.0]]),
                                            np.array([prefetched, False]))
                for m, mesh in enumerate(meshes):
                    one = 3.0 * collective_seconds(plan.cluster, mesh, collectives[0])
                    assert np.array_equal(comm[m], one + 1.0 * collective_seconds(plan.cluster, mesh, collectives[1]))
                    assert np.array_equal(pre[m], one if prefetched else 0.0 * one)


@pytest.mark.parametrize("name, flags", [
    ("llama-3-70b-h100", {}), ("palm-540b-tpu-v4", {}),
    (None, {"model": "gemma-3-27b", "cluster": "h100-sxm", "chips": (8, 16)}),  # local layers
    (None, {"model": "deepseek-v3", "cluster": "h200-sxm", "chips": (16, 32), "weights": ("fp8",)}),  # MoE, MLA
    (None, {"model": "llama-4-maverick", "cluster": "h100-sxm", "chips": (16, 32), "weights": ("fp8",)}),  # MoE every 2nd
    (None, {"model": "gpt-oss-120b", "cluster": "h100-sxm", "chips": (8, 16), "weights": ("int4",)}),  # MoE, local
])
def test_pipelined_sweep_is_evaluate_pipeline_bit_for_bit(name, flags):
    plan = load_plan(name, **flags)
    plan = replace(plan, space=replace(plan.space, stages=(1, 2, 3, 4, 8)))
    formats = plan.space.formats(plan.cluster.chip)
    batch = np.array(plan.space.batches, dtype=np.int64)
    checked = 0
    for phase in plan.space.phases:
        layouts = candidates(plan, phase)[::len(formats)]
        swept = sweep(plan, layouts, batch, formats)
        pipelined = [k for k, c in enumerate(layouts) if c.stages > 1]
        for k in pipelined[::5]:  # a spread of pipelined candidates, several per group
            ev = evaluate_pipeline(plan.model, plan.cluster, plan.workload, layouts[k], batch, formats=formats)
            for mine, theirs in ((swept.latency_s[k], ev.latency_s), (swept.step_s[k], ev.step_s),
                                 (swept.mfu[k], ev.mfu), (swept.hbm_bytes[k], ev.hbm_bytes)):
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


@pytest.mark.parametrize("name, flags, stages", [
    ("llama-3-70b-h100", {}, (1,)), ("palm-540b-tpu-v4", {}, (1,)), ("deepseek-v3-h200", {}, (1,)),
    ("llama-3-70b-h100", {}, (1, 2, 3, 4, 8)), ("palm-540b-tpu-v4", {}, (1, 2, 4)),
    (None, {"model": "gemma-3-27b", "cluster": "h100-sxm", "chips": (8, 16)}, (1, 2)),  # local layers: apart
    (None, {"model": "deepseek-v3", "cluster": "h200-sxm", "chips": (16, 32), "weights": ("fp8",)}, (1, 2, 4)),
])
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
    swept = sweep_phases(plan, layouts, batch, formats, lambda n: None, LineCache(plan.cluster),
                         make_buckets(plan, discrete))
    for phase, candidates_ in layouts.items():
        for k in range(0, len(candidates_), 5):
            ev = cost(plan, candidates_[k], batch, formats=formats)
            for mine, theirs in ((swept[phase].latency_s[k], ev.latency_s), (swept[phase].step_s[k], ev.step_s),
                                 (swept[phase].mfu[k], ev.mfu), (swept[phase].hbm_bytes[k], ev.hbm_bytes)):
                assert np.array_equal(mine, np.broadcast_to(theirs, mine.shape))
