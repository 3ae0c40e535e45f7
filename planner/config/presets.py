"""Bundled presets: where they live, their names, and how a name or a path finds its file."""

from __future__ import annotations

from pathlib import Path

import planner
from planner.config.yamlio import At
from planner.errors import UsageError, did_you_mean

KINDS = ("models", "clusters", "plans", "engines")


def presets_dir() -> Path:
    """The bundled configs: planner/configs when installed, the repository's configs/ otherwise."""
    package = Path(planner.__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def list_presets(kind: str) -> list[str]:
    if kind not in KINDS:
        raise ValueError(f"unknown preset kind {kind!r}; expected one of {', '.join(KINDS)}")
    return sorted(path.stem for path in (presets_dir() / kind).glob("*.yaml"))


def locate(kind: str, ref: str, base: Path | None = None, at: At | None = None) -> Path:
    """The file a preset name or a path refers to (relative paths resolve against `base`).
    Errors point at `at` (the plan entry naming it); otherwise a missing file is a ConfigError
    on that file and an unknown name is the user's flag mistake (UsageError)."""
    presets = list_presets(kind)
    singular = kind[:-1]
    path = Path(ref)
    if base is not None and not path.is_absolute():
        path = base / path
    exists = _exists(path)
    if ref in presets and not (exists and path.is_file()):
        return presets_dir() / kind / f"{ref}.yaml"
    if ref.strip() and (exists or _looks_like_path(ref)):
        if exists or at is None:
            return path  # load_document reports a missing file or a directory
        message, hint = f"no {singular} file {str(path)!r}", None
    else:
        message, hint = f"unknown {singular} {ref!r}", did_you_mean(ref, presets)
    hint = (hint + " " if hint else "") + (f"presets: {', '.join(presets) or '(none)'}; or give a path to a YAML file")
    if at is not None:
        raise at.error(message, hint=hint)
    raise UsageError(f"{message}\n  hint: {hint}")


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml", ".json")) or ref.startswith(".")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte, ...
        return False
