"""Checks beyond the residuals of a fit: does the calibrated planner rank layouts as the
measurements do (orderings, chosen layouts), and what does it predict for models not fitted?"""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.commands.calibrate.fit import Fit, Residual, fit, predict
from planner.commands.calibrate.terms import measurement_plan
from planner.config.measurements import ATTENTION_CHOICES, BEST, FFN_CHOICES, Measurement, Measurements
from planner.cost.layouts import ATTENTION_LAYOUTS, FFN_LAYOUTS
from planner.errors import ConfigError
from planner.search.search import best
from planner.specs.hardware import Cluster
from planner.specs.model import Model

# ---------------------------------------------------------------------------------------------
# Checks beyond the residuals: does the calibrated planner rank layouts as the measurements do?


@dataclass(frozen=True, kw_only=True)
class Ordering:
    """Two points of one setting with different layouts: is the measured faster one predicted
    faster too?"""

    faster: Residual  # measured faster
    slower: Residual

    @property
    def measured_ratio(self) -> float:
        return self.slower.measurement.latency_s / self.faster.measurement.latency_s

    @property
    def predicted_ratio(self) -> float:
        return self.slower.predicted_s / self.faster.predicted_s

    @property
    def holds(self) -> bool:
        return self.predicted_ratio > 1.0


CHOICE_TOLERANCE = 0.05  # a pick other than the source's holds if the source's layout is this close


@dataclass(frozen=True, kw_only=True)
class Choice:
    """A point marked `chosen`: the planner's fastest layout at that setting and weight format,
    and how much slower the planner predicts the source's layout (at its best mesh grouping)."""

    measurement: Measurement
    picked: str  # "ffn+attention"
    slower: float | None = None  # the source's layout's predicted latency / the pick's - 1

    @property
    def same(self) -> bool:
        ffn, _, attention = self.picked.partition("+")
        m = self.measurement
        return ffn in FFN_CHOICES[m.ffn] and attention in ATTENTION_CHOICES[m.attention]

    @property
    def holds(self) -> bool:
        """The planner picks the source's layout, or one the source's is within 5% of."""
        return self.same or (self.slower is not None and self.slower <= CHOICE_TOLERANCE)


def orderings(residuals: tuple[Residual, ...]) -> tuple[Ordering, ...]:
    out = []
    for i, a in enumerate(residuals):
        for b in residuals[i + 1 :]:
            ma, mb = a.measurement, b.measurement
            same = (ma.setting, ma.weights) == (mb.setting, mb.weights)
            disjoint = not set(FFN_CHOICES[ma.ffn]) & set(FFN_CHOICES[mb.ffn]) or not set(
                ATTENTION_CHOICES[ma.attention]
            ) & set(ATTENTION_CHOICES[mb.attention])
            if same and disjoint and ma.latency_s != mb.latency_s:
                out.append(
                    Ordering(faster=a, slower=b) if ma.latency_s < mb.latency_s else Ordering(faster=b, slower=a)
                )
    return tuple(out)


def choices(cluster: Cluster, points: tuple[Measurement, ...]) -> tuple[Choice, ...]:
    out = []
    for m in points:
        if not m.chosen:
            continue
        plan = measurement_plan(cluster, m, tuple(FFN_LAYOUTS), tuple(ATTENTION_LAYOUTS))
        ev = best(plan, m.phase, m.chips, m.batch, m.weights)
        picked = "none fits" if ev is None else f"{ev.candidate.ffn.name}+{ev.candidate.attention.name}"
        source = measurement_plan(cluster, m, FFN_CHOICES[m.ffn], ATTENTION_CHOICES[m.attention])
        theirs = best(source, m.phase, m.chips, m.batch, m.weights)
        slower = None if ev is None or theirs is None else float(theirs.latency_s[0] / ev.latency_s[0] - 1.0)
        out.append(Choice(measurement=m, picked=picked, slower=slower))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Assessment:
    """A fit and how the calibrated planner ranks layouts against the measurements."""

    fit: Fit
    orderings: tuple[Ordering, ...]
    choices: tuple[Choice, ...]


def assess(cluster: Cluster, data: Measurements) -> Assessment:
    result = fit(cluster, data)
    return Assessment(fit=result, orderings=orderings(result.residuals), choices=choices(result.cluster, data.points))


@dataclass(frozen=True, kw_only=True)
class Elsewhere:
    """A model that was not fitted, at one setting of the data, with its fastest layout."""

    measurement: Measurement  # the setting, with the other model and layout `best`
    residual: Residual | None  # None: nothing fits in HBM


def elsewhere(cluster: Cluster, data: Measurements, models: tuple[Model, ...]) -> tuple[Elsewhere, ...]:
    """Predictions for other models at every distinct setting of the data (not fitted: this is
    how generalisation is judged)."""
    settings: dict[tuple, Measurement] = {}
    for m in data.points:
        settings.setdefault((m.setting, m.weights), m)
    out = []
    for model in models:
        for m in settings.values():
            other = replace(m, model=model, ffn=BEST, attention=BEST)
            try:
                residual = predict(cluster, (other,))[0]
            except ConfigError:  # does not fit in HBM
                residual = None
            out.append(Elsewhere(measurement=other, residual=residual))
    return tuple(out)
