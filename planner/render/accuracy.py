"""The accuracy page of `planner calibrate --report`: the fit with each torus bandwidth model,
every residual, layout rankings, other models with the shipped constants, the notes on the
data, the modelling assumptions and what is known not to be modelled."""

from __future__ import annotations

from planner.render.calibrate import choice_gap, constant_rows, markdown_table, pct
from planner.units import fmt_percent, fmt_seconds

ASSUMPTIONS = """\
- **One set of constants per cluster.** `matmul_efficiency`, `hbm_efficiency` and
  `network_efficiency` scale the chip's peak FLOP/s, HBM bandwidth and link bandwidth;
  `collective_latency_s` is paid per ring step (hop) of every collective, k - 1 for each axis or
  level of k chips it spans; `layer_overhead_s` by every layer of every step. Compute and HBM time
  overlap within a kernel (a roofline), and kernels add (`local = sum over kernels of max(c_k,
  m_k)`; the attention core, QK, AV and its KV-cache read, is one kernel); `overlap` is the share of the shorter of local time
  and the activation collectives `k_a` hidden under the other, `critical = local + k_a - overlap *
  min(local, k_a)`. Weight all-gathers (`k_w`, weight-gathered layouts) do not depend on the
  step's data and are prefetched under it: `step = max(critical, k_a + k_w)`. They are a
  different kind of transfer (huge, streamed ahead, competing with the einsums for HBM), so
  their link rate has its own constant, `weight_gather_efficiency`, applied to every prefetched
  weight all-gather on every cluster; absent or not identified by the data, it equals
  `network_efficiency`. `matmul_half_rows` (m_half) makes matmul efficiency depend on the
  matmul's size: an einsum whose per-chip activation operand has m rows (tokens) runs at
  `matmul_efficiency * m / (m + m_half)`, as if it had m_half more rows (0: size-independent).
  The constants are shared by every model, layout, batch and phase: no per-model, per-layout or
  per-point factors.
- **The fit** minimises a robust (Cauchy) loss of the log errors, `s^2 log(1 + (r/s)^2)` with `s =
  log 1.15`: least squares within the 15% target (a 2x miss costs the same whether it is too fast
  or too slow), growing only logarithmically beyond it, so a point the model cannot represent does
  not drag the constants every other prediction shares. Levenberg-Marquardt over the logit of each
  efficiency and the overlap and the log of each latency and of m_half, from 32 fixed starting
  points; deterministic, well under a second for these points (`benchmarks/bench_calibrate.py`
  prints it). A constant no prediction depends on (either end of its range gives the same
  latencies) is reported as not identified and keeps its default; one the fit pushes to the
  edge of its range is marked "at its bound". The constants are rounded to 4 significant
  digits, and every number on this page is computed with the rounded constants by the cost
  model itself.
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
- **Matmul efficiency beyond the number of rows.** `matmul_half_rows` makes small matmuls
  slower by their rows (tokens) per chip only; their other dimensions, padding to the matrix
  units and dequantising int8 weights are not modelled.
- **How communication overlaps with compute, per layout.** One `overlap` for every activation
  collective, and weight all-gathers fully prefetched; the paper's looped collective matmuls may
  hide some collectives better than others.
- **Weight-gathered layouts at small batch.** Measured weight-gathered prefill carries a nearly
  batch-independent cost (28.2 s at batch 64, 29.5 s at batch 128 in Figure 7), the weight
  all-gather of wg-xyz; the model takes the best variant, as the reference says the figure does,
  and by the paper's own Figure 3 the best variant gathers at most half those bytes for the same
  matmuls (see the notes on the data). Weight all-gathers are modelled as fully prefetched under
  the einsums, at their own link efficiency.
- **Everything outside the layers' matmuls, collectives and HBM reads**: embedding lookup,
  layer norms, softmax and sampling time, host overheads, pipelining between steps, KV-cache
  writes in prefill, and memory fragmentation (capacity is weights + KV cache + working set)."""


GPU_PAGES = ("a100-80gb", "h100-sxm", "h200-sxm")  # docs/accuracy-gpu-<name>.md


