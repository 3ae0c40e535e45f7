"""Renderers: tables that fit the width they are given, right-aligned numbers, ASCII on request,
no escape codes without colour, and the JSON shape scripts rely on."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import pytest
from rich.console import Console

from planner.commands.runs import plan_dict, provenance_dict
from planner.config import load_cluster, load_plan
from planner.render import common as render_common
from planner.render import explain as render_explain
from planner.render import plan as render_plan
from planner.render import presets as render_presets
from planner.render.common import Column, Note, print_grid
from planner.search.search import best, point, search
from planner.specs.hardware import FIELDS_OF_CALIBRATION
from planner.units import fmt_seconds, to_json

ESCAPE = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def result():
    spec = load_plan(None, model="palm-540b", cluster="tpu-v4", chips=(64, 128, 256), batches=(1, 4, 16, 64, 256, 1024))
    return search(spec)


@pytest.fixture(scope="module")
def evaluation():
    spec = load_plan(
        None,
        model="palm-540b",
        cluster="tpu-v4",
        chips=(64,),
        phases=("decode",),
        batches=(64,),
        weights=("int8",),
        ffn=("ws2d",),
        attention=("batch",),
    )
    return best(spec, spec.space.phases[0], 64, 64, spec.space.weights[0], "ws2d", "batch")


def console(width: int = 80, colour: bool = False) -> Console:
    return Console(
        file=io.StringIO(),
        width=width,
        color_system="truecolor" if colour else None,
        force_terminal=colour,
        highlight=False,
    )


def text_of(c: Console) -> str:
    return c.file.getvalue()


COLUMNS = [Column("name", right=False, wrap=True), Column("count"), Column("time")]
ROWS = [("short", "1", "2.5 ms"), ("a much longer name than the others", "12345", "3 s")]


def test_grid_aligns_numbers_right_and_text_left():
    c = console()
    print_grid(c, COLUMNS, ROWS)
    lines = text_of(c).splitlines()
    assert lines[0].split() == ["name", "count", "time"]
    assert set(lines[1]) == {"\u2500"}
    assert lines[2].startswith("short ") and lines[2].endswith("2.5 ms")
    assert lines[2].index("1") + 1 == lines[3].index("12345") + 5  # right edges line up
    assert "  " in lines[3].split("others")[1][:2]  # two spaces between columns when they fit


def test_grid_tightens_then_wraps_when_narrow():
    c = console(width=30)
    print_grid(c, COLUMNS, ROWS)
    lines = text_of(c).splitlines()
    assert max(len(line) for line in lines) <= 30
    assert any(line.startswith("others") or "others" in line for line in lines[3:])
    assert lines[3].endswith("3 s")  # numbers stay on the first line of a wrapped row


def test_grid_ascii_title_total_and_notes():
    c = console()
    print_grid(
        c,
        COLUMNS,
        [ROWS[0], Note("W_in[E_x, F_yz]"), ROWS[1]],
        title="a title",
        total=("total", "12346", "3 s"),
        ascii_only=True,
    )
    text = text_of(c)
    text.encode("ascii")
    lines = text.splitlines()
    assert lines[0] == "a title"
    assert lines[2].startswith("-----")
    assert lines[4] == "  W_in[E_x, F_yz]"
    assert lines[-2].startswith("-----") and lines[-1].startswith("total")


def test_grid_colour_only_when_asked():
    plain, coloured = console(), console(colour=True)
    print_grid(plain, COLUMNS, ROWS)
    print_grid(coloured, COLUMNS, ROWS)
    assert not ESCAPE.search(text_of(plain))
    assert "\x1b[1m" in text_of(coloured)  # bold header


@pytest.mark.parametrize("width", [80, 100])
def test_plan_table_fits(result, width):
    c = console(width)
    render_plan.plan_table(result, c)
    lines = text_of(c).splitlines()
    assert max(len(line) for line in lines) <= width
    assert not ESCAPE.search(text_of(c))
    header = next(line for line in lines if re.match(r"\s*#\s+chips", line))  # '#': the row to explain
    assert "step" not in header  # prefill: one step, the latency already says it
    decode_header = [line for line in lines if re.match(r"\s*#\s+chips", line)][1]
    assert "step" in decode_header


def test_plan_table_narrow_terminal_does_not_break(result):
    c = console(60)
    render_plan.plan_table(result, c, ascii_only=True)
    text_of(c).encode("ascii")


def test_explain_table(evaluation):
    c = console()
    render_explain.explain_table(evaluation, load_cluster("tpu-v4"), c)
    text = text_of(c)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "FFN        W_in[E_x, F_yz], W_out[F_yz, E_x]; BLE_xyz" in text
    w = evaluation.workload  # the header says which tokens the step processes and which axes are which
    assert (
        f"tokens     {w.output_tokens} output tokens per sequence, each step attending to {w.context}" in text
        or f"tokens     {w.input_tokens} input tokens per sequence" in text
    )
    assert "axes       x=[x], y=[y z], z=[]" in text
    names = [r.name for r in evaluation.rows]
    for name in names:  # every row's name starts a line (long ones may wrap at 80 columns)
        assert any(line.startswith(name[:20]) for line in lines), name
    assert sum(line.startswith("  x") for line in lines) == len(names)  # one notation line per row
    total = next(line for line in lines if line.startswith("total"))
    d = point(evaluation, 0)
    assert total.split()[-6:] == " ".join(fmt_seconds(t) for t in (d.compute_s, d.memory_s, d.comm_s)).split()


def test_explain_table_wide_has_no_wrapped_names(evaluation):
    c = console(100)
    render_explain.explain_table(evaluation, load_cluster("tpu-v4"), c)
    lines = text_of(c).splitlines()
    for r in evaluation.rows:
        assert any(line.startswith(r.name + " ") for line in lines), r.name


def test_presets_table():
    c = console()
    render_presets.presets_table(c, ascii_only=True)
    text = text_of(c)
    text.encode("ascii")
    assert "palm-540b" in text and "8, 16, ..., 512" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_json_keys_are_a_contract(result, evaluation):
    data = json.loads(to_json(plan_dict(result)))
    assert sorted(data) == [
        "calibrated",
        "calibration",
        "calibration_status",
        "cluster",
        "engine",
        "frontier",
        "hardware",
        "model",
        "model_shape",
        "planner_version",
        "search",
        "workload",
    ]
    # every constant; narrow_matmul_efficiency only where the cluster gives one (absent: matmul_efficiency)
    assert sorted(data["calibration"]) == sorted(set(FIELDS_OF_CALIBRATION) - {"narrow_matmul_efficiency"})
    gpu = load_plan(None, model="llama-3-8b", cluster="h100-sxm", chips=(1,), batches=(1,))
    assert "narrow_matmul_efficiency" in provenance_dict(gpu)["calibration"]
    point = data["frontier"]["decode"][0]
    assert sorted(point) == sorted(
        [
            "phase",
            "chips",
            "mesh",
            "partition",
            "batch",
            "ffn",
            "attention",
            "weights",
            "latency_s",
            "step_latency_s",
            "mfu",
            "cost_chip_s_per_token",
            "tokens_per_s",
            "hbm_bytes_per_chip",
            "hbm_fraction",
            "bound",
            "time_s",
            "kv_cache",
            "row",
        ]
    )
    explain = render_explain.explain_dict(evaluation)
    assert {"layers", "memory", "notation", "formats"} <= set(explain)
    assert sorted(explain["layers"][0]) == [
        "collective",
        "comm_bytes",
        "compute_format",
        "flops",
        "hbm_bytes",
        "name",
        "notation",
        "peak_flop_per_s",
        "repeat",
        "seconds",
        "sustained_flop_per_s",
    ]


def test_markdown_table_right_aligns():
    text = render_common.markdown_table(("a", "b"), [("x|y", 1)], right=[1])
    assert text.splitlines() == ["| a | b |", "|:---|---:|", "| x\\|y | 1 |"]


def test_an_uncalibrated_cluster_is_flagged_in_the_table(evaluation):
    from planner.specs.hardware import Calibration

    ideal = dataclasses.replace(load_cluster("tpu-v4"), calibration=Calibration())
    assert render_common.calibration_note(load_cluster("tpu-v4")) is None  # the shipped preset is fitted
    c = console()
    render_explain.explain_table(evaluation, ideal, c)
    text = " ".join(text_of(c).split())
    assert "ideal calibration constants" in text and "planner calibrate" in text
    for name in ("a100-80gb", "h100-sxm"):  # fitted to configs/measurements/<name>.yaml
        assert render_common.calibration_note(load_cluster(name)) is None
