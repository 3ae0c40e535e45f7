"""`planner calibrate` on a mixture-of-experts kernel file (`kind: moe-kernels`, e.g.
configs/measurements/h800-sxm-moe.yaml): the `moe_kernels` constants of a cluster, fitted to
DeepEP's dispatch/combine tables and DeepGEMM's grouped-GEMM tables, each row predicted by the
cost model's own functions (planner.cost.network.routed_seconds, planner.cost.kernels.
grouped_gemm_seconds). Deterministic, in sequence, each constant from the rows that identify it:

1. Grouped GEMMs: `grouped_matmul_efficiency` e_g and `grouped_half_rows` h_g together, from the
   contiguous (prefill) and masked (decode) tables' rows (t = max(F (1 + h_g / m) / (peak e_g),
   B / (HBM e_h)) + t0 per kernel; m the rows per expert; the HBM and per-kernel constants the
   cluster's own, held).
2. DeepEP low-latency kernels: NVLink's fixed time and efficiency from the one-node rows (EP 8,
   dispatch and combine), then InfiniBand's from the others, NVLink held.
3. DeepEP normal kernels: the same two steps on the normal table.

A table gives bandwidths rather than times for the normal kernels: each row's time is the bytes
DeepEP's test counts (deepseek-ai/DeepEP tests/legacy/test_internode.py: tokens x distinct
destination nodes, or GPUs within a node, x hidden x bytes), with the distinct counts expected
under the test's routing (planner.cost.dispatch), over that bandwidth.

Each stage minimises the robust loss of planner.commands.calibrate.fit (Cauchy on log errors) by the
projected Levenberg-Marquardt of planner.commands.calibrate.network from a fixed grid of starts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from planner.commands.calibrate.network import minimise, round_constant
from planner.cost.dispatch import token_spread
from planner.cost.kernels import grouped_gemm_seconds
from planner.cost.layouts.base import Routed
from planner.cost.network import routed_seconds
from planner.errors import ConfigError, UsageError
from planner.specs.hardware import Cluster, MoeKernels

KIND = "moe-kernels"
FP8_SCALED = 1.0 + 4.0 / 128  # bytes per element of a token in fp8 with one fp32 scale per 128 (normal kernels)
BF16 = 2.0
GROUPED_TABLES = ("deepgemm_contiguous", "deepgemm_masked")
MIN_ROWS = 64  # grouped rows below this many rows per expert are shown, not fitted


@dataclass(frozen=True, kw_only=True)
class MoeRow:
    table: str
    label: str
    measured_s: float
    predicted_s: float
    fitted: bool

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0


@dataclass(frozen=True, kw_only=True)
class MoeFit:
    cluster: Cluster  # with the fitted moe_kernels
    rows: tuple[MoeRow, ...]
    warnings: tuple[str, ...]

    def of(self, table: str) -> tuple[MoeRow, ...]:
        return tuple(r for r in self.rows if r.table == table)


def is_moe_file(path: str) -> bool:
    """Whether `path` is a MoE kernel file (`kind: moe-kernels`)."""
    try:
        root = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(root, dict) and root.get("kind") == KIND


def check_cluster(cluster: Cluster, path: str) -> None:
    """The tables fit the links of the cluster they were measured on: a file naming its cluster
    fits that one only, and a cluster without switched levels (a torus) has no such links."""
    root = yaml.safe_load(Path(path).read_text())
    measured_on = root.get("cluster") if isinstance(root, dict) else None
    if measured_on is not None and measured_on != cluster.name:
        raise UsageError(
            f"--cluster {cluster.name}: {path} was measured on {measured_on}, and its fit is that cluster's "
            f"links\n  hint: --cluster {measured_on}; other GPUs take its constants by the rule their preset states"
        )
    if not hasattr(cluster.topology, "levels"):
        raise UsageError(
            f"--cluster {cluster.name}: a {KIND} file fits NVLink and InfiniBand levels, and {cluster.name} is a "
            "torus\n  hint: give a GPU cluster with switched levels"
        )


def load_moe_tables(path: str) -> dict:
    """The file's tables, each checked for the keys the fit reads."""
    root = yaml.safe_load(Path(path).read_text())
    tables = root.get("tables") if isinstance(root, dict) else None
    need = {
        "deepep_normal": ("tokens_per_rank", "hidden", "experts", "top_k", "gpus_per_node", "rows"),
        "deepep_low_latency": ("tokens_per_rank", "hidden", "experts", "top_k", "gpus_per_node", "rows"),
        "deepgemm_contiguous": ("rows",),
        "deepgemm_masked": ("rows",),
    }
    if not isinstance(tables, dict):
        raise ConfigError("no 'tables' mapping", file=path, key="tables", hint=f"a {KIND} file lists its tables")
    for name, keys in need.items():
        if name not in tables:
            raise ConfigError(
                f"table {name!r} is missing",
                file=path,
                key=f"tables.{name}",
                hint=f"a {KIND} file has the tables {', '.join(need)}",
            )
        for key in keys:
            if key not in tables[name]:
                raise ConfigError(
                    f"{key!r} is missing",
                    file=path,
                    key=f"tables.{name}.{key}",
                    hint="see configs/measurements/h800-sxm-moe.yaml",
                )
    return tables


