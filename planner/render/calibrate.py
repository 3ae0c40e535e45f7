"""Renderers of `planner calibrate`: a residual table (text, Markdown, CSV, JSON), the cluster
YAML with its `calibration:` block replaced, and the accuracy page."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

from planner.errors import UsageError
from planner.units import fmt_seconds

BANDWIDTH_MODELS = ("chip", "axes")


# ---------------------------------------------------------------------------------------------
# Residual tables


def pct(x: float | None) -> str:
    from planner.units import signed_percent

    return "" if x is None else signed_percent(x)


def _mfu(x: float | None) -> str:
    from planner.units import fmt_percent

    return "" if x is None else fmt_percent(x)


def _rows(assessment):
    for r in assessment.fit.residuals:
        m = r.measurement
        yield (
            m.name,
            m.layout,
            r.layout,
            fmt_seconds(m.latency_s),
            fmt_seconds(r.predicted_s),
            pct(r.error),
            _mfu(m.mfu),
            _mfu(r.predicted_mfu if m.mfu is not None else None),
            pct(r.mfu_error),
        )


HEADER = ("point", "measured layout", "predicted as", "measured", "predicted", "error", "MFU", "pred. MFU", "MFU error")


def _summary(assessment) -> list[str]:
    from planner.commands.calibrate.fit import ACCURACY_TARGET as LIMIT

    fit = assessment.fit
    worst = fit.worst
    within = sum(r.within_target for r in fit.residuals)
    lines = [
        f"median |error| {100 * fit.median_error:.1f}%; worst {pct(worst.error)} "
        f"({worst.measurement.name}); {within} of {len(fit.residuals)} points within "
        f"{100 * LIMIT:.0f}% (latency and MFU)"
    ]
    held = sum(o.holds for o in assessment.orderings)
    lines.append(
        "orderings (same setting; the measured faster layout predicted faster): "
        + (
            f"{held} of {len(assessment.orderings)} hold"
            if assessment.orderings
            else "none (no two points measure different layouts at one setting)"
        )
    )
    for o in assessment.orderings:
        if not o.holds:
            lines.append(
                f"  fails: {o.faster.measurement.name} faster than {o.slower.measurement.name}: "
                f"measured {o.measured_ratio:.2f}x, predicted {o.predicted_ratio:.2f}x"
            )
    picked = sum(c.holds for c in assessment.choices)
    lines.append(
        "chosen layouts (the planner's fastest at the setting, or one the chosen layout is "
        "within 5% of): "
        + (
            f"{picked} of {len(assessment.choices)} picked"
            if assessment.choices
            else "none (no point is marked `chosen: true`)"
        )
    )
    for c in assessment.choices:
        if not c.same:
            lines.append(
                f"  {'' if c.holds else 'fails: '}{c.measurement.name}: the planner picks {c.picked}; "
                f"{c.measurement.ffn}+{c.measurement.attention} {choice_gap(c)}"
            )
    if fit.unidentified:
        lines.append(
            "not identified by the data (no prediction depends on it; kept at its default, "
            "omitted from the YAML): " + ", ".join(fit.unidentified)
        )
    return lines


def choice_gap(c) -> str:
    """How much slower the chosen layout is predicted than the planner's pick."""
    return "does not fit" if c.slower is None else f"predicted {100 * c.slower:.1f}% slower"


def constant_rows(assessment) -> list[tuple[str, str]]:
    cal = assessment.fit.cluster.calibration
    from planner.commands.calibrate.fit import CONSTANTS

    return [
        (
            name,
            f"{getattr(cal, name):g}"
            + ("  (at its bound)" if name in assessment.fit.at_bound else "")
            + ("  (not identified: default)" if name in assessment.fit.unidentified else ""),
        )
        for name, _ in CONSTANTS
    ]


def _title(data, assessment) -> str:
    from planner.commands.calibrate.fit import bandwidth_model

    cluster = assessment.fit.cluster
    model = bandwidth_model(cluster)
    return f"{cluster.name} calibrated from {data.file}: {len(data.points)} points" + (
        f", bandwidth model {model}" if model else ""
    )


