"""`planner serve --concurrency` and the steady state under it (planner.commands.serve.steady_state):
hand arithmetic on small step-time tables, the CLI in every format, and the queue past the
running batch that fits."""

import csv
import io
import json

import numpy as np
import pytest

from planner.commands.serve.steady_state import Policy, colocated, disaggregated, max_running

BATCHES = np.array([1.0, 2.0, 4.0])
DECODE = 0.010 + 0.001 * BATCHES  # d(b): 11, 12, 14 ms
PREFILL = 0.100 * BATCHES  # P(k): 100 ms a prompt


def test_prefill_first_by_hand():
    s = colocated(
        concurrency=np.array([1, 2]),
        input_tokens=1000,
        output_tokens=10,
        batches=BATCHES,
        prefill_pass_s=PREFILL,
        decode_step_s=DECODE,
        max_running_batch=4,
        chips=2,
    )
    # C = 1: one client alone, nothing else runs: TTFT = P(1), TPOT = d(1) (its own prompt is in
    # its TTFT, and no other request's prompt interleaves)
    assert (s.ttft_s[0], s.tpot_s[0]) == pytest.approx((0.100, 0.011))
    assert s.output_tokens_per_s_per_chip[0] == pytest.approx(10 / (0.100 + 10 * 0.011) / 2)
    # C = 2: B = 2, k = max(1, 2/10) = 1; the other request's prompt interleaves once in O steps:
    # TPOT = d(2) + (1/10) P(1) = 12 + 10 ms
    assert s.tpot_s[1] == pytest.approx(0.022)
    # TTFT = half the running step + the prompt's own pass: 6 + 100 ms
    assert s.ttft_s[1] == pytest.approx(0.106)
    assert s.queue_s[1] == pytest.approx(0.0)
    # Little's law: C O / (TTFT + O TPOT) / chips
    assert s.output_tokens_per_s_per_chip[1] == pytest.approx(2 * 10 / (0.106 + 10 * 0.022) / 2)
    assert s.tokens_per_s_per_user[1] == pytest.approx(1 / 0.022)


def test_past_the_batch_that_fits_ttft_grows_with_the_queue():
    s = colocated(
        concurrency=np.array([2, 4, 8]),
        input_tokens=1000,
        output_tokens=10,
        batches=BATCHES,
        prefill_pass_s=PREFILL,
        decode_step_s=DECODE,
        max_running_batch=2,
        chips=2,
    )
    e2e_2 = 0.106 + 10 * 0.022  # the batch that runs: 2 requests, 0.326 s each
    # C = 4: two requests run, two wait one whole request's time: TTFT = 0.106 + (4/2 - 1) 0.326
    assert s.running.tolist() == pytest.approx([2, 2, 2])
    assert s.queue_s[1] == pytest.approx(e2e_2)
    assert s.ttft_s[1] == pytest.approx(0.106 + e2e_2)
    assert s.ttft_s[2] == pytest.approx(0.106 + 3 * e2e_2)
    # throughput stays that of the largest batch that runs
    assert s.output_tokens_per_s_per_chip == pytest.approx(np.full(3, 2 * 10 / e2e_2 / 2))
    assert s.tpot_s == pytest.approx(np.full(3, 0.022))


def test_chunked_prefill_by_hand():
    s = colocated(
        concurrency=np.array([4]),
        input_tokens=1000,
        output_tokens=10,
        batches=BATCHES,
        prefill_pass_s=PREFILL,
        decode_step_s=DECODE,
        max_running_batch=4,
        chips=1,
        policy=Policy.CHUNKED,
        token_budget=504,
    )
    # budget 504 - 4 decode tokens = 500 prompt tokens a step: 2 steps; k = 1, p = 100 ms; the
    # three other requests' prompts interleave in O = 10 steps
    tpot = 0.014 + 0.3 * 0.100
    assert s.tpot_s[0] == pytest.approx(tpot)
    assert s.ttft_s[0] == pytest.approx(0.014 / 2 + 2 * 0.014 + 0.100)


def test_chunked_prefill_runs_no_more_than_its_budget_keeps_up_with():
    """A step holds the B decode tokens and the prompt tokens of the B / O requests that arrive
    per step: B (1 + I / O) <= T. With I = 1000 and O = 10, a budget of 303 tokens keeps up with
    3 running requests though 4 fit in HBM (the rest queue); a budget of 8192 runs the 4."""
    kw = dict(
        input_tokens=1000,
        output_tokens=10,
        batches=BATCHES,
        prefill_pass_s=PREFILL,
        decode_step_s=DECODE,
        chips=1,
        policy=Policy.CHUNKED,
    )
    s = colocated(concurrency=np.array([8]), max_running_batch=4, token_budget=303, **kw)
    assert s.running[0] == pytest.approx(3)  # floor(303 / 101) = 3 < 4
    assert s.queue_s[0] > 0
    assert colocated(concurrency=np.array([8]), max_running_batch=4, token_budget=8192, **kw).running[0] == 4


