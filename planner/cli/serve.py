"""`planner serve`: whole requests (TTFT, TPOT, tokens/s per user and per chip, $/Mtok) per
serving mode, with SLO targets."""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

from pathlib import Path
from typing import Optional

import typer

from planner.cli.common import (
    WEIGHTS_HELP,
    AsciiOpt,
    AttentionListOpt,
    BatchOpt,
    ClusterOpt,
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
    check_format,
    complete,
    emit,
    int_list,
    render_table,
    searching,
    seconds_flag,
    tokens_flag,
    use_ascii,
    word_list,
)
from planner.errors import UsageError


def serve(
    plan_file: Optional[str] = typer.Argument(
        None, metavar="PLAN", autocompletion=complete("plans"),
        help="Plan: preset name or YAML file (its model, cluster, workload and search space; both "
             "phases are always planned). Optional when --model and --cluster are given."),
    model: Optional[str] = ModelOpt,
    cluster: Optional[str] = ClusterOpt,
    chips: Optional[str] = typer.Option(None, "--chips", metavar="N[,N...]",
                                        help="Chip counts per pool [chips; default: the plan's]."),
    batch: Optional[str] = BatchOpt,
    weights: Optional[str] = typer.Option(None, "--weights", metavar="FMT[,FMT...]", help=WEIGHTS_HELP),
    kv_cache: Optional[str] = KvCacheOpt,
    ffn: Optional[str] = FfnListOpt,
    attention: Optional[str] = AttentionListOpt,
    experts: Optional[str] = ExpertsListOpt,
    load_imbalance: Optional[float] = LoadImbalanceOpt,
    redundant_experts: Optional[int] = RedundantExpertsOpt,
    input_tokens: Optional[str] = InputOpt,
    output_tokens: Optional[str] = OutputTokOpt,
    mode: Optional[str] = typer.Option(
        None, "--mode", metavar="MODE[,MODE...]",
        help="static, colocated, disaggregated [default: all three]."),
    ttft: Optional[str] = typer.Option(None, "--ttft", metavar="TIME",
                                       help="Target time to first token [s, or '500ms']."),
    tpot: Optional[str] = typer.Option(None, "--tpot", metavar="TIME",
                                       help="Target time per output token [s, or '30ms']."),
    e2e: Optional[str] = typer.Option(None, "--e2e", metavar="TIME",
                                      help="Target end-to-end request latency [s, or '10s']."),
    price: Optional[str] = typer.Option(
        None, "--price", metavar="USD/h",
        help="Price per chip-hour, e.g. 2.50/h [USD; default: the cluster file's "
             "price_usd_per_chip_hour, else no cost columns]."),
    everything: bool = typer.Option(False, "--all", help="Every deployment meeting the targets, not "
                                                         "only the frontier."),
    row: Optional[int] = typer.Option(None, "--row", metavar="N",
                                      help="Explain row N (the # column): its prefill and decode layouts."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.svg|FILE.png",
                                        help="Also draw the frontiers to a picture file (needs "
                                             "matplotlib: pip install matplotlib, or pip install '.[plot]' "
                                             "in a checkout of planner)."),
    concurrency: Optional[str] = typer.Option(
        None, "--concurrency", metavar="C[,C...]",
        help="Serve at these concurrencies as engines run it (closed-loop clients, C requests in flight): "
             "each deployment's curve of TTFT, TPOT, tok/s/user, tok/s/GPU and $/Mtok instead of the frontier."),
    policy: Optional[str] = typer.Option(
        None, "--policy", metavar="POLICY",
        help="With --concurrency, how prompts are scheduled: prefill-first (SGLang's default) or chunked "
             "(a token budget per step, as vLLM and TensorRT-LLM; chunked:4096 sets the budget) "
             "[default: prefill-first; budget 8192]."),
    max_running: Optional[int] = typer.Option(
        None, "--max-running", metavar="N",
        help="With --concurrency, an engine's maximum running requests per decode pool [default: what fits in HBM]."),
    fmt: str = FormatOpt,
    output: Optional[Path] = OutputOpt,
    ascii_only: bool = AsciiOpt,
) -> None:
    """Plan a serving deployment for whole requests: TTFT, TPOT, tokens/s per user and per chip,
    and cost per million tokens, per mode (static batch, colocated running batch, disaggregated
    prefill and decode pools).

    Targets (--ttft, --tpot, --e2e) drop deployments before the frontier of output tokens/s per
    chip against tokens/s per user; when nothing meets them, the binding target and the best
    reachable value go to stderr (exit 1).

    Each pool is one pipeline stage (a plan's `stages` are served as 1; `planner plan --stages`
    plans pipeline parallelism). Rows show each stage's layouts (FFN+attention, +experts for
    MoE models), weight format and KV-cache format (when not bf16).

    \b
    Examples:
      planner serve configs/plans/llama-3-70b-h100.yaml --ttft 500ms \\
          --tpot 30ms --price 2.50/h
      planner serve --model palm-540b --cluster tpu-v4 --chips 64 \\
          --input-tokens 60 --output-tokens 20 --mode static --all
      planner serve llama-3-70b-h100 --row 3
    """
    from planner.commands.serve import ServeRequest, explain_row, serve_dict
    from planner.commands.serve import serve as run_serve
    from planner.commands.serve_modes import Mode, Targets
    from planner.config import load_plan
    from planner.errors import InfeasibleError
    from planner.render import serve as render_serve
    from planner.units import SECONDS_PER_HOUR, parse_price, to_json

    check_format(fmt)
    modes = _modes(word_list(mode), Mode)
    if plot is not None and plot.suffix.lower() not in (".svg", ".png"):
        raise UsageError(f"--plot: expected a file name ending in .svg or .png, got {str(plot)!r}")
    spec = load_plan(plan_file, model=model, cluster=cluster, chips=int_list(chips, "--chips"),
                     phases=("prefill", "decode"), batches=int_list(batch, "--batch"), weights=word_list(weights),
                     ffn=word_list(ffn), attention=word_list(attention), experts=word_list(experts),
                     load_imbalance=load_imbalance, redundant_experts=redundant_experts, kv_cache=word_list(kv_cache),
                     input_tokens=tokens_flag(input_tokens, "--input-tokens"),
                     output_tokens=tokens_flag(output_tokens, "--output-tokens"))
    targets = Targets(ttft_s=_positive(ttft, "--ttft", seconds_flag), tpot_s=_positive(tpot, "--tpot", seconds_flag),
                      e2e_s=_positive(e2e, "--e2e", seconds_flag))
    price_s, source = None, ""
    if price is not None:
        try:
            price_s, source = parse_price(price), "--price"
        except ValueError:
            raise UsageError(f"--price: expected USD per chip-hour such as 2.50/h, got {price!r}") from None
    elif spec.cluster.price_usd_per_chip_hour is not None:
        price_s, source = spec.cluster.price_usd_per_chip_hour / SECONDS_PER_HOUR, f"cluster {spec.cluster.name}"
    if concurrency is not None or policy is not None or max_running is not None:
        _curve(spec, concurrency, policy, max_running, modes if mode is not None else None, targets, row, plot,
               price_s, source, fmt, output, use_ascii(ascii_only))
        return
    request = ServeRequest(plan=spec, modes=modes, targets=targets, price_usd_per_chip_s=price_s,
                           price_source=source, everything=everything)
    ascii_only = use_ascii(ascii_only)
    with searching(ascii_only):
        result = run_serve(request, partial=True)
    if plot is not None:
        from planner.render.serve_plot import draw
        draw(result, plot)
    if row is not None:
        _explain(result, row, explain_row, fmt, output, ascii_only)
    elif fmt == "json":
        emit(to_json(serve_dict(result)), output)
    elif fmt == "csv":
        emit(render_serve.serve_csv(result), output)
    elif fmt == "markdown":
        emit(render_serve.serve_markdown(result), output)
    else:
        render_table(lambda console: render_serve.serve_table(result, console, ascii_only=ascii_only), output)
    failed = [m.infeasible for m in result.modes if m.infeasible]
    if failed:
        raise InfeasibleError("\n".join(failed))


