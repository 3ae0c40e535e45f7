"""`planner serve`: whole requests. Hand arithmetic on a tiny model and cluster written here (two
decode steps, two pools), the growing context against `evaluate` at every step, the paper's
request setting against `plan`, the CLI (exit codes, bad inputs, deterministic JSON, --row) and
the picture file."""

import json
from dataclasses import replace

import numpy as np
import pytest

from planner.cli.main import run
from planner.commands.serve.modes import Mode, Targets
from planner.commands.serve.serve import ServeRequest, serve, serve_dict
from planner.config import load_plan
from planner.cost.costmodel import evaluate
from planner.cost.request import contexts, decode_request
from planner.search.search import candidates, search
from planner.specs.plan import Phase

TINY = """name: tiny
layers: 2
d_model: 64
d_ff: 256
heads: 4
kv_heads: 1
d_head: 16
vocab: 128
ffn: gelu
block: parallel
"""
# Slow HBM (1 GB/s), so that every kernel of the tiny model but prefill's attention core is bound
# by reading its weights and KV cache: a decode step = bytes / 1e9, which is easy to do by hand.
BOX = """name: box
chip: {name: toy, peak_flop_per_s: {bf16: 1e+11}, hbm: 1e+9 B, hbm_bandwidth: 1e+9}
topology:
  switched:
    levels:
      - {name: link, size: 2, bandwidth: 1e+10}
      - {name: net, bandwidth: 1e+8}
    chips: [1, 2]
"""
PRICE_PER_HOUR = 3.6  # USD per chip-hour: 0.001 USD per chip-second


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.yaml").write_text(TINY)
    (folder / "box.yaml").write_text(BOX)
    return folder


def tiny_result(tiny, **targets):
    plan = load_plan(
        None,
        model=str(tiny / "tiny.yaml"),
        cluster=str(tiny / "box.yaml"),
        chips=(1,),
        batches=(1, 2),
        weights=("bf16",),
        input_tokens=8,
        output_tokens=2,
    )
    return serve(
        ServeRequest(
            plan=plan, targets=Targets(**targets), everything=True, price_usd_per_chip_s=PRICE_PER_HOUR / 3600
        ),
        partial=True,
    )


def by_batches(result, mode):
    [m] = [m for m in result.modes if m.mode is mode]
    return {(d.prefill.batch, d.decode.batch): d for d in m.frontier}


# Hand arithmetic. Parameters: per layer FFN 2 * 64 * 256 = 32768, attention 2 * 64 * 4 * 16 +
# 2 * 64 * 1 * 16 = 10240; 2 layers + embedding 64 * 128 = 94208, i.e. 188416 bytes in bf16.
# KV cache: 2 layers * 2 (K, V) * 1 kv head * 16 * 2 bytes = 128 bytes per token per sequence.
WEIGHT_BYTES, KV_PER_TOKEN, HBM = 188416.0, 128.0, 1e9
I, O = 8, 2
# Prefill's attention core (QK, AV) reads no HBM, so its compute time adds to the weight reads
# (kernels run one after another): 2 layers x 2 einsums x 2 FLOPs x 8 queries x 4.5 keys on
# average (causal) x 4 heads x 16 = 36864 FLOPs per sequence, at 1e11 FLOP/s. In decode it
# streams the KV cache, and its FLOPs hide under that read (memory-bound).
ATTENTION_FLOPS, PEAK = 2 * 2 * 2 * I * (I + 1) / 2 * 4 * 16, 1e11


def prefill_s(batch):
    return WEIGHT_BYTES / HBM + batch * ATTENTION_FLOPS / PEAK


def step(batch, context):
    return (WEIGHT_BYTES + KV_PER_TOKEN * batch * context) / HBM


