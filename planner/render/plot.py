"""The latency/MFU frontier drawn as text: one panel per phase, latency on a log x axis, MFU on
the y axis, one mark per FFN layout (a pipelined point: its stage count). Plain characters (ASCII on request) with optional colour,
so it reads in any terminal, in a file and in a test.

    decode frontier: MFU against latency (13 points)
     70% |                                          #  #
         |                                   *  *
      0% |  o o  o
         +----+---------+---------+---------+-------
              200 ms    500 ms    1 s       2 s
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.cost.layouts import FFN_LAYOUTS
from planner.search.search import PhaseResult, SearchResult
from planner.units import fmt_seconds

MARKS = "o*x+#@%&"
COLOURS = ("cyan", "magenta", "yellow", "green", "red", "blue", "bright_white", "bright_cyan")
LABEL_WIDTH = 5  # "100% "


@dataclass(frozen=True)
class Glyphs:
    vertical: str
    horizontal: str
    corner: str
    tick: str


UNICODE = Glyphs(vertical="\u2502", horizontal="\u2500", corner="\u2514", tick="\u252c")
ASCII = Glyphs(vertical="|", horizontal="-", corner="+", tick="+")


def marks(ffn_names) -> dict[str, tuple[str, str]]:
    """FFN layout name -> (mark, colour), fixed by registry order so every plot agrees."""
    order = list(FFN_LAYOUTS) + sorted(set(ffn_names) - set(FFN_LAYOUTS))
    return {name: (MARKS[i % len(MARKS)], COLOURS[i % len(COLOURS)]) for i, name in enumerate(order)}


def frontier_plot(result: SearchResult, *, width: int = 80, height: int = 24, ascii_only: bool = False):
    """The frontier of every phase in at most `width` x `height` characters, as a list of
    rich `Text` lines (their `.plain` is the drawing without colour)."""
    from rich.text import Text

    glyphs = ASCII if ascii_only else UNICODE
    legend = _legend(result, width)
    panels = len(result.phases)
    # Per panel: a title, the rows, the axis, its labels and (when there is room) a blank line.
    budget = (height - len(legend)) // max(panels, 1)
    blank = budget - 4 >= 5
    rows = max(3, budget - 3 - blank)
    rows -= 1 - rows % 2  # odd, so that the middle row sits at exactly half the top MFU
    lines: list[Text] = []
    for ph in result.phases:
        if ph.infeasible:
            lines += [Text(f"{ph.phase.value}: nothing feasible (see below)")] + [Text("")] * blank
            continue
        lines += _panel(ph, width=width, rows=rows, glyphs=glyphs) + [Text("")] * blank
    lines += legend
    return lines[:height]


def _legend(result: SearchResult, width: int) -> list:
    from rich.text import Text

    dense = result.plan.model.experts is None  # the search offers dp to mixtures of experts only
    space = result.plan.space
    names = [
        name
        for name in space.ffn
        if not (dense and FFN_LAYOUTS[name].replicated) and any(space.runs_layout(name, a) for a in space.attention)
    ]
    table = marks(names)
    lines, line = [], Text("FFN layout: ")
    if not result.plan.cluster.calibrated:  # say so in the plot too, not only in the tables
        cluster = result.plan.cluster
        status = (
            "uncalibrated (ideal constants)"
            if cluster.calibration_borrowed_from is None
            else cluster.calibration_status
        )
        lines.append(Text(f"{cluster.name}: {status}", style="yellow"))
    if result.plan.space.runnable_on:  # the search was kept to an engine: the plot says so too
        from planner.render.common import runnable_note

        lines.append(Text(runnable_note(result.plan).rstrip()))
    for name in names:
        mark, colour = table[name]
        if len(line.plain) + len(name) + 2 > width and line.plain.strip():
            line.rstrip()
            lines.append(line)
            line = Text(" " * len("FFN layout: "))
        line.append(mark, style=f"bold {colour}")
        line.append(f" {name}  ")
    line.rstrip()
    lines.append(line)
    if any(p.stages > 1 for ph in result.phases for p in ph.frontier):
        lines.append(Text("2-9: a pipelined point, drawn as its stage count in its FFN layout's colour"))
    return lines


def _panel(ph: PhaseResult, *, width: int, rows: int, glyphs: Glyphs) -> list:
    from rich.text import Text

    points = ph.frontier
    if not points:
        return [Text(f"{ph.phase.value} frontier: no points", style="bold")]
    columns = max(10, width - LABEL_WIDTH - 2)  # label, axis, one spare column for the last label
    latency = [p.latency_s for p in points]
    lo, hi = _log_range(min(latency), max(latency))
    top = _mfu_top(max(p.mfu for p in points))
    table = marks(p.ffn for p in points)

    grid: list[list[tuple[str, str] | None]] = [[None] * columns for _ in range(rows)]
    for p in points:  # sorted by latency; a later point never hides an earlier one
        col = round((math.log10(p.latency_s) - lo) / (hi - lo) * (columns - 1))
        row = rows - 1 - round(min(p.mfu / top, 1.0) * (rows - 1))
        if grid[row][col] is None:  # a pipelined point: its stage count, in its FFN layout's colour
            mark, colour = table[p.ffn]
            grid[row][col] = (str(p.stages) if 1 < p.stages < 10 else mark), colour

    title = f"{ph.phase.value} frontier: MFU against latency (log scale), {len(points)} point{'s' * (len(points) != 1)}"
    out = [Text(title[:width], style="bold")]
    labelled = {0: top, rows // 2: top / 2, rows - 1: 0.0}
    for r in range(rows):
        label = f"{round(100 * labelled[r])}%".rjust(LABEL_WIDTH - 1) + " " if r in labelled else " " * LABEL_WIDTH
        line = Text(label + glyphs.vertical)
        for cell in grid[r]:
            if cell is None:
                line.append(" ")
            else:
                line.append(cell[0], style=f"bold {cell[1]}")
        line.rstrip()
        out.append(line)

    ticks = _ticks(lo, hi, columns)
    axis = [glyphs.horizontal] * columns
    labels = [" "] * (columns + 1)
    end = -1
    for col, text in ticks:
        axis[col] = glyphs.tick
        start = max(0, min(col - len(text) // 2, columns + 1 - len(text)))
        if start > end:  # leave a space between labels (end is exclusive); skip one that would touch
            labels[start : start + len(text)] = text
            end = start + len(text)
    out.append(Text(" " * LABEL_WIDTH + glyphs.corner + "".join(axis)))
    out.append(Text((" " * (LABEL_WIDTH + 1) + "".join(labels)).rstrip()))
    return out


def _log_range(low: float, high: float) -> tuple[float, float]:
    """log10 bounds with a little room on both sides (a third of a decade at least overall)."""
    lo, hi = math.log10(low), math.log10(high)
    span = max(hi - lo, 1 / 3)
    middle = (lo + hi) / 2
    return middle - span * 0.55, middle + span * 0.55


def _mfu_top(best: float) -> float:
    """The y axis' top: the best MFU rounded up to a tenth (at least 10 %, at most 100 %)."""
    return min(1.0, max(0.1, math.ceil(best * 10 - 1e-9) / 10))


def _ticks(lo: float, hi: float, columns: int) -> list[tuple[int, str]]:
    """Column and label of each tick: decades, or 1-2-5 steps when fewer than three decades fit."""
    steps = (1,) if math.floor(hi) - math.ceil(lo) >= 2 else (1, 2, 5)
    out = []
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        for step in steps:
            value = math.log10(step) + decade
            if lo <= value <= hi:
                col = round((value - lo) / (hi - lo) * (columns - 1))
                out.append((col, fmt_seconds(10**value, pad=False)))
    return out
