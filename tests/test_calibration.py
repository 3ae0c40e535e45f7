"""`planner calibrate` and the calibrated TPU v4 preset.

Accuracy targets (issues 3 and 17): every calibration point (PaLM 540B and 62B) within 15% of its
measured latency and MFU; the planner keeps the paper's layout choices (Table 2; Table 3 or a
layout within 5%, or 1D where the paper's closed form favours it), Figure 6's ordering and
Figure 7's crossover. Where a target is out of reach because two measurements contradict each
other, the test is a strict xfail naming the contradiction with its numbers (docs/accuracy.md,
"Notes on the data"): it fails loudly the day the model gets it right, so that the list is kept
honest. Never tune the preset to pass these: it is whatever `planner calibrate` fits
(test_preset_is_the_fit).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from planner.commands.calibrate import fit as cal
from planner.commands.calibrate.assess import assess, choices, elsewhere
from planner.config import load_cluster, load_model, load_plan, presets_dir
from planner.config.measurements import WEIGHT_GATHERED, load_measurements
from planner.cost.costmodel import evaluate
from planner.errors import ConfigError
from planner.render.accuracy import accuracy_page
from planner.render.calibrate import cluster_yaml
from planner.search.search import best
from planner.specs.hardware import Calibration, WeightFormat
from planner.specs.plan import Phase

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = str(presets_dir() / "measurements" / "pope2022-tpu-v4.yaml")
LIMIT = 0.15
DATA = load_measurements(MEASUREMENTS)

# Points the cost model misses by more than 15% because the measurements contradict each other
# (see the notes in the measurements file, printed in docs/accuracy.md; the Fig 6 contradiction
# is recomputed by test_figure6_64_and_128_chip_gaps_contradict).
FIG7 = (
    "Fig 7 weight-gathered is flat from batch 64 to 128 (28.2 s, 29.5 s): a batch-independent "
    "27 s, the weight all-gather of wg-xyz (4.3 GB per chip per FFN layer, Figure 3); the best "
    "variant gathers at most half of that (wg-xy, Figure 3) for the same matmuls, which batch 256 "
    "(43.5 s) bounds at 10.9 s for 131,072 tokens: <= 24 s at batch 64 even unoverlapped, and "
    "max(21.7 s, 13.5 s) at batch 128 with the overlap batch 512 shows (64.3 s of matmuls at peak "
    "+ 27 s > 83.6 s measured)"
)
MISSES = {
    "Fig 6 ws1d 64 chips": "Fig 6's 1D-2D gap grows from 4.1 ms (64 chips) to 20.9 ms (128 chips) per "
    "step while 1D's extra bytes grow 1.4x and its ring steps stay 1062 fewer: with "
    "matmuls at >= 0.77 of peak (the best measured MFU) that needs links <= 0.18 of "
    "270 GB/s, and then the 64-chip gap needs >= 34 us per ring step, i.e. >= 0.24 s "
    "of collectives for ws2d on 64 chips against its 92 ms step",
    "Fig 7 weight-gathered batch 64": FIG7,
    "Fig 7 weight-gathered batch 128": FIG7,
}


def _xfail(reasons: dict[str, str], key: str):
    return pytest.mark.xfail(strict=True, reason=reasons[key]) if key in reasons else ()


@pytest.fixture(scope="module")
def preset():
    return load_cluster("tpu-v4")


@pytest.fixture(scope="module")
def residuals(preset):
    return {r.measurement.name: r for r in cal.predict(preset, DATA.points)}


@pytest.fixture(scope="module")
def palm_plan(preset):
    plan = load_plan(None, model="palm-540b", cluster="tpu-v4", input_tokens=2048, output_tokens=64, context=2048)
    return dataclasses.replace(plan, cluster=preset)


def write(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess:
    """The `planner` command, as a user runs it (commands in their own modules register on
    planner.cli.main.app, which `python -m planner.cli.main` does not see: it runs a second copy as __main__)."""
    return subprocess.run(
        [sys.executable, "-c", "from planner.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


# ---------------------------------------------------------------------------------------------
# Accuracy of the calibrated preset on its calibration set


@pytest.mark.parametrize("name", [pytest.param(m.name, marks=_xfail(MISSES, m.name)) for m in DATA.points])
def test_calibration_point_within_15_percent(residuals, name):
    r = residuals[name]
    assert abs(r.error) <= LIMIT, f"latency {r.predicted_s:.4g} s vs measured {r.measurement.latency_s:.4g} s"
    if r.mfu_error is not None:
        assert abs(r.mfu_error) <= LIMIT, f"MFU {r.predicted_mfu:.3f} vs measured {r.measurement.mfu:.3f}"


def test_misses_are_the_only_misses_and_the_median_is_small(residuals):
    errors = np.array([abs(r.error) for r in residuals.values()])
    assert np.median(errors) < 0.10
    assert {
        n
        for n, r in residuals.items()
        if abs(r.error) > LIMIT or (r.mfu_error is not None and abs(r.mfu_error) > LIMIT)
    } == set(MISSES)


# Table 2 layout picks are tested in test_reference.py (with the shipped, calibrated preset).


@pytest.mark.parametrize("name", [m.name for m in DATA.points if m.name.startswith("Table 3")])
def test_table3_picks_the_papers_layout_or_a_near_tie_or_1d_where_the_closed_form_says(preset, name):
    """The planner's pick at each Table 3 setting: the paper's layout, one the paper's is predicted
    within 5% of, or 1D where the paper's closed form puts 2D ahead only above n = 4F/E chips
    (reference `closed_forms.ws2d_beats_ws1d`; 16 chips for PaLM 62B)."""
    m = next(p for p in DATA.points if p.name == name)
    choice = next(c for c in choices(preset, (m,)))
    closed_form = (
        choice.picked.startswith("ws1d+") and m.ffn == "ws2d" and m.chips <= 4 * m.model.d_ff / m.model.d_model
    )
    assert choice.holds or closed_form, (choice.picked, choice.slower)


def test_figure6_ws2d_beats_ws1d_by_a_growing_margin(palm_plan):
    margins = []
    for chips in (64, 128, 256):
        step = {
            ffn: best(palm_plan, Phase.DECODE, chips, 512, WeightFormat.BF16, ffn).step_s[0] for ffn in ("ws1d", "ws2d")
        }
        margins.append(step["ws1d"] / step["ws2d"])
    assert margins[0] > 1.0 and margins[1] > margins[0] and margins[2] > margins[1], margins


def test_figure6_64_and_128_chip_gaps_contradict(preset):
    """The reason of the Fig 6 ws1d 64-chip miss, recomputed: the layouts' parts at ideal constants
    (compute, collective bytes-time, ring steps per step) and the four measured steps admit no
    physical constants (overlap 0, as fitted; collectives then outlast the matmuls)."""
    ideal = dataclasses.replace(preset, calibration=Calibration())
    points = {m.name: m for m in DATA.points}
    part, step = {}, {}
    for chips in (64, 128):
        for ffn in ("ws1d", "ws2d"):
            m = points[f"Fig 6 {ffn} {chips} chips"]
            chosen = min(cal.allowed(preset, m), key=lambda e: float(e.latency_s[0])).candidate
            ev = cal.evaluate(m.model, ideal, m.workload, chosen, np.array([m.batch]))
            assert ev.compute_s[0] > ev.memory_s[0]  # compute-bound: local time is the matmuls'
            part[ffn, chips] = (float(ev.compute_s[0]), float(ev.comm_s[0]), ev.ring_steps)
            step[ffn, chips] = m.latency_s / m.workload.output_tokens
    extra = {n: [a - b for a, b in zip(part["ws1d", n], part["ws2d", n])] for n in (64, 128)}
    gap = {n: step["ws1d", n] - step["ws2d", n] for n in (64, 128)}
    assert extra[64][2] == extra[128][2] < 0  # 1D: the same number of ring steps fewer at both
    e_min = max(m.mfu for m in DATA.points if m.mfu is not None)  # matmul efficiency >= any MFU
    growth = gap[128] - gap[64]  # = extra compute / e + extra bytes-time / w: ring steps cancel
    w_max = (extra[128][1] - extra[64][1]) / (growth - (extra[128][0] - extra[64][0]) / e_min)
    t_min = (extra[64][1] / w_max - gap[64]) / -extra[64][2]  # s per ring step
    ws2d_comm_min = part["ws2d", 64][1] / w_max + part["ws2d", 64][2] * t_min
    assert (round(w_max, 2), round(t_min * 1e6), round(ws2d_comm_min, 2)) == (0.18, 34, 0.24)
    assert ws2d_comm_min > 2 * step["ws2d", 64]


def _ws2d_over_weight_gathered(plan, batch):
    ws2d = best(plan, Phase.PREFILL, 64, batch, WeightFormat.BF16, "ws2d").latency_s[0]
    gathered = min(
        best(plan, Phase.PREFILL, 64, batch, WeightFormat.BF16, ffn).latency_s[0] for ffn in ("wg-x", "wg-xy", "wg-xyz")
    )
    return ws2d / gathered


@pytest.mark.xfail(strict=True, reason=FIG7)
def test_figure7_ws2d_better_at_131072_tokens(palm_plan):
    assert _ws2d_over_weight_gathered(palm_plan, 64) < 1.0


@pytest.mark.parametrize("batch", [128, 256, 512])
def test_figure7_weight_gathered_better_from_262144_tokens(palm_plan, batch):
    assert _ws2d_over_weight_gathered(palm_plan, batch) > 1.0


# ---------------------------------------------------------------------------------------------
# The preset records the fit; the fit is a real, deterministic, fast optimisation


def test_preset_is_the_fit(preset):
    """The bundled tpu-v4 file is exactly what `planner calibrate` writes for the bundled data."""
    assessment = assess(preset, DATA)
    assert assessment.fit.cluster.calibration == preset.calibration
    path = presets_dir() / "clusters" / "tpu-v4.yaml"
    command = "planner calibrate configs/measurements/pope2022-tpu-v4.yaml --cluster tpu-v4"
    assert cluster_yaml(path.read_text(), assessment, DATA, command) == path.read_text()


def test_preset_constants_are_physical(preset):
    c = preset.calibration
    for name in ("matmul_efficiency", "hbm_efficiency", "network_efficiency", "weight_gather_efficiency"):
        assert 0.0 < getattr(c, name) <= 1.0
    assert c.collective_latency_s >= 0.0 and c.layer_overhead_s >= 0.0 and 0.0 <= c.overlap <= 1.0
    assert c.matmul_half_rows >= 0.0
    assert c != Calibration()


def test_constants_are_the_calibration_fields():
    # kernel_overhead_s, narrow_matmul_efficiency, token_overhead_s and the per-level constants are
    # fitted from kernel files only (planner.commands.calibrate.kernels); every other field by this fit
    assert sorted(name for name, _ in cal.CONSTANTS) == sorted(
        set(Calibration.__dataclass_fields__)
        - {"kernel_overhead_s", "narrow_matmul_efficiency", "token_overhead_s", "levels"}
    )


def test_accuracy_page_is_up_to_date(preset):
    page = ROOT / "docs" / "accuracy.md"
    if not page.is_file():
        pytest.skip("docs/accuracy.md is not in this installation")
    assessments = {m: assess(cal.with_bandwidth_model(preset, m), DATA) for m in ("chip", "axes")}
    models = (load_model("palm-8b"),)
    command = (
        "planner calibrate configs/measurements/pope2022-tpu-v4.yaml --cluster tpu-v4 "
        "--report docs/accuracy.md --other-models palm-8b"
    )
    data = dataclasses.replace(DATA, file="configs/measurements/pope2022-tpu-v4.yaml")
    text = accuracy_page(data, preset, assessments, elsewhere(preset, data, models), command)
    assert text == page.read_text(), "regenerate with: " + command


def test_fit_is_deterministic(preset):
    """(Its speed is measured by benchmarks/bench_calibrate.py, not asserted here.)"""
    fits = [cal.fit(preset, DATA) for _ in range(2)]
    assert fits[0].cluster.calibration == fits[1].cluster.calibration


def test_fit_recovers_constants_that_generated_the_data(preset):
    truth = Calibration(
        matmul_efficiency=0.6,
        hbm_efficiency=0.8,
        network_efficiency=0.4,
        collective_latency_s=5e-6,
        layer_overhead_s=5e-5,
        overlap=0.5,
        weight_gather_efficiency=0.025,
        matmul_half_rows=100.0,
    )
    # The weight all-gathers cost time only where they outlast the matmuls; the data can tell
    # their efficiency only where the layout is fixed to wg-xyz (Tables 2 and 3, high-throughput
    # prefill), which happens below about 0.037: above, every value that keeps them hidden fits.
    cluster = dataclasses.replace(preset, calibration=truth)
    synthetic = tuple(
        dataclasses.replace(r.measurement, latency_s=r.predicted_s) for r in cal.predict(cluster, DATA.points)
    )
    got = cal.fit(preset, dataclasses.replace(DATA, points=synthetic)).cluster.calibration
    for name, _ in cal.CONSTANTS:
        assert getattr(got, name) == pytest.approx(getattr(truth, name), rel=0.01), name


def test_linearised_model_matches_the_cost_model(preset):
    terms = cal.Terms.build(preset, DATA.points)
    c = Calibration(
        matmul_efficiency=0.7,
        hbm_efficiency=0.9,
        network_efficiency=0.3,
        collective_latency_s=2e-5,
        layer_overhead_s=1e-4,
        overlap=0.4,
        weight_gather_efficiency=0.15,
        matmul_half_rows=100.0,
    )
    exact = [r.predicted_s for r in cal.predict(dataclasses.replace(preset, calibration=c), DATA.points)]
    fast = terms.latency(np.array([getattr(c, name) for name, _ in cal.CONSTANTS]))
    assert fast == pytest.approx(exact, rel=1e-12)


def test_refuses_fewer_points_than_constants(preset):
    few = dataclasses.replace(DATA, points=DATA.points[:3])
    with pytest.raises(ConfigError, match="3 measured points cannot determine 8"):
        cal.fit(preset, few)


def test_a_constant_no_point_depends_on_is_reported_and_kept_at_its_default(preset):
    """Without weight-gathered points, the weight all-gathers' efficiency is not identified: it
    follows network_efficiency, the report says so and the YAML leaves it out."""
    stationary = tuple(m for m in DATA.points if m.ffn in ("ws1d", "ws2d"))
    data = dataclasses.replace(DATA, points=stationary)
    assessment = assess(preset, data)
    got = assessment.fit.cluster.calibration
    assert assessment.fit.unidentified == ("weight_gather_efficiency",)
    assert got.weight_gather_efficiency == got.network_efficiency
    text = cluster_yaml((presets_dir() / "clusters" / "tpu-v4.yaml").read_text(), assessment, data, "cmd")
    assert "weight_gather_efficiency:" not in text and "not identified by the data" in text


def test_weight_gathers_have_their_own_efficiency_defaulting_to_the_network_one(preset):
    assert Calibration(network_efficiency=0.3).weight_gather_efficiency == 0.3
    m = next(p for p in DATA.points if p.name == "Table 2 high-throughput prefill")
    plan = load_plan(None, model="palm-540b", cluster="tpu-v4", input_tokens=2048, output_tokens=64, context=2048)
    slow = dataclasses.replace(
        preset,
        calibration=dataclasses.replace(
            preset.calibration, weight_gather_efficiency=preset.calibration.weight_gather_efficiency / 2
        ),
    )
    before = best(dataclasses.replace(plan, cluster=preset), Phase.PREFILL, 64, m.batch, m.weights, "wg-xyz")
    after = best(dataclasses.replace(plan, cluster=slow), Phase.PREFILL, 64, m.batch, m.weights, "wg-xyz")
    assert after.prefetched_s[0] == pytest.approx(
        2 * before.prefetched_s[0] - before.prefetched_ring_steps * preset.calibration.collective_latency_s, rel=1e-12
    )
    assert after.comm_s[0] - after.prefetched_s[0] == pytest.approx(before.comm_s[0] - before.prefetched_s[0])


def test_matmul_efficiency_falls_with_rows_per_chip_and_ideal_stays_ideal(preset):
    """eff(m) = matmul_efficiency * m / (m + matmul_half_rows): an einsum of m rows per chip costs
    (1 + m_half / m) times its large-matmul time; m_half 0 (the default) changes nothing."""
    plan = load_plan(None, model="palm-62b", cluster="tpu-v4", input_tokens=2048, output_tokens=64, context=2048)
    half = dataclasses.replace(preset, calibration=dataclasses.replace(preset.calibration, matmul_half_rows=64.0))
    zero = dataclasses.replace(preset, calibration=dataclasses.replace(preset.calibration, matmul_half_rows=0.0))
    for phase, batch, rows, attention in ((Phase.DECODE, 32, 32, "batch"), (Phase.PREFILL, 1, 2048, "heads")):
        a = best(dataclasses.replace(plan, cluster=zero), phase, 16, batch, WeightFormat.INT8, "ws2d", attention)
        b = evaluate(plan.model, half, plan.workload, a.candidate, a.batch, detail=True)
        for ra, rb in zip(a.rows, b.rows):
            if ra.name.startswith("einsum W_"):
                assert rb.compute_s[0] == pytest.approx(ra.compute_s[0] * (1 + 64.0 / rows), rel=1e-12)
        assert b.compute_s[0] == pytest.approx(sum(r.compute_s[0] for r in b.rows), rel=1e-12)
    assert Calibration().matmul_half_rows == 0.0


# ---------------------------------------------------------------------------------------------
# The measurements file is the reference's calibration set, and only that


def test_measurements_are_the_reference_calibration_set(reference):
    points = {m.name: m for m in DATA.points}
    assert len(points) == 4 + 4 + 2 + 6 + 8
    for table, model in (("table2_palm540b", "palm-540b"), ("table3_palm62b", "palm-62b")):
        for row in reference[table]:
            m = points[f"Table {table[5]} {row['name']}"]
            assert (m.model.name, m.phase.value, m.chips, m.batch, m.ffn, m.attention, m.weights.label) == (
                model,
                row["phase"],
                row["chips"],
                row["batch"],
                row["ffn"],
                row["attention"],
                row["weights"],
            )
            assert (m.latency_s, m.mfu, m.chosen) == (row["latency_s"], row["mfu"], True)
            tokens = (
                {"input_tokens": m.workload.input_tokens}
                if m.phase is Phase.PREFILL
                else {"context": m.workload.context, "output_tokens": m.workload.output_tokens}
            )
            assert tokens == {key: row[key] for key in tokens}
    for row in reference["decode_per_token_palm540b_b64"]:
        m = points[f"Sec 4.4 decode per token {row['weights']}"]
        assert m.latency_s == pytest.approx(row["latency_per_token_s"] * 64)
    for row in reference["figure6_decode_step_s"]:
        for ffn in ("ws2d", "ws1d"):
            m = points[f"Fig 6 {ffn} {row['chips']} chips"]
            assert (m.ffn, m.batch, m.chips) == (ffn, 512, row["chips"])
            assert m.latency_s == pytest.approx(row[ffn] * 64)
    peak, params = 275e12, float(reference["conventions"]["n_params_nominal"]["palm-540b"])  # 540.0e9 reads as text
    for row in reference["figure7_prefill_mfu"]:
        for key, ffn in (("ws2d", "ws2d"), ("weight_gathered", WEIGHT_GATHERED)):
            m = points[f"Fig 7 {ffn} batch {row['batch']}"]
            assert (m.ffn, m.batch * m.workload.input_tokens) == (ffn, row["tokens"])
            assert m.mfu == row[key]
            assert m.latency_s == pytest.approx(2 * params * row["tokens"] / (64 * peak * row[key]), rel=5e-4)


# ---------------------------------------------------------------------------------------------
# Generalisation: the same constants on the other PaLM sizes (not fitted)


def test_other_palm_sizes_get_sensible_predictions(preset):
    models = tuple(load_model(name) for name in ("palm-8b", "palm-62b", "palm-540b"))
    measured = {(m.setting.split(" ", 1)[1], m.weights): m.model.n_params for m in DATA.points}
    found = {}
    for e in elsewhere(preset, DATA, models):
        m, r = e.measurement, e.residual
        if r is None:  # only a model larger than the one measured at that setting may not fit
            assert m.model.n_params > measured[(m.setting.split(" ", 1)[1], m.weights)], m.setting
            continue
        found[(m.model.name, m.setting.split(" ", 1)[1], m.weights)] = r
        assert 0.005 < r.predicted_mfu <= 0.8, (m.setting, r.predicted_mfu)
        steps = m.workload.output_tokens if m.phase is Phase.DECODE else 1
        assert 1e-3 < r.predicted_s / steps < 200.0, m.setting
        if m.phase is Phase.PREFILL and m.batch >= 64:
            assert r.predicted_mfu > 0.3, m.setting  # large prefills use the chips well
    for (model, setting, weights), r in found.items():
        if model == "palm-540b":
            continue
        bigger = {"palm-8b": "palm-62b", "palm-62b": "palm-540b"}[model]
        if (bigger, setting, weights) in found:
            assert r.predicted_s < found[(bigger, setting, weights)].predicted_s, (model, setting)


# ---------------------------------------------------------------------------------------------
# The command


def test_cli_writes_a_cluster_that_plans(tmp_path):
    out = tmp_path / "my-tpu-v4.yaml"
    done = run("calibrate", MEASUREMENTS, "--cluster", "tpu-v4", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "median |error|" in done.stdout and "worst" in done.stdout
    assert "Table 2 low-latency decode" in done.stdout
    assert load_cluster(str(out)).calibration == load_cluster("tpu-v4").calibration
    assert "# Fitted by `planner calibrate" in out.read_text()
    planned = run(
        "plan",
        "--model",
        "palm-540b",
        "--cluster",
        str(out),
        "--chips",
        "64",
        "--phase",
        "decode",
        "--batch",
        "64",
        "--weights",
        "int8",
    )
    assert planned.returncode == 0, planned.stderr


def test_cli_fits_the_other_bandwidth_model(tmp_path):
    out = tmp_path / "axes.yaml"
    done = run("calibrate", MEASUREMENTS, "--bandwidth-model", "axes", "--format", "json", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert '"bandwidth_model": "axes"' in done.stdout
    assert load_cluster(str(out)).topology.bandwidth_model == "axes"


GOOD_ROW = (
    "{name: a, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, "
    "output_tokens: 64, ffn: ws2d, attention: batch, weights: int8, latency_s: 1.82}"
)


@pytest.mark.parametrize(
    "bad, line, key, words",
    [
        (
            "{name: b, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, output_tokens: 64,"
            " ffn: ws3d, attention: batch, weights: int8, latency_s: 1.82}",
            4,
            "measurements[1].ffn",
            "unknown FFN layout 'ws3d'",
        ),
        (
            "{name: b, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, output_tokens: 64,"
            " ffn: ws2d, attention: batch, weights: int8, latency_s: -1.82}",
            4,
            "measurements[1].latency_s",
            "must be > 0",
        ),
        (
            "{name: b, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, output_tokens: 64,"
            " attention: batch, weights: int8, latency_s: 1.82}",
            4,
            "measurements[1].ffn",
            "missing key 'ffn'",
        ),
        (
            "{name: b, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, output_tokens: 64,"
            " ffn: ws2d, attention: batch, weights: int8}",
            4,
            "measurements[1].latency_s",
            "missing key 'latency_s'",
        ),
        (
            "{name: b, model: palm-540b, phase: prefill, chips: 64, batch: 64, context: 2048,"
            " ffn: ws2d, attention: batch, weights: int8, latency_s: 1.0}",
            4,
            "measurements[1].context",
            "not used by a prefill",
        ),
        (
            "{name: b, model: palm-540b, phase: decode, chips: 48, batch: 64, context: 2048, output_tokens: 64,"
            " ffn: ws2d, attention: batch, weights: int8, latency_s: 1.82}",
            4,
            "measurements[1].chips",
            "cannot form 48 chips",
        ),
    ],
)
def test_cli_reports_a_bad_row_with_file_line_and_field(tmp_path, bad, line, key, words):
    path = write(
        tmp_path,
        "bad.yaml",
        f"""\
        cluster: tpu-v4
        measurements:
          - {GOOD_ROW}
          - {bad}
        """,
    )
    done = run("calibrate", path)
    assert done.returncode == 2
    assert f"{path}:{line}:" in done.stderr and key in done.stderr and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_cli_refuses_too_few_points(tmp_path):
    path = write(
        tmp_path,
        "few.yaml",
        f"""\
        cluster: tpu-v4
        measurements:
          - {GOOD_ROW}
        """,
    )
    done = run("calibrate", path)
    assert done.returncode == 2 and "cannot determine 8 calibration constants" in done.stderr
    assert f"{path}:3:" in done.stderr and "measurements" in done.stderr


def test_cli_needs_a_cluster(tmp_path):
    path = write(
        tmp_path,
        "nocluster.yaml",
        f"""\
        measurements:
          - {GOOD_ROW}
        """,
    )
    done = run("calibrate", path)
    assert done.returncode == 2 and "--cluster is required" in done.stderr


def test_readme_accuracy_summary_matches_the_fit(residuals):
    readme = ROOT / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is not in this installation")
    text = " ".join(readme.read_text().split())
    found = re.search(r"median error (\d+\.\d)%, (\d+) of (\d+) points within 15%", text)
    assert found, "README's accuracy summary is missing"
    errors = [abs(r.error) for r in residuals.values()]
    within = sum(r.within_target for r in residuals.values())
    assert found.groups() == (f"{100 * np.median(errors):.1f}", str(within), str(len(errors)))


def test_cli_calibrates_a_gpu_cluster_from_a_users_file(tmp_path):
    """A user's own measurements on a switched (NVLink + InfiniBand) cluster: latencies made by
    known constants are fitted back, and the page says there are no orderings to check."""
    truth = Calibration(
        matmul_efficiency=0.55,
        hbm_efficiency=0.85,
        network_efficiency=0.5,
        collective_latency_s=4e-6,
        layer_overhead_s=2e-5,
        overlap=0.3,
        weight_gather_efficiency=0.35,
        matmul_half_rows=24.0,
    )
    h100 = dataclasses.replace(load_cluster("h100-sxm"), calibration=truth)
    rows = []
    for model in ("llama-3-8b", "llama-3-70b"):
        for chips in (8, 16):
            for phase, batch in (("prefill", 1), ("prefill", 16), ("decode", 8), ("decode", 128)):
                tokens = "input_tokens: 2048" if phase == "prefill" else "context: 2048, output_tokens: 64"
                rows.append(
                    f"{{name: '{model} {phase} {chips}x b{batch}', model: {model}, phase: {phase}, "
                    f"chips: {chips}, batch: {batch}, {tokens}, ffn: best, attention: best, "
                    f"weights: bf16, latency_s: 1}}"
                )  # replaced below
    path = Path(
        write(
            tmp_path, "gpu.yaml", "cluster: h100-sxm\nmeasurements:\n" + "\n".join(f"  - {row}" for row in rows) + "\n"
        )
    )
    data = load_measurements(str(path))
    predicted = [r.predicted_s for r in cal.predict(h100, data.points)]
    text = path.read_text()
    for seconds in predicted:
        text = text.replace("latency_s: 1}", f"latency_s: {seconds:.6g}}}", 1)
    path.write_text(text)
    out = tmp_path / "my-h100.yaml"
    done = run("calibrate", str(path), "--cluster", "h100-sxm", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "none (no two points measure different layouts at one setting)" in " ".join(done.stdout.split())
    got = load_cluster(str(out)).calibration
    for name, _ in cal.CONSTANTS:
        assert getattr(got, name) == pytest.approx(getattr(truth, name), rel=0.02), name


def test_cli_refuses_measurements_of_other_hardware():
    done = run("calibrate", MEASUREMENTS, "--cluster", "a100-80gb")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "pope2022-tpu-v4.yaml:" in done.stderr and "cluster: the measurements were taken on tpu-v4" in done.stderr
    assert "hint: pass --cluster tpu-v4" in done.stderr


def test_one_chip_takes_any_layout_name_and_says_so(tmp_path):
    """On one chip every layout is the same single-chip layout: a row naming ws2d+heads (which
    has no axes to shard over) is predicted as it, not refused; the residual table says so, and
    MFU is a percentage as everywhere else."""
    rows = [
        f"{{name: 'one {ffn}+{attention}', model: llama-3-8b, phase: decode, chips: 1, batch: 8, "
        f"context: 2048, output_tokens: 64, ffn: {ffn}, attention: {attention}, weights: bf16, "
        f"latency_s: 1.0, mfu: 0.43}}"
        for ffn, attention in (("ws2d", "heads"), ("ws1d", "batch"))
    ]
    path = Path(
        write(
            tmp_path, "one.yaml", "cluster: h100-sxm\nmeasurements:\n" + "\n".join(f"  - {row}" for row in rows) + "\n"
        )
    )
    named, plain = cal.predict(load_cluster("h100-sxm"), load_measurements(str(path)).points)
    assert named.predicted_s == plain.predicted_s
    assert named.layout.endswith("(one chip: any layout is this one)") and "one chip" not in plain.layout
    from types import SimpleNamespace

    from planner.render.calibrate import _rows

    cells = list(_rows(SimpleNamespace(fit=SimpleNamespace(residuals=(named,)))))[0]
    assert cells[6] == "43.0%" and cells[7].endswith("%")


def test_calibrate_usage_line_has_no_braces():
    done = run("calibrate", "--help")
    assert done.returncode == 0 and "Usage: planner calibrate [OPTIONS] MEASUREMENTS" in done.stdout
