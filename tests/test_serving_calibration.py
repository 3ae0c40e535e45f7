"""The serving set (configs/measurements/serving.yaml) against the steady state, with the engine
profiles fitted to it: the accuracy page is what `planner calibrate` writes, the shipped profiles
are what it fits, the set is what its builder writes from the shared reference, and the figures
the issues ask for."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from planner.commands.calibrate.engines import FITTED_ENGINES, MTP_DRAFT_TOKENS, fit_serving
from planner.commands.calibrate.serving import assess_serving
from planner.commands.serve import curve
from planner.config import load_cluster
from planner.config.engines import load_engine
from planner.config.serving_runs import load_serving_measurements
from planner.render.calibrate_serving import accuracy_page

# The serving set is predicted once per module (seconds): the full tier (CI) runs these.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SET = "configs/measurements/serving.yaml"
REFERENCE = next(
    (
        p / "shared" / "reference" / "serving-measurements.yaml"
        for p in ROOT.parents
        if (p / "shared" / "reference" / "serving-measurements.yaml").exists()
    ),
    ROOT / "absent",
)


@pytest.fixture(scope="module")
def data():
    return load_serving_measurements(str(ROOT / SET))


@pytest.fixture(scope="module")
def assessment(data):
    return fit_serving(data)


def test_calibrate_reproduces_the_shipped_engine_profiles(data, assessment):
    """The fit's lines give each profile as configs/engines/<name>.yaml ships it, and MTP's
    accepted length as serve's default; predicting with the shipped files gives the same figures."""
    for name in FITTED_ENGINES:
        shipped = load_engine(name).constants()
        line = next(x for x in assessment.fitted if x.startswith(f"engine profile {name}:"))
        assert ", ".join(f"{k}: {v:.4g}" for k, v in shipped.items()) in line
    assert f"MTP mean accepted length: {curve.MTP_ACCEPTED:.4g} tokens per step" in "\n".join(assessment.fitted)
    assert curve.MTP_DRAFT_TOKENS == MTP_DRAFT_TOKENS
    # MI300X borrows H100's constants but for what its own runs' TPOT identifies, as its file ships it
    mi300x = load_cluster("mi300x")
    line = next(x for x in assessment.fitted if x.startswith("chip constants of mi300x"))
    assert mi300x.calibration_refitted == ("hbm_efficiency", "kernel_overhead_s")
    for name in mi300x.calibration_refitted:
        assert f"{name}: {getattr(load_cluster('h100-sxm').calibration, name):.4g} -> " in line
        assert f"-> {getattr(mi300x.calibration, name):.4g}" in line
    spec = curve.Speculation(draft_tokens=MTP_DRAFT_TOKENS, accepted=curve.MTP_ACCEPTED)
    again = assess_serving(data, {name: load_engine(name) for name in FITTED_ENGINES}, spec)
    assert [r.predicted for r in again.steady] == [r.predicted for r in assessment.steady]


def test_vllm_carries_sglang_by_rule():
    vllm = load_engine("vllm")
    assert vllm.borrowed_from == "sglang" and vllm.constants() == load_engine("sglang").constants()


def test_throughput_median_within_15_and_tpot_within_20_percent(assessment):
    assert assessment.summary("output_tok_s_per_gpu")[0] <= 0.15
    assert assessment.summary("tpot_s")[0] <= 0.20


@pytest.mark.xfail(
    strict=True,
    reason="the engine-profile target is not met honestly: TTFT median 50.6% (worst -97.4%, TensorRT-LLM MTP "
    "at 1k/8k C256, 4.7 s measured: admission, not prefill), TPOT median 12.6% (worst +143%, TensorRT-LLM MTP "
    "at 8k/1k C256 with DP attention: one rank prefills each interleaved prompt), output tok/s per GPU median "
    "11.5% (worst +71.2%, SGLang on MI300X at 1k/8k C4). TTFT is not set by an engine's per-step constants "
    "(request handling, tokenisation, Dynamo's routing and KV transfer are not modelled), and fitting it "
    "would bend the TPOT constants; docs/accuracy-serving.md",
)
def test_every_metric_median_15_worst_40_percent(assessment):
    for metric in ("ttft_s", "tpot_s", "output_tok_s_per_gpu"):
        median, worst = assessment.summary(metric)
        assert median <= 0.15 and abs(worst.error(metric)) <= 0.40, metric


def test_accuracy_page_is_up_to_date(monkeypatch):
    page = ROOT / "docs" / "accuracy-serving.md"
    monkeypatch.chdir(ROOT)
    data = load_serving_measurements(SET)
    text = accuracy_page(data, fit_serving(data), f"planner calibrate {SET} --report docs/accuracy-serving.md")
    assert page.read_text(encoding="utf-8") == text, (
        f"regenerate: planner calibrate {SET} --report docs/accuracy-serving.md"
    )


