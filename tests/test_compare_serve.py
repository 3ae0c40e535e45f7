"""`planner compare` on request-level results: a saved `planner serve --format json` run against
the plan served again with the flags the run records, or against a second saved serve run. The
tiny model and cluster of `test_serve` (every step bound by HBM, one chip: no network) make the
figures checkable by hand: halving the HBM bandwidth doubles every TPOT and halves every
deployment's tokens/s per chip."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from test_compare import github_tables
from test_serve import BOX, TINY

from planner.commands.compare.compare import Kind, Tolerance
from planner.commands.compare.serve import compare_serve_runs
from planner.commands.serve.runs import load_saved, serve_again
from planner.errors import ConfigError, UsageError


@pytest.fixture
def world(tmp_path):
    """A plan of the tiny model on the toy box (chips 1, 2 and batches 1-4 in the file), and the
    toy box with half its HBM bandwidth."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "box.yaml").write_text(BOX)
    (tmp_path / "slow-box.yaml").write_text(BOX.replace("hbm_bandwidth: 1e+9", "hbm_bandwidth: 5e+8"))
    (tmp_path / "plan.yaml").write_text(
        f"model: {tmp_path / 'tiny.yaml'}\ncluster: {tmp_path / 'box.yaml'}\n"
        "workload: {input_tokens: 8, output_tokens: 2, context: 10}\n"
        "search: {chips: [1, 2], batch: [1, 2, 4], weights: [bf16], ffn: [ws1d, ws2d], attention: [heads, batch]}\n"
    )
    return tmp_path


def saved(planner, world, *flags) -> str:
    path = world / "baseline.json"
    code, _, err = planner(
        "serve",
        world / "plan.yaml",
        "--chips",
        "1",
        "--batch",
        "1,2",
        "--price",
        "3.6/h",
        *flags,
        "--format",
        "json",
        "-o",
        path,
    )
    assert code == 0, err
    return str(path)


def test_served_again_with_the_recorded_flags_is_no_change(planner, world):
    baseline = saved(planner, world)
    # the plan searches chips 1, 2 and batches 1-4; the baseline's flags (chips 1, batch 1, 2) apply
    for fmt in ("table", "markdown", "csv", "json"):
        code, out, err = planner("compare", baseline, world / "plan.yaml", "--format", fmt)
        assert (code, err) == (0, "")
        if fmt == "table":
            assert out.splitlines()[0] == "no change"
        elif fmt == "markdown":
            assert out.startswith("**planner compare: no change**")
            (modes,) = github_tables(out)
            assert [row[0] for row in modes[1:]] == ["static", "colocated", "disaggregated"]
        elif fmt == "csv":
            assert out.splitlines() == [out.splitlines()[0]] and out.startswith("status,kind,row_before")
        else:
            data = json.loads(out)
            assert data["kind"] == "serve" and data["identical"] and data["changes"] == []
    code, out, _ = planner("compare", baseline, baseline)  # a saved serve run against itself
    assert code == 0 and out.splitlines()[0] == "no change"


def test_half_hbm_bandwidth_doubles_every_tpot_and_fails_the_gate(planner, world):
    baseline = saved(planner, world)
    code, out, err = planner("compare", baseline, world / "plan.yaml", "--cluster", world / "slow-box.yaml")
    assert (code, err) == (1, "")
    assert out.startswith("REGRESSION")
    assert "note: hardware hbm_bytes_per_s 1 GB/s -> 500 MB/s" in out
    assert "note: cluster box -> box" not in out  # same name: only the figure that moved is named
    report = compare_serve_runs(
        load_saved(baseline),
        serve_again(load_saved(baseline), str(world / "plan.yaml"), cluster=str(world / "slow-box.yaml")),
    )
    assert report.changes and all(c.kind is Kind.MOVED and c.regressed for c in report.changes)
    # HBM-bound kernels: twice the time, half the throughput, twice the cost (all but prefill's
    # attention core, whose FLOPs read no HBM: 0.2% of a prefill pass, so within 1e-3)
    for c in report.changes:
        changes = c.changes()
        assert changes["tpot_s"] == pytest.approx(1.0, abs=1e-3)
        assert changes["output_tokens_per_s_per_chip"] == pytest.approx(-0.5, abs=1e-3)
        assert changes["usd_per_million_output_tokens"] == pytest.approx(1.0, abs=1e-3)
        assert len(re.findall(r"\(\+(?:99\.[89]|100\.0)%\)", c.describe())) >= 2 and "tokens/s per chip" in c.describe()
    assert all(m.regressed and m.tpot_after_s == pytest.approx(2 * m.tpot_before_s, rel=1e-3) for m in report.modes)
    joined = re.sub(r"\n {6,}", " ", out)
    for c in report.changes:
        assert re.search(
            rf"regressed +{re.escape(str(c.point))}: TTFT .*TPOT \S+ \S+ -> \S+ \S+ \(\+(?:99\.[89]|100\.0)%\)", joined
        ), str(c.point)
    assert max(len(line) for line in out.splitlines()) <= 80


