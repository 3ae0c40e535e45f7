"""The GPU calibration sets (configs/measurements/<cluster>.yaml, row kinds): `planner calibrate`
reproduces the shipped presets, and the kernel tables are reproduced as far as the physics allows
(docs/accuracy-gpu-<cluster>.md lists every residual)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner.commands.calibrate.kernels import fit
from planner.config import load_cluster
from planner.config.kernel_measurements import load_kernel_measurements

# Every test here fits or reads a fitted GPU set (seconds each): the full tier (CI) runs them.
pytestmark = pytest.mark.slow

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
    assert result.cluster.calibration == load_cluster(name).calibration, (
        f"regenerate with: planner calibrate configs/measurements/{name}.yaml --cluster {name} -o configs/clusters/{name}.yaml"
    )


def test_constants_are_physical(fitted):
    c = fitted[1].cluster.calibration
    assert 0 < c.matmul_efficiency <= 1 and 0 < c.hbm_efficiency <= 1 and c.kernel_overhead_s >= 0
    assert c.layer_overhead_s >= 0 and c.token_overhead_s >= 0 and c.matmul_half_rows >= 0
    for level in c.levels.values():
        for key, value in level.items():
            assert (0 < value <= 1) if "efficiency" in key else value >= 0


# The issue's targets, row by row. A row that misses is a strict xfail whose reason is what its
# data show (docs/accuracy-gpu-<cluster>.md lists every residual): the NCCL lines and the roofline
# plus a fixed time per kernel cannot follow these rows, and no constant is tuned to them.
NCCL_TARGET, GEMM_TARGET, POINT_MEDIAN, POINT_WORST = 0.25, 0.20, 0.15, 0.35
_DIP = (
    "A100 2 MiB: 8 GPUs take 33.4 us (all-gather) / 34.2 us (reduce-scatter), 4 GPUs 52.9 / 48.7 us and 2 GPUs "
    "38.1 / 34.9 us, not monotone in the GPU count (a protocol or channel choice inside NCCL); "
    "every line here is monotone in it: 45.9 us at 4 GPUs, 47.3 us at 8"
)
_RS_FAST = (
    "8-GPU 2 MiB reduce-scatter runs 18-19% faster than the all-gather of the same size (H100 18.1 vs 22.0 us, "
    "H200 19.7 vs 24.3 us), where a ring moves the same bytes in the same steps; every line here charges "
    "them alike (23.0 / 24.7 us), as would an LL128 line; the in-switch line (65 us fixed) is far slower at 2 MiB"
)
_A100_TILES = (
    "A100 bf16 table: m=1024 n=k=4096 takes 204 us, 2.25x the m=512 time (90.6 us) and 0.66x the "
    "m=2048 time (307 us): a time per FLOP that falls from m=1024 to m=2048, cuBLAS's per-shape kernel "
    "choice. The efficiency curve in m (matmul_half_rows, fitted 93 rows) rises monotonically and "
    "follows the m=128-512 and m=2048 rows of the same shape within 12%"
)
_GQA = (
    "TensorRT-LLM v0.9's Mistral 7B (8 KV heads: a quarter of Llama-2-7B's KV bytes, 1.3x its FFN) runs "
    "about as fast as Llama-2-7B at the same setting: Llama-2-7B takes 0.99-1.10x Mistral's time on H200 "
    "(1.03-1.32x on H100), where the KV reads the planner charges make it 1.21-1.85x (1.33-2.07x); "
    "the Llama-2-7B rows of these settings are within 15% (-14% to +14%)"
)
KNOWN_MISSES = {
    ("a100-80gb", "collective", "all-gather", 8, 2097152.0, None): _DIP,
    ("a100-80gb", "collective", "reduce-scatter", 8, 2097152.0, None): _DIP,
    ("h100-sxm", "collective", "reduce-scatter", 8, 2097152.0, 1): _RS_FAST,
    ("h100-sxm", "collective", "reduce-scatter", 8, 2097152.0, 2): _RS_FAST,
    ("h200-sxm", "collective", "reduce-scatter", 8, 2097152.0, None): _RS_FAST,
    ("a100-80gb", "gemm", "bf16", 1024, 4096, 4096): _A100_TILES,
    ("h200-sxm", "point", "TRT-LLM v0_9 H200 Mistral 7B tp1 b120 128/2048"): _GQA,
    ("h200-sxm", "point", "TRT-LLM v0_9 H200 Mistral 7B tp1 b56 2048/2048"): _GQA,
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
            if row.kind == "collective" and not (
                row["implementation"] == "nccl" and row["nodes"] == 1 and 8192 <= row["bytes"] <= 512 * 2**20
            ):
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
    with m >= 8 (bf16 and fp8, each fitted): within 20%; calibration points (end-to-end, ttft,
    throughput): within 35%."""
    residual = _fit(name).residuals[index]
    target = {"collective": NCCL_TARGET, "gemm": GEMM_TARGET}.get(residual.row.kind, POINT_WORST)
    assert residual.predicted_s is not None and abs(residual.error) <= target, residual.error


