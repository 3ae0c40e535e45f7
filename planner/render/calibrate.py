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


def _pct(x: float | None) -> str:
    from planner.units import signed_percent
    return "" if x is None else signed_percent(x)


def _mfu(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _rows(assessment):
    for r in assessment.fit.residuals:
        m = r.measurement
        yield (m.name, m.layout, r.layout, fmt_seconds(m.latency_s), fmt_seconds(r.predicted_s),
               _pct(r.error), _mfu(m.mfu), _mfu(r.predicted_mfu if m.mfu is not None else None),
               _pct(r.mfu_error))


HEADER = ("point", "measured layout", "predicted as", "measured", "predicted", "error", "MFU",
          "pred. MFU", "MFU error")


def _summary(assessment) -> list[str]:
    from planner.commands.calibrate import ACCURACY_TARGET as LIMIT
    fit = assessment.fit
    worst = fit.worst
    within = sum(r.within_target for r in fit.residuals)
    lines = [f"median |error| {100 * fit.median_error:.1f}%; worst {_pct(worst.error)} "
             f"({worst.measurement.name}); {within} of {len(fit.residuals)} points within "
             f"{100 * LIMIT:.0f}% (latency and MFU)"]
    held = sum(o.holds for o in assessment.orderings)
    lines.append("orderings (same setting; the measured faster layout predicted faster): "
                 + (f"{held} of {len(assessment.orderings)} hold" if assessment.orderings
                    else "none (no two points measure different layouts at one setting)"))
    for o in assessment.orderings:
        if not o.holds:
            lines.append(f"  fails: {o.faster.measurement.name} faster than {o.slower.measurement.name}: "
                         f"measured {o.measured_ratio:.2f}x, predicted {o.predicted_ratio:.2f}x")
    picked = sum(c.holds for c in assessment.choices)
    lines.append("chosen layouts (the planner's fastest at the setting): "
                 + (f"{picked} of {len(assessment.choices)} picked" if assessment.choices
                    else "none (no point is marked `chosen: true`)"))
    for c in assessment.choices:
        if not c.holds:
            lines.append(f"  fails: {c.measurement.name}: {c.measurement.ffn}+{c.measurement.attention}, "
                         f"the planner picks {c.picked}")
    return lines


def _constants(assessment) -> list[tuple[str, str]]:
    cal = assessment.fit.cluster.calibration
    from planner.commands.calibrate import CONSTANTS
    return [(name, f"{getattr(cal, name):g}" + ("  (at its bound)" if name in assessment.fit.at_bound else ""))
            for name, _ in CONSTANTS]


def _title(data, assessment) -> str:
    from planner.commands.calibrate import bandwidth_model
    cluster = assessment.fit.cluster
    model = bandwidth_model(cluster)
    return (f"{cluster.name} calibrated from {data.file}: {len(data.points)} points"
            + (f", bandwidth model {model}" if model else ""))


def residual_table(data, assessment, console, ascii_only: bool = False) -> None:
    """The fit as a table that fits `console.width`: one row per point with its numbers, and
    under it the layout measured and the candidate predicted."""
    from planner.render.common import Column, Note, print_grid
    from planner.render.common import print_wrapped as _print_wrapped

    _print_wrapped(console, _title(data, assessment), hang=2)
    for name, value in _constants(assessment):
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


def _table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def residual_markdown(data, assessment) -> str:
    lines = [f"**{_title(data, assessment)}**", ""]
    lines += _table(("constant", "value"), [(f"`{n}`", v) for n, v in _constants(assessment)]) + [""]
    lines += _table(HEADER, list(_rows(assessment))) + [""]
    return "\n".join(lines + [line if line.startswith("  ") else f"- {line}" for line in _summary(assessment)]) + "\n"


def residual_csv(data, assessment) -> str:
    import csv
    import io
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("point", "line", "measured_layout", "predicted_as", "measured_s", "predicted_s",
                     "error", "mfu", "predicted_mfu", "mfu_error"))
    for r in assessment.fit.residuals:
        m = r.measurement
        writer.writerow((m.name, m.line, m.layout, r.layout, f"{m.latency_s:.6g}", f"{r.predicted_s:.6g}",
                         f"{r.error:.6g}", "" if m.mfu is None else f"{m.mfu:.6g}",
                         f"{r.predicted_mfu:.6g}", "" if r.mfu_error is None else f"{r.mfu_error:.6g}"))
    return out.getvalue()


