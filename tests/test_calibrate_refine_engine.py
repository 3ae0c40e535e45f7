"""Refine an engine profile, not replace it (issue 28, done-when 3): `planner calibrate RUNS
--engine vllm --fit layer_overhead_s` refits only that constant of the profile to a user's serving
runs, keeping every other constant of the profile and of the cluster preset byte for byte.

The runs are synthetic: vLLM runs on h100-sxm whose TTFT, TPOT and tokens/s are what the steady
state predicts with the vllm profile and a known layer_overhead_s, so the fit must recover it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from planner.commands.calibrate.refine_serving import Constants
from planner.commands.calibrate.serving import predict_steady
from planner.config import load_cluster
from planner.config.engines import load_engine
from planner.config.serving_runs import load_serving_measurements

ROOT = Path(__file__).resolve().parent.parent
TRUTH = 3.0e-05  # the per-layer time the runs were made with (vllm ships 0, sglang's by rule)
RUN = (
    "{kind: steady, name: %s, source: synthetic, engine: vLLM 0.11, policy: chunked, cluster: h100-sxm, "
    "model: llama-3-8b, weights: %s, kv_cache: %s, mode: colocated, chips: %d, tp: %d, input_tokens: %d, "
    "output_tokens: %d, concurrency: %d, spec_decode: none, ttft_s: %r, tpot_s: %r, output_tok_s_per_gpu: %r}"
)
# name, weights, KV cache, GPUs (= tp), input and output tokens, concurrency
SHAPES = (
    ("c8 tp2", "bf16", "bf16", 2, 1024, 256, 8),
    ("c32 tp2", "bf16", "bf16", 2, 1024, 256, 32),
    ("c16 tp1", "fp8", "fp8", 1, 2048, 512, 16),
)


def _write(path: Path, shapes, figures) -> Path:
    rows = "".join(
        f"  - {RUN % (n, w, kv, g, g, i, o, c, *fig)}\n" for (n, w, kv, g, i, o, c), fig in zip(shapes, figures)
    )
    path.write_text(f"format: planner-serving/1\nsource: synthetic (the steady state, known profile)\nruns:\n{rows}")
    return path


def _runs(tmp_path: Path, shapes=SHAPES, chip=None, **truth) -> Path:
    """Runs as the steady state predicts them with vllm's profile, `truth` in place of its constants
    (and `chip` in place of h100-sxm's)."""
    path = tmp_path / "runs.yaml"
    placeholder = load_serving_measurements(str(_write(path, shapes, [(1.0, 1.0, 1.0)] * len(shapes))))
    h100 = load_cluster("h100-sxm").calibration
    constants = Constants(
        profile=dataclasses.replace(load_engine("vllm"), **truth),
        calibration=dataclasses.replace(h100, **chip) if chip else None,
    )
    figures = []
    for run in placeholder.runs:
        p = predict_steady(run, constants).predicted
        figures.append((p["ttft_s"], p["tpot_s"], p["output_tok_s_per_gpu"]))
    return _write(path, shapes, figures)


def _lines(path: Path) -> dict[str, str]:
    return {line.split(":")[0]: line for line in path.read_text().splitlines() if not line.startswith("#")}


def test_refining_one_profile_constant_keeps_every_other_byte_for_byte(planner, tmp_path):
    runs = _runs(tmp_path, layer_overhead_s=TRUTH)
    preset_bytes = (ROOT / "configs" / "clusters" / "h100-sxm.yaml").read_bytes()
    out = tmp_path / "my-vllm.yaml"
    run = planner(
        "calibrate", runs, "--cluster", "h100-sxm", "--engine", "vllm", "--fit", "layer_overhead_s", "-o", out,
        "--format", "json",
    )  # fmt: skip
    assert run.code == 0, run.err
    report = json.loads(run.out)
    vllm = load_engine("vllm")
    assert report["refitted"] == ["layer_overhead_s"] and report["metrics"] == ["tpot_s"]
    assert report["kept"] == ["token_overhead_s", "overlap"] and report["unidentified"] == []
    assert "kept as vllm has them: token_overhead_s, overlap; every constant of h100-sxm" in run.err
    fitted = report["constants"]["layer_overhead_s"]["after"]
    assert report["constants"]["layer_overhead_s"]["before"] == vllm.layer_overhead_s
    assert fitted == pytest.approx(TRUTH, rel=1e-3)  # it moved, to the truth
    assert all(abs(r["error"]["tpot_s"]) < 1e-3 < abs(r["error_before"]["tpot_s"]) for r in report["runs"])
    # the profile: the fitted line changed; the others as the file that sets them (sglang.yaml) has them
    refined, donor = load_engine(str(out)), _lines(ROOT / "configs" / "engines" / "sglang.yaml")
    assert refined.layer_overhead_s == fitted and refined.borrowed_from is None
    assert (refined.token_overhead_s, refined.overlap) == (vllm.token_overhead_s, vllm.overlap)
    written = _lines(out)
    assert written["token_overhead_s"] == donor["token_overhead_s"] and written["overlap"] == donor["overlap"]
    assert written["layer_overhead_s"] == f"layer_overhead_s: {fitted:g}"
    # the cluster: every constant as the preset's (only the profile's fitted constant differs in effect)
    h100 = load_cluster("h100-sxm")
    assert refined.apply(h100).calibration == dataclasses.replace(vllm.apply(h100).calibration, layer_overhead_s=fitted)
    assert (ROOT / "configs" / "clusters" / "h100-sxm.yaml").read_bytes() == preset_bytes


def test_the_written_profile_reproduces_the_fitted_tpot_with_engine_path(planner, tmp_path):
    runs = _runs(tmp_path, layer_overhead_s=TRUTH)
    out = tmp_path / "my-vllm.yaml"
    fit = planner("calibrate", runs, "--engine", "vllm", "--fit", "layer_overhead_s", "-o", out, "--format", "json")
    assert fit.code == 0, fit.err
    after = json.loads(fit.out)["runs"][0]["after"]["tpot_s"]  # c8 tp2, bf16
    serve = planner(
        "serve", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "2", "--weights", "bf16",
        "--kv-cache", "bf16", "--engine", out, "--concurrency", "8", "--input-tokens", "1024",
        "--output-tokens", "256", "--policy", "chunked", "--format", "json",
    )  # fmt: skip
    assert serve.code == 0, serve.err
    doc = json.loads(serve.out)
    curve = next(c for c in doc["curves"] if c["deployment"] == "colocated 2 chips bf16 (KV bf16)")
    assert curve["points"][0]["tpot_s"] == pytest.approx(after, rel=1e-5)
    assert doc["calibration"]["layer_overhead_s"] == json.loads(fit.out)["constants"]["layer_overhead_s"]["after"]
    assert "vllm-refined" in json.dumps(doc)


def test_one_run_is_enough_for_one_constant(planner, tmp_path):
    runs = _runs(tmp_path, SHAPES[:1], layer_overhead_s=TRUTH)
    run = planner("calibrate", runs, "--engine", "vllm", "--fit", "layer_overhead_s")
    assert run.code == 0, run.err
    assert "1 serving run fitted" in run.out and "-> 3e-05 (refitted)" in run.out
    assert "median |error| before -> after: TTFT" in run.out


def test_fewer_runs_than_constants_warns(planner, tmp_path):
    runs = _runs(tmp_path, SHAPES[:1], layer_overhead_s=TRUTH)
    run = planner("calibrate", runs, "--engine", "vllm", "--fit", "layer_overhead_s,overlap")
    assert run.code == 0, run.err
    assert "1 run(s) for 2 constants: the fit is underdetermined" in run.err


def test_a_constant_no_run_depends_on_warns_and_keeps_its_value(planner, tmp_path):
    """One-GPU runs have no activation collective: the overlap cannot move a prediction."""
    runs = _runs(tmp_path, SHAPES[2:], layer_overhead_s=TRUTH)
    out = tmp_path / "p.yaml"
    run = planner("calibrate", runs, "--engine", "vllm", "--fit", "overlap", "-o", out, "--format", "json")
    assert run.code == 0, run.err
    assert "warning: the runs cannot identify overlap" in run.err
    report = json.loads(run.out)
    assert report["unidentified"] == ["overlap"] and report["refitted"] == []
    assert load_engine(str(out)).constants() == load_engine("vllm").constants()
    assert "# warning: overlap is not identified" in out.read_text()


def test_token_overhead_is_fitted_on_tpot_and_ttft(planner, tmp_path):
    runs = _runs(tmp_path, token_overhead_s=2.0e-07)
    run = planner("calibrate", runs, "--engine", "vllm", "--fit", "token_overhead_s", "--format", "json")
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert report["metrics"] == ["tpot_s", "ttft_s"]
    assert report["constants"]["token_overhead_s"]["after"] == pytest.approx(2.0e-07, rel=1e-3)


def test_benchmark_results_refine_a_profile(planner):
    run = planner(
        "calibrate", ROOT / "tests" / "bench_results" / "vllm-c16.json", "--engine", "vllm", "--fit",
        "layer_overhead_s", "--format", "json",
    )  # fmt: skip
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert report["refitted"] == ["layer_overhead_s"] and len(report["runs"]) == 1
    # the hand-written vLLM result (9.2 ms) is faster than vllm's profile predicts with no fixed
    # time per layer (9.66 ms): the fit takes the floor, says so, and keeps the best it can
    assert report["constants"]["layer_overhead_s"]["after"] == 0.0
    assert "warning: layer_overhead_s is at the floor of its range, 0" in run.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--fit", "layer_overhead"), "did you mean 'layer_overhead_s'?"),
        (("--fit", "layer_overhead_s,hbm_efficiency", "-o", "x.yaml"), "hbm_efficiency is a chip constant"),
        (("--fit", "layer_overhead_s", "--engine", "vllm", "--cluster", "h200-sxm"), "other hardware than h200-sxm"),
        (("--fit", "layer_overhead_s,layer_overhead_s"), "named twice"),
        (("--fit", "layer_overhead_s", "--engine", "nope"), "unknown engine 'nope'"),
        (("--engine", "vllm"), "--engine: calibrate takes a profile only to refine it"),
    ],
)
def test_bad_names_exit_2(planner, tmp_path, args, expected):
    runs = _runs(tmp_path, SHAPES[:1], layer_overhead_s=TRUTH)
    run = planner("calibrate", runs, *(args if "--engine" in args else (*args, "--engine", "vllm")))
    assert run.code == 2 and expected in run.err, run.err


