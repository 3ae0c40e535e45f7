"""Saved runs of `planner serve` (the JSON of `serve.serve_dict`) read back with every problem
named by file and key, a fresh serve run passed through the same JSON (6 significant digits), and
the request a saved run was made with, so that the regression gate can serve a plan again with
the flags recorded in the baseline."""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.commands.runs import Reader, Run, provenance, read_json, run_from_dict
from planner.commands.serve.modes import Mode, Targets
from planner.commands.serve.serve import ServeRequest, ServeResult, serve, serve_dict
from planner.cost.layouts import FFN_LAYOUTS
from planner.units import SECONDS_PER_HOUR, to_json

SERVE_RUN_HINT = "a saved serve run is what `planner serve PLAN --format json -o FILE` writes"
STAGE_FIGURES = ("latency_s", "step_latency_s", "mfu", "hbm_fraction", "context")
ROW_FIGURES = (
    "chips",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "tokens_per_s_per_user",
    "output_tokens_per_s_per_chip",
    "kv_transfer_bytes",
    "kv_transfer_s",
)
OPTIONAL_FIGURES = (
    "prefill_pools_per_decode_pool",
    "usd_per_million_input_tokens",
    "usd_per_million_output_tokens",
)  # null when they do not apply
SEARCH_KEYS = (("chips", int), ("batch", int), ("weights", str), ("ffn", str), ("attention", str))
OPTIONAL_SEARCH_KEYS = (("kv_cache", str), ("experts", str))  # absent from older runs


@dataclass(frozen=True, kw_only=True)
class SavedStage:
    """One stage (prefill or decode pool) of a saved deployment."""

    chips: int
    batch: int
    ffn: str
    attention: str
    weights: str
    bound: str
    latency_s: float
    step_latency_s: float
    mfu: float
    hbm_fraction: float
    context: float
    kv_cache: str = "bf16"  # older runs did not record it: they served bf16 caches only
    experts: str = ""  # MoE models: the routed experts' layout

    @property
    def identity(self) -> tuple:
        return (self.chips, self.batch, self.ffn, self.attention, self.weights, self.experts, self.kv_cache)

    def __str__(self) -> str:
        layouts = f"{self.ffn}+{self.attention}" + (f"+{self.experts}" if self.experts else "")
        kv = f" kv {self.kv_cache}" if self.kv_cache != "bf16" else ""
        return f"{self.chips}x{self.batch} {layouts} {self.weights}{kv}"


@dataclass(frozen=True, kw_only=True)
class ServeRow:
    """One frontier row of a saved serve run; `row` is its printed number (not compared)."""

    row: int = field(compare=False)
    mode: str
    prefill: SavedStage
    decode: SavedStage
    chips: float
    ttft_s: float
    tpot_s: float
    e2e_s: float
    tokens_per_s_per_user: float
    output_tokens_per_s_per_chip: float
    kv_transfer_bytes: float
    kv_transfer_s: float
    prefill_pools_per_decode_pool: float | None  # None: not disaggregated
    usd_per_million_input_tokens: float | None  # None: no price
    usd_per_million_output_tokens: float | None

    @property
    def key(self) -> tuple:
        """What identifies a deployment across two runs: mode, and each stage's chips, batch,
        layouts (FFN, attention, experts), weight format and KV-cache format."""
        return (self.mode,) + self.prefill.identity + self.decode.identity

    def __str__(self) -> str:
        return f"{self.mode} prefill {self.prefill}, decode {self.decode}"


