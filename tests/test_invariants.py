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
from planner.specs.formats import Formats, KvFormat, Sparsity
from planner.specs.hardware import Calibration, WeightFormat
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
    ev = evaluate(
        model,
        tpu,
        WORKLOAD,
        Candidate(phase=phase, mesh=ONE_CHIP, ffn=ffn, attention=attention, weights=WeightFormat.BF16),
        BATCH,
    )
    assert np.all(ev.comm_s == 0)


def _every_candidate(model, cluster, chips):
    for mesh in meshes(cluster, chips):
        for ffn, attention in PAIRS:
            if ffn.applies(mesh.sizes) and attention.applies(model, ffn, mesh.sizes):
                for phase, weights in itertools.product(Phase, cluster.chip.weight_formats()):
                    yield Candidate(phase=phase, mesh=mesh, ffn=ffn, attention=attention, weights=weights)


@pytest.mark.parametrize(
    "model_name,cluster_name,chips",
    [
        ("palm-540b", "tpu-v4", 64),
        ("palm-62b", "tpu-v4", 16),
        pytest.param("llama-3-70b", "h100-sxm", 16, marks=pytest.mark.slow),
        pytest.param("mt-nlg-530b", "a100-80gb", 64, marks=pytest.mark.slow),
        ("llama-3-70b", "b200", 8),
        ("llama-3-8b", "mi300x", 8),
    ],
)
def test_layout_invariants(model_name, cluster_name, chips):
    model, cluster = load_model(model_name), load_cluster(cluster_name)
    seen = set()
    for c in _every_candidate(model, cluster, chips):
        ev = evaluate(model, cluster, WORKLOAD, c, BATCH, detail=True)
        seen.add((c.ffn.name, c.attention.name))
        weights = model.n_params * c.formats.weight_bytes
        assert ev.weight_bytes * chips >= weights * (1 - 1e-9), (c.ffn.name, c.attention.name)
        assert np.all(ev.mfu > 0), (c.ffn.name, c.attention.name)
        # No chip does more FLOPs than its peak allows. (MFU itself counts the nominal parameters,
        # including an untied input embedding that does no matmul, so on an ideal cluster it can
        # pass 1 where the step is compute-bound.)
        flops = sum(r.flops for r in ev.rows)
        fastest = max(cluster.chip.peak_bf16_flop_per_s, c.formats.weight_peak_flop_per_s(cluster.chip))
        assert np.all(flops <= fastest * ev.step_s * (1 + 1e-9)), (c.ffn.name, c.attention.name)
        assert np.all(np.diff(ev.latency_s) >= -1e-12 * ev.latency_s[1:]), (c.ffn.name, c.attention.name)
        assert np.all(ev.hbm_bytes == ev.weight_bytes + ev.kv_bytes + ev.activation_bytes)
        rows = ev.rows
        for total, part in ((ev.compute_s, "compute_s"), (ev.memory_s, "memory_s"), (ev.comm_s, "comm_s")):
            np.testing.assert_allclose(sum(getattr(r, part) for r in rows), total, rtol=1e-12)
        # kernels: rows sharing a `kernel` are one, every other row its own; each its own roofline
        kernels: dict = {}
        for i, r in enumerate(rows):
            c_s, m_s = kernels.get(r.kernel or i, (0.0, 0.0))
            kernels[r.kernel or i] = (c_s + r.compute_s, m_s + r.memory_s)
        np.testing.assert_allclose(sum(np.maximum(c_s, m_s) for c_s, m_s in kernels.values()), ev.local_s, rtol=1e-12)
        assert np.all(ev.local_s >= np.maximum(ev.compute_s, ev.memory_s) * (1 - 1e-12))
        assert np.all(ev.local_s <= (ev.compute_s + ev.memory_s) * (1 + 1e-12))
    assert {ffn for ffn, _ in seen} == set(FFN_LAYOUTS)  # every FFN layout was checked here


