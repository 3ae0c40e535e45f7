"""Extract the command-line flag NAMES of an engine from its argument definitions at a pinned
commit, into a data file a test checks emitted launch commands against (issue 28, `--emit`).
Only names are read; nothing else of the engine's source is kept.

    python tests/tools/engine_flags.py vllm --checkout ~/src/vllm --commit 001999d2f360... \
        [--out tests/data/engine_flags/vllm.json]

`--checkout` is a git clone of the engine's repository (a `--filter=blob:none` clone is enough:
the files are read with `git show COMMIT:PATH`). Each source is read one of two ways:

- `argparse`: every string literal starting with `--` among the arguments of a call to
  `add_argument` or of a `click.option` decorator (older vLLM and SGLang, trtllm-serve);
- `fields:Class`: the fields of dataclass `Class`, each as `--field-name` (newer vLLM's
  `EngineArgs`, newer SGLang's `ServerArgs`, which generate their flags from the fields).

The data file records the repository, commit and each source file, so moving the pin and
rerunning this catches a renamed flag.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

# engine -> (repository, ((path, how), ...)); `how` as in the module docstring
SOURCES = {
    "vllm": ("vllm-project/vllm", (("vllm/engine/arg_utils.py", "fields:EngineArgs"),)),
    "vllm-bench": ("vllm-project/vllm", (("vllm/benchmarks/serve.py", "argparse"),)),
    "sglang": (
        "sgl-project/sglang",
        (("python/sglang/srt/server_args.py", "argparse"), ("python/sglang/bench_serving.py", "argparse")),
    ),
    "trtllm": (
        "NVIDIA/TensorRT-LLM",
        (("tensorrt_llm/commands/serve.py", "argparse"), ("tensorrt_llm/llmapi/llm_args.py", "fields:TorchLlmArgs")),
    ),
}
OPTION_CALLS = {"add_argument", "option"}


def flags_in(source: str, how: str) -> set[str]:
    """The flag names one source defines, read as `how` says."""
    tree = ast.parse(source)
    found: set[str] = set()
    if how == "argparse":
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in OPTION_CALLS:
                    for arg in node.args:
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--"):
                            found.add(arg.value)
        return found
    kind, _, cls = how.partition(":")
    if kind != "fields" or not cls:
        raise ValueError(f"unknown way to read a source: {how!r}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    if not item.target.id.startswith("_"):
                        found.add("--" + item.target.id.replace("_", "-"))
    return found


def extract(engine: str, checkout: Path, commit: str) -> dict:
    repo, sources = SOURCES[engine]
    flags: set[str] = set()
    for path, how in sources:
        text = subprocess.run(
            ["git", "-C", str(checkout), "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
        ).stdout
        flags |= flags_in(text, how)
    return {
        "engine": engine,
        "repository": repo,
        "commit": commit,
        "sources": [{"path": p, "read_as": h} for p, h in sources],
        "flags": sorted(flags),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engine", choices=sorted(SOURCES))
    parser.add_argument("--checkout", type=Path, required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    data = extract(args.engine, args.checkout, args.commit)
    out = args.out or Path(__file__).resolve().parents[1] / "data" / "engine_flags" / f"{args.engine}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"{out}: {len(data['flags'])} flags of {data['repository']} at {args.commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