def _curve(spec, concurrency, policy, max_running, modes, targets, row, plot, price_s, source, fmt, output,
           ascii_only) -> None:
    """`--concurrency`: each deployment's curve (planner.commands.serve_curve)."""
    from planner.commands.serve_curve import CURVE_MODES, CurveRequest, curve_dict, serve_curve
    from planner.commands.serve_modes import Mode
    from planner.commands.steady_state import DEFAULT_TOKEN_BUDGET, Policy
    from planner.render import serve_curve as render_curve
    from planner.units import to_json

    if concurrency is None:
        raise UsageError("--policy and --max-running apply with --concurrency (e.g. --concurrency 1,4,16,64)")
    levels = int_list(concurrency, "--concurrency")
    if not levels or min(levels) < 1:
        raise UsageError(f"--concurrency: expected positive whole numbers such as 1,4,16,64, got {concurrency!r}")
    if len(set(levels)) != len(levels):
        raise UsageError(f"--concurrency: a concurrency is given twice in {concurrency!r}")
    if max_running is not None and max_running < 1:
        raise UsageError(f"--max-running: expected a positive whole number, got {max_running}")
    if any(v is not None for v in (targets.ttft_s, targets.tpot_s, targets.e2e_s)) or row is not None:
        raise UsageError("--ttft, --tpot, --e2e and --row apply to the frontier; with --concurrency every "
                         "point of each curve is printed (drop them, or drop --concurrency)")
    if modes is not None and Mode.STATIC in modes:
        raise UsageError("--mode static: a static batch has no concurrency curve; with --concurrency give "
                         "colocated and/or disaggregated")
    chosen, budget = Policy.PREFILL_FIRST, DEFAULT_TOKEN_BUDGET
    if policy is not None:
        name, _, given = policy.partition(":")
        by_label = {p.label: p for p in Policy}
        if name not in by_label or (given and name != Policy.CHUNKED.label):
            raise UsageError(f"--policy: expected prefill-first, chunked or chunked:TOKENS (e.g. chunked:8192), "
                             f"got {policy!r}")
        chosen = by_label[name]
        if given:
            try:
                budget = int(given)
            except ValueError:
                budget = 0
            if budget < 1:
                raise UsageError(f"--policy: the token budget must be a positive whole number, got {given!r}")
    request = CurveRequest(plan=spec, concurrency=levels, modes=modes or CURVE_MODES, policy=chosen,
                           token_budget=budget, max_running=max_running, price_usd_per_chip_s=price_s,
                           price_source=source)
    with searching(ascii_only):
        result = serve_curve(request)
    if plot is not None:
        render_curve.draw(result, plot)
    if fmt == "json":
        emit(to_json(curve_dict(result)), output)
    elif fmt == "csv":
        emit(render_curve.curve_csv(result), output)
    elif fmt == "markdown":
        emit(render_curve.curve_markdown(result), output)
    else:
        render_table(lambda console: render_curve.curve_table(result, console, ascii_only=ascii_only), output)


