"""`planner compare`: compare layouts and gate regressions (the logic is in planner.commands.compare.compare).

This module parses the command line, calls one function of `planner.commands.compare.compare`, and renders what
it returns as a table (text), JSON, CSV or Markdown.
"""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

import sys
from pathlib import Path

import typer

from planner.cli.common import check_format, emit, render_table, use_ascii, word_list
from planner.cli.options import Options, command
from planner.config.options import planning
from planner.errors import UsageError

HELP = """Compare layouts side by side, gate regressions between two runs, or check a
pinned deployment. The arguments choose which:

\b
planner compare PLAN [--phase --chips --batch --layouts --attention ...]
planner compare --model NAME --cluster NAME [the same flags]
    per batch, each layout's latency, MFU, cost, bound and HBM use, and its
    latency relative to the fastest layout at that batch
planner compare BASELINE.json PLAN|CURRENT.json [--latency-tolerance ...]
    match the frontier points of two runs; exit 1 if any got slower or less
    efficient beyond the tolerances. A baseline saved by `planner serve
    --format json` is matched by deployment (TTFT, TPOT, tokens/s per chip,
    $/Mtok); a plan is then served again with the flags the baseline records
planner compare --deployment PLAN [--max-gap --gap-to]
    how far each pinned layout (the plan's deployment: section) is behind the
    fastest alternative; exit 1 beyond --max-gap

\b
Example:
  planner compare configs/plans/palm-540b-tpu-v4.yaml --phase decode \\
      --chips 64 --layouts ws1d,ws2d --attention heads,batch --format markdown

Exit codes: 0 ok or no change; 1 a regression, a gap beyond --max-gap or nothing
feasible; 2 invalid input.
"""


@command("compare")
def compare(opts: Options) -> None:
    from planner.commands import runs
    from planner.commands.compare import compare as gate
    from planner.commands.compare import deployment as layouts_and_pins
    from planner.commands.serve import runs as serve_runs
    from planner.render.compare import gate_text, layouts_table, layouts_text
    from planner.render.deployment import deployment_text

    fmt, output, first, second = opts.parsed("format"), opts.output, opts.first, opts.second
    check_format(fmt)
    given = lambda *names: [opts.flag(name) for name in names if opts.given(name)]
    plan_flags = given(*(o.name for o in planning()))
    gate_flags = given("latency_tolerance", "mfu_tolerance", "throughput_tolerance", "allow_different_model")
    deployment_flags = given("max_gap", "gap_to")
    flags_only = first is None and opts.given("model") and opts.given("cluster")

    if opts.deployment:
        if first is None or second is not None or _is_run(first):
            raise UsageError("--deployment takes exactly one plan (a preset name or YAML path)")
        _only(gate_flags, "a regression gate (two runs)")
        report = layouts_and_pins.check_deployment(
            _plan(first, opts, pairs_ok=False),
            max_gap=_percent_flag(opts.max_gap, 5.0, "--max-gap"),
            gap_to=opts.gap_to or "layout",
        )
        _emit_report(deployment_text(report, fmt), report.regressed, report.verdict(), output)
        return
    _only(deployment_flags, "--deployment")
    if first is None and not flags_only:
        raise UsageError(
            "give a plan (layouts side by side), a baseline run and a plan or run (regression "
            "gate), or --deployment PLAN; see planner compare --help"
        )
    if second is None:
        if first is not None and _is_run(first):
            raise UsageError(
                f"{first}: a saved run needs a plan or a second run to compare against, e.g. "
                f"planner compare {first} PLAN.yaml"
            )
        _only(gate_flags, "a regression gate (two runs)")
        spec = _plan(first, opts, pairs_ok=True)
        pairs = _pairs(opts.ffn, spec, attention_flag=opts.attention)
        if spec.space.runnable_on:
            spec, pairs = _runnable(spec, pairs, explicit=opts.ffn is not None)
        rows = layouts_and_pins.side_by_side(spec, pairs)
        if fmt == "table":
            render_table(lambda console: layouts_table(rows, spec, console, use_ascii(opts.ascii)), output)
        else:
            emit(layouts_text(rows, spec, fmt, first if first is not None else "the flags"), output)
        return
    if not _is_run(first):
        raise UsageError(
            f"{first}: the baseline must be a saved run (.json), as written by planner plan PLAN --format json -o FILE"
        )
    tolerance = gate.Tolerance(
        latency=_percent_flag(opts.latency_tolerance, 1.0, "--latency-tolerance"),
        mfu=_percent_flag(opts.mfu_tolerance, 0.5, "--mfu-tolerance"),
        throughput=_percent_flag(opts.throughput_tolerance, 1.0, "--throughput-tolerance"),
    )
    baseline, current = serve_runs.load_saved(first), None  # current None: a plan to run now
    if _is_run(second):
        if plan_flags:
            raise UsageError(f"{', '.join(plan_flags)}: only for a plan, not for the saved run {second}")
        current = serve_runs.load_saved(second)
        if type(current) is not type(baseline):
            kinds = {serve_runs.ServeRun: "planner serve", runs.Run: "planner plan"}
            raise UsageError(
                f"{second}: a saved {kinds[type(current)]} run cannot be compared with "
                f"{first}, a saved {kinds[type(baseline)]} run"
            )
    if isinstance(baseline, serve_runs.ServeRun):
        _serve_gate(baseline, current or second, tolerance, opts.allow_different_model, fmt, output, opts)
        return
    if opts.throughput_tolerance is not None:
        raise UsageError(f"--throughput-tolerance: only for saved serve runs; {first} is a planner plan run")
    if current is None:
        from planner.search.search import search

        current = runs.run_from_result(search(_plan(second, opts, pairs_ok=False)), second)
    report = gate.compare_runs(baseline, current, tolerance, opts.allow_different_model)
    _emit_report(gate_text(report, fmt), report.regressed, report.verdict(), output)