# ---------------------------------------------------------------------------------------------
# One row each, by the cost model's functions


def _normal_rows(table) -> list[tuple[str, int, str, float, float, Routed]]:
    """(label, ep, link, stated bytes per chip, measured seconds, routing) of each normal row, both ways."""
    T, H, g = table["tokens_per_rank"], table["hidden"], table["gpus_per_node"]
    routed = Routed(
        top_k=table["top_k"], n_experts=table["experts"], low_latency=False, node_limit=table.get("top_k_groups", 0)
    )
    out = []
    for row in table["rows"]:
        ep = row["ep"]
        d_nodes, d_ranks = token_spread(routed, min(ep, g), max(1, ep // g))
        counted = d_ranks if row["link"] == "nvlink" else d_nodes  # per token, as DeepEP's test counts
        for way, b in (("dispatch", H * FP8_SCALED), ("combine", H * BF16)):
            out.append(
                (
                    f"{way} EP{ep}",
                    ep,
                    row["link"],
                    T * routed.top_k * b,
                    T * counted * b / (row[f"{way}_GBps"] * 1e9),
                    routed,
                )
            )
    return out


def _low_latency_rows(table) -> list[tuple[str, int, str, float, float, Routed]]:
    T, H = table["tokens_per_rank"], table["hidden"]
    routed = Routed(top_k=table["top_k"], n_experts=table["experts"], low_latency=True)
    out = []
    for row in table["rows"]:
        ep = row["ep"]
        link = "nvlink" if ep <= table["gpus_per_node"] else "infiniband"
        for way, b in (("dispatch", H + H / 128 * 4 + 16), ("combine", H * BF16)):
            out.append((f"{way} EP{ep}", ep, link, T * routed.top_k * b, row[f"{way}_us"] * 1e-6, routed))
    return out


def _grouped_rows(tables) -> list[tuple[str, str, tuple, float]]:
    out = []
    for name in GROUPED_TABLES:
        for row in tables[name]["rows"]:
            g, m, n, k = row["groups"], row["m_per_group"], row["n"], row["k"]
            out.append((name, f"{g} x m={m} n={n} k={k}", (g, m, n, k), 2.0 * g * m * n * k / (row["TFLOPS"] * 1e12)))
    return out


def _with(cluster: Cluster, **constants) -> Cluster:
    base = cluster.moe_kernels or MoeKernels(normal=(), low_latency=(), grouped_efficiency=1.0, grouped_half_rows=0.0)
    return replace(cluster, moe_kernels=replace(base, **constants, borrowed_from=None))


def _predict_routed(cluster: Cluster, rows) -> np.ndarray:
    return np.array([float(routed_seconds(cluster, routed, ep, data)) for _, ep, _, data, _, routed in rows])


# ---------------------------------------------------------------------------------------------
# The fit


def fit_moe(cluster: Cluster, tables: dict) -> MoeFit:
    """The `moe_kernels` constants of `cluster` fitted to `tables` (module docstring), with every
    row's residual and what the data do not identify."""
    levels = [level.name for level in cluster.topology.levels]
    nv, ib = levels[0], levels[-1]
    warnings: list[str] = []

    grouped = _grouped_rows(tables)
    fitted_grouped = [r for r in grouped if r[2][1] >= MIN_ROWS]
    measured = np.array([r[3] for r in fitted_grouped])

    def grouped_ratio(c):
        trial = _with(cluster, grouped_efficiency=c[0], grouped_half_rows=c[1])
        return (
            np.array([float(grouped_gemm_seconds(trial, *r[2], weight_bytes=1.0)) for r in fitted_grouped]) / measured
        )

    e_g, h_g = (
        round_constant(v)
        for v in minimise(
            grouped_ratio, ("fraction", "rows"), [(e, h) for e in (0.6, 0.8) for h in (16.0, 128.0, 512.0)]
        )
    )
    cluster = _with(cluster, grouped_efficiency=e_g, grouped_half_rows=h_g)
    smallest = min(r[2][1] for r in fitted_grouped)
    warnings.append(
        f"grouped_half_rows: the tables start at {smallest} rows per expert; below that (decode at "
        f"small batch) the curve e_g m / (m + h_g) is extrapolated, not measured"
    )
    warnings.append(
        "grouped_matmul_efficiency: fitted to fp8 tables only; other formats take the same share of "
        "their own peak (rule)"
    )

    out_rows = [
        MoeRow(
            table=name,
            label=label,
            measured_s=t,
            fitted=shape[1] >= MIN_ROWS,
            predicted_s=float(grouped_gemm_seconds(cluster, *shape, weight_bytes=1.0)),
        )
        for name, label, shape, t in grouped
    ]
    for table, rows_of, key in (
        ("deepep_low_latency", _low_latency_rows, "low_latency"),
        ("deepep_normal", _normal_rows, "normal"),
    ):
        rows = rows_of(tables[table])
        constants: list[tuple[str, float, float]] = []
        for level in (nv, ib):
            mine = [r for r in rows if r[2] == level]
            if not mine:
                warnings.append(f"{table}: no {level} rows; {level} keeps its collective constants")
                continue
            times = np.array([r[4] for r in mine])

            def ratio(c, level=level, mine=mine, times=times):
                trial = _with(cluster, **{key: tuple(constants) + ((level, c[0], c[1]),)})
                return _predict_routed(trial, mine) / times

            a, e = (
                round_constant(v)
                for v in minimise(ratio, ("latency", "fraction"), [(s, f) for s in (5e-6, 30e-6) for f in (0.4, 0.8)])
            )
            constants.append((level, a, e))
            if a == 0.0:
                warnings.append(f"{table}: {level} latency_s is at its bound (0)")
        cluster = _with(cluster, **{key: tuple(constants)})
        if table == "deepep_normal":
            warnings.append(
                "deepep_normal: every row moves 4096 tokens per GPU, so each level's fixed time and "
                "efficiency are told apart only by the dispatch (fp8) and combine (bf16) bytes: the "
                "fixed time is weakly identified"
            )
        predicted = _predict_routed(cluster, rows)
        out_rows += [
            MoeRow(table=table, label=r[0], measured_s=r[4], predicted_s=float(p), fitted=True)
            for r, p in zip(rows, predicted)
        ]
    return MoeFit(cluster=cluster, rows=tuple(out_rows), warnings=tuple(warnings))


def moe_yaml_block(fit: MoeFit, command: str) -> str:
    """The cluster file's `moe_kernels:` block for `fit`, with how it was made and its residuals."""
    m = fit.cluster.moe_kernels
    lines = [
        "moe_kernels:\n",
        f"  # Fitted by `{command}` (planner.commands.calibrate.moe);\n",
        "  # regenerate with that command, do not edit by hand.\n",
    ]
    for table in ("deepep_normal", "deepep_low_latency", *GROUPED_TABLES):
        errors = np.abs([r.error for r in fit.of(table) if r.fitted])
        if errors.size:
            lines.append(
                f"  # {table}: {errors.size} fitted rows: median |error| {100 * np.median(errors):.1f}%, "
                f"worst {100 * errors.max():.1f}%\n"
            )
    lines += [f"  # warning: {w}\n" for w in fit.warnings]
    for key, table in (("deepep_normal", m.normal), ("deepep_low_latency", m.low_latency)):
        lines.append(f"  {key}:\n")
        lines += [f"    {name}: {{latency_s: {a:g}, efficiency: {e:g}}}\n" for name, a, e in table]
    lines += [
        f"  grouped_matmul_efficiency: {m.grouped_efficiency:g}\n",
        f"  grouped_half_rows: {m.grouped_half_rows:g}\n",
    ]
    return "".join(lines)


def with_moe_block(text: str, block: str) -> str:
    """A cluster file's text with its `moe_kernels:` block (top level, up to the next top-level key)
    replaced by `block`, or `block` added before `source:` (or at the end)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("moe_kernels:")), None)
    if start is None:
        at = next((i for i, line in enumerate(lines) if line.startswith("source:")), len(lines))
        return "".join(lines[:at]) + block + "".join(lines[at:])
    end = start + 1
    while end < len(lines) and (lines[end].startswith((" ", "#")) or not lines[end].strip()):
        end += 1
    return "".join(lines[:start]) + block + "".join(lines[end:])
