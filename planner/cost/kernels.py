"""Matmul kernels: the rate large matmuls sustain at a format's peak, FLOPs as a matmul of m rows
costs them (the efficiency curve in the per-chip rows), the compute and HBM seconds of each
kernel of a step (`kernel_seconds`, each its own roofline in the cost model) and the time of one
kernel, a row of a GEMM table (roofline plus a fixed time per kernel), as the cost model
(planner.cost.costmodel) charges every einsum; and the dynamic per-tensor
quantisation of a W8A8 matmul's input, where a GEMM table's kernel includes it."""

from __future__ import annotations

import numpy as np

from planner.cost.layouts import Term
from planner.specs.hardware import ACTIVATION_BYTES, Cluster


def matmul_flop_per_s(cluster: Cluster, peak_flop_per_s):
    """FLOP/s that large matmuls sustain at `peak_flop_per_s` (the peak of the format they run
    at, a number or an array): matmul_efficiency of it, or narrow_matmul_efficiency where the
    peak is above the chip's dense bf16 peak (fp8, int8 or fp4 on chips that run them faster,
    2:4 sparse peaks): one rule for every chip, decided by the peak alone (a format whose peak
    equals the bf16 one: matmul_efficiency). Without a narrow_matmul_efficiency, matmul_efficiency."""
    cal = cluster.calibration
    narrow = cal.narrow_matmul_efficiency
    if narrow is None or narrow == cal.matmul_efficiency:
        return peak_flop_per_s * cal.matmul_efficiency
    return peak_flop_per_s * np.where(
        np.asarray(peak_flop_per_s) > cluster.chip.peak_bf16_flop_per_s, narrow, cal.matmul_efficiency
    )


def matmul_flops(cal, term: Term):
    """A term's FLOPs as its matmuls cost them: FLOPs * (1 + matmul_half_rows / rows), the
    efficiency curve eff(m) = matmul_efficiency * m / (m + matmul_half_rows) in the per-chip rows
    m (see the module docstring; exact FLOPs for terms that are no matmul or ideal constants)."""
    if term.rows is None or not cal.matmul_half_rows:
        return term.flops
    return term.flops * (1.0 + cal.matmul_half_rows / np.maximum(term.rows, 1e-300))


def grouped_flops(cluster: Cluster, term: Term):
    """A grouped GEMM's FLOPs as it costs them at the weight format's full peak, where the cluster
    has fitted grouped-GEMM constants (`Cluster.moe_kernels`): FLOPs (1 + h_g / m) / e_g, the
    rate e_g m / (m + h_g) of that peak in the rows per expert m (DeepGEMM's grouped tables,
    planner.commands.calibrate.moe); None where it has none (the dense matmul curve applies)."""
    moe = cluster.moe_kernels
    if moe is None or not term.grouped or term.rows is None:
        return None
    return term.flops * (1.0 + moe.grouped_half_rows / np.maximum(term.rows, 1e-300)) / moe.grouped_efficiency


def grouped_gemm_seconds(cluster: Cluster, groups: int, m, n: int, k: int, weight_bytes: float, compute: str = "fp8"):
    """One grouped GEMM kernel (a row of DeepGEMM's grouped tables): `groups` experts, each
    y[m, n] = x[m, k] W[k, n], x and y in bf16 in HBM as `gemm_seconds` counts them, W in
    `weight_bytes` per element, at the `compute` peak and the grouped rate (`grouped_flops`);
    roofline plus the cluster's kernel_overhead_s."""
    cal, chip = cluster.calibration, cluster.chip
    m = np.asarray(m, dtype=float)
    term = Term(
        name="grouped gemm",
        notation="",
        flops=2.0 * groups * m * n * k,
        rows=m,
        grouped=True,
        hbm_bytes=groups * (ACTIVATION_BYTES * (m * k + m * n) + weight_bytes * k * n),
    )
    compute_s = grouped_flops(cluster, term) / chip.peak_flop_per_s[compute]
    memory_s = term.hbm_bytes / (chip.hbm_bytes_per_s * cal.hbm_efficiency)
    return np.maximum(compute_s, memory_s) + cal.kernel_overhead_s


def gemm_seconds(cluster: Cluster, m, n: int, k: int, compute: str, weight_bytes: float):
    """One matmul kernel y[m, n] = x[m, k] W[k, n] (a row of a GEMM table): x and y in bf16,
    W in `weight_bytes` per element, at the chip's `compute` peak (matmul_flop_per_s); the roofline of the einsum
    plus the fixed time of its kernel, as `evaluate` charges every einsum."""
    cal, chip = cluster.calibration, cluster.chip
    m = np.asarray(m, dtype=float)
    term = Term(
        name="gemm",
        notation="",
        flops=2.0 * m * n * k,
        rows=m,
        hbm_bytes=ACTIVATION_BYTES * (m * k + m * n) + weight_bytes * k * n,
    )
    compute_s = matmul_flops(cal, term) / matmul_flop_per_s(cluster, chip.peak_flop_per_s[compute])
    memory_s = term.hbm_bytes / (chip.hbm_bytes_per_s * cal.hbm_efficiency)
    return np.maximum(compute_s, memory_s) + term.kernels * cal.kernel_overhead_s