def _modes(names, Mode) -> tuple:
    if names is None:
        return tuple(Mode)
    by_label = {m.label: m for m in Mode}
    for name in names:
        if name not in by_label:
            raise UsageError(f"--mode: unknown mode {name!r}; expected one of {', '.join(by_label)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--mode: a mode is given twice in {', '.join(names)}")
    return tuple(m for m in Mode if m.label in names)


def _positive(text, flag, parse):
    value = parse(text, flag)
    if value is not None and not value > 0:
        raise UsageError(f"{flag}: expected a positive time such as 0.5 or '500 ms', got {text!r}")
    return value


def _explain(result, row, explain_row, fmt, output, ascii_only) -> None:
    from planner.render import explain as render_explain
    from planner.units import num, to_json

    deployment, (prefill, decode), note = explain_row(result, row)
    cluster = result.request.plan.cluster
    head = f"row {row}: {deployment.mode.label}"
    if fmt == "json":
        emit(to_json({"row": row, "mode": deployment.mode.label, "tpot_s": num(deployment.tpot_s),
                      "decode_step_latency_s": num(deployment.decode.step_latency_s), "decode_note": note,
                      "calibrated": cluster.calibrated,
                      "prefill": render_explain.explain_dict(prefill, cluster),
                      "decode": render_explain.explain_dict(decode, cluster)}), output)
    elif fmt == "csv":
        emit(render_explain.explain_csv(prefill, cluster) + render_explain.explain_csv(decode, cluster), output)
    elif fmt == "markdown":
        emit(f"## {head}\n\n" + render_explain.explain_markdown(prefill, cluster) + "\n" + note + "\n\n"
             + render_explain.explain_markdown(decode, cluster), output)
    else:
        from planner.render.common import print_wrapped

        def draw(console):
            console.print(head, highlight=False, markup=False)
            for ev in (prefill, decode):
                console.print()
                if ev is decode:
                    print_wrapped(console, note, hang=2)
                    console.print()
                render_explain.explain_table(ev, cluster, console, ascii_only=ascii_only)
        render_table(draw, output)
