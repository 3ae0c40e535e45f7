"""Refine, not replace (`planner calibrate POINTS --cluster NAME --fit NAMES`): refit only the
named constants of a shipped (or a user's) cluster to a few measured points, from one point
upwards, keeping every other constant (its network levels, kernel fits, MoE kernels) exactly as
the cluster file has them.

The named constants are fitted by the robust loss of the points fit (planner.commands.calibrate.fit:
a Cauchy loss of the log errors at the 15% accuracy target), by Levenberg-Marquardt from the
cluster's own values (and each named constant's end of the grid of the points fit); each point is
predicted by the cost model itself at every step (`evaluate` on the candidates the point allows
that fit in HBM, the fastest one), which is slower than the points fit's linearised model but
exact for every constant of `Calibration`. A named constant no point depends on (moved to either
end of its range, or a step either way from its value, every prediction stays the same: a matmul
efficiency on memory-bound decode points) is not identified: it keeps the cluster's value and a
warning says so. A constant fitted to within reach of either end of its range warns (a fixed time
at its floor is 0). Constants the cluster's cost model does not use (`unused`: the cluster-wide
collective constants where every switched level carries its own) cannot be named. With fewer points than named constants the fit is underdetermined
and a warning says that too; the result is the cluster's values moved as little as the loss
needs (the start is the cluster's own values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from planner.commands.calibrate.fit import SIGNIFICANT, Residual, residual_of, robust_loss
from planner.commands.calibrate.solver import levenberg_marquardt
from planner.commands.calibrate.terms import allowed
from planner.config.measurements import Measurement
from planner.cost.costmodel import evaluate
from planner.specs.hardware import Calibration, Cluster

# The constants `--fit` may name, and how each is kept physical: efficiencies and the overlap
# through a logit, fixed times and rows through a log.
REFINABLE = {
    "matmul_efficiency": "fraction",
    "narrow_matmul_efficiency": "fraction",
    "hbm_efficiency": "fraction",
    "network_efficiency": "fraction",
    "weight_gather_efficiency": "fraction",
    "overlap": "fraction",
    "collective_latency_s": "latency",
    "layer_overhead_s": "latency",
    "token_overhead_s": "latency",
    "kernel_overhead_s": "latency",
    "matmul_half_rows": "rows",
}
FALLBACK = {"narrow_matmul_efficiency": "matmul_efficiency", "weight_gather_efficiency": "network_efficiency"}
_SCALE = {"fraction": 1.0, "latency": 1e-6, "rows": 1.0}
_BOUNDS = {"fraction": (-12.0, 12.0), "latency": (-16.0, 12.0), "rows": (-16.0, 12.0)}
_START_IF_ZERO = {"fraction": 0.5, "latency": 1e-6, "rows": 4.0}  # a log cannot start at 0
END_MARGIN = 2.5  # how near an end of its range (logit or log) a fitted constant is at that end
# a constant is not identified where moving it this far (a fraction by LOCAL_STEP, a time or rows by
# that factor) from its value changes no prediction by more than LOCAL_RTOL
LOCAL_STEP, LOCAL_RTOL = 0.05, 1e-6


@dataclass(frozen=True, kw_only=True)
class Refinement:
    cluster: Cluster  # the input cluster with the named constants refitted (rounded)
    base: Calibration  # the input cluster's calibration
    fitted: tuple[str, ...]  # the named constants the points identify, refitted
    unidentified: tuple[str, ...]  # named, but no point depends on them: the cluster's value kept
    kept: tuple[str, ...]  # every other constant of the calibration, as the cluster has it
    before: tuple[Residual, ...]  # the points with the cluster's constants
    residuals: tuple[Residual, ...]  # and with the refined ones
    underdetermined: bool  # fewer points than constants fitted
    warnings: tuple[str, ...] = ()  # a fitted constant at an end of its range

    @property
    def median_error(self) -> float:
        return float(np.median([abs(r.error) for r in self.residuals]))


def kept_names(calibration: Calibration, fitted: tuple[str, ...]) -> tuple[str, ...]:
    """The calibration's constants other than `fitted` (levels named one by one)."""
    scalars = [n for n in REFINABLE if n not in fitted and getattr(calibration, n) is not None]
    return tuple(scalars + [f"levels.{level}" for level in calibration.levels])


