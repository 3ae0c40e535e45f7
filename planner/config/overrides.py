"""Reading `PlanOverrides` (what the command line sets in a plan; `planner.config.options`) into
checked values for `load_plan`: names to formats and layouts, counts and ranges checked, every
mistake a `UsageError` naming the flag."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from planner.config.formats import MAX_MFU
from planner.config.options import FLAGS, PlanOverrides
from planner.config.yamlio import MAX_COUNT, MAX_MAGNITUDE, names
from planner.cost import layouts
from planner.errors import UsageError, did_you_mean
from planner.specs.engine_layouts import ENGINE_LAYOUTS
from planner.specs.formats import KvFormat, Sparsity
from planner.specs.hardware import WeightFormat
from planner.specs.plan import Phase
from planner.units import parse_fraction


def named_options() -> dict[str, tuple[Mapping[str, Any], str]]:
    """Search axes chosen by name: key -> (name -> value, what the name is)."""
    return {
        "phases": ({phase.value: phase for phase in Phase}, "phase"),
        "weights": ({fmt.label: fmt for fmt in WeightFormat}, "weight format"),
        "kv_cache": ({fmt.label: fmt for fmt in KvFormat}, "KV-cache format"),
        "ffn": (names(layouts.FFN_LAYOUTS), "FFN layout"),
        "attention": (names(layouts.ATTENTION_LAYOUTS), "attention layout"),
        "experts": (names(layouts.EXPERT_LAYOUTS), "expert layout"),
    }


SPARSITY = {s.label: s for s in Sparsity}
WORKLOAD_KEYS = ("input_tokens", "output_tokens", "context")


def read_overrides(overrides: PlanOverrides) -> dict[str, Any]:
    """The flags that were given, checked, with names turned into their values."""
    flags = {key: _read_flag(key, value) for key, value in overrides.given().items()}
    if isinstance(overrides.min_mfu, str):  # what the user typed decides the "did you mean" hints
        flags["min_mfu_text"] = overrides.min_mfu
    return flags


def _read_flag(key: str, value: Any) -> Any:
    flag = FLAGS[key]
    options = named_options()
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
            if key == "phases" and name == "both" and len(values) > 1:  # 'both' is already every phase
                raise UsageError(f"{flag}: 'both' stands alone\n  hint: give {flag} both, or a list of prefill, decode")
            if not isinstance(name, str) or name not in choices:
                hint, both = did_you_mean(str(name), choices), " or both" * (key == "phases" and flag[:2] == "--")
                raise UsageError(
                    f"{flag}: unknown {what} {name!r}; expected one of {', '.join(choices)}{both}"
                    + (f" ({hint})" if hint else "")
                )
        return tuple(choices[name] for name in values)
    if key in ("chips", "batches", "stages"):
        values = (value,) if isinstance(value, int) else tuple(value)
        return _several(key, _checked(key, values, _is_count, f"a positive whole number up to {MAX_COUNT:g}"))
    if key == "allow_short_context":
        return bool(value)
    if key in WORKLOAD_KEYS:
        return _checked(key, (value,), _is_count, f"a positive whole number up to {MAX_COUNT:g}")[0]
    if key in ("max_latency_s", "max_step_latency_s"):
        return float(
            _checked(key, (value,), lambda v: _is_real(v) and 0 < v <= MAX_MAGNITUDE, "a positive time in seconds")[0]
        )
    if key == "load_imbalance":
        return float(
            _checked(
                key,
                (value,),
                lambda v: _is_real(v) and 1 <= v <= MAX_MAGNITUDE,
                "a factor >= 1 (the busiest chip's expert work over the mean's)",
            )[0]
        )
    if key == "redundant_experts":
        return _checked(key, (value,), lambda v: _is_count(v) or (type(v) is int and v == 0), "a whole number >= 0")[0]
    if key == "min_mfu":
        if isinstance(raw := value, str):  # the command line's text: '0.4' or '40%'
            try:
                value = parse_fraction(value)
            except ValueError:
                raise UsageError(
                    f"{flag}: expected an MFU such as 0.4 or 40% (of the bf16 peak), found {raw!r}"
                ) from None
        if _is_real(value) and MAX_MFU < value and (value <= 100 or raw is not value):
            guess = f" (did you mean {value:g}%?)" if not str(raw).strip().endswith("%") else ""
            raise UsageError(
                f"{flag}: expected an MFU such as 0.4 or 40% (of the bf16 peak), at most "
                f"{MAX_MFU:.0%}, found {raw.strip() if isinstance(raw, str) else f'{value:g}'}{guess}"
            )
        return float(
            _checked(
                key,
                (value,),
                lambda v: _is_real(v) and 0 < v <= MAX_MFU,
                f"an MFU such as 0.4 or 40% (of the bf16 peak), at most {MAX_MFU:.0%}",
            )[0]
        )
    if key == "runnable_on":
        if value not in ENGINE_LAYOUTS:
            hint = did_you_mean(str(value), ENGINE_LAYOUTS)
            raise UsageError(
                f"{flag}: unknown engine {value!r}; expected one of {', '.join(ENGINE_LAYOUTS)}\n  hint: "
                + (hint or f"drop {flag} to search every layout")
            )
        return value
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
