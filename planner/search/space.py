"""Whether a plan's search space holds anything to search. Flags (or a plan file's `search`
keys) that leave no layout on any chip count searched are invalid input: the message names the
flags that emptied the space, each with what it would take to search something."""

from __future__ import annotations

from dataclasses import replace

from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS
from planner.errors import UsageError
from planner.search.choices import Choice, choices
from planner.specs.plan import Plan

# (flag, SearchSpace field): the restrictions that can empty a search space
RESTRICTIONS = (
    ("--attention", "attention"),
    ("--ffn", "ffn"),
    ("--experts", "experts"),
    ("--chips", "chips"),
    ("--stages", "stages"),
)


def nonempty_choices(plan: Plan) -> list[Choice]:
    """choices(plan), which must hold one at least; else a UsageError naming the flags that
    emptied the search space."""
    found = choices(plan)
    if not found:
        raise UsageError(empty_message(plan))
    return found


def _widest(plan: Plan, field: str) -> tuple:
    """The widest value of a search-space field: every registered layout, or every chip count
    and stage count of the cluster (stages: 1, no pipeline)."""
    return {
        "attention": tuple(ATTENTION_LAYOUTS),
        "ffn": tuple(FFN_LAYOUTS),
        "experts": tuple(EXPERT_LAYOUTS) if plan.model.experts is not None else (),
        "chips": tuple(plan.cluster.topology.chip_counts),
        "stages": (1,),
    }[field]


def _given(plan: Plan, field: str) -> tuple:
    """A search-space field's value (experts: empty means every registered layout)."""
    value = getattr(plan.space, field)
    return value or (tuple(EXPERT_LAYOUTS) if field == "experts" and plan.model.experts is not None else ())


def empty_message(plan: Plan) -> str:
    """Which of the search's restrictions emptied it: each one that, widened alone, leaves
    something to search, with the values that would."""
    text = lambda values: ",".join(map(str, values))  # noqa: E731
    restricted = [
        (flag, field)
        for flag, field in RESTRICTIONS
        if (field != "experts" or plan.model.experts is not None)
        and set(_given(plan, field)) != set(_widest(plan, field))
    ]
    culprits = []
    for flag, field in restricted:
        widest = _widest(plan, field)
        if not choices(replace(plan, space=replace(plan.space, **{field: widest}))):
            continue
        would = [
            v
            for v in widest
            if v not in _given(plan, field)
            and choices(replace(plan, space=replace(plan.space, **{field: (*_given(plan, field), v)})))
        ]
        culprits.append((flag, field, would))
    given = lambda flags: "; ".join(f"{flag} {text(_given(plan, field))}" for flag, field in flags)  # noqa: E731
    if not culprits:
        return (
            f"the search space is empty: no layout applies on any chip count searched "
            f"({given(restricted) or 'the plan as given'}), so there is nothing to evaluate.\n  hint: widen "
            "the search: more chip counts (--chips) or layouts (--ffn, --attention)."
        )
    routing = plan.workload.routing
    if routing.redundant_experts is not None and choices(
        replace(plan, workload=replace(plan.workload, routing=replace(routing, redundant_experts=None)))
    ):
        culprits.append(("--redundant-experts", "", []))  # the default (the fewest copies that divide) searches
    names = [
        f"{flag} {text(_given(plan, field)) if field else routing.redundant_experts}" for flag, field, _ in culprits
    ]
    names = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    others = given([(flag, field) for flag, field in restricted if flag not in {c[0] for c in culprits}])
    hints = "; or ".join(
        f"add {text(would)} to {flag}"
        if would
        else f"widen {flag}"
        if field
        else f"drop {flag} (by default each EP size takes the fewest copies that make the experts divide)"
        for flag, field, would in culprits
    )
    return (
        f"the search space is empty: {names} {'leaves' if len(culprits) == 1 else 'leave'} no layout to evaluate"
        f"{f' (also restricted: {others})' if others else ''}.\n  hint: {hints} (in a plan file: its search "
        "keys)."
    )
