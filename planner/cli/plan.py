"""`planner plan`: search every layout and print the frontier of each phase."""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

from planner.cli.common import emit, render_table, searching, use_ascii
from planner.cli.options import Options, command
from planner.errors import UsageError


@command("plan")
def plan(opts: Options) -> None:
    """Search every layout and print the latency/MFU Pareto frontier of each phase.

    Every chip count, mesh, FFN and attention layout, weight format and batch size is
    evaluated; points that do not fit in HBM or break a constraint are dropped and counted.
    Latency is per request (decode: all output tokens), MFU a fraction of the bf16 peak.

    \b
    Examples:
      planner plan configs/plans/palm-540b-tpu-v4.yaml
      planner plan palm-540b-tpu-v4 --phase decode --plot
      planner plan --model palm-540b --cluster tpu-v4 --chips 64 --phase decode \\
          --batch 64 --weights int8 --format json -o frontier.json
    """
    from planner.cli.common import check_format
    from planner.commands.runs import plan_dict
    from planner.config import load_plan
    from planner.search.search import search
    from planner.units import to_json

    fmt, output = opts.parsed("format"), opts.output
    check_format(fmt)
    if opts.plot and fmt != "table":
        raise UsageError(f"--plot draws in the terminal; it cannot be combined with --format {fmt}")
    spec = load_plan(opts.plan_file, opts.plan())
    ascii_only = use_ascii(opts.ascii)
    with searching(ascii_only) as activity:
        result = _search(search, spec, activity)
    if fmt == "json":
        emit(to_json(plan_dict(result)), output)
    else:  # the renderers are imported only here: `--format json` starts faster without them
        from planner.render import plan as render_plan

        if fmt == "csv":
            emit(render_plan.plan_csv(result), output)
        elif fmt == "markdown":
            emit(render_plan.plan_markdown(result), output)
        elif opts.plot:
            render_table(lambda console: _draw_plot(result, console, ascii_only), output)
        else:
            render_table(lambda console: render_plan.plan_table(result, console, ascii_only=ascii_only), output)
    failed = [ph.infeasible for ph in result.phases if ph.infeasible]
    if failed:  # the other phases are printed; this one's reason goes to stderr, exit 1
        from planner.errors import InfeasibleError

        raise InfeasibleError("\n".join(failed))


def _search(search, spec, activity):
    """Run the search, feeding the progress line when the search reports progress; a phase with
    nothing feasible comes back empty while another phase has a frontier."""
    import inspect

    if "progress" in inspect.signature(search).parameters:
        return search(spec, progress=activity.update, partial=True)
    return search(spec)


def _draw_plot(result, console, ascii_only: bool) -> None:
    from planner.render.plot import frontier_plot

    for line in frontier_plot(result, width=min(console.width, 120), height=24, ascii_only=ascii_only):
        console.print(line, soft_wrap=True)
