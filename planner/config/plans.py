"""The plan schema and `load_plan`: a plan file and command-line overrides to a `Plan`.

A model or cluster is named by a preset (`configs/<kind>/<name>.yaml`) or by a path to a YAML
file. Every mistake in a file raises `ConfigError` naming the file, line, column and key path;
every mistake in a flag (a `load_plan` override) raises `UsageError` naming the flag.
Schemas are tables of typed fields read by `planner.config.yamlio`; see the presets for examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.config.clusters import load_cluster
from planner.config.context import check_context
from planner.config.models import load_model
from planner.config.presets import list_presets, locate
from planner.config.yamlio import (MAX_COUNT, MAX_MAGNITUDE, At, Field, Fields, boolean, choice, count,
                                   fields, list_of, load_document, names, number, passthrough, text)
from planner.cost import layouts
from planner.errors import ConfigError, UsageError, did_you_mean
from planner.specs.formats import KvFormat, Sparsity
from planner.specs.hardware import Cluster, WeightFormat
from planner.specs.model import Model
from planner.specs.moe import Routing
from planner.specs.plan import Constraints, Phase, Pin, Plan, SearchSpace, Workload
from planner.config.formats import MAX_MFU, check_min_mfu, check_weight_formats, mfu, tokens
from planner.config.stages import check_stages, offered_text
from planner.units import fmt_chips, parse_fraction


@dataclass(frozen=True)
class PlanDefaults:
    """What a plan searches when neither its file nor a flag says otherwise."""

    phases: tuple[str, ...] = ("prefill", "decode")
    chips: tuple[int, ...] | None = None      # None: every chip count the cluster offers
    batches: tuple[int, ...] = tuple(2**i for i in range(11))  # 1, 2, 4, ..., 1024
    weights: tuple[str, ...] = ("bf16", "int8")
    kv_cache: tuple[str, ...] = ("bf16",)
    sparsity: str = "dense"
    ffn: tuple[str, ...] | None = None        # None: every registered FFN layout
    attention: tuple[str, ...] | None = None  # None: every registered attention layout
    experts: tuple[str, ...] | None = None    # None: every registered expert layout (MoE models)
    stages: tuple[int, ...] = (1,)  # pipeline stage counts; 1 alone: no pipeline
    input_tokens: int = 2048
    output_tokens: int = 64
    context: int | None = None  # None: the input tokens (decode attends to the prompt)


PLAN_DEFAULTS = PlanDefaults()

# `load_plan` keyword -> the command-line flag named in UsageError messages.
FLAGS = {
    "model": "--model", "cluster": "--cluster", "phases": "--phase", "chips": "--chips",
    "batches": "--batch", "weights": "--weights", "ffn": "--ffn", "attention": "--attention",
    "kv_cache": "--kv-cache", "sparsity": "--sparsity",
    "input_tokens": "--input-tokens", "output_tokens": "--output-tokens", "context": "--context",
    "max_latency_s": "--max-latency", "max_step_latency_s": "--max-step-latency", "min_mfu": "--min-mfu",
    "experts": "--experts", "load_imbalance": "--load-imbalance", "redundant_experts": "--redundant-experts",
    "stages": "--stages",
    "allow_short_context": "--allow-short-context",
}


# ---------------------------------------------------------------------------------------------
# Plans


def _named_options() -> dict[str, tuple[Mapping[str, Any], str]]:
    """Search axes chosen by name: key -> (name -> value, what the name is)."""
    return {
        "phases": ({phase.value: phase for phase in Phase}, "phase"),
        "weights": ({fmt.label: fmt for fmt in WeightFormat}, "weight format"),
        "kv_cache": ({fmt.label: fmt for fmt in KvFormat}, "KV-cache format"),
        "ffn": (names(layouts.FFN_LAYOUTS), "FFN layout"),
        "attention": (names(layouts.ATTENTION_LAYOUTS), "attention layout"),
        "experts": (names(layouts.EXPERT_LAYOUTS), "expert layout"),
    }


def _choice(key: str) -> Field:
    return Field(choice(*_named_options()[key]))


# search axis (a SearchSpace field and a load_plan keyword) -> its key in a plan file
SEARCH_KEYS = {"phases": "phases", "chips": "chips", "batches": "batch", "weights": "weights",
               "ffn": "ffn", "attention": "attention", "experts": "experts", "stages": "stages",
               "kv_cache": "kv_cache"}
SPARSITY = {s.label: s for s in Sparsity}
WORKLOAD_KEYS = ("input_tokens", "output_tokens", "context")
CONSTRAINT_FIELDS = {"max_latency_s": Field(number("seconds"), required=False),
                     "max_step_latency_s": Field(number("seconds"), required=False),
                     "min_mfu": Field(mfu, required=False)}
# MoE models (planner.specs.moe.Routing); ignored for dense models
ROUTING_FIELDS = {"load_imbalance": Field(number(minimum=1.0, inclusive=True), required=False),
                  "redundant_experts": Field(lambda at: 0 if at.node.value == "0" else count(at), required=False)}


def _plan_fields(flags: Mapping[str, Any]) -> dict[str, Field]:
    """The plan schema; what a flag gives, the file may omit."""
    options = _named_options()
    search = {key: Field(list_of(choice(*options[axis]) if axis in options else count),
                         required=False) for axis, key in SEARCH_KEYS.items()}
    search["phases"] = Field(_phases, required=False)
    search["sparsity"] = Field(choice(SPARSITY, "sparsity"), required=False)
    workload = {key: Field(tokens, required=key not in flags) for key in WORKLOAD_KEYS}
    workload["allow_short_context"] = Field(boolean, required=False)
    return {
        "model": Field(text, required="model" not in flags),
        "cluster": Field(text, required="cluster" not in flags),
        "workload": Field(lambda at: fields(at, workload, "the workload"),
                          required=not all(key in flags for key in WORKLOAD_KEYS)),
        "search": Field(lambda at: fields(at, search, "the search space"), required=False),
        "constraints": Field(lambda at: fields(at, CONSTRAINT_FIELDS, "constraints"),
                             required=False),
        "deployment": Field(passthrough, required=False),  # read once the cluster is known
        "routing": Field(lambda at: fields(at, ROUTING_FIELDS, "the routing"), required=False),
    }


def _phases(at: At) -> tuple[Phase, ...]:
    """A list of phases, or `both` (as on the command line)."""
    if getattr(at.node, "value", None) == "both":
        return (Phase.PREFILL, Phase.DECODE)
    return list_of(choice(*_named_options()["phases"]))(at)


def load_plan(
    path: str | None = None, *,
    model: str | None = None, cluster: str | None = None,
    phases: tuple[str, ...] | None = None, chips: tuple[int, ...] | None = None,
    batches: tuple[int, ...] | None = None, weights: tuple[str, ...] | None = None,
    ffn: tuple[str, ...] | None = None, attention: tuple[str, ...] | None = None,
    kv_cache: tuple[str, ...] | None = None, sparsity: str | None = None,
    input_tokens: int | None = None, output_tokens: int | None = None, context: int | None = None,
    max_latency_s: float | None = None, max_step_latency_s: float | None = None,
    min_mfu: float | str | None = None,
    experts: tuple[str, ...] | None = None, load_imbalance: float | None = None,
    stages: tuple[int, ...] | None = None, allow_short_context: bool = False, redundant_experts: int | None = None,
) -> Plan:
    """A plan from a file (a preset name or a path) and/or flags; a flag overrides the file.
    Without a file, model and cluster are required and the rest is `PLAN_DEFAULTS`.
    `weights=("all",)` searches every weight format the chip has a peak for; `min_mfu` is a
    fraction, or the command line's text ('0.4', '40%')."""
    flags = _read_flags(dict(
        model=model, cluster=cluster, phases=phases, chips=chips, batches=batches, weights=weights,
        ffn=ffn, attention=attention, kv_cache=kv_cache, sparsity=sparsity,
        input_tokens=input_tokens, output_tokens=output_tokens,
        context=context, max_latency_s=max_latency_s, max_step_latency_s=max_step_latency_s, min_mfu=min_mfu,
        experts=experts, load_imbalance=load_imbalance, stages=stages,
        allow_short_context=allow_short_context or None, redundant_experts=redundant_experts))
    if isinstance(min_mfu, str):  # what the user typed decides the "did you mean" hints
        flags["min_mfu_text"] = min_mfu
    if path is None:
        for required in ("model", "cluster"):
            if required not in flags:
                raise UsageError(f"{FLAGS[required]} is required when no plan file is given "
                                 f"(presets: {', '.join(list_presets(required + 's'))})")
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

    return _assemble(named(load_model, model, "model"), named(load_cluster, cluster, "cluster"),
                     plan, flags)