def test_static_batch_by_hand(tiny):
    d = by_batches(tiny_result(tiny), Mode.STATIC)[(2, 2)]
    prefill = prefill_s(2)  # one pass: the weights (the KV cache is written, not read) and attention
    decode = step(2, I + 1) + step(2, I + 2)  # two steps, context 9 then 10
    assert d.ttft_s == pytest.approx(prefill, rel=1e-12)
    assert d.decode.latency_s == pytest.approx(decode, rel=1e-12)
    assert d.tpot_s == pytest.approx(decode / 2, rel=1e-12)
    assert d.e2e_s == pytest.approx(prefill + decode, rel=1e-12)
    assert d.tokens_per_s_per_user == pytest.approx(2 / decode, rel=1e-12)
    assert d.output_tokens_per_s_per_chip == pytest.approx(2 * O / (prefill + decode), rel=1e-12)
    assert d.usd_per_input_token == pytest.approx(0.001 * prefill / (2 * I), rel=1e-12)
    assert d.usd_per_output_token == pytest.approx(0.001 * decode / (2 * O), rel=1e-12)
    assert d.decode.context == I + O  # capacity held at the largest context


def test_colocated_by_hand(tiny):
    d = by_batches(tiny_result(tiny), Mode.COLOCATED)[(1, 2)]
    running = step(2, I + 1.5)  # a running batch's step: the mean context (9 + 10) / 2
    prefill = prefill_s(1)
    tpot = running + (2 / O) * prefill / 1  # B / O prompts per step, in passes of 1
    assert d.ttft_s == pytest.approx(prefill, rel=1e-12)
    assert d.tpot_s == pytest.approx(tpot, rel=1e-12)
    assert d.e2e_s == pytest.approx(prefill + O * tpot, rel=1e-12)
    assert d.output_tokens_per_s_per_chip == pytest.approx(2 / tpot, rel=1e-12)
    assert d.usd_per_input_token == pytest.approx(0.001 * prefill / I, rel=1e-12)
    assert d.usd_per_output_token == pytest.approx(0.001 * running / 2, rel=1e-12)
    assert (1, 2) in by_batches(tiny_result(tiny), Mode.COLOCATED)
    assert (2, 1) not in by_batches(tiny_result(tiny), Mode.COLOCATED)  # prefill batch <= decode batch


def test_two_pools_by_hand(tiny):
    d = by_batches(tiny_result(tiny), Mode.DISAGGREGATED)[(2, 1)]
    prefill, running = prefill_s(2), step(1, I + 1.5)
    kv_bytes = KV_PER_TOKEN * I  # the prompt's KV cache, per request
    kv_s = kv_bytes / 1e8  # over the outermost level ('net'), one chip to one chip
    pools = (1 / (O * running)) / (2 / prefill)  # prefill pools per decode pool: request rates
    assert d.kv_transfer_bytes == kv_bytes
    assert d.kv_transfer_s == pytest.approx(kv_s, rel=1e-12)
    assert d.ttft_s == pytest.approx(prefill + kv_s, rel=1e-12)
    assert d.tpot_s == pytest.approx(running, rel=1e-12)
    assert d.prefill_pools_per_decode_pool == pytest.approx(pools, rel=1e-12)
    assert d.chips == pytest.approx(1 + pools, rel=1e-12)
    assert d.output_tokens_per_s_per_chip == pytest.approx((1 / running) / (1 + pools), rel=1e-12)
    assert d.e2e_s == pytest.approx(prefill + kv_s + O * running, rel=1e-12)
    assert d.usd_per_input_token == pytest.approx(0.001 * prefill / (2 * I), rel=1e-12)
    assert d.usd_per_output_token == pytest.approx(0.001 * running / 1, rel=1e-12)


def test_targets_drop_and_name_the_binding_one(tiny):
    result = tiny_result(tiny, tpot_s=step(2, I + 1.5) * 1.0001)
    for m in result.modes:
        assert all(d.tpot_s <= step(2, I + 1.5) * 1.0001 for d in m.frontier)
    with pytest.raises(Exception) as err:
        tiny_result(tiny, tpot_s=1e-6, ttft_s=1.0)
    assert "TPOT binds: the best reachable is" in str(err.value)
    assert "TTFT binds" not in str(err.value)


