"""compare's CSV names the engine profile (planner.specs.engine) in an `engine` column, as plan's
does: side by side, the saved-run gate and the serve gate; before runnable_on when it is there."""

from __future__ import annotations

import csv
import io

PLAN = "configs/plans/palm-540b-tpu-v4.yaml"
SERVE = ("--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "8", "--batch", "8,64", "--mode", "static")


def _csv(planner, *args) -> list[dict]:
    run = planner("compare", *args, "--format", "csv")
    assert run.code in (0, 1) and not run.err, run.err  # a gate that finds a regression exits 1
    return list(csv.DictReader(io.StringIO(run.out)))


def test_side_by_side(planner):
    rows = _csv(planner, PLAN, "--phase", "decode", "--chips", "64", "--layouts", "ws1d")
    assert rows and list(rows[0])[-2:] == ["calibration", "engine"]
    assert {r["engine"] for r in rows} == {"static-batch"}  # the TPU cluster's profile, as plan's CSV says
    plan = planner("plan", PLAN, "--phase", "decode", "--chips", "64", "--format", "csv")
    assert {r["engine"] for r in csv.DictReader(io.StringIO(plan.out))} == {"static-batch"}
    rows = _csv(
        planner, PLAN, "--phase", "decode", "--chips", "64", "--layouts", "ws1d+heads", "--runnable-on", "jetstream"
    )
    assert list(rows[0])[-2:] == ["engine", "runnable_on"]  # plan's order


def test_saved_run_gate(planner):
    rows = _csv(planner, "tests/golden/palm-540b-tpu-v4.json", PLAN, "--batch", "1,8")
    assert rows and list(rows[0])[-1] == "engine" and {r["engine"] for r in rows} == {"static-batch"}
    # every cell under its column (the KV cache once fell under latency_before_s)
    assert all(
        None not in r and r["kv_cache"] == "bf16" and float(r["latency_before_s"] or r["latency_after_s"]) > 0
        for r in rows
    )


def test_serve_gate_names_both_engines_when_they_differ(planner, tmp_path):
    before, after = tmp_path / "vllm.json", tmp_path / "sglang.json"
    for path, engine in ((before, "vllm"), (after, "sglang")):
        assert planner("serve", *SERVE, "--engine", engine, "--format", "json", "-o", str(path)).code == 0
    header = planner("compare", str(before), str(before), "--format", "csv").out.splitlines()[0]
    assert header.split(",")[-1] == "engine"
    shorter = planner(
        "serve", *SERVE[:-4], "--batch", "8", "--mode", "static", "--engine", "sglang", "--format", "json"
    )
    (tmp_path / "less.json").write_text(shorter.out)
    rows = _csv(planner, str(before), str(tmp_path / "less.json"))
    assert rows and {r["engine"] for r in rows} == {"baseline vllm; current sglang"}
    rows = _csv(planner, str(after), str(tmp_path / "less.json"))
    assert rows and {r["engine"] for r in rows} == {"sglang"}