def _other_kind_hint(root: At) -> str | None:
    """A model or cluster file given where a plan is expected: say which flag takes it."""
    if getattr(root.node, "id", None) != "mapping":
        return None
    keys = {getattr(key, "value", None) for key, _ in root.node.value}
    for kind, marks in (("model", {"layers", "d_model", "d_ff"}), ("cluster", {"chip", "topology"})):
        if keys & marks and not keys & {"model", "cluster", "workload"}:
            return (f"this looks like a {kind} file, not a plan: pass it as --{kind} {root.file} "
                    f"(with --{'cluster' if kind == 'model' else 'model'} NAME)")
    return None


def _assemble(model: Model, cluster: Cluster, plan: Fields | None, flags: dict[str, Any]) -> Plan:
    def section(name: str) -> Fields | None:
        return plan.get(name) if plan is not None else None

    def merge(keys: Iterable[str], part: Fields | None) -> dict[str, Any]:
        """Each key from its flag, else from the file, else from PLAN_DEFAULTS (or None)."""
        given = part.values if part is not None else {}
        return {key: flags[key] if key in flags
                else given.get(key, getattr(PLAN_DEFAULTS, key, None)) for key in keys}

    workload = merge(WORKLOAD_KEYS, section("workload"))
    if workload["context"] is None:
        workload["context"] = workload["input_tokens"]
    routing = section("routing")
    routing = routing.values if routing is not None else {}
    routing = Routing(load_imbalance=flags.get("load_imbalance", routing.get("load_imbalance", 1.0)),
                      redundant_experts=flags.get("redundant_experts", routing.get("redundant_experts")))
    space = _search_space(cluster, section("search"), flags)
    _check_stages(cluster, model, space, section("search"), flags)
    constraints = Constraints(**merge(CONSTRAINT_FIELDS, section("constraints")))
    check_min_mfu(cluster, space, constraints.min_mfu, section("constraints"), flags, FLAGS["min_mfu"],
                  bare=not str(flags.get("min_mfu_text", "")).strip().endswith("%"))
    check_context(model, workload, space.phases, section("workload"), flags)
    _check_flags_apply(space.phases, flags)
    if model.experts is None and (key := next((k for k in ("load_imbalance", "redundant_experts") if k in flags), None)):
        raise UsageError(f"{FLAGS[key]} applies to mixtures of experts only, and {model.name} is dense\n  hint: drop it")
    return Plan(
        model=model, cluster=cluster,
        workload=Workload(**workload, routing=routing),
        space=space,
        constraints=constraints,
        deployment=_read_deployment(section("deployment"), cluster, model),
        source=plan.at.file if plan is not None else "",
    )


