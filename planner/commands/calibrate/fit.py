"""Fit a cluster's calibration constants to measured latencies (`planner calibrate`).

The eight constants of `planner.specs.hardware.Calibration` (matmul, HBM and network efficiency, a
latency per collective, a fixed time per layer and step, the overlap fraction, the network
efficiency of prefetched weight all-gathers, and the matmul size at half efficiency) are shared
by every model and layout on one cluster: there are no per-model, per-layout or per-point factors.
The constants only kernel and end-to-end rows identify (a fixed time per matmul kernel and per
token, the narrow formats' matmul rate, the switched levels' collectives) are fitted from a kernel
file (planner.commands.calibrate.kernels); a points file leaves them at their defaults.

The fit minimises a robust (Cauchy) loss of the log errors over the measured points,

    r_i  = log predicted_i - log measured_i
    cost = sum_i s^2 log(1 + (r_i / s)^2),   s = log(1.15), the accuracy target,

which is least squares for errors well inside 15% and grows only logarithmically beyond: a point
the cost model cannot represent (see the notes of a measurements file) is reported with its large
error instead of dragging the constants every other prediction shares. The fit runs by
Levenberg-Marquardt on the residuals sign(r_i) sqrt(loss(r_i)), with a forward-difference Jacobian over
unconstrained parameters (the logit of each efficiency and of the overlap, the log of each
latency and of the half-efficiency rows, so every iterate is physical), from a fixed grid of
starting points; the lowest cost wins. There is no randomness: the same file gives the same
constants. A constant no prediction depends on (set to either end of its range, every point's
latency is unchanged: e.g. `weight_gather_efficiency` when no point gathers weights) is not
identified by the data: it keeps its default (`Calibration`'s; `weight_gather_efficiency` then
follows `network_efficiency`), the YAML omits it and the report says so. MFU is not fitted
separately: with the reference convention it is inversely proportional to latency, so its relative
error follows from the latency's.

It is fast because each kernel's compute and HBM time is linear in 1/efficiency and in the
half-efficiency rows m_half, and the collectives' time in each 1/efficiency and each latency:

    local = sum over kernels k of max((C_k + m_half * R_k) / e_matmul, M_k / e_hbm)
    step  = combine(local, K_a / e_network + n_a * t_collective, f, K_w / e_weights + n_w * t_collective)
            + n_layers * t_layer

(K and n, the collectives' bytes-time and ring steps, for the activation collectives (a) and the
prefetched weight all-gathers (w); R_k, the compute time of one more row of kernel k's einsums),
so each candidate layout of each point is costed twice by `planner.cost.costmodel`
(at ideal constants, and with m_half = 1 for R_k) and the fit works on those arrays, for many
sets of constants at once (a Jacobian is one call).
The final constants are checked against `evaluate` itself.

A point whose layout is not fully given (`ffn: weight-gathered` or `best`, `attention: best`, and
always the mesh grouping) is predicted by the fastest candidate that fits in HBM among those
allowed, re-chosen at every step of the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from planner.commands.calibrate.solver import levenberg_marquardt
from planner.commands.calibrate.terms import Terms, allowed
from planner.config.measurements import ATTENTION_CHOICES, FFN_CHOICES, Measurement, Measurements
from planner.cost.costmodel import Evaluation, evaluate
from planner.specs.hardware import Calibration, Cluster, Torus

# ---------------------------------------------------------------------------------------------
# Predictions


@dataclass(frozen=True, kw_only=True)
class Residual:
    """A measured point and the cost model's prediction for it."""

    measurement: Measurement
    predicted_s: float
    predicted_mfu: float
    layout: str  # the candidate predicted: "ffn+attention" and the mesh sizes

    @property
    def error(self) -> float:
        """predicted / measured - 1"""
        return self.predicted_s / self.measurement.latency_s - 1.0

    @property
    def mfu_error(self) -> float | None:
        m = self.measurement.mfu
        return None if m is None else self.predicted_mfu / m - 1.0

    @property
    def within_target(self) -> bool:
        """Latency, and MFU where measured, within ACCURACY_TARGET."""
        return abs(self.error) <= ACCURACY_TARGET and (self.mfu_error is None or abs(self.mfu_error) <= ACCURACY_TARGET)


def predict(cluster: Cluster, points: tuple[Measurement, ...]) -> tuple[Residual, ...]:
    """Each point predicted by the cost model itself (the fastest allowed candidate)."""
    return tuple(residual_of(m, min(allowed(cluster, m), key=lambda e: float(e.latency_s[0]))) for m in points)


