"""`planner serve`: whole requests (TTFT, TPOT, tokens/s per user and per chip, $/Mtok) per
serving mode, with SLO targets."""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

from planner.cli.common import check_format, emit, emit_format, render_table, searching, seconds_flag, use_ascii
from planner.cli.options import Options, command
from planner.errors import UsageError


@command("serve")
def serve(opts: Options) -> None:
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
    from planner.commands.serve.modes import Mode, Targets
    from planner.commands.serve.serve import ServeRequest, explain_row, serve_dict
    from planner.commands.serve.serve import serve as run_serve
    from planner.config import load_plan
    from planner.errors import InfeasibleError
    from planner.render import serve as render_serve
    from planner.units import SECONDS_PER_HOUR, parse_price, to_json

    fmt, output, plot, price = opts.parsed("format"), opts.output, opts.plot, opts.price
    check_format(fmt)
    modes = _modes(opts.parsed("mode"), Mode)
    if plot is not None and plot.suffix.lower() not in (".svg", ".png"):
        raise UsageError(f"--plot: expected a file name ending in .svg or .png, got {str(plot)!r}")
    spec = load_plan(opts.plan_file, opts.plan(phases=_phases(opts), stages=_stages(opts), **_not_served(opts)))
    targets = Targets(
        ttft_s=_positive(opts.ttft, "--ttft", seconds_flag),
        tpot_s=_positive(opts.tpot, "--tpot", seconds_flag),
        e2e_s=_positive(opts.e2e, "--e2e", seconds_flag),
    )
    price_s, source = None, ""
    if price is not None:
        try:
            price_s, source = parse_price(price), "--price"
        except ValueError:
            raise UsageError(f"--price: expected USD per chip-hour such as 2.50/h, got {price!r}") from None
    elif spec.cluster.price_usd_per_chip_hour is not None:
        price_s, source = spec.cluster.price_usd_per_chip_hour / SECONDS_PER_HOUR, f"cluster {spec.cluster.name}"
    if any(
        getattr(opts, k) is not None
        for k in ("concurrency", "policy", "max_running", "speculative", "accepted_length", "draft_model")
    ):
        _curve(
            spec,
            opts,
            modes if opts.given("mode") else None,
            targets,
            plot,
            price_s,
            source,
            fmt,
            output,
            use_ascii(opts.ascii),
        )
        return
    request = ServeRequest(
        plan=spec, modes=modes, targets=targets, price_usd_per_chip_s=price_s, price_source=source, everything=opts.all
    )
    ascii_only = use_ascii(opts.ascii)
    row = opts.row
    if opts.given("emit"):
        from planner.commands.emit.emit import check

        if row is None:
            raise UsageError(f"{opts.flag('emit')} prints what runs one row: give --row N too")
        check(opts.parsed("emit"), spec, opts.flag("emit"))
    with searching(ascii_only):
        result = run_serve(request, partial=True)
    if plot is not None:
        from planner.render.serve_plot import draw

        draw(result, plot)
    if row is not None:
        _explain(result, row, explain_row, fmt, output, ascii_only, opts.parsed("emit"))
    else:
        emit_format(
            fmt,
            output,
            json=lambda: to_json(serve_dict(result)),
            csv=lambda: render_serve.serve_csv(result),
            markdown=lambda: render_serve.serve_markdown(result),
            table=lambda console: render_serve.serve_table(result, console, ascii_only=ascii_only),
        )
    failed = [m.infeasible for m in result.modes if m.infeasible]
    if failed:
        raise InfeasibleError("\n".join(failed))


def _phases(opts: Options) -> tuple:
    """Serve plans both phases: --phase may say both, nothing else."""
    phases = opts.parsed("phases")
    if phases is not None and set(phases) != {"prefill", "decode"}:
        raise UsageError(
            f"{opts.flag('phases')}: serve plans whole requests, so both phases; drop it (or give "
            "both)\n  hint: `planner plan --phase` plans one phase"
        )
    return ("prefill", "decode")


