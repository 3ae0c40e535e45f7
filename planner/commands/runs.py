"""Saved runs: a plan's frontiers as `planner plan --format json` writes them (the JSON contract:
`plan_dict`, `point_dict`), and read back with every problem named by file and key (the
regression gate compares two of these)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from planner import __version__
from planner.cost.network import scale_out_bytes_per_s
from planner.errors import ConfigError
from planner.search.search import Point, SearchResult
from planner.specs.hardware import FIELDS_OF_CALIBRATION
from planner.specs.plan import Phase, Plan, Workload
from planner.units import num, to_json

SAVED_RUN_HINT = "a saved run is what `planner plan PLAN --format json -o FILE` writes"


def name(p: Point) -> str:
    """A point in words: 'decode 64 chips batch 512 ws2d+batch bf16'."""
    stages = f"PP{p.stages} " if p.stages > 1 else ""
    layouts = f"{p.ffn}+{p.attention}" + (f"+{p.experts}" if p.experts else "")
    kv = f" kv {p.kv_cache}" if p.kv_cache != "bf16" else ""
    return f"{p.phase.value} {p.chips} chips batch {p.batch} {stages}{layouts} {p.weights}{kv}"


# --- saved runs ---------------------------------------------------------------------------------


# --- writing: the JSON contract (add keys, never rename them) ------------------------------------


def point_dict(p: Point, stages: bool = False) -> dict:
    """A point's JSON; `stages` (or a pipelined point) adds its pipeline stages and micro-batches
    (a plan that searches only stages = 1 writes exactly the keys it wrote before stages existed)."""
    return {
        "phase": p.phase.value,
        "chips": p.chips,
        "mesh": {name: n for name, n in p.mesh},
        "partition": {group: list(axes) for group, axes in p.partition},
        "batch": p.batch,
        "ffn": p.ffn,
        "attention": p.attention,
        "weights": p.weights,
        "kv_cache": p.kv_cache,
        "latency_s": num(p.latency_s),
        "step_latency_s": num(p.step_latency_s),
        "mfu": num(p.mfu),
        "cost_chip_s_per_token": num(p.cost_chip_s_per_token),
        "tokens_per_s": num(p.tokens_per_s),
        "hbm_bytes_per_chip": num(p.hbm_bytes_per_chip),
        "hbm_fraction": num(p.hbm_fraction),
        "bound": p.bound,
        "time_s": {
            "compute": num(p.compute_s),
            "memory": num(p.memory_s),
            "comm": num(p.comm_s),
            "overhead": num(p.overhead_s),
            **({"kernels": num(p.kernels_s)} if p.kernels_s is not None else {}),
        },
        **({"experts": p.experts} if p.experts else {}),
        **({"stages": p.stages, "micro_batches": p.micro_batches} if stages or p.stages > 1 else {}),
    }


def provenance_dict(plan: Plan) -> dict:
    """What a saved run's figures depend on besides the search (`planner plan` and `planner serve`
    write it): the planner version, the cluster's calibration constants, the chip's figures and the
    model's shape, so that the regression gate can say why something moved."""
    m, chip = plan.model, plan.cluster.chip
    return {
        "planner_version": __version__,
        "model": m.name,
        "cluster": plan.cluster.name,
        "engine": plan.cluster.engine,  # the engine profile applied (planner.specs.engine)
        # --runnable-on: the search kept to what this engine runs (absent: every layout searched)
        **({"runnable_on": plan.space.runnable_on} if plan.space.runnable_on else {}),
        "calibration": {
            name: getattr(plan.cluster.calibration, name)
            for name in FIELDS_OF_CALIBRATION
            if getattr(plan.cluster.calibration, name) is not None
        },  # None: absent (a default)
        "hardware": {
            "chip": chip.name,
            "peak_bf16_flop_per_s": num(chip.peak_bf16_flop_per_s),
            "hbm_bytes": num(chip.hbm_bytes),
            "hbm_bytes_per_s": num(chip.hbm_bytes_per_s),
            "scale_out_bytes_per_s": num(scale_out_bytes_per_s(plan.cluster)),
        },
        "model_shape": {
            "n_layers": m.n_layers,
            "d_model": m.d_model,
            "d_ff": m.d_ff,
            "n_heads": m.n_heads,
            "n_kv_heads": m.n_kv_heads,
            "d_head": m.d_head,
            "vocab": m.vocab,
            "n_params": m.n_params,
        },
    }


