"""`planner calibrate POINTS --cluster NAME --fit NAMES` output: the refined constants, the ones
kept, the points before and after, and the cluster YAML with only the refined lines changed."""

from __future__ import annotations

import json

import yaml

from planner.errors import UsageError
from planner.units import fmt_seconds


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
    lines.append(f"{'point':40} {'measured':>10} {'before':>10} {'after':>10} {'error':>8}  as given")
    for b, a in zip(before, after):
        m = a.measurement
        per = m.steps or 1  # a step's time where the file gave step_latency_s
        given = f"step_latency_s (a decode step; x {m.steps} steps)" if m.steps else "latency_s (the request)"
        lines.append(
            f"{m.name[:40]:40} {fmt_seconds(m.given_s):>10} {fmt_seconds(b.predicted_s / per):>10} "
            f"{fmt_seconds(a.predicted_s / per):>10} {100 * a.error:+7.1f}%  {given}"
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
                "measured_as": "step_latency_s" if a.measurement.steps else "latency_s",
                "steps": a.measurement.steps or 1,
            }
            for b, a in zip(r.before, r.residuals)
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def refined_yaml(text: str, r, command: str) -> str:
    """`text` (the cluster YAML) with the refitted constants' lines changed and comments saying
    what was refitted and what kept; every other line is kept byte for byte."""
    from planner.commands.calibrate.refine import value

    return with_refitted(
        text,
        r.cluster.calibration,
        r.fitted,
        r.kept,
        f"{len(r.residuals)} point(s) (median |error| {100 * r.median_error:.1f}%)",
        command,
        {name: value(r.base, name) for name in r.fitted},
    )


def with_refitted(
    text: str,
    calibration,
    fitted: tuple[str, ...],
    kept: tuple[str, ...],
    to: str,
    command: str,
    before: dict[str, float] | None = None,
) -> str:
    """`text` (a cluster YAML) with `fitted` constants' lines set to `calibration`'s values, its
    name suffixed `-refined` (it is no longer the preset), a comment at the top of its calibration
    saying what was refitted `to` what and what was kept, one above each refitted line giving its
    value `before`, and each comment of the preset's own fit that names a refitted constant marked
    as the preset's; every other line byte for byte."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    root = yaml.compose("".join(lines), Loader=yaml.SafeLoader)
    name_node = next((v for k, v in root.value if k.value == "name"), None)
    block = next((v for k, v in root.value if k.value == "calibration"), None)
    key = next((k for k, _ in root.value if k.value == "calibration"), None)
    preset = name_node.value if name_node is not None else "the cluster"
    note = [
        f"  # Refined by `{command}`: {', '.join(fitted)} refitted to {to}; every other constant kept as it "
        f"was: {', '.join(kept)}. The comments below that name {', '.join(fitted)} are {preset}'s own fit.\n"
    ]
    values = {name: f"{getattr(calibration, name):g}" for name in fitted}
    before = before or {}

    def above(name: str, indent: str) -> list[str]:
        was = f" ({preset} has {before[name]:g})" if name in before else ""
        return [f"{indent}# {name} refitted by `{command}` to {to}{was}\n"]

    edits: list[tuple[int, list[str]]] = []  # (line, lines inserted before it), applied bottom up
    if block is None:
        at = next((k.start_mark.line for k, _ in root.value if k.value == "source"), len(lines))
        body = [line for n, v in values.items() for line in (*above(n, "  "), f"  {n}: {v}\n")]
        edits.append((at, ["calibration:\n", *note, *body]))
    else:
        if not isinstance(block, yaml.MappingNode) or block.flow_style:
            raise UsageError("-o: the cluster's calibration is not a block mapping; write it as one to refine it")
        present = {k.value: (k, v) for k, v in block.value}
        indent = " " * (block.value[0][0].start_mark.column if block.value else 2)
        first = block.value[0][0].start_mark.line if block.value else key.start_mark.line + 1
        for i in range(key.start_mark.line + 1, first):  # the preset's comments on its own fit
            if lines[i].lstrip().startswith("#") and any(_names(lines[i], n) for n in fitted):
                head = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                lines[i] = f"{head}# ({preset}'s fit) {lines[i].lstrip()[1:].lstrip()}"
        for name, text_value in values.items():
            if name in present:
                k, node = present[name]
                s, e = node.start_mark, node.end_mark
                lines[s.line] = lines[s.line][: s.column] + text_value + lines[s.line][e.column :]
                edits.append((k.start_mark.line, above(name, indent)))
        scalars = [k for k, v in block.value if isinstance(v, yaml.ScalarNode)]
        after = (scalars[-1].start_mark.line + 1) if scalars else key.start_mark.line + 1
        added = [
            line for n, v in values.items() if n not in present for line in (*above(n, indent), f"{indent}{n}: {v}\n")
        ]
        edits.append((after, added))
        edits.append((key.start_mark.line + 1, note))
    if name_node is not None and not preset.endswith("-refined"):
        s, e = name_node.start_mark, name_node.end_mark
        lines[s.line] = lines[s.line][: s.column] + f"{preset}-refined" + lines[s.line][e.column :]
    for at, new in sorted(edits, key=lambda edit: edit[0], reverse=True):
        lines[at:at] = new
    return "".join(lines)


def _names(line: str, name: str) -> bool:
    """Whether a comment line names constant `name` (as a word)."""
    import re

    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", line) is not None
