"""`planner compare` says "uncalibrated" in every format of its three uses when a cluster's
constants were never fitted (and nothing of the kind for a calibrated one), without turning an
identical pair of runs into a change; and its nits: near ties are "best", the gate lists prefill
first, the side-by-side footer has no trailing spaces."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from planner.cli.main import run
from planner.commands.compare.deployment import side_by_side
from planner.config import load_plan
from planner.render.compare import _layout_cells

H100 = ["llama-3-70b-h100", "--chips", "8", "--batch", "1,8"]  # with --cluster IDEAL: uncalibrated
TPU = ["palm-540b-tpu-v4", "--chips", "64", "--batch", "64"]  # tpu-v4: calibrated
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ideal(tmp_path_factory) -> str:
    """h100-sxm without its calibration block: ideal constants (every preset is fitted or borrows)."""
    data = yaml.safe_load((ROOT / "configs" / "clusters" / "h100-sxm.yaml").read_text(encoding="utf-8"))
    data.pop("calibration")
    path = tmp_path_factory.mktemp("clusters") / "h100-ideal.yaml"
    path.write_text(yaml.safe_dump({**data, "name": "h100-ideal"}), encoding="utf-8")
    return str(path)


def out_of(capsys, args) -> str:
    code = run(args)
    assert code == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize("plan, uncalibrated", [(H100, True), (TPU, False)])
def test_side_by_side_in_every_format(capsys, ideal, plan, uncalibrated):
    args = [
        "compare",
        *plan,
        *(["--cluster", ideal] if uncalibrated else []),
        "--phase",
        "decode",
        "--layouts",
        "ws1d,ws2d",
    ]
    for fmt in ("table", "markdown"):
        assert ("uncalibrated" in out_of(capsys, args + ["--format", fmt])) == uncalibrated
    assert json.loads(out_of(capsys, args + ["--format", "json"]))["calibrated"] is not uncalibrated
    rows = list(csv.DictReader(io.StringIO(out_of(capsys, args + ["--format", "csv"]))))
    assert rows and {r["calibration"] for r in rows} == {"uncalibrated" if uncalibrated else "calibrated"}
    table = out_of(capsys, args)
    assert not [line for line in table.splitlines() if line.endswith(" ")]


@pytest.mark.parametrize("command", ["plan", "serve"])
def test_gate_in_every_format_and_still_no_change(capsys, tmp_path, ideal, command):
    saved = tmp_path / "run.json"
    extra = ["--phase", "decode"] if command == "plan" else ["--mode", "static"]
    assert run([command, *H100, "--cluster", ideal, *extra, "--format", "json", "-o", str(saved)]) == 0
    capsys.readouterr()
    for fmt in ("table", "markdown"):
        text = out_of(capsys, ["compare", str(saved), str(saved), "--format", fmt])
        assert "no change" in text.splitlines()[0] and "uncalibrated" in text
    data = json.loads(out_of(capsys, ["compare", str(saved), str(saved), "--format", "json"]))
    assert data["identical"] and data["calibrated"] == {"baseline": False, "current": False}
    assert "uncalibrated" in data["calibration_note"]
    header = out_of(capsys, ["compare", str(saved), str(saved), "--format", "csv"]).splitlines()[0]
    assert header.split(",")[-2:] == ["calibration", "engine"]


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


def test_deployment_check_in_every_format(capsys, tmp_path, ideal):
    plan = tmp_path / "service.yaml"
    plan.write_text(
        f"model: llama-3-70b\ncluster: {ideal}\n"
        "workload: {input_tokens: 2048, output_tokens: 64, "
        "context: 2048}\ndeployment:\n  decode: {chips: 8, batch: 8, ffn: ws2d, attention: heads, "
        "weights: bf16}\n"
    )
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


def test_borrowed_calibration_is_named_not_called_calibrated(capsys):
    args = ["compare", *H100, "--cluster", "b200", "--phase", "decode", "--layouts", "ws1d,ws2d"]
    data = json.loads(out_of(capsys, args + ["--format", "json"]))
    assert (
        data["calibrated"] is False and data["calibration_status"] == "calibration borrowed from h100-sxm (not fitted)"
    )
    rows = list(csv.DictReader(io.StringIO(out_of(capsys, args + ["--format", "csv"]))))
    assert rows and {r["calibration"] for r in rows} == {data["calibration_status"]}


@pytest.mark.parametrize("command", ["plan", "serve"])
def test_gate_names_a_borrowed_calibration_not_ideal_constants(capsys, tmp_path, command):
    """b200 borrows h100-sxm's constants: the gate's note says so (from the run's recorded
    calibration_status), not that its constants are ideal."""
    saved = tmp_path / "run.json"
    extra = ["--phase", "decode"] if command == "plan" else ["--mode", "static"]
    assert (
        run(
            [
                command,
                "llama-3-70b-h100",
                "--cluster",
                "b200",
                "--chips",
                "8",
                "--batch",
                "1,8",
                *extra,
                "--format",
                "json",
                "-o",
                str(saved),
            ]
        )
        == 0
    )
    capsys.readouterr()
    data = json.loads(out_of(capsys, ["compare", str(saved), str(saved), "--format", "json"]))
    assert data["calibrated"] == {"baseline": False, "current": False}
    note = data["calibration_note"]
    assert "calibration borrowed from h100-sxm (not fitted)" in note and "ideal" not in note
    assert "the cluster of the baseline (b200) and the current (b200)" in note


def test_pipelined_explain_names_the_calibration_in_json_and_csv(capsys):
    args = [
        "explain",
        "--model",
        "llama-3-70b",
        "--cluster",
        "b200",
        "--chips",
        "16",
        "--phase",
        "decode",
        "--batch",
        "8",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
        "--stages",
        "2",
    ]
    data = json.loads(out_of(capsys, args + ["--format", "json"]))
    assert (
        data["calibrated"] is False and data["calibration_status"] == "calibration borrowed from h100-sxm (not fitted)"
    )
    rows = list(csv.DictReader(io.StringIO(out_of(capsys, args + ["--format", "csv"]))))
    assert len(rows) == 3 and {r["calibration"] for r in rows} == {data["calibration_status"]}
