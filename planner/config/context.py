"""A workload against the model's context: the prompt, a whole request (input + output tokens)
and the decode context must fit in the model's maximum context (`Model.max_context`), and a
decode context shorter than the prompt must be declared intended (`--allow-short-context`, or `allow_short_context: true` in the workload).

Checked only where it matters: the prompt when prefill is planned or the prompt is given, the
decode context when decode is planned; the short-context check when both lengths are given."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from planner.config.yamlio import Fields
from planner.errors import UsageError
from planner.specs.model import Model
from planner.specs.plan import Phase

FLAG = {"input_tokens": "--input-tokens", "output_tokens": "--output-tokens", "context": "--context"}
ALLOW = "--allow-short-context"


def check_context(
    model: Model, workload: Mapping[str, int], phases: Iterable[Phase], part: Fields | None, flags: Mapping[str, Any]
) -> None:
    """Raise (exit 2) when the workload does not fit the model's context; `part` is the plan
    file's workload section (for file and line), `flags` the command-line values given."""
    phases = tuple(phases)
    decode = Phase.DECODE in phases

    def given(key: str) -> bool:
        return key in flags or (part is not None and key in part.values)

    def fail(key: str, message: str, hint: str) -> None:
        if key not in flags and part is not None and key in part.where:
            raise part.where[key].error(message, hint=hint)
        default = "" if key in flags else f" (default {workload[key]})"
        raise UsageError(f"{FLAG[key]}{default}: {message}\n  hint: {hint}")

    limit, name = model.max_context, model.name
    prompt, context = workload["input_tokens"], workload["context"]
    if limit is not None and prompt > limit and (Phase.PREFILL in phases or given("input_tokens")):
        fail(
            "input_tokens",
            f"a prompt of {prompt} tokens exceeds {name}'s maximum context of {limit} tokens",
            f"give at most {limit} input tokens (the model's max_context)",
        )
    total = prompt + workload["output_tokens"]
    if limit is not None and decode and total > limit:
        fail(
            "output_tokens",
            f"a request of {prompt} input + {workload['output_tokens']} output tokens = {total} "
            f"tokens exceeds {name}'s maximum context of {limit} tokens",
            f"give at most {limit - prompt} output tokens (max_context {limit} less the {prompt}-token "
            "prompt), or a shorter prompt"
            if prompt < limit
            else f"the {prompt}-token prompt fills the {limit}-token context: give at most {limit - 1} input tokens "
            "to leave room for output",
        )
    if limit is not None and decode and context > limit:
        fail(
            "context",
            f"a decode context of {context} tokens exceeds {name}'s maximum context of {limit} tokens",
            f"give a context of at most {limit} tokens (the model's max_context)",
        )
    allowed = flags.get("allow_short_context") or (part is not None and part.get("allow_short_context"))
    if decode and context < prompt and given("context") and given("input_tokens") and not allowed:
        fail(
            "context",
            f"the decode context ({context} tokens) is shorter than the prompt ({prompt} input "
            "tokens), so decode would not attend to all of the prompt",
            f"give a context of at least {prompt} tokens, or {ALLOW} (in a plan file: "
            "workload: {allow_short_context: true}) if a shorter KV cache is intended",
        )
