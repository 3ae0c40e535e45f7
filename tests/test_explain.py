"""`explain` adds up: its rows sum to the reported times and its memory rows to the HBM use."""

import json
import os
import subprocess
import sys

import pytest

from planner.config import load_plan
from planner.render.explain import explain_dict
from planner.search.search import best
from planner.specs.hardware import WeightFormat
from planner.specs.plan import Phase


@pytest.mark.parametrize(
    "phase,batch,ffn,attention,weights",
    [
        ("decode", 64, "ws2d", "batch", "int8"),
        ("prefill", 512, "wg-xyz", "batch", "bf16"),
        ("prefill", 1, "ws1d", "heads", "bf16"),
        ("decode", 512, "ws2d", "batch", "bf16"),
    ],
)
def test_explain_rows_add_up(phase, batch, ffn, attention, weights):
    plan = load_plan(None, model="palm-540b", cluster="tpu-v4")
    ev = best(plan, Phase(phase), 64, batch, WeightFormat.parse(weights), ffn, attention)
    d = explain_dict(ev)
    for part in ("compute", "memory", "comm"):
        total = sum(row["seconds"][part] for row in d["layers"])
        assert total == pytest.approx(d["time_s"][part], rel=1e-5)
    assert sum(d["memory"].values()) == pytest.approx(d["hbm_bytes_per_chip"], rel=1e-5)
    assert d["ffn"] == ffn and d["attention"] == attention and d["weights"] == weights
    # the step follows from the columns by the overlap policy that `combine` reports
    t, k = d["time_s"], d["combine"]
    prefetched = sum(
        row["seconds"]["comm"]
        for row in d["layers"]
        if row["name"].startswith("gather") and row["name"].endswith("weights")
    )
    assert k["prefetched_comm_s"] == pytest.approx(prefetched, rel=1e-5)
    assert (prefetched > 0) == ffn.startswith("wg")
    active = t["comm"] - k["prefetched_comm_s"]
    # compute and memory overlap within a kernel: rows sharing a "kernel" are one, the others each their own
    kernels: dict = {}
    for i, row in enumerate(d["layers"]):
        c, m = kernels.get(row.get("kernel", i), (0.0, 0.0))
        kernels[row.get("kernel", i)] = (c + row["seconds"]["compute"], m + row["seconds"]["memory"])
    local = sum(max(c, m) for c, m in kernels.values())
    assert k["kernels_s"] == pytest.approx(local, rel=1e-5) and local >= max(t["compute"], t["memory"]) * (1 - 1e-5)
    assert k["critical_path_s"] == pytest.approx(local + active - k["overlap"] * min(local, active), rel=1e-5)
    assert d["step_latency_s"] == pytest.approx(max(k["critical_path_s"], t["comm"]) + t["overhead"], rel=1e-5)


def test_weight_gathers_are_prefetched_and_activation_collectives_are_not():
    """Weight all-gathers cost time only when the links are busier than the critical path;
    activation collectives sit on it (a share `overlap` of them hidden)."""
    from planner.cost.costmodel import combine

    assert combine(10.0, 4.0, 0.5, prefetched_s=4.0) == 10.0  # gathers hidden under the kernels
    assert combine(10.0, 14.0, 0.5, prefetched_s=12.0) == 14.0  # links busiest: 2 + 12
    assert combine(10.0, 4.0, 0.5) == 12.0  # the same 4 s as activation collectives
    assert combine(10.0, 4.0, 0.0) == 14.0 and combine(10.0, 4.0, 1.0) == 10.0


def test_explain_json_from_the_command_line():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "planner.cli.main",
            "explain",
            "--model",
            "palm-540b",
            "--cluster",
            "tpu-v4",
            "--chips",
            "64",
            "--phase",
            "decode",
            "--batch",
            "64",
            "--ffn",
            "ws2d",
            "--attention",
            "batch",
            "--weights",
            "int8",
            "--context",
            "2048",
            "--output-tokens",
            "64",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    d = json.loads(out.stdout)
    assert d["latency_s"] == pytest.approx(64 * d["step_latency_s"], rel=1e-5)
    assert {"layers", "memory", "time_s", "partition", "mesh"} <= set(d)
    assert d["workload"] == {"context": 2048, "output_tokens": 64}
    assert (d["model"], d["cluster"]) == ("palm-540b", "tpu-v4")
    assert d["axes"] == {"x": ["x"], "y": ["y", "z"], "z": []}


