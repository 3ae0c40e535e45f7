"""`planner calibrate` on a measurements file with row kinds (planner.config.kernel_measurements):
the GPU calibration sets. Deterministic, in three stages, each constant fitted from the rows
that identify it and then held:

1. Network, from the `collective` rows (NCCL; planner.commands.calibrate.network): the innermost
   switched level's five constants (`Calibration.levels[name]`: latency_s, step_latency_s,
   efficiency, bulk_latency_s, bulk_efficiency; planner.cost.network has the formula), and, where
   the level declares `in_switch_reduction`, its in-switch all-reduce's in_switch_latency_s and
   in_switch_efficiency, all together from the one-node rows; the next level's `latency_s` from
   the rows that span two nodes, with (a stated rule, since no row measures its bandwidth) the
   inner level's step latency and, as its one line, the inner level's bulk efficiency. A file
   without two-node rows takes that latency_s by a rule (`outer_latency_by_rule`): the value
   fitted from the two-node rows of another preset's shipped set (h100-sxm's: NCCL's cross-node
   latency is the NIC and proxy path, not the GPU), refitted from that file in the same run.
   Other implementations (TensorRT-LLM's custom all-reduce) are predicted and shown, not fitted:
   the planner models NCCL.
2. Matmuls, from the `gemm` rows of the chip's bf16 tables: `matmul_efficiency`,
   `hbm_efficiency`, `kernel_overhead_s` and `matmul_half_rows` (t = max(F (1 + m_h / m) /
   (peak e), B / (HBM e_h)) + t0, per einsum: a matmul of m rows runs at e m / (m + m_h), the
   efficiency curve in the per-chip matmul size below the large-GEMM rate). Then, those held, `narrow_matmul_efficiency` alone from the rows of formats whose
   peak is above the bf16 one (fp8: W8A8 at the fp8 peak, plus the dynamic quantisation of x
   where the row's kernel includes it): e at that peak (planner.cost.kernels.matmul_flop_per_s).
   In sequence, not jointly: the bf16 rows identify the HBM and per-kernel constants, shared by
   both formats, and the narrow rows' small-m (HBM-bound) half would otherwise pull them. A
   cluster without such rows takes it by a rule (`narrow_by_rule`): the value of a calibrated
   preset whose chip has the same peaks in every format (the same compute die at the same
   clocks: h200-sxm takes h100-sxm's, both GH100, shared/reference/hardware.yaml; calibrate
   h100-sxm first), else none (matmul_efficiency: not identified); a warning says which.
3. End to end, from the `latency`, `ttft` and `throughput` rows: `layer_overhead_s` (the fixed
   time per layer and step that the kernels above leave unexplained) and `token_overhead_s` (the
   fixed time per token and layer: the per-token work outside the matmuls and the attention core,
   norms, activations, residual adds, rotary, quantisation, sampling, for every token a chip
   holds), together, the others held; both enter every row linearly (layers x steps, and layers x
   tokens: batch x input_tokens for the prefill pass, batch per decode step; tensor parallelism
   repeats them on every GPU, which the A100 set's TP 2-8 rows confirm: spreading them over the
   GPUs instead fits those rows worse, median 4.6% against 3.0%, worst 25% against 16%). They are the
   compute die's and the software's (launches, framework work), not the HBM's, so presets whose
   chips have the same peaks in every format share them (`_same_die_sets`: h100-sxm and h200-sxm,
   both GH100 at the same clocks, both sets TensorRT-LLM tables): fitted on the union of their
   shipped sets' end-to-end rows, each row predicted with its own preset's stage 1-2 constants
   (fitted from that preset's file in the same run), so either preset's calibration gives the
   same values. A file other than the preset's shipped set is fitted alone; a warning says which.
   `overlap` is held at 0 (the tables run NCCL and GEMM kernels back to back on one stream), and
   no row gathers weights, so a weight all-gather over a level is priced with the level's fitted
   constants, like any all-gather there (planner.cost.network; a warning says so).

Each stage minimises the robust loss of planner.commands.calibrate.fit (Cauchy on log errors, scale
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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from planner.commands.calibrate.network import collective_times, minimise, network_stage, round_constant, shipped_sets
from planner.config.kernel_measurements import MODEL_KINDS, KernelMeasurements, Row, load_kernel_measurements
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

GEMM_CONSTANTS = ("matmul_efficiency", "hbm_efficiency", "kernel_overhead_s", "matmul_half_rows")
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
    """`predict` of every row; collective rows by `collective_times` (one call per kind and GPU count)."""
    out = np.empty(len(rows))
    collective = [i for i, row in enumerate(rows) if row.kind == "collective"]
    for i, row in enumerate(rows):
        if row.kind != "collective":
            out[i] = predict(cluster, row)
    if collective:
        out[collective] = collective_times(cluster, [rows[i] for i in collective])
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
        cluster = replace(cluster, calibration=replace(cluster.calibration, layer_overhead_s=0.0, token_overhead_s=0.0))
    formats = row_formats(row)
    model, batch, inp = row.model, np.array([row["batch"]]), row["input_tokens"]
    out = row.get("output_tokens", 1)
    plan = Plan(
        model=model,
        cluster=cluster,
        workload=Workload(input_tokens=inp, output_tokens=max(out, 1), context=inp),
        space=SearchSpace(
            phases=(Phase.PREFILL,),
            chips=(row["chips"],),
            batches=(row["batch"],),
            weights=(formats.weights,),
            kv_cache=(formats.kv_cache,),
            ffn=(row.get("ffn", "ws1d"),),
            attention=(row.get("attention", "heads"),),
        ),
    )
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
    return Formats(weights=WeightFormat.parse(row["weights"]), kv_cache=next(f for f in KvFormat if f.label == kv))


def _layer_steps(row: Row) -> int:
    """Layers x steps of a model row: what layer_overhead_s multiplies."""
    steps = 1 if row.kind == "ttft" else row.get("output_tokens", 1)
    return row.model.n_layers * steps


def _layer_tokens(row: Row) -> int:
    """Layers x tokens per chip of a model row: what token_overhead_s multiplies (the prefill
    pass's batch x input_tokens, then batch per decode step; the rows' tensor parallelism holds
    every token on every GPU)."""
    decode_steps = 0 if row.kind == "ttft" else row.get("output_tokens", 1) - 1
    return row.model.n_layers * row["batch"] * (row["input_tokens"] + decode_steps)


# ---------------------------------------------------------------------------------------------
# The fit


def _kernel_stages(cluster: Cluster, data: KernelMeasurements):
    """Stages 1 and 2 (module docstring): (the cluster with its network and matmul constants,
    warnings, the rows they were fitted to)."""
    if not isinstance(cluster.topology, Switched):
        raise ConfigError(
            f"{cluster.name} is not a switched (GPU) cluster: kernel rows calibrate NVLink and InfiniBand levels",
            file=data.file,
        )
    level_cal, warnings, inner, outer = network_stage(cluster, data)
    cal = replace(cluster.calibration, overlap=0.0, levels=level_cal)
    gemms = [r for r in data.of("gemm") if r["dtype"] == "bf16"]
    narrow_gemms = [r for r in data.of("gemm") if _narrow(cluster, r["dtype"])]
    if gemms:

        def gemm_times(c):
            trial = replace(cluster, calibration=replace(cal, **dict(zip(GEMM_CONSTANTS, c))))
            return np.array([predict(trial, r) for r in gemms]) / np.array([r.measured_s for r in gemms])

        best = minimise(
            gemm_times,
            ("fraction", "fraction", "latency", "rows"),
            [(e, h, t, m) for e in (0.6, 0.9) for h in (0.7, 0.95) for t in (2e-6, 10e-6) for m in (4.0, 64.0)],
        )
        best[3] = 0.0 if best[3] < 1e-3 else best[3]  # rows: below a thousandth of a row, at the bound
        cal = replace(
            cal,
            **{
                k: (1.0 if k.endswith("efficiency") and v > 1 - 5e-5 else round_constant(v))
                for k, v in zip(GEMM_CONSTANTS, best)
            },
        )
    else:
        warnings.append(
            "no bf16 gemm rows: matmul_efficiency, hbm_efficiency, kernel_overhead_s and "
            "matmul_half_rows are not identified"
        )
    if narrow_gemms:

        def narrow_times(c):
            trial = replace(cluster, calibration=replace(cal, narrow_matmul_efficiency=float(c[0])))
            return predict_all(trial, narrow_gemms) / np.array([r.measured_s for r in narrow_gemms])

        e = minimise(narrow_times, ("fraction",), [(0.5,), (0.8,)])[0]
        cal = replace(cal, narrow_matmul_efficiency=1.0 if e > 1 - 5e-5 else round_constant(e))
    elif any(peak > cluster.chip.peak_bf16_flop_per_s for peak in cluster.chip.peak_flop_per_s.values()):
        value, why = narrow_by_rule(cluster)
        cal = replace(cal, narrow_matmul_efficiency=value)
        warnings.append(why)
    return replace(cluster, calibration=cal), warnings, (inner, outer, gemms, narrow_gemms)


def fit(cluster: Cluster, data: KernelMeasurements) -> KernelFit:
    fitted, warnings, (inner, outer, gemms, narrow_gemms) = _kernel_stages(cluster, data)
    usable, skipped = _model_rows(cluster, data)
    if skipped:
        warnings.append(
            f"{len(skipped)} end-to-end rows not predicted: {cluster.chip.name} has no peak for "
            f"{', '.join(sorted({r['weights'] for r in skipped}))} weights in this planner"
        )
    same_die, shared = _same_die_sets(cluster, data)
    sets = sorted([(cluster.name, fitted, usable)] + (shared or []), key=lambda s: s[0])  # one order for all
    if shared:
        warnings.append(
            f"layer_overhead_s and token_overhead_s: shared with {', '.join(same_die)} (rule: the same peaks in every format, "
            "the same compute die and clocks), fitted on the end-to-end rows of every such "
            f"shipped set ({', '.join(f'{n} {len(rows)}' for n, _, rows in sets)} rows), each predicted "
            "with its own preset's other constants"
        )
    elif same_die:
        warnings.append(
            f"layer_overhead_s and token_overhead_s: fitted on this file's rows alone (the shipped "
            f"{cluster.name} preset shares them with {', '.join(same_die)}, the same compute die; another file may be other software)"
        )
    joined = [(c, r) for _, c, rows in sets for r in rows]
    if joined:
        base_s = np.array([end_to_end(c, r, layer_overhead=False) for c, r in joined])
        per = np.array([_layer_steps(r) for _, r in joined], dtype=float)
        tokens = np.array([_layer_tokens(r) for _, r in joined], dtype=float)
        measured = np.array([r.measured_s for _, r in joined])
        ratio = lambda c: (base_s + per * c[0] + tokens * c[1]) / measured  # noqa: E731
        found = minimise(ratio, ("latency", "latency"), [(t, k) for t in (3e-5, 1e-4) for k in (1e-8, 3e-7)])
        t, k = (round_constant(float(v)) for v in found)
        fitted = replace(fitted, calibration=replace(fitted.calibration, layer_overhead_s=t, token_overhead_s=k))
        if k and all(r["chips"] == 1 for _, r in joined):
            warnings.append(
                "token_overhead_s: every end-to-end row runs on one GPU, so how the per-token time "
                "splits over a tensor-parallel group is not identified (rule: each chip pays it for "
                "every token it holds, repeated across tensor parallelism, as the a100-80gb set's "
                "TP 2-8 rows show)"
            )
        for name, value in (("layer_overhead_s", t), ("token_overhead_s", k)):
            if value == 0.0:
                warnings.append(f"{name} is at its bound (0): the kernels and the other overhead already over-predict")
    else:
        warnings.append(
            "no end-to-end rows the planner can predict: layer_overhead_s and token_overhead_s are not identified (0)"
        )
    for name in GEMM_CONSTANTS + ("narrow_matmul_efficiency",):
        value = getattr(fitted.calibration, name)
        if value in (0.0, 1.0) and (narrow_gemms if name == "narrow_matmul_efficiency" else gemms):
            warnings.append(f"{name} is at the bound of its range ({value:g})")
    if fitted.calibration.levels:  # no row gathers weights: the levels' own lines price them (network.py)
        warnings.append(
            "weight_gather_efficiency: no row gathers weights; a weight all-gather over "
            f"{' and '.join(fitted.calibration.levels)} is priced like any all-gather there, with "
            "the level's fitted constants (rule; a level's own weight_gather_efficiency would replace it)"
        )
    residuals = []
    fitted_ids = {id(r) for r in inner + outer + gemms + narrow_gemms + usable}
    for r in data.rows:
        if any(r is s for s in skipped):
            residuals.append(KernelResidual(row=r, predicted_s=None, fitted=False, why=f"no {r['weights']} peak"))
            continue
        fitted_row = id(r) in fitted_ids
        why = (
            ""
            if fitted_row
            else ("not NCCL: shown, not fitted" if r.kind == "collective" else f"{r.get('dtype')}: shown, not fitted")
        )
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
    return (
        a.chip.peak_flop_per_s == b.chip.peak_flop_per_s
        and a.chip.sparse_peak_flop_per_s == b.chip.sparse_peak_flop_per_s
    )


def _same_die_sets(cluster: Cluster, data: KernelMeasurements) -> tuple[list[str], list | None]:
    """The rule for layer_overhead_s (stage 3): the fixed time per layer and step is kernel launches
    and framework work on the compute die, not HBM or network time, so presets whose chips have the
    same peaks in every format (`_same_die`: h100-sxm and h200-sxm, both GH100) share it, fitted on
    the union of their shipped calibration sets' end-to-end rows, each row predicted with its own
    preset's stage 1-2 constants (fitted here from its file, so either preset's calibration gives
    the same value). Only the shipped set of a preset is joined (`data` is
    configs/measurements/<cluster>.yaml, or a file with its data): a user's file may come from
    other software and is fitted alone. (the other presets of that die with a shipped set,
    [(preset, its cluster with stage 1-2 constants, its usable end-to-end rows)] or None where
    `data` is not the shipped set)."""
    own = presets_dir() / "measurements" / f"{cluster.name}.yaml"
    others = [(name, other, path) for name, other, path in shipped_sets(cluster) if _same_die(other, cluster)]
    names = [name for name, _, _ in others]
    if not others or not (own.is_file() and _same_file(Path(data.file), own)):
        return names, None
    sets = []
    for name, other, path in others:
        other_data = load_kernel_measurements(str(path))
        sets.append((name, _kernel_stages(other, other_data)[0], _model_rows(other, other_data)[0]))
    return names, sets


def _same_file(path: Path, shipped: Path) -> bool:
    """`path` is the shipped set: the same file, or one with the same data (a checkout's configs/
    while an installed planner ships its own copy; comments and layout aside)."""
    try:
        if path.resolve() == shipped.resolve() or path.read_bytes() == shipped.read_bytes():
            return True
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader) == yaml.load(
            shipped.read_text(encoding="utf-8"), Loader=loader
        )
    except (OSError, yaml.YAMLError):
        return False


def _narrow(cluster: Cluster, dtype: str) -> bool:
    """True for a GEMM row whose format runs at a peak above the chip's bf16 one."""
    return cluster.chip.peak_flop_per_s.get(dtype, 0.0) > cluster.chip.peak_bf16_flop_per_s