SERVE_AGAIN = (
    "model",
    "cluster",
    "chips",
    "batches",
    "weights",
    "ffn",
    "attention",
    "engine",
    "runnable_on",
)  # what serve_again takes


def _serve_gate(baseline, current, tolerance, allow_different_model: bool, fmt: str, output, opts: Options) -> None:
    """The gate for request-level results; `current` is a saved serve run or a plan to serve again
    with the flags recorded in the baseline (plan flags given here replace recorded ones)."""
    from planner.commands.compare.serve import compare_serve_runs
    from planner.commands.serve.runs import serve_again
    from planner.render.compare_serve import serve_gate_text

    if isinstance(current, str):
        if opts.given("phases"):
            raise UsageError("--phase: a serve run always plans both phases; drop --phase")
        layouts = word_list(opts.ffn)
        if layouts and any("+" in item for item in layouts):
            raise UsageError(
                "--layouts: ffn+attention pairs are only for layouts side by side; use "
                "--layouts FFN,... --attention ATTENTION,..."
            )
        others = [o.flag for o in planning() if o.name not in SERVE_AGAIN and opts.given(o.name)]
        if others:
            raise UsageError(
                f"{', '.join(others)}: a serve run is served again with the workload and search "
                f"the baseline records; only {', '.join(opts.flag(n) for n in SERVE_AGAIN)} replace "
                "them\n  hint: drop it, or save a new baseline with planner serve ... --format json"
            )
        plan = opts.plan()
        current = serve_again(
            baseline,
            current,
            model=plan.model,
            cluster=plan.cluster,
            chips=plan.chips,
            batches=plan.batches,
            weights=plan.weights,
            ffn=layouts,
            attention=plan.attention,
            engine=plan.engine,
            runnable_on=plan.runnable_on,
        )
    report = compare_serve_runs(baseline, current, tolerance, allow_different_model)
    _emit_report(serve_gate_text(report, fmt), report.regressed, report.verdict(), output)


# --- parsing ------------------------------------------------------------------------------------


def _is_run(ref: str) -> bool:
    return ref.lower().endswith(".json")


def _only(flags: list[str], where: str) -> None:
    if flags:
        raise UsageError(f"{', '.join(flags)}: only for {where}")


def _percent_flag(value: float | None, default: float, flag: str) -> float:
    """A percentage (or percentage points) from the command line, as a fraction."""
    value = default if value is None else value
    if not 0 <= value < 1e6:
        raise UsageError(f"{flag}: expected a percentage >= 0, got {value}")
    return value / 100.0


