"""The command line as a person uses it: real commands on the bundled configs, exit codes,
stdout for results, stderr for the rest; help texts; -o atomicity; an 80-column pseudo-terminal.

Most tests call `planner.cli.main.main` in-process (sys.argv patched, SystemExit caught): the same
code path as the console script, at a fraction of a subprocess' cost. A few run the installed
command in a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from planner.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
PALM_PLAN = str(ROOT / "configs" / "plans" / "palm-540b-tpu-v4.yaml")
SMALL = ["--model", "palm-8b", "--cluster", "tpu-v4", "--chips", "8,16", "--batch", "1,16,256"]
EXPLAIN = [
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
]
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_plan_table_fits_80_columns_when_piped(planner):
    r = planner("plan", PALM_PLAN)
    assert r.code == 0 and r.err == ""
    assert "prefill frontier" in r.out and "decode frontier" in r.out
    assert max(len(line) for line in r.out.splitlines()) <= 80
    assert not ESCAPE.search(r.out)
    assert not any(line != line.rstrip() for line in r.out.splitlines())
    # human units, right-aligned numbers
    rows = [line for line in r.out.splitlines() if re.match(r"\s*\d+\s+\d+\s+\d+\s+w", line)]
    assert len(rows) >= 20
    assert all(re.search(r"\d+(\.\d+)? (ms|s|us) ", row) for row in rows)
    assert all("%" in row for row in rows)


def test_plan_formats(planner, tmp_path):
    r = planner("plan", *SMALL, "--format", "json")
    data = json.loads(r.out)
    assert set(data) == {
        "model",
        "cluster",
        "calibration",
        "calibrated",
        "calibration_status",
        "workload",
        "search",
        "frontier",
        "planner_version",
        "hardware",
        "model_shape",
        "engine",
    }
    assert set(data["frontier"]) == {"prefill", "decode"}
    csv = planner("plan", *SMALL, "--format", "csv").out.splitlines()
    assert csv[0].startswith("phase,chips,batch,ffn") and len(csv) > 2
    md = planner("plan", *SMALL, "--format", "markdown").out
    assert "| chips |" in md and "### decode frontier" in md


def test_flags_accept_units(planner):
    free = json.loads(planner("plan", *SMALL, "--phase", "decode", "--format", "json").out)["frontier"]["decode"]
    middle = free[len(free) // 2]  # a constraint that keeps some points and drops others
    limit_ms, floor_pct = middle["latency_s"] * 1e3 * 1.01, middle["mfu"] * 100 * 0.99
    r = planner(
        "plan",
        *SMALL,
        "--phase",
        "decode",
        "--max-latency",
        f"{limit_ms:.3f} ms",
        "--min-mfu",
        f"{floor_pct:.3f}%",
        "--format",
        "json",
    )
    assert r.code == 0, r.err
    points = json.loads(r.out)["frontier"]["decode"]
    assert 0 < len(points) < len(free)
    assert all(p["latency_s"] <= limit_ms / 1e3 and p["mfu"] >= floor_pct / 100 for p in points)


def test_explain_table_reads_at_80_columns(planner):
    from planner.units import fmt_bytes, fmt_percent, fmt_rate, fmt_seconds

    r = planner(*EXPLAIN)
    assert r.code == 0
    data = json.loads(planner(*EXPLAIN, "--format", "json").out)
    lines = r.out.splitlines()
    assert max(len(line) for line in lines) <= 80
    # every row: its name and six numbers on one line, its sharding on the next
    w_in = next(layer for layer in data["layers"] if layer["name"] == "einsum W_in")
    row = next(i for i, line in enumerate(lines) if line.startswith("einsum W_in "))
    expected = [
        fmt_rate(w_in["flops"], ""),
        fmt_bytes(w_in["hbm_bytes"]),
        "-",
        fmt_seconds(w_in["seconds"]["compute"]),
        fmt_seconds(w_in["seconds"]["memory"]),
        "-",
    ]
    assert lines[row].split()[2:] == " ".join(expected).split()
    # ... with the format the einsum runs at, the rate it sustains there and its share of the peak
    rate = fmt_rate(w_in["sustained_flop_per_s"], "FLOP/s")
    share = f"{100 * w_in['sustained_flop_per_s'] / w_in['peak_flop_per_s']:.0f}%"
    assert w_in["sustained_flop_per_s"] < w_in["peak_flop_per_s"]  # calibrated tpu-v4: matmul_efficiency < 1
    assert (
        lines[row + 1].strip()
        == f"x{w_in['repeat']}  {w_in['notation']}  [{w_in['compute_format']} at {rate}: {share} of peak]"
    )
    assert any(line.startswith("total") for line in lines)
    assert f"MFU      {fmt_percent(data['mfu'])}" in r.out


def test_explain_formats(planner):
    from planner.units import fmt_percent

    data = json.loads(planner(*EXPLAIN, "--format", "json").out)
    assert {"layers", "memory", "notation"} <= set(data)
    assert planner(*EXPLAIN, "--format", "csv").out.startswith("row,notation,collective")
    md = planner(*EXPLAIN, "--format", "markdown").out
    assert md.startswith("**decode: 64 chips (mesh 4x4x4), batch 64, ws2d+batch, int8 weights**")
    assert "| per step | sharding | FLOP | HBM | net | compute | memory | network |" in md
    assert f"- MFU      {fmt_percent(data['mfu'])}" in md and "| **total** |" in md


def test_presets_lists_key_figures(planner):
    r = planner("presets")
    assert r.code == 0
    for word in (
        "palm-540b",
        "540.4 B",
        "tpu-v4",
        "275 TFLOP/s",
        "32 GiB",
        "1.2 TB/s",
        "palm-540b-tpu-v4",
        "nvlink + infiniband",
    ):
        assert word in r.out
    assert max(len(line) for line in r.out.splitlines()) <= 80


def test_ascii_output_is_ascii(planner):
    for args in (
        ("plan", *SMALL, "--ascii"),
        ("plan", *SMALL, "--ascii", "--plot"),
        (*EXPLAIN, "--ascii"),
        ("presets", "--ascii"),
    ):
        r = planner(*args)
        assert r.code == 0
        r.out.encode("ascii")


@pytest.mark.parametrize("command", [(), ("plan",), ("explain",), ("presets",), ("compare",)])
def test_help_has_purpose_units_and_example(planner, command):
    r = planner(*command, "--help")
    assert r.code == 0 and r.err == ""
    assert r.out.startswith("Usage: planner")
    purpose = r.out.split("\n\n")[1].strip()
    assert purpose and purpose[0].isupper()
    if command in ((), ("plan",), ("explain",)):
        assert "Example" in r.out and "planner " in r.out.split("Example")[1]
    if command in (("plan",), ("explain",)):
        for unit in ("[chips", "[sequences", "[tokens"):
            assert unit in r.out


@pytest.mark.parametrize("command", [(), ("plan",), ("explain",), ("serve",), ("compare",), ("calibrate",)])
def test_help_examples_fit_80_columns(planner, command):
    """Example lines are not re-wrapped by the help formatter: each must fit 80 columns itself."""
    r = planner(*command, "--help")
    lines, examples = r.out.splitlines(), []
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("planner ", "# ")) or (i and lines[i - 1].endswith("\\")):
            examples.append(line)
    assert any(line.lstrip().startswith("planner ") for line in examples)
    assert [line for line in examples if len(line) > 80] == []


def test_plan_help_names_every_unit(planner):
    text = planner("plan", "--help").out.split("Options:")[1]
    for flag, unit in (
        ("--max-latency", "[s"),
        ("--min-mfu", "fraction"),
        ("--input-tokens", "tokens"),
        ("--output-tokens", "tokens"),
        ("--context", "tokens"),
        ("--batch", "sequences"),
        ("--chips", "chips"),
    ):
        block = text.split(flag, 1)[1].split("\n  -")[0]
        assert unit in block, flag


def test_no_arguments_shows_help(planner):
    r = planner()
    assert r.code == 0 and "Commands:" in r.out


def test_version_and_completion(planner):
    assert planner("--version").out.startswith("planner ")
    r = planner("--help")
    assert "--install-completion" in r.out and "--show-completion" in r.out


# --- -o/--output ---------------------------------------------------------------------------------


def test_output_file_is_plain_text(planner, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    target = tmp_path / "plan.txt"
    r = planner("plan", *SMALL, "-o", str(target))
    assert r.code == 0 and r.out == ""
    text = target.read_text()
    assert "decode frontier" in text and not ESCAPE.search(text)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert [p.name for p in tmp_path.iterdir()] == ["plan.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # like any new file, not mkstemp's 0600


def test_output_interrupted_leaves_old_file(planner, tmp_path, monkeypatch):
    target = tmp_path / "plan.json"
    target.write_text("old\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    r = planner("plan", *SMALL, "--format", "json", "-o", str(target))
    assert r.code == 130 and "interrupted" in r.err
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary left behind


def test_output_error_leaves_no_file(planner, tmp_path):
    target = tmp_path / "plan.csv"
    r = planner(
        "plan",
        "--model",
        "palm-540b",
        "--cluster",
        "tpu-v4",
        "--chips",
        "8",
        "--weights",
        "bf16",
        "--format",
        "csv",
        "-o",
        str(target),
    )
    assert r.code == 1 and r.out == ""
    assert list(tmp_path.iterdir()) == []


def test_output_dash_is_stdout(planner):
    assert planner("plan", *SMALL, "--format", "csv", "-o", "-").out.startswith("phase,")


# --- a real pseudo-terminal, 80 columns ----------------------------------------------------------


def run_in_pty(args, env=None, stdout_pipe=False, cols=80, rows=24):
    """Run a command with its stderr (and stdout unless `stdout_pipe`) on a pseudo-terminal of
    `cols` x `rows`; return (exit code, terminal bytes, stdout bytes)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    env = {**base, "TERM": "xterm-256color", **(env or {})}
    proc = subprocess.Popen(
        args, stdin=slave, stdout=subprocess.PIPE if stdout_pipe else slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO once the child has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read() if stdout_pipe else b""
    code = proc.wait()
    os.close(master)
    return code, b"".join(chunks), out


PLANNER = shutil.which("planner")
needs_pty = pytest.mark.skipif(
    sys.platform == "win32" or PLANNER is None, reason="needs a POSIX pseudo-terminal and the installed command"
)


@needs_pty
def test_pty_80_columns_renders_without_broken_lines():
    code, screen, _ = run_in_pty([PLANNER, "plan", PALM_PLAN])
    assert code == 0
    text = ESCAPE.sub("", screen.decode()).replace("\r\n", "\n")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if re.match(r"\s*\d+\s+\d+\s+\d+\s+w", line)]
    from planner.config import load_plan
    from planner.search.search import search

    points = sum(len(ph.frontier) for ph in search(load_plan(PALM_PLAN)).phases)
    assert len(rows) == points  # every frontier point on exactly one line
    assert all(re.search(r"(compute|memory|comm)$", row) for row in rows)
    assert b"\x1b[1m" in screen  # a terminal gets bold headers...