def _stages(opts: Options):
    """Each pool is one pipeline stage: --stages may say 1, nothing else."""
    stages = opts.parsed("stages")
    if stages is not None and stages != (1,):
        raise UsageError(
            f"{opts.flag('stages')}: serve plans one pipeline stage per pool\n  hint: `planner plan "
            "--stages` plans pipeline parallelism; drop --stages here"
        )
    return stages  # None: the plan's (served as one stage)


def _not_served(opts: Options) -> dict:
    """Planning options whose meaning serve sets itself: a clear error, never ignored."""
    why = {
        "context": "the decode contexts are the request's own (input + 1 to input + output tokens); "
        "give --input-tokens and --output-tokens",
        "allow_short_context": "the decode contexts are the request's own (input + 1 to input + output tokens)",
        "max_latency_s": "serve's targets are --ttft, --tpot and --e2e",
        "max_step_latency_s": "serve's targets are --ttft, --tpot and --e2e",
        "min_mfu": "serve's frontier is tokens/s per chip against tokens/s per user",
    }
    for key, reason in why.items():
        if opts.given(key):
            raise UsageError(f"{opts.flag(key)} does not apply to serve: {reason}\n  hint: drop it")
    return {}


def _curve(spec, opts: Options, modes, targets, plot, price_s, source, fmt, output, ascii_only) -> None:
    """`--concurrency`: each deployment's curve (planner.commands.serve.curve)."""
    from planner.commands.serve.curve import CURVE_MODES, CurveRequest, curve_dict, serve_curve
    from planner.commands.serve.modes import Mode
    from planner.commands.serve.steady_state import DEFAULT_TOKEN_BUDGET, Policy
    from planner.config.flagtext import int_list
    from planner.render import serve_curve as render_curve
    from planner.units import to_json

    concurrency, policy, max_running = opts.concurrency, opts.policy, opts.max_running
    if concurrency is None:
        raise UsageError(
            "--policy, --max-running, --speculative, --accepted-length and --draft-model apply with --concurrency "
            "(e.g. --concurrency 1,4,16,64)"
        )
    levels = int_list(concurrency, "--concurrency")
    if not levels or min(levels) < 1:
        raise UsageError(f"--concurrency: expected positive whole numbers such as 1,4,16,64, got {concurrency!r}")
    if len(set(levels)) != len(levels):
        raise UsageError(f"--concurrency: a concurrency is given twice in {concurrency!r}")
    if max_running is not None and max_running < 1:
        raise UsageError(f"--max-running: expected a positive whole number, got {max_running}")
    if any(v is not None for v in (targets.ttft_s, targets.tpot_s, targets.e2e_s)) or opts.row is not None:
        raise UsageError(
            "--ttft, --tpot, --e2e and --row apply to the frontier; with --concurrency every "
            "point of each curve is printed (drop them, or drop --concurrency)"
        )
    if modes is not None and Mode.STATIC in modes:
        raise UsageError(
            "--mode static: a static batch has no concurrency curve; with --concurrency give "
            "colocated and/or disaggregated"
        )
    chosen, budget = Policy.PREFILL_FIRST, DEFAULT_TOKEN_BUDGET
    if policy is not None:
        name, _, given = policy.partition(":")
        by_label = {p.label: p for p in Policy}
        if name not in by_label or (given and name != Policy.CHUNKED.label):
            raise UsageError(
                f"--policy: expected prefill-first, chunked or chunked:TOKENS (e.g. chunked:8192), got {policy!r}"
            )
        chosen = by_label[name]
        if given:
            try:
                budget = int(given)
            except ValueError:
                budget = 0
            if budget < 1:
                raise UsageError(f"--policy: the token budget must be a positive whole number, got {given!r}")
    request = CurveRequest(
        plan=spec,
        speculation=_speculation(opts.speculative, opts.accepted_length, opts.draft_model),
        concurrency=levels,
        modes=modes or CURVE_MODES,
        policy=chosen,
        token_budget=budget,
        max_running=max_running,
        price_usd_per_chip_s=price_s,
        price_source=source,
    )
    with searching(ascii_only):
        result = serve_curve(request)
    if plot is not None:
        render_curve.draw(result, plot)
    emit_format(
        fmt,
        output,
        json=lambda: to_json(curve_dict(result)),
        csv=lambda: render_curve.curve_csv(result),
        markdown=lambda: render_curve.curve_markdown(result),
        table=lambda console: render_curve.curve_table(result, console, ascii_only=ascii_only),
    )


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


