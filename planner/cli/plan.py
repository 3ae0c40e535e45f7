"""`planner plan`: search every layout and print the frontier of each phase."""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

from pathlib import Path
from typing import Optional

import typer

from planner.cli.common import (
    WEIGHTS_HELP,
    AllowShortOpt,
    AsciiOpt,
    AttentionListOpt,
    BatchOpt,
    ClusterOpt,
    ContextOpt,
    ExpertsListOpt,
    FfnListOpt,
    FormatOpt,
    InputOpt,
    KvCacheOpt,
    LoadImbalanceOpt,
    RedundantExpertsOpt,
    ModelOpt,
    OutputOpt,
    OutputTokOpt,
    SparsityOpt,
    check_format,
    complete,
    emit,
    int_list,
    phase_list,
    render_table,
    searching,
    seconds_flag,
    tokens_flag,
    use_ascii,
    word_list,
)
from planner.errors import UsageError


def plan(
    plan_file: Optional[str] = typer.Argument(
        None, metavar="PLAN", autocompletion=complete("plans"),
        help="Plan: preset name or YAML file. Optional when --model and "
                                     "--cluster are given; flags override its fields."),
    model: Optional[str] = ModelOpt,
    cluster: Optional[str] = ClusterOpt,
    chips: Optional[str] = typer.Option(
        None, "--chips", metavar="N[,N...]",
        help="Chip counts to search [chips; default: every slice the cluster offers]."),
    phase: Optional[str] = typer.Option(None, "--phase", metavar="PHASE",
                                        help="prefill, decode or both [default: both]."),
    batch: Optional[str] = BatchOpt,
    weights: Optional[str] = typer.Option(None, "--weights", metavar="FMT[,FMT...]", help=WEIGHTS_HELP),
    ffn: Optional[str] = FfnListOpt,
    attention: Optional[str] = AttentionListOpt,
    kv_cache: Optional[str] = KvCacheOpt,
    sparsity: Optional[str] = SparsityOpt,
    experts: Optional[str] = ExpertsListOpt,
    load_imbalance: Optional[float] = LoadImbalanceOpt,
    redundant_experts: Optional[int] = RedundantExpertsOpt,
    stages: Optional[str] = typer.Option(
        None, "--stages", metavar="P[,P...]",
        help="Pipeline stage counts to search, over the outermost level (whole nodes; torus slices) "
             "[default 1: no pipeline]."),
    input_tokens: Optional[str] = InputOpt,
    output_tokens: Optional[str] = OutputTokOpt,
    context: Optional[str] = ContextOpt,
    allow_short_context: bool = AllowShortOpt,
    max_latency: Optional[str] = typer.Option(
        None, "--max-latency", metavar="TIME",
        help="Drop points slower than this [s, or with a unit: '200 ms']: a prefill pass, or all of "
             "decode's output tokens."),
    max_step_latency: Optional[str] = typer.Option(
        None, "--max-step-latency", metavar="TIME",
        help="Drop decode points whose step (time per output token) is slower than this [s, or '50 ms']."),
    min_mfu: Optional[str] = typer.Option(None, "--min-mfu", metavar="FRACTION",
                                          help="Drop points below this MFU [fraction 0.4 or '40%'; of the bf16 peak, "
                                               "so fp8/fp4 points may pass 100%]."),
    fmt: str = FormatOpt,
    output: Optional[Path] = OutputOpt,
    plot: bool = typer.Option(
        False, "--plot", help="Draw each phase's frontier (MFU against latency on a log axis, one mark "
                              "per FFN layout) instead of the tables."),
    ascii_only: bool = AsciiOpt,
) -> None:
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
    from planner.commands.runs import plan_dict
    from planner.config import load_plan
    from planner.search.search import search
    from planner.units import to_json

    check_format(fmt)
    if plot and fmt != "table":
        raise UsageError(f"--plot draws in the terminal; it cannot be combined with --format {fmt}")
    spec = load_plan(plan_file, model=model, cluster=cluster, chips=int_list(chips, "--chips"),
                     phases=phase_list(phase), batches=int_list(batch, "--batch"), weights=word_list(weights),
                     ffn=word_list(ffn), attention=word_list(attention), experts=word_list(experts),
                     load_imbalance=load_imbalance, redundant_experts=redundant_experts, kv_cache=word_list(kv_cache),
                     sparsity=sparsity, input_tokens=tokens_flag(input_tokens, "--input-tokens"),
                     output_tokens=tokens_flag(output_tokens, "--output-tokens"),
                     context=tokens_flag(context, "--context"),
                     allow_short_context=allow_short_context,
                     max_latency_s=seconds_flag(max_latency, "--max-latency"),
                     max_step_latency_s=seconds_flag(max_step_latency, "--max-step-latency"),
                     min_mfu=min_mfu, stages=int_list(stages, "--stages"))
    ascii_only = use_ascii(ascii_only)
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
        elif plot:
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
