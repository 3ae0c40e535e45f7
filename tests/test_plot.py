"""The terminal plot: both phases within 80x24, one mark per FFN layout, MFU on y, latency on a
log x axis with evenly spaced decades, ASCII on request."""

from __future__ import annotations

import math
import re

import pytest

from planner.config import load_plan
from planner.render import plot
from planner.search.search import search
from planner.units import parse_quantity


@pytest.fixture(scope="module")
def result():
    return search(load_plan("palm-540b-tpu-v4"))


@pytest.fixture(scope="module")
def lines(result):
    return [line.plain for line in plot.frontier_plot(result, width=80, height=24)]


def panels(lines):
    """(title index, axis index) of each panel."""
    titles = [i for i, line in enumerate(lines) if "frontier" in line]
    axes = [i for i, line in enumerate(lines) if line.lstrip().startswith("\u2514")]
    return list(zip(titles, axes))


def test_fits_80_by_24(lines):
    assert len(lines) <= 24
    assert max(len(line) for line in lines) <= 80
    assert len(panels(lines)) == 2
    assert lines[0].startswith("prefill frontier") and any(l.startswith("decode frontier") for l in lines)


def test_one_mark_per_point_and_layout(result, lines):
    table = plot.marks(result.plan.space.ffn)
    for (title, axis), phase in zip(panels(lines), result.phases):
        body = "".join(line[6:] for line in lines[title + 1 : axis])
        used = {p.ffn for p in phase.frontier}
        for name in used:
            assert table[name][0] in body, name
        marks = sum(body.count(table[name][0]) for name in table)
        assert 0 < marks <= len(phase.frontier)  # points that share a cell share a mark
    legend = lines[-1]
    for name in result.plan.space.ffn:  # the layouts searched (the table has every registered one)
        assert f"{table[name][0]} {name}" in legend


def test_y_axis_is_mfu_from_zero(result, lines):
    for (title, axis), phase in zip(panels(lines), result.phases):
        labels = [line[:5].strip() for line in lines[title + 1 : axis]]
        assert labels[-1] == "0%"
        top = int(labels[0].rstrip("%"))
        assert max(p.mfu for p in phase.frontier) * 100 <= top < max(p.mfu for p in phase.frontier) * 100 + 10
        assert labels[len(labels) // 2] == f"{top // 2}%" or labels[len(labels) // 2] == f"{top / 2:g}%"


def test_x_axis_is_logarithmic(lines):
    (title, axis), _ = panels(lines)
    ticks = [m.start() for m in re.finditer("\u252c", lines[axis])]
    labels = re.findall(r"\d+(?:\.\d+)? (?:ms|us|s)", lines[axis + 1])
    assert len(ticks) == len(labels) >= 3
    values = [parse_quantity(label, "seconds") for label in labels]
    assert values == sorted(values)
    logs = [math.log10(v) for v in values]
    # the same ratio spans the same width: every tick sits on the line through the outer two
    # (within the rounding of each column)
    slope = (ticks[-1] - ticks[0]) / (logs[-1] - logs[0])
    for col, lg in zip(ticks, logs):
        assert abs(ticks[0] + slope * (lg - logs[0]) - col) <= 1.0


def test_points_sit_where_their_latency_says(result, lines):
    (title, axis), _ = panels(lines)
    phase = result.phases[0]
    fastest, slowest = phase.frontier[0], phase.frontier[-1]
    rows = lines[title + 1 : axis]
    cols = [i for line in rows for i, ch in enumerate(line) if i > 5 and ch not in " \u2502"]
    assert min(cols) < 20 and max(cols) > 60  # 77 ms .. 261 s spread over the width
    best_row = next(i for i, line in enumerate(rows) if len(line.rstrip()) > 6)
    top = int(rows[0][:5].strip().rstrip("%")) / 100
    best_mfu = max(p.mfu for p in phase.frontier)
    assert best_row == len(rows) - 1 - round(best_mfu / top * (len(rows) - 1))
    assert slowest.mfu > fastest.mfu


def test_ascii(result):
    out = [line.plain for line in plot.frontier_plot(result, width=80, height=24, ascii_only=True)]
    "\n".join(out).encode("ascii")
    assert any(line.lstrip().startswith("+--") for line in out)


def test_one_phase_uses_the_height(result):
    single = search(load_plan("palm-540b-tpu-v4", phases=("decode",)))
    out = plot.frontier_plot(single, width=80, height=24)
    assert 18 <= len(out) <= 24


def test_narrow_and_short(result):
    out = [line.plain for line in plot.frontier_plot(result, width=40, height=12)]
    assert len(out) <= 12 and max(len(line) for line in out) <= 40


def test_ticks_choose_decades_or_1_2_5():
    assert [label for _, label in plot._ticks(-3, 1, 80)] == ["1 ms", "10 ms", "100 ms", "1 s", "10 s"]
    assert [label for _, label in plot._ticks(-0.9, 0.2, 80)] == ["200 ms", "500 ms", "1 s"]


def test_pipelined_points_show_their_stage_count():
    from dataclasses import replace

    from planner.specs.plan import Phase

    plan = load_plan("palm-540b-tpu-v4")
    staged = search(replace(plan, space=replace(plan.space, stages=(1, 2, 4), phases=(Phase.DECODE,))))
    lines = [line.plain for line in plot.frontier_plot(staged, ascii_only=True)]
    area = "".join(line.split("|", 1)[1] for line in lines if "|" in line)  # right of the y axis
    counts = {p.stages for p in staged.phases[0].frontier if p.stages > 1}
    assert counts and all(str(n) in area for n in counts)
    assert "2-9: a pipelined point" in "\n".join(lines)
