"""The plan schema and `load_plan`: a plan file and command-line overrides to a `Plan`.

A model or cluster is named by a preset (`configs/<kind>/<name>.yaml`) or by a path to a YAML
file. Every mistake in a file raises `ConfigError` naming the file, line, column and key path;
every mistake in a flag (a `load_plan` override) raises `UsageError` naming the flag.
Schemas are tables of typed fields read by `planner.config.yamlio`; see the presets for examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from planner.config.clusters import load_cluster
from planner.config.context import check_context
from planner.config.engines import with_engine
from planner.config.formats import check_min_mfu, check_weight_formats, mfu, tokens
from planner.config.models import load_model
from planner.config.options import FLAGS, PlanOverrides
from planner.config.overrides import SPARSITY, WORKLOAD_KEYS, named_options, read_overrides
from planner.config.presets import list_presets, locate
from planner.config.stages import check_stages, default_stages, offered_text
from planner.config.yamlio import (
    At,
    Field,
    Fields,
    boolean,
    choice,
    count,
    fields,
    list_of,
    load_document,
    number,
    passthrough,
    scalar,
    text,
)
from planner.cost.layouts import FFN_LAYOUTS
from planner.errors import ConfigError, UsageError, did_you_mean
from planner.specs.engine_layouts import ENGINE_LAYOUTS, is_amd
from planner.specs.formats import Sparsity
from planner.specs.hardware import Cluster, Torus
from planner.specs.model import Model
from planner.specs.moe import Routing
from planner.specs.plan import Constraints, Phase, Pin, Plan, SearchSpace, Workload
from planner.units import fmt_chips


@dataclass(frozen=True)
class PlanDefaults:
    """What a plan searches when neither its file nor a flag says otherwise."""

    phases: tuple[str, ...] = ("prefill", "decode")
    chips: tuple[int, ...] | None = None  # None: every chip count the cluster offers
    batches: tuple[int, ...] = tuple(2**i for i in range(11))  # 1, 2, 4, ..., 1024
    weights: tuple[str, ...] | None = None  # None: the chip's (Chip.native_weights)
    kv_cache: tuple[str, ...] = ("bf16",)
    sparsity: str = "dense"
    ffn: tuple[str, ...] | None = None  # None: every registered FFN layout
    attention: tuple[str, ...] | None = None  # None: every registered attention layout
    experts: tuple[str, ...] | None = None  # None: every registered expert layout (MoE models)
    stages: tuple[int, ...] | None = None  # None: 1, and those splitting nodes (config.stages.default_stages)
    input_tokens: int = 1024  # a serving benchmark's request (the paper's plan files say 2048 and 64)
    output_tokens: int = 1024
    context: int | None = None  # None: input + output with decode (the longest a request reaches), else input


PLAN_DEFAULTS = PlanDefaults()

# ---------------------------------------------------------------------------------------------
# Plans


def _choice(key: str) -> Field:
    return Field(choice(*named_options()[key]))


# search axis (a SearchSpace field and a load_plan keyword) -> its key in a plan file
SEARCH_KEYS = {
    "phases": "phases",
    "chips": "chips",
    "batches": "batch",
    "weights": "weights",
    "ffn": "ffn",
    "attention": "attention",
    "experts": "experts",
    "stages": "stages",
    "kv_cache": "kv_cache",
}
CONSTRAINT_FIELDS = {
    "max_latency_s": Field(number("seconds"), required=False),
    "max_step_latency_s": Field(number("seconds"), required=False),
    "min_mfu": Field(mfu, required=False),
}
# MoE models (planner.specs.moe.Routing); ignored for dense models
ROUTING_FIELDS = {
    "load_imbalance": Field(number(minimum=1.0, inclusive=True), required=False),
    "redundant_experts": Field(lambda at: 0 if at.node.value == "0" else count(at), required=False),
}


def _plan_fields(flags: Mapping[str, Any]) -> dict[str, Field]:
    """The plan schema; what a flag gives, the file may omit."""
    options = named_options()
    search = {
        key: Field(list_of(choice(*options[axis]) if axis in options else count), required=False)
        for axis, key in SEARCH_KEYS.items()
    }
    search["phases"] = Field(_phases, required=False)
    search["sparsity"] = Field(choice(SPARSITY, "sparsity"), required=False)
    search["runnable_on"] = Field(_engine, required=False)
    workload = {key: Field(tokens, required=key not in flags) for key in WORKLOAD_KEYS}
    workload["allow_short_context"] = Field(boolean, required=False)
    return {
        "model": Field(text, required="model" not in flags),
        "cluster": Field(text, required="cluster" not in flags),
        "workload": Field(
            lambda at: fields(at, workload, "the workload"), required=not all(key in flags for key in WORKLOAD_KEYS)
        ),
        "search": Field(lambda at: fields(at, search, "the search space"), required=False),
        "constraints": Field(lambda at: fields(at, CONSTRAINT_FIELDS, "constraints"), required=False),
        "deployment": Field(passthrough, required=False),  # read once the cluster is known
        "routing": Field(lambda at: fields(at, ROUTING_FIELDS, "the routing"), required=False),
    }


def _phases(at: At) -> tuple[Phase, ...]:
    """A list of phases, or `both` (as on the command line)."""
    if getattr(at.node, "value", None) == "both":
        return (Phase.PREFILL, Phase.DECODE)
    return list_of(choice(*named_options()["phases"]))(at)


def _engine(at: At) -> str:
    """`runnable_on` in a plan's search: an engine of planner.specs.engine_layouts."""
    name = scalar(at, "an engine name")
    if name not in ENGINE_LAYOUTS:
        raise at.error(
            f"unknown engine {name!r}; expected one of {', '.join(ENGINE_LAYOUTS)}",
            hint=did_you_mean(name, ENGINE_LAYOUTS) or "drop the key to search every layout",
        )
    return name


