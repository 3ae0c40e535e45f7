"""Whether a plan's search space holds anything to search. Flags (or a plan file's `search`
keys) that leave no layout on any chip count searched are invalid input: the message names the
flags that emptied the space, each with what it would take to search something. A space that
only --runnable-on empties has nothing the engine runs: exit 1, with the engine's limits."""

from __future__ import annotations

from dataclasses import replace

from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS
from planner.errors import InfeasibleError, UsageError
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
    """choices(plan), which must hold one at least, in a format searched; else a UsageError naming
    the flags that emptied the search space, or, where --runnable-on alone emptied it, an
    InfeasibleError saying which of the engine's limits did and what would help."""
    found = choices(plan)
    if found and plan.space.formats(plan.cluster.chip):
        return found
    if plan.space.runnable_on:
        free = replace(plan, space=replace(plan.space, runnable_on=""))
        if choices(free):
            raise InfeasibleError(runnable_message(plan, free))
        plan = free  # empty without the engine too: the other flags are what to widen
    raise UsageError(empty_message(plan))


def runnable_message(plan: Plan, free: Plan) -> str:
    """Why --runnable-on left nothing of `free` (the plan without it) to search: the engine's
    limits that removed every layout or every format searched, and the flags that would leave
    something."""
    e, space, chip = plan.space.engine, plan.space, plan.cluster.chip
    removed, hints = [], []  # (what the engine runs none of, its limits that removed them)
    if not choices(plan):  # the engine's limits on layouts, asked with a format it serves
        kv, weights = sorted(e.kv_cache)[0], sorted(e.weights)[0]
        layouts = dict.fromkeys(
            (c.ffn.name, c.attention.name, c.experts.name if c.experts else "") for c in choices(free)
        )
        removed.append(("layouts", dict.fromkeys(r for layout in layouts for r in e.reasons(*layout, kv, weights))))
        hints += _layout_hints(plan)
    if not space.formats(chip):  # the engine's limits on formats, asked with a layout it runs
        ffn, attention = sorted(e.dense)[0]
        limits = (e.reasons(ffn, attention, "", f.kv_cache.label, f.weights.label) for f in free.space.formats(chip))
        removed.append(("formats", dict.fromkeys(r for found in limits for r in found)))
        served = [w.label for w in chip.weight_formats(space.sparsity.label != "dense") if w.label in e.weights]
        if not any(w.label in e.weights for w in space.weights) and served:
            hints.append(f"search weights {e.label} serves on {chip.name} (--weights {','.join(served)})")
        if not any(k.label in e.kv_cache for k in space.kv_cache):
            hints.append(f"search a KV cache {e.label} stores (--kv-cache {','.join(sorted(e.kv_cache))})")
    hints.append(f"drop --runnable-on {e.name} to search every layout, the ones {e.label} cannot run included")
    return (
        f"the search space is empty: --runnable-on {e.name} keeps only what {e.label} runs as it is "
        f"({_pairs(e)}; experts {', '.join(sorted(e.experts))}; weights {', '.join(sorted(e.weights))}; KV cache "
        f"{', '.join(sorted(e.kv_cache))}), and "
        + " and ".join(f"none of the {what} searched is ({'; '.join(limits)})" for what, limits in removed)
        + ".\n  hint: "
        + "; or ".join(hints)
        + " (in a plan file: its search keys)."
    )


def _layout_hints(plan: Plan) -> list[str]:
    """'add ws1d to --ffn': per (FFN, attention) pair the engine runs, the values that, added to
    the flags, leave something it runs to search (experts: its expert layouts, where none given
    is one)."""
    e, space, hints = plan.space.engine, plan.space, []
    experts = () if not space.experts or set(space.experts) & e.experts else tuple(sorted(e.experts))
    for ffn, attention in sorted(e.dense):
        adds = [
            (flag, value)
            for flag, value, given in (
                ("--ffn", (ffn,), space.ffn),
                ("--attention", (attention,), space.attention),
                ("--experts", experts, space.experts),
            )
            if value and not set(value) <= set(given)
        ]
        widened = {flag.strip("-"): (*getattr(space, flag.strip("-")), *value) for flag, value in adds}
        if adds and choices(replace(plan, space=replace(space, **widened))):
            hints.append("add " + " and ".join(f"{','.join(value)} to {flag}" for flag, value in adds))
    if not hints:
        hints.append(f"search more chip counts (--chips): {e.label} runs only {_pairs(e)}")
    return hints


def _pairs(e) -> str:
    """'ws1d+heads, dp+batch': the (FFN, attention) pairs an engine runs."""
    return ", ".join(f"{ffn}+{attention}" for ffn, attention in sorted(e.dense, key=lambda p: (p[0] != "ws1d", p)))


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