def _check_flags_apply(phases: tuple[Phase, ...], flags: dict[str, Any]) -> None:
    """A flag that changes nothing in the phases planned is a mistake: say so."""
    asked = " and ".join(ph.value for ph in phases)
    if Phase.DECODE not in phases:
        for key in ("output_tokens", "context", "max_step_latency_s"):
            if key in flags:
                raise UsageError(f"{FLAGS[key]} applies to decode only, and this plans {asked}\n"
                                 "  hint: drop it, or add --phase decode (or both)")


def _search_space(cluster: Cluster, search: Fields | None, flags: dict[str, Any]) -> SearchSpace:
    axes: dict[str, Any] = {}
    for axis, key in SEARCH_KEYS.items():
        if axis in flags:
            axes[axis] = flags[axis]
        elif search is not None and key in search.values:
            axes[axis] = search[key]
        else:
            axes[axis] = _default(axis, cluster)
    if "sparsity" in flags:
        axes["sparsity"] = flags["sparsity"]
    else:
        axes["sparsity"] = search.get("sparsity", Sparsity.DENSE) if search is not None else Sparsity.DENSE
    sparse = axes["sparsity"] is Sparsity.TWO_FOUR
    if axes["weights"] == "all":
        axes["weights"] = cluster.chip.weight_formats(sparse)
    check_weight_formats(cluster, axes["weights"], sparse, search, flags, FLAGS)
    for i, n in enumerate(axes["chips"]):
        if cluster.topology.forms(n):
            continue
        if "chips" in flags:
            raise UsageError(f"{FLAGS['chips']}: {cluster.name} cannot form {fmt_chips(n)} (it offers "
                             f"{offered_text(cluster)})")
        _check_chip_count(n, search.where["chips"].item(i), cluster)
    return SearchSpace(**axes)


