"""`planner presets`: the bundled models, clusters and plans."""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

from planner.cli.common import render_table, use_ascii
from planner.cli.options import param


def presets(ascii_only: bool = param("ascii", "presets")) -> None:
    """List the bundled models, clusters and plans with their key figures.

    Any of these names works where a file is expected (--model palm-540b, --cluster tpu-v4,
    planner plan palm-540b-tpu-v4).
    """
    from planner.render import presets as render_presets

    ascii_only = use_ascii(ascii_only)
    render_table(lambda console: render_presets.presets_table(console, ascii_only=ascii_only), None)
