"""narrow_matmul_efficiency: the share of a peak above the chip's bf16 one (fp8, int8-w8a8, fp4, 2:4
sparse) that large matmuls sustain, one rule for every chip (planner.cost.kernels.matmul_flop_per_s),
in the cost model, the GEMM kernel time and the explain rows alike."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from planner.config import load_cluster, load_plan
from planner.cost.costmodel import evaluate
from planner.cost.kernels import gemm_seconds, matmul_flop_per_s
from planner.search.search import candidates


def _with(cluster, **constants):
    return replace(cluster, calibration=replace(cluster.calibration, **constants))


def test_the_narrow_rate_applies_above_the_bf16_peak_only():
    h100 = _with(load_cluster("h100-sxm"), matmul_efficiency=0.8, narrow_matmul_efficiency=0.6)
    chip = h100.chip
    assert matmul_flop_per_s(h100, chip.peak_flop_per_s["bf16"]) == pytest.approx(989e12 * 0.8)
    for peak in (chip.peak_flop_per_s["fp8"], chip.peak_flop_per_s["int8"], chip.sparse_peak_flop_per_s["bf16"]):
        assert matmul_flop_per_s(h100, peak) == pytest.approx(peak * 0.6)
    both = matmul_flop_per_s(h100, np.array([989e12, 1979e12]))  # per point, as a sweep of formats has it
    assert both == pytest.approx([989e12 * 0.8, 1979e12 * 0.6])
    # absent: matmul_efficiency at every peak
    plain = _with(h100, narrow_matmul_efficiency=None)
    assert matmul_flop_per_s(plain, 1979e12) == pytest.approx(1979e12 * 0.8)
    # a format at the bf16 peak (an int8 peak equal to bf16's): never the narrow rate
    tpu = load_cluster("tpu-v4")
    assert tpu.calibration.narrow_matmul_efficiency is None
    equal = replace(tpu, chip=replace(tpu.chip, peak_flop_per_s={"bf16": 275e12, "int8": 275e12}))
    assert matmul_flop_per_s(
        _with(equal, narrow_matmul_efficiency=0.1), equal.chip.peak_flop_per_s["int8"]
    ) == matmul_flop_per_s(equal, equal.chip.peak_flop_per_s["bf16"])


def _prefill(cluster, weights: str):
    plan = load_plan(
        None,
        model="llama-3-8b",
        cluster="h100-sxm",
        chips=(8,),
        phases=("prefill",),
        batches=(4,),
        weights=(weights,),
        ffn=("ws1d",),
        attention=("heads",),
    )
    c = candidates(plan, plan.space.phases[0])[0]
    return evaluate(plan.model, cluster, plan.workload, c, np.array([4]), detail=True)


def test_evaluate_runs_weight_einsums_at_the_narrow_rate():
    h100 = load_cluster("h100-sxm")
    cal = h100.calibration
    assert cal.narrow_matmul_efficiency is not None
    half = _with(h100, narrow_matmul_efficiency=cal.matmul_efficiency / 2)
    plain = _with(h100, narrow_matmul_efficiency=None)
    fp8_half, fp8_plain = _prefill(half, "fp8"), _prefill(plain, "fp8")
    rows_half = {r.name: r for r in fp8_half.rows}
    for r in fp8_plain.rows:  # fp8 einsums take twice as long; the bf16 ones (QK, AV) are unchanged
        factor = 2.0 if r.compute_format == "fp8" else 1.0
        assert rows_half[r.name].compute_s == pytest.approx(factor * r.compute_s, rel=1e-12), r.name
        if r.compute_format == "fp8":
            assert rows_half[r.name].sustained_flop_per_s == pytest.approx(
                r.peak_flop_per_s * cal.matmul_efficiency / 2
            )
    assert any(r.compute_format == "bf16" and r.compute_s[0] > 0 for r in fp8_plain.rows)
    # the step's compute is the rows' (evaluate and explain charge alike)
    assert fp8_half.compute_s[0] == pytest.approx(sum(r.compute_s[0] for r in fp8_half.rows), rel=1e-9)
    assert fp8_half.compute_s[0] > fp8_plain.compute_s[0]
    # bf16 weights: bit for bit the same whatever the narrow constant
    assert np.array_equal(_prefill(half, "bf16").compute_s, _prefill(plain, "bf16").compute_s)


def test_a_gemm_kernel_at_the_narrow_rate():
    h100 = _with(load_cluster("h100-sxm"), kernel_overhead_s=0.0)
    big = dict(m=8192, n=8192, k=8192)
    fp8 = gemm_seconds(h100, compute="fp8", weight_bytes=1.0, **big)
    assert fp8 == pytest.approx(2.0 * 8192**3 / (1979e12 * h100.calibration.narrow_matmul_efficiency))
    bf16 = gemm_seconds(h100, compute="bf16", weight_bytes=2.0, **big)
    assert bf16 == pytest.approx(2.0 * 8192**3 / (989e12 * h100.calibration.matmul_efficiency))


def test_explain_shows_the_sustained_rate(planner):
    from planner.units import fmt_rate

    args = (
        "explain",
        "--model",
        "llama-3-8b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "8",
        "--phase",
        "prefill",
        "--batch",
        "4",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "fp8",
    )
    layers = {row["name"]: row for row in json.loads(planner(*args, "--format", "json").out)["layers"]}
    w_in, qk = layers["einsum W_in"], layers["einsum QK, AV"]
    cal = load_cluster("h100-sxm").calibration
    assert w_in["sustained_flop_per_s"] == pytest.approx(1979e12 * cal.narrow_matmul_efficiency, rel=1e-5)
    assert qk["sustained_flop_per_s"] == pytest.approx(989e12 * cal.matmul_efficiency, rel=1e-5)
    text = " ".join(planner(*args).out.split())
    share = f"{100 * cal.narrow_matmul_efficiency:.0f}%"
    assert f"[fp8 at {fmt_rate(w_in['sustained_flop_per_s'], 'FLOP/s')}: {share} of peak]" in text
