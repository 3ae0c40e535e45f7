"""Extract the command-line flag NAMES (and config-file KEYS) of an engine from its argument
definitions at a pinned commit, into a data file a test checks emitted launch commands against
(issue 28, `--emit`). Only names are read; nothing else of the engine's source is kept.

    python tests/tools/engine_flags.py vllm --checkout ~/src/vllm --commit 001999d2f360... \
        [--source-commit PATH=SHA ...] [--out tests/data/engine_flags/vllm.json]

`--checkout` is a git clone of the engine's repository (a `--filter=blob:none` clone is enough:
the files are read with `git show COMMIT:PATH`). Every source is read at `--commit` unless a
`--source-commit PATH=SHA` names another commit for it (the stored copies the lists were first
transcribed from hold some files at different commits; each file's commit is recorded). Each
source is read one of these ways; the first three give flags, the last two give keys:

- `argparse`: every string literal starting with `--` among the positional arguments of a call
  to `add_argument` or of a `click.option` decorator, and the `flag_name="--..."` keyword of
  Dynamo's `add_argument`/`add_negatable_bool_argument` helpers; a flag made with
  `action=...BooleanOptionalAction` or `add_negatable_bool_argument` also gets its `--no-` form
  (vLLM/SGLang benchmarks, trtllm-serve, Dynamo);
- `fields:Class[,Class2...]`: the fields of the dataclasses, each as `--field-name` (vLLM's
  `EngineArgs`, and `FrontendArgs` with its base `BaseFrontendArgs` for `--host`/`--port`);
- `annotated-fields:Class`: the fields of `Class` annotated `A[T, "help", ...]` or
  `A[T, Arg(...), ...]` (SGLang's `ServerArgs`, whose flags are generated from them): the flag is
  `Arg(cli_name=...)` or `--field-name`, plus `Arg(aliases=[...])`; `Arg(no_cli=True)` and fields
  with neither help nor `Arg` have no flag; `Arg(action=argparse.BooleanOptionalAction)` adds
  the `--no-` forms. Flags registered by hand in the same file are read with `argparse` too;
- `keys:Class;prefix=ClassA|ClassB;...`: YAML keys of pydantic model `Class` (its annotated
  fields and those of its base classes in the same file, without `_private` and `ClassVar`
  ones, plus `AliasChoices` spellings), and `prefix.key` for the fields of the nested models
  (TensorRT-LLM's `--extra_llm_api_options` file: `TorchLlmArgs`, `kv_cache_config=KvCacheConfig`);
- `yaml-keys`: the top-level keys of a YAML mapping (MaxText's `configs/base.yml`, whose keys
  are given on the command line as `key=value`).

The data file records the repository, each source file and its commit, so moving a pin and
rerunning this catches a renamed flag.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

import yaml

# engine -> (repository, ((path, how), ...)); `how` as in the module docstring
SOURCES = {
    "vllm": (
        "vllm-project/vllm",
        (
            ("vllm/engine/arg_utils.py", "fields:EngineArgs"),
            ("vllm/entrypoints/openai/cli_args.py", "fields:FrontendArgs,BaseFrontendArgs"),
            ("vllm/entrypoints/openai/cli_args.py", "argparse"),
        ),
    ),
    "vllm-bench": (
        "vllm-project/vllm",
        (("vllm/benchmarks/serve.py", "argparse"), ("vllm/benchmarks/datasets.py", "argparse")),
    ),
    "sglang": (
        "sgl-project/sglang",
        (
            ("python/sglang/srt/server_args.py", "annotated-fields:ServerArgs"),
            ("python/sglang/srt/server_args.py", "argparse"),
        ),
    ),
    "sglang-bench": ("sgl-project/sglang", (("python/sglang/bench_serving.py", "argparse"),)),
    "trtllm": (
        "NVIDIA/TensorRT-LLM",
        (
            ("tensorrt_llm/commands/serve.py", "argparse"),
            (
                "tensorrt_llm/llmapi/llm_args.py",
                "keys:TorchLlmArgs;kv_cache_config=KvCacheConfig;speculative_config=MTPDecodingConfig|"
                "Eagle3DecodingConfig;cuda_graph_config=CudaGraphConfig;moe_config=MoeConfig;"
                "attention_dp_config=AttentionDpConfig;cache_transceiver_config=CacheTransceiverConfig",
            ),
        ),
    ),
    "trtllm-bench": ("NVIDIA/TensorRT-LLM", (("tensorrt_llm/serve/scripts/benchmark_serving.py", "argparse"),)),
    "dynamo": (
        "ai-dynamo/dynamo",
        tuple(
            (f"components/src/dynamo/{path}", "argparse")
            for path in (
                "frontend/frontend_args.py",
                "common/configuration/groups/router_args.py",
                "common/configuration/groups/kv_router_args.py",
                "common/configuration/groups/runtime_args.py",
                "sglang/backend_args.py",
                "trtllm/backend_args.py",
            )
        ),
    ),
    "jetstream": ("AI-Hypercomputer/maxtext", (("src/MaxText/configs/base.yml", "yaml-keys"),)),
    "jetstream-bench": ("AI-Hypercomputer/JetStream", (("benchmarks/benchmark_serving.py", "argparse"),)),
}
OPTION_CALLS = {"add_argument", "option", "add_negatable_bool_argument"}
NEGATABLE_CALLS = {"add_negatable_bool_argument"}
KEY_WAYS = ("keys:", "yaml-keys")


def _name(node: ast.AST) -> str:
    """The last dotted component of a name (`argparse.BooleanOptionalAction` -> its last part)."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return getattr(node, "id", "")


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _negations(flags: list[str]) -> set[str]:
    return {"--no-" + f[2:] for f in flags if f.startswith("--")}