def test_no_engine_and_a_points_file_exit_2(planner, tmp_path):
    runs = _runs(tmp_path, SHAPES[:1], layer_overhead_s=TRUTH)
    run = planner("calibrate", runs, "--fit", "layer_overhead_s")
    assert run.code == 2 and "--engine is required with --fit on a serving-runs file" in run.err
    points = ROOT / "configs" / "measurements" / "pope2022-tpu-v4.yaml"
    run = planner("calibrate", points, "--cluster", "tpu-v4", "--engine", "vllm", "--fit", "layer_overhead_s")
    assert run.code == 2 and "is a points file" in run.err


def test_no_steady_run_exits_2_naming_the_file(planner, tmp_path):
    path = tmp_path / "mtp.yaml"
    path.write_text(
        "format: planner-serving/1\nruns:\n"
        f"  - {RUN.replace('spec_decode: none', 'spec_decode: mtp') % ('mtp', 'bf16', 'bf16', 1, 1, 1024, 256, 8, 0.05, 0.01, 100.0)}\n"
    )
    run = planner("calibrate", path, "--engine", "vllm", "--fit", "layer_overhead_s")
    assert run.code == 2
    assert f"{path}: runs: no serving run to refit a profile to" in run.err and "speculative decoding (mtp)" in run.err
    assert "hint:" in run.err


