"""Engine profiles fitted to the serving set (`planner calibrate` on a `planner-serving/1` file).

Per engine (sglang: SGLang and Dynamo over SGLang; trtllm: TensorRT-LLM and Dynamo over it), the
profile's fixed time per layer and its overlap are fitted by least squares on log TPOT over the
engine's steady H200 runs without speculation (the decode step is what a step's fixed times set;
TTFT and throughput are checked, not fitted), with every chip constant the cluster file's. The
fixed time per token is held at the cluster file's static-batch fit, which TTFT rows identify:
decode rows (a few tokens per chip) cannot tell it from the time per layer, and fitted there it
would be carried by prefill's thousands of tokens per chip (a first fit that freed it put the whole
fixed time in it, 250 ns, and slowed GPU prefill 15-18%). A profile fitted on H200 applies to every
GPU as it is (planner.specs.engine). A cluster whose calibration is borrowed (MI300X borrows
H100's) and that has steady runs of its own then gets CHIP_REFIT refitted to their TPOT with its
engine's fitted profile (planner.commands.calibrate.refine_serving), from the borrowed values; the
cluster file ships them in its calibration block and every other constant stays borrowed.
Then the mean accepted length of DeepSeek's MTP is fitted on the MTP runs (both engines, each
with its fitted profile), at MTP_DRAFT_TOKENS draft tokens per step. Deterministic: the same
solver as every calibration stage (planner.commands.calibrate.solver), from fixed starts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.commands.calibrate.serving import (
    ServingAssessment,
    Speculation,
    assess_serving,
    engine_of,
    predict_steady,
)
from planner.commands.calibrate.solver import levenberg_marquardt
from planner.config.engines import load_engine
from planner.config.serving_runs import ServingMeasurements
from planner.specs.engine import EngineProfile

FITTED_ENGINES = ("sglang", "trtllm")
# what decode TPOT identifies of a chip: the HBM bandwidth its kernels reach and the fixed time per
# kernel (the engine's fixed times are the profile's, fitted on H200)
CHIP_REFIT = ("hbm_efficiency", "kernel_overhead_s")
FIT_CLUSTER = "h200-sxm"
# DeepSeek MTP as InferenceX's recipes run it: 3 draft tokens a step (SGLang speculative-num-steps
# 3, TensorRT-LLM num_nextn_predict_layers 3); an assumption, the rows do not record it
MTP_DRAFT_TOKENS = 3
# parameter scales and boxes: layer_overhead_s in microseconds, token_overhead_s in nanoseconds
_SCALE = np.array([1e-6, 1e-9, 1.0])
_LOWER, _UPPER = np.array([0.0, 0.0, 0.0]), np.array([500.0, 1000.0, 1.0])
_START = np.array([86.24, 124.3, 0.0])  # the GPU presets' static-batch constants
_NAMES = ("layer_overhead_s", "token_overhead_s", "overlap")


@dataclass(frozen=True, kw_only=True)
class EngineFit:
    profile: EngineProfile
    rows: int
    median_error: float  # |TPOT error| over the fitted rows
    worst_error: float
    warnings: tuple[str, ...]


def profile_of(name: str, u: np.ndarray, rows: int, source: str = "", digits: bool = True) -> EngineProfile:
    """The profile of parameters u; `digits`: rounded to 4 significant digits, as shipped."""
    values = u * _SCALE
    return EngineProfile(
        name=name,
        source=source or f"fitted by `planner calibrate configs/measurements/serving.yaml` to {rows} steady H200 runs",
        **{k: float(f"{v:.4g}") if digits else float(v) for k, v in zip(_NAMES, values, strict=True)},
    )


def _bounds() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, lower, upper): token_overhead_s held (lower = upper) at the fit cluster's value."""
    from planner.config import load_cluster

    token = load_cluster(FIT_CLUSTER).calibration.token_overhead_s / _SCALE[1]
    start, lower, upper = _START.copy(), _LOWER.copy(), _UPPER.copy()
    start[1] = lower[1] = upper[1] = token
    return start, lower, upper