def test_known_misses_name_real_rows():
    keys = {_key(name, row) for name in CLUSTERS for row in _data(name).rows}
    assert set(KNOWN_MISSES) <= keys


def test_narrow_matmul_efficiency_fitted_or_by_rule():
    """Fitted to the fp8 GEMM rows where a table has them (those rows then fitted rows), else by
    the stated rule: h200-sxm has H100's chip peaks (the same GH100 die and clocks) and takes its
    value; a100-80gb matches no calibrated preset: none (matmul_efficiency). Each rule warns."""
    h100, h200, a100 = (_fit(name) for name in CLUSTERS[1:] + CLUSTERS[:1])
    fp8 = [r for r in h100.of("gemm") if r.row["dtype"] == "fp8"]
    assert fp8 and all(r.fitted for r in fp8)
    narrow = h100.cluster.calibration.narrow_matmul_efficiency
    assert 0 < narrow <= 1 and not any("narrow_matmul_efficiency" in w for w in h100.warnings)
    assert (
        h200.cluster.calibration.narrow_matmul_efficiency
        == narrow
        == load_cluster("h100-sxm").calibration.narrow_matmul_efficiency
    )
    assert any("narrow_matmul_efficiency" in w and "h100-sxm" in w for w in h200.warnings)
    assert a100.cluster.calibration.narrow_matmul_efficiency is None
    assert any("narrow_matmul_efficiency: not identified" in w for w in a100.warnings)


def test_layer_overhead_shared_by_the_same_compute_die(tmp_path):
    """h100-sxm and h200-sxm (the same GH100 die and clocks) share layer_overhead_s and
    token_overhead_s, fitted on both
    shipped sets' end-to-end rows: either calibration gives the same value, and each says so;
    a100-80gb has no such sibling. A copy of the shipped set (a checkout's, beside an installed
    planner's; comments aside) is the shipped set; a file with other data is fitted alone."""
    h100, h200, a100 = (_fit(name) for name in CLUSTERS[1:] + CLUSTERS[:1])
    shared = h100.cluster.calibration.layer_overhead_s
    assert shared > 0 and h200.cluster.calibration.layer_overhead_s == shared
    assert 0 < h100.cluster.calibration.token_overhead_s == h200.cluster.calibration.token_overhead_s
    assert any(w.startswith("layer_overhead_s and token_overhead_s: shared with h200-sxm") for w in h100.warnings)
    assert any(w.startswith("layer_overhead_s and token_overhead_s: shared with h100-sxm") for w in h200.warnings)
    assert not any(w.startswith("layer_overhead_s") for w in a100.warnings)
    shipped = (ROOT / "configs" / "measurements" / "h200-sxm.yaml").read_text(encoding="utf-8")
    copy = tmp_path / "copy.yaml"
    copy.write_text(shipped, encoding="utf-8")
    assert (
        fit(load_cluster("h200-sxm"), load_kernel_measurements(str(copy))).cluster.calibration
        == h200.cluster.calibration
    )
    commented = tmp_path / "commented.yaml"
    commented.write_text(shipped + "# my notes: the same data\n", encoding="utf-8")
    assert (
        fit(load_cluster("h200-sxm"), load_kernel_measurements(str(commented))).cluster.calibration
        == h200.cluster.calibration
    )
    mine = tmp_path / "mine.yaml"
    mine.write_text(shipped.replace("ttft_s: 0.005,", "ttft_s: 0.0051,", 1), encoding="utf-8")  # other data
    alone = fit(load_cluster("h200-sxm"), load_kernel_measurements(str(mine)))
    assert any("fitted on this file's rows alone" in w for w in alone.warnings)
    assert alone.cluster.calibration.layer_overhead_s != shared  # its own rows alone pick another value


