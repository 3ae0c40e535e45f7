"""`planner calibrate` on a measurements file with row kinds (planner.commands.kernel_measurements):
the GPU calibration sets. Deterministic, in three stages, each constant fitted from the rows
that identify it and then held:

1. Network, from the `collective` rows (NCCL): the innermost switched level's five constants
   (`Calibration.levels[name]`: latency_s, step_latency_s, efficiency, bulk_latency_s,
   bulk_efficiency; planner.cost.network has the formula), and, where the level declares
   `in_switch_reduction`, its in-switch all-reduce's in_switch_latency_s and
   in_switch_efficiency, all together from the one-node rows; the next
   level's `latency_s` from the rows that span two nodes, with (a stated rule, since no row
   measures its bandwidth) the inner level's step latency and, as its one line, the inner level's
   bulk efficiency. Other implementations (TensorRT-LLM's
   custom all-reduce) are predicted and shown, not fitted: the planner models NCCL.
2. Matmuls, from the `gemm` rows of the chip's bf16 tables: `matmul_efficiency`,
   `hbm_efficiency` and `kernel_overhead_s` (t = max(F / (peak e), B / (HBM e_h)) + t0, per
   einsum). Then, those held, `narrow_matmul_efficiency` alone from the rows of formats whose
   peak is above the bf16 one (fp8: W8A8 at the fp8 peak, plus the dynamic quantisation of x
   where the row's kernel includes it): e at that peak (planner.cost.kernels.matmul_flop_per_s).
   In sequence, not jointly: the bf16 rows identify the HBM and per-kernel constants, shared by
   both formats, and the narrow rows' small-m (HBM-bound) half would otherwise pull them. A
   cluster without such rows takes it by a rule (`narrow_by_rule`): the value of a calibrated
   preset whose chip has the same peaks in every format (the same compute die at the same
   clocks: h200-sxm takes h100-sxm's, both GH100, shared/reference/hardware.yaml; calibrate
   h100-sxm first), else none (matmul_efficiency: not identified); a warning says which.
3. End to end, from the `latency`, `ttft` and `throughput` rows: `layer_overhead_s` (the fixed
   time per layer and step that the kernels above leave unexplained), the others held. It is the
   compute die's and the software's (launches, framework work), not the HBM's, so presets whose
   chips have the same peaks in every format share it (`_same_die_sets`: h100-sxm and h200-sxm,
   both GH100 at the same clocks, both sets TensorRT-LLM tables): fitted on the union of their
   shipped sets' end-to-end rows, each row predicted with its own preset's stage 1-2 constants
   (fitted from that preset's file in the same run), so either preset's calibration gives the
   same value. A file other than the preset's shipped set is fitted alone; a warning says which.
   `overlap` is held at 0 (the tables run NCCL and GEMM kernels back to back on one stream) and
   `weight_gather_efficiency` follows the network's (no row gathers weights).

Each stage minimises the robust loss of planner.commands.calibrate (Cauchy on log errors, scale
log 1.15) by the same projected Levenberg-Marquardt from a fixed grid of starts; the lowest cost
wins. A row whose weight format the planner lacks is predicted as nothing and listed as skipped.

End-to-end prediction of a fixed batch: the prefill pass of `input_tokens`, then output_tokens - 1
decode steps (the prefill's logits give the first token) with contexts input_tokens + 1 ..
input_tokens + output_tokens - 1, summed exactly step by step (planner.cost.request). ttft is the
prefill pass alone (sampling is not modelled). Layout: the row's tensor parallelism (ws1d FFN,
heads attention) on its `chips`, the fastest mesh grouping.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass, replace

import numpy as np

from planner.commands.calibrate import SIGNIFICANT, _levenberg_marquardt, robust_loss
from planner.commands.kernel_measurements import MODEL_KINDS, KernelMeasurements, Row, load_kernel_measurements
from planner.config import list_presets, load_cluster
from planner.config.presets import presets_dir
from planner.cost.costmodel import evaluate
from planner.cost.kernels import dynamic_quantisation_seconds, gemm_seconds
from planner.cost.network import kernel_collective_seconds
from planner.cost.request import decode_request
from planner.errors import ConfigError
from planner.search.search import candidates
from planner.specs.formats import Formats, KvFormat
from planner.specs.hardware import Cluster, Switched, WeightFormat
from planner.specs.plan import Phase, Plan, SearchSpace, Workload

LEVEL_CONSTANTS = ("latency_s", "step_latency_s", "efficiency", "bulk_latency_s", "bulk_efficiency")
IN_SWITCH_CONSTANTS = ("in_switch_latency_s", "in_switch_efficiency")
GEMM_CONSTANTS = ("matmul_efficiency", "hbm_efficiency", "kernel_overhead_s")
WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0}


@dataclass(frozen=True, kw_only=True)
class KernelResidual:
    row: Row
    predicted_s: float | None  # None: not predicted (see `why`)
    fitted: bool
    why: str = ""

    @property
    def error(self) -> float | None:
        return None if self.predicted_s is None else self.predicted_s / self.row.measured_s - 1.0


@dataclass(frozen=True, kw_only=True)
class KernelFit:
    cluster: Cluster
    residuals: tuple[KernelResidual, ...]
    warnings: tuple[str, ...]

    def of(self, *kinds: str) -> tuple[KernelResidual, ...]:
        return tuple(r for r in self.residuals if r.row.kind in kinds)


# ---------------------------------------------------------------------------------------------
# Predictions (each by the cost model itself)


def predict_all(cluster: Cluster, rows: list[Row]) -> np.ndarray:
    """`predict` of every row; collective rows of one kind and GPU count share one call (their
    lines are made once: a fit evaluates every row for each trial of its constants)."""
    out, groups = np.empty(len(rows)), {}
    for i, row in enumerate(rows):
        if row.kind == "collective":
            groups.setdefault((row["collective"], row["gpus"]), []).append(i)
        else:
            out[i] = predict(cluster, row)
    for (kind, gpus), members in groups.items():
        out[members] = kernel_collective_seconds(cluster, kind, np.array([rows[i]["bytes"] for i in members],
                                                                          dtype=float), gpus)
    return out


def predict(cluster: Cluster, row: Row) -> float:
    if row.kind == "collective":
        return float(kernel_collective_seconds(cluster, row["collective"], row["bytes"], row["gpus"]))
    if row.kind == "gemm":
        compute = row["dtype"] if row["dtype"] in cluster.chip.peak_flop_per_s else "bf16"
        seconds = gemm_seconds(cluster, row["m"], row["n"], row["k"], compute, WEIGHT_BYTES.get(row["dtype"], 2.0))
        if row.get("activation_quantisation") == "dynamic-per-tensor":
            seconds = seconds + dynamic_quantisation_seconds(cluster, row["m"] * row["k"])
        return float(seconds)
    return end_to_end(cluster, row)


def end_to_end(cluster: Cluster, row: Row, *, layer_overhead: bool = True) -> float:
    """A model row's time (module docstring): the fastest TP mesh grouping."""
    if not layer_overhead:
        cluster = replace(cluster, calibration=replace(cluster.calibration, layer_overhead_s=0.0))
    formats = row_formats(row)
    model, batch, inp = row.model, np.array([row["batch"]]), row["input_tokens"]
    out = row.get("output_tokens", 1)
    plan = Plan(model=model, cluster=cluster, workload=Workload(input_tokens=inp, output_tokens=max(out, 1), context=inp),
                space=SearchSpace(phases=(Phase.PREFILL,), chips=(row["chips"],), batches=(row["batch"],),
                                  weights=(formats.weights,), kv_cache=(formats.kv_cache,), ffn=(row.get("ffn", "ws1d"),),
                                  attention=(row.get("attention", "heads"),)))
    found = candidates(plan, Phase.PREFILL, chips=(row["chips"],))
    if not found:  # one chip: every layout is the same single-chip dataflow
        plan = replace(plan, space=replace(plan.space, ffn=("ws1d", "ws2d"), attention=("heads", "batch")))
        found = candidates(plan, Phase.PREFILL, chips=(row["chips"],))
    best = math.inf
    for c in found:
        t = float(evaluate(model, cluster, plan.workload, c, batch).latency_s[0])
        if row.kind != "ttft" and out > 1:
            d = replace(c, phase=Phase.DECODE)
            t += float(decode_request(model, cluster, inp, out - 1, d, batch).decode_s[0])
        best = min(best, t)
    return best