def unused(cluster: Cluster) -> dict[str, str]:
    """The REFINABLE constants `cluster`'s cost model does not use, with the reason: on switched
    levels that carry their own constants (Calibration.level), the cluster-wide collective ones."""
    levels = getattr(cluster.topology, "levels", None)
    if not levels:
        return {}
    own = [cluster.calibration.levels.get(level.name, {}) for level in levels]
    names = ", ".join(f"levels.{level.name}" for level in levels)
    out = {}
    for name, key in (("network_efficiency", "efficiency"), ("collective_latency_s", "step_latency_s")):
        if all(key in given for given in own):
            out[name] = f"every switched level of {cluster.name} has its own {key} ({names}), which is used instead"
    if all(own):
        out["weight_gather_efficiency"] = (
            f"every switched level of {cluster.name} has constants of its own ({names}), which price its weight gathers"
        )
    return out


def usable(cluster: Cluster) -> tuple[str, ...]:
    """The constants `--fit` may name on `cluster`: REFINABLE less `unused`."""
    skip = unused(cluster)
    return tuple(n for n in REFINABLE if n not in skip)


def value(calibration: Calibration, name: str) -> float:
    """A constant's value in effect (a constant left unset follows the one it falls back to)."""
    v = getattr(calibration, name)
    return getattr(calibration, FALLBACK[name]) if v is None else v


def refine(cluster: Cluster, points: tuple[Measurement, ...], names: tuple[str, ...]) -> Refinement:
    """Refit `names` of `cluster`'s calibration to `points`, every other constant held."""
    base = cluster.calibration
    found = [[ev.candidate for ev in allowed(cluster, m)] for m in points]

    def latencies(constants) -> np.ndarray:
        c = replace(cluster, calibration=replace(base, **{n: float(v) for n, v in zip(names, constants)}))
        return np.array(
            [
                min(float(evaluate(m.model, c, m.workload, cand, np.array([m.batch])).latency_s[0]) for cand in cands)
                for m, cands in zip(points, found)
            ]
        )

    start = np.array([value(base, n) for n in names])
    constants, unidentified = solve(latencies, np.array([m.latency_s for m in points]), names, start)
    free = [i for i, n in enumerate(names) if n not in unidentified]
    fitted = tuple(names[i] for i in free)
    values = {names[i]: float(constants[i]) for i in free}
    ends = {n: bound_of(n, v) for n, v in values.items()}
    # a fixed time at the floor of its range is no fixed time
    values.update({n: 0.0 for n, end in ends.items() if end == "lower" and REFINABLE[n] == "latency"})
    # the unidentified keep the cluster's value exactly as set (an unset one stays unset)
    refined = replace(cluster, calibration=replace(base, **values))
    return Refinement(
        warnings=tuple(at_end(n, end, getattr(refined.calibration, n), "points") for n, end in ends.items() if end),
        cluster=refined,
        base=base,
        fitted=fitted,
        unidentified=unidentified,
        kept=kept_names(base, tuple(names)),
        before=_predicted(cluster, points, found),
        residuals=_predicted(refined, points, found),
        underdetermined=len(points) < len(fitted),
    )