def fit_engine(data: ServingMeasurements, name: str) -> EngineFit:
    runs = [
        r
        for r in data.runs
        if r.steady and r.kind == "steady" and engine_of(r) == name and r.cluster.name == FIT_CLUSTER
    ]

    def residual(u: np.ndarray) -> np.ndarray:
        if u.ndim == 2:
            return np.stack([residual(u[:, j]) for j in range(u.shape[1])], axis=1)
        profile = profile_of(name, u, len(runs), "trial", digits=False)
        return np.array([np.log(predict_steady(r, profile).predicted["tpot_s"] / r.tpot_s) for r in runs])

    start, lower, upper = _bounds()
    u, _ = levenberg_marquardt(residual, start, lower, upper, max_iterations=40)
    profile = profile_of(name, u, len(runs))
    errors = np.abs(np.exp(residual(u)) - 1.0)
    return EngineFit(
        profile=profile,
        rows=len(runs),
        median_error=float(np.median(errors)),
        worst_error=float(errors.max()),
        warnings=(
            f"token_overhead_s held at {FIT_CLUSTER}'s static-batch fit ({u[1] * _SCALE[1]:.4g} s): "
            "decode TPOT does not tell it from the time per layer",
            *_warnings(residual, u),
        ),
    )


def _warnings(residual, u: np.ndarray) -> tuple[str, ...]:
    """A constant at a bound of its range, or two the data cannot tell apart (Jacobian columns
    nearly parallel): what the data do not identify."""
    h = 1e-3 * (1.0 + np.abs(u))
    jac = (residual(u[:, None] + np.diag(h)) - residual(u)[:, None]) / h
    out = []
    _, lower, upper = _bounds()
    for i, name in enumerate(_NAMES):
        if lower[i] == upper[i]:
            continue  # held, and said so
        if u[i] <= lower[i] or u[i] >= upper[i]:
            out.append(f"{name} is at the bound of its range ({u[i] * _SCALE[i]:.4g})")
        if not np.any(jac[:, i]):
            out.append(f"{name}: no fitted row depends on it (not identified; it takes the bound)")
    for i in range(len(_NAMES)):
        for j in range(i + 1, len(_NAMES)):
            if lower[i] == upper[i] or lower[j] == upper[j]:
                continue
            a, b = jac[:, i], jac[:, j]
            if np.any(a) and np.any(b):
                cos = abs(float(np.sum(a * b)) / float(np.sqrt(np.sum(a * a) * np.sum(b * b))))
                if cos > 0.99:
                    out.append(
                        f"{_NAMES[i]} and {_NAMES[j]} are not separately identified "
                        f"(their effects on TPOT are {cos:.3f} parallel: one model, DeepSeek-R1, on 8-GPU groups)"
                    )
    return tuple(out)


def fit_acceptance(data: ServingMeasurements, profiles: dict[str, EngineProfile]) -> tuple[float, int, float]:
    """(mean accepted tokens per step, MTP rows, median |TPOT error|) over the MTP runs."""
    runs = [r for r in data.runs if r.kind == "steady" and r.spec_decode == "mtp" and not r.admission_limited]

    def residual(u: np.ndarray) -> np.ndarray:
        if u.ndim == 2:
            return np.stack([residual(u[:, j]) for j in range(u.shape[1])], axis=1)
        spec = Speculation(draft_tokens=MTP_DRAFT_TOKENS, accepted=float(u[0]))
        return np.array(
            [np.log(predict_steady(r, profiles[engine_of(r)], spec).predicted["tpot_s"] / r.tpot_s) for r in runs]
        )

    u, _ = levenberg_marquardt(
        residual, np.array([2.0]), np.array([1.0]), np.array([MTP_DRAFT_TOKENS + 1.0]), max_iterations=40
    )
    accepted = float(f"{u[0]:.4g}")
    errors = np.abs(np.exp(residual(np.array([accepted]))) - 1.0)
    return accepted, len(runs), float(np.median(errors))


