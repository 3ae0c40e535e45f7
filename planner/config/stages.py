"""Checking a plan's pipeline stage counts against its chip counts when the plan is read.

A stage count that no chip count of the plan can form would leave the search with nothing to
evaluate for it; one that none can form is a mistake in the plan (exit 2), reported with the
chip counts that would form it and the stage counts the plan's chips allow. The rule is the one
`planner.cost.mesh.stage_meshes` applies: on switched levels each stage is whole groups of the
outermost level (n / p chips a multiple of the node size), on a torus each stage is a slice of
n / p chips that the cluster offers.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.cost.mesh import stage_meshes
from planner.specs.hardware import Cluster, Switched
from planner.specs.model import Model


def formable(cluster: Cluster, chips: int, stages: int) -> bool:
    """Whether `chips` chips of `cluster` form `stages` pipeline stages."""
    return bool(stage_meshes(cluster, chips, stages))


def usable_counts(cluster: Cluster) -> tuple[int, ...]:
    """Every chip count the cluster can form (Topology.forms): the offered ones, and on switched
    levels every whole number of outermost groups up to the largest offered."""
    topology = cluster.topology
    return tuple(n for n in range(1, max(topology.chip_counts, default=0) + 1) if topology.forms(n))


def offered_text(cluster: Cluster) -> str:
    """'1, 2, 4, 8, 16, 32, 64, 128, 256, or any whole number of 8-chip nvlink groups up to
    256' (a torus: its slices)."""
    topology = cluster.topology
    listed = ", ".join(map(str, topology.chip_counts))
    if isinstance(topology, Switched) and len(topology.levels) > 1 and topology.chip_counts:
        return (
            f"{listed}, or any whole number of {topology.group_chips}-chip {topology.levels[-2].name} "
            f"groups up to {max(topology.chip_counts)}"
        )
    return listed


def default_stages(cluster: Cluster, model: Model, chips: tuple[int, ...]) -> tuple[int, ...]:
    """The stage counts searched when neither file nor flag names them: 1, and on switched levels
    every count that splits a chip count spanning more than one outermost group (node) into whole
    groups (a divisor of its node count, at most the model's layers). A torus plans its chips as
    one slice: 1 alone."""
    topology = cluster.topology
    if not isinstance(topology, Switched) or len(topology.levels) < 2:
        return (1,)
    node = topology.group_chips
    counts = {
        p
        for n in chips
        if n > node and n % node == 0
        for p in range(2, min(n // node, model.n_layers) + 1)
        if (n // node) % p == 0 and formable(cluster, n, p)
    }
    return (1, *sorted(counts))


def stage_rule(cluster: Cluster) -> str:
    """What a stage must be on this cluster, in words."""
    topology = cluster.topology
    if isinstance(topology, Switched):
        inner = 1
        for level in topology.levels[:-1]:
            inner *= level.size or 1
        group = topology.levels[-2].name if len(topology.levels) > 1 else "chip"
        return (
            f"each stage must be whole {group} groups of {inner} chips, joined over "
            f"{topology.levels[-1].name} (n / stages a multiple of {inner})"
        )
    slices = ", ".join(map(str, topology.chip_counts))
    return f"each stage must be a slice of n / stages chips that {cluster.name} offers ({slices})"


def check_stages(
    cluster: Cluster,
    model: Model,
    chips: tuple[int, ...],
    stages: tuple[int, ...],
    fail: Callable[[str, str], Exception],
) -> None:
    """Raise `fail(message, hint)` for a stage count above 1 that no chip count can form (or
    that the model cannot take)."""
    for p in (p for p in stages if p > 1):
        if p > model.n_layers:
            raise fail(
                f"{p} pipeline stages: {model.name} has only {model.n_layers} layers",
                f"use at most {model.n_layers} stages",
            )
        if any(formable(cluster, n, p) for n in chips):
            continue
        counts = ", ".join(map(str, chips))
        works = [n for n in usable_counts(cluster) if formable(cluster, n, p)]
        per_chips = []
        for n in chips:
            ok = [q for q in range(2, min(n, model.n_layers) + 1) if formable(cluster, n, q)]
            per_chips.append(f"{n} chips: {', '.join(map(str, ok)) if ok else 'none'}")
        hint = (
            f"{stage_rule(cluster)}; {p} stages need "
            + (f"{_listed(works)} chips" if works else f"chip counts {cluster.name} does not offer")
            + f"; stage counts above 1 that the chips given form: {'; '.join(per_chips)}"
        )
        raise fail(
            f"{cluster.name} cannot form {p} pipeline stages from {counts} chips{_too_few_nodes(cluster, chips, p)}",
            hint,
        )


def _too_few_nodes(cluster: Cluster, chips: tuple[int, ...], p: int) -> str:
    """When every chip count has fewer outermost groups (nodes) than stages: say that stages split
    only the outermost level (stages inside a node are not modelled)."""
    topology = cluster.topology
    if not isinstance(topology, Switched) or len(topology.levels) < 2:
        return ""
    group, name = topology.group_chips, topology.levels[-2].name
    if any(n // group >= p for n in chips):
        return ""
    nodes = "; ".join(f"{n} chips are {_nodes(n, group, name)}" for n in chips)
    return (
        f": pipeline stages split only the outermost level ({topology.levels[-1].name}), each stage whole "
        f"{group}-chip {name} groups, and {nodes}, fewer than {p} (stages inside one {name} group are not "
        "modelled)"
    )


def _nodes(n: int, group: int, name: str) -> str:
    whole = n // group
    if whole == 0:
        return f"less than one {name} group"
    return f"{whole} {name} group{'s' * (whole != 1)}" + ("" if n % group == 0 else f" and {n % group} chips")


def _listed(values: list[int], most: int = 6) -> str:
    shown = ", ".join(map(str, values[:most]))
    return shown + (", ..." if len(values) > most else "")