def test_outer_level_latency_by_rule():
    """A file without two-node rows (a100-80gb, h200-sxm) takes its infiniband latency_s from the
    preset whose shipped set has them (h100-sxm, refitted from its file: the same value as its
    preset); its step latency and efficiency stay its own NVLink's (the rule h100-sxm uses too),
    and its bandwidth the cluster file's. Each says so."""
    h100 = _fit("h100-sxm")
    ib = h100.cluster.calibration.levels["infiniband"]
    assert ib == load_cluster("h100-sxm").calibration.levels["infiniband"]
    assert any(w.startswith("infiniband: only latency_s is fitted (4 two-node rows") for w in h100.warnings)
    assert not any("borrowed" in w for w in h100.warnings)
    for name in ("a100-80gb", "h200-sxm"):
        result = _fit(name)
        levels = result.cluster.calibration.levels
        assert levels["infiniband"] == {
            "latency_s": ib["latency_s"],
            "step_latency_s": levels["nvlink"]["step_latency_s"],
            "efficiency": levels["nvlink"]["bulk_efficiency"],
        }
        assert levels["infiniband"]["latency_s"] > 3 * levels["nvlink"]["latency_s"]
        assert any(
            w.startswith("infiniband: no two-node rows; latency_s borrowed from h100-sxm")
            and "configs/measurements/h100-sxm.yaml" in w
            for w in result.warnings
        )
        assert result.cluster.topology.levels[1] == load_cluster(name).topology.levels[1]
    assert [load_cluster(n).topology.levels[1].bandwidth(2) for n in ("a100-80gb", "h200-sxm")] == [25e9, 50e9]


def test_outer_level_rule_reads_data_not_presets(monkeypatch):
    """The borrowed latency is refitted from h100-sxm's measurements file, whatever its preset
    holds (presets regenerate in any order); with no preset whose set has two-node rows the level
    keeps the inner level's latencies, with the former warning."""
    from dataclasses import replace

    import planner.commands.calibrate.network as network

    real = network.load_cluster

    def scrambled(name):  # h100-sxm's preset with nonsense constants
        cluster = real(name)
        levels = {k: {**v, "latency_s": 1.0} for k, v in cluster.calibration.levels.items()}
        return replace(cluster, calibration=replace(cluster.calibration, levels=levels))

    a100, data = load_cluster("a100-80gb"), _data("a100-80gb")
    expected = _fit("h100-sxm").cluster.calibration.levels["infiniband"]["latency_s"]
    monkeypatch.setattr(network, "load_cluster", scrambled)
    assert network.outer_latency_by_rule(a100, "infiniband") == (expected, "h100-sxm", 4)
    monkeypatch.setattr(network, "list_presets", lambda kind: ["a100-80gb", "h200-sxm"])
    assert network.outer_latency_by_rule(a100, "infiniband") is None
    levels, warnings, _, outer = network.network_stage(a100, data)
    assert not outer and levels["infiniband"] == {
        "latency_s": levels["nvlink"]["latency_s"],
        "step_latency_s": levels["nvlink"]["step_latency_s"],
        "efficiency": levels["nvlink"]["bulk_efficiency"],
    }
    assert any("not identified by this data" in w for w in warnings)


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
    command = (
        f"planner calibrate configs/measurements/{name}.yaml --cluster {name} --report docs/accuracy-gpu-{name}.md"
    )
    assert page.read_text(encoding="utf-8") == accuracy_section(_data(name), _fit(name), command), (
        f"regenerate with: {command}"
    )


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
    over the levels (an all-reduce on NVLink SHARP levels has a third: test_in_switch_line); with
    the bulk pair on the inner level only, that is the inner level's faster protocol plus the
    outer level's one line, and its latency split by level is the line fastest at zero bytes."""
    from dataclasses import replace

    from planner.cost.layouts import CollectiveKind
    from planner.cost.mesh import meshes
    from planner.cost.network import collective_lines, kernel_collective_seconds, latency_line

    cluster = load_cluster("h100-sxm")
    cal = cluster.calibration
    inner, outer = (cal.level(level.name) for level in cluster.topology.levels)
    assert inner.bulk_latency_s is not None and outer.bulk_latency_s is None
    mesh = next(m for m in meshes(cluster, 16) if len(m.pieces("xyz")) > 1)
    assert len(collective_lines(cluster, mesh, CollectiveKind.ALL_GATHER, "xyz")) == 2
    lines = collective_lines(cluster, mesh, CollectiveKind.ALL_REDUCE, "xyz")
    assert len(lines) == 3
    nv, ib = (level.bandwidth(k) for level, k in zip(cluster.topology.levels, (8, 2)))
    for data in (1e3, 1e6, 1e9):  # by hand: ring all-reduce, IB first (2 GPUs), then NVLink (8)
        x_ib, x_nv = data * 1 * 1 / 16 * 2, data * 7 * 2 / 16 * 2
        t_ib = outer.latency_s + outer.step_latency_s * 2 + x_ib / (outer.efficiency * ib)
        t_nv = min(
            inner.latency_s + inner.step_latency_s * 14 + x_nv / (inner.efficiency * nv),
            inner.bulk_latency_s + x_nv / (inner.bulk_efficiency * nv),
            inner.in_switch_latency_s + data / (inner.in_switch_efficiency * nv),
        )
        assert float(kernel_collective_seconds(cluster, CollectiveKind.ALL_REDUCE, data, 16)) == pytest.approx(
            t_ib + t_nv, rel=1e-12
        )
    fast = latency_line(lines)
    assert dict(fast.latency_by_level) == pytest.approx(
        {
            "nvlink": min(inner.latency_s + inner.step_latency_s * 14, inner.bulk_latency_s),
            "infiniband": outer.latency_s + outer.step_latency_s * 2,
        }
    )
    # the bulk pair on both levels: one protocol for the whole collective (NCCL picks one)
    both = replace(
        cluster,
        calibration=replace(
            cal,
            levels={
                **cal.levels,
                "infiniband": {**cal.levels["infiniband"], "bulk_latency_s": 1.0, "bulk_efficiency": 0.99},
            },
        ),
    )
    ll, bulk = collective_lines(both, mesh, CollectiveKind.ALL_GATHER, "xyz")
    assert bulk.latency_s > 1.0 and ll.latency_s < 1e-3  # the bulk line pays both levels' bulk latency


