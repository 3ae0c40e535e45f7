"""Engine profiles (configs/engines/, planner.specs.engine) and speculative decoding on serve:
the flag on every planning command, the defaults per cluster, the record in saved runs, and the
speculative step's arithmetic."""

import json

import numpy as np
import pytest

from planner.commands.serve.curve import MTP_ACCEPTED, Speculation, speculative_steps
from planner.commands.serve.pools import pools
from planner.config import load_cluster, load_plan
from planner.config.engines import default_engine, load_engine, with_engine
from planner.specs.engine import ENGINE_FIELDS

DSV3 = ("--model", "deepseek-v3", "--cluster", "h200-sxm", "--chips", "8", "--weights", "fp8")


def test_a_profile_replaces_only_the_engine_constants():
    cluster = load_cluster("h200-sxm")
    applied = with_engine(cluster, "trtllm")
    profile = load_engine("trtllm")
    for name in ENGINE_FIELDS:
        assert getattr(applied.calibration, name) == getattr(profile, name)
    assert applied.calibration.kernel_overhead_s == cluster.calibration.kernel_overhead_s
    assert applied.calibration.levels == cluster.calibration.levels
    assert applied.engine == "trtllm"


def test_defaults_tpu_keeps_its_constants_gpu_takes_sglang():
    tpu = load_cluster("tpu-v4")
    assert default_engine(tpu) == "static-batch" and with_engine(tpu, None).calibration == tpu.calibration
    assert default_engine(load_cluster("h100-sxm")) == "sglang"
    assert default_engine(load_cluster("mi300x")) == "sglang"  # borrowed constants: the GPU rule
    static = with_engine(load_cluster("h100-sxm"), "static-batch")
    assert static.calibration == load_cluster("h100-sxm").calibration


@pytest.mark.parametrize("command", ["plan", "serve"])
def test_engine_flag_is_named_in_text_and_json(planner, command):
    args = (command, "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "1")
    text = " ".join(planner(*args, "--engine", "trtllm").out.split())
    assert "ngine profile trtllm" in text
    data = json.loads(planner(*args, "--engine", "trtllm", "--format", "json").out)
    assert (
        data["engine"] == "trtllm" and data["calibration"]["layer_overhead_s"] == load_engine("trtllm").layer_overhead_s
    )
    default = json.loads(planner(*args, "--format", "json").out)
    assert default["engine"] == "sglang"


def test_explain_and_compare_take_the_engine(planner):
    r = planner(
        "explain",
        *DSV3,
        "--batch",
        "4",
        "--phase",
        "decode",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--engine",
        "trtllm",
    )
    assert r.code == 0, r.err
    assert "engine profile trtllm" in " ".join(r.out.split())
    r = planner(
        "compare",
        "--model",
        "llama-3-8b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "2",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--engine",
        "static-batch",
    )
    assert r.code == 0 and "engine profile static-batch" in " ".join(r.out.split())


def test_unknown_engine_is_a_usage_error(planner):
    r = planner("plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--engine", "sglng")
    assert r.code == 2 and "unknown engine 'sglng'" in r.err and "sglang" in r.err


def test_tpu_plan_is_as_before(planner):
    """The paper's reproduction: the TPU preset's constants are its profile."""
    data = json.loads(planner("plan", "palm-540b-tpu-v4", "--format", "json").out)
    assert data["engine"] == "static-batch"
    assert data["calibration"]["layer_overhead_s"] == load_cluster("tpu-v4").calibration.layer_overhead_s


def test_serve_curve_with_an_engine_and_speculation(planner):
    base = (*DSV3, "--concurrency", "1,4,16,64,256", "--engine", "sglang", "--mode", "colocated")
    plain = json.loads(planner("serve", *base, "--format", "json").out)
    spec = json.loads(planner("serve", *base, "--speculative", "3", "--format", "json").out)
    assert plain["speculative"] is None
    assert spec["speculative"] == {"draft_tokens": 3, "accepted_length": MTP_ACCEPTED, "draft_model": None}
    tpot = [[p["tpot_s"] for p in d["curves"][0]["points"]] for d in (plain, spec)]
    assert len(tpot[0]) == 5 and all(s < p for p, s in zip(*tpot, strict=True))
    text = planner("serve", *base, "--speculative", "3")
    assert text.code == 0 and "3 draft tokens per step" in " ".join(text.out.split())


def test_speculative_step_by_hand():
    """step = (decode step at K + 1 tokens per sequence + K x step / layers) / A."""
    plan = load_plan(
        None,
        model="deepseek-v3",
        cluster="h200-sxm",
        chips=(8,),
        batches=(1, 4),
        weights=("fp8",),
        phases=("prefill", "decode"),
        ffn=("ws1d",),
        attention=("heads",),
        experts=("tp",),
    )
    _, _, running = pools(plan)
    from dataclasses import replace

    _, _, verify = pools(replace(plan, workload=replace(plan.workload, decode_tokens=3)))
    got = speculative_steps(plan, running, Speculation(draft_tokens=2, accepted=1.5)).seconds
    want = (verify.seconds + 2 * running.seconds / plan.model.n_layers) / 1.5
    assert np.allclose(got, want, rtol=0, atol=0)
    assert np.all(verify.seconds > running.seconds)  # K + 1 tokens cost more, not K + 1 times more
    assert np.all(verify.seconds < 3 * running.seconds)


def test_a_draft_model_drafts_with_its_own_decode_steps(planner):
    """step = (decode step at K + 1 tokens per sequence + K x the draft model's decode step on the
    same chips, tensor-parallel) / A; the draft model is searched in ws1d+heads only."""
    from dataclasses import replace

    common = dict(cluster="h100-sxm", chips=(8,), batches=(1, 16), weights=("fp8",), phases=("prefill", "decode"))
    plan = load_plan(None, model="llama-3-70b", ffn=("ws1d",), attention=("heads",), **common)
    draft_plan = load_plan(None, model="llama-3-8b", ffn=("ws1d",), attention=("heads",), **common)
    _, _, running = pools(plan)
    _, _, verify = pools(replace(plan, workload=replace(plan.workload, decode_tokens=3)))
    _, _, drafter = pools(draft_plan)
    spec = Speculation(draft_tokens=2, accepted=1.5, draft_model=draft_plan.model)
    got = speculative_steps(plan, running, spec).seconds
    assert np.allclose(got, (verify.seconds + 2 * drafter.seconds) / 1.5, rtol=1e-12, atol=0)
    # an 8B drafter costs more than one layer of the 70B model's shape
    assert np.all(got > speculative_steps(plan, running, replace(spec, draft_model=None)).seconds)
    flags = ("--model", "llama-3-70b", "--cluster", "h100-sxm", "--chips", "8", "--weights", "fp8")
    flags += ("--concurrency", "1,16", "--speculative", "2", "--accepted-length", "1.5", "--format", "json")
    doc = json.loads(planner("serve", *flags, "--draft-model", "llama-3-8b").out)
    assert doc["speculative"] == {"draft_tokens": 2, "accepted_length": 1.5, "draft_model": "llama-3-8b"}


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--speculative", "3"), "apply with --concurrency"),
        (("--concurrency", "4", "--accepted-length", "2"), "applies with --speculative"),
        (("--concurrency", "4", "--speculative", "2"), "give --accepted-length"),
        (("--concurrency", "4", "--speculative", "3", "--accepted-length", "5"), "1 to K + 1"),
        (("--concurrency", "4", "--speculative", "0"), "positive number of draft tokens"),
        (("--concurrency", "4", "--draft-model", "llama-3-8b"), "--draft-model applies with --speculative"),
        (("--concurrency", "4", "--speculative", "3", "--draft-model", "llama-3-8b"), "give --accepted-length"),
        (("--concurrency", "4", "--speculative", "3", "--accepted-length", "2", "--draft-model", "nope"), "nope"),
    ],
)
def test_speculative_flags_checked(planner, flags, message):
    r = planner("serve", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "1", *flags)
    assert r.code == 2 and message in r.err, r.err


