"""`serve --row N --emit ENGINE` as text: each pool's launch command, what the engine cannot run
and the nearest layout's figures beside the row's, the benchmark command and the result sidecar."""

from __future__ import annotations

import shlex

from planner.units import fmt_seconds


def _command(argv) -> str:
    words = [w if w == "$MODEL" else shlex.quote(w) for w in argv]
    lines, line = [], []
    for w in words:  # a flag and its value on one line
        if w.startswith("--") and line:
            lines.append(" ".join(line))
            line = []
        line.append(w)
    lines.append(" ".join(line))
    return " \\\n      ".join(lines)


def emission_text(e) -> str:
    out = [f"{e.engine}: {e.pinned}"]
    for x in e.launches:
        count = f" x{x.count:g} per decode pool" if x.role == "prefill" else ""
        out.append(f"{x.role}{count}: row layout {x.layout}; runs {x.runnable}")
        out.append("  " + _command(x.command))
        for note in x.notes:
            out.append(f"  note: {note}")
        for n in x.nearest:
            what = "pass" if n["phase"] == "prefill" else "step"
            out.append(
                f"  {n['phase']}: the engine runs {n['layout']} (KV {n['kv_cache']}), not the row's {n['row_layout']}: "
                f"{what} {fmt_seconds(n['step_s'])} against {fmt_seconds(n['row_step_s'])} ({100 * n['slower']:+.1f}%)"
                + ("" if n["fits"] else "; it does not fit in HBM at this batch")
            )
    for note in e.notes:
        out.append(f"note: {note}")
    out.append("benchmark (writes the result file `planner calibrate` reads):")
    out.append("  " + _command(e.benchmark))
    out.append(f"sidecar {e.result_file}.planner.yaml:")
    out.extend("  " + line for line in e.sidecar.splitlines())
    return "\n".join(out)
