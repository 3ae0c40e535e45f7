"""explain's lines for mixtures of experts and latent attention: layers, what MFU counts, routing,
redundant experts and the MLA cache."""

from __future__ import annotations

from planner.cost.costmodel import Evaluation


def _redundant_line(ev: Evaluation) -> str:
    """'; R redundant experts held (why)' where the row's expert layout holds any."""
    c, r, M = ev.candidate, ev.workload.routing, ev.model.experts.n_experts
    R = c.experts.redundant(ev.model, c.mesh.sizes, r)
    if not R:
        return ""
    ep = c.experts.ep(c.mesh.sizes)
    why = "as the plan says" if r.redundant_experts is not None else f"the fewest that make {M} divide over EP{ep}"
    return f"; {R} redundant experts held ({why}; {(M + R) // ep} per expert shard)"


def moe_lines(ev: Evaluation) -> list[str]:
    """Mixture of experts and latent attention: layers, what MFU counts, routing, the MLA cache."""
    m, lines = ev.model, []
    if m.experts is not None:
        x, r = m.experts, ev.workload.routing
        moe = x.n_moe_layers(m.n_layers)
        shared = f", {x.n_shared} shared" if x.n_shared else ""
        lines.append(
            f"experts  {moe} MoE layers ({x.n_experts} routed experts, top {x.top_k}{shared}) and "
            f"{m.n_layers - moe} dense; MFU counts the {m.n_active_params / 1e9:.2f}B active parameters "
            f"(of {m.n_params / 1e9:.2f}B); load imbalance {r.load_imbalance:g} on the busiest chip's "
            f"expert einsums" + _redundant_line(ev)
        )
    if m.latent is not None:
        _, head_axes = ev.candidate.attention.core_axes(m, ev.candidate.ffn, ev.candidate.mesh.sizes)
        where = (
            "replicated on every head shard"
            if any(ev.candidate.mesh.sizes[a] > 1 for a in head_axes)
            else "split by sequences"
        )
        lines.append(
            f"MLA      KV cache: one latent of {m.latent.cache_elements} elements per token per layer, "
            f"shared by all {m.n_heads} heads, {where}; decode attention in the absorbed form"
        )
    return lines
