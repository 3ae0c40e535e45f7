"""Renderer of `planner presets`: the bundled models, clusters and plans."""

from __future__ import annotations

from planner.render.common import Column, print_grid, print_wrapped
from planner.units import fmt_bytes, fmt_rate


def presets_table(console, *, ascii_only: bool = False) -> None:
    """The bundled models, clusters and plans with their key figures."""
    from planner.config import list_presets, load_cluster, load_model, load_plan

    models = [load_model(name) for name in list_presets("models")]
    print_grid(
        console,
        [
            Column("model", right=False),
            Column("params"),
            Column("layers"),
            Column("E"),
            Column("F"),
            Column("heads"),
            Column("kv"),
            Column("H"),
            Column("ffn", right=False),
            Column("block", right=False),
        ],
        [
            (
                name,
                f"{m.n_params / 1e9:.1f} B",
                str(m.n_layers),
                str(m.d_model),
                str(m.d_ff),
                str(m.n_heads),
                str(m.n_kv_heads),
                str(m.d_head),
                m.ffn.label,
                m.block.value,
            )
            for name, m in zip(list_presets("models"), models)
        ],
        ascii_only=ascii_only,
    )
    console.print()
    rows, clusters = [], [(name, load_cluster(name)) for name in list_presets("clusters")]
    for name, c in clusters:
        rows.append(
            (
                name + ("" if c.calibrated else "+" if c.calibration_borrowed_from else "*"),
                fmt_rate(c.chip.peak_bf16_flop_per_s, "FLOP/s"),
                fmt_bytes(c.chip.hbm_bytes),
                fmt_rate(c.chip.hbm_bytes_per_s, "B/s"),
                _topology(c.topology),
                _counts(c.topology.chip_counts),
            )
        )
    print_grid(
        console,
        [
            Column("cluster", right=False),
            Column("bf16 peak"),
            Column("HBM"),
            Column("HBM bw"),
            Column("network", right=False, wrap=True),
            Column("chips", right=False, wrap=True),
        ],
        rows,
        ascii_only=ascii_only,
    )
    print_wrapped(
        console,
        "* uncalibrated: ideal constants, never fitted to measurements. + calibration "
        "borrowed from another preset by a stated rule (its file says which), not fitted.",
        style="dim",
    )
    console.print()
    console.print("Sources", style="bold", highlight=False)
    for name, c in clusters:
        reserve = (
            f" (runtime reserve {fmt_bytes(c.chip.memory_reserve_bytes)} of HBM)" if c.chip.memory_reserve_bytes else ""
        )
        print_wrapped(console, f"{name}{reserve}: {c.source or 'not given'}", hang=4)
    for name, m in zip(list_presets("models"), models):
        print_wrapped(console, f"{name}: {m.source or 'not given'}", hang=4)
    console.print()
    rows = []
    for name in list_presets("plans"):
        p = load_plan(name)
        rows.append((name, p.model.name, p.cluster.name, ",".join(ph.value for ph in p.space.phases)))
    print_grid(
        console,
        [
            Column("plan", right=False),
            Column("model", right=False),
            Column("cluster", right=False),
            Column("phases", right=False),
        ],
        rows,
        ascii_only=ascii_only,
    )
    console.print()
    print_wrapped(
        console,
        "E d_model, F d_ff, H d_head; params counted from the shapes. Use a name "
        "wherever a file is expected: --model palm-540b, planner plan palm-540b-tpu-v4.",
        style="dim",
    )


def _counts(counts: tuple[int, ...]) -> str:
    """'8, 16, ..., 512' for a long list, else the list."""
    shown = (counts[0], counts[1], "...", counts[-1]) if len(counts) > 4 else counts
    return ", ".join(map(str, shown))


def _topology(topology) -> str:
    axes = getattr(topology, "axes", None)
    if axes is not None:
        return f"{len(axes)}D torus"
    return " + ".join(level.name for level in topology.levels)