def _argparse_flags(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _name(node.func) in OPTION_CALLS):
            continue
        names = [s for s in map(_string, node.args) if s and s.startswith("--")]
        flag_name = _string(_keyword(node, "flag_name") or ast.Constant(None))
        if flag_name and flag_name.startswith("--"):
            names.append(flag_name)
        found.update(names)
        action = _keyword(node, "action")
        if _name(node.func) in NEGATABLE_CALLS or (action is not None and _name(action) == "BooleanOptionalAction"):
            found |= _negations(names)
    return found


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    """A class of the module by name, following module-level `Alias = Class` assignments."""
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    aliases = {
        t.id: n.value.id
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Name)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    seen = set()
    while name not in classes and name in aliases and name not in seen:
        seen.add(name)
        name = aliases[name]
    if name not in classes:
        raise ValueError(f"no class {name!r} in the source")
    return classes[name]


def _annotated_meta(annotation: ast.AST) -> list[ast.AST]:
    """The metadata of `A[T, meta, ...]` / `Annotated[T, meta, ...]`; empty for other annotations."""
    if isinstance(annotation, ast.Subscript) and _name(annotation.value) in {"A", "Annotated"}:
        parts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        return list(parts[1:])
    return []


def _annotated_field_flags(tree: ast.Module, cls: str) -> set[str]:
    found: set[str] = set()
    for item in _class(tree, cls).body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        meta = _annotated_meta(item.annotation)
        arg = next((m for m in meta if isinstance(m, ast.Call) and _name(m.func) == "Arg"), None)
        has_help = any(_string(m) is not None or isinstance(m, ast.JoinedStr) for m in meta)
        if arg is None and not has_help:
            continue  # registered by hand, if at all
        if arg is not None:
            no_cli = _keyword(arg, "no_cli")
            if isinstance(no_cli, ast.Constant) and no_cli.value is True:
                continue
        cli_name = _string(_keyword(arg, "cli_name")) if arg is not None else None
        names = [cli_name or "--" + item.target.id.replace("_", "-")]
        aliases = _keyword(arg, "aliases") if arg is not None else None
        if isinstance(aliases, (ast.List, ast.Tuple)):
            names += [s for s in map(_string, aliases.elts) if s]
        found.update(names)
        action = _keyword(arg, "action") if arg is not None else None
        if action is not None and _name(action) == "BooleanOptionalAction":
            found |= _negations(names)
    return found


