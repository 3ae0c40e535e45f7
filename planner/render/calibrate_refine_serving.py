"""`planner calibrate RUNS --engine PROFILE --fit NAMES` output: the refitted constants, the ones
kept, each run's TTFT, TPOT and output tokens/s per GPU before and after, and the refined profile
as a YAML file that `--engine PATH` reads (its kept constants written as their files have them)."""

from __future__ import annotations

import json

import yaml

from planner.commands.calibrate.serving import METRICS
from planner.specs.engine import ENGINE_FIELDS

_LABEL = dict(METRICS)


def _g(value: float) -> str:
    return f"{value:g}"


def _figure(metric: str, value: float) -> str:
    return f"{value * 1e3:.4g} ms" if metric.endswith("_s") else f"{value:.4g}"


def _kept_line(r) -> str:
    rule = f" ({r.base.borrowed_from}'s, by its rule)" if r.base.borrowed_from else ""
    profile = (
        f"{', '.join(r.kept)} as {r.base.name} has them{rule}" if r.kept else f"no other constant of {r.base.name}"
    )
    if r.cluster is not None:
        return f"kept: {profile}; of {r.cluster.name}, {', '.join(r.kept_cluster)} as its file has them"
    unset = [n for n in ENGINE_FIELDS if n not in r.fitted and n not in r.kept]
    cluster = f"every constant of {', '.join(r.clusters)} (its cluster file{'s' * (len(r.clusters) != 1)})"
    if unset:
        cluster += (
            f", {', '.join(unset)} included ({r.base.name} leaves {'it' if len(unset) == 1 else 'them'} to the cluster)"
        )
    return f"kept: {profile}; {cluster}"


def _medians(r) -> str:
    return ", ".join(
        f"{_LABEL[m]} {100 * r.median_error(m, r.before):.1f}% -> {100 * r.median_error(m):.1f}%" for m in r.metrics
    )


def report_text(data, r, names: tuple[str, ...]) -> str:
    n = len(r.after)
    fitted_on = " and ".join(_LABEL[m] for m in r.metrics)
    lines = [
        f"{data.file}: {n} serving run{'s' * (n != 1)} fitted; engine profile {r.base.name}"
        + (f" -> {r.profile.name}" if r.profile is not r.base else "")
        + (f", cluster {r.cluster.name}" if r.cluster is not None else "")
        + f": refitted {', '.join(r.fitted) or 'nothing'} on {fitted_on}, every other constant kept.",
    ]
    for name in names:
        state = "refitted" if name in r.fitted else "not identified, kept"
        lines.append(f"  {name}: {_g(r.constant(name, after=False))} -> {_g(r.constant(name))} ({state})")
    lines.append(_kept_line(r))
    for run, why in r.apart:
        lines.append(f"not fitted: {run.name} (line {run.line}): {why}")
    lines.append("")
    lines.append(
        f"{'run':32} {'metric':20} {'measured':>11} {'before':>11} {'after':>11} {'err before':>10} {'err after':>10}"
    )
    for b, a in zip(r.before, r.after):
        for i, (metric, label) in enumerate(METRICS):
            run = a.run
            mark = " *" if metric in r.metrics else ""
            lines.append(
                f"{(run.name[:32] if i == 0 else ''):32} {label + mark:20} {_figure(metric, getattr(run, metric)):>11} "
                f"{_figure(metric, b.predicted[metric]):>11} {_figure(metric, a.predicted[metric]):>11} "
                f"{100 * b.error(metric):+9.1f}% {100 * a.error(metric):+9.1f}%"
            )
    lines.append("(* fitted)")
    summary = ", ".join(
        f"{label} {100 * r.median_error(m, r.before):.1f}% -> {100 * r.median_error(m):.1f}%" for m, label in METRICS
    )
    lines.append(f"median |error| before -> after: {summary}")
    return "\n".join(lines) + "\n"


def report_json(data, r, names: tuple[str, ...]) -> str:
    doc = {
        "kind": "calibrate-refine-engine",
        "file": data.file,
        "engine": r.base.name,
        "profile": r.profile.name,
        "clusters": list(r.clusters),
        "fit": list(names),
        "metrics": list(r.metrics),
        "refitted": list(r.fitted),
        "unidentified": list(r.unidentified),
        "kept": list(r.kept),
        "underdetermined": r.underdetermined,
        "warnings": list(r.warnings),
        "constants": {name: {"before": r.constant(name, after=False), "after": r.constant(name)} for name in names},
        "kept_cluster": list(r.kept_cluster),
        "median_error": {
            m: {"before": round(r.median_error(m, r.before), 6), "after": round(r.median_error(m), 6)}
            for m, _ in METRICS
        },
        "runs": [
            {
                "name": a.run.name,
                "line": a.run.line,
                "layout": a.layout,
                "measured": {m: getattr(a.run, m) for m, _ in METRICS},
                "before": b.predicted,
                "after": a.predicted,
                "error_before": {m: round(b.error(m), 6) for m, _ in METRICS},
                "error": {m: round(a.error(m), 6) for m, _ in METRICS},
            }
            for b, a in zip(r.before, r.after)
        ],
        "apart": [{"name": run.name, "line": run.line, "reason": why} for run, why in r.apart],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def scalar_texts(text: str) -> dict[str, str]:
    """Each top-level key's value in a profile YAML, as the file writes it."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    return {
        k.value: text[v.start_mark.index : v.end_mark.index]
        for k, v in getattr(root, "value", ())
        if isinstance(v, yaml.ScalarNode)
    }


def profile_yaml(r, texts: dict[str, str], command: str, used_as: str) -> str:
    """The refined profile as `--engine` reads it: the refitted constants' values, every other
    constant the profile sets written as `texts` (its file's, or its donor's) has it."""
    n = len(r.after)
    fitted_on = " and ".join(_LABEL[m] for m in r.metrics)
    medians = _medians(r)
    header = [
        f"Refined by `{command}`:",
        f"{', '.join(r.fitted) or 'nothing'} refitted on {fitted_on} to {n} serving run{'s' * (n != 1)} "
        f"(median |error| {medians}).",
        _kept_line(r) + ".",
        *(f"warning: {name} is not identified by the runs; it keeps {r.base.name}'s value" for name in r.unidentified),
        f"Use it with --engine {used_as}.",
    ]
    lines = [f"# {line}" for line in header]
    lines += [f"name: {r.profile.name}", f"source: {json.dumps(r.profile.source)}"]
    for name in ENGINE_FIELDS:
        value = getattr(r.profile, name)
        if value is None:
            continue
        lines.append(f"{name}: {_g(value) if name in r.fitted else texts.get(name, repr(value))}")
    return "\n".join(lines) + "\n"


def cluster_yaml(text: str, r, command: str) -> str:
    """The cluster file `text` with the refitted chip constants' lines changed and a comment saying
    what was refitted and kept (planner.render.calibrate_refine.with_refitted)."""
    from planner.render.calibrate_refine import with_refitted

    n = len(r.after)
    fitted_on = " and ".join(_LABEL[m] for m in r.metrics)
    to = f"{fitted_on} of {n} serving run{'s' * (n != 1)} with engine profile {r.base.name} (median |error| {_medians(r)})"
    before = {n: r.start[n] for n in r.fitted}
    return with_refitted(text, r.cluster.calibration, r.fitted, r.kept_cluster, to, command, before)
