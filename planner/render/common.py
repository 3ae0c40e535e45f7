"""What every renderer shares: Markdown tables, the terminal grid and
wrapped lines, and the note an uncalibrated cluster carries.

Output is deterministic (JSON: `planner.units.to_json`), with no times.
Only the renderers and the CLI import rich; no formula lives here.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

FORMATS = ("table", "json", "csv", "markdown")


def runnable_note(plan) -> str:
    """'Only what vLLM runs as it is (--runnable-on vllm). ' when the search was restricted to an
    engine; empty (the output unchanged) when not."""
    e = plan.space.engine
    return f"Only what {e.label} runs as it is (--runnable-on {e.name}). " if e is not None else ""


def with_csv_column(text: str, name: str, value: str) -> str:
    """CSV `text` with one more column, `name`, holding `value` on every row."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for i, row in enumerate(csv.reader(io.StringIO(text))):
        writer.writerow([*row, name if i == 0 else value])
    return buf.getvalue()


# --- tables ---------------------------------------------------------------------------------


def markdown_table(header, rows, right=None) -> str:
    """A GitHub table; columns listed in `right` align right (default: the columns whose cells
    all read as figures, '28.4 ms', '76.1%', '-'; text columns align left)."""
    right = (
        {i for i in range(len(header)) if all(_figure(str(row[i])) for row in rows)} if right is None else set(right)
    )
    esc = lambda s: str(s).replace("|", "\\|")
    out = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join("---:" if i in right else ":---" for i in range(len(header))) + "|",
    ]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _figure(cell: str) -> bool:
    """A number with an optional unit ('28.4 ms', '1.2e+12', '76.1%', '-'), not a name ('bf16')."""
    cell = cell.strip().lstrip("+-")
    return cell == "" or cell[0].isdigit() or cell[0] == "."


@dataclass(frozen=True)
class Column:
    header: str
    right: bool = True  # numbers align right
    wrap: bool = False  # may wrap onto several lines when the table is too wide


@dataclass(frozen=True)
class Note:
    """A full-width line under the previous row (e.g. a sharding in the book's notation)."""

    text: str


def print_grid(
    console, columns, rows, *, title: str | None = None, ascii_only: bool = False, total: tuple[str, ...] | None = None
) -> None:
    """A plain table: bold header, one rule, rows, an optional total under a second rule.

    Columns are two spaces apart, or one when that is what it takes to fit `console.width`;
    past that, the `wrap` columns wrap. Only ASCII when `ascii_only`."""
    from rich.text import Text

    width = max(console.width, 20)
    cells = [r for r in rows if not isinstance(r, Note)] + ([total] if total else [])
    widths = [max([len(c.header)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    gap = 2 if sum(widths) + 2 * (len(widths) - 1) <= width else 1
    excess = sum(widths) + gap * (len(widths) - 1) - width
    for i, c in enumerate(columns):
        if excess > 0 and c.wrap:
            shrink = max(0, min(excess, widths[i] - max(len(c.header), 8)))
            widths[i] -= shrink
            excess -= shrink
    line_width = sum(widths) + gap * (len(widths) - 1)
    rule = ("-" if ascii_only else "\u2500") * line_width

    def lines_of(row) -> list[str]:
        parts = [
            textwrap.wrap(cell, widths[i], break_on_hyphens=False) or [""]
            if columns[i].wrap and len(cell) > widths[i]
            else [cell]
            for i, cell in enumerate(row)
        ]
        out = []
        for k in range(max(len(p) for p in parts)):
            texts = [(p[k] if k < len(p) else "") for p in parts]
            out.append(
                (" " * gap)
                .join(t.rjust(w) if c.right else t.ljust(w) for t, w, c in zip(texts, widths, columns))
                .rstrip()
            )
        return out

    if title:
        print_wrapped(console, title, style="bold")
    console.print(Text(lines_of(tuple(c.header for c in columns))[0], style="bold"), soft_wrap=True)
    console.print(Text(rule), soft_wrap=True)
    for row in rows:
        if isinstance(row, Note):
            print_wrapped(console, row.text, style="dim", indent="  ")
            continue
        for line in lines_of(row):
            console.print(Text(line), soft_wrap=True)
    if total:
        console.print(Text(rule), soft_wrap=True)
        for line in lines_of(total):
            console.print(Text(line, style="bold"), soft_wrap=True)


def print_wrapped(console, text: str, *, style: str = "", indent: str = "", hang: int = 2) -> None:
    """Wrap at the console width (continuation lines indented `hang` more) and print the text
    as literal characters (no markup, no highlighting)."""
    from rich.text import Text

    width = max(console.width, 20)
    for paragraph in text.split("\n"):
        for line in textwrap.wrap(
            paragraph,
            width,
            initial_indent=indent,
            subsequent_indent=indent + " " * hang,
            break_on_hyphens=False,
            break_long_words=True,
        ) or [""]:
            console.print(Text(line, style=style), soft_wrap=True)


UNCALIBRATED = "uncalibrated"


def calibration_label(cluster) -> str:
    """'calibrated', 'uncalibrated' (ideal constants) or 'calibration borrowed from X (not
    fitted)', for CSV columns and one-line notes."""
    return cluster.calibration_status


def calibration_note(cluster) -> str | None:
    """A warning for a cluster whose calibration constants were never fitted to it."""
    if cluster.calibrated:
        return None
    if cluster.calibration_borrowed_from is not None:
        low = (
            " Low confidence: another vendor's chip and software stack."
            if cluster.calibration_confidence == "low"
            else ""
        )
        if cluster.calibration_refitted:  # part fitted to its own serving runs, the rest borrowed
            fitted = cluster.calibration_refitted
            names = ", ".join(fitted[:-1]) + " and " + fitted[-1] if len(fitted) > 1 else fitted[0]
            donor = cluster.calibration_borrowed_from
            return (
                f"{cluster.name}: {cluster.calibration_status}. {names} {'were' if len(fitted) > 1 else 'was'} "
                f"fitted to this chip's steady serving runs in the calibration sets, each predicted with the "
                f"profile of the engine that served it (see its cluster file); every other constant is "
                f"{donor}'s fitted efficiencies and latencies, carried by a stated rule: expect errors beyond "
                f"{donor}'s published residuals.{low} Fit it with `planner calibrate`."
            )
        return (
            f"{cluster.name}: {cluster.calibration_status}. No published measurements of this chip are in "
            f"the calibration sets, so it carries {cluster.calibration_borrowed_from}'s fitted efficiencies "
            f"and latencies by a stated rule (see its cluster file); expect errors beyond "
            f"{cluster.calibration_borrowed_from}'s published residuals.{low} Fit it with `planner calibrate`."
        )
    return (
        f"{cluster.name} is {UNCALIBRATED}: ideal calibration constants (never fitted to measurements): peak "
        f"FLOP/s and bandwidths with no latency per collective (optimistic: small batches over "
        f"many chips look better than they are), and no overlap of activation collectives with "
        f"compute (pessimistic). Fit them with `planner calibrate`."
    )
