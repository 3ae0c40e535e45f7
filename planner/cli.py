"""The command line: parse, call one core function, hand the result to a renderer."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from planner.errors import PlannerError, UsageError

app = typer.Typer(
    add_completion=True, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
    help="Plan how to partition a Transformer across accelerator chips for inference "
         "(Pope et al. 2022): the latency/MFU frontier of every layout.\n\n"
         "Example: planner plan configs/plans/palm-540b-tpu-v4.yaml",
)

FormatOpt = typer.Option("table", "--format", help="Output format: table, json, csv or markdown.")
OutputOpt = typer.Option(None, "-o", "--output", help="Write to FILE (atomically) instead of stdout.")
ModelOpt = typer.Option(None, "--model", help="Model preset name or YAML path (e.g. palm-540b).")
ClusterOpt = typer.Option(None, "--cluster", help="Cluster preset name or YAML path (e.g. tpu-v4).")
InputOpt = typer.Option(None, "--input-tokens", help="Prefill tokens per sequence [tokens] (default 2048).")
OutputTokOpt = typer.Option(None, "--output-tokens", help="Decode tokens generated per sequence [tokens] (default 64).")
ContextOpt = typer.Option(None, "--context", help="KV-cache length a decode step attends to [tokens] (default 2048).")


def _ints(text: Optional[str], flag: str) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{flag}: expected whole numbers separated by commas, got {text!r}") from None


def _words(text: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if text is None else tuple(v.strip() for v in text.split(",") if v.strip())


def _phases(text: Optional[str]) -> Optional[tuple[str, ...]]:
    return ("prefill", "decode") if text == "both" else _words(text)


def _emit(text: str, output: Optional[Path]) -> None:
    """Write to stdout, or atomically to `output` (temp file in the same folder, then rename)."""
    if output is None:
        sys.stdout.write(text)
        return
    folder = output.resolve().parent
    if not folder.is_dir():
        raise UsageError(f"-o/--output: folder {str(folder)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_format(fmt: str) -> None:
    from planner.render import FORMATS
    if fmt not in FORMATS:
        raise UsageError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")


def _console(output: Optional[Path]):
    from rich.console import Console
    return Console(width=None if sys.stdout.isatty() else 100, highlight=False,
                   no_color="NO_COLOR" in os.environ)


def _render_table(draw, output: Optional[Path]) -> None:
    from rich.console import Console
    if output is None:
        draw(_console(output))
        return
    console = Console(record=True, width=100, file=open(os.devnull, "w"), no_color=True)
    draw(console)
    _emit(console.export_text(), output)


@app.command()
def plan(
    plan_file: Optional[str] = typer.Argument(None, help="Plan YAML (preset name or path). Optional if --model and --cluster are given."),
    model: Optional[str] = ModelOpt,
    cluster: Optional[str] = ClusterOpt,
    chips: Optional[str] = typer.Option(None, "--chips", help="Chip counts, comma list [chips] (default: every slice the cluster offers)."),
    phase: Optional[str] = typer.Option(None, "--phase", help="prefill, decode or both (default both)."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch sizes, comma list [sequences] (default 1,2,4,...,1024)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weight formats, comma list: bf16, int8 (default both)."),
    ffn: Optional[str] = typer.Option(None, "--ffn", help="FFN layouts, comma list: ws1d, ws2d, wg-x, wg-xy, wg-xyz (default all)."),
    attention: Optional[str] = typer.Option(None, "--attention", help="Attention layouts, comma list: heads, batch (default both)."),
    input_tokens: Optional[int] = InputOpt,
    output_tokens: Optional[int] = OutputTokOpt,
    context: Optional[int] = ContextOpt,
    max_latency: Optional[float] = typer.Option(None, "--max-latency", help="Drop points slower than this [s]."),
    min_mfu: Optional[float] = typer.Option(None, "--min-mfu", help="Drop points below this MFU [fraction, 0-1]."),
    fmt: str = FormatOpt,
    output: Optional[Path] = OutputOpt,
) -> None:
    """Search every layout and print the latency/MFU Pareto frontier per phase.

    Example: planner plan --model palm-540b --cluster tpu-v4 --chips 64 --phase decode --batch 64 --weights int8
    """
    from planner.config import load_plan
    from planner import render
    from planner.search import search

    _check_format(fmt)
    spec = load_plan(plan_file, model=model, cluster=cluster, chips=_ints(chips, "--chips"),
                     phases=_phases(phase), batches=_ints(batch, "--batch"), weights=_words(weights),
                     ffn=_words(ffn), attention=_words(attention), input_tokens=input_tokens,
                     output_tokens=output_tokens, context=context, max_latency_s=max_latency,
                     min_mfu=min_mfu)
    result = search(spec)
    if fmt == "json":
        _emit(render.to_json(render.plan_dict(result)), output)
    elif fmt == "csv":
        _emit(render.plan_csv(result), output)
    elif fmt == "markdown":
        _emit(render.plan_markdown(result), output)
    else:
        _render_table(lambda console: render.plan_table(result, console), output)


@app.command()
def explain(
    plan_file: Optional[str] = typer.Argument(None, help="Plan YAML (optional; flags override it)."),
    model: Optional[str] = ModelOpt,
    cluster: Optional[str] = ClusterOpt,
    chips: Optional[int] = typer.Option(None, "--chips", help="Chip count [chips]."),
    phase: str = typer.Option(..., "--phase", help="prefill or decode."),
    batch: int = typer.Option(..., "--batch", help="Batch size [sequences]."),
    ffn: str = typer.Option(..., "--ffn", help="FFN layout: ws1d, ws2d, wg-x, wg-xy or wg-xyz."),
    attention: str = typer.Option(..., "--attention", help="Attention layout: heads or batch."),
    weights: str = typer.Option(..., "--weights", help="Weight format: bf16 or int8."),
    input_tokens: Optional[int] = InputOpt,
    output_tokens: Optional[int] = OutputTokOpt,
    context: Optional[int] = ContextOpt,
    fmt: str = FormatOpt,
    output: Optional[Path] = OutputOpt,
) -> None:
    """Print the full cost breakdown of one layout: every einsum and collective, per step.

    Example: planner explain --model palm-540b --cluster tpu-v4 --chips 64 --phase decode --batch 64 --ffn ws2d --attention batch --weights int8
    """
    from planner import render
    from planner.config import load_plan
    from planner.errors import InfeasibleError
    from planner.search import best

    _check_format(fmt)
    if chips is None:
        raise UsageError("--chips is required for explain")
    spec = load_plan(plan_file, model=model, cluster=cluster, chips=(chips,), phases=(phase,),
                     batches=(batch,), weights=(weights,), ffn=(ffn,), attention=(attention,),
                     input_tokens=input_tokens, output_tokens=output_tokens, context=context)
    ev = best(spec, spec.space.phases[0], chips, batch, spec.space.weights[0], ffn, attention)
    if ev is None:
        raise InfeasibleError(explain_infeasible(spec, chips, batch, ffn, attention))
    if fmt == "json":
        _emit(render.to_json(render.explain_dict(ev)), output)
    elif fmt == "csv":
        _emit(render.explain_csv(ev), output)
    elif fmt == "markdown":
        _emit(render.explain_markdown(ev), output)
    else:
        _render_table(lambda console: render.explain_table(ev, console), output)


def explain_infeasible(spec, chips, batch, ffn, attention) -> str:
    from planner.search import candidates, weights_hint
    from planner.costmodel import evaluate
    from planner.units import fmt_bytes
    import numpy as np

    evs = [evaluate(spec.model, spec.cluster, spec.workload, c, np.array([batch]))
           for c in candidates(spec, spec.space.phases[0], chips=(chips,))]
    if not evs:
        return (f"{ffn}+{attention} does not apply on {chips} chips of {spec.cluster.name} "
                "(its axis groups would be trivial); try another layout or chip count.")
    need = min(float(ev.hbm_bytes[0]) for ev in evs)
    return (f"{ffn}+{attention} at batch {batch} on {chips} chips does not fit in HBM: needs "
            f"{fmt_bytes(need)} per chip, has {fmt_bytes(spec.cluster.chip.hbm_bytes)}.\n  hint: "
            + weights_hint(spec) + " Or use a smaller batch or the batch attention layout.")


@app.command()
def presets() -> None:
    """List the bundled models and clusters with their key figures."""
    from planner.config import list_presets, load_cluster, load_model
    from planner.units import fmt_bytes, fmt_rate

    print("models:")
    for name in list_presets("models"):
        m = load_model(name)
        print(f"  {name:<14} {m.n_params / 1e9:7.1f} B params  {m.n_layers:4d} layers  "
              f"E={m.d_model} F={m.d_ff} heads={m.n_heads} kv={m.n_kv_heads} {m.ffn.label} {m.block.value}")
    print("clusters:")
    for name in list_presets("clusters"):
        c = load_cluster(name)
        print(f"  {name:<14} {fmt_rate(c.chip.peak_bf16_flop_per_s, 'FLOP/s')} bf16  "
              f"{fmt_bytes(c.chip.hbm_bytes)} HBM at {fmt_rate(c.chip.hbm_bytes_per_s, 'B/s')}  "
              f"chips {','.join(map(str, c.topology.chip_counts))}")
    print("plans:")
    for name in list_presets("plans"):
        print(f"  {name}")


# Commands defined in their own modules register themselves on `app`.
from planner import cli_compare, cli_calibrate  # noqa: E402,F401


def main() -> None:
    try:
        app(standalone_mode=False)
    except PlannerError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # click usage errors come through here in non-standalone mode
        import click
        if isinstance(error, click.exceptions.Exit):
            sys.exit(error.exit_code)
        if isinstance(error, click.ClickException):
            error.show(file=sys.stderr)
            sys.exit(2)
        if isinstance(error, click.exceptions.Abort):
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