def test_in_switch_line():
    """NVLink SHARP: an all-reduce over a level that declares in-switch reduction (and has the
    in-switch pair) may take a third line, c + D / (g W): each GPU sends its D once into the switch
    and receives the reduced D once, whatever the GPU count. Only all-reduce; only where the level
    declares it (A100's NVSwitch gen 2 does not); the search pads every collective to three lines."""
    from dataclasses import replace

    from planner.cost.layouts import CollectiveKind
    from planner.cost.line_tables import LineCache
    from planner.cost.mesh import meshes
    from planner.cost.network import collective_lines, kernel_collective_seconds

    h100 = load_cluster("h100-sxm")
    nv = h100.calibration.level("nvlink")
    assert h100.topology.levels[0].in_switch_reduction and nv.in_switch_latency_s is not None
    w = h100.topology.levels[0].bandwidth(8)
    for gpus in (2, 4, 8):
        ring = replace(
            h100,
            topology=replace(
                h100.topology,
                levels=(replace(h100.topology.levels[0], in_switch_reduction=False),) + h100.topology.levels[1:],
            ),
        )
        for data in (1e4, 1e7, 1e9):
            sharp = nv.in_switch_latency_s + data / (nv.in_switch_efficiency * w)
            t = float(kernel_collective_seconds(h100, CollectiveKind.ALL_REDUCE, data, gpus))
            assert t == pytest.approx(
                min(sharp, float(kernel_collective_seconds(ring, CollectiveKind.ALL_REDUCE, data, gpus))), rel=1e-12
            )
            for kind in (CollectiveKind.ALL_GATHER, CollectiveKind.REDUCE_SCATTER):
                assert float(kernel_collective_seconds(h100, kind, data, gpus)) == float(
                    kernel_collective_seconds(ring, kind, data, gpus)
                )
    # large 8-GPU all-reduces take it, small ones do not
    assert float(kernel_collective_seconds(h100, CollectiveKind.ALL_REDUCE, 5e8, 8)) == pytest.approx(
        nv.in_switch_latency_s + 5e8 / (nv.in_switch_efficiency * w)
    )
    assert float(kernel_collective_seconds(h100, CollectiveKind.ALL_REDUCE, 1e4, 8)) < nv.in_switch_latency_s
    mesh = next(iter(meshes(h100, 8)))
    assert LineCache(h100).count == 3
    assert LineCache(h100).arrays(mesh, CollectiveKind.ALL_GATHER, "xyz", False)[0].shape[0] == 3
    a100 = load_cluster("a100-80gb")
    assert not a100.topology.levels[0].in_switch_reduction and LineCache(a100).count == 2
    assert len(collective_lines(a100, next(iter(meshes(a100, 8))), CollectiveKind.ALL_REDUCE, "xyz")) == 2
