"""`planner compare`: compare layouts and gate regressions (the logic is in planner.commands.compare).

This module parses the command line, calls one function of `planner.commands.compare`, and renders what
it returns as a table (text), JSON, CSV or Markdown.
"""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

import sys
from pathlib import Path
from typing import Optional

import typer

from planner.cli.common import (
    AsciiOpt,
    ClusterOpt,
    FormatOpt,
    ModelOpt,
    OutputOpt,
    check_format,
    emit,
    int_list,
    phase_list,
    render_table,
    use_ascii,
    word_list,
)
from planner.errors import UsageError

HELP = """Compare layouts side by side, gate regressions between two runs, or check a
pinned deployment. The arguments choose which:

\b
planner compare PLAN [--phase --chips --batch --layouts --attention --weights]
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


def compare(
    first: Optional[str] = typer.Argument(None, metavar="PLAN|BASELINE.json",
                                          help="A plan (preset name or YAML path), or the baseline run."),
    second: Optional[str] = typer.Argument(None, metavar="PLAN|CURRENT.json",
                                           help="With a baseline: a plan to search now, or a saved run."),
    deployment: bool = typer.Option(False, "--deployment", help="Check the plan's pinned deployment."),
    model: Optional[str] = ModelOpt,
    cluster: Optional[str] = ClusterOpt,
    phase: Optional[str] = typer.Option(None, "--phase", metavar="PHASE", help="prefill, decode or both (default: the plan's)."),
    chips: Optional[str] = typer.Option(None, "--chips", metavar="LIST", help="Chip counts, comma list [chips] (default: the plan's)."),
    batch: Optional[str] = typer.Option(None, "--batch", metavar="LIST", help="Batch sizes, comma list [sequences] (default: the plan's)."),
    weights: Optional[str] = typer.Option(None, "--weights", metavar="LIST", help="Weight formats, comma list: bf16, int8, fp8, int8-w8a8, int4, fp4, or all (default: the plan's)."),
    layouts: Optional[str] = typer.Option(None, "--layouts", "--ffn", metavar="LIST", help="FFN layouts, comma list (ws1d, ws2d, wg-x, wg-xy, wg-xyz); side by side also takes ffn+attention, e.g. ws2d+batch."),
    attention: Optional[str] = typer.Option(None, "--attention", metavar="LIST", help="Attention layouts, comma list: heads, batch (default: the plan's)."),
    stages: Optional[str] = typer.Option(None, "--stages", metavar="P[,P...]", help="Pipeline stage counts, comma list; a pipelined layout is shown as PP2 ffn+attention (default: the plan's)."),
    latency_tolerance: Optional[float] = typer.Option(None, "--latency-tolerance", metavar="PERCENT", help="Gate: allowed latency rise [%] (default 1)."),
    mfu_tolerance: Optional[float] = typer.Option(None, "--mfu-tolerance", metavar="POINTS", help="Gate: allowed MFU fall [percentage points] (default 0.5)."),
    throughput_tolerance: Optional[float] = typer.Option(None, "--throughput-tolerance", metavar="PERCENT", help="Gate of serve runs: allowed fall of tokens/s per chip, or rise of $/Mtok [%] (default 1); TTFT and TPOT take --latency-tolerance."),
    allow_different_model: bool = typer.Option(False, "--allow-different-model", help="Gate: compare runs of different models."),
    max_gap: Optional[float] = typer.Option(None, "--max-gap", metavar="PERCENT", help="Deployment: allowed gap [%] (default 5)."),
    gap_to: Optional[str] = typer.Option(None, "--gap-to", metavar="REFERENCE", help="Deployment: 'layout' (fastest layout on the pin's chips, batch and weights; default) or 'frontier' (fastest frontier point with at least the pin's MFU)."),
    fmt: str = FormatOpt,
    output: Optional[Path] = OutputOpt,
    ascii_only: bool = AsciiOpt,
) -> None:
    from planner.commands import compare as gate
    from planner.commands import deployment as layouts_and_pins
    from planner.commands import runs, serve_runs
    from planner.render.compare import deployment_text, gate_text, layouts_table, layouts_text

    check_format(fmt)
    given = lambda **flags: [flag for flag, value in flags.items() if value not in (None, False)]
    plan_flags = dict(model=model, cluster=cluster, phase=phase, chips=chips, batch=batch, weights=weights,
                      layouts=layouts, attention=attention, stages=stages)
    gate_flags = given(**{"--latency-tolerance": latency_tolerance, "--mfu-tolerance": mfu_tolerance,
                          "--throughput-tolerance": throughput_tolerance,
                          "--allow-different-model": allow_different_model})
    deployment_flags = given(**{"--max-gap": max_gap, "--gap-to": gap_to})

    if deployment:
        if first is None or second is not None or _is_run(first):
            raise UsageError("--deployment takes exactly one plan (a preset name or YAML path)")
        _only(gate_flags, "a regression gate (two runs)")
        report = layouts_and_pins.check_deployment(_plan(first, pairs_ok=False, **plan_flags),
                                       max_gap=_percent_flag(max_gap, 5.0, "--max-gap"), gap_to=gap_to or "layout")
        _emit_report(deployment_text(report, fmt), report.regressed, report.verdict(), output)
        return
    _only(deployment_flags, "--deployment")
    if first is None:
        raise UsageError("give a plan (layouts side by side), a baseline run and a plan or run (regression "
                         "gate), or --deployment PLAN; see planner compare --help")
    if second is None:
        if _is_run(first):
            raise UsageError(f"{first}: a saved run needs a plan or a second run to compare against, e.g. "
                             f"planner compare {first} PLAN.yaml")
        _only(gate_flags, "a regression gate (two runs)")
        spec = _plan(first, pairs_ok=True, **plan_flags)
        rows = layouts_and_pins.side_by_side(spec, _pairs(layouts, spec, attention_flag=plan_flags["attention"]))
        if fmt == "table":
            render_table(lambda console: layouts_table(rows, spec, console, use_ascii(ascii_only)), output)
        else:
            emit(layouts_text(rows, spec, fmt, first), output)
        return
    if not _is_run(first):
        raise UsageError(f"{first}: the baseline must be a saved run (.json), as written by "
                         f"planner plan PLAN --format json -o FILE")
    tolerance = gate.Tolerance(latency=_percent_flag(latency_tolerance, 1.0, "--latency-tolerance"),
                               mfu=_percent_flag(mfu_tolerance, 0.5, "--mfu-tolerance"),
                               throughput=_percent_flag(throughput_tolerance, 1.0, "--throughput-tolerance"))
    baseline, current = serve_runs.load_saved(first), None  # current None: a plan to run now
    if _is_run(second):
        if given(**plan_flags):
            raise UsageError(f"{', '.join('--' + f for f in given(**plan_flags))}: only for a plan, not for "
                             f"the saved run {second}")
        current = serve_runs.load_saved(second)
        if type(current) is not type(baseline):
            kinds = {serve_runs.ServeRun: "planner serve", runs.Run: "planner plan"}
            raise UsageError(f"{second}: a saved {kinds[type(current)]} run cannot be compared with "
                             f"{first}, a saved {kinds[type(baseline)]} run")
    if isinstance(baseline, serve_runs.ServeRun):
        _serve_gate(baseline, current or second, tolerance, allow_different_model, fmt, output, plan_flags)
        return
    if throughput_tolerance is not None:
        raise UsageError(f"--throughput-tolerance: only for saved serve runs; {first} is a planner plan run")
    if current is None:
        from planner.search.search import search
        current = runs.run_from_result(search(_plan(second, pairs_ok=False, **plan_flags)), second)
    report = gate.compare_runs(baseline, current, tolerance, allow_different_model)
    _emit_report(gate_text(report, fmt), report.regressed, report.verdict(), output)


def _serve_gate(baseline, current, tolerance, allow_different_model: bool, fmt: str, output, plan_flags) -> None:
    """The gate for request-level results; `current` is a saved serve run or a plan to serve again
    with the flags recorded in the baseline (plan flags given here replace recorded ones)."""
    from planner.commands.compare_serve import compare_serve_runs
    from planner.commands.serve_runs import serve_again
    from planner.render.compare_serve import serve_gate_text

    if isinstance(current, str):
        if plan_flags["phase"] is not None:
            raise UsageError("--phase: a serve run always plans both phases; drop --phase")
        layouts = word_list(plan_flags["layouts"])
        if layouts and any("+" in item for item in layouts):
            raise UsageError("--layouts: ffn+attention pairs are only for layouts side by side; use "
                             "--layouts FFN,... --attention ATTENTION,...")
        current = serve_again(baseline, current, model=plan_flags["model"], cluster=plan_flags["cluster"],
                              chips=int_list(plan_flags["chips"], "--chips"),
                              batches=int_list(plan_flags["batch"], "--batch"),
                              weights=word_list(plan_flags["weights"]), ffn=layouts,
                              attention=word_list(plan_flags["attention"]))
    report = compare_serve_runs(baseline, current, tolerance, allow_different_model)
    _emit_report(serve_gate_text(report, fmt), report.regressed, report.verdict(), output)


# --- parsing ------------------------------------------------------------------------------------


def _is_run(ref: str) -> bool:
    return ref.lower().endswith(".json")


def _only(flags: list[str], where: str) -> None:
    if flags:
        raise UsageError(f"{', '.join(flags)}: only for {where}")


def _percent_flag(value: Optional[float], default: float, flag: str) -> float:
    """A percentage (or percentage points) from the command line, as a fraction."""
    value = default if value is None else value
    if not 0 <= value < 1e6:
        raise UsageError(f"{flag}: expected a percentage >= 0, got {value}")
    return value / 100.0


def _plan(ref: str, *, pairs_ok: bool, model, cluster, phase, chips, batch, weights, layouts, attention, stages):
    """The plan with the command line's overrides; --layouts sets the FFN layouts (the FFN half
    of each ffn+attention item, which only side by side takes)."""
    from planner.config import load_plan

    ffn = None
    if layouts is not None:
        items = word_list(layouts)
        if not pairs_ok and any("+" in item for item in items):
            raise UsageError(f"--layouts: ffn+attention pairs ({layouts!r}) are only for layouts side by "
                             "side; use --layouts FFN,... --attention ATTENTION,...")
        ffn = tuple(dict.fromkeys(item.split("+", 1)[0] for item in items))
    return load_plan(ref, model=model, cluster=cluster, phases=phase_list(phase), chips=int_list(chips, "--chips"),
                     batches=int_list(batch, "--batch"), weights=word_list(weights), ffn=ffn,
                     attention=word_list(attention), stages=int_list(stages, "--stages"))


def _pairs(layouts: Optional[str], spec, attention_flag: Optional[str] = None) -> tuple[tuple[str, str], ...]:
    """The (ffn, attention) layouts to show: each ffn+attention item as given, each plain ffn item
    crossed with every attention layout of the plan (after --attention)."""
    from planner.cost.layouts import ATTENTION_LAYOUTS
    from planner.errors import did_you_mean

    pairs = []
    for item in word_list(layouts) if layouts is not None else spec.space.ffn:
        ffn, plus, attention = item.partition("+")
        if plus and attention_flag is not None and attention not in spec.space.attention and \
                attention in ATTENTION_LAYOUTS:
            raise UsageError(f"--layouts: {item!r} names attention {attention!r}, but --attention allows only "
                             f"{', '.join(spec.space.attention)}; drop one of the two")
        if plus and attention not in ATTENTION_LAYOUTS:
            hint = did_you_mean(attention, ATTENTION_LAYOUTS)
            raise UsageError(f"--layouts: unknown attention layout {attention!r} in {item!r}; expected one of "
                             f"{', '.join(ATTENTION_LAYOUTS)}" + (f" ({hint})" if hint else ""))
        pairs += [(ffn, attention)] if plus else [(ffn, a) for a in spec.space.attention]
    return tuple(dict.fromkeys(pairs))


def _emit_report(text: str, failed: bool, verdict: str, output: Optional[Path]) -> None:
    emit(text, output)
    if failed:
        if output is not None:
            print(f"planner compare: {verdict} (report in {output})", file=sys.stderr)
        raise typer.Exit(1)
