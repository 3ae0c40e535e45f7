"""Engine profiles (`configs/engines/<name>.yaml`) to `EngineProfile`s, and the profile a cluster
takes by default (planner.specs.engine says what a profile holds).

The default on a GPU (a switched cluster) is DEFAULT_GPU_ENGINE, the profile fitted to the newest
serving data; a TPU (a torus) keeps its file's constants (`static-batch`: the paper's
reproduction does not move).
"""

from __future__ import annotations

from planner.config.presets import list_presets, locate
from planner.config.yamlio import At, Field, fields, load_document, number, text
from planner.specs.engine import STATIC, EngineProfile
from planner.specs.hardware import Calibration, Cluster, Torus

DEFAULT_GPU_ENGINE = "sglang"  # fitted to the serving set's newest rows (SGLang v0.5.12, 2026)

ENGINE_FILE_FIELDS = {
    "name": Field(text),
    "source": Field(text),
    "layer_overhead_s": Field(number("seconds", inclusive=True), required=False),
    "token_overhead_s": Field(number("seconds", inclusive=True), required=False),
    "overlap": Field(number(inclusive=True, maximum=1.0), required=False),
    "borrowed_from": Field(text, required=False),
}


def load_engine(name_or_path: str) -> EngineProfile:
    """A profile by preset name or path; `borrowed_from` takes that profile's constants."""
    root = load_document(locate("engines", name_or_path))
    return _read_engine(root)


def _read_engine(root: At, donor: bool = False) -> EngineProfile:
    f = fields(root, ENGINE_FILE_FIELDS, "an engine profile")
    borrowed = f.get("borrowed_from")
    constants = {k: f[k] for k in ("layer_overhead_s", "token_overhead_s", "overlap") if k in f.values}
    if borrowed is not None:
        at = f.where["borrowed_from"]
        if constants:
            raise at.error("both constants and borrowed_from", hint="a profile either is fitted or borrows; keep one")
        if donor:
            raise at.error(f"{borrowed!r} borrows in turn", hint="borrow from a fitted profile")
        constants = _read_engine(load_document(locate("engines", borrowed, at=at)), donor=True).constants()
    return EngineProfile(name=f["name"], source=f["source"], borrowed_from=borrowed, **constants)


def default_engine(cluster: Cluster) -> str:
    """The profile a cluster takes without --engine: a TPU its file's, a GPU with fitted or borrowed
    constants DEFAULT_GPU_ENGINE, a cluster with ideal constants its file's (fixed times on an
    ideal chip would be half a fit)."""
    ideal = cluster.calibration == Calibration()
    return STATIC if isinstance(cluster.topology, Torus) or ideal else DEFAULT_GPU_ENGINE


def with_engine(cluster: Cluster, name: str | None) -> Cluster:
    """`cluster` with profile `name` applied (None: its default, `default_engine`)."""
    return load_engine(name or default_engine(cluster)).apply(cluster)


def engine_names() -> list[str]:
    return list_presets("engines")