PRESET = ROOT / "configs" / "clusters" / "h100-sxm.yaml"


def test_a_chip_constant_refits_the_cluster_keeping_every_other_line(planner, tmp_path):
    """hbm_efficiency from TPOT: -o writes h100-sxm's file with only that line (and a comment)
    changed; the profile is the shipped one, untouched."""
    runs = _runs(tmp_path, chip={"hbm_efficiency": 0.75})
    out = tmp_path / "my-h100.yaml"
    run = planner("calibrate", runs, "--engine", "vllm", "--fit", "hbm_efficiency", "-o", out, "--format", "json")
    assert run.code == 0, run.err
    report = json.loads(run.out)
    fitted = report["constants"]["hbm_efficiency"]["after"]
    assert fitted == pytest.approx(0.75, rel=1e-3) and report["constants"]["hbm_efficiency"]["before"] == 0.8528
    assert "levels.nvlink" in report["kept_cluster"] and "matmul_efficiency" in report["kept_cluster"]
    old, new = PRESET.read_text().splitlines(), out.read_text().splitlines()
    assert [line for line in old if line not in new] == ["name: h100-sxm", "  hbm_efficiency: 0.8528"]
    added = [line for line in new if line not in old]
    assert added[0] == "name: h100-sxm-refined"  # no longer the preset
    assert added[1].lstrip().startswith("# Refined by `planner calibrate")
    # the comment above the refitted line says what refitted it, to what, and the preset's value
    assert (
        added[2].startswith("  # hbm_efficiency refitted by `planner calibrate")
        and "TPOT of 3 serving runs" in added[2]
    )
    assert added[2].endswith("(h100-sxm has 0.8528)") and added[3] == f"  hbm_efficiency: {fitted:g}"
    preset = load_cluster("h100-sxm")
    assert load_cluster(str(out)).calibration == dataclasses.replace(preset.calibration, hbm_efficiency=fitted)
    assert load_cluster(str(out)).moe_kernels == preset.moe_kernels


