"""The discrete choices of a search: chip count, pipeline stages, mesh grouping and the FFN,
attention and expert layouts. They are the same for every phase and number format, and what a
layout decides on a mesh (whether it applies, its attention core's axes) depends only on the
mesh's logical sizes, so it is decided once per sizes; mesh groupings that cost the same (the
layouts' axes span the same physical pieces) are merged."""

from __future__ import annotations

from dataclasses import dataclass

from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS
from planner.cost.layouts.attention import AttentionLayout
from planner.cost.layouts.experts import ExpertLayout
from planner.cost.layouts.ffn import FfnLayout
from planner.cost.mesh import Mesh, stage_meshes
from planner.specs.plan import Plan


@dataclass(frozen=True, kw_only=True)
class Choice:
    """One discrete choice, before a phase and formats make it a Candidate."""

    stages: int
    mesh: Mesh
    ffn: FfnLayout
    attention: AttentionLayout
    experts: ExpertLayout | None


def choices(plan: Plan, chips: tuple[int, ...] | None = None) -> list[Choice]:
    """Every distinct discrete choice over `chips` (default: the plan's), in search order."""
    space, model = plan.space, plan.model
    ffns = [FFN_LAYOUTS[name] for name in space.ffn]
    attentions = [ATTENTION_LAYOUTS[name] for name in space.attention]
    by_sizes: dict[tuple[int, ...], list[tuple]] = {}
    out, seen = [], set()
    for n, p in ((n, p) for n in chips or space.chips for p in space.stages
                 if p <= model.n_layers and (p == 1 or model.experts is None)):
        for mesh in stage_meshes(plan.cluster, n, p):
            sizes = mesh.sizes
            layouts = by_sizes.get(tuple(sizes.values()))
            if layouts is None:
                layouts = by_sizes[tuple(sizes.values())] = _layouts(plan, sizes, ffns, attentions)
            spans: dict[str, tuple] = {}  # the physical pieces each logical axis group spans
            for names, axes, ffn, attention, experts in layouts:
                key = (n, p) + names + tuple(spans[a] if a in spans else spans.setdefault(a, mesh.pieces(a))
                                             for a in axes)
                if key in seen:
                    continue
                seen.add(key)
                out.append(Choice(stages=p, mesh=mesh, ffn=ffn, attention=attention, experts=experts))
    return out


def _layouts(plan: Plan, sizes: dict[str, int], ffns, attentions) -> list[tuple]:
    """(names, axis groups, ffn, attention, experts) of every layout combination that applies on
    a mesh of logical `sizes`; the axis groups are what decides whether two groupings differ."""
    model, out = plan.model, []
    for ffn in ffns:
        if not ffn.applies(sizes):
            continue
        for attention in attentions:
            if not attention.applies(model, ffn, sizes):
                continue
            axes = (ffn.batch_axes, ffn.f_axes, ffn.e_axes, ffn.gather_axes) + \
                attention.core_axes(model, ffn, sizes)
            for experts in _expert_layouts(plan, sizes):
                if experts is None:
                    out.append(((ffn.name, attention.name), axes, ffn, attention, None))
                else:
                    out.append(((ffn.name, attention.name, experts.name),
                                axes + (experts.expert_axes, experts.f_axes, experts.gather_axes),
                                ffn, attention, experts))
    return out


def _expert_layouts(plan: Plan, sizes: dict[str, int]) -> list:
    """The expert layouts that apply on this mesh (MoE models), or [None] for a dense model."""
    if plan.model.experts is None:
        return [None]
    names = plan.space.experts or tuple(EXPERT_LAYOUTS)
    return [layout for layout in (EXPERT_LAYOUTS[name] for name in names) if layout.applies(plan.model, sizes)]
