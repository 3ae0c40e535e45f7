"""`planner calibrate POINTS --cluster NAME --fit NAMES` output: the refined constants, the ones
kept, the points before and after, and the cluster YAML with only the refined lines changed."""

from __future__ import annotations

import json

import yaml

from planner.errors import UsageError


def _g(value: float) -> str:
    return f"{value:g}"


def report_text(data, r, names: tuple[str, ...]) -> str:
    from planner.commands.calibrate.refine import value

    before, after = r.before, r.residuals
    lines = [
        f"{data.file}: {len(after)} point{'s' * (len(after) != 1)} on {r.cluster.name}; "
        f"refitted {', '.join(r.fitted) or 'nothing'}, every other constant kept as the cluster has it.",
    ]
    for name in names:
        old = value(r.base, name)
        new = value(r.cluster.calibration, name)
        state = "refitted" if name in r.fitted else "not identified, kept"
        lines.append(f"  {name}: {_g(old)} -> {_g(new)} ({state})")
    lines.append(f"kept: {', '.join(r.kept)}")
    lines.append("")
    lines.append(f"{'point':40} {'measured':>10} {'before':>10} {'after':>10} {'error':>8}")
    for b, a in zip(before, after):
        m = a.measurement
        lines.append(
            f"{m.name[:40]:40} {m.latency_s:10.4g} {b.predicted_s:10.4g} {a.predicted_s:10.4g} {100 * a.error:+7.1f}%"
        )
    return "\n".join(lines) + "\n"


def report_json(data, r, names: tuple[str, ...]) -> str:
    from planner.commands.calibrate.refine import value

    doc = {
        "kind": "calibrate-refine",
        "file": data.file,
        "cluster": r.cluster.name,
        "fit": list(names),
        "refitted": list(r.fitted),
        "unidentified": list(r.unidentified),
        "kept": list(r.kept),
        "constants": {
            name: {"before": value(r.base, name), "after": value(r.cluster.calibration, name)} for name in names
        },
        "points": [
            {
                "name": a.measurement.name,
                "measured_s": a.measurement.latency_s,
                "before_s": b.predicted_s,
                "after_s": a.predicted_s,
                "error": round(a.error, 6),
                "layout": a.layout,
            }
            for b, a in zip(r.before, r.residuals)
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def refined_yaml(text: str, r, command: str) -> str:
    """`text` (the cluster YAML) with the refitted constants' lines changed and a comment saying
    what was refitted and what kept; every other line is kept byte for byte."""
    return with_refitted(
        text,
        r.cluster.calibration,
        r.fitted,
        r.kept,
        f"{len(r.residuals)} point(s) (median |error| {100 * r.median_error:.1f}%)",
        command,
    )


def with_refitted(text: str, calibration, fitted: tuple[str, ...], kept: tuple[str, ...], to: str, command: str) -> str:
    """`text` (a cluster YAML) with `fitted` constants' lines set to `calibration`'s values and a
    comment saying they were refitted `to` what, and what was kept; every other line byte for byte."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    root = yaml.compose("".join(lines), Loader=yaml.SafeLoader)
    block = next((v for k, v in root.value if k.value == "calibration"), None)
    key = next((k for k, _ in root.value if k.value == "calibration"), None)
    note = [
        f"  # Refined by `{command}`: {', '.join(fitted)} refitted to {to}; every other constant kept as it "
        f"was: {', '.join(kept)}.\n"
    ]
    values = {name: f"{getattr(calibration, name):g}" for name in fitted}
    if block is None:
        at = next((k.start_mark.line for k, _ in root.value if k.value == "source"), len(lines))
        lines[at:at] = ["calibration:\n", *note, *(f"  {n}: {v}\n" for n, v in values.items())]
        return "".join(lines)
    if not isinstance(block, yaml.MappingNode) or block.flow_style:
        raise UsageError("-o: the cluster's calibration is not a block mapping; write it as one to refine it")
    present = {k.value: v for k, v in block.value}
    for name, text_value in values.items():
        node = present.get(name)
        if node is not None:
            s, e = node.start_mark, node.end_mark
            lines[s.line] = lines[s.line][: s.column] + text_value + lines[s.line][e.column :]
    scalars = [k for k, v in block.value if isinstance(v, yaml.ScalarNode)]
    after = (scalars[-1].start_mark.line + 1) if scalars else key.start_mark.line + 1
    indent = " " * (block.value[0][0].start_mark.column if block.value else 2)
    lines[after:after] = [f"{indent}{n}: {v}\n" for n, v in values.items() if n not in present]
    lines[key.start_mark.line + 1 : key.start_mark.line + 1] = note
    return "".join(lines)