def test_no_price_no_cost(tiny):
    plan = load_plan(
        None,
        model=str(tiny / "tiny.yaml"),
        cluster=str(tiny / "box.yaml"),
        chips=(1,),
        batches=(1,),
        weights=("bf16",),
        input_tokens=8,
        output_tokens=2,
    )
    result = serve(ServeRequest(plan=plan), partial=True)
    data = serve_dict(result)
    assert data["price_usd_per_chip_hour"] is None
    for mode in data["modes"].values():
        for row in mode["frontier"]:
            assert row["usd_per_million_input_tokens"] is None
            assert row["usd_per_million_output_tokens"] is None


# --- the growing context: exact per step, affine terms ----------------------------------------


@pytest.mark.parametrize("plan_name", ["palm-540b-tpu-v4", "llama-3-70b-h100"])
def test_interpolated_steps_equal_evaluate_at_every_context(plan_name):
    plan = load_plan(plan_name, chips=(8, 16), batches=(1, 8, 64), input_tokens=100, output_tokens=5)
    formats = plan.space.weights
    for c in candidates(plan, Phase.DECODE)[:: len(formats)][:40]:
        req = decode_request(plan.model, plan.cluster, 100, 5, c, np.array(plan.space.batches), formats)
        exact = sum(
            evaluate(
                plan.model,
                plan.cluster,
                replace(plan.workload, context=int(s)),
                c,
                np.array(plan.space.batches),
                formats=formats,
            ).step_s
            for s in contexts(100, 5)
        )
        np.testing.assert_allclose(req.decode_s, exact, rtol=1e-12)


@pytest.mark.parametrize(
    "model,cluster,chips,batches",
    [
        ("mistral-7b", "h200-sxm", 1, (64, 896)),  # compute-bound matmuls beside a memory-bound KV read
        ("deepseek-v3", "h200-sxm", 8, (8, 256)),  # latent attention: an absorbed, compute-bound core
    ],
)
def test_kernel_sums_are_interpolated_exactly(model, cluster, chips, batches):
    """The kernels' time is affine in the context too (the attention core's FLOPs and KV bytes
    grow in proportion), also where kernels of different bounds add."""
    plan = load_plan(
        None,
        model=model,
        cluster=cluster,
        chips=(chips,),
        batches=batches,
        weights=("fp8",),
        input_tokens=300,
        output_tokens=6,
    )
    batch = np.array(batches)
    found = candidates(plan, Phase.DECODE)
    assert found
    mixed = False
    for c in found[:8]:
        req = decode_request(plan.model, plan.cluster, 300, 6, c, batch)
        steps = [
            evaluate(plan.model, plan.cluster, replace(plan.workload, context=int(s)), c, batch)
            for s in contexts(300, 6)
        ]
        mixed |= any(np.any(e.local_s > np.maximum(e.compute_s, e.memory_s) * 1.01) for e in steps)
        np.testing.assert_allclose(req.decode_s, sum(e.step_s for e in steps), rtol=1e-12)
    assert mixed  # the case this test is for: some step's kernels have different bounds


def test_each_term_is_affine_in_context():
    """A running batch's step (sequences at contexts S_1..S_O) equals every sequence at the mean
    context, because every term of the step is affine in the context."""
    plan = load_plan("llama-3-70b-h100", chips=(16,), batches=(4,))
    for c in candidates(plan, Phase.DECODE)[:30]:
        rows = [
            evaluate(plan.model, plan.cluster, replace(plan.workload, context=s), c, np.array([4]), detail=True).rows
            for s in (1000, 2000, 3000)
        ]
        for a, b, z in zip(*rows):
            for field in ("flops", "hbm_bytes", "comm_bytes"):
                np.testing.assert_allclose(2 * getattr(b, field), getattr(a, field) + getattr(z, field), rtol=1e-12)


# --- the paper's request setting ----------------------------------------------------------------

PAPER = [
    "serve",
    "--model",
    "palm-540b",
    "--cluster",
    "tpu-v4",
    "--chips",
    "64",
    "--input-tokens",
    "60",
    "--output-tokens",
    "20",
    "--mode",
    "static",
    "--all",
]