@dataclass(frozen=True, kw_only=True)
class ServeRun:
    """A saved `planner serve` run: provenance (as a plan's Run), the request's flags, the rows."""

    source: str
    model: str
    cluster: str
    workload: tuple[tuple[str, int], ...]  # input_tokens, output_tokens
    search: tuple[tuple[str, tuple], ...]  # SEARCH_KEYS (and those of OPTIONAL_SEARCH_KEYS recorded)
    targets: tuple[tuple[str, float | None], ...]
    price_usd_per_chip_hour: float | None
    all: bool  # --all: every deployment meeting the targets
    modes: tuple[str, ...]  # modes served, in file order (a mode may have no rows)
    rows: tuple[ServeRow, ...]
    calibration: tuple[tuple[str, float], ...] | None = None
    calibrated: bool | None = None  # False: ideal or borrowed constants (None: older runs did not say)
    calibration_status: str | None = None  # 'uncalibrated', 'calibration borrowed from ...', ...
    load_imbalance: float | None = None  # MoE models: the routing the run was served with
    engine: str | None = None  # the engine profile it was served with (None: runs before profiles)
    planner_version: str | None = None
    hardware: tuple[tuple[str, float | str], ...] | None = None
    model_shape: tuple[tuple[str, int], ...] | None = None
    runnable_on: str | None = None  # --runnable-on: the engine the search was kept to (None: none)

    def frontier(self, mode: str) -> tuple[ServeRow, ...]:
        return tuple(r for r in self.rows if r.mode == mode)


def load_saved(path: str) -> Run | ServeRun:
    """A saved run of either command, told apart by its `kind` ("serve"; a plan's run has none)."""
    data = read_json(path)
    if isinstance(data, dict) and data.get("kind") == "serve":
        return serve_run_from_dict(data, path)
    if isinstance(data, dict) and data.get("kind") == "serve-curve":
        from planner.errors import UsageError

        raise UsageError(
            f"{path}: a saved `planner serve --concurrency` curve; compare gates plan and serve "
            "frontiers, not curves (save the run without --concurrency to gate it)"
        )
    return run_from_dict(data, path)


def serve_run_from_result(result: ServeResult, source: str) -> ServeRun:
    """A fresh serve run as a ServeRun, rounded exactly as its saved JSON would be."""
    import json

    return serve_run_from_dict(json.loads(to_json(serve_dict(result))), source)


def serve_run_from_dict(data: dict, source: str) -> ServeRun:
    get = Reader(source, SERVE_RUN_HINT)
    workload = get(data, "workload", dict, "an object")
    search = get(data, "search", dict, "an object")
    targets = get(data, "targets", dict, "an object")
    modes = get(data, "modes", dict, "an object with one entry per mode")
    labels = [m.label for m in Mode]
    rows = []
    for label in modes:
        if label not in labels:
            raise get.error(f"modes.{label}", f"unknown mode; expected one of {', '.join(labels)}")
        where = f"modes.{label}"
        frontier = get(get(data["modes"], label, dict, "an object", "modes"), "frontier", list, "a list of rows", where)
        seen = set()
        for i, d in enumerate(frontier):
            row = _row(get, d, f"{where}.frontier[{i}]")
            if row.mode != label:
                raise get.error(f"{where}.frontier[{i}].mode", f"{row.mode!r} row listed under {label!r}")
            if row.key in seen:
                raise get.error(f"{where}.frontier[{i}]", f"a second row for {row}")
            seen.add(row.key)
            rows.append(row)
    price = data.get("price_usd_per_chip_hour")
    return ServeRun(
        source=source,
        model=get(data, "model", str, "a model name"),
        cluster=get(data, "cluster", str, "a cluster name"),
        **provenance(get, data),
        workload=tuple(
            (k, get(workload, k, int, "a whole number", "workload")) for k in ("input_tokens", "output_tokens")
        ),
        search=tuple((k, tuple(_items(get, search, k, kind))) for k, kind in SEARCH_KEYS)
        + tuple((k, tuple(_items(get, search, k, kind))) for k, kind in OPTIONAL_SEARCH_KEYS if k in search),
        load_imbalance=get(search, "load_imbalance", float, "a number >= 1", "search")
        if "load_imbalance" in search
        else None,
        engine=get(data, "engine", str, "an engine profile name") if data.get("engine") else None,
        targets=tuple(
            (k, None if targets.get(k) is None else get(targets, k, float, "seconds or null", "targets"))
            for k in ("ttft_s", "tpot_s", "e2e_s")
        ),
        price_usd_per_chip_hour=None if price is None else get(data, "price_usd_per_chip_hour", float, "a number"),
        all=bool(data.get("all", False)),
        modes=tuple(m for m in labels if m in modes),
        rows=tuple(sorted(rows, key=lambda r: r.row)),
    )