def load_plan(path: str | None = None, overrides: PlanOverrides | None = None, **keywords: Any) -> Plan:
    """A plan from a file (a preset name or a path) and/or the command line's `overrides` (or
    the same fields as keywords); an override replaces the file's value. Without a file, model
    and cluster are required and the rest is `PLAN_DEFAULTS`. `weights=("all",)` searches every
    weight format the chip has a peak for; `min_mfu` is a fraction, or the command line's text
    ('0.4', '40%')."""
    if overrides is None:
        overrides = PlanOverrides(**keywords)
    elif keywords:
        overrides = replace(overrides, **keywords)
    flags = read_overrides(overrides)
    model, cluster = overrides.model, overrides.cluster
    if path is None:
        for required in ("model", "cluster"):
            if required not in flags:
                raise UsageError(
                    f"{FLAGS[required]} is required when no plan file is given "
                    f"(presets: {', '.join(list_presets(required + 's'))})"
                )
        return _assemble(load_model(model), load_cluster(cluster), None, flags)
    root = load_document(locate("plans", path))
    try:
        plan = fields(root, _plan_fields(flags), "a plan")
    except ConfigError as err:
        err.hint = _other_kind_hint(root) or err.hint
        raise
    base = Path(root.file).parent

    def named(load: Callable[..., Any], flag: str | None, key: str) -> Any:
        """The flag's preset or path if given, else the file's (resolved against the file)."""
        return load(flag) if flag else load(plan[key], base=base, at=plan.where[key])

    return _assemble(named(load_model, model, "model"), named(load_cluster, cluster, "cluster"), plan, flags)


def _other_kind_hint(root: At) -> str | None:
    """A model or cluster file given where a plan is expected: say which flag takes it."""
    if getattr(root.node, "id", None) != "mapping":
        return None
    keys = {getattr(key, "value", None) for key, _ in root.node.value}
    for kind, marks in (("model", {"layers", "d_model", "d_ff"}), ("cluster", {"chip", "topology"})):
        if keys & marks and not keys & {"model", "cluster", "workload"}:
            return (
                f"this looks like a {kind} file, not a plan: pass it as --{kind} {root.file} "
                f"(with --{'cluster' if kind == 'model' else 'model'} NAME)"
            )
    return None


def _assemble(model: Model, cluster: Cluster, plan: Fields | None, flags: dict[str, Any]) -> Plan:
    cluster = with_engine(cluster, flags.get("engine"))

    def section(name: str) -> Fields | None:
        return plan.get(name) if plan is not None else None

    def merge(keys: Iterable[str], part: Fields | None) -> dict[str, Any]:
        """Each key from its flag, else from the file, else from PLAN_DEFAULTS (or None)."""
        given = part.values if part is not None else {}
        return {key: flags[key] if key in flags else given.get(key, getattr(PLAN_DEFAULTS, key, None)) for key in keys}

    space, defaults = _search_space(cluster, model, section("search"), flags)
    _check_stages(cluster, model, space, section("search"), flags)
    workload = merge(WORKLOAD_KEYS, section("workload"))
    if workload["context"] is None:  # decode's KV cache must hold a whole request
        if flags.get("allow_short_context") and Phase.DECODE in space.phases:
            raise UsageError(
                f"{FLAGS['allow_short_context']} applies to a context shorter than the prompt, and "
                "no context is given (decode holds input + output tokens)\n"
                f"  hint: drop it, or give {FLAGS['context']}"
            )
        defaults += ("context",)
        workload["context"] = workload["input_tokens"] + (
            workload["output_tokens"] if Phase.DECODE in space.phases else 0
        )
    routing = section("routing")
    routing = routing.values if routing is not None else {}
    routing = Routing(
        load_imbalance=flags.get("load_imbalance", routing.get("load_imbalance", 1.0)),
        redundant_experts=flags.get("redundant_experts", routing.get("redundant_experts")),
    )
    constraints = Constraints(**merge(CONSTRAINT_FIELDS, section("constraints")))
    check_min_mfu(
        cluster,
        space,
        constraints.min_mfu,
        section("constraints"),
        flags,
        FLAGS["min_mfu"],
        bare=not str(flags.get("min_mfu_text", "")).strip().endswith("%"),
    )
    check_context(model, workload, space.phases, section("workload"), flags)
    _check_flags_apply(space.phases, flags)
    _check_moe_flags(model, section("search"), flags)
    return Plan(
        model=model,
        cluster=cluster,
        workload=Workload(**workload, routing=routing),
        space=space,
        constraints=constraints,
        deployment=_read_deployment(section("deployment"), cluster, model),
        source=plan.at.file if plan is not None else "",
        defaults=defaults,
    )


