"""`planner compare`: layouts side by side, the regression gate, pinned deployments, golden results.

The issue's done-when checks, each as a real command: plan twice then compare ("no change"); a
cluster copy with half the HBM bandwidth fails the gate naming the slower decode points; a pinned
ws1d deployment on 64 TPU v4 chips is reported behind ws2d; Markdown output is a valid GitHub
table; the GitHub Actions job of docs/ci-gate.md runs as written. Most commands go through
`planner.cli.main.main` in-process (the console script's code path); that job runs in bash.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from tools.golden import GOLDEN_DIR

from planner.commands.compare.compare import Kind, Tolerance, compare_runs
from planner.commands.compare.deployment import check_deployment, side_by_side
from planner.commands.runs import load_run, name, plan_dict, run_from_dict, run_from_result
from planner.config import list_presets, load_plan
from planner.errors import ConfigError, InfeasibleError, UsageError
from planner.search.search import best, point, search
from planner.specs.formats import KvFormat
from planner.specs.hardware import WeightFormat
from planner.specs.plan import Phase
from planner.units import parse_quantity, to_json

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / GOLDEN_DIR
PLANS = ROOT / "configs" / "plans"
PALM = str(PLANS / "palm-540b-tpu-v4.yaml")
REGENERATE = "python -m tests.tools.golden --update"


@pytest.fixture(scope="module")
def decode_plan():
    return load_plan(PALM, phases=("decode",))


@pytest.fixture(scope="module")
def decode_run(decode_plan):
    return run_from_result(search(decode_plan), "decode.json")


def github_tables(text: str) -> list[list[list[str]]]:
    """Every GitHub table in `text`, checked: a header row, a separator row with as many columns,
    body rows with as many cells (pipes inside cells escaped). Returns the cells."""
    split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    tables, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            i += 1
            continue
        block = []
        while i < len(lines) and lines[i].startswith("|"):
            block.append(lines[i])
            i += 1
        assert len(block) >= 2, f"a table needs a header and a separator row: {block}"
        header, separator, body = split(block[0]), split(block[1]), [split(row) for row in block[2:]]
        assert all(line.endswith("|") for line in block), block
        assert header and all(header), f"empty header cell: {block[0]}"
        assert len(separator) == len(header), f"separator has {len(separator)} columns, header {len(header)}"
        assert all(re.fullmatch(r":?-{3,}:?", cell) for cell in separator), block[1]
        for row, line in zip(body, block[2:]):
            assert len(row) == len(header), f"{len(row)} cells, {len(header)} columns: {line}"
        tables.append([header] + body)
    return tables


def test_github_tables_checker_rejects_broken_tables():
    with pytest.raises(AssertionError):
        github_tables("| a | b |\n|---|\n| 1 | 2 |")
    with pytest.raises(AssertionError):
        github_tables("| a | b |\n|---|---|\n| 1 | 2 | 3 |")
    with pytest.raises(AssertionError):
        github_tables("| a | b |\n|---|---|\n| 1 | x|y |")
    assert github_tables("| a | b |\n|---|---:|\n| 1 | x\\|y |")[0][1] == ["1", "x\\|y"]


# --- golden results of the bundled plans --------------------------------------------------------


@pytest.mark.parametrize("plan", list_presets("plans"))
def test_golden_result_matches_fresh_plan(plan):
    golden = GOLDEN / f"{plan}.json"
    assert golden.exists(), f"{golden} missing: run {REGENERATE}"
    report = compare_runs(load_run(str(golden)), run_from_result(search(load_plan(plan)), plan))
    changes = "\n".join(f"  {c.status} {name(c.point)}: {c.describe()}" for c in report.changes)
    assert report.identical, (
        f"{plan}: {report.verdict()}\n{changes}\nIf intended, run {REGENERATE} and review the diff."
    )


def test_golden_files_are_the_bundled_plans():
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == list_presets("plans"), f"run {REGENERATE}"


# --- done when 1: plan twice, compare -> no change ----------------------------------------------


def test_plan_twice_then_compare_says_no_change(planner, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    for out in (first, second):
        assert planner("plan", PALM, "--phase", "decode", "--format", "json", "-o", out)[0] == 0
    code, out, err = planner("compare", first, second)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "no change"
    code, out, _ = planner("compare", first, PALM, "--phase", "decode", "--format", "markdown")
    assert code == 0 and "no change" in out.splitlines()[0]
    github_tables(out)


# --- done when 2: half the HBM bandwidth -> exit 1, slower decode points named ------------------


def test_half_hbm_bandwidth_fails_the_gate_naming_slower_decode_points(planner, tmp_path, decode_run):
    cluster = (ROOT / "configs" / "clusters" / "tpu-v4.yaml").read_text()
    bandwidth = re.search(r"^(\s*hbm_bandwidth:\s*)(.+?)\s*(#.*)?$", cluster, re.M)
    halved = parse_quantity(bandwidth.group(2), "bytes_per_s") / 2
    (tmp_path / "slow-tpu-v4.yaml").write_text(
        cluster[: bandwidth.start(2)] + f"{halved:.6e}" + cluster[bandwidth.end(2) :]
    )
    plan = re.sub(r"^cluster:.*$", "cluster: slow-tpu-v4.yaml", Path(PALM).read_text(), flags=re.M)
    (tmp_path / "plan.yaml").write_text(plan)
    (tmp_path / "baseline.json").write_text(to_json(plan_dict(search(load_plan(PALM, phases=("decode",))))))

    code, out, err = planner("compare", tmp_path / "baseline.json", tmp_path / "plan.yaml", "--phase", "decode")
    assert (code, err) == (1, "")
    assert out.startswith("REGRESSION")
    slower = load_plan(str(tmp_path / "plan.yaml"), phases=("decode",))
    assert slower.cluster.chip.hbm_bytes_per_s == pytest.approx(load_plan(PALM).cluster.chip.hbm_bytes_per_s / 2)
    report = compare_runs(decode_run, run_from_result(search(slower), "plan.yaml"))
    moved = [c for c in report.changes if c.kind is Kind.MOVED and c.latency_change > 0.01]
    assert moved, "halving HBM bandwidth must slow some decode frontier point"
    lines = []  # the report wraps at 80 columns: continuation lines are indented 6 or more
    for line in out.splitlines():
        if line.startswith(" " * 6) and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    assert max(len(line) for line in out.splitlines()) <= 80
    out = "\n".join(lines)
    for c in moved:
        line = next(line for line in out.splitlines() if f"{name(c.point)}: latency" in line)
        assert line.split()[0] == "regressed"
        assert re.search(r"latency \S+ \S+ -> \S+ \S+ \(\+\d+\.\d%\)", line), line
    # largest change first among the moved points
    shown = [float(m) for m in re.findall(r": latency .*?\(\+(\d+\.\d)%\)", out)]
    assert shown == sorted(shown, reverse=True)


# --- done when 3: a pinned ws1d deployment is behind ws2d ---------------------------------------


PIN = "decode: {chips: 64, batch: 512, ffn: ws1d, attention: batch, weights: bf16}"


def _deployment_plan(tmp_path, pin: str = PIN) -> Path:
    path = tmp_path / "service.yaml"
    path.write_text(
        "model: palm-540b\ncluster: tpu-v4\nworkload: {input_tokens: 2048, output_tokens: 64, "
        f"context: 2048}}\ndeployment:\n  {pin}\n"
    )
    return path


def test_pinned_ws1d_is_behind_ws2d_and_fails_beyond_max_gap(planner, tmp_path):
    plan = _deployment_plan(tmp_path)
    spec = load_plan(str(plan))
    pinned = point(best(spec, Phase.DECODE, 64, 512, WeightFormat.BF16, "ws1d", "batch"), 0)
    ws2d = point(best(spec, Phase.DECODE, 64, 512, WeightFormat.BF16, "ws2d", "batch"), 0)
    gap = pinned.latency_s / ws2d.latency_s - 1
    assert gap > 0.05

    report = check_deployment(spec)
    (g,) = report.gaps
    assert g.best.ffn == "ws2d" and g.layout_gap == pytest.approx(gap)
    assert g.frontier_gap >= 0 and g.frontier.mfu >= g.point.mfu

    code, out, err = planner("compare", "--deployment", plan)
    assert code == 1 and err == ""
    assert f"decode: {100 * gap:.1f}% slower than ws2d+batch bf16" in out
    page = " ".join((Path(__file__).resolve().parent.parent / "docs" / "ci-gate.md").read_text().split())
    assert f"Example: `decode: {100 * gap:.1f}% slower than ws2d+batch bf16 on the same chips" in page
    code, out, _ = planner("compare", "--deployment", plan, "--max-gap", f"{100 * gap + 1:.1f}")
    assert code == 0 and out.startswith("ok")
    code, out, _ = planner("compare", "--deployment", plan, "--format", "markdown")
    assert code == 1
    (table,) = github_tables(out)
    assert table[1][-1] == f"{100 * gap:.1f}%"


def test_best_pin_has_no_gap(tmp_path):
    report = check_deployment(load_plan(str(_deployment_plan(tmp_path, PIN.replace("ws1d", "ws2d")))))
    assert not report.regressed and report.gaps[0].layout_gap == 0
    assert "is the fastest layout" in report.describe(report.gaps[0])


def test_pin_that_does_not_fit_is_an_error_with_the_reason(planner, tmp_path):
    plan = _deployment_plan(tmp_path, PIN.replace("attention: batch", "attention: heads"))
    with pytest.raises(InfeasibleError, match="does not fit in HBM: needs .* per chip"):
        check_deployment(load_plan(str(plan)))
    code, out, err = planner("compare", "--deployment", plan)
    assert code == 1 and out == ""
    assert "deployment.decode: ws1d+heads bf16 on 64 chips at batch 512 does not fit" in err


def test_plan_without_deployment_is_invalid_input(planner):
    code, _, err = planner("compare", "--deployment", PALM)
    assert code == 2 and "no 'deployment:' section" in err


# --- layouts side by side -----------------------------------------------------------------------


def test_side_by_side_rows_are_the_best_of_each_layout(decode_plan):
    plan = load_plan(PALM, phases=("decode",), chips=(64,), batches=(64, 512))
    layouts = (("ws1d", "heads"), ("ws1d", "batch"), ("ws2d", "heads"), ("ws2d", "batch"))
    rows = side_by_side(plan, layouts)
    assert len(rows) == 2 * len(layouts) * len(plan.space.weights)
    for batch in (64, 512):
        group = [r for r in rows if r.batch == batch]
        assert min(r.gap for r in group if r.point) == 0
        for r in group:
            ev = best(plan, Phase.DECODE, 64, batch, r.weights, r.ffn, r.attention)
            if ev is None:
                assert r.point is None and r.need_bytes > plan.cluster.chip.usable_hbm_bytes
                assert "does not fit" in r.reason
            else:
                assert r.point.latency_s == pytest.approx(point(ev, 0).latency_s)
                assert r.gap >= 0


def test_side_by_side_table_fits_80_columns(planner):
    code, out, err = planner(
        "compare", PALM, "--phase", "decode", "--chips", "64", "--layouts", "ws1d,ws2d", "--attention", "heads,batch"
    )
    assert (code, err) == (0, "")
    assert max(len(line) for line in out.splitlines()) <= 80
    rows = [line for line in out.splitlines() if re.match(r"\s*512\s+ws", line)]
    best_rows = [r for r in rows if r.endswith(" best")]  # ties (int8 = bf16 when compute-bound) share it
    assert len(rows) == 8 and best_rows and len({r.split()[3] for r in best_rows}) == 1
    assert any(r.endswith(" no fit") for r in rows)


def test_side_by_side_markdown_csv_json(planner):
    args = (
        "compare",
        PALM,
        "--phase",
        "decode",
        "--chips",
        "8,64",
        "--batch",
        "1,512",
        "--layouts",
        "ws1d,ws2d+batch",
        "--attention",
        "batch",
    )
    code, out, _ = planner(*args, "--format", "markdown")
    assert code == 0
    (table,) = github_tables(out)
    assert len(table) == 1 + 2 * 2 * 2 * 2  # chips x batch x layouts x weights
    code, out, _ = planner(*args, "--format", "csv")
    assert code == 0 and len(out.splitlines()) == 1 + 16
    code, out, _ = planner(*args, "--format", "json")
    rows = json.loads(out)["rows"]
    assert {(r["ffn"], r["attention"]) for r in rows} == {("ws1d", "batch"), ("ws2d", "batch")}
    assert all((r["point"] is None) == (r["gap"] is None) for r in rows)


# --- the regression gate: judging changes -------------------------------------------------------


def _scaled(p, latency=1.0, mfu=0.0):
    return replace(p, latency_s=p.latency_s * latency, mfu=p.mfu + mfu)


def test_tolerances_decide_what_regressed(decode_run):
    target = decode_run.points[5]
    for latency, mfu, regressed in (
        (1.009, 0, False),
        (1.011, 0, True),
        (1, -0.004, False),
        (1, -0.006, True),
        (0.9, 0.01, False),
    ):
        current = replace(
            decode_run, points=tuple(_scaled(p, latency, mfu) if p is target else p for p in decode_run.points)
        )
        report = compare_runs(decode_run, current)
        (change,) = report.changes
        assert change.kind is Kind.MOVED and change.regressed is regressed and report.regressed is regressed
    loose = compare_runs(
        decode_run,
        replace(decode_run, points=tuple(_scaled(p, 1.05) for p in decode_run.points)),
        Tolerance(latency=0.06),
    )
    assert not loose.regressed and loose.verdict().startswith("ok")


def test_disappeared_points_regress_only_when_the_frontier_no_longer_covers_them(decode_run):
    points = decode_run.points
    other = "wg-xyz" if points[3].ffn != "wg-xyz" else "ws1d"  # a layout key not on the frontier
    faster = replace(points[3], ffn=other, latency_s=points[3].latency_s * 0.9)  # overtakes points[3]
    covered = compare_runs(decode_run, replace(decode_run, points=points[:3] + (faster,) + points[4:]))
    kinds = {c.kind: c for c in covered.changes}
    assert set(kinds) == {Kind.APPEARED, Kind.DISAPPEARED} and not covered.regressed
    assert kinds[Kind.DISAPPEARED].reference == faster and "faster" in kinds[Kind.DISAPPEARED].describe()
    assert kinds[Kind.APPEARED].latency_change == pytest.approx(-0.1)

    dropped = compare_runs(decode_run, replace(decode_run, points=points[:-1]))  # the best-MFU point
    (change,) = dropped.changes
    assert change.kind is Kind.DISAPPEARED and change.regressed and dropped.regressed
    assert "no current point reaches its MFU" in change.describe()


def test_changes_are_listed_regressions_first_largest_first(decode_run):
    n = len(decode_run.points)
    assert n >= 4
    scale = dict(zip((0, n // 3, 2 * n // 3, n - 1), (1.02, 1.3, 0.8, 1.1)))
    current = replace(decode_run, points=tuple(_scaled(p, scale.get(i, 1.0)) for i, p in enumerate(decode_run.points)))
    changes = compare_runs(decode_run, current).changes
    assert [round(c.latency_change, 6) for c in changes] == [0.3, 0.1, 0.02, -0.2]
    assert [c.status for c in changes] == ["regressed"] * 3 + ["improved"]
    assert changes[0].describe().startswith("latency ") and "(+30.0%)" in changes[0].describe()


def test_missing_phase_is_a_regression_not_a_list_of_points(decode_run):
    full = run_from_result(search(load_plan(PALM, chips=(64, 128), batches=(1, 64))), "full")
    decode_only = replace(full, points=full.frontier(Phase.DECODE))
    report = compare_runs(full, decode_only)
    assert report.regressed and not report.changes
    assert [p.phase for p in report.phases if p.regressed] == [Phase.PREFILL]
    assert any("prefill" in note for note in report.notes)


def test_gate_markdown_is_a_valid_table_even_with_pipes_in_names(planner, tmp_path, decode_run):
    data = json.loads(to_json(plan_dict(search(load_plan(PALM, phases=("decode",))))))
    data["frontier"]["decode"][0]["ffn"] = "ws|odd"  # disappears, and its name holds a pipe
    data["frontier"]["decode"][1]["latency_s"] *= 0.5  # the current run is slower there
    (tmp_path / "baseline.json").write_text(json.dumps(data))
    code, out, _ = planner("compare", tmp_path / "baseline.json", PALM, "--phase", "decode", "--format", "markdown")
    assert code == 1 and out.startswith("**planner compare: REGRESSION")
    phases, changes = github_tables(out)
    assert phases[0] == ["phase", "best latency", "change", "best MFU", "change"]
    assert changes[1][0] == "regressed" and "(+100.0%)" in changes[1][2]
    assert any("ws\\|odd" in row[1] for row in changes[1:])
    code, out, _ = planner("compare", tmp_path / "baseline.json", PALM, "--phase", "decode", "--format", "json")
    report = json.loads(out)
    assert code == 1 and report["regressed"] and report["changes"][0]["status"] == "regressed"
    code, out, _ = planner("compare", tmp_path / "baseline.json", PALM, "--phase", "decode", "--format", "csv")
    assert out.splitlines()[0].startswith("status,kind,phase,chips,batch,ffn,attention,weights")


# --- invalid input: exit 2, naming the file and the key -----------------------------------------


def test_bad_json_names_the_file_and_line(planner, tmp_path):
    bad = tmp_path / "baseline.json"
    bad.write_text('{"model": "palm-540b",\n  "frontier": [}\n')
    code, out, err = planner("compare", bad, PALM)
    assert code == 2 and out == ""
    assert f"{bad}:2:" in err and "not valid JSON" in err


@pytest.mark.parametrize(
    "edit,key",
    [
        (lambda d: d["frontier"]["decode"][3].pop("latency_s"), "frontier.decode[3].latency_s"),
        (lambda d: d["frontier"]["decode"][0].update(mfu="high"), "frontier.decode[0].mfu"),
        (lambda d: d.pop("model"), "model"),
        (lambda d: d["workload"].pop("context"), "workload.context"),
        (lambda d: d["frontier"].update(train=[]), "frontier.train"),
        (lambda d: d["frontier"]["decode"][0].update(weights="fp6"), "frontier.decode[0].weights"),
        (lambda d: d["frontier"]["decode"][0].update(kv_cache="fp6"), "frontier.decode[0].kv_cache"),
        (lambda d: d["frontier"]["decode"].append(d["frontier"]["decode"][0]), "frontier.decode[{n_decode}]"),
    ],
)
def test_incomplete_run_names_the_key(tmp_path, edit, key):
    data = json.loads((GOLDEN / "palm-540b-tpu-v4.json").read_text())
    key = key.format(n_decode=len(data["frontier"]["decode"]))  # the appended duplicate's index
    edit(data)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as error:
        load_run(str(path))
    assert str(error.value).startswith(f"{path}: {key}:")


def test_a_different_model_needs_allow_different_model(planner, tmp_path):
    llama = str(GOLDEN / "llama-3-70b-h100.json")
    code, _, err = planner("compare", llama, GOLDEN / "palm-540b-tpu-v4.json")
    assert code == 2 and f"{llama}: model: 'llama-3-70b'" in err and "--allow-different-model" in err
    code, out, _ = planner("compare", llama, GOLDEN / "palm-540b-tpu-v4.json", "--allow-different-model")
    assert code == 1 and "note: model llama-3-70b -> palm-540b" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["compare"], "give a plan"),
        (["compare", "run.json"], "needs a plan or a second run"),
        (["compare", PALM, PALM], "the baseline must be a saved run"),
        (["compare", PALM, "--max-gap", "3"], "--max-gap: only for --deployment"),
        (["compare", PALM, "--latency-tolerance", "3"], "only for a regression gate"),
        (["compare", "a.json", "b.json", "--latency-tolerance", "-1"], "--latency-tolerance: expected a percentage"),
        (["compare", "--deployment", PALM, "--gap-to", "nearest"], "--gap-to: expected one of layout, frontier"),
        (["compare", PALM, "--layouts", "ws2d+head"], "did you mean 'heads'"),
        (["compare", PALM, "--layouts", "ws2d+batch", "--attention", "heads"], "drop one of the two"),
    ],
)
def test_usage_errors(planner, args, message):
    code, out, err = planner(*args)
    assert code == 2 and out == "" and message in err


def test_unknown_run_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_run(str(tmp_path / "missing.json"))
    with pytest.raises(UsageError, match="--allow-different-model"):
        compare_runs(
            run_from_dict(json.loads((GOLDEN / "llama-3-70b-h100.json").read_text()), "a"),
            load_run(str(GOLDEN / "palm-540b-tpu-v4.json")),
        )


# --- the GitHub Actions job of docs/ci-gate.md ------------------------------------------------------------


def readme_job() -> dict:
    text = (ROOT / "docs" / "ci-gate.md").read_text()
    section = text[text.index("<!-- compare:start -->") : text.index("<!-- compare:end -->")]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    workflows = [yaml.safe_load(block) for block in blocks if "runs-on" in block]
    assert len(workflows) == 1, "the compare section shows one GitHub Actions workflow"
    (job,) = workflows[0]["jobs"].values()
    return job


def run_job_steps(job: dict, cwd: Path, tmp_path: Path) -> tuple[int, str, str]:
    """Run the job's `run:` steps as GitHub does (bash -eo pipefail for `shell: bash`), with
    `planner` on PATH as the code under test; `pip install .` is what the test set-up did."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "planner"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "from planner.cli.main import main; main()" "$@"\n')
    shim.chmod(0o755)
    summary = tmp_path / "summary.md"
    summary.write_text("")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "GITHUB_STEP_SUMMARY": str(summary),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    for step in job["steps"]:
        if "run" not in step or step["run"].strip() == "pip install .":
            continue
        flags = ["-eo", "pipefail"] if step.get("shell") == "bash" else ["-e"]
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", *flags, "-c", step["run"]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode:
            return done.returncode, summary.read_text(), done.stderr
    return 0, summary.read_text(), ""