def test_a_saved_serve_run_is_served_again_with_its_engine(planner, tmp_path):
    saved = tmp_path / "sglang.json"
    saved.write_text(planner("serve", "llama-3-70b-h100", "--engine", "sglang", "--format", "json").out)
    assert json.loads(saved.read_text())["engine"] == "sglang"
    assert planner("compare", saved, "llama-3-70b-h100").code == 0
    # served again on TensorRT-LLM's profile (larger fixed time per layer), TPOT rises: the gate fails
    other = planner("compare", saved, "llama-3-70b-h100", "--engine", "trtllm")
    assert other.code == 1 and "regressed" in other.out, other.out


def test_a_profile_file_by_path_and_a_bad_one(planner, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\nsource: my runs\nlayer_overhead_s: 20 us\n")
    data = json.loads(
        planner(
            "plan",
            "--model",
            "llama-3-8b",
            "--cluster",
            "h100-sxm",
            "--chips",
            "1",
            "--engine",
            mine,
            "--format",
            "json",
        ).out
    )
    assert data["engine"] == "mine" and abs(data["calibration"]["layer_overhead_s"] - 20e-6) < 1e-12
    mine.write_text("name: mine\nsource: my runs\noverlap: 2\n")
    r = planner("plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--engine", mine)
    assert r.code == 2 and "mine.yaml:3" in r.err and "overlap" in r.err


def test_calibrate_json_gives_the_profiles(planner):
    data = json.loads(planner("calibrate", "configs/measurements/serving.yaml", "--format", "json").out)
    assert data["engine_profiles"]["trtllm"] == load_engine("trtllm").constants()
    assert data["speculation"]["accepted_length"] == MTP_ACCEPTED


def test_compare_deployment_says_which_engine_profile(planner, tmp_path):
    plan = tmp_path / "pinned.yaml"
    plan.write_text(
        "model: llama-3-70b\ncluster: h100-sxm\nworkload: {input_tokens: 2048, output_tokens: 256, context: 2304}\n"
        "deployment:\n  decode: {chips: 8, batch: 64, ffn: ws1d, attention: heads, weights: fp8}\n",
        encoding="utf-8",
    )
    text = planner("compare", "--deployment", plan, "--engine", "trtllm")
    assert text.code == 0 and "(engine profile trtllm)" in " ".join(text.out.split())
    assert json.loads(planner("compare", "--deployment", plan, "--format", "json").out)["engine"] == "sglang"
    header = planner("compare", "--deployment", plan, "--format", "csv").out.splitlines()[0]
    assert header.endswith(",calibration,engine")
