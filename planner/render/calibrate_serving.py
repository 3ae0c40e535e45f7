"""Renderers of `planner calibrate` on a serving set: residual tables per metric (TTFT, TPOT,
output tokens/s per GPU) over the steady runs, the maximum-throughput table, the runs listed
apart, and the accuracy page (docs/accuracy-serving.md)."""

from __future__ import annotations

import csv
import io
import json

from planner.commands.calibrate.serving import METRICS, ServingAssessment, ServingResidual
from planner.config.serving_runs import ServingMeasurements
from planner.render.common import Column, markdown_table, print_grid, print_wrapped
from planner.units import fmt_seconds, num

TPUT = "output_tok_s_per_gpu"
HEADER = ("run", "line", "measured", "predicted", "error", "layout (planner)")


def _value(metric: str, v: float) -> str:
    return fmt_seconds(v) if metric.endswith("_s") else f"{v:.4g}"


def _rows(metric: str, residuals) -> list[tuple[str, ...]]:
    out = []
    for r in residuals:
        layout = r.layout + (f" ({r.note})" if r.note else "")
        out.append(
            (
                r.run.name,
                str(r.run.line),
                _value(metric, getattr(r.run, metric)),
                _value(metric, r.predicted[metric]),
                f"{r.error(metric):+.1%}",
                layout,
            )
        )
    return out


def _summary(a: ServingAssessment, metric: str, label: str, rows=None) -> str:
    rows = a.steady if rows is None else rows
    median, worst = a.summary(metric, rows)
    return (
        f"{label}: median |error| {median:.1%} over {len(rows)} runs, worst {worst.error(metric):+.1%} "
        f"({worst.run.name})"
    )


def predicted_with(a: ServingAssessment) -> str:
    """What the runs were predicted with: the profiles fitted here, or the shipped ones by engine."""
    if not a.shipped:
        return "the engine profiles fitted to it"
    by_profile: dict[str, list[str]] = {}
    for engine, name in a.engines:
        by_profile.setdefault(name, []).append(engine)
    borrowed = {p.name: p.borrowed_from for p in a.profiles if p.borrowed_from}
    parts = [
        f"configs/engines/{name}.yaml"
        + (f" ({borrowed[name]}'s constants, borrowed)" if name in borrowed else "")
        + f" for {', '.join(engines)}"
        for name, engines in by_profile.items()
    ]
    return "the shipped engine profiles, not fitted to it: " + "; ".join(parts)


def headline(a: ServingAssessment) -> list[str]:
    """One line per metric, and the maximum-throughput line."""
    lines = [*a.fitted, *(_summary(a, metric, label) for metric, label in METRICS if a.steady)]
    if a.max_throughput:
        lines.append(_summary(a, TPUT, "maximum output tok/s per GPU (TensorRT-LLM)", a.max_throughput))
    return lines


def _groups(a: ServingAssessment) -> list[tuple[str, ...]]:
    """Median |error| per metric for each cluster and mode of the steady runs."""
    keys = sorted({(r.run.cluster.name, r.run.mode) for r in a.steady})
    out = []
    for cluster, mode in keys:
        rows = tuple(r for r in a.steady if (r.run.cluster.name, r.run.mode) == (cluster, mode))
        out.append(
            (
                f"{cluster} ({_short_status(rows[0].run.cluster)})",
                mode,
                str(len(rows)),
                *(f"{a.summary(metric, rows)[0]:.1%}" for metric, _ in METRICS),
            )
        )
    return out


def _short_status(cluster) -> str:
    """A cluster's calibration in a table cell: 'calibrated', 'borrowed from h100-sxm, 2 constants
    refitted' (the note under the report says which and how)."""
    if cluster.calibration_borrowed_from is None:
        return cluster.calibration_status
    n = len(cluster.calibration_refitted)
    refitted = f", {n} constant{'s' * (n != 1)} refitted" if n else ""
    return f"borrowed from {cluster.calibration_borrowed_from}{refitted}"


def _tables(a: ServingAssessment):
    """(title, header, rows) of each table, in order."""
    yield (
        "median |error| by cluster and mode, steady runs (MTP runs with speculation)",
        ("cluster", "mode", "runs") + tuple(label for _, label in METRICS),
        _groups(a),
    )
    for metric, label in METRICS:
        yield (f"{label}, steady runs (MTP runs with speculation)", HEADER, _rows(metric, a.steady))
    if a.max_throughput:
        yield ("maximum output tok/s per GPU, TensorRT-LLM offline runs", HEADER, _rows(TPUT, a.max_throughput))
    if a.apart:
        yield ("listed apart", ("run", "line", "reason"), [(run.name, str(run.line), why) for run, why in a.apart])


def serving_table(data: ServingMeasurements, a: ServingAssessment, console, ascii_only: bool = False) -> None:
    print_wrapped(
        console,
        f"{data.file}: {len(data.runs)} serving runs, predicted with {predicted_with(a)}.",
        hang=0,
    )
    for line in headline(a):
        print_wrapped(console, line, hang=2)
    for title, header, rows in _tables(a):
        console.print()
        print_grid(
            console,
            [
                Column(
                    h, right=h in ("line", "measured", "predicted", "error"), wrap=h in ("layout (planner)", "reason")
                )
                for h in header
            ],
            rows,
            title=title,
            ascii_only=ascii_only,
        )


