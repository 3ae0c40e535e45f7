"""Property: whatever the files and flags, the command line exits 0, 1 or 2 with its message on
stderr; it never raises (a bug would surface here as an exception with its traceback).

The loader itself is fuzzed in test_config_fuzz.py; this file drives the whole command
(`planner.cli.main.run`, in-process) with random YAML files, mutated presets and random flag values.
Search spaces are kept small so that the valid inputs the fuzzer finds stay quick to plan.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_config_fuzz import NASTY, TREES, encode, mutated_preset

from planner.cli import main as cli

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = ["--phase", "decode", "--batch", "1,64", "--ffn", "ws2d,wg-xyz", "--weights", "int8"]
KIND_ARGS = {
    "models": lambda path: ["plan", "--model", path, "--cluster", "tpu-v4", "--chips", "8", *SMALL],
    "clusters": lambda path: ["plan", "--cluster", path, "--model", "palm-8b", *SMALL],
    "plans": lambda path: ["plan", path, *SMALL],
}


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.run(args)
        except SystemExit as exit_:  # click exits on a closed pipe; nothing else should
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def check(code: int, out: str, err: str) -> None:
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err
    if code == 0:
        assert out and not err
    else:
        assert out == "" and err.strip(), err


def run_file(kind: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_bytes(data)
        check(*run(KIND_ARGS[kind](str(path))))


@FUZZ
@given(kind=st.sampled_from(list(KIND_ARGS)), tree=TREES)
def test_random_yaml_documents(kind, tree):
    run_file(kind, encode(yaml.safe_dump(tree, allow_unicode=True)))


@FUZZ
@given(case=mutated_preset())
def test_mutated_presets(case):
    kind, text = case
    run_file(kind, encode(text))


FLAG_VALUES = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=12),
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(str),
    st.lists(st.integers(-5, 2000), max_size=4).map(lambda v: ",".join(map(str, v))),
)
PLAN_FLAGS = [
    "--chips",
    "--phase",
    "--batch",
    "--weights",
    "--ffn",
    "--attention",
    "--input-tokens",
    "--output-tokens",
    "--context",
    "--max-latency",
    "--min-mfu",
    "--format",
    "--model",
    "--cluster",
]


@FUZZ
@given(flags=st.dictionaries(st.sampled_from(PLAN_FLAGS), FLAG_VALUES, min_size=1, max_size=4), plot=st.booleans())
def test_random_plan_flags(flags, plot):
    args = {
        "--model": "palm-8b",
        "--cluster": "tpu-v4",
        "--chips": "8",
        "--phase": "decode",
        "--batch": "1,64",
        **flags,
    }
    argv = ["plan", *[part for item in args.items() for part in item]] + (["--plot"] if plot else [])
    check(*run(argv))


EXPLAIN_FLAGS = [
    "--chips",
    "--phase",
    "--batch",
    "--ffn",
    "--attention",
    "--weights",
    "--context",
    "--format",
    "--model",
    "--cluster",
]


@FUZZ
@given(flags=st.dictionaries(st.sampled_from(EXPLAIN_FLAGS), FLAG_VALUES, min_size=1, max_size=3))
def test_random_explain_flags(flags):
    args = {
        "--model": "palm-8b",
        "--cluster": "tpu-v4",
        "--chips": "8",
        "--phase": "decode",
        "--batch": "8",
        "--ffn": "ws2d",
        "--attention": "batch",
        "--weights": "int8",
        **flags,
    }
    check(*run(["explain", *[part for item in args.items() for part in item]]))


@FUZZ
@given(
    argv=st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "plan",
                    "explain",
                    "presets",
                    "--help",
                    "--format",
                    "-o",
                    "--plot",
                    "--ascii",
                    "--chips",
                    "--version",
                    "-",
                    "--",
                ]
            ),
            st.text(max_size=8),
        ),
        max_size=5,
    )
)
def test_random_argument_lists(argv):
    with tempfile.TemporaryDirectory() as folder:  # -o writes land in a scratch folder
        argv = [
            str(Path(folder) / a.replace("/", "_")) if i and argv[i - 1] == "-o" and a.strip(".-") else a
            for i, a in enumerate(argv)
        ]
        code, out, err = run(argv)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err
