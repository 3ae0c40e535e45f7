"""Stage 1 of `planner calibrate` on a file with row kinds (planner.commands.calibrate.kernels):
the switched levels' constants from the NCCL `collective` rows, the rule for an outer level whose
constants the file's rows do not identify, and the fitting helpers every stage shares.

The innermost level's constants (latency_s, step_latency_s, efficiency, bulk_latency_s,
bulk_efficiency; in_switch_latency_s and in_switch_efficiency where the level declares
`in_switch_reduction`) are fitted together from the one-node rows. The next level (InfiniBand)
has one line (no bulk pair): its step latency is the inner level's and its efficiency the inner
level's bulk efficiency (a rule on every preset: no row measures its bandwidth), and its
`latency_s` is fitted from the rows that span two nodes. A file without such rows takes that
latency by a rule (`outer_latency_by_rule`): the value fitted, here, from the two-node rows of the
shipped calibration set (configs/measurements/<preset>.yaml) of the first preset (by name) whose
set has them and whose topology has a level of the same name (today h100-sxm: an H20 2x8 NDR
InfiniBand proxy), since NCCL's cross-node latency is its NIC and proxy path (network proxy
thread, RDMA, the switch), not the GPU's. Refitted from that file, not read from its preset, so
presets regenerate in any order. The level's bandwidth stays the cluster file's (HDR 25 GB/s per
A100, NDR 50 GB/s per H100/H200). Without such a preset the level takes the inner level's
latencies (the former rule), with a warning either way.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from planner.commands.calibrate.fit import SIGNIFICANT, robust_loss
from planner.commands.calibrate.solver import levenberg_marquardt
from planner.config import list_presets, load_cluster
from planner.config.kernel_measurements import KernelMeasurements, Row, load_kernel_measurements
from planner.config.presets import presets_dir
from planner.cost.network import kernel_collective_seconds
from planner.specs.hardware import Calibration, Cluster, Switched
from planner.units import fmt_seconds

LEVEL_CONSTANTS = ("latency_s", "step_latency_s", "efficiency", "bulk_latency_s", "bulk_efficiency")
IN_SWITCH_CONSTANTS = ("in_switch_latency_s", "in_switch_efficiency")


def collective_times(cluster: Cluster, rows: list[Row]) -> np.ndarray:
    """Predicted seconds of collective rows; rows of one kind and GPU count share one call (their
    lines are made once: a fit evaluates every row for each trial of its constants)."""
    out, groups = np.empty(len(rows)), {}
    for i, row in enumerate(rows):
        groups.setdefault((row["collective"], row["gpus"]), []).append(i)
    for (kind, gpus), members in groups.items():
        out[members] = kernel_collective_seconds(
            cluster, kind, np.array([rows[i]["bytes"] for i in members], dtype=float), gpus
        )
    return out


# ---------------------------------------------------------------------------------------------
# Fitting helpers (every stage)


_SCALE = {"latency": 1e-6, "rows": 1.0}  # a latency around 1 us, rows (matmul_half_rows) around 1


def _unconstrained(value: float, kind: str) -> float:
    return math.log(value / (1 - value)) if kind == "fraction" else math.log(value / _SCALE[kind])


def _constrained(u: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    frac = np.array([k == "fraction" for k in kinds])
    scale = np.array([_SCALE.get(k, 1.0) for k in kinds])
    return np.where(frac, 1.0 / (1.0 + np.exp(-u)), scale * np.exp(u))


def minimise(loss_residual, kinds: tuple[str, ...], starts) -> np.ndarray:
    """Robust fit over constants of `kinds` ('fraction', 'latency' or 'rows') from each start; the best."""
    lower = np.array([-12.0 if k == "fraction" else -16.0 for k in kinds])
    upper = -lower

    def residual(u):
        if u.ndim == 2:
            return np.stack([residual(u[:, j]) for j in range(u.shape[1])], axis=1)
        r = np.log(loss_residual(_constrained(u, kinds)))
        return np.sign(r) * np.sqrt(robust_loss(r))

    found = [
        levenberg_marquardt(
            residual, np.clip([_unconstrained(v, k) for v, k in zip(s, kinds)], lower, upper), lower, upper
        )
        for s in starts
    ]
    return _constrained(min(found, key=lambda p: p[1])[0], kinds)


def round_constant(x: float) -> float:
    return 0.0 if x < 1e-10 else float(f"{x:.{SIGNIFICANT}g}")


# ---------------------------------------------------------------------------------------------
# Stage 1


def nccl_rows(data: KernelMeasurements) -> tuple[list[Row], list[Row]]:
    """(NCCL collective rows within one node, those spanning several nodes)."""
    nccl = [r for r in data.of("collective") if r["implementation"] == "nccl"]
    return [r for r in nccl if r["nodes"] == 1], [r for r in nccl if r["nodes"] > 1]


def network_stage(cluster: Cluster, data: KernelMeasurements, *, by_rule: bool = True):
    """Stage 1 (module docstring): (`Calibration.levels` fitted, warnings, one-node rows, two-node
    rows). `by_rule=False`: an outer level without two-node rows keeps the inner level's latencies
    (no other preset's set is read)."""
    cal = replace(cluster.calibration, overlap=0.0)
    levels = cluster.topology.levels
    inner, outer = nccl_rows(data)
    warnings: list[str] = []
    level_cal: dict[str, dict[str, float]] = {}
    if inner:
        names, kinds = LEVEL_CONSTANTS, ("latency", "latency", "fraction", "latency", "fraction")
        starts = [(a, 0.5e-6, e, b, 0.8) for a in (3e-6, 8e-6) for e in (0.3, 0.6) for b in (20e-6, 60e-6)]
        if levels[0].in_switch_reduction:  # its all-reduce's third line, fitted with the others
            names, kinds = names + IN_SWITCH_CONSTANTS, kinds + ("latency", "fraction")
            starts = [s + (c, 0.5) for s in starts for c in (20e-6, 60e-6)]

        def times(c):
            trial = replace(cluster, calibration=replace(cal, levels={levels[0].name: dict(zip(names, c))}))
            return collective_times(trial, inner) / np.array([r.measured_s for r in inner])

        best = minimise(times, kinds, starts)
        level_cal[levels[0].name] = {k: round_constant(v) for k, v in zip(names, best)}
    else:
        warnings.append(f"no one-node collective rows: the {levels[0].name} constants are not identified (ideal)")
    if len(levels) < 2:
        return level_cal, warnings, inner, outer
    # rule: one line (no bulk pair) at the inner level's step latency and bulk efficiency
    nv, ib = levels[0].name, levels[1].name
    got = level_cal.get(nv, {})
    base = (
        {"latency_s": got["latency_s"], "step_latency_s": got["step_latency_s"], "efficiency": got["bulk_efficiency"]}
        if got
        else {}
    )
    borrowed = outer_latency_by_rule(cluster, ib) if (base and not outer and by_rule) else None
    if outer and base:

        def times_outer(c):
            trial = replace(cluster, calibration=replace(cal, levels={**level_cal, ib: {**base, "latency_s": c[0]}}))
            return collective_times(trial, outer) / np.array([r.measured_s for r in outer])

        base["latency_s"] = round_constant(minimise(times_outer, ("latency",), [(10e-6,), (40e-6,)])[0])
        warnings.append(
            f"{ib}: only latency_s is fitted ({len(outer)} two-node rows, small "
            f"messages); its step latency is {nv}'s and its efficiency {nv}'s bulk efficiency (rule)"
        )
    elif borrowed:
        base["latency_s"], donor, rows = borrowed
        warnings.append(
            f"{ib}: no two-node rows; latency_s borrowed from {donor} ({fmt_seconds(base['latency_s'])}, "
            f"fitted to the {rows} two-node rows of configs/measurements/{donor}.yaml; rule: NCCL's "
            f"cross-node latency is the NIC and proxy path, not the GPU); its step latency is {nv}'s and "
            f"its efficiency {nv}'s bulk efficiency (rule, as on {donor}); its bandwidth the cluster file's"
        )
    elif base:
        warnings.append(
            f"{ib}: no two-node rows; its latencies are {nv}'s and its efficiency "
            f"{nv}'s bulk efficiency (rule: not identified by this data)"
        )
    if base:
        level_cal[ib] = base
    return level_cal, warnings, inner, outer


def shipped_sets(cluster: Cluster):
    """(name, cluster, measurements file) of every other preset with a shipped calibration set
    (configs/measurements/<name>.yaml), by name: the donors of the by-rule constants."""
    folder = presets_dir() / "measurements"
    for name in list_presets("clusters"):
        path = folder / f"{name}.yaml"
        if name != cluster.name and path.is_file():
            yield name, load_cluster(name), path


def outer_latency_by_rule(cluster: Cluster, level: str) -> tuple[float, str, int] | None:
    """The rule for an outer level's latency_s (module docstring): (the value, the preset it is
    fitted from, its two-node rows), fitted from the shipped set of the first preset (by name,
    not `cluster`) whose switched topology's second level is named `level` and whose set has
    one-node and two-node NCCL rows; None where no preset's set has them."""
    for name, donor, path in shipped_sets(cluster):
        if not (
            isinstance(donor.topology, Switched)
            and len(donor.topology.levels) > 1
            and donor.topology.levels[1].name == level
        ):
            continue
        data = load_kernel_measurements(str(path))
        inner, outer = nccl_rows(data)
        if not (inner and outer):
            continue
        donor = replace(donor, calibration=Calibration())  # from its data alone, not its preset's constants
        return network_stage(donor, data, by_rule=False)[0][level]["latency_s"], name, len(outer)
    return None