def test_explain_counts_ring_steps_and_their_latency():
    """ws2d+batch decode on a 4x4x4 torus (x: one axis of 4, yz: two): per layer five x collectives
    (3 steps each), two yz (3 + 3 each) and two all-to-alls over xyz (9 each) = 45; plus the
    final all-gather over xyz (9)."""
    plan = load_plan(None, model="palm-540b", cluster="tpu-v4")
    ev = best(plan, Phase.DECODE, 64, 64, WeightFormat.INT8, "ws2d", "batch")
    assert [n for _, n in ev.candidate.mesh.sizes.items()] == [4, 16, 1]
    k = explain_dict(ev)["combine"]
    assert k["ring_steps"] == 118 * 45 + 9
    assert k["comm_latency_s"] == pytest.approx(
        k["ring_steps"] * plan.cluster.calibration.collective_latency_s, rel=1e-5
    )
    assert k["comm_latency_s"] < explain_dict(ev)["time_s"]["comm"]


@pytest.mark.parametrize("model,cluster", [("palm-540b", "tpu-v4"), ("llama-3-70b", "h100-sxm")])
def test_notation_has_no_empty_subscripts(model, cluster):
    """Unsharded dimensions print bare (`BLE`, `W_in[E, F_xyz]`), never `E_` or `{U_}`; and the
    sharded ones name only mesh axes."""
    import re

    import numpy as np

    from planner.cost.costmodel import evaluate
    from planner.search.search import candidates

    plan = load_plan(None, model=model, cluster=cluster)
    seen = set()
    for phase in (Phase.PREFILL, Phase.DECODE):
        for c in candidates(plan, phase, chips=(8, 64)):
            ev = evaluate(plan.model, plan.cluster, plan.workload, c, np.array([8]), detail=True)
            seen.update(row.notation for row in ev.rows)
    assert len(seen) > 20
    for notation in seen:
        assert not re.search(r"_(?![xyz])|\{U_\}", notation.replace("W_", "").replace("V_xyz", "")), notation


def _rows(model, cluster, chips, phase, ffn, attention, mesh=None):
    import numpy as np

    from planner.cost.costmodel import evaluate
    from planner.search.search import candidates

    plan = load_plan(None, model=model, cluster=cluster)
    for c in candidates(plan, Phase(phase), chips=(chips,)):
        if (c.ffn.name, c.attention.name, c.weights.label) == (ffn, attention, "bf16") and (
            mesh is None or c.mesh.sizes == mesh
        ):
            return {
                r.name: r
                for r in evaluate(plan.model, plan.cluster, plan.workload, c, np.array([64]), detail=True).rows
            }
    raise AssertionError("no such candidate")


def test_new_kv_reaches_the_cache_sharding():
    """Grouped-query attention (Llama 3 70B: 8 kv heads): where a chip projects other kv heads
    or sequences than its cache holds, new K and V move there by an all-to-all; where the chips
    of an e group cache different heads, a reduce-scatter (not an all-reduce) suffices; a
    multiquery head every chip caches needs the all-reduce."""
    rows = _rows("llama-3-70b", "h100-sxm", 16, "decode", "ws1d", "batch", mesh={"x": 1, "y": 2, "z": 8})
    proj = rows["einsum W_Q, W_K, W_V, W_O"]
    move = rows["all-to-all new K, V to the cache"]
    # ws1d on 16 GPUs: each projects 1 of the 8 kv heads (16 / 8 = 2 copies) for all 64 sequences
    assert move.comm_bytes[0] == pytest.approx(64 * 1 * 128 * 2 * 2 * 80)
    assert "K_xyz" in proj.notation
    heads = _rows("llama-3-70b", "h100-sxm", 8, "decode", "ws2d", "heads")
    assert "reduce-scatter new K, V" in heads and "all-reduce new K, V" not in heads
    assert "all-to-all new K, V to the cache" not in heads
    palm = _rows("palm-540b", "tpu-v4", 64, "decode", "ws2d", "heads")
    assert "all-reduce new K, V" in palm
    palm_batch = _rows("palm-540b", "tpu-v4", 64, "decode", "ws2d", "batch")
    assert "all-to-all new K, V to the cache" not in palm_batch  # projected for its own sequences


def test_residual_stream_counts_padded_batch_shards():
    """wg-xyz with fewer sequences than chips pads each chip to a whole sequence: it holds
    L x E of the residual stream, not B L E / n (found by a review: 4 MiB shown for 64 MiB)."""
    plan = load_plan(None, model="llama-3-70b", cluster="h100-sxm")
    ev = best(plan, Phase("prefill"), 16, 1, WeightFormat.parse("bf16"), "wg-xyz", "batch")
    assert float(ev.activation_bytes[0]) >= 2 * 2048 * 8192 * 2