@needs_pty
def test_pty_no_color_has_no_escape_codes():
    code, screen, _ = run_in_pty([PLANNER, "plan", PALM_PLAN], env={"NO_COLOR": "1"})
    assert code == 0 and b"decode frontier" in screen
    assert b"\x1b" not in screen


@needs_pty
def test_pty_json_has_no_progress_or_colour_bytes():
    # The progress line at once (PLANNER_PROGRESS_DELAY_S=0: searches are now faster than its
    # usual half-second delay) shows on the terminal (stderr) only.
    env = {**os.environ, "PLANNER_PROGRESS_DELAY_S": "0"}
    code, screen, out = run_in_pty(
        [
            PLANNER,
            "plan",
            "--model",
            "llama-3.1-405b",
            "--cluster",
            "h100-sxm",
            "--stages",
            "1,2,4,8",
            "--format",
            "json",
        ],
        env=env,
        stdout_pipe=True,
    )
    assert code == 0
    assert b"\x1b" not in out and b"\r" not in out and b"searching" not in out
    json.loads(out)
    assert b"searching layouts" in screen


@needs_pty
def test_pty_plot_fits_80x24():
    code, screen, _ = run_in_pty([PLANNER, "plan", PALM_PLAN, "--plot"])
    assert code == 0
    lines = ESCAPE.sub("", screen.decode()).replace("\r\n", "\n").splitlines()
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
    assert sum("frontier" in line for line in lines) == 2


