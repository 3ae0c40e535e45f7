"""Refine an engine profile, not replace it (`planner calibrate RUNS --engine PROFILE --fit NAMES`):
refit only the named constants of an engine profile (planner.specs.engine ENGINE_FIELDS:
layer_overhead_s, token_overhead_s, overlap) to a user's serving runs (a `planner-serving/1`
file, or benchmark result files with their sidecar), from one run upwards, on top of the named
profile (a shipped name or a profile YAML) and the runs' cluster preset (or `--cluster`, a file of
the same hardware). Chip constants of the cluster (`hbm_efficiency`, ...: the cluster refine's
REFINABLE) may be named too, for runs on one cluster. Every other constant of the profile and of
the cluster stays exactly as their files have them.

Each run is predicted exactly as `planner calibrate` assesses a serving set
(planner.commands.calibrate.serving.predict_steady: the steady state at the run's concurrency,
its layout pinned as the engine ran it), with the trial constants in place of the named ones. The
runs that assessment lists apart (maximum-throughput runs, speculative decoding, admission-limited
runs), runs with nothing that fits in HBM and runs another engine served (a shipped profile's
family, planner.commands.calibrate.serving.engine_of; runs on several clusters are fine) are not
fitted, and the report says why.

Which metric drives the fit: TPOT for every named constant, as the shipped profiles are fitted
(planner.commands.calibrate.engines): a decode step is what an engine's fixed times and overlap
set. TTFT joins the fit only when a constant that a prefill pass sets and a decode step hardly
does is named (PREFILL: token_overhead_s, matmul_efficiency, matmul_half_rows): decode TPOT (a
few tokens per chip) cannot tell the per-token time from the per-layer time, nor see the
compute-bound matmuls, while a prefill pass holds thousands of tokens per chip. TTFT is not fitted
otherwise because the steady state predicts it worst (queueing and scheduling it does not model:
a median error near 60% over the shipped serving set), and the fit would chase that. Output
tokens/s per GPU is shown before and after, never fitted.

The machinery is the cluster refine's (planner.commands.calibrate.refine.solve): the robust loss
of the log errors, Levenberg-Marquardt from the constants' own values, 4 significant digits. A
named constant no prediction depends on (moved to either end of its range, or a step either way
from its value, every fitted prediction stays the same: the overlap on one-GPU runs) keeps its value and a warning says so; a
constant fitted to an end of its range warns (a fixed time at its floor is 0); fewer runs than
constants fitted is underdetermined, and a warning says that too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.commands.calibrate.refine import REFINABLE, at_end, bound_of, kept_names, solve, value
from planner.commands.calibrate.serving import (
    ServingResidual,
    does_not_fit,
    engine_family,
    engine_of,
    predict_steady,
)
from planner.config.serving_runs import ServingMeasurements, ServingRun
from planner.errors import ConfigError
from planner.specs.engine import ENGINE_FIELDS, EngineProfile
from planner.specs.hardware import Calibration, Cluster

CHIP = tuple(n for n in REFINABLE if n not in ENGINE_FIELDS)  # the cluster's constants --fit may name too
FITTABLE = ENGINE_FIELDS + CHIP  # the constants --fit may name with --engine on serving runs
# the constants a prefill pass sets and a decode step hardly does: TTFT joins the fit for them
PREFILL = ("token_overhead_s", "matmul_efficiency", "matmul_half_rows")


def fit_metrics(names: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics that drive the fit of `names` (the module docstring says why)."""
    return ("tpot_s", "ttft_s") if any(n in PREFILL for n in names) else ("tpot_s",)


@dataclass(frozen=True, kw_only=True)
class Constants:
    """What a run is predicted with: a cluster's calibration in place of the run's cluster file's
    (None: the file's), then an engine profile's constants (`predict_steady` calls `apply`)."""

    profile: EngineProfile
    calibration: Calibration | None = None

    def apply(self, cluster: Cluster) -> Cluster:
        if self.calibration is not None:
            cluster = replace(cluster, calibration=self.calibration)
        return self.profile.apply(cluster)


