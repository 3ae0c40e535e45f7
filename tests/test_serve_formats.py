"""`planner serve` shows the whole deployment it picked: the expert layout of MoE models and the
KV-cache format per stage (rows, JSON, the gate's identity), the KV transfer of disaggregated
pools in the cache's format, `--row` adding up to its row, whole token counts, and
"uncalibrated" in every format."""

import csv
import io
import json

import pytest

from planner.cli.main import run
from planner.commands.serve.modes import Mode
from planner.commands.serve.runs import serve_run_from_dict, serve_run_from_result
from planner.commands.serve.serve import ServeRequest, serve, serve_dict
from planner.config import load_plan
from tests.test_serve import BOX, TINY

I, O = 8, 2
KV_ELEMENTS_PER_TOKEN = 2 * 2 * 1 * 16  # layers x (K, V) x kv heads x d_head of the tiny model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.yaml").write_text(TINY)
    (folder / "box.yaml").write_text(BOX)
    return folder


def served(tiny, kv_cache=("bf16",), modes=tuple(Mode)):
    plan = load_plan(
        None,
        model=str(tiny / "tiny.yaml"),
        cluster=str(tiny / "box.yaml"),
        chips=(1,),
        batches=(1, 2),
        weights=("bf16",),
        kv_cache=kv_cache,
        input_tokens=I,
        output_tokens=O,
    )
    return serve(ServeRequest(plan=plan, modes=modes, everything=True), partial=True)


@pytest.mark.parametrize("kv, bytes_per_element", [("bf16", 2.0), ("fp8", 1.0), ("int8", 1.0 + 4 / 16)])
def test_kv_transfer_in_the_cache_format(tiny, kv, bytes_per_element):
    # int8: a 16-bit scale and zero point (4 B) per d_head vector of 16 elements
    [m] = served(tiny, (kv,), (Mode.DISAGGREGATED,)).modes
    assert m.frontier
    for d in m.frontier:
        assert d.prefill.kv_cache == d.decode.kv_cache == kv
        assert d.kv_transfer_bytes == pytest.approx(KV_ELEMENTS_PER_TOKEN * bytes_per_element * I, rel=1e-12)
        assert d.kv_transfer_s == pytest.approx(d.kv_transfer_bytes / 1e8, rel=1e-12)  # 'net' at 1e8 B/s


def test_two_cache_formats_stay_apart(tiny):
    result = served(tiny, ("bf16", "fp8"))
    kvs = {(d.prefill.kv_cache, d.decode.kv_cache) for d in result.rows()}
    assert kvs <= {("bf16", "bf16"), ("fp8", "fp8")}  # the cache crosses as stored
    assert ("fp8", "fp8") in kvs  # the smaller cache reads faster on this HBM-bound box
    data = serve_dict(result)
    assert data["search"]["kv_cache"] == ["bf16", "fp8"]
    for mode in data["modes"].values():
        for row in mode["frontier"]:
            assert row["decode"]["kv_cache"] in ("bf16", "fp8")
            assert "experts" not in row["decode"]  # a dense model


def test_gate_identity_has_the_cache_and_reads_older_runs(tiny):
    result = served(tiny, ("bf16", "fp8"))
    run_now = serve_run_from_result(result, "now")
    keys = {r.key for r in run_now.rows}
    assert any("fp8" in k for k in keys) and len(keys) == len(run_now.rows)
    data = json.loads(json.dumps(serve_dict(served(tiny))))
    for mode in data["modes"].values():  # an older run: no kv_cache, experts or calibrated keys
        for row in mode["frontier"]:
            for stage in ("prefill", "decode"):
                row[stage].pop("kv_cache")
    del data["calibrated"], data["search"]["kv_cache"]
    old = serve_run_from_dict(data, "old.json")
    assert old.calibrated is None
    assert all(r.prefill.kv_cache == r.decode.kv_cache == "bf16" for r in old.rows)