def numbered(result: SearchResult) -> list[tuple[int, Point]]:
    """Every printed frontier point with its row number (1-based, phases in order), as the `#`
    column of `planner plan` shows it and `planner explain --row N` takes it."""
    points = [p for ph in result.phases for p in ph.frontier]
    return list(enumerate(points, start=1))


def plan_dict(result: SearchResult) -> dict:
    plan = result.plan
    w = plan.workload
    rows = iter(row for row, _ in numbered(result))
    return {
        **provenance_dict(plan),
        "calibrated": plan.cluster.calibrated,  # false: ideal or borrowed constants, not fitted to measurements
        "calibration_status": plan.cluster.calibration_status,
        "workload": {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens, "context": w.context},
        "search": {
            "evaluated": result.evaluated,
            "feasible": result.feasible,
            "dropped": dict(result.dropped),
            "sparsity": plan.space.sparsity.label,
        },
        "frontier": {
            ph.phase.value: [
                {**point_dict(p, stages=max(plan.space.stages) > 1), "row": next(rows)} for p in ph.frontier
            ]
            for ph in result.phases
        },
        **(
            {"infeasible": {ph.phase.value: ph.infeasible for ph in result.phases if ph.infeasible}}
            if any(ph.infeasible for ph in result.phases)
            else {}
        ),
        **({"experts": _experts_dict(plan)} if plan.model.experts is not None else {}),
    }


def _experts_dict(plan) -> dict:
    """A mixture of experts: MFU counts the active parameters; the routing settings planned with."""
    m, r = plan.model, plan.workload.routing
    return {
        "params_total": m.n_params,
        "params_active": m.n_active_params,
        "mfu_counts": "active parameters",
        "load_imbalance": r.load_imbalance,
        "redundant_experts": r.redundant_experts,
    }


# --- reading back -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Run:
    """The frontiers of one planner run, read back from (or passed through) its JSON."""

    source: str  # the file or plan it came from
    model: str
    cluster: str
    workload: Workload
    points: tuple[Point, ...]  # every phase's frontier, in file order
    calibration: tuple[tuple[str, float], ...] | None = None  # the cluster's constants (None: older runs)
    planner_version: str | None = None  # None: older runs, and so are the two below
    hardware: tuple[tuple[str, float | str], ...] | None = None  # the chip's figures
    model_shape: tuple[tuple[str, int], ...] | None = None
    calibrated: bool | None = None  # the recorded `calibrated` (None: older runs did not say)
    calibration_status: str | None = None  # e.g. 'calibration borrowed from h100-sxm (not fitted)'
    runnable_on: str | None = None  # --runnable-on: the engine the search was kept to (None: none, or older runs)
    engine: str | None = None  # the engine profile it was planned with (None: runs before profiles)

    @property
    def phases(self) -> tuple[Phase, ...]:
        return tuple(dict.fromkeys(p.phase for p in self.points))

    def frontier(self, phase: Phase) -> tuple[Point, ...]:
        return tuple(p for p in self.points if p.phase is phase)


def run_from_result(result: SearchResult, source: str) -> Run:
    """A fresh search as a Run, rounded exactly as its saved JSON would be."""
    return run_from_dict(json.loads(to_json(plan_dict(result))), source)


def load_run(path: str) -> Run:
    """Read a saved run; any problem is a ConfigError naming the file (and line or key)."""
    return run_from_dict(read_json(path), path)