def solve(
    predict, measured: np.ndarray, names: tuple[str, ...], start: np.ndarray
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The named constants (REFINABLE) fitted so that `predict(constants)` (positive figures, one
    per entry of `measured`) meets `measured`: the robust loss of the log errors, minimised by
    Levenberg-Marquardt from `start` within each kind's range, the result rounded to SIGNIFICANT
    digits. Returns (constants, the names no prediction depends on); those keep their start."""
    kinds = [REFINABLE[n] for n in names]
    log_measured = np.log(measured)

    def residual(u: np.ndarray) -> np.ndarray:
        if u.ndim == 2:
            return np.stack([residual(u[:, j]) for j in range(u.shape[1])], axis=1)
        r = np.log(predict(_constants(u, kinds))) - log_measured
        return np.sign(r) * np.sqrt(robust_loss(r))

    lower = np.array([_BOUNDS[k][0] for k in kinds])
    upper = np.array([_BOUNDS[k][1] for k in kinds])
    unidentified = _unidentified(predict, start, kinds, names)
    free = [i for i, n in enumerate(names) if n not in unidentified]
    constants = np.array(start, dtype=float)
    if free:
        sub = [kinds[i] for i in free]

        def sub_residual(v: np.ndarray) -> np.ndarray:
            u = np.repeat(_unconstrained(start, kinds)[:, None], 1 if v.ndim == 1 else v.shape[1], axis=1)
            u[free] = v if v.ndim == 2 else v[:, None]
            return residual(u if v.ndim == 2 else u[:, 0])

        v, _ = levenberg_marquardt(
            sub_residual, np.clip(_unconstrained(start[free], sub), lower[free], upper[free]), lower[free], upper[free]
        )
        constants[free] = _rounded(_constants(v, sub), sub)
    return constants, unidentified


def bound_of(name: str, constant: float) -> str | None:
    """'lower' or 'upper' where a fitted constant lies at that end of the range `solve` fits it
    in (within END_MARGIN of it in the solver's logit or log scale: a fraction above 0.9999 or
    below 1e-4, a fixed time under 1e-12 s), else None."""
    kind = REFINABLE[name]
    if constant <= 0.0:
        return "lower"
    if kind == "fraction" and constant >= 1.0:
        return "upper"
    u = _unconstrained([constant], [kind])[0]
    low, high = _BOUNDS[kind]
    return "lower" if u <= low + END_MARGIN else "upper" if u >= high - END_MARGIN else None


def at_end(name: str, end: str, value: float, data: str) -> str:
    """The warning for a fitted constant at an end of its range (`data`: "points", "runs")."""
    if value == 0.0:
        return (
            f"{name} is at the floor of its range, 0: the {data} are faster than predicted "
            "with no such fixed time (see the residuals)"
        )
    what = {"lower": "less", "upper": "more"}[end]
    return (
        f"{name} is at the {end} end of its range ({value:g}): the {data} ask for {what} than it can give, "
        "so something else the model does not fit is off (see the residuals)"
    )


def _predicted(cluster: Cluster, points, found) -> tuple[Residual, ...]:
    out = []
    for m, cands in zip(points, found):
        evs = [evaluate(m.model, cluster, m.workload, c, np.array([m.batch])) for c in cands]
        out.append(residual_of(m, min(evs, key=lambda e: float(e.latency_s[0]))))
    return tuple(out)


def _unidentified(latencies, start: np.ndarray, kinds, names) -> tuple[str, ...]:
    """The names no prediction depends on: moved to either end of its range, or a step either way
    from its value (LOCAL_STEP: the points memory-bound, a matmul efficiency moves nothing there
    and the solver would not move it), every prediction stays within LOCAL_RTOL."""
    out = []
    here = latencies(start)
    for j, name in enumerate(names):
        moved = []
        for end in _BOUNDS[kinds[j]]:
            c = start.copy()
            c[j] = _constants(np.array([end]), [kinds[j]])[0]
            moved.append(latencies(c))
        if np.allclose(moved[0], moved[1], rtol=1e-9, atol=0.0):
            out.append(name)
            continue
        local = [latencies(_stepped(start, j, kinds[j], sign)) for sign in (-1.0, 1.0)]
        if all(np.allclose(p, here, rtol=LOCAL_RTOL, atol=0.0) for p in local):
            out.append(name)
    return tuple(out)


def _stepped(start: np.ndarray, j: int, kind: str, sign: float) -> np.ndarray:
    """`start` with constant j moved a step (LOCAL_STEP) up or down within its range."""
    c = np.array(start, dtype=float)
    if kind == "fraction":
        c[j] = min(max(c[j] + sign * LOCAL_STEP, 1e-5), 1.0 - 1e-5)
    else:
        base = c[j] if c[j] > 0 else _START_IF_ZERO[kind] * _SCALE[kind]
        c[j] = base * (1.0 + LOCAL_STEP) ** sign
    return c


def _constants(u: np.ndarray, kinds) -> np.ndarray:
    return np.array(
        [1.0 / (1.0 + math.exp(-x)) if k == "fraction" else _SCALE[k] * math.exp(x) for x, k in zip(u, kinds)]
    )


def _unconstrained(constants, kinds) -> np.ndarray:
    out = []
    for c, k in zip(constants, kinds):
        if k == "fraction":
            c = min(max(c, 1e-5), 1.0 - 1e-5)
            out.append(math.log(c / (1.0 - c)))
        else:
            out.append(math.log((c if c > 0 else _START_IF_ZERO[k]) / _SCALE[k]))
    return np.array(out)


def _rounded(constants: np.ndarray, kinds) -> np.ndarray:
    """SIGNIFICANT digits, as the points fit keeps them."""
    return np.array([float(f"{c:.{SIGNIFICANT}g}") for c, k in zip(constants, kinds)])
