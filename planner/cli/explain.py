"""`planner explain`: the cost breakdown of one layout."""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

from planner.cli.common import check_format, emit, render_table, searching, use_ascii
from planner.cli.options import Options, command
from planner.errors import UsageError


@command("explain")
def explain(opts: Options) -> None:
    """Print the cost breakdown of one layout: every einsum and collective, per step.

    Each row gives FLOPs, HBM bytes and network bytes per chip, and the compute, memory and
    network seconds they cost, with the sharding in the book's notation (W_in[E_x, F_yz]);
    the rows add up to the step time and the memory lines to the HBM in use.

    \b
    Example:
      planner explain --model palm-540b --cluster tpu-v4 --chips 64 \\
          --phase decode --batch 64 --ffn ws2d --attention batch --weights int8
      # row 3 of `planner plan`'s output:
      planner explain configs/plans/palm-540b-tpu-v4.yaml --row 3
    """
    from planner.config import load_plan
    from planner.errors import InfeasibleError
    from planner.render import explain as render_explain
    from planner.render.emit import emission_json, emission_markdown, print_emission
    from planner.search.search import best, explain_infeasible
    from planner.units import to_json

    fmt, output, row = opts.parsed("format"), opts.output, opts.row
    check_format(fmt)
    if opts.given("emit") and fmt == "csv":
        raise UsageError(f"{opts.flag('emit')}: write it as table, json or markdown (not csv)")
    head = None
    if row is not None:  # the plan's flags, as `planner plan` takes them
        from planner.commands.explain_row import explain_point, plan_row
        from planner.commands.runs import name
        from planner.search.search import search

        spec = load_plan(opts.plan_file, opts.plan())
        if opts.given("emit"):  # a bad engine fails before the search
            from planner.commands.emit.emit import check

            check(opts.parsed("emit"), spec, opts.flag("emit"))
        with searching(use_ascii(opts.ascii)):
            result = search(spec, partial=True)
        p = plan_row(result, row)
        ev, head, pipelined = explain_point(result, p), f"row {row}: {name(p)}", p.stages > 1
    else:
        missing = [
            opts.flag(key) for key in ("phases", "batches", "ffn", "attention", "weights") if not opts.given(key)
        ]
        if missing:
            raise UsageError(f"Missing option '{missing[0]}' (or give --row N: a row of `planner plan`'s # column)")
        if not opts.given("chips"):
            raise UsageError("--chips is required for explain (or give --row N: a row of `planner plan`'s # column)")
        limits = [opts.flag(key) for key in ("max_latency_s", "max_step_latency_s", "min_mfu") if opts.given(key)]
        if limits:
            raise UsageError(f"{limits[0]}: only with --row (it decides which points the plan's frontier holds)")
        one = {
            key: _one(opts.parsed(key), opts.flag(key))
            for key in ("chips", "batches", "weights", "ffn", "attention", "kv_cache", "experts", "stages")
        }
        one["stages"] = one["stages"] or (1,)
        spec = load_plan(opts.plan_file, opts.plan(phases=(opts.phases,), **one))
        space = spec.space
        kv = space.kv_cache[0]
        ev = best(
            spec,
            space.phases[0],
            space.chips[0],
            space.batches[0],
            space.weights[0],
            space.ffn[0],
            space.attention[0],
            opts.experts,
            kv_cache=kv,
        )
        if ev is None:
            raise InfeasibleError(
                explain_infeasible(
                    spec,
                    space.phases[0],
                    space.chips[0],
                    space.batches[0],
                    space.weights[0],
                    space.ffn[0],
                    space.attention[0],
                    kv_cache=kv,
                    experts=opts.experts,
                )
            )
        pipelined = space.stages[0] > 1
    ascii_only = use_ascii(opts.ascii)
    emission = _emission(opts, spec, ev, row)
    if pipelined:  # a row per stage and per send between stages
        from planner.render import pipeline as render_pipeline

        to_dict, to_csv, to_markdown, to_table = (
            render_pipeline.pipeline_dict,
            render_pipeline.pipeline_csv,
            render_pipeline.pipeline_markdown,
            render_pipeline.pipeline_table,
        )
    else:
        to_dict, to_csv, to_markdown, to_table = (
            render_explain.explain_dict,
            render_explain.explain_csv,
            render_explain.explain_markdown,
            render_explain.explain_table,
        )
    runnable = spec.space.runnable_on  # --runnable-on: each format says the search was kept to the engine
    if runnable:
        from planner.render.common import runnable_note

        head = f"{head}; {runnable_note(spec).rstrip()}" if head else runnable_note(spec).rstrip()
    if fmt == "json":
        extra = {**({"row": row} if row is not None else {}), **({"runnable_on": runnable} if runnable else {})}
        emit(to_json({**to_dict(ev, spec.cluster), **extra, **emission_json(emission)}), output)
    elif fmt == "csv":
        text = to_csv(ev, spec.cluster)
        if runnable:
            from planner.render.common import with_csv_column

            text = with_csv_column(text, "runnable_on", runnable)
        emit(text, output)
    elif fmt == "markdown":
        emit((f"## {head}\n\n" if head else "") + to_markdown(ev, spec.cluster) + emission_markdown(emission), output)
    else:

        def draw(console):
            if head:
                console.print(head, highlight=False, markup=False)
            to_table(ev, spec.cluster, console, ascii_only=ascii_only)
            print_emission(console, emission)

        render_table(draw, output)


def _emission(opts: Options, spec, ev, row):
    """`--emit ENGINE`: what runs the explained layout on the engine (planner.commands.emit)."""
    if not opts.given("emit"):
        return None
    from planner.commands.emit.emit import emit_explained

    return emit_explained(spec, ev, opts.parsed("emit"), row)


def _one(values, flag: str):
    """A flag that names one value without --row (comma lists are for --row's plan flags)."""
    if values is not None and len(values) != 1:
        raise UsageError(f"{flag}: one value without --row, got {len(values)} ({', '.join(map(str, values))})")
    return values
