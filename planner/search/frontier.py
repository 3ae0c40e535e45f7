"""The Pareto frontier of latency against MFU over many points: which positions are on it."""

from __future__ import annotations

import numpy as np

RESOLUTION = 1e-3  # relative differences below 0.1% are not resolved by the cost model


def front(latency: np.ndarray, mfu: np.ndarray) -> list[int]:
    """Positions of the frontier's points (the rule: planner.search.search.frontier). Points whose
    latency and MFU agree to 12 significant digits (equal figures summed in another order) tie,
    and a tie keeps the first position: search order, so the widest format (a narrower one that
    buys nothing is not proposed)."""
    kept = np.flatnonzero(~_beaten_by_faster(latency, mfu))  # sorting every point is the cost: fewer
    latency, mfu = _significant(latency[kept]), _significant(mfu[kept])
    order = np.lexsort((-mfu, latency))
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], mfu[order][:-1]]))
    on_front = list(order[mfu[order] > best_before * (1 + RESOLUTION)])
    for k in range(len(on_front) - 2, -1, -1):  # slower neighbour within resolution: it wins
        if latency[on_front[k + 1]] <= latency[on_front[k]] * (1 + RESOLUTION):
            del on_front[k]
    return [int(kept[j]) for j in on_front]


def _beaten_by_faster(latency: np.ndarray, mfu: np.ndarray, bins: int = 1024) -> np.ndarray:
    """Points that cannot be on the frontier or change it: a point in a strictly faster latency bin
    (bins even in log latency) has more MFU by more than the resolution (with a margin for the
    rounding `front` does), so the first pass drops them after that point whatever else there
    is. Only many points are worth it."""
    beaten = np.zeros(latency.shape, dtype=bool)
    finite = np.isfinite(latency) & (latency > 0)
    if latency.size < 4096 or not finite.all():
        return beaten
    logs = np.log(latency)
    low, high = logs.min(), logs.max()
    if not high > low:
        return beaten
    which = ((logs - low) / (high - low) * (bins - 1)).astype(np.int64)
    best = np.full(bins, -np.inf)
    np.maximum.at(best, which, mfu)
    faster = np.maximum.accumulate(np.concatenate([[-np.inf], best[:-1]]))  # best of the faster bins
    return mfu * (1 + RESOLUTION) * (1 + 1e-9) < faster[which]


def _significant(values: np.ndarray, digits: int = 12) -> np.ndarray:
    """Positive `values` rounded to `digits` significant digits (zeros stay zero)."""
    magnitude = np.floor(np.log10(np.where(values > 0, values, 1.0)))
    scale = 10.0 ** (digits - 1 - magnitude)
    return np.round(values * scale) / scale
