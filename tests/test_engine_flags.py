"""tests/tools/engine_flags.py reads flag names and config keys from an engine's argument definitions
at a pinned commit (issue 28): argparse/click literals and helper keywords, flags generated from
dataclass fields (plain or annotated), pydantic model keys, YAML keys; and every data file it
writes names its sources and commits."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    both = engine_flags.flags_in(FIELDS, "fields:EngineArgs,Other")
    assert both == {"--tensor-parallel-size", "--enable-expert-parallel", "--ignored"}


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
    assert data["commit"] == pinned and data["sources"] == [
        {"path": "pkg/args.py", "read_as": "argparse", "commit": pinned}
    ]
    assert "--max-num-seqs" in data["flags"] and "--max-running-seqs" not in data["flags"]  # the pin, not HEAD


DYNAMO = """
import argparse
def add_arguments(g):
    add_argument(g, flag_name="--http-port", env_var="DYN_HTTP_PORT", default=8000, help="x",
                 obsolete_flag="--port")
    add_negatable_bool_argument(g, flag_name="--router-kv-events", env_var="E", default=True, help="y")
    g.add_argument("-i", "--interactive", action=argparse.BooleanOptionalAction, help="z")
"""


def test_helper_keywords_and_negatable_flags():
    assert engine_flags.flags_in(DYNAMO, "argparse") == {
        "--http-port",
        "--router-kv-events",
        "--no-router-kv-events",
        "--interactive",
        "--no-interactive",
    }  # obsolete spellings are help text only; short options are not flags


ANNOTATED = """
import argparse, dataclasses
@dataclasses.dataclass
class ServerArgs:
    model_path: A[str, Arg(help="m", aliases=["--model"]), NS("model")]
    tp_size: A[int, "The tensor parallelism size.", NS("parallel")] = 1
    fp8_gemm_runner_backend: A[str, Arg(help="b", cli_name="--fp8-gemm-backend")] = "auto"
    disable_cuda_graph: A[bool, Arg(no_cli=True), NS("exec")] = False
    dllm_fdfo: A[bool, Arg(help="f", action=argparse.BooleanOptionalAction)] = True
    reasoning_parser: A[Optional[str], NS("serving")] = None
    plain: int = 0
    @staticmethod
    def add_cli_args(parser):
        parser.add_argument("--reasoning-parser", type=str)
"""


def test_annotated_fields_follow_the_generator_rules():
    assert engine_flags.flags_in(ANNOTATED, "annotated-fields:ServerArgs") == {
        "--model-path",
        "--model",
        "--tp-size",
        "--fp8-gemm-backend",
        "--dllm-fdfo",
        "--no-dllm-fdfo",
    }
    assert engine_flags.flags_in(ANNOTATED, "argparse") == {"--reasoning-parser"}


PYDANTIC = """
class StrictBaseModel: pass
class Base(StrictBaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="m")
    tensor_parallel_size: int = Field(default=1)
    _parallel: int = PrivateAttr(default=None)
class Torch(Base):
    LIMITS: ClassVar[int] = 3
    kv_cache_config: "Kv" = Field(default_factory=dict)
    speculative_config: object = None
class KvBase(StrictBaseModel):
    dtype: str = "auto"
class KvCacheConfig(KvBase):
    free_gpu_memory_fraction: float = 0.9
Kv = KvCacheConfig
class Mtp(StrictBaseModel):
    max_draft_len: int = Field(default=None, validation_alias=AliasChoices("max_draft_len", "num_draft"))
"""


def test_pydantic_keys_with_bases_aliases_and_nesting():
    keys = engine_flags.keys_in(PYDANTIC, "keys:Torch;kv_cache_config=Kv;speculative_config=Mtp")
    assert keys == {
        "model",
        "tensor_parallel_size",
        "kv_cache_config",
        "speculative_config",
        "kv_cache_config.dtype",
        "kv_cache_config.free_gpu_memory_fraction",
        "speculative_config.max_draft_len",
        "speculative_config.num_draft",
    }
    with pytest.raises(ValueError, match="no class"):
        engine_flags.keys_in(PYDANTIC, "keys:Missing")


def test_yaml_top_level_keys_and_unknown_ways():
    text = "run_name: ''\nici_tensor_parallelism: 1\ndebug:\n  rl: False\nmesh_axes: ['data', 'tensor']\n"
    assert engine_flags.keys_in(text, "yaml-keys") == {"run_name", "ici_tensor_parallelism", "debug", "mesh_axes"}
    with pytest.raises(ValueError, match="unknown way"):
        engine_flags.flags_in(ARGPARSE, "click")
    with pytest.raises(ValueError, match="unknown way"):
        engine_flags.keys_in(text, "toml-keys")


def test_extract_reads_each_source_at_its_own_commit(tmp_path, monkeypatch):
    repo = tmp_path / "engine"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "serve.py").write_text(ARGPARSE)
    (repo / "base.yml").write_text("per_device_batch_size: 1\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    first = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (repo / "base.yml").write_text("per_device_batch_size: 1\nquantize_kvcache: false\n")
    (repo / "serve.py").write_text(ARGPARSE.replace("--max-num-seqs", "--max-running-seqs"))
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    second = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    monkeypatch.setitem(
        engine_flags.SOURCES, "toy", ("toy/engine", (("serve.py", "argparse"), ("base.yml", "yaml-keys")))
    )
    data = engine_flags.extract("toy", repo, first, {"base.yml": second})
    assert data["sources"] == [
        {"path": "serve.py", "read_as": "argparse", "commit": first},
        {"path": "base.yml", "read_as": "yaml-keys", "commit": second},
    ]
    assert "--max-num-seqs" in data["flags"] and "--max-running-seqs" not in data["flags"]
    assert data["keys"] == ["per_device_batch_size", "quantize_kvcache"]


DATA = Path(__file__).resolve().parent / "data" / "engine_flags"


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.stem)
def test_each_data_file_is_a_regenerable_pinned_list(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    repo, sources = engine_flags.SOURCES[path.stem]  # every file can be regenerated
    assert data["engine"] == path.stem and data["repository"] == repo
    assert [(s["path"], s["read_as"]) for s in data["sources"]] == list(sources)
    for commit in [data["commit"], *(s["commit"] for s in data["sources"] if "commit" in s)]:
        assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert data["flags"] == sorted(set(data["flags"])) and all(f.startswith("--") for f in data["flags"])
    keys = data.get("keys", [])
    assert keys == sorted(set(keys)) and not any(k.startswith("-") for k in keys)
    assert data["flags"] or keys
    assert ("keys" in data) == any(how.startswith(engine_flags.KEY_WAYS) for _, how in sources)