def residual_table(data, assessment, console, ascii_only: bool = False) -> None:
    """The fit as a table that fits `console.width`: one row per point with its numbers, and
    under it the layout measured and the candidate predicted."""
    from planner.render.common import Column, Note, print_grid
    from planner.render.common import print_wrapped as _print_wrapped

    _print_wrapped(console, _title(data, assessment), hang=2)
    for name, value in constant_rows(assessment):
        console.print(f"  {name:<22} {value}", highlight=False, markup=False)
    console.print()
    columns = [Column("point", right=False, wrap=True)] + [Column(h) for h in HEADER[3:]]
    rows: list = []
    for row in _rows(assessment):
        rows.append((row[0], *row[3:]))
        rows.append(Note(f"{row[1]} -> predicted as {row[2]}"))
    print_grid(console, columns, rows, ascii_only=ascii_only)
    console.print()
    for line in _summary(assessment):
        _print_wrapped(console, line.strip(), indent="  " if line.startswith("  ") else "", hang=2)


def markdown_table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def residual_markdown(data, assessment) -> str:
    lines = [f"**{_title(data, assessment)}**", ""]
    lines += markdown_table(("constant", "value"), [(f"`{n}`", v) for n, v in constant_rows(assessment)]) + [""]
    lines += markdown_table(HEADER, list(_rows(assessment))) + [""]
    return "\n".join(lines + [line if line.startswith("  ") else f"- {line}" for line in _summary(assessment)]) + "\n"


def residual_csv(data, assessment) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        (
            "point",
            "line",
            "measured_layout",
            "predicted_as",
            "measured_s",
            "predicted_s",
            "error",
            "mfu",
            "predicted_mfu",
            "mfu_error",
        )
    )
    for r in assessment.fit.residuals:
        m = r.measurement
        writer.writerow(
            (
                m.name,
                m.line,
                m.layout,
                r.layout,
                f"{m.latency_s:.6g}",
                f"{r.predicted_s:.6g}",
                f"{r.error:.6g}",
                "" if m.mfu is None else f"{m.mfu:.6g}",
                f"{r.predicted_mfu:.6g}",
                "" if r.mfu_error is None else f"{r.mfu_error:.6g}",
            )
        )
    return out.getvalue()


