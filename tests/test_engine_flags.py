"""tests/tools/engine_flags.py reads flag names from an engine's argument definitions at a commit
(issue 28): argparse/click literals, and flags generated from a dataclass's fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
import engine_flags  # noqa: E402

ARGPARSE = """
import argparse, click
def add_cli_args(parser):
    parser.add_argument("--tensor-parallel-size", "-tp", type=int, help="not a --flag")
    parser.add_argument('--kv-cache-dtype', choices=["auto", "fp8"])
    group = parser.add_argument_group("x")
    group.add_argument("--max-num-seqs")
@click.option("--tp_size", type=int)
def serve(tp_size): print("--not-an-option")
"""
FIELDS = """
import dataclasses
@dataclasses.dataclass
class EngineArgs:
    tensor_parallel_size: int = 1
    enable_expert_parallel: bool = False
    _private: int = 0
class Other:
    ignored: int = 0
"""


def test_argparse_and_click_literals():
    assert engine_flags.flags_in(ARGPARSE, "argparse") == {
        "--tensor-parallel-size",
        "--kv-cache-dtype",
        "--max-num-seqs",
        "--tp_size",
    }


def test_dataclass_fields_become_flags():
    assert engine_flags.flags_in(FIELDS, "fields:EngineArgs") == {"--tensor-parallel-size", "--enable-expert-parallel"}


def test_extract_reads_the_pinned_commit(tmp_path, monkeypatch):
    repo = tmp_path / "engine"
    (repo / "pkg").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "pkg" / "args.py").write_text(ARGPARSE)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    pinned = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (repo / "pkg" / "args.py").write_text(ARGPARSE.replace("--max-num-seqs", "--max-running-seqs"))
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    monkeypatch.setitem(engine_flags.SOURCES, "toy", ("toy/engine", (("pkg/args.py", "argparse"),)))
    data = engine_flags.extract("toy", repo, pinned)
    assert data["commit"] == pinned and data["sources"] == [{"path": "pkg/args.py", "read_as": "argparse"}]
    assert "--max-num-seqs" in data["flags"] and "--max-running-seqs" not in data["flags"]  # the pin, not HEAD