def test_the_refined_cluster_then_carries_a_profile_refit(planner, tmp_path):
    """Two steps: the chip constant into a cluster file, then the profile's on top of that file."""
    runs = _runs(tmp_path, chip={"hbm_efficiency": 0.75}, layer_overhead_s=TRUTH)
    mine = tmp_path / "my-h100.yaml"
    both = planner(
        "calibrate", runs, "--engine", "vllm", "--fit", "hbm_efficiency,layer_overhead_s", "--format", "json"
    )
    assert both.code == 0, both.err  # both at once, without -o: one joint fit
    constants = json.loads(both.out)["constants"]
    assert constants["hbm_efficiency"]["after"] == pytest.approx(0.75, rel=2e-3)
    assert constants["layer_overhead_s"]["after"] == pytest.approx(TRUTH, rel=2e-2)
    mine.write_text(PRESET.read_text().replace("hbm_efficiency: 0.8528", "hbm_efficiency: 0.75"))
    run = planner(
        "calibrate", runs, "--cluster", mine, "--engine", "vllm", "--fit", "layer_overhead_s", "--format", "json"
    )
    assert run.code == 0, run.err
    assert json.loads(run.out)["constants"]["layer_overhead_s"]["after"] == pytest.approx(TRUTH, rel=1e-3)


@pytest.mark.parametrize(
    "edit, key, words",
    [
        (lambda t: t.replace("tp: 2,", "tp: 4,", 1), "tp", "tp: 4 on a worker of chips: 2: expected 2"),
        (lambda t: t.replace("tp: 2,", "tp: 2, ep: 2,", 1), "ep", "ep: 2 on llama-3-8b, a dense model"),
    ],
)
def test_a_serving_file_with_an_inconsistent_layout_exits_2(planner, tmp_path, edit, key, words):
    """A planner-serving/1 run is checked as a benchmark sidecar is (planner.config.serving_runs.check_layout)."""
    path = _write(tmp_path / "runs.yaml", SHAPES, [(0.1, 0.01, 100.0)] * len(SHAPES))
    path.write_text(edit(path.read_text()))
    for args in ((), ("--engine", "vllm", "--fit", "layer_overhead_s")):
        run = planner("calibrate", path, *args)
        assert run.code == 2 and "runs.yaml:4:" in run.err and words in run.err and "hint:" in run.err, run.err
