"""Renderers of `planner serve --concurrency`: each deployment's curve as a table, CSV, Markdown
or a plot (JSON is `planner.commands.serve.curve.curve_dict`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from planner.commands.serve.curve import Curve, CurvePoint, CurveResult, point_dict
from planner.commands.serve.modes import Mode
from planner.commands.serve.steady_state import Policy
from planner.render.common import (
    Column,
    Note,
    calibration_label,
    calibration_note,
    markdown_table,
    print_grid,
    print_wrapped,
    runnable_note,
)
from planner.units import SECONDS_PER_HOUR, fmt_seconds

COLUMNS = ("C", "running", "TTFT", "queue", "TPOT", "tok/s/user", "tok/s/GPU", "$/M out")
NO_PRICE = "no price"


def _rate(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"


def _layout(s) -> str:
    return f"{s.ffn}+{s.attention}" + (f"+{s.experts}" if s.experts else "")


def _cells(p: CurvePoint) -> tuple[str, ...]:
    return (
        str(p.concurrency),
        str(p.running),
        fmt_seconds(p.ttft_s),
        fmt_seconds(p.queue_s) if p.queue_s > 1e-6 * p.ttft_s else "-",
        fmt_seconds(p.tpot_s),
        _rate(p.tokens_per_s_per_user),
        _rate(p.output_tokens_per_s_per_chip),
        NO_PRICE if p.usd_per_million_output_tokens is None else f"{p.usd_per_million_output_tokens:.3g}",
    )


def _note(c: Curve, p: CurvePoint) -> str:
    text = f"prefill {_layout(p.prefill)} at {p.prefill.batch} | decode {_layout(p.decode)} at {p.decode.batch}"
    if c.mode is Mode.DISAGGREGATED:
        text += (
            f" | {p.prefill_pools:.0f} prefill pool{'s' * (p.prefill_pools != 1)}, {p.chips:.0f} GPUs, "
            f"prefill wait {fmt_seconds(p.prefill_wait_s)}"
        )
    return text


def summary(result: CurveResult) -> str:
    req = result.request
    plan, w = req.plan, req.plan.workload
    policy = req.policy.label + (f" (token budget {req.token_budget})" if req.policy is Policy.CHUNKED else "")
    price = (
        f"price {req.price_usd_per_chip_s * SECONDS_PER_HOUR:.4g} USD per chip-hour ({req.price_source})"
        if req.price_usd_per_chip_s is not None
        else "no price"
    )
    limit = f"; at most {req.max_running} running requests" if req.max_running else ""
    spec = req.speculation
    drafts = (
        f"; speculative decoding: {spec.draft_tokens} draft tokens per step"
        + (f" by draft model {spec.draft_model.name}" if spec.draft_model is not None else "")
        + f", {spec.accepted:g} accepted on average"
        if spec is not None
        else ""
    )
    return (
        f"{plan.model.name} on {plan.cluster.name} ({plan.cluster.engine_note or plan.cluster.calibration_status}): {w.input_tokens} input "
        f"and {w.output_tokens} output tokens per request, closed-loop clients at each concurrency C; prefill "
        f"policy {policy}{limit}{drafts}; {price}."
        + (" " + runnable_note(plan).rstrip() if plan.space.runnable_on else "")
    )


def _title(c: Curve) -> str:
    return f"{c.name}: at most {c.max_running} running (the largest batch that fits)" + (
        f"; KV transfer {fmt_seconds(c.kv_transfer_s)} per prompt" if c.mode is Mode.DISAGGREGATED else ""
    )


LEGEND = (
    "C: requests in flight; running: the decode batch (past what fits, the rest queue and TTFT includes "
    "the queue, the 'queue' column); TPOT: the decode step plus the prefill work interleaved per step "
    "(colocated); tok/s/GPU: output tokens per second over all the deployment's GPUs (Little's law, "
    "C x output tokens / (TTFT + output tokens x TPOT)); $/M out: all GPU time charged to output tokens. "
    "Under each point, the layouts of the prefill pass and of the decode step at their batches."
)


def curve_table(result: CurveResult, console, *, ascii_only: bool = False) -> None:
    print_wrapped(console, summary(result), hang=0)
    note = calibration_note(result.request.plan.cluster)
    if note:
        print_wrapped(console, note, hang=0, style="yellow")
    columns = [Column(c) for c in COLUMNS]
    for c in result.curves:
        console.print()
        rows = []
        for p in c.points:
            rows += [_cells(p), Note(_note(c, p))]
        print_grid(console, columns, rows, title=_title(c), ascii_only=ascii_only)
    console.print()
    print_wrapped(console, LEGEND, style="dim")


def curve_markdown(result: CurveResult) -> str:
    note = calibration_note(result.request.plan.cluster)
    lines = [summary(result), ""] + ([f"> {note}", ""] if note else [])
    for c in result.curves:
        lines += [
            f"### {_title(c)}",
            "",
            markdown_table(
                COLUMNS + ("layouts",), [_cells(p) + (_note(c, p),) for p in c.points], right=range(len(COLUMNS))
            ),
            "",
        ]
    return "\n".join(lines + [LEGEND, ""])


CSV_FIELDS = (
    "concurrency",
    "running",
    "queued",
    "ttft_s",
    "queue_s",
    "tpot_s",
    "e2e_s",
    "tokens_per_s_per_user",
    "output_tokens_per_s_per_chip",
    "chips",
    "prefill_pools_per_decode_pool",
    "prefill_wait_s",
    "usd_per_million_output_tokens",
)
STAGE_FIELDS = ("chips", "batch", "ffn", "attention", "experts", "weights", "kv_cache", "step_latency_s")


def curve_csv(result: CurveResult) -> str:
    runnable = result.request.plan.space.runnable_on  # its column only when the search was restricted
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ("deployment", "mode")
        + CSV_FIELDS
        + tuple(f"{phase}_{f}" for phase in ("prefill", "decode") for f in STAGE_FIELDS)
        + ("policy", "calibration", "engine")
        + (("runnable_on",) if runnable else ())
    )
    calibration = calibration_label(result.request.plan.cluster)
    for c in result.curves:
        for p in c.points:
            row = point_dict(p)
            writer.writerow(
                [c.name, c.mode.label]
                + [("" if row[f] is None else row[f]) for f in CSV_FIELDS]
                + [row[phase].get(f, "") for phase in ("prefill", "decode") for f in STAGE_FIELDS]
                + [result.request.policy.label, calibration, result.request.plan.cluster.engine]
                + ([runnable] if runnable else [])
            )
    return buf.getvalue()


def draw(result: CurveResult, path: Path) -> None:
    """TTFT, TPOT and output tokens/s per GPU against concurrency, one line per deployment (needs
    matplotlib; the format follows the file name)."""
    from planner.render.serve_plot import pyplot, save

    plt = pyplot(path)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    figures = (
        ("ttft_s", "TTFT (s)"),
        ("tpot_s", "TPOT (s)"),
        ("output_tokens_per_s_per_chip", "output tokens/s per GPU"),
    )
    for c in result.curves:
        xs = [p.concurrency for p in c.points]
        for ax, (key, _) in zip(axes, figures):
            ax.plot(xs, [getattr(p, key) for p in c.points], marker="o", label=c.name)
    for ax, (_, label) in zip(axes, figures):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    plan, w = result.request.plan, result.request.plan.workload
    fig.suptitle(
        f"{plan.model.name} on {plan.cluster.name}: {w.input_tokens} in, {w.output_tokens} out, "
        f"{result.request.policy.label}",
        fontsize=9,
    )
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    save(plt, fig, path)