def test_the_set_is_what_the_builder_writes():
    if not REFERENCE.exists():
        pytest.skip("the shared reference is not beside this checkout")
    spec = importlib.util.spec_from_file_location("build_serving", ROOT / "configs/measurements/build_serving.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    built = builder.build(yaml.safe_load(REFERENCE.read_text(encoding="utf-8")))
    assert yaml.safe_load((ROOT / SET).read_text(encoding="utf-8")) == built


def test_the_steady_rows_are_the_steady_state_runs(data, assessment):
    steady = [r for r in data.runs if r.kind == "steady"]
    assert {r.run.name for r in assessment.steady} == {r.name for r in steady if not r.admission_limited}
    apart = {run.name: why for run, why in assessment.apart}
    assert all(r.name in apart for r in steady if r.admission_limited)
    assert {r.run.spec_decode for r in assessment.steady} == {"none", "mtp"}
    assert any("tens of seconds" in why for why in apart.values())
    assert len(assessment.max_throughput) == len([r for r in data.runs if r.kind == "max_throughput"])


def test_dp_attention_runs_replicate_the_dense_ffn(assessment):
    # DP attention is attention `batch` beside the dense FFN replicated (`dp`), a layout since issue 27
    dp = [r for r in assessment.steady if r.run.decode.dp_attention]
    assert dp and all("dp+batch" in r.layout.split("decode")[-1] and not r.note for r in dp)
    pdp = [r for r in assessment.steady if r.run.prefill.dp_attention]
    assert pdp and all("dp+batch" in r.layout.split(";")[0] for r in pdp)


def test_max_throughput_within_15_percent_median(assessment):
    median, _ = assessment.summary("output_tok_s_per_gpu", assessment.max_throughput)
    assert median <= 0.15


@pytest.mark.xfail(
    strict=True,
    reason="TTFT median |error| is 51% with the engine profiles: the steady state "
    "closes the batch-prefill gap (1-17 s before, 70-400 ms now) but engines' request handling and "
    "Dynamo's machinery add 30 ms to 1.5 s the planner does not model, and MI300X's constants are "
    "borrowed (docs/accuracy-serving.md)",
)
def test_ttft_median_within_25_percent(assessment):
    assert assessment.summary("ttft_s")[0] <= 0.25


def test_ttft_is_no_longer_a_batch_prefill(assessment):
    """The mechanism: colocated TTFT at concurrency C is a prompt's own pass plus its wait, so
    it stays within a factor of three of the measured (a batch of C prompts was 10x at C=64)."""
    colocated = [r for r in assessment.steady if r.run.mode == "colocated" and r.run.spec_decode == "none"]
    assert all(abs(r.error("ttft_s")) < 0.7 for r in colocated if r.run.ttft_s < 1.0)


def test_calibrate_prints_a_residual_table_per_metric(planner):
    r = planner("calibrate", SET)
    assert r.code == 0, r.err
    for title in (
        "TTFT, steady runs",
        "TPOT, steady runs",
        "output tok/s per GPU, steady runs",
        "maximum output tok/s per GPU",
        "listed apart",
    ):
        assert title in r.out
    data = json.loads(planner("calibrate", SET, "--format", "json").out)
    assert set(data["summary"]) >= {"ttft_s", "tpot_s", "output_tok_s_per_gpu"}
    assert planner("calibrate", SET, "--cluster", "h200-sxm").code == 2


def test_a_bad_run_is_named_by_line(planner, tmp_path):
    text = (ROOT / SET).read_text(encoding="utf-8").replace("  policy: prefill-first\n", "  policy: fifo\n", 1)
    bad = tmp_path / "serving.yaml"
    bad.write_text(text, encoding="utf-8")
    r = planner("calibrate", bad)
    line = text.splitlines().index("  policy: fifo") + 1
    assert r.code == 2 and f"serving.yaml:{line}:" in r.err and "runs[0].policy" in r.err


def test_readme_serving_sentence_matches_the_assessment(assessment):
    import re

    readme = ROOT / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is not in this installation")
    text = " ".join(readme.read_text(encoding="utf-8").split())
    found = re.search(
        r"against (\d+) measured steady-state serving runs .*? median errors of TTFT (\d+\.\d)%, "
        r"TPOT (\d+\.\d)% and output tokens/s per GPU (\d+\.\d)% .*? maximum throughput on (\d+) "
        r"H100 and H200 runs has median error (\d+\.\d)%",
        text,
    )
    assert found, "README's serving accuracy sentence is missing"
    medians = [f"{100 * assessment.summary(m)[0]:.1f}" for m in ("ttft_s", "tpot_s", "output_tok_s_per_gpu")]
    best = f"{100 * assessment.summary('output_tok_s_per_gpu', assessment.max_throughput)[0]:.1f}"
    assert found.groups() == (str(len(assessment.steady)), *medians, str(len(assessment.max_throughput)), best)