def test_readme_job_installs_and_gates():
    job = readme_job()
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("actions/checkout@") for u in uses)
    assert any(u.startswith("actions/setup-python@") for u in uses)
    runs = [step["run"].strip() for step in job["steps"] if "run" in step]
    assert "pip install ." in runs
    assert any("planner compare" in r and "$GITHUB_STEP_SUMMARY" in r for r in runs)


def test_readme_job_passes_on_this_repository(tmp_path):
    code, summary, err = run_job_steps(readme_job(), ROOT, tmp_path)
    assert code == 0, err
    assert summary.count("**planner compare: no change**") == len(list_presets("plans"))
    github_tables(summary)


def test_readme_job_fails_and_reports_a_regression(tmp_path):
    work = tmp_path / "repo"
    (work / "configs" / "plans").mkdir(parents=True)
    (work / "tests" / "golden").mkdir(parents=True)
    (work / "configs" / "plans" / "palm-540b-tpu-v4.yaml").write_text(Path(PALM).read_text())
    data = json.loads((GOLDEN / "palm-540b-tpu-v4.json").read_text())
    data["frontier"]["decode"][0]["latency_s"] *= 0.8  # the baseline was faster: +25% now
    (work / "tests" / "golden" / "palm-540b-tpu-v4.json").write_text(json.dumps(data))
    code, summary, _ = run_job_steps(readme_job(), work, tmp_path)
    assert code == 1
    assert summary.startswith("**planner compare: REGRESSION")
    assert "(+25.0%)" in summary
    github_tables(summary)