def residual_of(m: Measurement, ev: Evaluation) -> Residual:
    c = ev.candidate
    sizes = "x".join(str(n) for n in c.mesh.sizes.values())
    layout = f"{c.ffn.name}+{c.attention.name} {sizes}"
    if c.ffn.name not in FFN_CHOICES[m.ffn] or c.attention.name not in ATTENTION_CHOICES[m.attention]:
        layout += " (one chip: any layout is this one)"  # see allowed()
    return Residual(measurement=m, predicted_s=float(ev.latency_s[0]), predicted_mfu=float(ev.mfu[0]), layout=layout)


# ---------------------------------------------------------------------------------------------
# The fit

# (Calibration field, kind): efficiencies in (0, 1] and the overlap in [0, 1] go through a
# logit, latencies (>= 0) through a log around LATENCY_SCALE_S, rows (>= 0) through a log.
CONSTANTS = (
    ("matmul_efficiency", "fraction"),
    ("hbm_efficiency", "fraction"),
    ("network_efficiency", "fraction"),
    ("collective_latency_s", "latency"),
    ("layer_overhead_s", "latency"),
    ("overlap", "fraction"),
    ("weight_gather_efficiency", "fraction"),
    ("matmul_half_rows", "rows"),
)
LATENCY_SCALE_S = 1e-6
# latency 1e-13 s .. 0.16 s; rows 1e-7 .. 1.6e5
_BOUNDS = {"fraction": (-12.0, 12.0), "latency": (-16.0, 12.0), "rows": (-16.0, 12.0)}
# Starting points: matmul efficiency x network efficiencies (activations, weights) x overlap x
# both latencies x rows at half matmul efficiency.
STARTS = tuple(
    (mm, 0.8, net, lat, lat, f, net, rows)
    for mm in (0.5, 0.9)
    for net in (0.15, 0.6)
    for f in (0.1, 0.9)
    for lat in (1e-6, 3e-5)
    for rows in (4.0, 256.0)
)
SIGNIFICANT = 4  # digits kept in the fitted constants (the preset records these)
ACCURACY_TARGET = 0.15  # predicted within 15% of measured (latency, and MFU where measured)
LOSS_SCALE = math.log1p(ACCURACY_TARGET)  # s of the Cauchy loss: the target, in log latency


def robust_loss(r: np.ndarray) -> np.ndarray:
    """s^2 log(1 + (r/s)^2): r^2 for small log errors r, logarithmic for large ones."""
    return LOSS_SCALE**2 * np.log1p((r / LOSS_SCALE) ** 2)


@dataclass(frozen=True, kw_only=True)
class Fit:
    cluster: Cluster  # the input cluster with the fitted (rounded) calibration
    residuals: tuple[Residual, ...]  # with the rounded constants, from the cost model itself
    cost: float  # the robust loss (see the module docstring)
    at_bound: tuple[str, ...]  # constants the fit pushed to a bound of their physical range
    starts: int
    unidentified: tuple[str, ...] = ()  # constants no point depends on: kept at their default

    @property
    def errors(self) -> np.ndarray:
        return np.array([r.error for r in self.residuals])

    @property
    def median_error(self) -> float:
        """Median of |predicted / measured - 1|."""
        return float(np.median(np.abs(self.errors)))

    @property
    def worst(self) -> Residual:
        return max(self.residuals, key=lambda r: abs(r.error))


def bandwidth_model(cluster: Cluster) -> str | None:
    return cluster.topology.bandwidth_model if isinstance(cluster.topology, Torus) else None


def with_bandwidth_model(cluster: Cluster, model: str) -> Cluster:
    return replace(cluster, topology=replace(cluster.topology, bandwidth_model=model))