def fit_serving(data: ServingMeasurements) -> ServingAssessment:
    """Fit each engine's profile, then MTP's accepted length; assess every run with them. The
    assessment's `fitted` lines give each profile as configs/engines/<name>.yaml ships it."""
    fits = {name: fit_engine(data, name) for name in FITTED_ENGINES}
    profiles = {name: f.profile for name, f in fits.items()}
    accepted, rows, median = fit_acceptance(data, profiles)
    # a run of another engine (vllm) with its shipped profile, a borrowed one with the donor's fit
    others = {_borrowing(load_engine(n), profiles) for n in {engine_of(r) for r in data.runs} - set(profiles)}
    lines = []
    chips = fit_borrowed_chips(data, profiles)
    for name, f in fits.items():
        constants = ", ".join(f"{k}: {v:.4g}" for k, v in f.profile.constants().items())
        lines.append(
            f"engine profile {name}: {constants} (TPOT over {f.rows} fitted runs: median |error| "
            f"{f.median_error:.1%}, worst {f.worst_error:.1%})"
        )
        lines += [f"  warning: {w}" for w in f.warnings]
    lines += chips
    lines.append(
        f"MTP mean accepted length: {accepted:.4g} tokens per step at {MTP_DRAFT_TOKENS} draft tokens "
        f"(TPOT over {rows} MTP runs: median |error| {median:.1%})"
    )
    assessment = assess_serving(
        data,
        profiles | {p.name: p for p in sorted(others, key=lambda p: p.name)},
        Speculation(draft_tokens=MTP_DRAFT_TOKENS, accepted=accepted),
    )
    return replace(assessment, fitted=tuple(lines))


def _borrowing(profile: EngineProfile, fitted: dict[str, EngineProfile]) -> EngineProfile:
    """A shipped profile that borrows a profile fitted here carries the fitted constants."""
    donor = fitted.get(profile.borrowed_from or "")
    return profile if donor is None else replace(profile, **donor.constants())


def fit_borrowed_chips(data: ServingMeasurements, profiles: dict[str, EngineProfile]) -> list[str]:
    """CHIP_REFIT of every cluster whose calibration is borrowed, fitted to its own steady runs
    (those of its first run's engine) from the borrowed values: the lines its file ships."""
    from planner.commands.calibrate.refine import value
    from planner.commands.calibrate.refine_serving import refine_profile
    from planner.config import load_cluster

    lines = []
    for name in dict.fromkeys(r.cluster.name for r in data.runs if r.steady):
        runs = [r for r in data.runs if r.steady and r.cluster.name == name]
        cluster = runs[0].cluster
        if cluster.calibration_borrowed_from is None:
            continue
        engine = engine_of(runs[0])
        runs = [r for r in runs if engine_of(r) == engine]
        donor = load_cluster(cluster.calibration_borrowed_from).calibration
        base = replace(cluster, calibration=replace(cluster.calibration, **{n: value(donor, n) for n in CHIP_REFIT}))
        r = refine_profile(replace(data, runs=tuple(runs)), profiles[engine], CHIP_REFIT, cluster=base)
        constants = ", ".join(f"{n}: {value(base.calibration, n):.4g} -> {r.constant(n):.4g}" for n in r.fitted)
        lines.append(
            f"chip constants of {name} (the rest borrowed from {cluster.calibration_borrowed_from}): {constants} "
            f"(TPOT over {len(r.after)} {engine} runs: median |error| {r.median_error('tpot_s', r.before):.1%} -> "
            f"{r.median_error('tpot_s'):.1%})"
        )
        lines += [f"  warning: {w}" for w in r.warnings]
    return lines


def shipped_assessment(data: ServingMeasurements) -> ServingAssessment:
    """Every run predicted with its engine's shipped profile (configs/engines/; engine_of) and MTP's
    shipped accepted length: a user's few runs are checked against them, not fitted."""
    from planner.commands.serve.curve import MTP_ACCEPTED

    profiles = {name: load_engine(name) for name in sorted({engine_of(r) for r in data.runs})}
    assessment = assess_serving(data, profiles, Speculation(draft_tokens=MTP_DRAFT_TOKENS, accepted=MTP_ACCEPTED))
    return replace(assessment, shipped=True)