def kernel_seconds(cluster: Cluster, terms, weight_peak) -> list[tuple]:
    """(compute_s, memory_s) of each kernel of a step, at `cluster`'s constants: an einsum's or
    HBM read's row (times its repeat) is a kernel, but rows that share `Term.kernel` (and their
    layers) are one; collectives are not. A figure the rows do not have is the plain number 0.
    Compute: FLOPs as the matmuls cost them (`matmul_flops`) at the rate of their format's peak
    (`matmul_flop_per_s`; QK, AV at the bf16 peak; grouped GEMMs at the grouped rate of their
    format's peak where the cluster has one, `grouped_flops`); memory: HBM bytes at the sustained
    bandwidth."""
    cal, chip = cluster.calibration, cluster.chip
    weight_rate = matmul_flop_per_s(cluster, weight_peak)
    activation_rate = chip.peak_bf16_flop_per_s * cal.matmul_efficiency
    bandwidth = chip.hbm_bytes_per_s * cal.hbm_efficiency
    out, fused = [], {}
    for term, repeat in terms:
        if term.collective is not None or (plain_zero(term.flops) and plain_zero(term.hbm_bytes)):
            continue
        # the repeat over the rate first: small (a number, or per Grid row or format), then one
        # product over every point
        grouped = grouped_flops(cluster, term)
        c_s = (
            0
            if plain_zero(term.flops)
            else grouped * (repeat / weight_peak)
            if grouped is not None
            else matmul_flops(cal, term) * (repeat / (activation_rate if term.activation_matmul else weight_rate))
        )
        m_s = 0 if plain_zero(term.hbm_bytes) else term.hbm_bytes * (repeat / bandwidth)
        if not term.kernel:
            out.append((c_s, m_s))
        elif (key := (term.kernel, term.layers)) in fused:
            fused[key] = (fused[key][0] + c_s, fused[key][1] + m_s)
        else:
            fused[key] = (c_s, m_s)
    return out + list(fused.values())


def step_seconds(kernels: list[tuple], shape: tuple) -> tuple:
    """(compute_s, memory_s, local_s) over the points (`shape`) of a step's kernels
    (`kernel_seconds`): the sums of c_k and of h_k, and local = sum over k of max(c_k, h_k). A
    kernel's plain 0 adds exactly nothing, so it is skipped."""
    zero = np.zeros(shape)
    compute_s, memory_s, local_s = zero, zero, zero
    for c_s, m_s in kernels:
        if plain_zero(m_s):
            compute_s, local_s = compute_s + c_s, local_s + c_s
        elif plain_zero(c_s):
            memory_s, local_s = memory_s + m_s, local_s + m_s
        else:
            compute_s, memory_s, local_s = compute_s + c_s, memory_s + m_s, local_s + np.maximum(c_s, m_s)
    return compute_s, memory_s, local_s


def plain_zero(quantity) -> bool:
    """A term's figure that is the plain number 0 (collectives have no FLOPs, most no HBM bytes)."""
    return not isinstance(quantity, np.ndarray) and quantity == 0


# Dynamic per-tensor fp8 quantisation of x (TensorRT-LLM quantize_e4m3_per_tensor ->
# invokeComputeScalesAndQuantizeMatrix, PER_TENSOR, NVIDIA/TensorRT-LLM
# cpp/tensorrt_llm/common/cudaFp8Utils.cu): one kernel reads x for its absolute maximum (the
# scale), a second reads x again and writes it in fp8.
QUANTISATION_KERNELS = 2
QUANTISED_BYTES = 1.0  # fp8


def dynamic_quantisation_seconds(cluster: Cluster, elements):
    """Time to quantise an activation of `elements` (bf16) to fp8 with a scale computed on the
    fly: two memory-bound kernels, x read twice and written once in fp8, at the HBM roofline
    (hbm_efficiency) plus kernel_overhead_s each; no constant of its own."""
    cal = cluster.calibration
    hbm_bytes = np.asarray(elements, dtype=float) * (2 * ACTIVATION_BYTES + QUANTISED_BYTES)
    return (
        hbm_bytes / (cluster.chip.hbm_bytes_per_s * cal.hbm_efficiency) + QUANTISATION_KERNELS * cal.kernel_overhead_s
    )
