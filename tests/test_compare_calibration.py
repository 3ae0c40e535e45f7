"""`planner compare` says "uncalibrated" in every format of its three uses when a cluster's
constants were never fitted (and nothing of the kind for a calibrated one), without turning an
identical pair of runs into a change; and its nits: near ties are "best", the gate lists prefill
first, the side-by-side footer has no trailing spaces."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace

import pytest

from planner.cli.main import run
from planner.commands.deployment import side_by_side
from planner.config import load_plan
from planner.render.compare import _layout_cells

H100 = ["llama-3-70b-h100", "--chips", "8", "--batch", "1,8"]  # h100-sxm: uncalibrated
TPU = ["palm-540b-tpu-v4", "--chips", "64", "--batch", "64"]  # tpu-v4: calibrated


def out_of(capsys, args) -> str:
    code = run(args)
    assert code == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize("plan, uncalibrated", [(H100, True), (TPU, False)])
def test_side_by_side_in_every_format(capsys, plan, uncalibrated):
    args = ["compare", *plan, "--phase", "decode", "--layouts", "ws1d,ws2d"]
    for fmt in ("table", "markdown"):
        assert ("uncalibrated" in out_of(capsys, args + ["--format", fmt])) == uncalibrated
    assert json.loads(out_of(capsys, args + ["--format", "json"]))["calibrated"] is not uncalibrated
    rows = list(csv.DictReader(io.StringIO(out_of(capsys, args + ["--format", "csv"]))))
    assert rows and {r["calibration"] for r in rows} == {"uncalibrated" if uncalibrated else "calibrated"}
    table = out_of(capsys, args)
    assert not [line for line in table.splitlines() if line.endswith(" ")]


@pytest.mark.parametrize("command", ["plan", "serve"])
def test_gate_in_every_format_and_still_no_change(capsys, tmp_path, command):
    saved = tmp_path / "run.json"
    extra = ["--phase", "decode"] if command == "plan" else ["--mode", "static"]
    assert run([command, *H100, *extra, "--format", "json", "-o", str(saved)]) == 0
    capsys.readouterr()
    for fmt in ("table", "markdown"):
        text = out_of(capsys, ["compare", str(saved), str(saved), "--format", fmt])
        assert "no change" in text.splitlines()[0] and "uncalibrated" in text
    data = json.loads(out_of(capsys, ["compare", str(saved), str(saved), "--format", "json"]))
    assert data["identical"] and data["calibrated"] == {"baseline": False, "current": False}
    assert "uncalibrated" in data["calibration_note"]
    header = out_of(capsys, ["compare", str(saved), str(saved), "--format", "csv"]).splitlines()[0]
    assert header.split(",")[-1] == "calibration"


def test_gate_on_a_calibrated_cluster_says_nothing_and_lists_prefill_first(capsys, tmp_path):
    saved = tmp_path / "run.json"
    assert run(["plan", *TPU, "--format", "json", "-o", str(saved)]) == 0
    capsys.readouterr()
    text = out_of(capsys, ["compare", str(saved), str(saved)])
    assert text.splitlines()[0] == "no change" and "uncalibrated" not in text
    assert text.index("prefill:") < text.index("decode:")  # as plan lists them
    data = json.loads(out_of(capsys, ["compare", str(saved), str(saved), "--format", "json"]))
    assert [p["phase"] for p in data["phases"]] == ["prefill", "decode"]
    assert data["calibrated"] == {"baseline": True, "current": True} and data["calibration_note"] == ""


def test_deployment_check_in_every_format(capsys, tmp_path):
    plan = tmp_path / "service.yaml"
    plan.write_text("model: llama-3-70b\ncluster: h100-sxm\nworkload: {input_tokens: 2048, output_tokens: 64, "
                    "context: 2048}\ndeployment:\n  decode: {chips: 8, batch: 8, ffn: ws2d, attention: heads, "
                    "weights: bf16}\n")
    args = ["compare", "--deployment", str(plan), "--max-gap", "1000"]
    for fmt in ("table", "markdown"):
        assert "uncalibrated" in out_of(capsys, args + ["--format", fmt])
    assert json.loads(out_of(capsys, args + ["--format", "json"]))["calibrated"] is False
    rows = list(csv.DictReader(io.StringIO(out_of(capsys, args + ["--format", "csv"]))))
    assert rows and all(r["calibration"] == "uncalibrated" for r in rows)


def test_a_tie_within_resolution_is_best():
    plan = load_plan("llama-3-70b-h100", phases=("decode",), chips=(8,), batches=(8,), weights=("bf16",))
    row = next(r for r in side_by_side(plan, (("ws2d", "heads"),)) if r.point is not None)
    assert _layout_cells(replace(row, gap=2e-4))[10] == "best"  # would print +0.0%
    assert _layout_cells(replace(row, gap=0.02))[10] == "+2.0%"