def read_json(path: str) -> object:
    """A saved run's parsed JSON; a missing, unreadable or invalid file is a ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=path, hint=SAVED_RUN_HINT) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read: {error}", file=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"not valid JSON: {error.msg}", file=path, line=error.lineno, column=error.colno, hint=SAVED_RUN_HINT
        ) from None
    return data


def run_from_dict(data: object, source: str) -> Run:
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", file=source, hint=SAVED_RUN_HINT)
    get = Reader(source)
    workload = get(data, "workload", dict, "an object")
    frontier = get(data, "frontier", dict, "an object with one list of points per phase")
    points: list[Point] = []
    for phase_name, entries in frontier.items():
        if phase_name not in {ph.value for ph in Phase}:
            raise get.error(
                f"frontier.{phase_name}", f"unknown phase; expected one of {', '.join(ph.value for ph in Phase)}"
            )
        if not isinstance(entries, list):
            raise get.error(f"frontier.{phase_name}", "expected a list of points")
        seen = set()
        for i, entry in enumerate(entries):
            p = _point(get, entry, f"frontier.{phase_name}[{i}]")
            if p.phase.value != phase_name:
                raise get.error(
                    f"frontier.{phase_name}[{i}].phase", f"{p.phase.value!r} point listed under {phase_name!r}"
                )
            if p.key in seen:
                raise get.error(f"frontier.{phase_name}[{i}]", f"a second point for {name(p)}")
            seen.add(p.key)
            points.append(p)
    return Run(
        source=source,
        model=get(data, "model", str, "a model name"),
        cluster=get(data, "cluster", str, "a cluster name"),
        **provenance(get, data),
        engine=get(data, "engine", str, "an engine profile name") if data.get("engine") else None,
        workload=Workload(
            **{
                k: get(workload, k, int, "a whole number", "workload")
                for k in ("input_tokens", "output_tokens", "context")
            }
        ),
        points=tuple(points),
    )


def provenance(get: Reader, data: dict) -> dict:
    """The optional provenance keys of a saved run (`provenance_dict`; older runs lack them) as
    keyword arguments of Run and ServeRun: calibration, calibrated, calibration_status,
    planner_version, hardware, model_shape, runnable_on."""

    def pairs(key: str, kind, expected: str):
        if key not in data:
            return None
        obj = get(data, key, dict, "an object")
        return tuple((k, get(obj, k, str if k == "chip" else kind, expected, key)) for k in sorted(obj))

    def calibration():
        if "calibration" not in data:
            return None
        constants = dict(get(data, "calibration", dict, "an object of calibration constants"))
        levels = constants.pop("levels", None) or {}  # per switched level: {name: {key: number}}
        flat = {key: get(constants, key, float, "a number", "calibration") for key in constants}
        for level_name, level in levels.items() if isinstance(levels, dict) else ():
            for key in level if isinstance(level, dict) else {}:
                flat[f"levels.{level_name}.{key}"] = get(
                    level, key, float, "a number", f"calibration.levels.{level_name}"
                )
        return tuple(sorted(flat.items()))

    calibrated = data.get("calibrated")
    if calibrated is not None and not isinstance(calibrated, bool):
        raise get.error("calibrated", f"expected true or false, found {calibrated!r}")
    return {
        "calibration": calibration(),
        "calibrated": calibrated,
        "calibration_status": get(data, "calibration_status", str, "a calibration status")
        if "calibration_status" in data
        else None,
        "planner_version": get(data, "planner_version", str, "a version") if "planner_version" in data else None,
        "hardware": pairs("hardware", float, "a number (chip: a name)"),
        "model_shape": pairs("model_shape", int, "a whole number"),
        "runnable_on": _runnable_on(get, data),
    }


def _runnable_on(get: Reader, data: dict) -> str | None:
    """The recorded --runnable-on engine (None: the search was not restricted; runs before the flag
    never were)."""
    if "runnable_on" not in data:
        return None
    from planner.specs.engine_layouts import ENGINE_LAYOUTS

    value = get(data, "runnable_on", str, "an engine name")
    if value not in ENGINE_LAYOUTS:
        raise get.error("runnable_on", f"unknown engine {value!r} (expected one of {', '.join(ENGINE_LAYOUTS)})")
    return value


class Reader:
    """Takes typed values out of parsed JSON; a wrong or missing one names the file and key."""

    def __init__(self, source: str, hint: str = SAVED_RUN_HINT) -> None:
        self.source = source
        self.hint = hint

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.source, key=key, hint=self.hint)

    def __call__(self, obj: dict, key: str, kind, expected: str, path: str = ""):
        where = f"{path}.{key}" if path else key
        if key not in obj:
            raise self.error(where, f"missing (expected {expected})")
        value = obj[key]
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            raise self.error(where, f"expected {expected}, found {json.dumps(value)[:60]}")
        return float(value) if kind is float else value

    def format(self, obj: dict, key: str, path: str = "") -> str:
        """A weight (`key` 'weights') or KV-cache format label this planner knows."""
        from planner.specs.formats import KvFormat
        from planner.specs.hardware import WeightFormat

        kind, what = (WeightFormat, "weight format") if key == "weights" else (KvFormat, "KV-cache format")
        value = self(obj, key, str, f"a {what}", path)
        if value not in {f.label for f in kind}:
            raise self.error(
                f"{path}.{key}" if path else key,
                f"unknown {what} {value!r} (expected one of {', '.join(f.label for f in kind)})",
            )
        return value


def _point(get: Reader, d: object, path: str) -> Point:
    if not isinstance(d, dict):
        raise get.error(path, "expected an object (a frontier point)")
    phases = {ph.value: ph for ph in Phase}
    phase = get(d, "phase", str, "prefill or decode", path)
    if phase not in phases:
        raise get.error(f"{path}.phase", f"unknown phase {phase!r}")
    number = lambda key, sub=None: get(
        get(d, sub, dict, "an object", path) if sub else d, key, float, "a number", f"{path}.{sub}" if sub else path
    )
    mesh = get(d, "mesh", dict, "an object of axis sizes", path)
    partition = get(d, "partition", dict, "an object of axis groups", path)
    return Point(
        phase=phases[phase],
        chips=get(d, "chips", int, "a whole number", path),
        mesh=tuple((axis, get(mesh, axis, int, "a whole number", f"{path}.mesh")) for axis in mesh),
        partition=tuple(
            (group, tuple(get(partition, group, list, "a list of axes", f"{path}.partition"))) for group in partition
        ),
        batch=get(d, "batch", int, "a whole number", path),
        ffn=get(d, "ffn", str, "a layout name", path),
        attention=get(d, "attention", str, "a layout name", path),
        weights=get.format(d, "weights", path),
        kv_cache=get.format(d, "kv_cache", path) if "kv_cache" in d else "bf16",
        latency_s=number("latency_s"),
        step_latency_s=number("step_latency_s"),
        mfu=number("mfu"),
        cost_chip_s_per_token=number("cost_chip_s_per_token"),
        tokens_per_s=number("tokens_per_s"),
        hbm_bytes_per_chip=number("hbm_bytes_per_chip"),
        hbm_fraction=number("hbm_fraction"),
        bound=get(d, "bound", str, "compute, memory or comm", path),
        compute_s=number("compute", "time_s"),
        memory_s=number("memory", "time_s"),
        comm_s=number("comm", "time_s"),
        overhead_s=number("overhead", "time_s"),
        kernels_s=number("kernels", "time_s") if "kernels" in d.get("time_s", {}) else None,
        experts=get(d, "experts", str, "an expert layout name", path) if "experts" in d else "",
        **{key: get(d, key, int, "a whole number", path) for key in ("stages", "micro_batches") if key in d},
    )