def test_tolerances_decide_what_regressed(planner, world):
    run = load_saved(saved(planner, world))
    target = run.rows[0]
    for tpot, per_chip, tolerance, regressed in (
        (1.009, 1, Tolerance(), False),
        (1.011, 1, Tolerance(), True),
        (1, 0.991, Tolerance(), False),
        (1, 0.989, Tolerance(), True),
        (1, 0.95, Tolerance(throughput=0.06), False),
        (1.05, 1, Tolerance(latency=0.06), False),
        (0.9, 1.1, Tolerance(), False),
    ):
        moved = replace(
            target,
            tpot_s=target.tpot_s * tpot,
            output_tokens_per_s_per_chip=target.output_tokens_per_s_per_chip * per_chip,
        )
        report = compare_serve_runs(run, replace(run, rows=(moved,) + run.rows[1:]), tolerance)
        (change,) = report.changes
        assert change.kind is Kind.MOVED and change.regressed is regressed, (tpot, per_chip)
        assert change.status == ("regressed" if regressed else "improved" if tpot <= 1 and per_chip >= 1 else "changed")
    dearer = replace(target, usd_per_million_output_tokens=target.usd_per_million_output_tokens * 1.02)
    (change,) = compare_serve_runs(run, replace(run, rows=(dearer,) + run.rows[1:])).changes
    assert change.regressed and "$/M output" in change.describe() and "(+2.0%)" in change.describe()


def test_disappeared_rows_regress_only_when_no_current_row_covers_them(planner, world):
    run = load_saved(saved(planner, world, "--mode", "static"))
    assert len(run.rows) >= 2
    first, rest = run.rows[0], run.rows[1:]  # the fastest per user
    renamed = replace(first, decode=replace(first.decode, ffn="ws2d" if first.decode.ffn != "ws2d" else "ws1d"))
    covered = compare_serve_runs(run, replace(run, rows=(renamed,) + rest))
    assert {c.kind for c in covered.changes} == {Kind.APPEARED, Kind.DISAPPEARED} and not covered.regressed
    # batch 1 -> 2 adds 128 bytes x 10 tokens of KV cache to 188416 bytes of weights per step:
    # the next row is within 1% of the fastest's TPOT with more tokens/s per chip, so it covers it
    (change,) = compare_serve_runs(run, replace(run, rows=rest)).changes
    assert change.kind is Kind.DISAPPEARED and not change.regressed and change.reference == rest[0]
    lost = compare_serve_runs(run, replace(run, rows=run.rows[:-1]))  # the most tokens/s per chip
    (change,) = lost.changes
    assert change.kind is Kind.DISAPPEARED and change.regressed and lost.regressed
    assert lost.modes[0].regressed and "no current row reaches" in change.describe()
    empty = compare_serve_runs(run, replace(run, rows=()))
    assert empty.regressed and all(c.regressed for c in empty.changes)


def test_notes_say_why_from_the_recorded_version_shape_and_request(planner, world):
    path = saved(planner, world)
    data = json.loads((world / "baseline.json").read_text())
    data["planner_version"] = "0.0.9"
    (world / "old.json").write_text(json.dumps(data))
    code, out, _ = planner("compare", world / "old.json", world / "plan.yaml")
    assert code == 0 and out.startswith("no change")  # a new version alone is not a difference
    assert "note: planner version 0.0.9 -> " in out
    (world / "tiny.yaml").write_text(TINY.replace("d_ff: 256", "d_ff: 512"))
    code, out, _ = planner("compare", path, world / "plan.yaml", "--batch", "1")
    assert code == 1
    assert "note: model shape d_ff 256 -> 512" in out and "note: search batch 1,2 -> 1" in out
    (world / "tiny.yaml").write_text(TINY)
    code, out, _ = planner(
        "serve",
        world / "plan.yaml",
        "--chips",
        "1",
        "--batch",
        "1,2",
        "--tpot",
        "1s",
        "--format",
        "json",
        "-o",
        world / "current.json",
    )
    code, out, _ = planner("compare", path, world / "current.json")
    assert "note: targets tpot_s none -> 1.00 s" in out and "note: price 3.6 -> none USD per chip-hour" in out


def test_runs_of_two_commands_do_not_mix(planner, world):
    baseline = saved(planner, world)
    code, _, _ = planner("plan", world / "plan.yaml", "--format", "json", "-o", world / "plan-run.json")
    assert code == 0
    code, out, err = planner("compare", baseline, world / "plan-run.json")
    assert code == 2 and out == "" and "a saved planner plan run cannot be compared" in err
    code, _, err = planner("compare", world / "plan-run.json", world / "plan.yaml", "--throughput-tolerance", "2")
    assert code == 2 and "--throughput-tolerance: only for saved serve runs" in err
    code, _, err = planner("compare", baseline, world / "plan.yaml", "--phase", "decode")
    assert code == 2 and "--phase" in err