def _model_keys(tree: ast.Module, cls: str) -> set[str]:
    """Field names of pydantic model `cls` and its same-module bases, with `AliasChoices` spellings."""
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    keys: set[str] = set()
    todo, seen = [_class(tree, cls)], set()
    while todo:
        node = todo.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        todo += [classes[_name(b)] for b in node.bases if _name(b) in classes]
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            name = item.target.id
            annotation = item.annotation
            if name.startswith("_") or (
                isinstance(annotation, ast.Subscript) and _name(annotation.value) == "ClassVar"
            ):
                continue
            keys.add(name)
            if isinstance(item.value, ast.Call):
                alias = _keyword(item.value, "validation_alias")
                if isinstance(alias, ast.Call) and _name(alias.func) == "AliasChoices":
                    keys.update(s for s in map(_string, alias.args) if s)
    return keys


def flags_in(source: str, how: str) -> set[str]:
    """The flag names one source defines, read as `how` says."""
    kind, _, cls = how.partition(":")
    if how == "argparse":
        return _argparse_flags(ast.parse(source))
    if kind == "fields" and cls:
        found: set[str] = set()
        tree = ast.parse(source)
        for name in cls.split(","):
            for item in _class(tree, name).body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    if not item.target.id.startswith("_"):
                        found.add("--" + item.target.id.replace("_", "-"))
        return found
    if kind == "annotated-fields" and cls:
        return _annotated_field_flags(ast.parse(source), cls)
    raise ValueError(f"unknown way to read flags from a source: {how!r}")


def keys_in(source: str, how: str) -> set[str]:
    """The config-file keys one source defines (`keys:...` or `yaml-keys`), nested ones dotted."""
    if how == "yaml-keys":
        data = yaml.safe_load(source)
        if not isinstance(data, dict):
            raise ValueError("yaml-keys: the source is not a YAML mapping")
        return {str(k) for k in data}
    kind, _, spec = how.partition(":")
    if kind != "keys" or not spec:
        raise ValueError(f"unknown way to read keys from a source: {how!r}")
    tree = ast.parse(source)
    top, *nested = spec.split(";")
    keys = _model_keys(tree, top)
    for part in nested:
        prefix, _, models = part.partition("=")
        if not models:
            raise ValueError(f"keys: expected prefix=Class in {part!r}")
        for model in models.split("|"):
            keys |= {f"{prefix}.{k}" for k in _model_keys(tree, model)}
    return keys


def extract(engine: str, checkout: Path, commit: str, source_commits: dict[str, str] | None = None) -> dict:
    repo, sources = SOURCES[engine]
    source_commits = source_commits or {}
    flags: set[str] = set()
    keys: set[str] = set()
    read = []
    for path, how in sources:
        at = source_commits.get(path, commit)
        text = subprocess.run(
            ["git", "-C", str(checkout), "show", f"{at}:{path}"], check=True, capture_output=True, text=True
        ).stdout
        if how.startswith(KEY_WAYS):
            keys |= keys_in(text, how)
        else:
            flags |= flags_in(text, how)
        read.append({"path": path, "read_as": how, "commit": at})
    data = {"engine": engine, "repository": repo, "commit": commit, "sources": read, "flags": sorted(flags)}
    if any(how.startswith(KEY_WAYS) for _, how in sources):
        data["keys"] = sorted(keys)
    return data


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engine", choices=sorted(SOURCES))
    parser.add_argument("--checkout", type=Path, required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--source-commit", action="append", default=[], metavar="PATH=SHA")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    pairs = [s.partition("=") for s in args.source_commit]
    if any(not sep or not sha for _, sep, sha in pairs):
        parser.error("--source-commit: expected PATH=SHA")
    data = extract(args.engine, args.checkout, args.commit, {path: sha for path, _, sha in pairs})
    out = args.out or Path(__file__).resolve().parents[1] / "data" / "engine_flags" / f"{args.engine}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"{out}: {len(data['flags'])} flags, {len(data.get('keys', []))} keys of {data['repository']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