def narrow_by_rule(cluster: Cluster) -> tuple[float | None, str]:
    """(narrow_matmul_efficiency, the warning saying why) for a cluster without narrow-format GEMM
    rows: the value fitted to the narrow-format GEMM rows of the first preset (by name) whose
    shipped calibration set has them and whose chip has the same dense and sparse peaks in every
    format (the same compute die at the same clocks), refitted here from that set (not read from
    its preset, so the presets regenerate in any order); else None (matmul_efficiency: not
    identified)."""
    for name, other, path in shipped_sets(cluster):
        if not _same_die(other, cluster):
            continue
        other_data = load_kernel_measurements(str(path))
        rows = [r for r in other_data.of("gemm") if _narrow(other, r["dtype"])]
        if not rows:
            continue
        value = _kernel_stages(other, other_data)[0].calibration.narrow_matmul_efficiency
        return value, (
            f"narrow_matmul_efficiency: no gemm rows above the bf16 peak; {name}'s {value:g}, fitted to "
            f"the {len(rows)} such rows of configs/measurements/{name}.yaml (rule: {name}'s chip has "
            "the same peaks in every format, the same compute die and clocks)"
        )
    return None, (
        "narrow_matmul_efficiency: not identified (no gemm rows above the bf16 peak, no calibration set of "
        "a chip with this chip's peaks that has them): matmul_efficiency (rule)"
    )


def summary(residuals) -> tuple[float, float, int]:
    """(median |error|, worst |error|, rows) over residuals with a prediction."""
    errors = np.abs([r.error for r in residuals if r.error is not None])
    if not errors.size:
        return float("nan"), float("nan"), 0
    return float(np.median(errors)), float(errors.max()), int(errors.size)