def _check_stages(cluster: Cluster, model: Model, space: SearchSpace, search: Fields | None,
                  flags: dict[str, Any]) -> None:
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
    options = _named_options()
    if axis in options:
        choices = options[axis][0]
        return tuple(choices[name] for name in (default or choices))
    return default


def _read_deployment(at: At | None, cluster: Cluster, model: Model) -> tuple[Pin, ...]:
    """The pins; a key a pin omits defaults as a plan's search does (kv_cache: bf16, stages: 1,
    experts: the fastest expert layout)."""
    if at is None:
        return ()
    phases, kv_formats = _named_options()["phases"][0], _named_options()["kv_cache"][0]
    pin_fields = {"chips": Field(count), "batch": Field(count), "stages": Field(count, required=False),
                  **{key: Field(_choice(key).read, required=key not in ("kv_cache", "experts"))
                     for key in ("ffn", "attention", "weights", "kv_cache", "experts")}}
    entries = fields(at, {name: Field(passthrough, required=False) for name in phases},
                     "the deployment (one entry per phase)")
    pins = []
    for name, pin_at in entries.values.items():
        pin = fields(pin_at, pin_fields, f"the {name} deployment")
        _check_chip_count(pin["chips"], pin.where["chips"], cluster)
        if "experts" in pin.values and model.experts is None:
            raise pin.where["experts"].error(f"expert layouts apply to mixtures of experts only, and "
                                             f"{model.name} is dense", hint="drop the experts key")
        if "stages" in pin.values:
            check_stages(cluster, model, (pin["chips"],), (pin["stages"],), pin.where["stages"].error)
        pins.append(Pin(phase=phases[name], line=pin_at.node.start_mark.line + 1, **{
            **pin.values, "kv_cache": pin.get("kv_cache", kv_formats[PLAN_DEFAULTS.kv_cache[0]]),
            "stages": pin.get("stages", PLAN_DEFAULTS.stages[0])}))
    return tuple(pins)


def _check_chip_count(n: int, at: At, cluster: Cluster) -> None:
    if not cluster.topology.forms(n):
        raise at.error(f"{cluster.name} cannot form {fmt_chips(n)}", hint=f"it offers {offered_text(cluster)}")


# ---------------------------------------------------------------------------------------------
# Flags (load_plan overrides)