def same_hardware(a: Cluster, b: Cluster) -> bool:
    """Whether two clusters differ only in their calibration constants (and names, sources and
    prices): a cluster file `-o` wrote from a preset stands in for the preset."""

    def bare(c: Cluster) -> Cluster:
        return replace(
            c,
            name="",
            source="",
            calibration=Calibration(),
            price_usd_per_chip_hour=None,
            calibration_borrowed_from=None,
            calibration_confidence=None,
            calibration_refitted=(),
            engine="",
        )

    return bare(a) == bare(b)


@dataclass(frozen=True, kw_only=True)
class ServingRefinement:
    profile: EngineProfile  # the named profile with its fitted constants refitted (rounded)
    base: EngineProfile  # the named profile as loaded (a borrowed profile with its donor's constants)
    cluster: Cluster | None  # the cluster with its fitted chip constants refitted (None: none named)
    base_cluster: Cluster | None  # the cluster the runs were predicted on (None: each run's own)
    start: dict[str, float]  # each named constant in effect before: the profile's, else the cluster's
    fitted: tuple[str, ...]  # the named constants the runs identify, refitted
    unidentified: tuple[str, ...]  # named, but no fitted prediction depends on them: their value kept
    kept: tuple[str, ...]  # the profile's other constants, as it has them
    kept_cluster: tuple[str, ...]  # the cluster's constants kept as its file has them (levels one by one)
    clusters: tuple[str, ...]  # the runs' clusters: every constant not named kept as its file has it
    metrics: tuple[str, ...]  # the metrics fitted (fit_metrics)
    before: tuple[ServingResidual, ...]  # the fitted runs with the named profile and cluster
    after: tuple[ServingResidual, ...]  # and with the refined ones
    apart: tuple[tuple[ServingRun, str], ...]  # runs not fitted, with the reason
    warnings: tuple[str, ...]  # a fitted constant at the end of its range
    underdetermined: bool  # fewer runs than constants fitted

    def constant(self, name: str, after: bool = True) -> float:
        """A named constant in effect before or after the fit."""
        if not after:
            return self.start[name]
        if name in ENGINE_FIELDS and getattr(self.profile, name) is not None:
            return getattr(self.profile, name)
        cluster = self.cluster or self.base_cluster
        return value(cluster.calibration, name) if cluster is not None else self.start[name]

    def median_error(self, metric: str, rows: tuple[ServingResidual, ...] | None = None) -> float:
        """Median |predicted / measured - 1| of `metric` over `rows` (default: after the fit)."""
        rows = self.after if rows is None else rows
        return float(np.median([abs(r.error(metric)) for r in rows]))


