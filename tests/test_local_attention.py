"""Local (sliding-window) attention and the model's context limit.

KV cache per chip and attention FLOPs of Gemma 3 27B and Mistral 7B against hand arithmetic; the
windowed step shape against a brute-force sum; the context errors of `load_plan` and the CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.config import load_cluster, load_model, load_plan
from planner.cost.layouts.base import StepShape, windowed
from planner.errors import ConfigError, UsageError
from planner.search.search import best
from planner.specs.hardware import WeightFormat
from planner.specs.plan import Phase

BF16 = 2  # bytes per K or V element


def _decode(model: str, chips: int, batch: int, context: int, attention: str = "heads"):
    plan = load_plan(
        None,
        model=model,
        cluster="h100-sxm",
        chips=(chips,),
        input_tokens=context // 2,
        output_tokens=1,
        context=context,
        phases=("decode",),
    )
    return best(plan, Phase.DECODE, chips, batch, WeightFormat.BF16, "ws1d", attention)


@pytest.mark.parametrize("context", [512, 1024, 32768, 131072])
def test_gemma_3_kv_cache_per_chip_by_hand(context):
    # Gemma 3 27B: 62 layers, of which 10 (5, 11, ..., 59) are global and hold the whole context;
    # the other 52 hold at most their 1024-token window. 16 KV heads over 8 chips: 2 per chip,
    # d_head 128, K and V in bf16.
    batch, chips = 4, 8
    per_token_per_layer = batch * 2 * (16 // chips) * 128 * BF16
    expected = per_token_per_layer * (10 * context + 52 * min(context, 1024))
    ev = _decode("gemma-3-27b", chips, batch, context)
    assert float(ev.kv_bytes[0]) == pytest.approx(expected, rel=1e-12)
    rows = {r.name: r for r in ev.rows}
    assert rows["read KV cache (global layers)"].repeat == 10
    assert rows["read KV cache (local layers, window 1024)"].repeat == 52
    assert float(rows["read KV cache (local layers, window 1024)"].hbm_bytes[0]) == pytest.approx(
        per_token_per_layer * 52 * min(context, 1024), rel=1e-12
    )


@pytest.mark.parametrize("context", [2048, 4096, 32768])
def test_mistral_kv_cache_per_chip_by_hand(context):
    # Mistral 7B v0.1: every one of its 32 layers holds at most 4096 tokens; 8 KV heads on 8 chips.
    batch, chips = 16, 8
    expected = 32 * batch * min(context, 4096) * 2 * 1 * 128 * BF16
    ev = _decode("mistral-7b", chips, batch, context)
    assert float(ev.kv_bytes[0]) == pytest.approx(expected, rel=1e-12)
    assert "read KV cache (global layers)" not in {r.name for r in ev.rows}


def test_mistral_prefill_attention_flops_by_hand():
    # Prefill of L = 8192 tokens with a 4096 window: query i attends to min(i, 4096) tokens, so
    # the tokens attended sum to 4096 * 4097 / 2 + 4096 * 4096. QK and AV: 4 FLOPs per query,
    # attended token, head and d_head; 32 heads over 8 chips.
    L, w, batch, chips = 8192, 4096, 2, 8
    plan = load_plan(None, model="mistral-7b", cluster="h100-sxm", chips=(chips,), input_tokens=L, phases=("prefill",))
    ev = best(plan, Phase.PREFILL, chips, batch, WeightFormat.BF16, "ws1d", "heads")
    row = next(r for r in ev.rows if r.name.startswith("einsum QK, AV"))
    attended = w * (w + 1) / 2 + (L - w) * w
    assert float(row.flops[0]) == pytest.approx(32 * 4 * batch * attended * (32 / chips) * 128, rel=1e-12)


def test_a_window_never_costs_more():
    gemma = load_model("gemma-3-27b")
    plan = load_plan(None, model="gemma-3-27b", cluster="h100-sxm", chips=(16,), input_tokens=32768, phases=("decode",))
    unbounded = dataclasses.replace(plan, model=dataclasses.replace(gemma, window_tokens=None, local_layers=()))
    checked = 0
    for ffn in ("ws1d", "ws2d", "wg-xyz"):
        for attention in ("heads", "batch"):
            windowed_ev = best(plan, Phase.DECODE, 16, 8, WeightFormat.BF16, ffn, attention)
            full_ev = best(unbounded, Phase.DECODE, 16, 8, WeightFormat.BF16, ffn, attention)
            if windowed_ev is None:  # the layout does not apply on this mesh
                continue
            checked += 1
            assert float(windowed_ev.kv_bytes[0]) < float(full_ev.kv_bytes[0])
            assert float(windowed_ev.step_s[0]) <= float(full_ev.step_s[0])
    assert checked >= 3


@given(tokens=st.integers(1, 300), before=st.integers(0, 300), window=st.integers(1, 400))
def test_windowed_shape_matches_a_brute_force_sum(tokens, before, window):
    cached = before + tokens
    shape = StepShape(batch=np.array([1]), tokens=tokens, attended=cached, cached=cached, reads_cache=True)
    local = windowed(shape, window)
    brute = sum(min(before + i, window) for i in range(1, tokens + 1)) / tokens
    if window >= cached:
        assert local is shape
    else:
        assert local.attended == pytest.approx(brute, rel=1e-12)
        assert local.cached == window


# --- the model's maximum context --------------------------------------------------------------


def test_a_prompt_or_context_beyond_the_limit_is_an_error():
    with pytest.raises(
        UsageError,
        match="--input-tokens: a prompt of 40000 tokens exceeds mistral-7b's maximum context of 32768 tokens",
    ):
        load_plan(None, model="mistral-7b", cluster="h100-sxm", input_tokens=40000)
    with pytest.raises(
        UsageError,
        match="--context: a decode context of 131073 tokens exceeds llama-3.1-8b's maximum context of 131072",
    ):
        load_plan(None, model="llama-3.1-8b", cluster="h100-sxm", context=131073)
    # without --context, decode holds the whole request: input + output (issue 29)
    assert load_plan(None, model="llama-3.1-8b", cluster="h100-sxm", input_tokens=130048).workload.context == 131072
    with pytest.raises(
        UsageError,
        match=r"--output-tokens \(default 1024\): a request of 131072 input \+ 1024 "
        "output tokens = 132096 tokens exceeds llama-3.1-8b's maximum context",
    ):
        load_plan(None, model="llama-3.1-8b", cluster="h100-sxm", input_tokens=131072)
    # a decode-only plan does not check the default prompt it does not use
    assert load_plan(None, model="qwen3-32b", cluster="h100-sxm", phases=("decode",), context=1024)


def test_the_limit_points_at_the_plan_file(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(
        "model: qwen3-32b\ncluster: h100-sxm\nworkload:\n  input_tokens: 4096\n  output_tokens: 64\n  context: 65536\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_plan(str(path))
    assert caught.value.line == 6 and caught.value.key == "workload.context"
    assert "maximum context of 40960 tokens" in str(caught.value)


def test_a_short_context_must_be_intended(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(
        "model: palm-8b\ncluster: tpu-v4\nworkload: {input_tokens: 2048, output_tokens: 64, context: 1024}\n"
    )
    with pytest.raises(ConfigError, match="shorter than the prompt") as caught:
        load_plan(str(path))
    assert caught.value.key == "workload.context" and "--allow-short-context" in str(caught.value)
    assert load_plan(str(path), allow_short_context=True).workload.context == 1024
    path.write_text(path.read_text().replace("context: 1024}", "context: 1024, allow_short_context: true}"))
    assert load_plan(str(path)).workload.context == 1024
    # prefill alone does not read the context: a file's short context is no error there (as a
    # flag, --context with prefill alone is refused: it would change nothing)
    path.write_text(
        "model: palm-8b\ncluster: tpu-v4\nsearch: {phases: [prefill]}\n"
        "workload: {input_tokens: 2048, output_tokens: 64, context: 16}\n"
    )
    assert load_plan(str(path)).workload.context == 16
    with pytest.raises(UsageError, match="applies to decode only"):
        load_plan(None, model="palm-8b", cluster="tpu-v4", phases=("prefill",), input_tokens=2048, context=16)


def test_context_errors_through_the_cli(capsys):
    from planner.cli.main import run

    code = run(["plan", "--model", "gemma-3-27b", "--cluster", "h100-sxm", "--input-tokens", "200000"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "maximum context of 131072 tokens" in err and "Traceback" not in err
    base = [
        "explain",
        "--model",
        "palm-8b",
        "--cluster",
        "tpu-v4",
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "8",
        "--ffn",
        "ws2d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
        "--input-tokens",
        "2048",
        "--context",
        "512",
    ]
    assert run(base) == 2 and "shorter than the prompt" in capsys.readouterr().err
    assert run(base + ["--allow-short-context"]) == 0


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_explain_rows_add_up_with_local_layers(phase):
    from planner.render.explain import explain_dict

    plan = load_plan(
        None, model="gemma-3-27b", cluster="h100-sxm", chips=(16,), input_tokens=16384, context=65536, stages=(1,)
    )
    ev = best(plan, Phase(phase), 16, 8, WeightFormat.BF16, "ws2d", "heads")
    d = explain_dict(ev)
    for part in ("compute", "memory", "comm"):
        assert sum(row["seconds"][part] for row in d["layers"]) == pytest.approx(d["time_s"][part], rel=1e-5)
    assert sum(d["memory"].values()) == pytest.approx(d["hbm_bytes_per_chip"], rel=1e-5)
    assert d["local_attention"] == {"layers": 52, "window_tokens": 1024} and d["max_context"] == 131072
    repeats = {row["name"]: row["repeat"] for row in d["layers"]}
    assert repeats["einsum QK, AV (global layers)"] == 10
    assert repeats["einsum QK, AV (local layers, window 1024)"] == 52


@pytest.mark.parametrize("kv_cache", ["bf16", "fp8"])
def test_a_request_crossing_the_window_equals_evaluate_at_every_context(kv_cache):
    """`planner serve`'s growing context: the step terms bend at the window, so a request that
    crosses it is interpolated piecewise (decode_request against evaluate at every context); the
    cache past the window is read in its own format (fp8: 1 byte per element)."""
    from dataclasses import replace

    from planner.cost.costmodel import combine, evaluate
    from planner.cost.request import contexts, decode_request
    from planner.search.search import candidates

    plan = load_plan(
        None,
        model="mistral-7b",
        cluster="h100-sxm",
        chips=(8,),
        batches=(1, 8, 64),
        kv_cache=(kv_cache,),
        input_tokens=4090,
        output_tokens=12,
        phases=("decode",),
    )
    batch = np.array(plan.space.batches)
    for c in candidates(plan, Phase.DECODE)[:12]:
        req = decode_request(plan.model, plan.cluster, 4090, 12, c, batch)
        steps = [
            evaluate(plan.model, plan.cluster, replace(plan.workload, context=int(s)), c, batch)
            for s in contexts(4090, 12)
        ]
        np.testing.assert_allclose(req.decode_s, sum(e.step_s for e in steps), rtol=1e-12)
        mean = [np.mean([getattr(e, n) for e in steps], axis=0) for n in ("local_s", "comm_s", "prefetched_s")]
        running = combine(*mean[:2], steps[0].overlap, mean[2]) + steps[0].overhead_s
        np.testing.assert_allclose(req.running_step_s, running, rtol=1e-12)


def test_pipeline_stages_hold_their_own_local_layers():
    """Gemma 3 27B in two stages: layers 0-30 and 31-61, each with 5 global layers (5, 11, ..., 29
    and 35, ..., 59) and 26 local ones; a stage's KV cache per chip is its layers' by hand."""
    from planner.cost.costmodel import Candidate
    from planner.cost.layouts import ATTENTION_LAYOUTS, FFN_LAYOUTS
    from planner.cost.mesh import stage_meshes
    from planner.cost.pipeline import evaluate_pipeline
    from planner.specs.plan import Workload

    gemma = load_model("gemma-3-27b")
    assert [(s.n_global_layers, s.n_local_layers) for s in (gemma.layer_range(0, 31), gemma.layer_range(31, 31))] == [
        (5, 26),
        (5, 26),
    ]
    cluster = load_cluster("h100-sxm")
    (mesh,) = [m for m in stage_meshes(cluster, 16, 2) if m.sizes == {"x": 1, "y": 1, "z": 8}]
    c = Candidate(
        phase=Phase.DECODE,
        mesh=mesh,
        ffn=FFN_LAYOUTS["ws1d"],
        attention=ATTENTION_LAYOUTS["heads"],
        weights=WeightFormat.BF16,
        stages=2,
    )
    context, batch = 32768, 8
    ev = evaluate_pipeline(
        gemma, cluster, Workload(input_tokens=context, output_tokens=8, context=context), c, np.array([batch])
    )
    per_token_per_layer = batch * 2 * (16 // 8) * 128 * BF16
    for stage in ev.stage_evaluations:
        kv = float(stage.kv_bytes[list(ev.sizes).index(batch)])
        assert kv == pytest.approx(per_token_per_layer * (5 * context + 26 * 1024), rel=1e-12)


def test_a_quantised_cache_past_the_window_is_read_in_its_format():
    """Past the window a local layer reads a window's worth of cache, in the cache's format: the
    read does not jump when the context crosses the window (an fp8 cache read as bf16 did)."""
    plan = load_plan(
        None, model="gemma-3-27b", cluster="h200-sxm", chips=(1,), weights=("fp8",), kv_cache=("fp8",), input_tokens=900
    )
    window = plan.model.window_tokens
    reads = []
    for context in (window, window + 1, 4 * window):
        ev = best(
            dataclasses.replace(plan, workload=dataclasses.replace(plan.workload, context=context)), Phase.DECODE, 1, 64
        )
        reads.append({r.name: float(r.hbm_bytes[0]) for r in ev.rows if r.name.startswith("read KV cache (local")})
    assert reads[0] == reads[1] == reads[2] and reads[0]
