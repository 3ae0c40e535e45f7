"""The option registry as a user meets it: every planning command takes the planning flags,
compare plans from --model/--cluster alone, and a flag serve cannot use is an error (exit 2)."""

import pytest

SMALL = ("--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "8", "--batch", "8")


def test_compare_side_by_side_without_a_plan_file(planner):
    r = planner("compare", *SMALL, "--phase", "decode", "--kv-cache", "fp8")
    assert r.code == 0, r.err
    assert r.out.startswith("llama-3-8b on h100-sxm")


def test_compare_needs_both_model_and_cluster_without_a_plan(planner):
    r = planner("compare", "--model", "llama-3-8b")
    assert r.code == 2 and "give a plan" in r.err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--context", "4k", "--context does not apply to serve"),
        ("--allow-short-context", None, "--allow-short-context does not apply to serve"),
        ("--max-latency", "1", "--max-latency does not apply to serve: serve's targets are --ttft"),
        ("--max-step-latency", "0.05", "--max-step-latency does not apply to serve"),
        ("--min-mfu", "10%", "--min-mfu does not apply to serve"),
        ("--stages", "2", "--stages: serve plans one pipeline stage per pool"),
        ("--phase", "decode", "--phase: serve plans whole requests, so both phases"),
    ],
)
def test_serve_refuses_planning_flags_it_cannot_use(planner, flag, value, message):
    r = planner("serve", *SMALL, flag, *([value] if value else []))
    assert r.code == 2
    assert message in r.err and "hint:" in r.err


def test_serve_takes_the_planning_flags_that_apply(planner):
    r = planner(
        "serve", *SMALL, "--phase", "both", "--stages", "1", "--sparsity", "2:4", "--weights", "fp8", "--format", "json"
    )
    assert r.code == 0, r.err


def test_compare_gate_of_a_serve_run_refuses_flags_it_cannot_replay(planner, tmp_path):
    saved = tmp_path / "base.json"
    assert planner("serve", *SMALL, "--format", "json", "-o", saved).code == 0
    r = planner("compare", saved, "llama-3-70b-h100", "--model", "llama-3-8b", "--kv-cache", "fp8")
    assert r.code == 2 and "--kv-cache" in r.err and "served again" in r.err