def row_formats(row: Row) -> Formats:
    """A model row's number formats: its weights (fp16 read as bf16; fp8: W8A8 at the fp8 peak)
    and its KV cache (bf16 when the row does not say)."""
    kv = row.get("kv_cache", "bf16")
    return Formats(weights=WeightFormat.parse(row["weights"]),
                   kv_cache=next(f for f in KvFormat if f.label == kv))


def _layer_steps(row: Row) -> int:
    """Layers x steps of a model row: what layer_overhead_s multiplies."""
    steps = 1 if row.kind == "ttft" else row.get("output_tokens", 1)
    return row.model.n_layers * steps


# ---------------------------------------------------------------------------------------------
# The fit


def _unconstrained(value: float, kind: str) -> float:
    return math.log(value / (1 - value)) if kind == "fraction" else math.log(value / 1e-6)


def _constrained(u: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    frac = np.array([k == "fraction" for k in kinds])
    return np.where(frac, 1.0 / (1.0 + np.exp(-u)), 1e-6 * np.exp(u))


def _minimise(loss_residual, kinds: tuple[str, ...], starts) -> np.ndarray:
    """Robust fit over constants of `kinds` ('fraction' or 'latency') from each start; the best."""
    lower = np.array([-12.0 if k == "fraction" else -16.0 for k in kinds])
    upper = -lower

    def residual(u):
        if u.ndim == 2:
            return np.stack([residual(u[:, j]) for j in range(u.shape[1])], axis=1)
        r = np.log(loss_residual(_constrained(u, kinds)))
        return np.sign(r) * np.sqrt(robust_loss(r))

    found = [_levenberg_marquardt(residual, np.clip([_unconstrained(v, k) for v, k in zip(s, kinds)], lower, upper),
                                  lower, upper) for s in starts]
    return _constrained(min(found, key=lambda p: p[1])[0], kinds)


def _round(x: float) -> float:
    return 0.0 if x < 1e-10 else float(f"{x:.{SIGNIFICANT}g}")


def _kernel_stages(cluster: Cluster, data: KernelMeasurements):
    """Stages 1 and 2 (module docstring): (the cluster with its network and matmul constants,
    warnings, the rows they were fitted to)."""
    if not isinstance(cluster.topology, Switched):
        raise ConfigError(f"{cluster.name} is not a switched (GPU) cluster: kernel rows calibrate NVLink and "
                          "InfiniBand levels", file=data.file)
    warnings: list[str] = []
    cal = replace(cluster.calibration, overlap=0.0)
    levels = cluster.topology.levels
    nccl = [r for r in data.of("collective") if r["implementation"] == "nccl"]
    inner = [r for r in nccl if r["nodes"] == 1]
    outer = [r for r in nccl if r["nodes"] > 1]
    level_cal: dict[str, dict[str, float]] = {}
    if inner:
        names, kinds = LEVEL_CONSTANTS, ("latency", "latency", "fraction", "latency", "fraction")
        starts = [(a, 0.5e-6, e, b, 0.8) for a in (3e-6, 8e-6) for e in (0.3, 0.6) for b in (20e-6, 60e-6)]
        if levels[0].in_switch_reduction:  # its all-reduce's third line, fitted with the others
            names, kinds = names + IN_SWITCH_CONSTANTS, kinds + ("latency", "fraction")
            starts = [s + (c, 0.5) for s in starts for c in (20e-6, 60e-6)]

        def times(c):
            trial = replace(cluster, calibration=replace(cal, levels={levels[0].name: dict(zip(names, c))}))
            return predict_all(trial, inner) / np.array([r.measured_s for r in inner])

        best = _minimise(times, kinds, starts)
        level_cal[levels[0].name] = {k: _round(v) for k, v in zip(names, best)}
    else:
        warnings.append(f"no one-node collective rows: the {levels[0].name} constants are not identified (ideal)")
    if len(levels) > 1:
        # rule: one line (no bulk pair) at the inner level's step latency and bulk efficiency
        got = level_cal.get(levels[0].name, {})
        base = {"latency_s": got["latency_s"], "step_latency_s": got["step_latency_s"],
                "efficiency": got["bulk_efficiency"]} if got else {}
        if outer and base:
            def times_outer(c):
                trial = replace(cluster, calibration=replace(cal, levels={**level_cal, levels[1].name: {**base, "latency_s": c[0]}}))
                return predict_all(trial, outer) / np.array([r.measured_s for r in outer])
            base["latency_s"] = _round(_minimise(times_outer, ("latency",), [(10e-6,), (40e-6,)])[0])
            warnings.append(f"{levels[1].name}: only latency_s is fitted ({len(outer)} two-node rows, small "
                            f"messages); its step latency is {levels[0].name}'s and its efficiency {levels[0].name}'s bulk efficiency (rule)")
        elif base:
            warnings.append(f"{levels[1].name}: no two-node rows; its latencies are {levels[0].name}'s and its efficiency "
                            f"{levels[0].name}'s bulk efficiency (rule: not identified by this data)")
        if base:
            level_cal[levels[1].name] = base
    cal = replace(cal, levels=level_cal)
    gemms = [r for r in data.of("gemm") if r["dtype"] == "bf16"]
    narrow_gemms = [r for r in data.of("gemm") if _narrow(cluster, r["dtype"])]
    if gemms:
        def gemm_times(c):
            trial = replace(cluster, calibration=replace(cal, **dict(zip(GEMM_CONSTANTS, c))))
            return np.array([predict(trial, r) for r in gemms]) / np.array([r.measured_s for r in gemms])
        best = _minimise(gemm_times, ("fraction", "fraction", "latency"),
                         [(e, h, t) for e in (0.6, 0.9) for h in (0.7, 0.95) for t in (2e-6, 10e-6)])
        cal = replace(cal, **{k: (1.0 if v > 1 - 5e-5 else _round(v)) for k, v in zip(GEMM_CONSTANTS, best)})
    else:
        warnings.append("no bf16 gemm rows: matmul_efficiency, hbm_efficiency and kernel_overhead_s are not identified")
    if narrow_gemms:
        def narrow_times(c):
            trial = replace(cluster, calibration=replace(cal, narrow_matmul_efficiency=float(c[0])))
            return predict_all(trial, narrow_gemms) / np.array([r.measured_s for r in narrow_gemms])
        e = _minimise(narrow_times, ("fraction",), [(0.5,), (0.8,)])[0]
        cal = replace(cal, narrow_matmul_efficiency=1.0 if e > 1 - 5e-5 else _round(e))
    elif any(peak > cluster.chip.peak_bf16_flop_per_s for peak in cluster.chip.peak_flop_per_s.values()):
        value, why = narrow_by_rule(cluster)
        cal = replace(cal, narrow_matmul_efficiency=value)
        warnings.append(why)
    return replace(cluster, calibration=cal), warnings, (inner, outer, gemms, narrow_gemms)


def fit(cluster: Cluster, data: KernelMeasurements) -> KernelFit:
    fitted, warnings, (inner, outer, gemms, narrow_gemms) = _kernel_stages(cluster, data)
    usable, skipped = _model_rows(cluster, data)
    if skipped:
        warnings.append(f"{len(skipped)} end-to-end rows not predicted: {cluster.chip.name} has no peak for "
                        f"{', '.join(sorted({r['weights'] for r in skipped}))} weights in this planner")
    same_die, shared = _same_die_sets(cluster, data)
    sets = sorted([(cluster.name, fitted, usable)] + (shared or []), key=lambda s: s[0])  # one order for all
    if shared:
        warnings.append(f"layer_overhead_s: shared with {', '.join(same_die)} (rule: the same peaks in every format, "
                        "the same compute die and clocks), fitted on the end-to-end rows of every such "
                        f"shipped set ({', '.join(f'{n} {len(rows)}' for n, _, rows in sets)} rows), each predicted "
                        "with its own preset's other constants")
    elif same_die:
        warnings.append(f"layer_overhead_s: fitted on this file's rows alone (the shipped {cluster.name} preset shares "
                        f"it with {', '.join(same_die)}, the same compute die; another file may be other software)")
    joined = [(c, r) for _, c, rows in sets for r in rows]
    if joined:
        base_s = np.array([end_to_end(c, r, layer_overhead=False) for c, r in joined])
        per = np.array([_layer_steps(r) for _, r in joined], dtype=float)
        measured = np.log([r.measured_s for _, r in joined])
        grid = np.concatenate([[0.0], np.geomspace(1e-7, 2e-3, 4000)])
        cost = [float(np.sum(robust_loss(np.log(base_s + per * t) - measured))) for t in grid]
        t = float(grid[int(np.argmin(cost))])
        fitted = replace(fitted, calibration=replace(fitted.calibration, layer_overhead_s=_round(t)))
        if t == 0.0:
            warnings.append("layer_overhead_s is at its bound (0): the kernels alone already over-predict")
    else:
        warnings.append("no end-to-end rows the planner can predict: layer_overhead_s is not identified (0)")
    for name in GEMM_CONSTANTS + ("narrow_matmul_efficiency",):
        value = getattr(fitted.calibration, name)
        if value in (0.0, 1.0) and (narrow_gemms if name == "narrow_matmul_efficiency" else gemms):
            warnings.append(f"{name} is at the bound of its range ({value:g})")
    residuals = []
    fitted_ids = {id(r) for r in inner + outer + gemms + narrow_gemms + usable}
    for r in data.rows:
        if any(r is s for s in skipped):
            residuals.append(KernelResidual(row=r, predicted_s=None, fitted=False, why=f"no {r['weights']} peak"))
            continue
        fitted_row = id(r) in fitted_ids
        why = "" if fitted_row else ("not NCCL: shown, not fitted" if r.kind == "collective" else
                                     f"{r.get('dtype')}: shown, not fitted")
        residuals.append(KernelResidual(row=r, predicted_s=predict(fitted, r), fitted=fitted_row, why=why))
    return KernelFit(cluster=fitted, residuals=tuple(residuals), warnings=tuple(warnings))


def _model_rows(cluster: Cluster, data: KernelMeasurements) -> tuple[list[Row], list[Row]]:
    """(end-to-end rows the planner can predict on `cluster`, rows it cannot: no peak for their weights)."""
    usable, skipped = [], []
    for r in data.of(*MODEL_KINDS):
        try:
            (usable if cluster.chip.supports(row_formats(r)) else skipped).append(r)
        except (ValueError, StopIteration):
            skipped.append(r)
    return usable, skipped


def _same_die(a: Cluster, b: Cluster) -> bool:
    """The same dense and sparse peaks in every format: the same compute die at the same clocks."""
    return (a.chip.peak_flop_per_s == b.chip.peak_flop_per_s
            and a.chip.sparse_peak_flop_per_s == b.chip.sparse_peak_flop_per_s)


def _same_die_sets(cluster: Cluster, data: KernelMeasurements) -> tuple[list[str], list | None]:
    """The rule for layer_overhead_s (stage 3): the fixed time per layer and step is kernel launches
    and framework work on the compute die, not HBM or network time, so presets whose chips have the
    same peaks in every format (`_same_die`: h100-sxm and h200-sxm, both GH100) share it, fitted on
    the union of their shipped calibration sets' end-to-end rows, each row predicted with its own
    preset's stage 1-2 constants (fitted here from its file, so either preset's calibration gives
    the same value). Only the shipped set of a preset is joined (`data` is
    configs/measurements/<cluster>.yaml): a user's file may come from other software and is
    fitted alone. (the other presets of that die with a shipped set, [(preset, its cluster with
    stage 1-2 constants, its usable end-to-end rows)] or None where `data` is not the shipped set)."""
    folder = presets_dir() / "measurements"
    own = folder / f"{cluster.name}.yaml"
    others = [other for other in (load_cluster(name) for name in list_presets("clusters")
                                  if name != cluster.name and (folder / f"{name}.yaml").is_file())
              if _same_die(other, cluster)]
    if not others or not (own.is_file() and Path(data.file).resolve() == own.resolve()):
        return [o.name for o in others], None
    sets = []
    for other in others:
        other_data = load_kernel_measurements(str(folder / f"{other.name}.yaml"))
        sets.append((other.name, _kernel_stages(other, other_data)[0], _model_rows(other, other_data)[0]))
    return [o.name for o in others], sets


def _narrow(cluster: Cluster, dtype: str) -> bool:
    """True for a GEMM row whose format runs at a peak above the chip's bf16 one."""
    return cluster.chip.peak_flop_per_s.get(dtype, 0.0) > cluster.chip.peak_bf16_flop_per_s


def narrow_by_rule(cluster: Cluster) -> tuple[float | None, str]:
    """(narrow_matmul_efficiency, the warning saying why) for a cluster without narrow-format GEMM
    rows: the value of the first calibrated preset (by name; fitted, not borrowed) that gives one
    and whose chip has the same dense and sparse peaks in every format (the same compute die at
    the same clocks), else None (matmul_efficiency: not identified)."""
    for name in list_presets("clusters"):
        if name == cluster.name:
            continue
        other = load_cluster(name)
        if other.calibrated and other.calibration.narrow_matmul_efficiency is not None and _same_die(other, cluster):
            value = other.calibration.narrow_matmul_efficiency
            return value, (f"narrow_matmul_efficiency: no gemm rows above the bf16 peak; {name}'s fitted {value:g} "
                           f"(rule: {name}'s chip has the same peaks in every format, the same compute die and clocks)")
    return None, ("narrow_matmul_efficiency: not identified (no gemm rows above the bf16 peak, no calibrated preset "
                  "with this chip's peaks): matmul_efficiency (rule)")


def summary(residuals) -> tuple[float, float, int]:
    """(median |error|, worst |error|, rows) over residuals with a prediction."""
    errors = np.abs([r.error for r in residuals if r.error is not None])
    if not errors.size:
        return float("nan"), float("nan"), 0
    return float(np.median(errors)), float(errors.max()), int(errors.size)