def test_gate_notes_a_recalibrated_cluster(planner, tmp_path):
    """A saved run records its cluster's calibration constants, so a refit shows up in the gate
    even when the cluster's name is the same; older runs without them still load."""
    cluster = (ROOT / "configs" / "clusters" / "tpu-v4.yaml").read_text()
    shipped = float(re.search(r"(?m)^\s*network_efficiency:\s*(\S+)", cluster).group(1))
    changed = re.sub(r"(?m)^(\s*network_efficiency:\s*)\S+", r"\g<1>0.30", cluster)
    (tmp_path / "tpu-v4.yaml").write_text(changed)
    plan = re.sub(r"^cluster:.*$", "cluster: tpu-v4.yaml", Path(PALM).read_text(), flags=re.M)
    (tmp_path / "plan.yaml").write_text(plan)
    baseline = plan_dict(search(load_plan(PALM, phases=("decode",))))
    (tmp_path / "baseline.json").write_text(to_json(baseline))
    code, out, err = planner("compare", tmp_path / "baseline.json", tmp_path / "plan.yaml", "--phase", "decode")
    assert f"note: calibration network_efficiency {shipped:g} -> 0.3" in out
    del baseline["calibration"]
    (tmp_path / "old.json").write_text(to_json(baseline))
    assert load_run(str(tmp_path / "old.json")).calibration is None