def test_paper_request_setting_matches_plan(capsys):
    assert run(PAPER + ["--weights", "int8", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["modes"]["static"]["frontier"]
    assert [r["prefill"]["batch"] for r in rows] == [2**i for i in range(11)]
    for r in rows[::3]:
        p, d = r["prefill"], r["decode"]
        fixed = dict(model="palm-540b", cluster="tpu-v4", chips=(64,), weights=("int8",), input_tokens=60)
        [pre] = (
            search(
                load_plan(
                    None,
                    phases=("prefill",),
                    batches=(p["batch"],),
                    ffn=(p["ffn"],),
                    attention=(p["attention"],),
                    **fixed,
                )
            )
            .phases[0]
            .frontier
        )
        assert p["latency_s"] == pytest.approx(pre.latency_s, rel=1e-5)
        assert p["mfu"] == pytest.approx(pre.mfu, rel=1e-5)
        steps = [
            search(
                load_plan(
                    None,
                    phases=("decode",),
                    batches=(d["batch"],),
                    ffn=(d["ffn"],),
                    attention=(d["attention"],),
                    output_tokens=1,
                    context=60 + t,
                    **fixed,
                )
            )
            .phases[0]
            .frontier[0]
            .latency_s
            for t in range(1, 21)
        ]
        assert d["latency_s"] == pytest.approx(sum(steps), rel=1e-5)
        assert r["ttft_s"] == pytest.approx(pre.latency_s, rel=1e-5)
        assert r["tpot_s"] == pytest.approx(sum(steps) / 20, rel=1e-5)


# --- the command line ---------------------------------------------------------------------------


def test_json_is_deterministic_and_documented(capsys):
    args = ["serve", "llama-3-70b-h100", "--chips", "8,16", "--price", "2.50/h", "--format", "json"]
    assert run(args) == 0
    first = capsys.readouterr().out
    assert run(args) == 0
    assert capsys.readouterr().out == first
    data = json.loads(first)
    assert data["price_usd_per_chip_hour"] == 2.5
    assert {"planner_version", "hardware", "model_shape", "workload", "calibration", "modes"} <= set(data)
    row = data["modes"]["disaggregated"]["frontier"][0]
    assert {
        "ttft_s",
        "tpot_s",
        "e2e_s",
        "tokens_per_s_per_user",
        "output_tokens_per_s_per_chip",
        "usd_per_million_input_tokens",
        "usd_per_million_output_tokens",
        "kv_transfer_s",
        "row",
        "prefill",
        "decode",
        "serving_names",
    } <= set(row)


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown"])
def test_formats(fmt, capsys):
    assert run(["serve", "palm-540b-tpu-v4", "--chips", "64", "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "colocated" in out and "disaggregated" in out and "static" in out


def test_nothing_meets_the_targets_exit_1(capsys):
    assert run(["serve", "llama-3-70b-h100", "--chips", "8", "--tpot", "1us", "--ttft", "10s"]) == 1
    err = capsys.readouterr().err
    assert "TPOT binds" in err and "--tpot is 1.00 us" in err


@pytest.mark.parametrize(
    "args, named",
    [
        (["--price", "cheap"], "--price"),
        (["--price", "-2/h"], "--price"),
        (["--mode", "batchy"], "--mode"),
        (["--ttft", "soon"], "--ttft"),
        (["--tpot", "0"], "--tpot"),
        (["--plot", "x.pdf"], "--plot"),
        (["--row", "9999"], "--row"),
        (["--chips", "3"], "--chips"),
    ],
)
def test_bad_flags_exit_2(args, named, capsys):
    chips = [] if named == "--chips" else ["--chips", "64"]
    assert run(["serve", "palm-540b-tpu-v4"] + chips + args) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_cluster_price_field(tiny, tmp_path, capsys):
    (tmp_path / "priced.yaml").write_text(BOX + "price_usd_per_chip_hour: 3.6  # source: a test\n")
    args = [
        "serve",
        "--model",
        str(tiny / "tiny.yaml"),
        "--cluster",
        str(tmp_path / "priced.yaml"),
        "--chips",
        "1",
        "--batch",
        "1",
        "--input-tokens",
        "8",
        "--output-tokens",
        "2",
        "--format",
        "json",
    ]
    assert run(args) == 0
    assert json.loads(capsys.readouterr().out)["price_usd_per_chip_hour"] == 3.6
    (tmp_path / "bad.yaml").write_text(BOX + "price_usd_per_chip_hour: free\n")
    assert run(args[:4] + [str(tmp_path / "bad.yaml")] + args[5:]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "price_usd_per_chip_hour" in err


def test_row_explains_both_stages(capsys):
    assert run(["serve", "palm-540b-tpu-v4", "--chips", "64", "--mode", "static", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)["modes"]["static"]["frontier"][1]
    assert (
        run(["serve", "palm-540b-tpu-v4", "--chips", "64", "--mode", "static", "--row", "2", "--format", "json"]) == 0
    )
    explained = json.loads(capsys.readouterr().out)
    assert explained["row"] == 2
    for phase in ("prefill", "decode"):
        assert explained[phase]["batch"] == row[phase]["batch"]
        assert explained[phase]["ffn"] == row[phase]["ffn"]


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_picture_file(suffix, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"frontier{suffix}"
    assert run(["serve", "llama-3-70b-h100", "--chips", "8,16", "--plot", str(path)]) == 0
    if suffix == ".svg":
        import xml.etree.ElementTree as ET

        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg")
        assert "tokens/s per user" in path.read_text()
    else:
        import matplotlib.image

        assert matplotlib.image.imread(str(path)).shape[0] > 100


@pytest.mark.parametrize("command", ["plan", "serve"])
def test_an_empty_search_space_is_invalid_input(planner, command):
    """Flags that leave no layout to search (head-parallel attention on one chip: the heads
    layout coincides with the batch layout there, so none is enumerated) are the user's mistake,
    exit 2, naming the flag that emptied the space and what would fill it; not 'nothing fits'."""
    code, out, err = planner(
        command,
        "--model",
        "mistral-7b",
        "--cluster",
        "b200",
        "--chips",
        "1",
        "--attention",
        "heads",
        "--format",
        "json",
    )
    assert code == 2 and out == ""
    assert "search space is empty: --attention heads and --chips 1 leave no layout" in err
    assert "add batch to --attention" in err and "fits" not in err
    code, _, err = planner(command, "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "1,2", "--ffn", "ws2d")
    assert code == 2 and "search space is empty: --ffn ws2d and --chips 1,2 leave no layout" in err
    assert "add ws1d,wg-xyz to --ffn" in err


def test_decode_pools_are_routed_as_the_plan():
    """A plan's routing holds for its decode steps as for its prefill: the redundant experts'
    memory is held in decode too, and the load imbalance slows the busiest chip's expert work
    (issue 24 found decode costed with balanced routing and no redundant experts whatever the
    plan said)."""
    from planner.commands.serve.pools import pools
    from planner.specs.moe import Routing

    plan = load_plan(
        "deepseek-v3-h200", chips=(8,), batches=(1024,), weights=("fp8",), experts=("ep",), phases=("prefill", "decode")
    )
    routed = replace(plan, workload=replace(plan.workload, routing=Routing(load_imbalance=1.5, redundant_experts=32)))
    balanced, skewed = pools(plan), pools(routed)
    assert skewed[0].seconds[0, 0, 0] > balanced[0].seconds[0, 0, 0]  # prefill: compute-bound expert work
    for before, after in zip(balanced, skewed):  # every pool holds the redundant experts
        assert after.stage((0, 0, 0)).hbm_fraction > before.stage((0, 0, 0)).hbm_fraction


def test_every_registered_layout_has_a_serving_name():
    """serve names each row's layouts as serving engineers do: every FFN, attention and expert
    layout the search may pick has a name (a two-batch overlap variant: its base's, and so)."""
    from planner.commands.serve.serve import serving_name
    from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS

    for name in (*FFN_LAYOUTS, *ATTENTION_LAYOUTS, *EXPERT_LAYOUTS):
        assert serving_name(name)
    assert serving_name("ep+tbo").startswith(serving_name("ep")) and "two-batch" in serving_name("ep+tbo")


def test_bundled_moe_plan_serves_in_every_format(planner):
    """The DeepSeek-V3 plan's rows use dp and two-batch layouts: every format names them."""
    for fmt in ("json", "table"):
        r = planner("serve", "deepseek-v3-h200", "--format", fmt)
        assert r.code == 0, r.err