def test_frontier_points_are_not_dominated():
    plan = load_plan(None, model="palm-62b", cluster="tpu-v4", chips=(16, 32, 64))
    for phase in search(plan).phases:
        points = phase.frontier
        assert points
        for p in points:
            for q in points:
                dominated = (
                    q.latency_s <= p.latency_s and q.mfu >= p.mfu and (q.latency_s < p.latency_s or q.mfu > p.mfu)
                )
                assert not dominated, (p, q)
        latencies = [p.latency_s for p in points]
        assert latencies == sorted(latencies)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    layers=st.integers(1, 8),
    d_model=st.sampled_from([256, 512, 1024]),
    ff_mult=st.integers(1, 6),
    heads=st.sampled_from([4, 8, 12, 16, 48]),
    kv_div=st.sampled_from([1, 2, 4]),
    ffn_kind=st.sampled_from(list(FfnKind)),
    block=st.sampled_from(list(Block)),
    chips=st.sampled_from([8, 16, 64]),
    phase=st.sampled_from(list(Phase)),
    window=st.one_of(st.none(), st.sampled_from([1, 100, 600, 5000])),
    local_every=st.integers(1, 3),
)
def test_cost_model_invariants_on_random_models(
    layers, d_model, ff_mult, heads, kv_div, ffn_kind, block, chips, phase, window, local_every
):
    kv = heads // kv_div if heads % kv_div == 0 else heads
    local = tuple(range(0, layers, local_every)) if window else ()  # sliding-window layers, if any
    model = Model(
        name="random",
        n_layers=layers,
        d_model=d_model,
        d_ff=d_model * ff_mult,
        n_heads=heads,
        n_kv_heads=kv,
        d_head=64,
        vocab=1000,
        ffn=ffn_kind,
        block=block,
        window_tokens=window,
        local_layers=local,
    )
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


# --- number formats ---------------------------------------------------------------------------


def test_bytes_per_weight_of_every_format_include_their_scales():
    expected = {
        "bf16": 2,
        "int8": 1,
        "fp8": 1,
        "int8-w8a8": 1,
        "int4": 0.5 + 2 / 128,  # one 16-bit scale per group of 128 weights
        "fp4": 0.5 + 1 / 16,
    }  # NVFP4: one fp8 scale per block of 16
    assert {w.label: w.bytes_per_element for w in WeightFormat} == pytest.approx(expected)
    assert {w.label: Formats(weights=w).weight_bytes for w in WeightFormat} == pytest.approx(expected)
    # 2:4 keeps half the payload plus a 2-bit index per kept weight (1 bit per dense weight)
    sparse = {w.label: Formats(weights=w, sparsity=Sparsity.TWO_FOUR).weight_bytes for w in WeightFormat}
    assert sparse == pytest.approx(
        {
            "bf16": 1 + 1 / 8,
            "int8": 0.5 + 1 / 8,
            "fp8": 0.5 + 1 / 8,
            "int8-w8a8": 0.5 + 1 / 8,
            "int4": 0.25 + 1 / 8 + 2 / 128,
            "fp4": 0.25 + 1 / 8 + 1 / 16,
        }
    )
    # KV cache: int8 carries a 16-bit scale and zero point per token and kv head (d_head elements)
    assert [kv.bytes_per_element(128) for kv in KvFormat] == pytest.approx([2, 1, 1 + 4 / 128])


COMPUTE = {"bf16": "bf16", "int8": "bf16", "int4": "bf16", "fp8": "fp8", "int8-w8a8": "int8", "fp4": "fp4"}


def _applying(model, cluster, chips):
    """(ffn, attention, mesh) for every registered pair that applies on some mesh of `chips`."""
    for ffn, attention in PAIRS:
        mesh = next(
            (m for m in meshes(cluster, chips) if ffn.applies(m.sizes) and attention.applies(model, ffn, m.sizes)), None
        )
        if mesh is not None:
            yield ffn, attention, mesh


@pytest.mark.parametrize("sparsity", list(Sparsity))
def test_each_einsum_runs_at_its_formats_peak(sparsity):
    """On every registered layout: weight einsums at the weight format's peak (sparse with 2:4),
    QK/AV at bf16; every compute second is FLOPs over that peak; MFU stays against bf16."""
    # b200 has every peak; ideal constants: the peaks alone (the preset borrows h100-sxm's)
    model = load_model("llama-3-70b")
    cluster = replace(load_cluster("b200"), calibration=Calibration(), calibration_borrowed_from=None)
    chip = cluster.chip
    peaks = chip.sparse_peak_flop_per_s if sparsity is Sparsity.TWO_FOUR else chip.peak_flop_per_s
    seen = set()
    for ffn, attention, mesh in _applying(model, cluster, 64):
        seen.add((ffn.name, attention.name))
        base = None
        for weights in WeightFormat:
            c = Candidate(
                phase=Phase.DECODE, mesh=mesh, ffn=ffn, attention=attention, weights=weights, sparsity=sparsity
            )
            ev = evaluate(model, cluster, WORKLOAD, c, BATCH, detail=True)
            for r in ev.rows:
                if not np.any(r.flops):
                    assert r.compute_format == "" and np.all(r.compute_s == 0)
                    continue
                core = r.name == "einsum QK, AV"
                label = "bf16" if core else COMPUTE[weights.label]
                peak = chip.peak_bf16_flop_per_s if core else peaks[label]
                assert r.compute_format.split()[0] == label and r.peak_flop_per_s == peak, (r.name, weights)
                np.testing.assert_allclose(r.compute_s, r.flops / peak, rtol=1e-12)
            np.testing.assert_allclose(sum(r.compute_s for r in ev.rows), ev.compute_s, rtol=1e-12)
            base = base or ev
            # MFU against the bf16 peak in every format: the same FLOPs credited per second of latency
            np.testing.assert_allclose(ev.mfu * ev.latency_s, base.mfu * base.latency_s, rtol=1e-12)
    assert {f for f, _ in seen} == set(FFN_LAYOUTS) and {a for _, a in seen} == set(ATTENTION_LAYOUTS)