def refine_profile(
    data: ServingMeasurements,
    base: EngineProfile,
    names: tuple[str, ...],
    cluster: Cluster | None = None,
    name: str | None = None,
) -> ServingRefinement:
    """Refit `names` (FITTABLE) of profile `base` and of `cluster` (None: each run's own; chip
    constants need one cluster for every run) to `data`'s steady runs, every other constant held;
    the refined profile is called `name` (default: `base`'s name + '-refined')."""
    calibration = None if cluster is None else cluster.calibration
    before_constants = Constants(profile=base, calibration=calibration)
    own, other = _own_engine(data, base)
    apart = [(r, _apart(r)) for r in own if not r.steady] + other
    runs = []
    for run in (r for r in own if r.steady):
        predicted = predict_steady(run, before_constants).predicted
        if all(np.isfinite(v) and v > 0 for v in predicted.values()):
            runs.append(run)
        else:
            apart.append((run, does_not_fit(run)))
    if not runs:
        raise ConfigError(
            "no serving run to refit a profile to: every run is listed apart ("
            + "; ".join(sorted({why for _, why in apart}))
            + ")",
            file=data.file,
            key="runs",
            hint="give steady runs at a concurrency without speculative decoding (kind: steady, spec_decode: none)",
        )
    chip = tuple(n for n in names if n in CHIP)
    if chip and cluster is None:
        cluster = runs[0].cluster
        calibration = cluster.calibration
    metrics = fit_metrics(names)
    file_constants = (cluster or runs[0].cluster).calibration
    start = {
        n: getattr(base, n) if n in ENGINE_FIELDS and getattr(base, n) is not None else value(file_constants, n)
        for n in names
    }

    def trial(constants) -> Constants:
        c = dict(zip(names, (float(x) for x in constants)))
        return Constants(
            profile=replace(base, **{n: v for n, v in c.items() if n in ENGINE_FIELDS}),
            calibration=calibration if not chip else replace(calibration, **{n: c[n] for n in chip}),
        )

    def predictions(constants) -> np.ndarray:
        constants_ = trial(constants)
        return np.array([predict_steady(r, constants_).predicted[m] for r in runs for m in metrics])

    measured = np.array([getattr(r, m) for r in runs for m in metrics])
    constants, unidentified = solve(predictions, measured, names, np.array([start[n] for n in names]))
    fitted = tuple(n for n in names if n not in unidentified)
    values = {n: float(c) for n, c in zip(names, constants) if n in fitted}
    ends = {n: bound_of(n, v) for n, v in values.items()}
    # a fixed time at the floor of its range is no fixed time
    values.update({n: 0.0 for n, end in ends.items() if end == "lower" and REFINABLE[n] == "latency"})
    engine_fitted = tuple(n for n in fitted if n in ENGINE_FIELDS)
    profile = (
        replace(
            base,
            name=name or f"{base.name.removesuffix('-refined')}-refined",
            source=(
                f"{base.name} with {', '.join(engine_fitted) or 'nothing'} refitted to {len(runs)} serving "
                f"run{'s' * (len(runs) != 1)} of {data.file}; its other constants as {base.name} has them"
            ),
            borrowed_from=None,
            **{n: v for n, v in values.items() if n in ENGINE_FIELDS},
        )
        if engine_fitted
        else base
    )
    chip_fitted = {n: v for n, v in values.items() if n in CHIP}
    refined_cluster = None if not chip else replace(cluster, calibration=replace(cluster.calibration, **chip_fitted))
    after_constants = Constants(
        profile=profile, calibration=calibration if refined_cluster is None else refined_cluster.calibration
    )
    in_profile = tuple(n for n in ENGINE_FIELDS if getattr(base, n) is not None)
    return ServingRefinement(
        profile=profile,
        base=base,
        cluster=refined_cluster,
        base_cluster=cluster,
        start=start,
        fitted=fitted,
        unidentified=unidentified,
        kept=tuple(n for n in in_profile if n not in fitted),
        kept_cluster=tuple(
            n for n in kept_names(file_constants, tuple(chip_fitted)) if n not in in_profile and n not in fitted
        ),
        clusters=tuple(dict.fromkeys((cluster or r.cluster).name for r in runs)),
        metrics=metrics,
        before=tuple(predict_steady(r, before_constants) for r in runs),
        after=tuple(predict_steady(r, after_constants) for r in runs),
        apart=tuple(apart),
        warnings=tuple(at_end(n, end, values[n], "runs") for n, end in ends.items() if end),
        underdetermined=len(runs) < len(fitted),
    )


def _apart(run: ServingRun) -> str:
    """Why a run is not fitted (the serving assessment lists the same runs apart)."""
    if run.kind == "max_throughput":
        return "maximum throughput (every request queued): no steady TTFT or TPOT to fit"
    reasons = [f"speculative decoding ({run.spec_decode})"] if run.spec_decode != "none" else []
    return "; ".join(reasons + ([run.admission_limited] if run.admission_limited else []))


def _own_engine(data: ServingMeasurements, base: EngineProfile) -> tuple[list, list]:
    """(runs of the profile's engine family, [(run, why) for the others]): a profile is refitted
    only to the runs its engine served (engine_of: Dynamo over SGLang is SGLang's; a run of an
    unknown engine is the GPU default's), on any cluster. A profile whose name is no engine family's
    (a profile YAML of its own name) takes every run. None of its engine's: exit 2."""
    family = engine_family(base.name)  # sglang-refined, a refined file's name, is sglang's
    if family is None:
        return list(data.runs), []
    own = [r for r in data.runs if engine_of(r) == family]
    other = [(r, f"another engine's run: {r.engine}, not {family}") for r in data.runs if engine_of(r) != family]
    if not own:
        engines = sorted({engine_of(r) for r in data.runs})
        raise ConfigError(
            f"no serving run of {family} to refit the {base.name} profile to: every run was served by "
            f"another engine ({', '.join(sorted({r.engine for r in data.runs}))})",
            file=data.file,
            key="runs",
            hint=f"give runs {family} served (a run's engine names it), or refine the profile of the engine "
            f"that served them (--engine {' or --engine '.join(engines)})",
        )
    return own, other