def test_completion_offers_presets_and_files(monkeypatch, capsys, tmp_path):
    (tmp_path / "mine.yaml").write_text("x: 1\n")
    monkeypatch.chdir(tmp_path)
    for words, cword, expected in (
        ("planner pl", "1", {"plan"}),
        ("planner plan --model palm-5", "3", {"palm-540b"}),
        ("planner plan --cluster mine", "3", {"mine.yaml"}),
    ):
        monkeypatch.setenv("_PLANNER_COMPLETE", "complete_bash")
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", cword)
        monkeypatch.setattr(sys, "argv", ["planner"])
        with pytest.raises(SystemExit):
            cli.main()
        assert set(capsys.readouterr().out.split()) == expected


# --- the progress line ---------------------------------------------------------------------------


def test_progress_shows_only_for_slow_work_and_erases_itself():
    import io
    import time

    from planner.render.progress import Activity

    fast = io.StringIO()
    with Activity("searching", enabled=True, delay_s=0.3, ascii_only=True, file=fast):
        pass
    assert fast.getvalue() == ""

    slow = io.StringIO()
    with Activity("searching", enabled=True, delay_s=0.05, ascii_only=True, file=slow) as activity:
        time.sleep(0.15)
        activity.update(3, 4)
        time.sleep(0.15)
    text = slow.getvalue()
    assert activity.shown and "searching" in text and " 75 %" in text
    assert "\x1b" not in text  # plain mode: carriage returns only
    assert text.endswith("\r") and text.rsplit("\r", 2)[1].strip() == ""  # erased at the end

    off = io.StringIO()
    with Activity("searching", enabled=False, delay_s=0.0, file=off):
        time.sleep(0.05)
    assert off.getvalue() == ""


