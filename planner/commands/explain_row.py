"""`planner explain PLAN --row N`: the frontier point printed as row N by `planner plan` with the
same flags (the `#` column; `runs.numbered`), evaluated again on exactly its candidate with the
cost model's breakdown, so that a user need not retype layout, chips, batch and format."""

from __future__ import annotations

import numpy as np

from planner.commands.runs import numbered
from planner.cost.costmodel import Evaluation
from planner.errors import UsageError
from planner.search.search import Point, SearchResult, candidates, cost, point


def plan_row(result: SearchResult, row: int) -> Point:
    """Row `row` (1-based, as printed) of a plan's frontiers; a number outside them is a usage error."""
    rows = numbered(result)
    if not 1 <= row <= len(rows):
        raise UsageError(f"--row: expected a row number from 1 to {len(rows)} (the # column of planner plan "
                         f"with the same flags), got {row}")
    return rows[row - 1][1]


def explain_point(result: SearchResult, p: Point) -> Evaluation:
    """The detailed evaluation of frontier point `p` on the candidate it came from (its chips,
    stages, mesh grouping, layouts and weight format) at its batch."""
    plan = result.plan
    for c in candidates(plan, p.phase, chips=(p.chips,)):
        name = (c.ffn.name, c.attention.name, c.weights.label, c.experts.name if c.experts else "", c.stages)
        if name != (p.ffn, p.attention, p.weights, p.experts, p.stages):
            continue
        ev = cost(plan, c, np.array([p.batch]), detail=True)
        found = point(ev, 0)
        if (found.mesh, found.partition) == (p.mesh, p.partition):
            return ev
    raise AssertionError(f"no candidate of the plan yields the frontier point {p}")  # a bug, not a user error
