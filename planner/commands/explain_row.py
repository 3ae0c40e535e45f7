"""`planner explain PLAN --row N`: the frontier point printed as row N by `planner plan` with the
same flags (the `#` column; `runs.numbered`), evaluated again on exactly its candidate with the
cost model's breakdown, so that a user need not retype layout, chips, batch and format."""

from __future__ import annotations

import numpy as np

from planner.commands.runs import numbered
from planner.cost.costmodel import Evaluation
from planner.errors import UsageError
from planner.search.search import Point, SearchResult, candidates, cost, order_key, point


def plan_row(result: SearchResult, row: int) -> Point:
    """Row `row` (1-based, as printed) of a plan's frontiers; a number outside them is a usage error."""
    rows = numbered(result)
    if not 1 <= row <= len(rows):
        raise UsageError(
            f"--row: expected a row number from 1 to {len(rows)} (the # column of planner plan "
            f"with the same flags), got {row}"
        )
    return rows[row - 1][1]


def explain_point(result: SearchResult, p: Point) -> Evaluation:
    """The detailed evaluation of frontier point `p` on the candidate it came from: its chips,
    stages, layouts, weight format and mesh grouping. Candidates a point's JSON cannot tell apart
    (the stage split of a pipeline, the expert axes of an MoE layout) are told apart by the
    figures; failing an exact match, the fastest of them (the one a frontier keeps)."""
    plan = result.plan
    same = []
    for c in candidates(plan, p.phase, chips=(p.chips,)):
        name = (c.ffn.name, c.attention.name, c.weights.label, c.experts.name if c.experts else "", c.stages)
        if name != (p.ffn, p.attention, p.weights, p.experts, p.stages):
            continue
        ev = cost(plan, c, np.array([p.batch]), detail=True)
        found = point(ev, 0)
        if found == p:
            return ev
        if (found.mesh, found.partition) == (p.mesh, p.partition):
            same.append(ev)
    if not same:  # a bug, not a user error: the point came from this plan's search
        raise AssertionError(f"no candidate of the plan yields the frontier point {p}")
    return min(same, key=lambda ev: order_key(ev, 0))
