"""The options of `planner.config.options` as typer parameters, and the one record a command
takes: `@command("plan")` turns `def plan(opts: Options)` into a typer command whose parameters
are every option the registry gives "plan", in the registry's order.

Adding an option happens in `planner.config.options` (see its docstring); nothing here changes.
"""

# No `from __future__ import annotations`: typer reads the built signatures' annotations.

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

import typer

from planner.config.flagtext import lower
from planner.config.options import BY_NAME, Option, for_command, option


@dataclass(frozen=True)
class Options:
    """One command's command line: each option's value as typed (text; a switch's bool), by
    name (`opts.chips`), read with the option's parser by `parsed`, and the planning options as
    the `PlanOverrides` that `load_plan` takes."""

    command: str
    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "values")
        if name not in values:
            raise AttributeError(f"{object.__getattribute__(self, 'command')} takes no option {name!r}")
        return values[name]

    def given(self, name: str) -> bool:
        value = self.values[name]
        return value is not None and value is not False

    def flag(self, name: str) -> str:
        return option(name, self.command).flag

    def parsed(self, name: str) -> Any:
        """Option `name`'s value read by its parser (a UsageError naming the flag)."""
        return option(name, self.command).value(self.values[name])

    def plan(self, **replace: Any):
        """The planning options, parsed in the registry's order; `replace` sets fields the command
        decides itself (serve's phases, explain's single values)."""
        from planner.config.options import PlanOverrides

        taken = {o.name: o for o in for_command(self.command) if o.plans}
        read = {}
        for name in (f.name for f in fields(PlanOverrides)):  # the order errors are found in
            if name in replace:
                read[name] = replace[name]
            elif name in taken:
                read[name] = taken[name].value(self.values[name])
        return PlanOverrides(**{k: v for k, v in read.items() if v is not None})


def _complete(kind: str):
    """Shell completion for --model/--cluster/PLAN: preset names, then YAML files and folders."""

    def complete(incomplete: str) -> list[str]:
        import glob
        import os

        from planner.config import list_presets

        names = [n for n in list_presets(kind) if n.startswith(incomplete)]
        paths = [p + "/" if os.path.isdir(p) else p for p in sorted(glob.glob(glob.escape(incomplete) + "*"))]
        return names + [p for p in paths if p.endswith((".yaml", ".yml", ".json", "/"))]

    return complete


def annotation(o: Option) -> Any:
    return bool if o.kind is bool else Optional[o.kind] if o.default is None else o.kind  # noqa: UP045 (typer reads it)


def param(name: str, command: str) -> Any:
    """The typer parameter of option `name` as `command` takes it (a default for a signature)."""
    return _param(option(name, command))


def _param(o: Option) -> Any:
    extra = {"autocompletion": _complete(o.complete)} if o.complete else {}
    if o.parse is lower:  # as typed by calibrate, which reads its own parameters
        extra["callback"] = lambda v: v.lower() if v else v
    if not o.flags:
        return typer.Argument(o.default, metavar=o.metavar, help=o.help, **extra)
    if o.kind is bool:
        return typer.Option(o.default, *o.flags, help=o.help)
    return typer.Option(o.default, *o.flags, metavar=o.metavar, help=o.help, **extra)


def command(name: str) -> Callable[[Callable[[Options], None]], Callable[..., None]]:
    """`body(opts)` as a typer command taking every option the registry gives command `name`."""

    def wrap(body: Callable[[Options], None]) -> Callable[..., None]:
        taken = for_command(name)

        def run(**values: Any) -> None:
            body(Options(name, values))

        run.__signature__ = inspect.Signature(
            [
                inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=_param(o), annotation=annotation(o))
                for o in taken
            ]
        )
        run.__annotations__ = {o.name: annotation(o) for o in taken}
        run.__name__, run.__qualname__, run.__doc__ = body.__name__, body.__qualname__, body.__doc__
        run.__module__ = body.__module__
        run.body = body  # the command itself, for a test that rebuilds it from the registry
        return run

    return wrap


__all__ = ["BY_NAME", "Options", "Path", "command", "param"]