def test_disaggregated_by_hand_and_prefill_limited():
    kw = dict(
        input_tokens=1000,
        output_tokens=10,
        batches=BATCHES,
        prefill_pass_s=PREFILL,
        decode_step_s=DECODE,
        max_running_batch=4,
        prefill_chips=1,
        decode_chips=1,
        kv_transfer_s=0.002,
        token_budget=1000,
    )
    s = disaggregated(concurrency=np.array([1.0]), prefill_pools=1.0, **kw)
    # one request: TTFT = wait + P(1) + transfer + d(1)/2; X = 1 / (TTFT + O d(1)); wait = u P / 2, u = X P
    ttft = float(s.ttft_s[0])
    x = 1 / (ttft + 10 * 0.011)
    assert ttft == pytest.approx(x * 0.1 * 0.1 / 2 + 0.1 + 0.002 + 0.0055, rel=1e-9)
    assert s.tpot_s[0] == pytest.approx(0.011)
    # a tenth of a prefill pool completes 1 prompt per second: prefill-limited, the rest queue
    s = disaggregated(concurrency=np.array([4.0]), prefill_pools=0.1, **kw)
    assert s.requests_per_s[0] == pytest.approx(1.0)
    assert s.ttft_s[0] == pytest.approx(4 / 1.0 - 10 * 0.014)
    assert s.queue_s[0] > 1.0


def test_max_running_is_the_largest_fitting_batch():
    assert max_running(BATCHES, np.array([1.0, 1.0, np.inf])) == 2
    assert max_running(BATCHES, np.array([1.0, 1.0, 1.0]), limit=3) == 3
    assert max_running(BATCHES, np.full(3, np.inf)) == 0


DONE_WHEN = (
    "serve",
    "--model",
    "deepseek-v3",
    "--cluster",
    "h200-sxm",
    "--chips",
    "8",
    "--weights",
    "fp8",
    "--concurrency",
    "1,4,16,64,256",
)


def test_the_curve_in_every_format(planner, tmp_path):
    table = planner(*DONE_WHEN)
    assert table.code == 0, table.err
    assert "colocated 8 chips fp8" in table.out and "disaggregated" in table.out
    data = json.loads(planner(*DONE_WHEN, "--format", "json").out)
    assert data["kind"] == "serve-curve" and data["concurrency"] == [1, 4, 16, 64, 256]
    for curve in data["curves"]:
        assert [p["concurrency"] for p in curve["points"]] == [1, 4, 16, 64, 256]
        for p in curve["points"]:
            o = data["workload"]["output_tokens"]
            assert p["output_tokens_per_s_per_chip"] == pytest.approx(
                p["concurrency"] * o / (p["ttft_s"] + o * p["tpot_s"]) / p["chips"], rel=1e-5
            )
            assert p["tokens_per_s_per_user"] == pytest.approx(1 / p["tpot_s"], rel=1e-5)
    rows = list(csv.DictReader(io.StringIO(planner(*DONE_WHEN, "--format", "csv").out)))
    assert len(rows) == 5 * len(data["curves"])
    first = data["curves"][0]["points"]
    assert [float(r["ttft_s"]) for r in rows[:5]] == [p["ttft_s"] for p in first]
    markdown = planner(*DONE_WHEN, "--format", "markdown").out
    assert markdown.count("| 256 |") == len(data["curves"])
    assert planner(*DONE_WHEN, "--format", "json").out == planner(*DONE_WHEN, "--format", "json").out
    pytest.importorskip("matplotlib")
    picture = tmp_path / "curve.svg"
    assert planner(*DONE_WHEN, "--plot", picture).code == 0
    assert picture.read_text().count("<svg") == 1


def test_the_cli_queue_past_max_running_by_hand(planner):
    out = planner(
        "serve",
        "--model",
        "llama-3-8b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "1",
        "--mode",
        "colocated",
        "--input-tokens",
        "512",
        "--output-tokens",
        "128",
        "--concurrency",
        "16,32,64",
        "--max-running",
        "16",
        "--format",
        "json",
    ).out
    p16, p32, p64 = json.loads(out)["curves"][0]["points"]
    assert (p16["running"], p32["running"], p64["running"]) == (16, 16, 16)
    assert (p32["queued"], p64["queued"]) == (16, 48)
    e2e = p16["ttft_s"] + 128 * p16["tpot_s"]
    assert p32["ttft_s"] == pytest.approx(p16["ttft_s"] + 1 * e2e, rel=1e-5)
    assert p64["ttft_s"] == pytest.approx(p16["ttft_s"] + 3 * e2e, rel=1e-5)
    assert p64["output_tokens_per_s_per_chip"] == pytest.approx(p16["output_tokens_per_s_per_chip"], rel=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--concurrency", "0,4"), "--concurrency"),
        (("--concurrency", "4,4"), "twice"),
        (("--concurrency", "4", "--policy", "fifo"), "--policy"),
        (("--concurrency", "4", "--policy", "chunked:zero"), "token budget"),
        (("--policy", "chunked"), "apply with --concurrency"),
        (("--concurrency", "4", "--mode", "static"), "static"),
        (("--concurrency", "4", "--ttft", "1s"), "--concurrency"),
        (("--concurrency", "4", "--max-running", "0"), "--max-running"),
    ],
)
def test_bad_concurrency_flags(planner, args, message):
    r = planner("serve", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "1", *args)
    assert r.code == 2 and message in r.err


def test_compare_says_a_curve_is_not_a_frontier(planner, tmp_path):
    saved = tmp_path / "curve.json"
    assert (
        planner(
            "serve",
            "--model",
            "llama-3-8b",
            "--cluster",
            "h100-sxm",
            "--chips",
            "1",
            "--concurrency",
            "1,8",
            "--format",
            "json",
            "-o",
            saved,
        ).code
        == 0
    )
    r = planner("compare", saved, saved)
    assert r.code == 2 and "--concurrency" in r.err
