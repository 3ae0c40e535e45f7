"""The rows `explain` prints: each dataflow term of a layout with its per-step totals (already
x the layers it repeats over) and its seconds, as the cost model (planner.cost.costmodel)
charges them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.kernels import grouped_flops, matmul_flop_per_s, matmul_flops
from planner.cost.layouts import Term
from planner.cost.mesh import Mesh
from planner.cost.network import collective_seconds, collective_spans, routed_levels
from planner.specs.formats import Formats, Sparsity
from planner.specs.hardware import Cluster
from planner.units import fmt_bytes


@dataclass(frozen=True, kw_only=True)
class Row:
    """One line of `explain`: a dataflow term with its per-step totals (already x repeat)."""

    name: str
    notation: str
    repeat: int  # n_layers for per-layer rows, 1 for the output projection
    flops: np.ndarray
    hbm_bytes: np.ndarray
    comm_bytes: np.ndarray
    collective: str  # e.g. "all-gather(yz)" or ""
    compute_format: str  # the peak an einsum runs at ("bf16", "fp8", ...; "" for other rows)
    peak_flop_per_s: float  # that peak (0 for rows without FLOPs)
    sustained_flop_per_s: float  # what large matmuls sustain at it (planner.cost.kernels.matmul_flop_per_s)
    compute_s: np.ndarray
    memory_s: np.ndarray
    comm_s: np.ndarray
    kernel: str = ""  # rows sharing a name run as one kernel (Term.kernel); "": its own


def explain_row(cluster: Cluster, mesh: Mesh, term: Term, repeat: int, shape: tuple[int, ...], formats: Formats) -> Row:
    cal, chip = cluster.calibration, cluster.chip
    if term.activation_matmul:
        compute_format, peak = "bf16", chip.peak_bf16_flop_per_s
    else:
        compute_format, peak = formats.weights.compute.label, formats.weight_peak_flop_per_s(chip)
        if formats.sparsity is Sparsity.TWO_FOUR:
            compute_format += " 2:4"
    if not np.any(term.flops):
        compute_format, peak = "", 0.0
    sustained = float(matmul_flop_per_s(cluster, peak))
    grouped = grouped_flops(cluster, term) if peak else None
    notation = term.text
    if grouped is not None:  # the grouped-GEMM rate at this row's rows per expert (its first point)
        m = float(np.ravel(term.rows)[0])
        sustained = peak * cluster.moe_kernels.grouped_efficiency * m / (m + cluster.moe_kernels.grouped_half_rows)
        compute_format += f" grouped GEMM, {m:.4g} rows per expert"
    flops = np.broadcast_to(repeat * np.asarray(term.flops, dtype=float), shape)
    hbm = np.broadcast_to(repeat * np.asarray(term.hbm_bytes, dtype=float), shape)
    if term.collective is not None:
        comm_bytes = np.broadcast_to(repeat * np.asarray(term.collective.bytes_per_chip, dtype=float), shape)
        comm_s = np.broadcast_to(repeat * collective_seconds(cluster, mesh, term.collective), shape)
        label = f"{term.collective.kind.value}({term.collective.axes})"
        routed = term.collective.routed
        if routed is not None and cluster.moe_kernels is not None and not mesh.torus:
            data = float(np.ravel(comm_bytes)[0])
            levels = routed_levels(cluster, dict(collective_spans(mesh, term.collective.axes)), routed)
            notation += (
                f" [DeepEP {'low-latency' if routed.low_latency else 'normal'} kernels: "
                + ", ".join(
                    f"{name} {fmt_bytes(factor * data)} at {100 * e:.0f}% of {fmt_bytes(w)}/s"
                    for name, factor, _, e, w in levels
                )
                + "]"
            )
    else:
        comm_bytes, comm_s, label = 0.0 * flops, 0.0 * flops, ""
    return Row(
        name=term.name,
        notation=notation,
        repeat=repeat,
        flops=flops,
        hbm_bytes=hbm,
        comm_bytes=comm_bytes,
        collective=label,
        compute_format=compute_format,
        peak_flop_per_s=peak,
        sustained_flop_per_s=sustained,
        compute_s=(
            np.broadcast_to(repeat * np.asarray(grouped, dtype=float), shape) / peak
            if grouped is not None
            else np.broadcast_to(repeat * np.asarray(matmul_flops(cal, term), dtype=float), shape) / sustained
        )
        if peak
        else 0.0 * flops,
        memory_s=hbm / (chip.hbm_bytes_per_s * cal.hbm_efficiency),
        comm_s=comm_s,
        kernel=term.kernel,
    )