def request_for(run: ServeRun, plan: str | None, **overrides) -> ServeRequest:
    """The request `run` was served with (search lists, tokens, modes, targets, price, --all), on
    `plan` (a preset or YAML file; its model and cluster, unless `overrides` names them); a given
    override (model, cluster, chips, batches, weights, ffn, attention) replaces the recorded value."""
    from planner.config import load_plan

    recorded = dict(run.search)
    if "experts" not in recorded and "ffn" in recorded:  # a dense model's run: runs saved before this
        recorded["ffn"] = tuple(f for f in recorded["ffn"] if not FFN_LAYOUTS[f].replicated)  # listed dp
    lists = {
        name: overrides.get(name) or recorded.get(key)
        for name, key in (
            ("chips", "chips"),
            ("batches", "batch"),
            ("weights", "weights"),
            ("ffn", "ffn"),
            ("attention", "attention"),
            ("kv_cache", "kv_cache"),
            ("experts", "experts"),
        )
    }
    spec = load_plan(
        plan,
        model=overrides.get("model"),
        cluster=overrides.get("cluster"),
        phases=("prefill", "decode"),
        load_imbalance=overrides.get("load_imbalance", run.load_imbalance),
        engine=overrides.get("engine") or run.engine,
        runnable_on=overrides.get("runnable_on") or run.runnable_on,
        **lists,
        **dict(run.workload),
    )
    price = run.price_usd_per_chip_hour
    return ServeRequest(
        plan=spec,
        modes=tuple(m for m in Mode if m.label in run.modes),
        targets=Targets(**dict(run.targets)),
        everything=run.all,
        price_usd_per_chip_s=None if price is None else price / SECONDS_PER_HOUR,
        price_source=f"recorded in {run.source}",
    )


def serve_again(run: ServeRun, plan: str | None, **overrides) -> ServeRun:
    """Serve `plan` now with the flags recorded in `run` (a mode with nothing feasible comes back
    with no rows; InfeasibleError when no mode has any)."""
    return serve_run_from_result(serve(request_for(run, plan, **overrides), partial=True), plan or "the flags")


def _items(get: Reader, obj: dict, key: str, kind) -> list:
    values = get(obj, key, list, "a list", "search")
    for i, v in enumerate(values):
        if not isinstance(v, kind) or isinstance(v, bool):
            raise get.error(f"search.{key}[{i}]", f"expected {'a whole number' if kind is int else 'a name'}")
    return values


def _stage(get: Reader, d: object, path: str) -> SavedStage:
    if not isinstance(d, dict):
        raise get.error(path, "expected an object (a stage)")
    text = lambda key, what: get(d, key, str, what, path)
    return SavedStage(
        chips=get(d, "chips", int, "a whole number", path),
        batch=get(d, "batch", int, "a whole number", path),
        ffn=text("ffn", "a layout name"),
        attention=text("attention", "a layout name"),
        weights=get.format(d, "weights", path),
        bound=text("bound", "compute, memory or comm"),
        **({"kv_cache": get.format(d, "kv_cache", path)} if "kv_cache" in d else {}),
        **({"experts": text("experts", "an expert layout name")} if "experts" in d else {}),
        **{k: get(d, k, float, "a number", path) for k in STAGE_FIGURES},
    )


def _row(get: Reader, d: object, path: str) -> ServeRow:
    if not isinstance(d, dict):
        raise get.error(path, "expected an object (a frontier row)")
    figures = [(k, get(d, k, float, "a number", path)) for k in ROW_FIGURES]
    figures += [
        (k, None if d.get(k, 0) is None else get(d, k, float, "a number or null", path)) for k in OPTIONAL_FIGURES
    ]
    return ServeRow(
        row=get(d, "row", int, "a whole number", path),
        mode=get(d, "mode", str, "a mode", path),
        prefill=_stage(get, d.get("prefill"), f"{path}.prefill"),
        decode=_stage(get, d.get("decode"), f"{path}.decode"),
        **dict(figures),
    )
