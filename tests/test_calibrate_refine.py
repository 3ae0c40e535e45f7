"""Refine, not replace (issue 28): `planner calibrate POINTS --cluster h100-sxm --fit NAMES` refits
only the named constants of a shipped preset, keeping every other one byte for byte."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from planner.commands.calibrate.fit import predict
from planner.config import load_cluster
from planner.config.measurements import load_measurements

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "configs" / "clusters" / "h100-sxm.yaml"
ROWS = (
    "{name: decode b16, model: llama-3-70b, phase: decode, chips: 8, batch: 16, context: 1024, "
    "output_tokens: 1024, ffn: ws1d, attention: heads, weights: fp8, latency_s: %r}",
    "{name: decode b64, model: llama-3-70b, phase: decode, chips: 8, batch: 64, context: 1024, "
    "output_tokens: 1024, ffn: ws1d, attention: heads, weights: fp8, latency_s: %r}",
    "{name: decode b8 tp4, model: llama-3-70b, phase: decode, chips: 4, batch: 8, context: 2048, "
    "output_tokens: 256, ffn: ws1d, attention: heads, weights: fp8, latency_s: %r}",
)


def _points(tmp_path: Path, latencies, rows=ROWS) -> Path:
    path = tmp_path / "points.yaml"
    body = "".join(f"  - {row % (float(t),)}\n" for row, t in zip(rows, latencies))
    path.write_text(
        f"cluster: h100-sxm\nsource: synthetic (the preset with one constant changed)\nmeasurements:\n{body}"
    )
    return path


def _synthetic(tmp_path: Path, **truth) -> Path:
    """Points the preset would predict if `truth` held: only those constants differ."""
    preset = load_cluster("h100-sxm")
    true = dataclasses.replace(preset, calibration=dataclasses.replace(preset.calibration, **truth))
    placeholder = load_measurements(str(_points(tmp_path, [1.0] * len(ROWS))))
    return _points(tmp_path, [r.predicted_s for r in predict(true, placeholder.points)])


def test_refining_one_constant_keeps_every_other_byte_for_byte(planner, tmp_path):
    preset = load_cluster("h100-sxm").calibration
    truth = round(preset.layer_overhead_s * 1.5, 10)
    points = _synthetic(tmp_path, layer_overhead_s=truth)
    out = tmp_path / "refined.yaml"
    run = planner(
        "calibrate", points, "--cluster", "h100-sxm", "--fit", "layer_overhead_s", "-o", out, "--format", "json"
    )
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert report["refitted"] == ["layer_overhead_s"]
    assert "levels.nvlink" in report["kept"] and "kernel_overhead_s" in report["kept"]
    assert "kept as h100-sxm has them:" in run.err
    fitted = report["constants"]["layer_overhead_s"]["after"]
    assert fitted == pytest.approx(truth, rel=1e-3) and fitted != preset.layer_overhead_s  # it moved, to the truth
    old, new = PRESET.read_text().splitlines(), out.read_text().splitlines()
    changed = [line for line in new if line not in old]
    # its name (no longer the preset's), the comment saying what was refitted, the preset's comment
    # on its own fit of that constant marked as such, the comment above the refitted line, the line
    assert len(changed) == 5, changed
    assert changed[0] == "name: h100-sxm-refined"
    assert changed[1].lstrip().startswith("# Refined by `planner calibrate") and "kept as it was" in changed[1]
    assert changed[2].startswith("  # (h100-sxm's fit) warning: layer_overhead_s and token_overhead_s: shared")
    assert changed[3] == (
        f"  # layer_overhead_s refitted by `{' '.join(['planner', 'calibrate', str(points)])} --cluster h100-sxm "
        f"--fit layer_overhead_s` to 3 point(s) (median |error| 0.0%) (h100-sxm has {preset.layer_overhead_s:g})"
    )
    assert changed[4] == f"  layer_overhead_s: {fitted:g}"
    stale = [line for line in old if line not in new]
    assert stale == [
        "name: h100-sxm",
        changed[2].replace("# (h100-sxm's fit) ", "# "),
        f"  layer_overhead_s: {preset.layer_overhead_s:g}",
    ]
    # loaded back: every other constant (network levels, kernel fits, MoE kernels) as the preset's
    back = load_cluster(str(out))
    assert back.calibration == dataclasses.replace(preset, layer_overhead_s=fitted)
    assert back.moe_kernels == load_cluster("h100-sxm").moe_kernels
    assert (
        yaml.safe_load(out.read_text())["calibration"]["levels"]
        == yaml.safe_load(PRESET.read_text())["calibration"]["levels"]
    )


def test_one_point_is_enough_for_one_constant(planner, tmp_path):
    points = _points(tmp_path, [20.0], ROWS[:1])
    run = planner("calibrate", points, "--cluster", "h100-sxm", "--fit", "layer_overhead_s")
    assert run.code == 0, run.err
    assert "refitted layer_overhead_s" in run.out and "+0.0%" in run.out  # one point, one constant: met


def test_a_constant_no_point_depends_on_keeps_its_value_with_a_warning(planner, tmp_path):
    """Decode points are memory-bound at H100's matmul efficiency: moved a step either way it
    changes no prediction (only far below would compute bind), so it is not identified and kept,
    not reported refitted at the value it started from."""
    points = _synthetic(tmp_path)
    run = planner(
        "calibrate",
        points,
        "--cluster",
        "h100-sxm",
        "--fit",
        "matmul_efficiency,layer_overhead_s",
        "--format",
        "json",
    )
    assert run.code == 0, run.err
    assert "cannot identify matmul_efficiency" in run.err
    report = json.loads(run.out)
    assert report["unidentified"] == ["matmul_efficiency"] and report["refitted"] == ["layer_overhead_s"]
    c = report["constants"]["matmul_efficiency"]
    assert c["before"] == c["after"]


def test_a_constant_the_clusters_levels_replace_exits_2_and_is_not_offered(planner, tmp_path):
    """h100-sxm's switched levels carry their own latency and efficiency: the cluster-wide
    collective constants are not used there, so --fit refuses them and the hint does not offer them."""
    points = _synthetic(tmp_path)
    for name in ("network_efficiency", "collective_latency_s", "weight_gather_efficiency"):
        run = planner("calibrate", points, "--cluster", "h100-sxm", "--fit", name)
        assert run.code == 2 and f"--fit: {name} is not used by h100-sxm's cost model" in run.err, run.err
        assert "levels.nvlink, levels.infiniband" in run.err
    run = planner("calibrate", points, "--cluster", "h100-sxm", "--fit", "nope")
    offered = run.err.split("hint: one of ")[1]
    assert "hbm_efficiency" in offered and "network_efficiency" not in offered
    assert "collective_latency_s" not in offered


def test_a_fraction_fitted_to_an_end_of_its_range_warns(planner, tmp_path):
    """Points far faster than the preset: overlap runs to 1, its upper end, and says so (as a fixed
    time at its floor does)."""
    points = _points(tmp_path, [0.0105 * 1024, 0.0125 * 1024, 0.0095 * 256])
    run = planner("calibrate", points, "--cluster", "h100-sxm", "--fit", "overlap", "--format", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["constants"]["overlap"]["after"] == 1.0
    assert "warning: overlap is at the upper end of its range (1)" in run.err
    points = _points(tmp_path, [0.005 * 1024, 0.006 * 1024, 0.004 * 256])
    run = planner("calibrate", points, "--cluster", "h100-sxm", "--fit", "layer_overhead_s", "--format", "json")
    assert json.loads(run.out)["constants"]["layer_overhead_s"]["after"] == 0.0
    assert "warning: layer_overhead_s is at the floor of its range, 0" in run.err


def test_more_constants_than_points_warns(planner, tmp_path):
    points = _points(tmp_path, [20.0], ROWS[:1])
    run = planner("calibrate", points, "--cluster", "h100-sxm", "--fit", "layer_overhead_s,hbm_efficiency")
    assert run.code == 0 and "underdetermined" in run.err


@pytest.mark.parametrize(
    "names, words",
    [
        ("layer_overhed_s", "did you mean 'layer_overhead_s'"),
        ("levels", "not a constant calibrate can refit"),
        (",", "name at least one"),
    ],
)
def test_bad_fit_names_exit_2(planner, tmp_path, names, words):
    points = _points(tmp_path, [20.0], ROWS[:1])
    run = planner("calibrate", points, "--cluster", "h100-sxm", "--fit", names)
    assert run.code == 2 and words in run.err.lower().replace("did you mean", "did you mean"), run.err


def test_fit_with_benchmark_results_says_what_it_needs(planner):
    run = planner(
        "calibrate",
        ROOT / "tests" / "bench_results" / "vllm-c16.json",
        "--cluster",
        "h100-sxm",
        "--fit",
        "layer_overhead_s",
    )
    # benchmark results refine an engine profile (tests/test_calibrate_refine_engine.py): which one
    assert run.code == 2 and "--engine is required with --fit on benchmark results" in run.err


def test_the_points_table_shows_the_measured_quantity_as_given_with_units(planner, tmp_path):
    """A point given as step_latency_s is shown per step (10.5 ms), not as the request's seconds."""
    rows = tuple(row.replace("latency_s: %r", "step_latency_s: %r") for row in ROWS)
    points = _points(tmp_path, [0.0105, 0.013, 0.0095], rows)
    run = planner("calibrate", points, "--cluster", "h100-sxm", "--fit", "layer_overhead_s")
    assert run.code == 0, run.err
    line = next(x for x in run.out.splitlines() if x.startswith("decode b16 "))
    assert line.split()[2:4] == ["10.5", "ms"] and "step_latency_s (a decode step; x 1024 steps)" in line
    assert "10.75" not in run.out  # 0.0105 s x 1024 steps, the request's seconds
    given = _points(tmp_path, [10.75], ROWS[:1])
    run = planner("calibrate", given, "--cluster", "h100-sxm", "--fit", "layer_overhead_s", "--format", "json")
    point = json.loads(run.out)["points"][0]
    assert point["measured_as"] == "latency_s" and point["steps"] == 1 and point["measured_s"] == 10.75