def fit(cluster: Cluster, data: Measurements) -> Fit:
    """Fit the constants of `cluster` (CONSTANTS) to `data` (see the module docstring)."""
    points = data.points
    terms = Terms.build(cluster, points)  # first: a bad row is reported as such
    if len(points) < len(CONSTANTS):
        listed = next(v for k, v in data.at.node.value if k.value == "measurements")
        raise data.at.child(listed, "measurements").error(
            f"{len(points)} measured point{'s' * (len(points) != 1)} cannot determine "
            f"{len(CONSTANTS)} calibration constants; give at least {len(CONSTANTS)}"
        )
    measured = np.log([m.latency_s for m in points])
    lower = np.array([_BOUNDS[kind][0] for _, kind in CONSTANTS])
    upper = np.array([_BOUNDS[kind][1] for _, kind in CONSTANTS])

    def residual(u: np.ndarray) -> np.ndarray:
        """The signed square roots of the robust loss: (points,), or (points, k) for u (8, k)."""
        r = np.log(terms.latency(_constants(u))) - (measured if u.ndim == 1 else measured[:, None])
        return np.sign(r) * np.sqrt(robust_loss(r))

    found = [levenberg_marquardt(residual, np.clip(_unconstrained(s), lower, upper), lower, upper) for s in STARTS]
    # the best start; costs within 1e-9 of it tie (a constant the loss is flat in), and a tie
    # goes to the first start, so rounding noise in the costs cannot move the constants
    best = min(cost for _, cost in found)
    u = next(u for u, cost in found if cost <= best * (1 + 1e-9))
    unidentified = _unidentified(terms, _constants(u))
    constants = _rounded(_constants(u))
    defaults = Calibration(network_efficiency=constants[2])
    constants = tuple(
        getattr(defaults, name) if name in unidentified else value for value, (name, _) in zip(constants, CONSTANTS)
    )
    calibration = Calibration(**dict(zip((name for name, _ in CONSTANTS), constants)))
    fitted = replace(cluster, calibration=calibration)
    # Each point's fastest candidate under the fitted constants, evaluated by the cost model itself
    surrogate = terms.latency(np.array(constants))
    chosen = terms.fastest(np.array(constants))
    residuals = tuple(
        residual_of(m, evaluate(m.model, fitted, m.workload, terms.row_candidates[i], np.array([m.batch])))
        for m, i in zip(points, chosen)
    )
    exact = np.array([r.predicted_s for r in residuals])
    if not np.allclose(surrogate, exact, rtol=1e-9, atol=0.0):  # a bug, not a user mistake
        raise RuntimeError("the fit's linearised cost model disagrees with planner.cost.costmodel")
    cost = float(np.sum(robust_loss(np.log(exact) - measured)))
    at_bound = tuple(name for name in _at_bound(constants) if name not in unidentified)
    return Fit(
        cluster=fitted, residuals=residuals, cost=cost, at_bound=at_bound, starts=len(STARTS), unidentified=unidentified
    )


def _unidentified(terms: Terms, constants: np.ndarray) -> tuple[str, ...]:
    """The constants no point's predicted latency depends on: moved to either end of its range
    (the others as fitted), every prediction stays the same."""
    lowest = _constants(np.array([_BOUNDS[kind][0] for _, kind in CONSTANTS]))
    highest = _constants(np.array([_BOUNDS[kind][1] for _, kind in CONSTANTS]))
    out = []
    for j, (name, _) in enumerate(CONSTANTS):
        ends = np.repeat(constants[:, None], 2, axis=1)
        ends[j] = (lowest[j], highest[j])
        low, high = terms.latency(ends).T
        if np.allclose(low, high, rtol=1e-9, atol=0.0):
            out.append(name)
    return tuple(out)


_FRACTION = np.array([kind == "fraction" for _, kind in CONSTANTS])


_SCALE = np.array([LATENCY_SCALE_S if kind == "latency" else 1.0 for _, kind in CONSTANTS])


def _constants(u: np.ndarray) -> np.ndarray:
    """Constants from unconstrained parameters u: (8,), or (8, k) for k sets."""
    fraction = _FRACTION if u.ndim == 1 else _FRACTION[:, None]
    scale = _SCALE if u.ndim == 1 else _SCALE[:, None]
    return np.where(fraction, 1.0 / (1.0 + np.exp(-u)), scale * np.exp(u))


def _unconstrained(constants) -> np.ndarray:
    return np.array(
        [
            math.log(c / (1.0 - c)) if kind == "fraction" else math.log(c / scale)
            for c, (_, kind), scale in zip(constants, CONSTANTS, _SCALE)
        ]
    )


def _rounded(constants: np.ndarray) -> tuple[float, ...]:
    """SIGNIFICANT digits; within a hair of the edge of its range, a constant is put on it
    (an efficiency of 1, an overlap of 0 or 1, a latency below 0.1 ns or rows below 0.001 are 0)."""
    out = []
    for value, (name, kind) in zip(constants, CONSTANTS):
        if kind != "fraction":
            small = 1e-10 if kind == "latency" else 1e-3
            out.append(0.0 if value < small else float(f"{value:.{SIGNIFICANT}g}"))
        elif value > 1.0 - 5e-5 or (name == "overlap" and value < 5e-5):
            out.append(round(value))
        else:
            out.append(float(f"{value:.{SIGNIFICANT}g}"))
    return tuple(out)


def _at_bound(constants: tuple[float, ...]) -> tuple[str, ...]:
    """The constants the fit pushed to the edge of their physical range."""
    return tuple(
        name
        for value, (name, kind) in zip(constants, CONSTANTS)
        if value == 0.0 or (kind == "fraction" and value == 1.0)
    )
