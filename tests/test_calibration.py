"""`planner calibrate` and the calibrated TPU v4 preset.

Accuracy targets (issue 3): every calibration point within 15% of its measured latency and MFU;
the planner keeps the paper's layout choices (Table 2), Figure 6's ordering and Figure 7's
crossover. Where the cost model cannot meet a target with physical constants, the test is a
strict xfail naming the reason (docs/accuracy.md, "Notes on the data"): it fails loudly the day
the model gets it right, so that the list is kept honest. Never tune the preset to pass these:
it is whatever `planner calibrate` fits (test_preset_is_the_fit).
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

from planner.commands import calibrate as cal
from planner.commands.assess import assess, elsewhere
from planner.commands.measurements import WEIGHT_GATHERED, load_measurements
from planner.config import load_cluster, load_model, load_plan, presets_dir
from planner.errors import ConfigError
from planner.render.calibrate import accuracy_page, cluster_yaml
from planner.search.search import best
from planner.specs.hardware import Calibration, WeightFormat
from planner.specs.plan import Phase

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = str(presets_dir() / "measurements" / "pope2022-tpu-v4.yaml")
LIMIT = 0.15
DATA = load_measurements(MEASUREMENTS)

# Points the cost model misses by more than 15% with any physical constants it has (see the notes
# in the measurements file, printed in docs/accuracy.md).
MISSES = {
    "Fig 6 ws1d 64 chips": "chip bandwidth model charges 1D's collectives about 1.4x 2D's time; "
                           "measured 1D is 4% slower",
    "Fig 7 weight-gathered batch 64": "measured weight-gathered prefill has a batch-independent cost "
                                      "the model does not have (and the best variant beats ws2d here)",
    "Fig 7 weight-gathered batch 128": "as Fig 7 weight-gathered batch 64",
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
    plan = load_plan(None, model="palm-540b", cluster="tpu-v4", input_tokens=2048,
                     output_tokens=64, context=2048)
    return dataclasses.replace(plan, cluster=preset)


def write(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess:
    """The `planner` command, as a user runs it (commands in their own modules register on
    planner.cli.main.app, which `python -m planner.cli.main` does not see: it runs a second copy as __main__)."""
    return subprocess.run([sys.executable, "-c", "from planner.cli.main import main; main()", *args],
                          capture_output=True, text=True, cwd=ROOT)


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
    assert {n for n, r in residuals.items() if abs(r.error) > LIMIT or
            (r.mfu_error is not None and abs(r.mfu_error) > LIMIT)} == set(MISSES)


# Table 2 layout picks are tested in test_reference.py (with the shipped, calibrated preset).


def test_figure6_ws2d_beats_ws1d_by_a_growing_margin(palm_plan):
    margins = []
    for chips in (64, 128, 256):
        step = {ffn: best(palm_plan, Phase.DECODE, chips, 512, WeightFormat.BF16, ffn).step_s[0]
                for ffn in ("ws1d", "ws2d")}
        margins.append(step["ws1d"] / step["ws2d"])
    assert margins[0] > 1.0 and margins[1] > margins[0] and margins[2] > margins[1], margins


def _ws2d_over_weight_gathered(plan, batch):
    ws2d = best(plan, Phase.PREFILL, 64, batch, WeightFormat.BF16, "ws2d").latency_s[0]
    gathered = min(best(plan, Phase.PREFILL, 64, batch, WeightFormat.BF16, ffn).latency_s[0]
                   for ffn in ("wg-x", "wg-xy", "wg-xyz"))
    return ws2d / gathered


@pytest.mark.xfail(strict=True, reason=MISSES["Fig 7 weight-gathered batch 64"])
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
    for name in ("matmul_efficiency", "hbm_efficiency", "network_efficiency"):
        assert 0.0 < getattr(c, name) <= 1.0
    assert c.collective_latency_s >= 0.0 and c.layer_overhead_s >= 0.0 and 0.0 <= c.overlap <= 1.0
    assert c != Calibration()


def test_constants_are_the_calibration_fields():
    assert sorted(name for name, _ in cal.CONSTANTS) == sorted(Calibration.__dataclass_fields__)


def test_accuracy_page_is_up_to_date(preset):
    page = ROOT / "docs" / "accuracy.md"
    if not page.is_file():
        pytest.skip("docs/accuracy.md is not in this installation")
    assessments = {m: assess(cal.with_bandwidth_model(preset, m), DATA) for m in ("chip", "axes")}
    models = (load_model("palm-8b"), load_model("palm-62b"))
    command = ("planner calibrate configs/measurements/pope2022-tpu-v4.yaml --cluster tpu-v4 "
               "--report docs/accuracy.md --other-models palm-8b,palm-62b")
    data = dataclasses.replace(DATA, file="configs/measurements/pope2022-tpu-v4.yaml")
    text = accuracy_page(data, preset, assessments, elsewhere(preset, data, models), command)
    assert text == page.read_text(), "regenerate with: " + command


def test_fit_is_deterministic(preset):
    """(Its speed is measured by benchmarks/bench_calibrate.py, not asserted here.)"""
    fits = [cal.fit(preset, DATA) for _ in range(2)]
    assert fits[0].cluster.calibration == fits[1].cluster.calibration


def test_fit_recovers_constants_that_generated_the_data(preset):
    truth = Calibration(matmul_efficiency=0.6, hbm_efficiency=0.8, network_efficiency=0.4,
                        collective_latency_s=5e-6, layer_overhead_s=5e-5, overlap=0.5)
    cluster = dataclasses.replace(preset, calibration=truth)
    synthetic = tuple(dataclasses.replace(r.measurement, latency_s=r.predicted_s)
                      for r in cal.predict(cluster, DATA.points))
    got = cal.fit(preset, dataclasses.replace(DATA, points=synthetic)).cluster.calibration
    for name, _ in cal.CONSTANTS:
        assert getattr(got, name) == pytest.approx(getattr(truth, name), rel=0.01), name


def test_linearised_model_matches_the_cost_model(preset):
    terms = cal._Terms.build(preset, DATA.points)
    c = Calibration(matmul_efficiency=0.7, hbm_efficiency=0.9, network_efficiency=0.3,
                    collective_latency_s=2e-5, layer_overhead_s=1e-4, overlap=0.4)
    exact = [r.predicted_s for r in cal.predict(dataclasses.replace(preset, calibration=c), DATA.points)]
    fast = terms.latency(np.array([getattr(c, name) for name, _ in cal.CONSTANTS]))
    assert fast == pytest.approx(exact, rel=1e-12)


def test_refuses_fewer_points_than_constants(preset):
    few = dataclasses.replace(DATA, points=DATA.points[:3])
    with pytest.raises(ConfigError, match="3 measured points cannot determine 6"):
        cal.fit(preset, few)


# ---------------------------------------------------------------------------------------------
# The measurements file is the reference's calibration set, and only that


def test_measurements_are_the_reference_calibration_set(reference):
    points = {m.name: m for m in DATA.points}
    assert len(points) == 4 + 2 + 6 + 8
    for row in reference["table2_palm540b"]:
        m = points[f"Table 2 {row['name']}"]
        assert (m.phase.value, m.chips, m.batch, m.ffn, m.attention, m.weights.label) == \
            (row["phase"], row["chips"], row["batch"], row["ffn"], row["attention"], row["weights"])
        assert (m.latency_s, m.mfu) == (row["latency_s"], row["mfu"])
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
    found = {}
    for e in elsewhere(preset, DATA, models):
        assert e.residual is not None, e.measurement.setting
        m, r = e.measurement, e.residual
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
    planned = run("plan", "--model", "palm-540b", "--cluster", str(out), "--chips", "64",
                  "--phase", "decode", "--batch", "64", "--weights", "int8")
    assert planned.returncode == 0, planned.stderr


def test_cli_fits_the_other_bandwidth_model(tmp_path):
    out = tmp_path / "axes.yaml"
    done = run("calibrate", MEASUREMENTS, "--bandwidth-model", "axes", "--format", "json", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert '"bandwidth_model": "axes"' in done.stdout
    assert load_cluster(str(out)).topology.bandwidth_model == "axes"


GOOD_ROW = ("{name: a, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, "
            "output_tokens: 64, ffn: ws2d, attention: batch, weights: int8, latency_s: 1.82}")


@pytest.mark.parametrize("bad, line, key, words", [
    ("{name: b, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, output_tokens: 64,"
     " ffn: ws3d, attention: batch, weights: int8, latency_s: 1.82}", 4, "measurements[1].ffn",
     "unknown FFN layout 'ws3d'"),
    ("{name: b, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, output_tokens: 64,"
     " ffn: ws2d, attention: batch, weights: int8, latency_s: -1.82}", 4, "measurements[1].latency_s",
     "must be > 0"),
    ("{name: b, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, output_tokens: 64,"
     " attention: batch, weights: int8, latency_s: 1.82}", 4, "measurements[1].ffn", "missing key 'ffn'"),
    ("{name: b, model: palm-540b, phase: decode, chips: 64, batch: 64, context: 2048, output_tokens: 64,"
     " ffn: ws2d, attention: batch, weights: int8}", 4, "measurements[1].latency_s", "missing key 'latency_s'"),
    ("{name: b, model: palm-540b, phase: prefill, chips: 64, batch: 64, context: 2048,"
     " ffn: ws2d, attention: batch, weights: int8, latency_s: 1.0}", 4, "measurements[1].context",
     "not used by a prefill"),
    ("{name: b, model: palm-540b, phase: decode, chips: 48, batch: 64, context: 2048, output_tokens: 64,"
     " ffn: ws2d, attention: batch, weights: int8, latency_s: 1.82}", 4, "measurements[1].chips",
     "cannot form 48 chips"),
])
def test_cli_reports_a_bad_row_with_file_line_and_field(tmp_path, bad, line, key, words):
    path = write(tmp_path, "bad.yaml", f"""\
        cluster: tpu-v4
        measurements:
          - {GOOD_ROW}
          - {bad}
        """)
    done = run("calibrate", path)
    assert done.returncode == 2
    assert f"{path}:{line}:" in done.stderr and key in done.stderr and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_cli_refuses_too_few_points(tmp_path):
    path = write(tmp_path, "few.yaml", f"""\
        cluster: tpu-v4
        measurements:
          - {GOOD_ROW}
        """)
    done = run("calibrate", path)
    assert done.returncode == 2 and "cannot determine 6 calibration constants" in done.stderr
    assert f"{path}:3:" in done.stderr and "measurements" in done.stderr


def test_cli_needs_a_cluster(tmp_path):
    path = write(tmp_path, "nocluster.yaml", f"""\
        measurements:
          - {GOOD_ROW}
        """)
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
    truth = Calibration(matmul_efficiency=0.55, hbm_efficiency=0.85, network_efficiency=0.5,
                        collective_latency_s=4e-6, layer_overhead_s=2e-5, overlap=0.3)
    h100 = dataclasses.replace(load_cluster("h100-sxm"), calibration=truth)
    rows = []
    for model in ("llama-3-8b", "llama-3-70b"):
        for chips in (8, 16):
            for phase, batch in (("prefill", 1), ("prefill", 16), ("decode", 8), ("decode", 128)):
                tokens = ("input_tokens: 2048" if phase == "prefill" else
                          "context: 2048, output_tokens: 64")
                rows.append(f"{{name: '{model} {phase} {chips}x b{batch}', model: {model}, phase: {phase}, "
                            f"chips: {chips}, batch: {batch}, {tokens}, ffn: best, attention: best, "
                            f"weights: bf16, latency_s: 1}}")  # replaced below
    path = Path(write(tmp_path, "gpu.yaml", "cluster: h100-sxm\nmeasurements:\n" +
                      "\n".join(f"  - {row}" for row in rows) + "\n"))
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