def _plan(ref: str | None, opts: Options, *, pairs_ok: bool):
    """The plan with the command line's overrides; --layouts sets the FFN layouts (the FFN half
    of each ffn+attention item, which only side by side takes)."""
    from planner.config import load_plan

    ffn = None
    if opts.ffn is not None:
        items = word_list(opts.ffn)
        if not pairs_ok and any("+" in item for item in items):
            raise UsageError(
                f"--layouts: ffn+attention pairs ({opts.ffn!r}) are only for layouts side by "
                "side; use --layouts FFN,... --attention ATTENTION,..."
            )
        ffn = tuple(dict.fromkeys(item.split("+", 1)[0] for item in items))
    return load_plan(ref, opts.plan(ffn=ffn))


def _pairs(layouts: str | None, spec, attention_flag: str | None = None) -> tuple[tuple[str, str], ...]:
    """The (ffn, attention) layouts to show: each ffn+attention item as given, each plain ffn item
    crossed with every attention layout of the plan (after --attention)."""
    from planner.cost.layouts import ATTENTION_LAYOUTS, FFN_LAYOUTS
    from planner.errors import did_you_mean

    pairs = []
    for item in word_list(layouts) if layouts is not None else spec.space.ffn:
        ffn, plus, attention = item.partition("+")
        if (
            plus
            and attention_flag is not None
            and attention not in spec.space.attention
            and attention in ATTENTION_LAYOUTS
        ):
            raise UsageError(
                f"--layouts: {item!r} names attention {attention!r}, but --attention allows only "
                f"{', '.join(spec.space.attention)}; drop one of the two"
            )
        if plus and attention not in ATTENTION_LAYOUTS:
            hint = did_you_mean(attention, ATTENTION_LAYOUTS)
            raise UsageError(
                f"--layouts: unknown attention layout {attention!r} in {item!r}; expected one of "
                f"{', '.join(ATTENTION_LAYOUTS)}" + (f" ({hint})" if hint else "")
            )
        pairs += [(ffn, attention)] if plus else [(ffn, a) for a in spec.space.attention]
    if spec.model.experts is None:  # dp applies to MoE models only (the plan refuses it by name)
        pairs = [(f, a) for f, a in pairs if not FFN_LAYOUTS[f].replicated] if layouts is None else pairs
    return tuple(dict.fromkeys(pairs))


def _runnable(spec, pairs: tuple[tuple[str, str], ...], explicit: bool):
    """Layouts side by side with --runnable-on: the pairs and weight formats the engine runs; a
    pair named in --layouts that it does not run is a mistake, said with the engine's reason."""
    from dataclasses import replace

    from planner.specs.formats import Formats

    space, e = spec.space, spec.space.engine
    kept = tuple((f, a) for f, a in pairs if space.runs_layout(f, a))
    dropped = [(f, a) for f, a in pairs if (f, a) not in kept]
    if (explicit and dropped) or not kept:
        f, a = dropped[0]
        why = "; ".join(e.reasons(f, a, "", sorted(e.kv_cache)[0], sorted(e.weights)[0]))
        raise UsageError(
            f"--runnable-on {e.name}: {e.label} does not run {f}+{a} ({why})\n  hint: compare layouts it runs "
            f"({', '.join(f'{x}+{y}' for x, y in sorted(e.dense))}), or drop --runnable-on"
        )
    weights = tuple(
        w for w in space.weights if any(space.runs_formats(Formats(weights=w, kv_cache=kv)) for kv in space.kv_cache)
    )
    if not weights:
        raise UsageError(
            f"--runnable-on {e.name}: {e.label} serves none of the weight formats compared "
            f"({', '.join(w.label for w in space.weights)})\n  hint: --weights {','.join(sorted(e.weights))}, or drop --runnable-on"
        )
    return replace(spec, space=replace(space, weights=weights)), kept


def _emit_report(text: str, failed: bool, verdict: str, output: Path | None) -> None:
    emit(text, output)
    if failed:
        if output is not None:
            print(f"planner compare: {verdict} (report in {output})", file=sys.stderr)
        raise typer.Exit(1)
