"""The discrete choices of a search: chip count, pipeline stages, mesh grouping and the FFN,
attention and expert layouts. They are the same for every phase and number format, and what a
layout decides on a mesh (whether it applies, its attention core's axes) depends only on the
mesh's logical sizes, so it is decided once per sizes; mesh groupings that cost the same (the
layouts' axes span the same physical pieces) are merged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from planner.cost.costmodel import Candidate
from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS
from planner.cost.layouts.attention import AttentionLayout
from planner.cost.layouts.experts import ExpertLayout
from planner.cost.layouts.ffn import FfnLayout
from planner.cost.mesh import Mesh, factor_matrix, first_rows, piece_names, slice_meshes, stage_chips
from planner.specs.formats import Formats
from planner.specs.hardware import Torus
from planner.specs.plan import Phase, Plan


class Choice(NamedTuple):
    """One discrete choice, before a phase and formats make it a Candidate (a tuple: a search
    makes thousands)."""

    stages: int
    mesh: Mesh
    ffn: FfnLayout
    attention: AttentionLayout
    experts: ExpertLayout | None

    def candidate(self, phase: Phase, f: Formats) -> Candidate:
        """This choice in `phase` and formats `f`."""
        return Candidate(
            phase=phase,
            mesh=self.mesh,
            ffn=self.ffn,
            attention=self.attention,
            weights=f.weights,
            kv_cache=f.kv_cache,
            sparsity=f.sparsity,
            experts=self.experts,
            stages=self.stages,
        )


def choices(plan: Plan, chips: tuple[int, ...] | None = None) -> list[Choice]:
    """Every distinct discrete choice over `chips` (default: the plan's), in search order: by
    chip count and stages, then mesh, then layouts (registry order); of the choices that span
    the same physical pieces with each of their axis groups, the first mesh's. A stage of p
    stages over n chips has the choices of n / p chips in one stage (and their very meshes; on a
    torus, those meshes as a stage: mesh.slice_meshes)."""
    space, model = plan.space, plan.model
    ffns = [FFN_LAYOUTS[name] for name in space.ffn]
    attentions = [ATTENTION_LAYOUTS[name] for name in space.attention]
    names = piece_names(plan.cluster)
    by_signature: dict[bytes, list[tuple]] = {}
    made: dict[tuple, tuple[list[Mesh], list]] = {}  # (per-stage chips, torus stage) -> meshes, kept
    torus = isinstance(plan.cluster.topology, Torus)
    out = []
    for n, p in ((n, p) for n in chips or space.chips for p in space.stages if p <= model.n_layers):
        per_stage = stage_chips(plan.cluster, n, p)
        if per_stage is None:
            continue
        key = (per_stage, p > 1 and torus)  # a torus stage has its own meshes (slice_meshes)
        if key not in made:
            made[key] = _kept(plan, per_stage, names, ffns, attentions, by_signature, stage=key[1])
        meshes, kept = made[key]
        out.extend(
            Choice(stages=p, mesh=meshes[m], ffn=ffn, attention=attention, experts=experts)
            for m, _, (ffn, attention, experts) in kept
        )
    return out


def _kept(
    plan: Plan, chips: int, names, ffns, attentions, by_signature: dict, stage: bool = False
) -> tuple[list[Mesh], list]:
    """The meshes of `chips` chips (`stage`: as one stage of a pipeline on a torus) and (mesh,
    rank, layouts) of the distinct choices on them, in search order."""
    meshes = slice_meshes(plan.cluster, chips, stage=stage)
    if not meshes:
        return [], []
    factors = factor_matrix(meshes, names)
    sizes = np.prod(np.where(factors == 0, 1, factors), axis=2)  # (meshes, 3): logical x, y, z
    signatures = _signatures(plan, sizes)
    first, inverse = first_rows(signatures)
    order = np.argsort(inverse, kind="stable")
    entries: dict[tuple, tuple] = {}  # (layout names, axis groups) -> (layout, meshes)
    for u, members in enumerate(np.split(order, np.cumsum(np.bincount(inverse))[:-1])):
        key = signatures[first[u]].tobytes()
        layouts = by_signature.get(key)
        if layouts is None:
            layouts = by_signature[key] = _layouts(plan, dict(zip("xyz", sizes[first[u]].tolist())), ffns, attentions)
        for layout_names, axes, *layout in layouts:
            entries.setdefault((layout_names, axes), (layout, []))[1].extend(members.tolist())
    kept = [(m, _rank(layout), layout) for m, layout in _first(factors, entries)]
    kept.sort(key=lambda k: k[:2])
    return meshes, kept


def _first(factors: np.ndarray, entries: dict[tuple, tuple]) -> list[tuple[int, list]]:
    """(mesh, layout) of the first mesh of each distinct key among each layout combination's
    meshes; the key: the pieces each of its axis groups spans (position by position), as the
    sorted factors of each piece the group's axes hold (0: none), coded by `first_rows`."""
    if not entries:
        return []
    groups = sorted({g for _, axes in entries for g in axes})
    held = [
        np.sort(np.where(np.array([a in g for a in "xyz"])[None, :, None], factors, 0), axis=1).reshape(
            len(factors), -1
        )
        for g in groups
    ]
    codes = dict(zip(groups, first_rows(np.concatenate(held))[1].reshape(len(groups), len(factors))))
    by_names: dict[tuple, list] = {}
    for (names, axes), (layout, members) in entries.items():
        members = np.array(members)
        by_names.setdefault(names, []).append((members, np.stack([codes[g][members] for g in axes], axis=1), layout))
    out = []
    for found in by_names.values():
        owners = np.concatenate([members for members, _, _ in found])
        order = np.argsort(owners, kind="stable")  # in mesh order: a key's first row is its first mesh
        keys = np.concatenate([key for _, key, _ in found])[order]
        layouts = [layout for members, _, layout in found for _ in range(len(members))]
        kept = order[first_rows(keys)[0]].tolist()
        out.extend(zip(owners[kept].tolist(), [layouts[i] for i in kept]))
    return out


def _rank(layout) -> tuple[int, int, int]:
    """A layout combination's place in the registries' order."""
    ffn, attention, experts = layout
    return (_ORDER[0][ffn.name], _ORDER[1][attention.name], _ORDER[2][experts.name] if experts is not None else 0)


_ORDER = tuple(
    {name: i for i, name in enumerate(registry)} for registry in (FFN_LAYOUTS, ATTENTION_LAYOUTS, EXPERT_LAYOUTS)
)


GROUPS = ("x", "y", "z", "xy", "xz", "yz", "xyz")


def _signatures(plan: Plan, sizes: np.ndarray) -> np.ndarray:
    """(meshes, 21): what `_layouts` reads of each mesh's logical sizes, per group of axes g:
    whether it spans more than one chip, its chip count if that divides the kv heads (0 if not:
    the batch layout's kv axes are the largest such group) and whether the experts (with the
    plan's redundant ones) divide over it. Meshes alike in these have the same layouts, with the
    same axis groups."""
    model, routing = plan.model, plan.workload.routing
    kv_heads = model.n_kv_heads
    experts = model.experts.n_experts if model.experts is not None else 1
    columns = []
    for g in GROUPS:
        k = np.prod(sizes[:, ["xyz".index(a) for a in g]], axis=1)
        columns += [k > 1, np.where(kv_heads % k == 0, k, 0), routing.divides(experts, k)]
    return np.stack(columns, axis=1).astype(np.int64)


def _layouts(plan: Plan, sizes: dict[str, int], ffns, attentions) -> list[tuple]:
    """(names, axis groups, ffn, attention, experts) of every layout combination that applies on
    a mesh of logical `sizes` (and, with --runnable-on, that the engine runs); the axis groups are
    what decides whether two groupings differ."""
    model, out = plan.model, []
    for ffn in ffns:
        if not ffn.applies(sizes) or (ffn.replicated and model.experts is None):  # replicas: see FfnLayout
            continue
        for attention in attentions:
            if not attention.applies(model, ffn, sizes):
                continue
            axes = (ffn.batch_axes, ffn.f_axes, ffn.e_axes, ffn.gather_axes) + attention.core_axes(model, ffn, sizes)
            for experts in _expert_layouts(plan, sizes):
                if not plan.space.runs_layout(ffn.name, attention.name, experts.name if experts is not None else ""):
                    continue  # --runnable-on: the engine does not run it
                if experts is None:
                    out.append(((ffn.name, attention.name), axes, ffn, attention, None))
                else:
                    out.append(
                        (
                            (ffn.name, attention.name, experts.name),
                            axes + (experts.expert_axes, experts.f_axes, experts.gather_axes),
                            ffn,
                            attention,
                            experts,
                        )
                    )
    return out


def _expert_layouts(plan: Plan, sizes: dict[str, int]) -> list:
    """The expert layouts that apply on this mesh (MoE models), or [None] for a dense model."""
    if plan.model.experts is None:
        return [None]
    names = plan.space.experts or tuple(EXPERT_LAYOUTS)
    return [
        layout
        for layout in (EXPERT_LAYOUTS[name] for name in names)
        if layout.applies(plan.model, sizes, plan.workload.routing)
    ]


def candidates(
    plan: Plan,
    phase: Phase,
    chips: tuple[int, ...] | None = None,
    formats: tuple | None = None,
    discrete: list[Choice] | None = None,
) -> list[Candidate]:
    """Every distinct discrete choice for `phase` (mesh groupings that cost the same are merged),
    in each of `formats` (default: the plan's); `discrete`: the plan's choices, if already made."""
    formats = plan.space.formats(plan.cluster.chip) if formats is None else formats
    return [c.candidate(phase, f) for c in (choices(plan, chips) if discrete is None else discrete) for f in formats]


class PhaseCandidates(Sequence):
    """`candidates(plan, phase, formats=(first,), discrete=discrete)` made on demand: a search
    builds the Candidate of only its buckets' first members and its frontier's points."""

    def __init__(self, phase: Phase, discrete: list[Choice], first: Formats):
        self.phase, self.discrete, self.first = phase, discrete, first

    def __len__(self) -> int:
        return len(self.discrete)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        c, f = self.discrete[k], self.first
        return Candidate(
            phase=self.phase,
            mesh=c.mesh,
            ffn=c.ffn,
            attention=c.attention,
            weights=f.weights,
            kv_cache=f.kv_cache,
            sparsity=f.sparsity,
            experts=c.experts,
            stages=c.stages,
        )