def test_moe_rows_show_experts_and_kv(capsys):
    args = [
        "serve",
        "deepseek-v3-h200",
        "--chips",
        "8",
        "--batch",
        "1",
        "--weights",
        "fp8",
        "--kv-cache",
        "fp8",
        "--experts",
        "ep",
        "--load-imbalance",
        "1.5",
    ]
    assert run(args + ["--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["search"]["experts"] == ["ep"] and data["search"]["load_imbalance"] == 1.5
    rows = [r for mode in data["modes"].values() for r in mode["frontier"]]
    assert rows
    for r in rows:
        assert r["prefill"]["experts"] == r["decode"]["experts"] == "ep"
        assert r["decode"]["kv_cache"] == "fp8"
        assert "expert parallelism" in r["serving_names"]
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "ws2d+heads+ep fp8 kv fp8" in out or "+batch+ep fp8 kv fp8" in out
    assert "not layouts of this planner" not in out
    assert run(args + ["--row", "1", "--format", "json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["decode"]["experts"] == "ep"
    assert explained["decode"]["formats"]["kv_cache"] == "fp8"
    assert explained["decode"]["moe"]["load_imbalance"] == 1.5  # the routing served with


def test_static_row_explained_at_its_mean_context(tiny, capsys):
    args = [
        "serve",
        "--model",
        str(tiny / "tiny.yaml"),
        "--cluster",
        str(tiny / "box.yaml"),
        "--chips",
        "1",
        "--batch",
        "1,2",
        "--input-tokens",
        str(I),
        "--output-tokens",
        str(O),
        "--all",
    ]
    assert run(args + ["--format", "json"]) == 0
    rows = [r for mode in json.loads(capsys.readouterr().out)["modes"].values() for r in mode["frontier"]]
    for r in rows:
        # the static batch's capacity context is whole tokens, a running batch's is the mean
        assert r["decode"]["context"] == (I + O if r["mode"] == "static" else I + (O + 1) / 2)
        assert isinstance(r["decode"]["context"], int) == (r["mode"] == "static")
    for r in rows:
        assert run(args + ["--row", str(r["row"]), "--format", "json"]) == 0
        explained = json.loads(capsys.readouterr().out)
        assert explained["decode"]["workload"]["context"] == I + (O + 1) / 2
        step = explained["decode"]["step_latency_s"]
        if r["mode"] == "colocated":  # TPOT also carries the prefill passes' share
            assert step == pytest.approx(r["decode"]["step_latency_s"], rel=1e-5)
            assert step < r["tpot_s"]
        else:  # memory-bound throughout: the step at the mean context is the mean step
            assert step == pytest.approx(r["tpot_s"], rel=1e-5)
    assert run(args + ["--row", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"contexts {I + 1} to {I + O}" in out and "mean context of 9.5 cached tokens" in out
    assert ".0 cached tokens" not in out


def test_uncalibrated_in_every_format(tiny, capsys):
    args = [
        "serve",
        "--model",
        str(tiny / "tiny.yaml"),
        "--cluster",
        str(tiny / "box.yaml"),
        "--chips",
        "1",
        "--batch",
        "1",
        "--input-tokens",
        str(I),
        "--output-tokens",
        str(O),
    ]
    assert run(args + ["--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["calibrated"] is False
    assert run(args + ["--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(r["calibration"] == "uncalibrated" for r in rows)
    for fmt in ("markdown", "table"):
        assert run(args + ["--format", fmt]) == 0
        assert "uncalibrated" in capsys.readouterr().out


def test_help_names_every_format_and_the_plot_install(capsys):
    assert run(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in (
        "fp8",
        "int8-w8a8",
        "int4",
        "fp4",
        "--kv-cache",
        "--experts",
        "--load-imbalance",
        "pip install matplotlib",
        "one pipeline stage",
    ):
        assert word in text
    assert "planner[plot]" not in text and "[default: both]" not in text.split("--weights")[1].split("--")[0]