def test_an_fp8_kv_cache_halves_the_cache():
    model, cluster = load_model("llama-3-70b"), load_cluster("h100-sxm")
    sweep = tuple(Formats(weights=WeightFormat.BF16, kv_cache=kv) for kv in KvFormat)
    for ffn, attention, mesh in _applying(model, cluster, 64):
        c = Candidate(phase=Phase.DECODE, mesh=mesh, ffn=ffn, attention=attention, weights=WeightFormat.BF16)
        ev = evaluate(model, cluster, WORKLOAD, c, BATCH, formats=sweep)
        bf16, fp8, int8 = np.split(ev.kv_bytes, 3)
        np.testing.assert_allclose(fp8, bf16 / 2, rtol=1e-12)
        np.testing.assert_allclose(int8, bf16 / 2 * (1 + 4 / model.d_head), rtol=1e-12)
        for i, kv in enumerate(KvFormat):  # the sweep gives what one evaluation per format gives
            one = evaluate(
                model,
                cluster,
                WORKLOAD,
                Candidate(
                    phase=Phase.DECODE, mesh=mesh, ffn=ffn, attention=attention, weights=WeightFormat.BF16, kv_cache=kv
                ),
                BATCH,
            )
            np.testing.assert_allclose(np.split(ev.latency_s, 3)[i], one.latency_s, rtol=1e-12)


# --- weight gathers on switched levels ---------------------------------------------------------


def test_weight_gathers_on_a_calibrated_switched_level_cost_like_any_all_gather_there():
    """h100-sxm's levels have fitted constants (NCCL's tables): a prefetched weight all-gather is an
    all-gather there and costs what the same bytes cost as an activation all-gather, not the
    ideal link rate (the cluster-wide weight_gather_efficiency, 1). A level's own
    weight_gather_efficiency (measured weight gathers) replaces its efficiencies; on a torus the
    fitted cluster-wide one applies."""
    from planner.cost.layouts import Collective, CollectiveKind
    from planner.cost.network import collective_seconds

    cluster = load_cluster("h100-sxm")
    ag = CollectiveKind.ALL_GATHER
    data = np.array([1 << 20, 1 << 28])
    for chips in (8, 16):
        mesh = next(m for m in meshes(cluster, chips) if m.sizes["x"] == chips)
        weights = collective_seconds(cluster, mesh, Collective(kind=ag, axes="x", bytes_per_chip=data, prefetched=True))
        activations = collective_seconds(cluster, mesh, Collective(kind=ag, axes="x", bytes_per_chip=data))
        np.testing.assert_allclose(weights, activations, rtol=1e-12)
        ideal = collective_seconds(
            replace(cluster, calibration=replace(cluster.calibration, levels={})),
            mesh,
            Collective(kind=ag, axes="x", bytes_per_chip=data, prefetched=True),
        )
        assert np.all(weights > ideal)
    mesh = next(m for m in meshes(cluster, 8) if m.sizes["x"] == 8)
    levels = {
        **cluster.calibration.levels,
        "nvlink": {**cluster.calibration.levels["nvlink"], "weight_gather_efficiency": 0.25},
    }
    measured = replace(cluster, calibration=replace(cluster.calibration, levels=levels))
    slow = collective_seconds(measured, mesh, Collective(kind=ag, axes="x", bytes_per_chip=data, prefetched=True))
    assert slow[1] > 2 * collective_seconds(cluster, mesh, Collective(kind=ag, axes="x", bytes_per_chip=data))[1]
    tpu = load_cluster("tpu-v4")
    mesh = next(m for m in meshes(tpu, 64) if m.sizes["x"] > 1)
    gathered = collective_seconds(tpu, mesh, Collective(kind=ag, axes="x", bytes_per_chip=data, prefetched=True))
    active = collective_seconds(tpu, mesh, Collective(kind=ag, axes="x", bytes_per_chip=data))
    assert tpu.calibration.weight_gather_efficiency < tpu.calibration.network_efficiency and np.all(gathered > active)