# --- pins name a KV-cache format, an expert layout and pipeline stages ----------------------------


def _llama_plan(tmp_path, pin: str) -> Path:
    path = tmp_path / "llama.yaml"
    path.write_text(
        "model: llama-3-70b\ncluster: h100-sxm\nworkload: {input_tokens: 2048, output_tokens: 64, "
        f"context: 2048}}\ndeployment:\n  {pin}\n"
    )
    return path


def test_pin_takes_kv_cache_and_stages_and_defaults_as_a_plan(tmp_path):
    pinned = "decode: {chips: 16, batch: 64, ffn: ws1d, attention: heads, weights: fp8, kv_cache: fp8, stages: 2}"
    spec = load_plan(str(_llama_plan(tmp_path, pinned)))
    (pin,) = spec.deployment
    assert (pin.kv_cache, pin.stages, pin.experts, pin.line) == (KvFormat.FP8, 2, "", 5)
    (g,) = check_deployment(spec).gaps
    assert (g.point.stages, g.point.kv_cache, g.point.weights) == (2, "fp8", "fp8")
    assert "fp8 (KV cache fp8) on 16 chips in 2 stages" in check_deployment(spec).describe(g)
    (plain,) = load_plan(str(_llama_plan(tmp_path, pinned.replace(", kv_cache: fp8, stages: 2", "")))).deployment
    assert (plain.kv_cache, plain.stages, plain.experts) == (KvFormat.BF16, 1, "")