def _explain(result, row, explain_row, fmt, output, ascii_only, engine=None) -> None:
    from planner.render import explain as render_explain
    from planner.render.emit import emission_json, emission_markdown, print_emission
    from planner.units import num, to_json

    deployment, (prefill, decode), note = explain_row(result, row)
    emission = None
    if engine is not None:
        from planner.commands.emit.emit import emit_row

        if fmt == "csv":
            raise UsageError("--emit: write it as table, json or markdown (not csv)")
        emission = emit_row(result, deployment, engine, row)
    cluster = result.request.plan.cluster
    head = f"row {row}: {deployment.mode.label}"
    if fmt == "json":
        emit(
            to_json(
                {
                    "row": row,
                    "mode": deployment.mode.label,
                    "tpot_s": num(deployment.tpot_s),
                    "decode_step_latency_s": num(deployment.decode.step_latency_s),
                    "decode_note": note,
                    "calibrated": cluster.calibrated,
                    "prefill": render_explain.explain_dict(prefill, cluster),
                    "decode": render_explain.explain_dict(decode, cluster),
                    **emission_json(emission),
                }
            ),
            output,
        )
    elif fmt == "csv":
        emit(render_explain.explain_csv(prefill, cluster) + render_explain.explain_csv(decode, cluster), output)
    elif fmt == "markdown":
        emit(
            f"## {head}\n\n"
            + render_explain.explain_markdown(prefill, cluster)
            + "\n"
            + note
            + "\n\n"
            + render_explain.explain_markdown(decode, cluster)
            + emission_markdown(emission),
            output,
        )
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
            print_emission(console, emission)

        render_table(draw, output)


def _speculation(k: int | None, accepted: float | None, draft_model: str | None = None):
    """--speculative K, --accepted-length A and --draft-model (planner.commands.serve.curve.Speculation)."""
    from planner.commands.serve.curve import MTP_ACCEPTED, MTP_DRAFT_TOKENS, Speculation
    from planner.config.models import load_model

    if k is None:
        if accepted is not None:
            raise UsageError("--accepted-length applies with --speculative K\n  hint: add --speculative 3")
        if draft_model is not None:
            raise UsageError("--draft-model applies with --speculative K\n  hint: add --speculative 4")
        return None
    if draft_model is not None and accepted is None:
        raise UsageError(
            f"--draft-model {draft_model}: a draft model's accepted length depends on the pair and the data\n"
            f"  hint: give --accepted-length A (1 to {k + 1}), measured or from the draft model's card"
        )
    if k < 1:
        raise UsageError(f"--speculative: expected a positive number of draft tokens, got {k}")
    if accepted is None:
        if k != MTP_DRAFT_TOKENS:
            raise UsageError(
                f"--speculative {k}: the default accepted length ({MTP_ACCEPTED}, MTP) is fitted at "
                f"{MTP_DRAFT_TOKENS} draft tokens only\n  hint: give --accepted-length A (1 to {k + 1})"
            )
        accepted = MTP_ACCEPTED
    if not 1.0 <= accepted <= k + 1:
        raise UsageError(f"--accepted-length: expected 1 to K + 1 = {k + 1} tokens per step, got {accepted:g}")
    drafter = None if draft_model is None else load_model(draft_model)
    return Speculation(draft_tokens=k, accepted=accepted, draft_model=drafter)
