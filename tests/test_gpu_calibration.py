"""The GPU calibration sets (configs/measurements/<cluster>.yaml, row kinds): `planner calibrate`
reproduces the shipped presets, and the kernel tables are reproduced as far as the physics allows
(docs/accuracy-gpu-<cluster>.md lists every residual)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner.commands.calibrate_kernels import fit
from planner.commands.kernel_measurements import load_kernel_measurements
from planner.config import load_cluster

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ("a100-80gb", "h100-sxm", "h200-sxm")


@pytest.fixture(scope="module", params=CLUSTERS)
def fitted(request):
    data = load_kernel_measurements(str(ROOT / "configs" / "measurements" / f"{request.param}.yaml"))
    return request.param, fit(load_cluster(request.param), data)


def _errors(result, kind, **where):
    return np.array([r.error for r in result.of(kind) if r.fitted and all(r.row.get(k) == v for k, v in where.items())])


def test_calibrate_reproduces_the_shipped_preset(fitted):
    name, result = fitted
    assert result.cluster.calibration == load_cluster(name).calibration, \
        f"regenerate with: planner calibrate configs/measurements/{name}.yaml --cluster {name} -o configs/clusters/{name}.yaml"


def test_constants_are_physical(fitted):
    c = fitted[1].cluster.calibration
    assert 0 < c.matmul_efficiency <= 1 and 0 < c.hbm_efficiency <= 1 and c.kernel_overhead_s >= 0
    for level in c.levels.values():
        for key, value in level.items():
            assert (0 < value <= 1) if "efficiency" in key else value >= 0


# The issue's targets, row by row. A row that misses is a strict xfail whose reason is what its
# data show (docs/accuracy-gpu-<cluster>.md lists every residual): the two-line NCCL form and the
# roofline plus a fixed time per kernel cannot follow these rows, and no constant is tuned to them.
NCCL_TARGET, GEMM_TARGET, POINT_MEDIAN, POINT_WORST = 0.25, 0.20, 0.15, 0.35
_SHARP = "8-GPU 512 MiB all-reduce: NVLink SHARP (NVLS) reduces in the switch, faster than the ring's 2(k-1)/k bytes"
_DIP = "8-GPU 2 MiB is faster than 4-GPU 2 MiB in the table (not monotone in the GPU count: a protocol switch)"
_A100_TILES = ("A100 bf16 table: the per-FLOP rate at m 128-1024 is below the large-m rate (m=1024 takes 0.67x "
               "the m=2048 time): tile/wave quantisation, which a roofline plus a fixed time per kernel lacks")
_FP8 = ("fp8 rows include the dynamic per-tensor quantisation of x (a second kernel, notes) and run at 1.6-1.7x "
        "the bf16 rate, not the 2x of the peaks; shared constants (not per format) under-predict them 20-49%")
_SMALL_FT = ("FasterTransformer GPT 350M/1.3B on one GPU at batch 32-64: measured 1.6-2x the predicted time, a "
             "per-token cost growing with batch (sampling, embeddings, norms) that the per-layer constant lacks")
_BIG_BATCH = ("static batch of 768-1024 sequences at 128/128: measured throughput 30-54% below the prediction "
              "(TensorRT-LLM's batch limits chunk it; the planner runs one batch)")
_H200_TTFT = ("H200 ttft at 128 tokens: layer_overhead_s (fitted to the H200 throughput rows, 239 us) adds 6.7 ms "
              "to a 5 ms prefill; the H200 set has too few end-to-end rows to separate it from the GEMM constants")
KNOWN_MISSES = {
    ("a100-80gb", "collective", "all-gather", 8, 2097152.0, None): _DIP,
    ("a100-80gb", "collective", "reduce-scatter", 8, 2097152.0, None): _DIP,
    ("h100-sxm", "collective", "all-reduce", 8, 536870912.0, 1): _SHARP,
    ("h100-sxm", "collective", "all-reduce", 8, 536870912.0, 2): _SHARP,
    ("h100-sxm", "collective", "reduce-scatter", 8, 2097152.0, 1): _DIP,
    ("h100-sxm", "collective", "reduce-scatter", 8, 2097152.0, 2): _DIP,
    ("h200-sxm", "collective", "all-reduce", 8, 536870912.0, None): _SHARP,
    ("h200-sxm", "collective", "reduce-scatter", 8, 2097152.0, None): _DIP,
    **{("a100-80gb", "gemm", "bf16", m, n, k): _A100_TILES
       for m, n, k in ((256, 16384, 8192), (128, 4096, 4096), (256, 4096, 4096), (1024, 4096, 4096))},
    **{("h100-sxm", "gemm", "fp8", m, n, k): _FP8
       for n, k, ms in ((8192, 8192, (8, 32, 64, 128, 256, 512, 1024, 2048, 4096)),
                        (16384, 8192, (64, 128, 256, 512)),
                        (4096, 4096, (8, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192))) for m in ms},
    **{("a100-80gb", "point", name): _SMALL_FT
       for name in ("FT GPT 1.3B tp1 b64 128/8", "FT GPT 1.3B tp1 b32 512/32", "FT GPT 1.3B tp1 b64 512/32",
                    "FT GPT 350M tp1 b32 128/8", "FT GPT 350M tp1 b64 128/8", "FT GPT 350M tp1 b32 512/32",
                    "FT GPT 350M tp1 b64 512/32")},
    ("h100-sxm", "point", "TRT-LLM v0_9 H100 Mistral 7B tp1 b896 128/128"): _BIG_BATCH,
    ("h100-sxm", "point", "TRT-LLM v0_5 H100 LLaMA 7B ttft in 2048"):
        "ttft at 2048 tokens: measured 36 ms, 1.6x the prediction, where v0.9 measures 30.8 ms for the same model",
    ("h200-sxm", "point", "TRT-LLM v0_9 H200 Mistral 7B tp1 b896 128/128"): _BIG_BATCH,
    ("h200-sxm", "point", "TRT-LLM v0_9 H200 LLaMA 7B tp1 b896 128/128"): _BIG_BATCH,
    ("h200-sxm", "point", "TRT-LLM h200 H200 llama_13b tp1 b1024 128/128"): _BIG_BATCH,
    ("h200-sxm", "point", "TRT-LLM v0_9 H200 GPT-J 6B ttft in 128"): _H200_TTFT,
    ("h200-sxm", "point", "TRT-LLM v0_9 H200 Mistral 7B ttft in 128"): _H200_TTFT,
    ("h200-sxm", "point", "TRT-LLM v0_9 H200 LLaMA 7B ttft in 128"): _H200_TTFT,
}
_FITS: dict = {}


def _fit(name):
    if name not in _FITS:
        _FITS[name] = fit(load_cluster(name), _data(name))
    return _FITS[name]


def _data(name):
    return load_kernel_measurements(str(ROOT / "configs" / "measurements" / f"{name}.yaml"))


def _key(name, row):
    if row.kind == "collective":
        return (name, "collective", row["collective"].value, row["gpus"], row["bytes"], row.get("run"))
    if row.kind == "gemm":
        return (name, "gemm", row["dtype"], row["m"], row["n"], row["k"])
    return (name, "point", row.name)


def _target_rows():
    out = []
    for name in CLUSTERS:
        for i, row in enumerate(_data(name).rows):
            if row.kind == "collective" and not (row["implementation"] == "nccl" and row["nodes"] == 1
                                                 and 8192 <= row["bytes"] <= 512 * 2 ** 20):
                continue
            if row.kind == "gemm" and row["m"] < 8:
                continue
            key = _key(name, row)
            marks = [pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[key])] if key in KNOWN_MISSES else []
            out.append(pytest.param(name, i, marks=marks, id="-".join(str(k) for k in key)))
    return out


@pytest.mark.parametrize("name,index", _target_rows())
def test_row_within_the_issues_target(name, index):
    """NCCL all-reduce/all-gather/reduce-scatter on 2/4/8 GPUs, 8 KiB..512 MiB: within 25%; GEMMs
    with m >= 8 (bf16 fitted, fp8 predicted): within 20%; calibration points (end-to-end, ttft,
    throughput): within 35%."""
    residual = _fit(name).residuals[index]
    target = {"collective": NCCL_TARGET, "gemm": GEMM_TARGET}.get(residual.row.kind, POINT_WORST)
    assert residual.predicted_s is not None and abs(residual.error) <= target, residual.error


def test_known_misses_name_real_rows():
    keys = {_key(name, row) for name in CLUSTERS for row in _data(name).rows}
    assert set(KNOWN_MISSES) <= keys


def test_calibration_points_median_within_target(fitted):
    """Median |error| of the points each preset is fitted to, all kinds together: <= 15%."""
    errors = np.abs([r.error for r in fitted[1].residuals if r.fitted])
    assert np.median(errors) <= POINT_MEDIAN


def test_nccl_tables_median(fitted):
    errors = _errors(fitted[1], "collective", nodes=1)
    assert np.median(np.abs(errors)) <= 0.10


@pytest.mark.parametrize("name", CLUSTERS)
def test_accuracy_page_is_up_to_date(name):
    """docs/accuracy-gpu-<cluster>.md is what `planner calibrate ... --report` writes today."""
    from planner.render.calibrate_kernels import accuracy_section
    page = ROOT / "docs" / f"accuracy-gpu-{name}.md"
    if not page.exists():
        pytest.skip(f"{page.name} is not in this installation")
    command = (f"planner calibrate configs/measurements/{name}.yaml --cluster {name}"
               f" --report docs/accuracy-gpu-{name}.md")
    assert page.read_text(encoding="utf-8") == accuracy_section(_data(name), _fit(name), command), \
        f"regenerate with: {command}"


def test_switched_level_is_one_group_whatever_its_sub_axes():
    """TP 8 over a 2x2x2 logical split of one NVSwitch island costs one 8-GPU collective."""
    from planner.cost.layouts import CollectiveKind
    from planner.cost.layouts.base import Collective
    from planner.cost.mesh import meshes
    from planner.cost.network import collective_seconds, kernel_collective_seconds, ring_steps

    cluster = load_cluster("h100-sxm")
    c = Collective(kind=CollectiveKind.ALL_REDUCE, axes="xyz", bytes_per_chip=1e6)
    expected = float(kernel_collective_seconds(cluster, CollectiveKind.ALL_REDUCE, 1e6, 8))
    for mesh in meshes(cluster, 8):
        assert ring_steps(mesh, c) == 14
        assert float(collective_seconds(cluster, mesh, c)) == pytest.approx(expected)


def test_two_protocol_lines_per_collective():
    """A collective over both levels of a calibrated preset is two Lines (LL, bulk), each summed
    over the levels; with the bulk pair on the inner level only, that is the inner level's faster
    protocol plus the outer level's one line, and its latency split by level is the line fastest
    at zero bytes."""
    from dataclasses import replace

    from planner.cost.layouts import CollectiveKind
    from planner.cost.mesh import meshes
    from planner.cost.network import collective_lines, kernel_collective_seconds, latency_line

    cluster = load_cluster("h100-sxm")
    cal = cluster.calibration
    inner, outer = (cal.level(level.name) for level in cluster.topology.levels)
    assert inner.bulk_latency_s is not None and outer.bulk_latency_s is None
    mesh = next(m for m in meshes(cluster, 16) if len(m.pieces("xyz")) > 1)
    lines = collective_lines(cluster, mesh, CollectiveKind.ALL_REDUCE, "xyz")
    assert len(lines) == 2
    nv, ib = (level.bandwidth(k) for level, k in zip(cluster.topology.levels, (8, 2)))
    for data in (1e3, 1e6, 1e9):  # by hand: ring all-reduce, IB first (2 GPUs), then NVLink (8)
        x_ib, x_nv = data * 1 * 1 / 16 * 2, data * 7 * 2 / 16 * 2
        t_ib = outer.latency_s + outer.step_latency_s * 2 + x_ib / (outer.efficiency * ib)
        t_nv = min(inner.latency_s + inner.step_latency_s * 14 + x_nv / (inner.efficiency * nv),
                   inner.bulk_latency_s + x_nv / (inner.bulk_efficiency * nv))
        assert float(kernel_collective_seconds(cluster, CollectiveKind.ALL_REDUCE, data, 16)) == \
            pytest.approx(t_ib + t_nv, rel=1e-12)
    fast = latency_line(lines)
    assert dict(fast.latency_by_level) == pytest.approx(
        {"nvlink": min(inner.latency_s + inner.step_latency_s * 14, inner.bulk_latency_s),
         "infiniband": outer.latency_s + outer.step_latency_s * 2})
    # the bulk pair on both levels: one protocol for the whole collective (NCCL picks one)
    both = replace(cluster, calibration=replace(cal, levels={**cal.levels, "infiniband": {
        **cal.levels["infiniband"], "bulk_latency_s": 1.0, "bulk_efficiency": 0.99}}))
    ll, bulk = collective_lines(both, mesh, CollectiveKind.ALL_REDUCE, "xyz")
    assert bulk.latency_s > 1.0 and ll.latency_s < 1e-3  # the bulk line pays both levels' bulk latency