def test_pin_experts_on_a_moe_model_and_refused_on_a_dense_one(planner, tmp_path):
    dense = _llama_plan(
        tmp_path, "decode: {chips: 8, batch: 8, ffn: ws1d, attention: heads, weights: bf16, experts: ep}"
    )
    code, _, err = planner("compare", "--deployment", dense)
    assert code == 2 and ":5:" in err and "deployment.decode.experts" in err and "dense" in err
    stages = _llama_plan(
        tmp_path, "decode: {chips: 8, batch: 8, ffn: ws1d, attention: heads, weights: bf16, stages: 3}"
    )
    code, _, err = planner("compare", "--deployment", stages)
    assert code == 2 and "deployment.decode.stages" in err and "3 pipeline stages" in err


def test_pin_that_does_not_fit_names_its_line_and_the_smaller_formats_that_fit(planner, tmp_path):
    pin = "decode: {chips: 2, batch: 128, ffn: ws1d, attention: heads, weights: int8}"
    code, out, err = planner("compare", "--deployment", _llama_plan(tmp_path, pin))
    assert code == 1 and out == ""
    assert "llama.yaml:5: deployment.decode: ws1d+heads int8 on 2 chips at batch 128 does not fit" in err
    assert "int4 weights (they fit)" in err and "int8 weights" not in err.split("hint:")[1]
    code, _, err = planner("compare", "--deployment", _llama_plan(tmp_path, pin.replace("int8", "fp8")))
    assert code == 1 and "int4 weights (they fit)" in err and "fp8 weights" not in err.split("hint:")[1]


def test_pinned_expert_layout_is_the_one_costed(tmp_path):
    path = tmp_path / "moe.yaml"
    path.write_text(
        "model: mixtral-8x7b\ncluster: h100-sxm\nworkload: {input_tokens: 2048, output_tokens: 64, "
        "context: 2048}\ndeployment:\n  decode: {chips: 8, batch: 64, ffn: ws1d, attention: heads, "
        "weights: bf16, experts: tp}\n"
    )
    spec = load_plan(str(path))
    (g,) = check_deployment(spec).gaps
    assert g.point.experts == "tp" and "ws1d+heads+tp bf16" in check_deployment(spec).describe(g)
    others = {
        point(best(spec, Phase.DECODE, 8, 64, WeightFormat.BF16, "ws1d", "heads", experts=e), 0).latency_s
        for e in ("tp", "ep")
    }
    assert len(others) == 2  # the expert layout matters, so pinning it is not a no-op