def _check_moe_flags(model: Model, search: Fields | None, flags: dict[str, Any]) -> None:
    """Expert layouts and load imbalance on a dense model change nothing: a mistake."""
    if model.experts is not None:
        return
    replicated = [name for name in flags.get("ffn", ()) if FFN_LAYOUTS[name].replicated]
    if replicated:  # n whole copies of a dense model are n one-chip replicas: plan one chip
        raise UsageError(
            f"{FLAGS['ffn']} {replicated[0]}: keeps the dense parts whole beside sharded experts, so it "
            f"applies to mixtures of experts only, and {model.name} is dense\n  hint: drop it; copies of a "
            "dense model are one-chip replicas: plan one with --chips 1"
        )
    for key in ("experts", "load_imbalance", "redundant_experts"):
        if key in flags:
            raise UsageError(
                f"{FLAGS[key]} applies to mixtures of experts only, and {model.name} is dense\n  hint: drop it"
            )
    if search is not None and "experts" in search.where:
        raise search.where["experts"].error(
            f"expert layouts apply to mixtures of experts only, and {model.name} is dense", hint="drop the experts key"
        )


def _check_flags_apply(phases: tuple[Phase, ...], flags: dict[str, Any]) -> None:
    """A flag that changes nothing in the phases planned is a mistake: say so."""
    asked = " and ".join(ph.value for ph in phases)
    if Phase.DECODE not in phases:
        for key in ("output_tokens", "context", "max_step_latency_s", "allow_short_context"):
            if key in flags:
                raise UsageError(
                    f"{FLAGS[key]} applies to decode only, and this plans {asked}\n"
                    "  hint: drop it, or add --phase decode (or both)"
                )


def _search_space(
    cluster: Cluster, model: Model, search: Fields | None, flags: dict[str, Any]
) -> tuple[SearchSpace, tuple[str, ...]]:
    """The search space, and the axes that took their default (neither flag nor file): weights
    and stages are then the chip's and the topology's, which the header says."""
    axes: dict[str, Any] = {}
    defaulted = []
    for axis, key in SEARCH_KEYS.items():
        if axis in flags:
            axes[axis] = flags[axis]
        elif search is not None and key in search.values:
            axes[axis] = search[key]
        else:
            defaulted.append(axis)
            axes[axis] = _default(axis, cluster)
    if "sparsity" in flags:
        axes["sparsity"] = flags["sparsity"]
    else:
        axes["sparsity"] = search.get("sparsity", Sparsity.DENSE) if search is not None else Sparsity.DENSE
    sparse = axes["sparsity"] is Sparsity.TWO_FOUR
    axes["runnable_on"] = _runnable_on(cluster, search, flags)
    if axes["weights"] == "all":
        axes["weights"] = cluster.chip.weight_formats(sparse)
    check_weight_formats(cluster, axes["weights"], sparse, search, flags, FLAGS)
    for i, n in enumerate(axes["chips"]):
        if cluster.topology.forms(n):
            continue
        if "chips" in flags:
            raise UsageError(
                f"{FLAGS['chips']}: {cluster.name} cannot form {fmt_chips(n)} (it offers {offered_text(cluster)})"
            )
        _check_chip_count(n, search.where["chips"].item(i), cluster)
    if axes["stages"] is None:
        axes["stages"] = default_stages(cluster, model, axes["chips"])
    return SearchSpace(**axes), tuple(a for a in defaulted if a in ("weights", "stages"))