def serving_markdown(data: ServingMeasurements, a: ServingAssessment) -> str:
    lines = (
        [f"{len(data.runs)} serving runs from `{data.file}`, predicted with {predicted_with(a)}.", ""]
        + [f"- {line}" for line in headline(a)]
        + [""]
    )
    for title, header, rows in _tables(a):
        lines += [f"### {title}", "", markdown_table(header, rows), ""]
    return "\n".join(lines)


def _residual_dict(r: ServingResidual) -> dict:
    return {
        "run": r.run.name,
        "line": r.run.line,
        "layout": r.layout,
        "note": r.note,
        "measured": {m: num(getattr(r.run, m)) for m in r.predicted},
        "predicted": {m: num(v) for m, v in r.predicted.items()},
        "error": {m: num(r.error(m)) for m in r.predicted},
    }


def serving_json(data: ServingMeasurements, a: ServingAssessment) -> str:
    summary = {
        metric: {"median_abs_error": num(a.summary(metric)[0]), "worst": _residual_dict(a.summary(metric)[1])}
        for metric, _ in METRICS
        if a.steady
    }
    if a.max_throughput:
        summary["max_output_tok_s_per_gpu"] = {"median_abs_error": num(a.summary(TPUT, a.max_throughput)[0])}
    out = {
        "kind": "calibrate-serving",
        "file": data.file,
        "summary": summary,
        "steady": [_residual_dict(r) for r in a.steady],
        "max_throughput": [_residual_dict(r) for r in a.max_throughput],
        "apart": [{"run": run.name, "line": run.line, "reason": why} for run, why in a.apart],
        "fitted": list(a.fitted),
        "engine_profiles": {p.name: p.constants() for p in a.profiles},
        "predicted_with": predicted_with(a),
        "speculation": None
        if a.speculation is None
        else {"draft_tokens": a.speculation.draft_tokens, "accepted_length": a.speculation.accepted},
    }
    return json.dumps(out, indent=2, sort_keys=True) + "\n"


def serving_csv(data: ServingMeasurements, a: ServingAssessment) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("table", "run", "line", "metric", "measured", "predicted", "error", "layout", "note"))
    for table, residuals, metrics in (
        ("steady", a.steady, [m for m, _ in METRICS]),
        ("max_throughput", a.max_throughput, [TPUT]),
    ):
        for r in residuals:
            for m in metrics:
                writer.writerow(
                    (
                        table,
                        r.run.name,
                        r.run.line,
                        m,
                        num(getattr(r.run, m)),
                        num(r.predicted[m]),
                        num(r.error(m)),
                        r.layout,
                        r.note,
                    )
                )
    for run, why in a.apart:
        writer.writerow(("apart", run.name, run.line, "", "", "", "", "", why))
    return buf.getvalue()


def accuracy_page(data: ServingMeasurements, a: ServingAssessment, command: str) -> str:
    """docs/accuracy-serving.md: what `command` writes."""
    head = [
        "# Serving accuracy: whole serving runs against `planner serve --concurrency`",
        "",
        f"Generated by `{command}`; do not edit by hand.",
        "",
        "Each run is predicted by the steady state at its concurrency (`planner/commands/serve/steady_state.py`: "
        "closed-loop clients, prefill-first or chunked prefill, the queue past the running batch that fits, "
        "disaggregated prefill pools with their wait), in the layout the engine ran, with each cluster "
        "preset's chip constants and its engine's profile (configs/engines/: sglang for SGLang and Dynamo over "
        "SGLang, trtllm for TensorRT-LLM and Dynamo over it). The profiles are fitted here, on log TPOT over "
        "each engine's steady H200 runs without MTP; then the mean accepted length of DeepSeek's MTP at 3 draft "
        "tokens per step on the MTP runs, which are then assessed with speculation (a step verifies 4 tokens "
        "per sequence plus the drafter's 3 one-layer passes; TPOT = step / accepted length). TTFT and TPOT "
        "are the runs' medians; output tokens/s per GPU counts all the system's GPUs. The real mean output "
        "length (Little's law on the measured throughput and mean latency) replaces the nominal one.",
        "",
        "What the residuals show: TPOT and output tokens/s per GPU on H200 follow the engines once their "
        "fixed times are the engines' own. TTFT is not fitted and stays under-predicted: what the planner "
        "does not model (request handling, tokenisation, streaming, Dynamo's routing and KV transfer "
        "machinery) shows there, and no engine constant closes it honestly. MI300X carries SGLang's H200 "
        "profile by rule and H100's chip constants (low confidence) except the HBM efficiency and the fixed "
        "time per kernel, which its own runs' TPOT fit (0.46 of the peak bandwidth: what SGLang's ROCm "
        "kernels reach there, not the die's). Runs with DP "
        "attention run FFN `dp` with attention `batch` (the dense weights replicated, as TensorRT-LLM and "
        "SGLang's production commands do); colocated at 256 clients with chunked prefill they are the worst "
        "TPOT rows: the steady state puts each interleaved prompt's attention and dense FFN on one attention "
        "rank while the others wait, which the engines' schedulers evidently spread better.",
        "",
        "## Notes of the set",
        "",
        data.notes,
        "",
    ]
    return "\n".join(head) + "\n## Residuals\n\n" + serving_markdown(data, a)
