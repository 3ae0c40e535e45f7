"""`planner explain`: the cost breakdown of one layout."""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

from pathlib import Path
from typing import Optional

import typer

from planner.cli.common import (
    LOAD_IMBALANCE_HELP,
    REDUNDANT_HELP,
    AllowShortOpt,
    AsciiOpt,
    ClusterOpt,
    ContextOpt,
    FormatOpt,
    InputOpt,
    ModelOpt,
    OutputOpt,
    OutputTokOpt,
    SparsityOpt,
    check_format,
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


def explain(
    plan_file: Optional[str] = typer.Argument(
        None, metavar="PLAN", help="Plan: preset name or YAML file (optional; flags override it)."),
    model: Optional[str] = ModelOpt,
    cluster: Optional[str] = ClusterOpt,
    row: Optional[int] = typer.Option(
        None, "--row", metavar="N",
        help="Explain row N (the # column) of `planner plan` run with the same plan and flags; then "
             "--chips, --phase, --batch, --ffn, --attention, --weights, --experts, --stages and the "
             "constraints take lists and limits as in `planner plan`."),
    chips: Optional[str] = typer.Option(None, "--chips", metavar="N",
                                        help="Chip count [chips; required without --row]."),
    phase: Optional[str] = typer.Option(None, "--phase", metavar="PHASE", help="prefill or decode."),
    batch: Optional[str] = typer.Option(None, "--batch", metavar="B", help="Batch size [sequences]."),
    ffn: Optional[str] = typer.Option(None, "--ffn", metavar="NAME",
                                      help="FFN layout: ws1d, ws2d, wg-x, wg-xy or wg-xyz."),
    attention: Optional[str] = typer.Option(None, "--attention", metavar="NAME",
                                            help="Attention layout: heads or batch."),
    weights: Optional[str] = typer.Option(None, "--weights", metavar="FMT",
                                          help="Weight format: bf16, int8, fp8, int8-w8a8, int4 or fp4."),
    kv_cache: Optional[str] = typer.Option(None, "--kv-cache", metavar="FMT",
                                           help="KV-cache format: bf16, fp8 or int8 [default: bf16]."),
    sparsity: Optional[str] = SparsityOpt,
    experts: Optional[str] = typer.Option(
        None, "--experts", metavar="NAME",
        help="MoE models: expert layout (ep, ep-xy+tp-z, ep-x+tp-yz, ep-yz, tp, wg) [default: the fastest]."),
    load_imbalance: Optional[float] = typer.Option(None, "--load-imbalance", metavar="RHO",
                                                   help=LOAD_IMBALANCE_HELP),
    redundant_experts: Optional[int] = typer.Option(None, "--redundant-experts", metavar="N", help=REDUNDANT_HELP),
    stages: Optional[str] = typer.Option(None, "--stages", metavar="P",
                                         help="Pipeline stages over the outermost level (nodes; torus slices) "
                                              "[default 1]."),
    input_tokens: Optional[str] = InputOpt,
    output_tokens: Optional[str] = OutputTokOpt,
    context: Optional[str] = ContextOpt,
    allow_short_context: bool = AllowShortOpt,
    max_latency: Optional[str] = typer.Option(None, "--max-latency", metavar="TIME",
                                              help="With --row: as in `planner plan` [s]."),
    max_step_latency: Optional[str] = typer.Option(None, "--max-step-latency", metavar="TIME",
                                                   help="With --row: as in `planner plan` [s]."),
    min_mfu: Optional[str] = typer.Option(None, "--min-mfu", metavar="FRACTION",
                                          help="With --row: as in `planner plan` [fraction]."),
    fmt: str = FormatOpt,
    output: Optional[Path] = OutputOpt,
    ascii_only: bool = AsciiOpt,
) -> None:
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
    from planner.search.search import best, explain_infeasible
    from planner.units import to_json

    check_format(fmt)
    head = None
    if row is not None:  # the plan's flags, as `planner plan` takes them
        from planner.commands.explain_row import explain_point, plan_row
        from planner.commands.runs import name
        from planner.search.search import search

        spec = load_plan(plan_file, model=model, cluster=cluster, chips=int_list(chips, "--chips"),
                         phases=phase_list(phase), batches=int_list(batch, "--batch"), weights=word_list(weights),
                         ffn=word_list(ffn), attention=word_list(attention), experts=word_list(experts),
                         load_imbalance=load_imbalance, redundant_experts=redundant_experts,
                         kv_cache=word_list(kv_cache), sparsity=sparsity,
                         input_tokens=tokens_flag(input_tokens, "--input-tokens"),
                         output_tokens=tokens_flag(output_tokens, "--output-tokens"),
                         context=tokens_flag(context, "--context"), allow_short_context=allow_short_context,
                         max_latency_s=seconds_flag(max_latency, "--max-latency"),
                         max_step_latency_s=seconds_flag(max_step_latency, "--max-step-latency"),
                         min_mfu=min_mfu, stages=int_list(stages, "--stages"))
        with searching(use_ascii(ascii_only)):
            result = search(spec, partial=True)
        p = plan_row(result, row)
        ev, head, pipelined = explain_point(result, p), f"row {row}: {name(p)}", p.stages > 1
    else:
        missing = [flag for flag, value in (("--phase", phase), ("--batch", batch), ("--ffn", ffn),
                                            ("--attention", attention), ("--weights", weights)) if value is None]
        if missing:
            raise UsageError(f"Missing option '{missing[0]}' (or give --row N: a row of `planner plan`'s # column)")
        if chips is None:
            raise UsageError("--chips is required for explain (or give --row N: a row of `planner plan`'s # column)")
        limits = [flag for flag, value in (("--max-latency", max_latency), ("--max-step-latency", max_step_latency),
                                           ("--min-mfu", min_mfu)) if value is not None]
        if limits:
            raise UsageError(f"{limits[0]}: only with --row (it decides which points the plan's frontier holds)")
        spec = load_plan(plan_file, model=model, cluster=cluster, chips=_one(int_list(chips, "--chips"), "--chips"),
                         phases=(phase,), batches=_one(int_list(batch, "--batch"), "--batch"),
                         weights=_one(word_list(weights), "--weights"), ffn=_one(word_list(ffn), "--ffn"),
                         attention=_one(word_list(attention), "--attention"),
                         input_tokens=tokens_flag(input_tokens, "--input-tokens"),
                         output_tokens=tokens_flag(output_tokens, "--output-tokens"),
                         context=tokens_flag(context, "--context"),
                         kv_cache=_one(word_list(kv_cache), "--kv-cache"), sparsity=sparsity,
                         experts=_one(word_list(experts), "--experts"), load_imbalance=load_imbalance,
                         redundant_experts=redundant_experts,
                         stages=_one(int_list(stages, "--stages"), "--stages") or (1,),
                         allow_short_context=allow_short_context)
        space = spec.space
        kv = space.kv_cache[0]
        ev = best(spec, space.phases[0], space.chips[0], space.batches[0], space.weights[0], space.ffn[0],
                  space.attention[0], experts, kv_cache=kv)
        if ev is None:
            raise InfeasibleError(explain_infeasible(spec, space.phases[0], space.chips[0], space.batches[0],
                                                     space.weights[0], space.ffn[0], space.attention[0],
                                                     kv_cache=kv))
        pipelined = space.stages[0] > 1
    ascii_only = use_ascii(ascii_only)
    if pipelined:  # a row per stage and per send between stages
        from planner.render import pipeline as render_pipeline
        to_dict, to_csv, to_markdown, to_table = (render_pipeline.pipeline_dict, render_pipeline.pipeline_csv,
                                                  render_pipeline.pipeline_markdown, render_pipeline.pipeline_table)
    else:
        to_dict, to_csv, to_markdown, to_table = (render_explain.explain_dict, render_explain.explain_csv,
                                                  render_explain.explain_markdown, render_explain.explain_table)
    if fmt == "json":
        emit(to_json({**to_dict(ev, spec.cluster), **({"row": row} if head else {})}), output)
    elif fmt == "csv":
        emit(to_csv(ev, spec.cluster), output)
    elif fmt == "markdown":
        emit((f"## {head}\n\n" if head else "") + to_markdown(ev, spec.cluster), output)
    else:
        def draw(console):
            if head:
                console.print(head, highlight=False, markup=False)
            to_table(ev, spec.cluster, console, ascii_only=ascii_only)
        render_table(draw, output)


def _one(values, flag: str):
    """A flag that names one value without --row (comma lists are for --row's plan flags)."""
    if values is not None and len(values) != 1:
        raise UsageError(f"{flag}: one value without --row, got {len(values)} ({', '.join(map(str, values))})")
    return values
