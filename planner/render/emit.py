"""`--emit ENGINE` (serve --row N, explain) as text: each pool's launch command and the files it
reads, what the engine cannot run and the nearest layout's figures beside the row's, the benchmark
command and the result sidecar; the same as a Markdown code block and as the JSON key `emit`."""

from __future__ import annotations

import shlex

import yaml

from planner.commands.emit.core import emission_dict
from planner.units import fmt_seconds


def _command(argv) -> str:
    words = [w if "$" in w and "'" not in w and " " not in w else shlex.quote(w) for w in argv]
    lines, line = [], []
    for w in words:  # a flag and its value on one line
        if (w.startswith("--") or ("=" in w and not w.startswith(("{", "'")))) and line:
            lines.append(" ".join(line))
            line = []
        line.append(w)
    lines.append(" ".join(line))
    return " \\\n      ".join(lines)


def _file(f) -> list[str]:
    text = yaml.safe_dump(f.data, sort_keys=True, default_flow_style=False)
    return [f"  file {f.name}:"] + ["    " + line for line in text.splitlines()]


def emission_text(e) -> str:
    out = [f"{e.engine}" + (f" over {e.over}" if e.over else "") + f": {e.version}", f"flags: {e.pinned}"]
    for x in e.launches:
        count = f" x{x.count:.3g} per decode pool" if x.role == "prefill" else ""
        count += f" (launch {x.instances})" if x.role in ("prefill", "decode") else ""
        where = f": row layout {x.layout}; runs {x.runnable}" if x.layout else ""
        out.append(f"{x.role}{count}{where}")
        out.append("  " + _command(x.command))
        for f in x.files:
            out.extend(_file(f))
        for note in x.notes:
            out.append(f"  note: {note}")
        for n in x.nearest:
            what = "pass" if n["phase"] == "prefill" else "step"
            out.append(
                f"  {n['phase']}: the engine runs {n['layout']} (KV {n['kv_cache']}), "
                + (
                    "the row's layout of this phase"
                    if (n["layout"], n["kv_cache"]) == (n["row_layout"], n["row_kv_cache"])
                    else f"not the row's {n['row_layout']} (KV {n['row_kv_cache']})"
                )
                + f": {what} {fmt_seconds(n['step_s'])} against "
                f"{fmt_seconds(n['row_step_s'])} ({100 * n['slower']:+.1f}%)"
                + ("" if n["fits"] else "; it does not fit in HBM at this batch")
            )
    for note in e.notes:
        out.append(f"note: {note}")
    if e.reader:
        out.append(f"benchmark (writes {e.result_file}, which `planner calibrate` reads as {e.reader}):")
    else:
        why = e.unread or "its result file has no `planner calibrate` reader"
        out.append(f"benchmark ({why}; see the notes):")
    out.append("  " + _command(e.benchmark))
    x = e.expected
    if x:
        how = "as `planner calibrate` will predict its result"
        if x.get("calibrate_profile", x["profile"]) != x["profile"]:
            how = (
                f"with the cluster's own constants: `planner calibrate` predicts its result with engine profile "
                f"{x['calibrate_profile']}, fitted to GPUs"
            )
        out.append(
            f"predicted for this benchmark ({how}; closed loop at "
            f"{x['concurrency']}, {x['policy']}, engine profile {x['profile']}, {x['layout']}): TTFT "
            f"{fmt_seconds(x['ttft_s'])}, TPOT {fmt_seconds(x['tpot_s'])}, output tokens/s per {x.get('unit', 'GPU')} "
            f"{x['output_tok_s_per_gpu']:.4g}"
        )
    if e.sidecar:
        out.append(f"sidecar {e.result_file}.planner.yaml:")
        out.extend("  " + line for line in e.sidecar.splitlines())
    return "\n".join(out)


def emission_json(e) -> dict:
    """{"emit": ...} for a JSON document, or {} without an emission."""
    return {"emit": emission_dict(e)} if e is not None else {}


def emission_markdown(e) -> str:
    return f"\n```\n{emission_text(e)}\n```\n" if e is not None else ""


def print_emission(console, e) -> None:
    if e is not None:
        console.print()
        console.print(emission_text(e), highlight=False, markup=False, soft_wrap=True)
