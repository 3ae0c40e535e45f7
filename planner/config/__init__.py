"""Config reading: YAML files (and command-line overrides) to the specs in `planner.specs`.

`yamlio` reads YAML with positions and typed fields; one schema module per kind: `models`,
`clusters`, `plans`; `presets` finds bundled files by name; `options` is every command-line
option (the CLI builds its commands from it). The names below load on first use, so that the
command line can read `options` without loading the schemas."""

from importlib import import_module

_WHERE = {
    "load_cluster": "clusters",
    "load_model": "models",
    "load_plan": "plans",
    "list_presets": "presets",
    "presets_dir": "presets",
}

__all__ = ["list_presets", "load_cluster", "load_model", "load_plan", "presets_dir"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'planner.config' has no attribute {name!r}")
    value = getattr(import_module(f"planner.config.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