def test_explain_says_when_a_batch_is_padded():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "planner.cli.main",
            "explain",
            "--model",
            "llama-3-70b",
            "--cluster",
            "h100-sxm",
            "--chips",
            "16",
            "--phase",
            "prefill",
            "--batch",
            "1",
            "--ffn",
            "wg-xyz",
            "--attention",
            "batch",
            "--weights",
            "bf16",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "padding  FFN and attention: batch 1 over 16 batch shards" in out.stdout
    ev = best(
        load_plan(None, model="palm-540b", cluster="tpu-v4"),
        Phase("decode"),
        64,
        64,
        WeightFormat.parse("int8"),
        "ws2d",
        "batch",
    )
    assert explain_dict(ev)["padding"] == []  # 64 sequences fill 64 batch shards


# --- explain --row N: any printed row of `planner plan`, without retyping it --------------------


SMALL = ["--model", "palm-8b", "--cluster", "tpu-v4", "--chips", "8,16", "--batch", "1,16,256"]


def _cli(*args):
    import contextlib
    import io

    from planner.cli.main import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(args))
    return code, out.getvalue(), err.getvalue()


def test_row_explains_the_printed_point_of_plan():
    code, out, _ = _cli("plan", *SMALL, "--format", "json")
    assert code == 0
    data = json.loads(out)
    points = sorted((p for phase in data["frontier"].values() for p in phase), key=lambda p: p["row"])
    assert [p["row"] for p in points] == list(range(1, len(points) + 1))
    assert [p["phase"] for p in points] == sorted((p["phase"] for p in points), key=["prefill", "decode"].index)
    for p in (points[0], points[len(points) // 2], points[-1]):
        code, out, err = _cli("explain", *SMALL, "--row", str(p["row"]), "--format", "json")
        assert (code, err) == (0, "")
        d = json.loads(out)
        assert d["row"] == p["row"]
        for key in ("phase", "chips", "batch", "ffn", "attention", "weights", "mesh", "partition"):
            assert d[key] == p[key], key
        assert d["latency_s"] == p["latency_s"] and d["mfu"] == p["mfu"]
        # the same breakdown as explain with the point's values typed out
        typed = [
            "--model",
            "palm-8b",
            "--cluster",
            "tpu-v4",
            "--chips",
            str(p["chips"]),
            "--phase",
            p["phase"],
            "--batch",
            str(p["batch"]),
            "--ffn",
            p["ffn"],
            "--attention",
            p["attention"],
            "--weights",
            p["weights"],
        ]
        code, out, _ = _cli("explain", *typed, "--format", "json")
        assert {**json.loads(out), "row": p["row"]} == d
    code, out, _ = _cli("explain", *SMALL, "--row", "2")
    assert code == 0 and out.startswith(f"row 2: {points[1]['phase']} {points[1]['chips']} chips batch ")


def test_plan_prints_the_row_numbers_in_every_format():
    code, out, _ = _cli("plan", *SMALL, "--format", "csv")
    lines = out.splitlines()
    header = lines[0].split(",")
    assert header[-2:] == ["row", "engine"]  # columns are added at the end
    assert [int(line.split(",")[header.index("row")]) for line in lines[1:]] == list(range(1, len(lines)))
    code, out, _ = _cli("plan", *SMALL, "--format", "markdown")
    assert "| # | chips | batch |" in out and "| 1 | " in out and "--row N" in out
    code, out, _ = _cli("plan", *SMALL)
    assert "--row N" in out
    first = next(line for line in out.splitlines() if line.lstrip().startswith("1 "))
    assert first.split()[:2] == ["1", "8"] or first.split()[:2] == ["1", "16"]


def test_row_respects_the_plans_constraints_and_bad_rows_are_usage_errors():
    code, out, _ = _cli("plan", *SMALL, "--phase", "decode", "--min-mfu", "10%", "--format", "json")
    first = json.loads(out)["frontier"]["decode"][0]
    code, out, _ = _cli("explain", *SMALL, "--phase", "decode", "--min-mfu", "10%", "--row", "1", "--format", "json")
    assert code == 0 and (json.loads(out)["batch"], json.loads(out)["ffn"]) == (first["batch"], first["ffn"])
    for args, message in (
        (["--row", "999"], "--row: expected a row number from 1 to"),
        (["--row", "0"], "--row: expected a row number"),
        (
            ["--phase", "decode", "--batch", "16", "--ffn", "ws2d", "--attention", "batch", "--weights", "int8"],
            "--chips: one value without --row",
        ),
        (
            [
                "--phase",
                "decode",
                "--batch",
                "16",
                "--ffn",
                "ws2d",
                "--attention",
                "batch",
                "--weights",
                "int8",
                "--min-mfu",
                "10%",
            ],
            "--min-mfu: only with --row",
        ),
    ):
        code, out, err = _cli("explain", *SMALL, *args)
        assert code == 2 and out == "" and message in err, (args, err)


@pytest.mark.parametrize(
    "model,cluster,chips,stages",
    [("llama-3-405b", "h100-sxm", 32, (2,)), pytest.param("deepseek-v3", "h100-sxm", 32, (1,), marks=pytest.mark.slow)],
)
def test_row_finds_the_exact_candidate_of_pipelined_and_moe_points(model, cluster, chips, stages):
    """--row re-evaluates a point on the candidate it came from: stages, expert layout and mesh
    grouping included. Candidates whose point names the same layouts are the hard case (explain
    tells them apart by their figures): the first, middle and last of every such group are
    checked, frontier or not (all of them took a minute, for the same coverage of the rule)."""
    import numpy as np

    from planner.commands.explain_row import explain_point
    from planner.search.search import SearchResult, candidates, cost, point

    plan = load_plan(
        None,
        model=model,
        cluster=cluster,
        chips=(chips,),
        batches=(8,),
        weights=("bf16",),
        phases=("decode",),
        stages=stages,
    )
    result = SearchResult(plan=plan, phases=())
    groups: dict[tuple, list] = {}
    for c in candidates(plan, Phase.DECODE):
        name = (c.ffn.name, c.attention.name, c.experts.name if c.experts else "", c.stages)
        groups.setdefault(name, []).append(c)
    assert any(len(g) > 1 for g in groups.values())  # the hard case is there
    checked = 0
    for c in (c for g in groups.values() for c in {id(x): x for x in (g[0], g[len(g) // 2], g[-1])}.values()):
        p = point(cost(plan, c, np.array([8])), 0)
        ev = explain_point(result, p)
        assert point(ev, 0) == p
        checked += 1
    assert checked >= 4


def test_padded_heads_are_shown():
    """PaLM 540B's 48 heads padded to 64 over 64 head shards: charged, and explain says so."""
    from planner.render.explain import _explain_summary  # noqa: PLC0415

    plan = load_plan("palm-540b-tpu-v4")
    ev = best(plan, Phase.DECODE, 64, 64, weights=WeightFormat.INT8, ffn="ws2d", attention="heads")
    assert explain_dict(ev)["heads"] == {"heads": 48, "padded": 64}
    assert any("48 query heads padded to 64" in line for line in _explain_summary(ev, plan.cluster))


def test_kernels_of_different_bounds_add():
    """A large decode batch: the weight matmuls are compute-bound and the attention core's KV-cache
    read memory-bound. They are different kernels, so the step pays both (each its own roofline),
    not the larger of the step's compute and memory totals; the QK, AV FLOPs hide under the read."""
    plan = load_plan(
        None, model="mistral-7b", cluster="h200-sxm", chips=(1,), weights=("fp8",), input_tokens=128, output_tokens=128
    )
    ev = best(plan, Phase.DECODE, 1, 896, WeightFormat.parse("fp8"), "ws1d", "batch")
    rows = {r.name: (float(r.compute_s[0]), float(r.memory_s[0])) for r in ev.rows}
    attention = [name for name in rows if name.startswith(("einsum QK, AV", "read KV cache"))]
    assert len(attention) == 2 and len({r.kernel for r in ev.rows if r.name in attention}) == 1
    core = max(sum(rows[n][0] for n in attention), sum(rows[n][1] for n in attention))
    assert core == sum(rows[n][1] for n in attention)  # memory-bound: the KV read
    weights = sum(max(c, m) for name, (c, m) in rows.items() if name not in attention)
    assert all(c > m for name, (c, m) in rows.items() if name.startswith("einsum W"))  # compute-bound
    assert float(ev.local_s[0]) == pytest.approx(weights + core, rel=1e-12)
    assert float(ev.local_s[0]) > 1.1 * max(float(ev.compute_s[0]), float(ev.memory_s[0]))