def residual_json(data, assessment) -> str:
    from planner.commands.calibrate import CONSTANTS, bandwidth_model
    fit = assessment.fit

    def num(x):
        return None if x is None else float(f"{x:.6g}")

    doc = {
        "measurements": data.file, "cluster": fit.cluster.name,
        "bandwidth_model": bandwidth_model(fit.cluster),
        "constants": {name: getattr(fit.cluster.calibration, name) for name, _ in CONSTANTS},
        "at_bound": list(fit.at_bound), "cost": num(fit.cost),
        "median_abs_error": num(fit.median_error), "worst_error": num(fit.worst.error),
        "points": [{"name": r.measurement.name, "line": r.measurement.line,
                    "measured_layout": r.measurement.layout, "predicted_as": r.layout,
                    "measured_s": num(r.measurement.latency_s), "predicted_s": num(r.predicted_s),
                    "error": num(r.error), "mfu": num(r.measurement.mfu),
                    "predicted_mfu": num(r.predicted_mfu), "mfu_error": num(r.mfu_error)}
                   for r in fit.residuals],
        "orderings": [{"faster": o.faster.measurement.name, "slower": o.slower.measurement.name,
                       "measured_ratio": num(o.measured_ratio), "predicted_ratio": num(o.predicted_ratio),
                       "holds": o.holds} for o in assessment.orderings],
        "chosen": [{"name": c.measurement.name, "layout": f"{c.measurement.ffn}+{c.measurement.attention}",
                    "picked": c.picked, "holds": c.holds} for c in assessment.choices],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------------
# The calibrated cluster YAML


def _record(data, assessment, command: str, prefix: str) -> list[str]:
    """Comment lines recording the fit: command, data, residuals."""
    from planner.commands.calibrate import bandwidth_model
    fit = assessment.fit
    model = bandwidth_model(fit.cluster)
    lines = [f"Fitted by `{command}`",
             f"(robust least squares on log latency over {len(data.points)} measured points"
             f"{f', bandwidth_model {model}' if model else ''}).",
             "Regenerate with that command; do not edit by hand.",
             f"Data: {data.source or data.file}."]
    lines += _summary(assessment)
    lines.append(f"{'measured':>10}  {'predicted':>10}  {'error':>7}  point (line of {Path(data.file).name})")
    for r in fit.residuals:
        m = r.measurement
        lines.append(f"{fmt_seconds(m.latency_s):>10}  {fmt_seconds(r.predicted_s):>10}  "
                     f"{_pct(r.error):>7}  {m.name} ({m.line})")
    return [f"{prefix}# {line}".rstrip() + "\n" for line in lines]


def cluster_yaml(text: str, assessment, data, command: str) -> str:
    """`text` (a cluster YAML) with the bandwidth model and `calibration:` block of the fit; the
    rest of the file (comments included) is kept."""
    from planner.commands.calibrate import CONSTANTS, bandwidth_model
    fit = assessment.fit
    model = bandwidth_model(fit.cluster)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    root = yaml.compose("".join(lines), Loader=yaml.SafeLoader)
    if model is not None:
        torus = _value(_value(root, "topology"), "torus")
        node = _value(torus, "bandwidth_model")
        if node is not None:
            start, end = node.start_mark, node.end_mark
            line = lines[start.line]
            lines[start.line] = line[:start.column] + model + line[end.column:]
        elif model != "chip":
            first = torus.value[0][0].start_mark
            if torus.flow_style:
                raise UsageError("cannot add 'bandwidth_model' to a torus written in flow style "
                                 "({...}); write it as a block or add the key by hand")
            lines.insert(first.line, " " * first.column + f"bandwidth_model: {model}\n")
        root = yaml.compose("".join(lines), Loader=yaml.SafeLoader)
    block = ["calibration:\n"] + _record(data, assessment, command, "  ") + [
        f"  {name}: {getattr(fit.cluster.calibration, name):g}\n" for name, _ in CONSTANTS]
    key = next((k for k, _ in root.value if k.value == "calibration"), None)
    if key is not None:
        last = _value(root, "calibration")
        end = last.end_mark if not isinstance(last, yaml.MappingNode) or not last.value else last.value[-1][1].end_mark
        stop = end.line + (1 if end.column > 0 else 0)
        lines[key.start_mark.line:stop] = block
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


# ---------------------------------------------------------------------------------------------
# The accuracy page


ASSUMPTIONS = """\
- **One set of constants per cluster.** `matmul_efficiency`, `hbm_efficiency` and
  `network_efficiency` scale the chip's peak FLOP/s, HBM bandwidth and link bandwidth;
  `collective_latency_s` is paid per ring step (hop) of every collective, k - 1 for each axis or
  level of k chips it spans; `layer_overhead_s` by every layer of every step. Compute and HBM time
  overlap as a roofline (`local = max(c, m)`); `overlap` is the share of the shorter of local time
  and the activation collectives `k_a` hidden under the other, `critical = local + k_a - overlap *
  min(local, k_a)`. Weight all-gathers (`k_w`, weight-gathered layouts) do not depend on the
  step's data and are prefetched under it: `step = max(critical, k_a + k_w)`. The constants are
  shared by every model, layout, batch and phase: no per-model, per-layout or per-point factors.
- **The fit** minimises a robust (Cauchy) loss of the log errors, `s^2 log(1 + (r/s)^2)` with `s =
  log 1.15`: least squares within the 15% target (a 2x miss costs the same whether it is too fast
  or too slow), growing only logarithmically beyond it, so a point the model cannot represent does
  not drag the constants every other prediction shares. Levenberg-Marquardt over the logit of each
  efficiency and the overlap and the log of each latency, from 16 fixed starting points;
  deterministic, about 0.3 s for these 20 points (`benchmarks/bench_calibrate.py`). The constants
  are rounded to 4 significant digits, and every number on this page is computed with the
  rounded constants by the cost model itself.
- **Layouts.** A measurement whose layout is given is predicted with that layout (the fastest mesh
  grouping of it); `weight-gathered` means the fastest of wg-x, wg-xy and wg-xyz, and `best` the
  fastest layout, where the source does not say. Heads that do not divide their shards are padded
  and charged.
- **MFU** follows the reference convention (nominal parameters, attention FLOPs not counted), so an
  MFU error is the latency error inverted: `1 / (1 + error) - 1`.
- **Bandwidth model.** `chip`: every collective runs at the chip's full interconnect bandwidth
  (the paper's closed forms; 270 GB/s on TPU v4). `axes`: a collective gets only the links of the
  torus axes it spans (90 GB/s per axis on TPU v4)."""

NOT_MODELLED = """\
- **Collective costs beyond bytes and ring hops.** A collective costs its bytes at the link rate
  plus `collective_latency_s` per ring step; synchronisation or launch costs that grow in other
  ways are not modelled. Measured decode stops speeding up from 128 to 256 chips (Figure 6)
  while the model keeps scaling.
- **Matmul efficiency that depends on shapes.** One `matmul_efficiency` for a decode step of 64
  tokens per chip and a prefill of a million: small or oddly shaped matmuls, padding to the
  matrix units and dequantising int8 weights are not modelled.
- **How communication overlaps with compute, per layout.** One `overlap` for every activation
  collective, and weight all-gathers fully prefetched; the paper's looped collective matmuls may
  hide some collectives better than others.
- **Weight-gathered layouts at small batch.** Measured weight-gathered prefill carries a nearly
  batch-independent cost (28.2 s at batch 64, 29.5 s at batch 128 in Figure 7), about 0.24 s per
  layer, several times the modelled all-gather time of the weights. The model predicts the best
  weight-gathered layout faster than 2D weight-stationary already at 131,072 tokens, and so does
  the paper's own Figure 3: at that token count wg-x moves about half of ws2d's bytes per chip, on
  the same axes. The measured series behaves like wg-xyz at every batch (its weight all-gather
  is the only batch-independent cost), not like the best variant.
- **Everything outside the layers' matmuls, collectives and HBM reads**: embedding lookup,
  layer norms, softmax and sampling time, host overheads, pipelining between steps, KV-cache
  writes in prefill, and memory fragmentation (capacity is weights + KV cache + working set)."""


def accuracy_page(data, base, assessments: dict, others, command: str) -> str:
    from planner.commands.calibrate import ACCURACY_TARGET as LIMIT
    from planner.commands.calibrate import CONSTANTS, bandwidth_model
    shipped = bandwidth_model(base)
    models = list(assessments)
    name = lambda model: f"`{model}`" + (" (shipped)" if model == shipped else "") if model else "fit"
    out = [
        "# Accuracy of the calibrated cluster",
        "",
        f"<!-- Generated by `{command}`. Do not edit: rerun the command. -->",
        "",
        f"How close are the planner's predictions to measured latencies? This page fits the "
        f"calibration constants of `{base.name}` to the {len(data.points)} points of "
        f"`{data.file}` ({data.source or 'no source given'}) with each torus bandwidth model "
        f"and shows every residual. The cluster preset carries the `{shipped}` fit."
        if shipped else
        f"This page fits the calibration constants of `{base.name}` to the {len(data.points)} "
        f"points of `{data.file}` and shows every residual.",
        "",
        "## Summary",
        "",
    ]
    rows = []
    for model, a in assessments.items():
        fit = a.fit
        within = sum(r.within_target for r in fit.residuals)
        rows.append((name(model), f"{100 * fit.median_error:.1f}%",
                     f"{_pct(fit.worst.error)} ({fit.worst.measurement.name})",
                     f"{within} of {len(fit.residuals)}",
                     _of(sum(o.holds for o in a.orderings), len(a.orderings)),
                     _of(sum(c.holds for c in a.choices), len(a.choices))))
    out += _table(("bandwidth model", "median abs. error", "worst error",
                   f"within {100 * LIMIT:.0f}% (latency and MFU)", "orderings held",
                   "chosen layouts picked"), rows)
    out += ["", "## Fitted constants", ""]
    out += _table(["constant"] + [name(m) for m in models],
                  [[f"`{c}`"] + [dict(_constants(assessments[m]))[c] for m in models] for c, _ in CONSTANTS])
    out += ["", "## Residuals", "",
            "Error = predicted / measured - 1 (latency; MFU alike). *Predicted as* is the layout "
            "and mesh (x, y, z sizes) the prediction used.", ""]
    header = ["point", "layout", "measured"]
    for model in models:
        header += [f"{model or 'fit'}: predicted as", "predicted", "error", "MFU error"]
    rows = []
    for i, m in enumerate(data.points):
        row = [m.name, m.layout, fmt_seconds(m.latency_s)]
        for model in models:
            r = assessments[model].fit.residuals[i]
            flag = "" if r.within_target else " **!**"
            row += [r.layout, fmt_seconds(r.predicted_s), _pct(r.error) + flag, _pct(r.mfu_error)]
        rows.append(row)
    out += _table(header, rows)
    out += ["", f"**!**: outside {100 * LIMIT:.0f}%.", "", "## Layout rankings", "",
            "Points of one setting measured with different layouts: is the measured faster one "
            "predicted faster? And where the source chose a layout (`chosen`), does the planner "
            "pick it as the fastest at that setting and weight format?", ""]
    first = assessments[models[0]]
    header = ["faster (measured)", "slower", "measured ratio"] + [f"{m or 'fit'}: predicted ratio" for m in models]
    rows = []
    for j, o in enumerate(first.orderings):
        row = [o.faster.measurement.name, o.slower.measurement.name, f"{o.measured_ratio:.2f}"]
        for model in models:
            p = assessments[model].orderings[j]
            row.append(f"{p.predicted_ratio:.2f}" + ("" if p.holds else " **fails**"))
        rows.append(row)
    out += _table(header, rows) + [""]
    header = ["chosen", "layout"] + [f"{m or 'fit'}: planner picks" for m in models]
    rows = []
    for j, c in enumerate(first.choices):
        row = [c.measurement.name, c.measurement.layout]
        for model in models:
            p = assessments[model].choices[j]
            row.append(p.picked + ("" if p.holds else " **fails**"))
        rows.append(row)
    out += _table(header, rows)
    if others:
        out += ["", "## Other models with the shipped constants (not fitted)", "",
                "The same constants, unchanged, at every setting of the data with the planner's "
                "fastest layout: this is how generalisation is judged.", ""]
        rows = []
        for e in others:
            m, r = e.measurement, e.residual
            rows.append((m.model.name, f"{m.setting.split(' ', 1)[1]} {m.weights.label}",
                         *(("does not fit", "", "") if r is None else
                           (r.layout, fmt_seconds(r.predicted_s), f"{r.predicted_mfu:.3f}"))))
        out += _table(("model", "setting", "fastest layout", "latency", "MFU"), rows)
    if data.notes:
        out += ["", "## Notes on the data", "", data.notes.strip()]
    out += ["", "## Modelling assumptions", "", ASSUMPTIONS, "", "## Known not to be modelled", "",
            NOT_MODELLED, ""]
    return "\n".join(out)


def _of(held: int, total: int) -> str:
    return f"{held} of {total}" if total else "none in the data"