def accuracy_page(data, base, assessments: dict, others, command: str) -> str:
    from planner.commands.calibrate.fit import ACCURACY_TARGET as LIMIT
    from planner.commands.calibrate.fit import CONSTANTS, bandwidth_model

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
        if shipped
        else f"This page fits the calibration constants of `{base.name}` to the {len(data.points)} "
        f"points of `{data.file}` and shows every residual.",
        "",
        "GPU presets have their own pages, written by `planner calibrate` on their measurement "
        "files: " + ", ".join(f"[`{gpu}`](accuracy-gpu-{gpu}.md)" for gpu in GPU_PAGES) + ".",
        "",
        "Whole serving runs (TTFT, TPOT and tokens/s per GPU at a concurrency, with the engine profiles fitted to them) "
        "have their own page: [serving](accuracy-serving.md).",
        "",
        "## Summary",
        "",
    ]
    rows = []
    for model, a in assessments.items():
        fit = a.fit
        within = sum(r.within_target for r in fit.residuals)
        rows.append(
            (
                name(model),
                f"{100 * fit.median_error:.1f}%",
                f"{pct(fit.worst.error)} ({fit.worst.measurement.name})",
                f"{within} of {len(fit.residuals)}",
                _of(sum(o.holds for o in a.orderings), len(a.orderings)),
                _of(sum(c.holds for c in a.choices), len(a.choices)),
            )
        )
    out += markdown_table(
        (
            "bandwidth model",
            "median abs. error",
            "worst error",
            f"within {100 * LIMIT:.0f}% (latency and MFU)",
            "orderings held",
            "chosen layouts picked",
        ),
        rows,
    )
    out += ["", "## Fitted constants", ""]
    out += markdown_table(
        ["constant"] + [name(m) for m in models],
        [[f"`{c}`"] + [dict(constant_rows(assessments[m]))[c] for m in models] for c, _ in CONSTANTS],
    )
    out += [
        "",
        "## Residuals",
        "",
        "Error = predicted / measured - 1 (latency; MFU alike). *Predicted as* is the layout "
        "and mesh (x, y, z sizes) the prediction used.",
        "",
    ]
    header = ["point", "layout", "measured"]
    for model in models:
        header += [f"{model or 'fit'}: predicted as", "predicted", "error", "MFU error"]
    rows = []
    for i, m in enumerate(data.points):
        row = [m.name, m.layout, fmt_seconds(m.latency_s)]
        for model in models:
            r = assessments[model].fit.residuals[i]
            flag = "" if r.within_target else " **!**"
            row += [r.layout, fmt_seconds(r.predicted_s), pct(r.error) + flag, pct(r.mfu_error)]
        rows.append(row)
    out += markdown_table(header, rows)
    out += [
        "",
        f"**!**: outside {100 * LIMIT:.0f}%.",
        "",
        "## Layout rankings",
        "",
        "Points of one setting measured with different layouts: is the measured faster one "
        "predicted faster? And where the source chose a layout (`chosen`), does the planner "
        "pick it as the fastest at that setting and weight format, or a layout the chosen one "
        "is predicted within 5% of (a near tie the data cannot rank)?",
        "",
    ]
    first = assessments[models[0]]
    header = ["faster (measured)", "slower", "measured ratio"] + [f"{m or 'fit'}: predicted ratio" for m in models]
    rows = []
    for j, o in enumerate(first.orderings):
        row = [o.faster.measurement.name, o.slower.measurement.name, f"{o.measured_ratio:.2f}"]
        for model in models:
            p = assessments[model].orderings[j]
            row.append(f"{p.predicted_ratio:.2f}" + ("" if p.holds else " **fails**"))
        rows.append(row)
    out += markdown_table(header, rows) + [""]
    header = ["chosen", "layout"] + [f"{m or 'fit'}: planner picks" for m in models]
    rows = []
    for j, c in enumerate(first.choices):
        row = [c.measurement.name, c.measurement.layout]
        for model in models:
            p = assessments[model].choices[j]
            row.append(
                p.picked + ("" if p.same else f" (chosen layout {choice_gap(p)})") + ("" if p.holds else " **fails**")
            )
        rows.append(row)
    out += markdown_table(header, rows)
    if others:
        out += [
            "",
            "## Other models with the shipped constants (not fitted)",
            "",
            "The same constants, unchanged, at every setting of the data with the planner's "
            "fastest layout: this is how generalisation is judged.",
            "",
        ]
        rows = []
        for e in others:
            m, r = e.measurement, e.residual
            rows.append(
                (
                    m.model.name,
                    f"{m.setting.split(' ', 1)[1]} {m.weights.label}",
                    *(
                        ("does not fit", "", "")
                        if r is None
                        else (r.layout, fmt_seconds(r.predicted_s), fmt_percent(r.predicted_mfu))
                    ),
                )
            )
        out += markdown_table(("model", "setting", "fastest layout", "latency", "MFU"), rows)
    if data.notes:
        out += ["", "## Notes on the data", "", data.notes.strip()]
    out += ["", "## Modelling assumptions", "", ASSUMPTIONS, "", "## Known not to be modelled", "", NOT_MODELLED, ""]
    return "\n".join(out)


def _of(held: int, total: int) -> str:
    return f"{held} of {total}" if total else "none in the data"
