"""`planner explain`: the cost breakdown of one layout."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planner.cli.common import (
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
    render_table,
    tokens_flag,
    use_ascii,
)
from planner.errors import UsageError


def explain(
    plan_file: Optional[str] = typer.Argument(
        None, metavar="PLAN", help="Plan: preset name or YAML file (optional; flags override it)."),
    model: Optional[str] = ModelOpt,
    cluster: Optional[str] = ClusterOpt,
    chips: Optional[int] = typer.Option(None, "--chips", metavar="N", help="Chip count [chips; required]."),
    phase: str = typer.Option(..., "--phase", metavar="PHASE", help="prefill or decode."),
    batch: int = typer.Option(..., "--batch", metavar="B", help="Batch size [sequences]."),
    ffn: str = typer.Option(..., "--ffn", metavar="NAME",
                            help="FFN layout: ws1d, ws2d, wg-x, wg-xy or wg-xyz."),
    attention: str = typer.Option(..., "--attention", metavar="NAME",
                                  help="Attention layout: heads or batch."),
    weights: str = typer.Option(..., "--weights", metavar="FMT",
                                help="Weight format: bf16, int8, fp8, int8-w8a8, int4 or fp4."),
    kv_cache: Optional[str] = typer.Option(None, "--kv-cache", metavar="FMT",
                                           help="KV-cache format: bf16, fp8 or int8 [default: bf16]."),
    sparsity: Optional[str] = SparsityOpt,
    experts: Optional[str] = typer.Option(
        None, "--experts", metavar="NAME",
        help="MoE models: expert layout (ep, ep-xy+tp-z, ep-x+tp-yz, ep-yz, tp, wg) [default: the fastest]."),
    load_imbalance: Optional[float] = typer.Option(
        None, "--load-imbalance", metavar="RHO",
        help="MoE models: the busiest chip's expert work over the mean chip's [>= 1; default 1]."),
    stages: int = typer.Option(1, "--stages", metavar="P",
                               help="Pipeline stages over the outermost level (nodes; torus slices) [default 1]."),
    input_tokens: Optional[str] = InputOpt,
    output_tokens: Optional[str] = OutputTokOpt,
    context: Optional[str] = ContextOpt,
    allow_short_context: bool = AllowShortOpt,
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
      planner explain --model palm-540b --cluster tpu-v4 --chips 64 --phase decode \\
          --batch 64 --ffn ws2d --attention batch --weights int8
    """
    from planner.config import load_plan
    from planner.errors import InfeasibleError
    from planner.render import explain as render_explain
    from planner.search.search import best, explain_infeasible
    from planner.units import to_json

    check_format(fmt)
    if chips is None:
        raise UsageError("--chips is required for explain")
    spec = load_plan(plan_file, model=model, cluster=cluster, chips=(chips,), phases=(phase,),
                     batches=(batch,), weights=(weights,), ffn=(ffn,), attention=(attention,),
                     input_tokens=tokens_flag(input_tokens, "--input-tokens"),
                     output_tokens=tokens_flag(output_tokens, "--output-tokens"),
                     context=tokens_flag(context, "--context"),
                     kv_cache=None if kv_cache is None else (kv_cache,), sparsity=sparsity,
                     experts=(experts,) if experts else None, load_imbalance=load_imbalance,
                     stages=(stages,), allow_short_context=allow_short_context)
    kv = spec.space.kv_cache[0]
    ev = best(spec, spec.space.phases[0], chips, batch, spec.space.weights[0], ffn, attention, experts, kv_cache=kv)
    if ev is None:
        raise InfeasibleError(explain_infeasible(spec, spec.space.phases[0], chips, batch,
                                                 spec.space.weights[0], ffn, attention, kv_cache=kv))
    ascii_only = use_ascii(ascii_only)
    if stages > 1:  # a row per stage and per send between stages
        from planner.render import pipeline as render_pipeline
        to_dict, to_csv, to_markdown, to_table = (render_pipeline.pipeline_dict, render_pipeline.pipeline_csv,
                                                  render_pipeline.pipeline_markdown, render_pipeline.pipeline_table)
    else:
        to_dict, to_csv, to_markdown, to_table = (render_explain.explain_dict, render_explain.explain_csv,
                                                  render_explain.explain_markdown, render_explain.explain_table)
    if fmt == "json":
        emit(to_json(to_dict(ev, spec.cluster)), output)
    elif fmt == "csv":
        emit(to_csv(ev, spec.cluster), output)
    elif fmt == "markdown":
        emit(to_markdown(ev, spec.cluster), output)
    else:
        render_table(lambda console: to_table(ev, spec.cluster, console, ascii_only=ascii_only), output)