def residual_json(data, assessment) -> str:
    from planner.commands.calibrate.fit import CONSTANTS, bandwidth_model

    fit = assessment.fit

    def num(x):
        return None if x is None else float(f"{x:.6g}")

    doc = {
        "measurements": data.file,
        "cluster": fit.cluster.name,
        "bandwidth_model": bandwidth_model(fit.cluster),
        "constants": {name: getattr(fit.cluster.calibration, name) for name, _ in CONSTANTS},
        "at_bound": list(fit.at_bound),
        "unidentified": list(fit.unidentified),
        "cost": num(fit.cost),
        "median_abs_error": num(fit.median_error),
        "worst_error": num(fit.worst.error),
        "points": [
            {
                "name": r.measurement.name,
                "line": r.measurement.line,
                "measured_layout": r.measurement.layout,
                "predicted_as": r.layout,
                "measured_s": num(r.measurement.latency_s),
                "predicted_s": num(r.predicted_s),
                "error": num(r.error),
                "mfu": num(r.measurement.mfu),
                "predicted_mfu": num(r.predicted_mfu),
                "mfu_error": num(r.mfu_error),
            }
            for r in fit.residuals
        ],
        "orderings": [
            {
                "faster": o.faster.measurement.name,
                "slower": o.slower.measurement.name,
                "measured_ratio": num(o.measured_ratio),
                "predicted_ratio": num(o.predicted_ratio),
                "holds": o.holds,
            }
            for o in assessment.orderings
        ],
        "chosen": [
            {
                "name": c.measurement.name,
                "layout": f"{c.measurement.ffn}+{c.measurement.attention}",
                "picked": c.picked,
                "holds": c.holds,
                "chosen_slower": num(c.slower),
            }
            for c in assessment.choices
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------------
# The calibrated cluster YAML


def _record(data, assessment, command: str, prefix: str) -> list[str]:
    """Comment lines recording the fit: command, data, residuals."""
    from planner.commands.calibrate.fit import bandwidth_model

    fit = assessment.fit
    model = bandwidth_model(fit.cluster)
    lines = [
        f"Fitted by `{command}`",
        f"(robust least squares on log latency over {len(data.points)} measured points"
        f"{f', bandwidth_model {model}' if model else ''}).",
        "Regenerate with that command; do not edit by hand.",
        f"Data: {data.source or data.file}.",
    ]
    lines += _summary(assessment)
    lines.append(f"{'measured':>10}  {'predicted':>10}  {'error':>7}  point (line of {Path(data.file).name})")
    for r in fit.residuals:
        m = r.measurement
        lines.append(
            f"{fmt_seconds(m.latency_s):>10}  {fmt_seconds(r.predicted_s):>10}  {pct(r.error):>7}  {m.name} ({m.line})"
        )
    return [f"{prefix}# {line}".rstrip() + "\n" for line in lines]


def cluster_yaml(text: str, assessment, data, command: str) -> str:
    """`text` (a cluster YAML) with the bandwidth model and `calibration:` block of the fit; the
    rest of the file (comments included) is kept."""
    from planner.commands.calibrate.fit import CONSTANTS, bandwidth_model
    from planner.render.calibrate_kernels import without_borrowed

    fit = assessment.fit
    model = bandwidth_model(fit.cluster)
    lines = without_borrowed(text).splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    root = yaml.compose("".join(lines), Loader=yaml.SafeLoader)
    if model is not None:
        torus = _value(_value(root, "topology"), "torus")
        node = _value(torus, "bandwidth_model")
        if node is not None:
            start, end = node.start_mark, node.end_mark
            line = lines[start.line]
            lines[start.line] = line[: start.column] + model + line[end.column :]
        elif model != "chip":
            first = torus.value[0][0].start_mark
            if torus.flow_style:
                raise UsageError(
                    "cannot add 'bandwidth_model' to a torus written in flow style "
                    "({...}); write it as a block or add the key by hand"
                )
            lines.insert(first.line, " " * first.column + f"bandwidth_model: {model}\n")
        root = yaml.compose("".join(lines), Loader=yaml.SafeLoader)
    block = (
        ["calibration:\n"]
        + _record(data, assessment, command, "  ")
        + [
            f"  {name}: {getattr(fit.cluster.calibration, name):g}\n"
            for name, _ in CONSTANTS
            if name not in fit.unidentified
        ]
    )
    key = next((k for k, _ in root.value if k.value == "calibration"), None)
    if key is not None:
        last = _value(root, "calibration")
        end = last.end_mark if not isinstance(last, yaml.MappingNode) or not last.value else last.value[-1][1].end_mark
        stop = end.line + (1 if end.column > 0 else 0)
        lines[key.start_mark.line : stop] = block
    else:
        source = next((k for k, _ in root.value if k.value == "source"), None)
        at = source.start_mark.line if source is not None else len(lines)
        lines[at:at] = block
    return "".join(lines)


def _value(mapping, key: str):
    if not isinstance(mapping, yaml.MappingNode):
        return None
    return next((v for k, v in mapping.value if k.value == key), None)


def checked_yaml(text: str, assessment) -> str:
    """The written file must load back to the fitted cluster (a bug otherwise)."""
    from planner.config import load_cluster

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cluster.yaml"
        path.write_text(text, encoding="utf-8")
        loaded = load_cluster(str(path))
    fitted = assessment.fit.cluster
    if loaded.calibration != fitted.calibration or loaded.topology != fitted.topology:
        raise RuntimeError("the calibrated cluster YAML does not load back to the fitted cluster")
    return text