def _read_flags(given: dict[str, Any]) -> dict[str, Any]:
    """The flags that were given, checked, with names turned into their values."""
    return {key: _read_flag(key, value) for key, value in given.items() if value is not None}


def _read_flag(key: str, value: Any) -> Any:
    flag = FLAGS[key]
    options = _named_options()
    if key == "weights" and tuple(value) == ("all",):
        return "all"
    if key == "sparsity":
        if value not in SPARSITY:
            raise UsageError(f"{flag}: expected one of {', '.join(SPARSITY)}, found {value!r}")
        return SPARSITY[value]
    if key in options:
        choices, what = options[key]
        values = _several(key, (value,) if isinstance(value, str) else value)
        for name in values:
            if not isinstance(name, str) or name not in choices:
                hint, both = did_you_mean(str(name), choices), " or both" * (key == "phases" and flag[:2] == "--")
                raise UsageError(f"{flag}: unknown {what} {name!r}; expected one of {', '.join(choices)}{both}"
                                 + (f" ({hint})" if hint else ""))
        return tuple(choices[name] for name in values)
    if key in ("chips", "batches", "stages"):
        values = (value,) if isinstance(value, int) else tuple(value)
        return _several(key, _checked(key, values, _is_count, f"a positive whole number up to {MAX_COUNT:g}"))
    if key == "allow_short_context":
        return bool(value)
    if key in WORKLOAD_KEYS:
        return _checked(key, (value,), _is_count, f"a positive whole number up to {MAX_COUNT:g}")[0]
    if key in ("max_latency_s", "max_step_latency_s"):
        return float(_checked(key, (value,), lambda v: _is_real(v) and 0 < v <= MAX_MAGNITUDE,
                              "a positive time in seconds")[0])
    if key == "load_imbalance":
        return float(_checked(key, (value,), lambda v: _is_real(v) and 1 <= v <= MAX_MAGNITUDE,
                              "a factor >= 1 (the busiest chip's expert work over the mean's)")[0])
    if key == "redundant_experts":
        return _checked(key, (value,), lambda v: _is_count(v) or (type(v) is int and v == 0), "a whole number >= 0")[0]
    if key == "min_mfu":
        if isinstance(raw := value, str):  # the command line's text: '0.4' or '40%'
            try:
                value = parse_fraction(value)
            except ValueError:
                raise UsageError(f"{flag}: expected an MFU such as 0.4 or 40% (of the bf16 peak), "
                                 f"found {raw!r}") from None
        if _is_real(value) and MAX_MFU < value and (value <= 100 or raw is not value):
            guess = f" (did you mean {value:g}%?)" if not str(raw).strip().endswith("%") else ""
            raise UsageError(f"{flag}: expected an MFU such as 0.4 or 40% (of the bf16 peak), at most "
                             f"{MAX_MFU:.0%}, found {raw.strip() if isinstance(raw, str) else f'{value:g}'}{guess}")
        return float(_checked(key, (value,), lambda v: _is_real(v) and 0 < v <= MAX_MFU,
                              f"an MFU such as 0.4 or 40% (of the bf16 peak), at most {MAX_MFU:.0%}")[0])
    if not isinstance(value, str) or not value.strip():  # model, cluster
        raise UsageError(f"{flag}: expected a preset name or a path, found {value!r}")
    return value


def _several(key: str, values: Iterable[Any]) -> tuple:
    values = tuple(values)
    if not values:
        raise UsageError(f"{FLAGS[key]}: give at least one value (the search space would be empty)")
    if len(set(values)) != len(values):
        raise UsageError(f"{FLAGS[key]}: a value is given twice in {', '.join(map(str, values))}")
    return values


def _checked(key: str, values: tuple, ok: Callable[[Any], bool], expected: str) -> tuple:
    for value in values:
        if not ok(value):
            raise UsageError(f"{FLAGS[key]}: expected {expected}, found {value!r}")
    return values


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_COUNT


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
