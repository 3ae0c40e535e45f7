"""Invariants over every registered layout (picked up automatically when a layout is added)."""

import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.config import load_cluster, load_model, load_plan
from planner.cost.costmodel import Candidate, evaluate
from planner.cost.layouts import ATTENTION_LAYOUTS, FFN_LAYOUTS
from planner.cost.mesh import Mesh, meshes
from planner.search.search import search
from planner.specs.hardware import WeightFormat
from planner.specs.model import Block, FfnKind, Model
from planner.specs.plan import Phase, Workload

PAIRS = list(itertools.product(FFN_LAYOUTS.values(), ATTENTION_LAYOUTS.values()))
IDS = [f"{f.name}+{a.name}" for f, a in PAIRS]
ONE_CHIP = Mesh(chips=1, physical=(("x", 1),), logical=((), (), ()), torus=True)
WORKLOAD = Workload(input_tokens=512, output_tokens=16, context=1024)
BATCH = np.array([1, 2, 4, 8, 16, 64, 256, 1024])


@pytest.fixture(scope="module")
def tpu():
    return load_cluster("tpu-v4")


@pytest.mark.parametrize("ffn,attention", PAIRS, ids=IDS)
@pytest.mark.parametrize("phase", list(Phase))
def test_one_chip_has_no_communication(ffn, attention, phase, tpu):
    model = load_model("palm-8b")
    ev = evaluate(model, tpu, WORKLOAD, Candidate(phase=phase, mesh=ONE_CHIP, ffn=ffn, attention=attention,
                                                  weights=WeightFormat.BF16), BATCH)
    assert np.all(ev.comm_s == 0)


def _every_candidate(model, cluster, chips):
    for mesh in meshes(cluster, chips):
        for ffn, attention in PAIRS:
            if ffn.applies(mesh.sizes) and attention.applies(model, ffn, mesh.sizes):
                for phase, weights in itertools.product(Phase, WeightFormat):
                    yield Candidate(phase=phase, mesh=mesh, ffn=ffn, attention=attention, weights=weights)


@pytest.mark.parametrize("model_name,cluster_name,chips", [
    ("palm-540b", "tpu-v4", 64), ("palm-62b", "tpu-v4", 16), ("llama-3-70b", "h100-sxm", 16),
    ("mt-nlg-530b", "a100-80gb", 64),
])
def test_layout_invariants(model_name, cluster_name, chips):
    model, cluster = load_model(model_name), load_cluster(cluster_name)
    seen = set()
    for c in _every_candidate(model, cluster, chips):
        ev = evaluate(model, cluster, WORKLOAD, c, BATCH, detail=True)
        seen.add((c.ffn.name, c.attention.name))
        weights = model.n_params * c.weights.bytes_per_element
        assert ev.weight_bytes * chips >= weights * (1 - 1e-9), (c.ffn.name, c.attention.name)
        assert np.all(ev.mfu > 0), (c.ffn.name, c.attention.name)
        # No chip does more FLOPs than its peak allows. (MFU itself counts the nominal parameters,
        # including an untied input embedding that does no matmul, so on an ideal cluster it can
        # pass 1 where the step is compute-bound.)
        flops = sum(r.flops for r in ev.rows)
        assert np.all(flops <= cluster.chip.peak_bf16_flop_per_s * ev.step_s * (1 + 1e-9)), (c.ffn.name, c.attention.name)
        assert np.all(np.diff(ev.latency_s) >= -1e-12 * ev.latency_s[1:]), (c.ffn.name, c.attention.name)
        assert np.all(ev.hbm_bytes == ev.weight_bytes + ev.kv_bytes + ev.activation_bytes)
        rows = ev.rows
        for total, part in ((ev.compute_s, "compute_s"), (ev.memory_s, "memory_s"), (ev.comm_s, "comm_s")):
            np.testing.assert_allclose(sum(getattr(r, part) for r in rows), total, rtol=1e-12)
    assert {ffn for ffn, _ in seen} == set(FFN_LAYOUTS)  # every FFN layout was checked here


def test_frontier_points_are_not_dominated():
    plan = load_plan(None, model="palm-62b", cluster="tpu-v4", chips=(16, 32, 64))
    for phase in search(plan).phases:
        points = phase.frontier
        assert points
        for p in points:
            for q in points:
                dominated = q.latency_s <= p.latency_s and q.mfu >= p.mfu and \
                    (q.latency_s < p.latency_s or q.mfu > p.mfu)
                assert not dominated, (p, q)
        latencies = [p.latency_s for p in points]
        assert latencies == sorted(latencies)


@settings(max_examples=60, deadline=None)
@given(
    layers=st.integers(1, 8), d_model=st.sampled_from([256, 512, 1024]), ff_mult=st.integers(1, 6),
    heads=st.sampled_from([4, 8, 12, 16, 48]), kv_div=st.sampled_from([1, 2, 4]),
    ffn_kind=st.sampled_from(list(FfnKind)), block=st.sampled_from(list(Block)),
    chips=st.sampled_from([8, 16, 64]), phase=st.sampled_from(list(Phase)),
    window=st.one_of(st.none(), st.sampled_from([1, 100, 600, 5000])), local_every=st.integers(1, 3),
)
def test_cost_model_invariants_on_random_models(layers, d_model, ff_mult, heads, kv_div, ffn_kind, block,
                                                chips, phase, window, local_every):
    kv = heads // kv_div if heads % kv_div == 0 else heads
    local = tuple(range(0, layers, local_every)) if window else ()  # sliding-window layers, if any
    model = Model(name="random", n_layers=layers, d_model=d_model, d_ff=d_model * ff_mult, n_heads=heads,
                  n_kv_heads=kv, d_head=64, vocab=1000, ffn=ffn_kind, block=block, window_tokens=window,
                  local_layers=local)
    cluster = load_cluster("tpu-v4")
    for c in _every_candidate(model, cluster, chips):
        if c.phase is not phase:
            continue
        ev = evaluate(model, cluster, WORKLOAD, c, BATCH)
        assert np.all(np.isfinite(ev.latency_s)) and np.all(ev.latency_s > 0)
        assert np.all(np.diff(ev.latency_s) >= -1e-12 * ev.latency_s[1:])
        assert ev.weight_bytes * chips >= model.n_params * c.weights.bytes_per_element * (1 - 1e-9)
        if local:  # a window bounds the KV cache and the attention FLOPs, never adds to them
            full = evaluate(replace(model, window_tokens=None, local_layers=()), cluster, WORKLOAD, c, BATCH)
            assert np.all(ev.kv_bytes <= full.kv_bytes * (1 + 1e-12))
            assert np.all(ev.compute_s <= full.compute_s * (1 + 1e-12))
            assert np.all(ev.step_s <= full.step_s * (1 + 1e-12))
