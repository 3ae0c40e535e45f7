"""Config reading: YAML files (and command-line overrides) to the specs in `planner.specs`.

`yamlio` reads YAML with positions and typed fields; one schema module per kind: `models`,
`clusters`, `plans`; `presets` finds bundled files by name."""

from planner.config.clusters import load_cluster
from planner.config.models import load_model
from planner.config.plans import load_plan
from planner.config.presets import list_presets, presets_dir

__all__ = ["list_presets", "load_cluster", "load_model", "load_plan", "presets_dir"]