@pytest.mark.parametrize(
    "edit,key",
    [
        (lambda d: d["modes"]["static"]["frontier"][0].pop("tpot_s"), "modes.static.frontier[0].tpot_s"),
        (
            lambda d: d["modes"]["static"]["frontier"][0]["decode"].update(batch="two"),
            "modes.static.frontier[0].decode.batch",
        ),
        (lambda d: d["modes"].update(batchy={}), "modes.batchy"),
        (lambda d: d["search"].pop("chips"), "search.chips"),
        (
            lambda d: d["modes"]["static"]["frontier"][0]["prefill"].update(weights="fp6"),
            "modes.static.frontier[0].prefill.weights",
        ),
        (
            lambda d: d["modes"]["static"]["frontier"][0]["decode"].update(kv_cache="fp6"),
            "modes.static.frontier[0].decode.kv_cache",
        ),
    ],
)
def test_a_bad_serve_run_names_the_key(planner, world, edit, key):
    data = json.loads(open(saved(planner, world)).read())
    edit(data)
    (world / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError) as error:
        load_saved(str(world / "bad.json"))
    assert str(error.value).startswith(f"{world / 'bad.json'}: {key}:") and "planner serve" in str(error.value)
    code, out, err = planner("compare", world / "bad.json", world / "plan.yaml")
    assert code == 2 and out == "" and key in err


def test_a_different_model_needs_allow_different_model(planner, world):
    run = load_saved(saved(planner, world))
    with pytest.raises(UsageError, match="--allow-different-model"):
        compare_serve_runs(run, replace(run, model="other"))
    assert (
        "model tiny -> other" in compare_serve_runs(run, replace(run, model="other"), allow_different_model=True).notes
    )


def test_a_plan_run_records_what_its_figures_depend_on(planner, world):
    """The plan gate says why too: the plan's saved run records the chip's figures."""
    code, _, _ = planner("plan", world / "plan.yaml", "--format", "json", "-o", world / "plan-run.json")
    data = json.loads((world / "plan-run.json").read_text())
    assert data["hardware"]["hbm_bytes_per_s"] == 1e9 and data["model_shape"]["d_ff"] == 256
    assert data["planner_version"]
    code, out, _ = planner(
        "compare", world / "plan-run.json", world / "plan.yaml", "--cluster", world / "slow-box.yaml"
    )
    assert code == 1 and "note: hardware hbm_bytes_per_s 1 GB/s -> 500 MB/s" in out


def test_readme_example_is_what_the_gate_prints(planner, tmp_path):
    """docs/ci-gate.md's serve-gate example: PaLM 540B on 64 TPU v4 chips, HBM bandwidth halved."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = " ".join((root / "docs" / "ci-gate.md").read_text().split())
    note, line = re.search(
        r"`(note: hardware hbm_bytes_per_s [^`]+)` and, among (\d+) regressions, `(regressed [^`]+)`", readme
    ).group(1, 3)
    cluster = (root / "configs" / "clusters" / "tpu-v4.yaml").read_text()
    (tmp_path / "slow.yaml").write_text(re.sub(r"(?m)^(\s*hbm_bandwidth:\s*)\S+.*$", r"\g<1>0.6 TB/s", cluster))
    code, _, _ = planner("serve", "palm-540b-tpu-v4", "--chips", "64", "--format", "json", "-o", tmp_path / "b.json")
    code, out, _ = planner("compare", tmp_path / "b.json", "palm-540b-tpu-v4", "--cluster", tmp_path / "slow.yaml")
    joined = " ".join(out.split())
    assert code == 1 and note in joined and " ".join(line.split()) in joined
    count = re.search(r"among (\d+) regressions", readme).group(1)
    assert joined.startswith(f"REGRESSION: {count} of ")


def test_a_dense_serve_run_with_the_default_layouts_is_served_again(planner, tmp_path):
    """A dense model never runs the replicated FFN (dp): its saved run does not list it, and a run
    saved when it did is served again without it (it used to exit 2: --ffn dp on a dense model)."""
    plan = tmp_path / "dense.yaml"
    plan.write_text(
        "model: llama-3-8b\ncluster: h100-sxm\nworkload: {input_tokens: 1024, output_tokens: 256, context: 1280}\n"
        "search:\n  chips: [1, 2]\n",
        encoding="utf-8",
    )
    saved = tmp_path / "run.json"
    saved.write_text(planner("serve", plan, "--format", "json").out, encoding="utf-8")
    doc = json.loads(saved.read_text(encoding="utf-8"))
    assert "dp" not in doc["search"]["ffn"] and "ws1d" in doc["search"]["ffn"]
    assert planner("compare", saved, plan).code == 0
    doc["search"]["ffn"].append("dp")  # as runs saved before recorded it
    saved.write_text(json.dumps(doc), encoding="utf-8")
    again = planner("compare", saved, plan)
    assert again.code == 0, again.err
