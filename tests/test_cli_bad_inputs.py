"""Bad input through the real command line: every file of the corpus (tests/bad_inputs, the
`CASES` table of test_bad_inputs.py), bad flags, and searches where nothing is feasible.

Each must exit non-zero (2 for invalid input, 1 for nothing feasible) with the file, line or
flag named on stderr, nothing on stdout and no traceback. The corpus runs in-process through
`planner.cli.main.main`; a handful of cases also run the installed command in a subprocess.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from test_bad_inputs import BAD_INPUTS, CASES


def command_for(kind: str, path: str) -> list[str]:
    """How a person would hand this kind of file to the planner."""
    return {
        "model": ["plan", "--model", path, "--cluster", "tpu-v4"],
        "cluster": ["plan", "--cluster", path, "--model", "palm-8b"],
        "plan": ["plan", path],
    }[kind]


@pytest.mark.parametrize(("name", "kind", "expected"), CASES, ids=[c[0] for c in CASES])
def test_corpus_through_the_cli(planner, name, kind, expected):
    code, out, err = planner(*command_for(kind, str(BAD_INPUTS / name)))
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("error: ")
    for substring in expected:
        assert substring in err, f"{substring!r} not in:\n{err}"


def test_explain_reports_the_same_file_errors(planner):
    code, out, err = planner(
        "explain",
        "--model",
        str(BAD_INPUTS / "model-typo-key.yaml"),
        "--cluster",
        "tpu-v4",
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--ffn",
        "ws2d",
        "--attention",
        "batch",
        "--weights",
        "int8",
    )
    assert code == 2 and out == "" and "did you mean 'd_ff'" in err


BASE = ["plan", "--model", "palm-8b", "--cluster", "tpu-v4"]
EXPLAIN = [
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
    "1",
    "--ffn",
    "ws2d",
    "--attention",
    "batch",
    "--weights",
    "int8",
]

# (arguments, what stderr must say)
BAD_FLAGS = [
    (BASE + ["--batch", "-1"], ["--batch", "positive"]),
    (BASE + ["--batch", "0"], ["--batch", "positive"]),
    (BASE + ["--batch", "1,x"], ["--batch", "whole numbers", "'1,x'"]),
    (BASE + ["--batch", "1.5"], ["--batch", "whole numbers"]),
    (BASE + ["--batch", "99999999999999999999"], ["--batch"]),
    (BASE + ["--batch", ","], ["--batch"]),
    (BASE + ["--chips", "12"], ["--chips", "cannot form 12 chips", "8, 16, 32"]),
    (BASE + ["--chips", "0"], ["--chips", "positive"]),
    (BASE + ["--ffn", "ws3d"], ["--ffn", "ws3d", "ws1d, ws2d"]),
    (BASE + ["--attention", "head"], ["--attention", "head"]),
    (BASE + ["--weights", "fp3"], ["--weights", "fp3"]),
    (BASE + ["--phase", "decod"], ["--phase", "decod"]),
    (BASE + ["--format", "xml"], ["--format", "table, json, csv, markdown", "'xml'"]),
    (BASE + ["--input-tokens", "-5"], ["--input-tokens", "positive"]),
    (BASE + ["--input-tokens", "abc"], ["--input-tokens"]),
    (BASE + ["--output-tokens", "0"], ["--output-tokens"]),
    (BASE + ["--context", "1e3"], ["--context"]),
    (BASE + ["--max-latency", "nan"], ["--max-latency"]),
    (BASE + ["--max-latency", "-1"], ["--max-latency"]),
    (BASE + ["--max-latency", "5 parsecs"], ["--max-latency", "parsecs"]),
    (BASE + ["--min-mfu", "2"], ["--min-mfu", "out of reach"]),
    (BASE + ["--min-mfu", "lots"], ["--min-mfu", "'lots'"]),
    (BASE + ["-o", "/no/such/folder/out.txt"], ["-o/--output", "/no/such/folder", "does not exist"]),
    (BASE + ["--plot", "--format", "json"], ["--plot", "--format json"]),
    (BASE + ["--chip", "8"], ["No such option: --chip", "--chips"]),
    (["plan", "--model", "palm-8b"], ["--cluster is required", "tpu-v4"]),
    (["plan", "--model", "palm-8bb", "--cluster", "tpu-v4"], ["palm-8bb", "did you mean 'palm-8b'"]),
    (["plan", "--model", "palm-8b", "--cluster", "tpu-v5"], ["tpu-v5", "did you mean 'tpu-v5p'"]),
    (["plan", "--model", "./missing.yaml", "--cluster", "tpu-v4"], ["missing.yaml"]),
    (["plan", "no-such-plan.yaml"], ["no-such-plan.yaml"]),
    (
        ["plan", str(BAD_INPUTS.parent.parent / "configs" / "models" / "palm-8b.yaml")],
        ["palm-8b.yaml:", "looks like a model file", "--model"],
    ),
    (["plan", str(BAD_INPUTS)], ["is a directory"]),
    (["plan", "--model", str(BAD_INPUTS), "--cluster", "tpu-v4"], ["holds no config.json"]),  # a model folder
    (EXPLAIN[:-2], ["Missing option '--weights'"]),
    ([a for a in EXPLAIN if a not in ("--chips", "8")], ["--chips is required"]),
    (EXPLAIN + ["--batch", "x"], ["--batch"]),
    (EXPLAIN + ["--ffn", "nope"], ["--ffn", "nope"]),
    (["frobnicate"], ["No such command 'frobnicate'"]),
    (["presets", "extra"], ["unexpected extra argument"]),
]


@pytest.mark.parametrize(("args", "expected"), BAD_FLAGS, ids=[" ".join(a[5:] or a) for a, _ in BAD_FLAGS])
def test_bad_flags(planner, args, expected):
    code, out, err = planner(*args)
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    for substring in expected:
        assert substring in err, f"{substring!r} not in:\n{err}"


def test_nothing_feasible_counts_reasons_and_hints(planner):
    # PaLM 540B in bf16 needs about 1 TB of weights: 8 chips of 32 GiB cannot hold it.
    code, out, err = planner("plan", "--model", "palm-540b", "--cluster", "tpu-v4", "--chips", "8", "--weights", "bf16")
    assert code == 1 and out == ""
    assert re.search(r"nothing feasible among (\d+) candidates \(\1 does not fit in HBM\)", err), err
    assert "at least 32 chips of 32 GiB" in err
    assert "smallest slice that fits: 32" in err


def test_nothing_feasible_under_constraints(planner):
    code, out, err = planner(*BASE, "--chips", "8", "--phase", "decode", "--max-latency", "1 us")
    assert code == 1 and out == ""
    assert "latency above max_latency_s" in err and "--max-latency" in err


def test_explain_that_does_not_fit(planner):
    code, out, err = planner(
        "explain",
        "--model",
        "palm-540b",
        "--cluster",
        "tpu-v4",
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--ffn",
        "ws2d",
        "--attention",
        "batch",
        "--weights",
        "bf16",
    )
    assert code == 1 and out == ""
    assert "does not fit in HBM" in err and "smallest slice that fits: 32" in err


def test_output_into_a_folder(planner, tmp_path):
    code, out, err = planner(*BASE, "--chips", "8", "--batch", "1", "-o", str(tmp_path))
    assert code == 2 and out == "" and "is a folder" in err


PLANNER = shutil.which("planner")


@pytest.mark.skipif(PLANNER is None, reason="needs the installed command")
@pytest.mark.parametrize(
    "args, code, expected",
    [
        (command_for("model", str(BAD_INPUTS / "model-typo-key.yaml")), 2, "did you mean 'd_ff'"),
        (command_for("cluster", str(BAD_INPUTS / "cluster-hbm-unit.yaml")), 2, "unknown unit"),
        (command_for("plan", str(BAD_INPUTS / "plan-chips-cluster.yaml")), 2, "cannot form 12 chips"),
        (command_for("model", str(BAD_INPUTS / "model-python-tag.yaml")), 2, "not allowed"),
        (
            ["plan", "--model", "palm-540b", "--cluster", "tpu-v4", "--chips", "8", "--weights", "bf16"],
            1,
            "smallest slice that fits: 32",
        ),
        (["frobnicate"], 2, "No such command"),
        (["explain", "--model", "palm-8b"], 2, "Missing option"),
    ],
)
def test_installed_command(args, code, expected):
    done = subprocess.run([PLANNER, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == code
    assert done.stdout == ""
    assert expected in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(PLANNER is None, reason="needs the installed command")
def test_closed_pipe_is_quiet():
    # `planner plan ... | head -1`: the reader leaves early; no BrokenPipeError noise.
    done = subprocess.run(
        f"'{PLANNER}' plan {BAD_INPUTS.parent.parent}/configs/plans/palm-540b-tpu-v4.yaml --format csv | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.startswith("phase,")
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