def _runnable_on(cluster: Cluster, search: Fields | None, flags: dict[str, Any]) -> str:
    """The engine the search is restricted to (flag, else the file's search key; "": none), which
    must run on the cluster's kind of chip: a GPU engine on GPUs, a TPU engine on TPUs."""
    in_file = "runnable_on" not in flags and search is not None and "runnable_on" in search.values
    name = flags.get("runnable_on") or (search["runnable_on"] if in_file else "")
    if not name:
        return ""
    engine, tpu = ENGINE_LAYOUTS[name], isinstance(cluster.topology, Torus)
    amd = not tpu and is_amd(cluster.chip.name, cluster.name)
    if engine.tpu == tpu and not (engine.nvidia_only and amd):
        return name
    kind = "TPU" if tpu else "GPU"
    if engine.tpu == tpu:  # an NVIDIA-only engine on AMD GPUs
        others = " or ".join(e.name for e in ENGINE_LAYOUTS.values() if not (e.tpu or e.nvidia_only))
        message, hint = f"{engine.label} runs on NVIDIA GPUs only, and {cluster.name} is AMD's", f"restrict to {others}"
    else:
        fits = ", ".join(e.name for e in ENGINE_LAYOUTS.values() if e.tpu == tpu)
        message = f"{engine.label} runs on {'TPUs' if engine.tpu else 'GPUs'}, and {cluster.name} is a {kind} cluster"
        hint = f"restrict to a {kind} engine ({fits}), or drop it"
    if in_file:
        raise search.where["runnable_on"].error(message, hint=hint)
    raise UsageError(f"{FLAGS['runnable_on']} {name}: {message}\n  hint: {hint}")


def _check_stages(
    cluster: Cluster, model: Model, space: SearchSpace, search: Fields | None, flags: dict[str, Any]
) -> None:
    def fail(message: str, hint: str) -> Exception:
        if "stages" in flags or search is None or "stages" not in search.where:
            return UsageError(f"{FLAGS['stages']}: {message}\n  hint: {hint}")
        if "chips" in flags:  # the plan's stages against the command line's chips
            hint += f"; the chip counts are {FLAGS['chips']}'s: give {FLAGS['stages']} to choose stage counts they form"
        return search.where["stages"].error(message, hint=hint)

    check_stages(cluster, model, space.chips, space.stages, fail)


def _default(axis: str, cluster: Cluster) -> tuple:
    """PLAN_DEFAULTS for one search axis; None there means every value on offer."""
    default = getattr(PLAN_DEFAULTS, axis)
    if axis == "chips":
        return default or cluster.topology.chip_counts
    if axis == "weights":
        return cluster.chip.native_weights()
    options = named_options()
    if axis in options:
        choices = options[axis][0]
        return tuple(choices[name] for name in (default or choices))
    return default


def _read_deployment(at: At | None, cluster: Cluster, model: Model) -> tuple[Pin, ...]:
    """The pins; a key a pin omits defaults as a plan's search does (kv_cache: bf16, stages: 1,
    experts: the fastest expert layout)."""
    if at is None:
        return ()
    phases, kv_formats = named_options()["phases"][0], named_options()["kv_cache"][0]
    pin_fields = {
        "chips": Field(count),
        "batch": Field(count),
        "stages": Field(count, required=False),
        **{
            key: Field(_choice(key).read, required=key not in ("kv_cache", "experts"))
            for key in ("ffn", "attention", "weights", "kv_cache", "experts")
        },
    }
    entries = fields(
        at, {name: Field(passthrough, required=False) for name in phases}, "the deployment (one entry per phase)"
    )
    pins = []
    for name, pin_at in entries.values.items():
        pin = fields(pin_at, pin_fields, f"the {name} deployment")
        _check_chip_count(pin["chips"], pin.where["chips"], cluster)
        if "experts" in pin.values and model.experts is None:
            raise pin.where["experts"].error(
                f"expert layouts apply to mixtures of experts only, and {model.name} is dense",
                hint="drop the experts key",
            )
        if "stages" in pin.values:
            check_stages(cluster, model, (pin["chips"],), (pin["stages"],), pin.where["stages"].error)
        pins.append(
            Pin(
                phase=phases[name],
                line=pin_at.node.start_mark.line + 1,
                **{
                    **pin.values,
                    "kv_cache": pin.get("kv_cache", kv_formats[PLAN_DEFAULTS.kv_cache[0]]),
                    "stages": pin.get("stages", 1),
                },
            )
        )
    return tuple(pins)


def _check_chip_count(n: int, at: At, cluster: Cluster) -> None:
    if not cluster.topology.forms(n):
        raise at.error(f"{cluster.name} cannot form {fmt_chips(n)}", hint=f"it offers {offered_text(cluster)}")