def test_plan_prints_the_feasible_phase_when_another_has_nothing(planner):
    """--max-latency below every decode request: prefill's frontier is still printed, decode's
    reason (with the fastest decode that fits) goes to stderr, and the exit code is 1."""
    done = planner("plan", PALM_PLAN, "--max-latency", "200ms")
    assert done.code == 1
    assert "prefill frontier" in done.out and "decode: nothing feasible" in done.out
    assert "the fastest decode that fits takes" in done.err and "per step" in done.err
    assert "does not fit in HBM" not in done.err.split("hint:")[1]  # the hint names the limit, not HBM
    as_json = planner("plan", PALM_PLAN, "--min-mfu", "60%", "--format", "json")
    assert as_json.code == 1
    d = json.loads(as_json.out)
    assert d["frontier"]["prefill"] and d["frontier"]["decode"] == []
    assert "highest MFU that fits" in d["infeasible"]["decode"]


def test_max_step_latency_limits_time_per_output_token(planner):
    """--max-step-latency bounds each decode step (time per output token), not the request;
    prefill is not limited by it; nothing under it names the fastest step that fits."""
    r = planner("plan", PALM_PLAN, "--max-step-latency", "20ms", "--format", "json")
    assert r.code == 0
    d = json.loads(r.out)
    assert d["frontier"]["decode"] and all(p["step_latency_s"] <= 0.020 for p in d["frontier"]["decode"])
    assert any(p["latency_s"] > 0.5 for p in d["frontier"]["decode"])  # the request may take longer
    assert (
        d["frontier"]["prefill"]
        == json.loads(planner("plan", PALM_PLAN, "--format", "json").out)["frontier"]["prefill"]
    )
    r = planner("plan", PALM_PLAN, "--max-step-latency", "5ms", "--phase", "decode")
    assert (
        r.code == 1 and "the fastest decode step that fits takes" in r.err and "--max-step-latency is 5.00 ms" in r.err
    )


def test_progress_delay_from_the_environment(monkeypatch):
    from planner.render.progress import DELAY_S, Activity

    for value, expected in (("0", 0.0), ("1.5", 1.5), ("-1", DELAY_S), ("soon", DELAY_S)):
        monkeypatch.setenv("PLANNER_PROGRESS_DELAY_S", value)
        assert Activity("searching", enabled=False).delay_s == expected
