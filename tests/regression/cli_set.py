"""A regression set of CLI invocations: record what each prints (stdout, stderr, exit code, and
any -o file) and check that a later tree prints the same bytes.

    python tests/regression/cli_set.py record OUT.json    # on the tree before a change
    python tests/regression/cli_set.py check OUT.json     # on the tree after it: exit 1 on a difference
    python tests/regression/cli_set.py list               # the invocations

The set is a fixed list (hand-picked commands, bad inputs with their exit codes) plus a seeded
random sample of flag combinations for plan/explain/serve/compare (seed SEED), all small enough
to run in about a minute. Each runs in-process through `planner.cli.main.run` from the repository
root. Not part of the pytest suite: it compares two trees, and a refactor that should change
nothing runs it before and after.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import sys
import tempfile
from pathlib import Path

SEED = 23
ROOT = Path(__file__).resolve().parents[2]

SMALL = ["--model", "llama-3-8b", "--cluster", "h100-sxm"]
FIXED: list[list[str]] = [
    # plan
    ["plan", "palm-540b-tpu-v4", "--phase", "decode", "--chips", "64", "--batch", "64,256"],
    ["plan", *SMALL, "--chips", "8", "--phase", "decode", "--batch", "8,64"],
    ["plan", *SMALL, "--chips", "1,8", "--format", "json"],
    ["plan", *SMALL, "--chips", "8", "--format", "csv", "--weights", "all"],
    ["plan", *SMALL, "--chips", "8", "--format", "markdown", "--kv-cache", "bf16,fp8"],
    ["plan", *SMALL, "--chips", "8", "--plot", "--phase", "decode"],
    ["plan", *SMALL, "--chips", "8", "--plot", "--ascii", "--phase", "prefill"],
    ["plan", *SMALL, "--chips", "16", "--stages", "1,2", "--phase", "decode", "--batch", "64"],
    ["plan", *SMALL, "--chips", "8", "--input-tokens", "1k", "--output-tokens", "1k", "--context", "2k"],
    ["plan", *SMALL, "--chips", "8", "--max-latency", "200ms", "--min-mfu", "1%"],
    ["plan", *SMALL, "--chips", "8", "--phase", "decode", "--max-step-latency", "0.01"],
    ["plan", *SMALL, "--chips", "8", "--sparsity", "2:4", "--weights", "fp8", "--phase", "prefill"],
    [
        "plan",
        "--model",
        "mixtral-8x7b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "8",
        "--experts",
        "ep,tp",
        "--load-imbalance",
        "1.5",
        "--phase",
        "decode",
        "--batch",
        "64",
    ],
    [
        "plan",
        "--model",
        "llama-3-70b",
        "--cluster",
        "tpu-v4",
        "--chips",
        "16",
        "--phase",
        "decode",
        "--ffn",
        "ws2d",
        "--attention",
        "batch",
    ],
    [
        "plan",
        *SMALL,
        "--chips",
        "8",
        "--input-tokens",
        "4k",
        "--context",
        "1k",
        "--allow-short-context",
        "--phase",
        "decode",
    ],
    ["plan", *SMALL, "--chips", "8", "--phase", "decode", "--format", "json", "-o", "{tmp}/plan.json"],
    # explain
    [
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
    ],
    [
        "explain",
        *SMALL,
        "--chips",
        "8",
        "--phase",
        "prefill",
        "--batch",
        "4",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
        "--format",
        "json",
    ],
    [
        "explain",
        *SMALL,
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "4",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "fp8",
        "--kv-cache",
        "fp8",
        "--format",
        "csv",
    ],
    [
        "explain",
        *SMALL,
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "4",
        "--ffn",
        "ws2d",
        "--attention",
        "batch",
        "--weights",
        "bf16",
        "--format",
        "markdown",
    ],
    ["explain", *SMALL, "--chips", "8", "--row", "1", "--phase", "decode", "--batch", "8,64"],
    [
        "explain",
        *SMALL,
        "--chips",
        "16",
        "--phase",
        "decode",
        "--batch",
        "64",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
        "--stages",
        "2",
    ],
    ["explain", "palm-540b-tpu-v4", "--row", "2", "--phase", "decode", "--chips", "64", "--batch", "64"],
    [
        "explain",
        "--model",
        "mixtral-8x7b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "64",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
        "--experts",
        "ep",
    ],
    # serve
    ["serve", *SMALL, "--chips", "1,8", "--batch", "1,8,64"],
    ["serve", *SMALL, "--chips", "8", "--batch", "8,64", "--format", "json"],
    ["serve", *SMALL, "--chips", "8", "--batch", "8,64", "--format", "csv", "--mode", "static"],
    ["serve", *SMALL, "--chips", "8", "--batch", "8,64", "--format", "markdown", "--price", "2.5/h"],
    ["serve", *SMALL, "--chips", "8", "--batch", "8,64", "--ttft", "500ms", "--tpot", "30ms"],
    ["serve", *SMALL, "--chips", "8", "--batch", "8,64", "--e2e", "0.001"],
    ["serve", *SMALL, "--chips", "8", "--batch", "8,64", "--all", "--input-tokens", "1k", "--output-tokens", "1k"],
    ["serve", *SMALL, "--chips", "8", "--batch", "8,64", "--row", "1"],
    [
        "serve",
        *SMALL,
        "--chips",
        "8",
        "--batch",
        "8",
        "--weights",
        "fp8",
        "--kv-cache",
        "fp8",
        "--mode",
        "colocated,disaggregated",
    ],
    ["serve", "llama-3-70b-h100", "--chips", "8", "--batch", "16,64"],
    # compare
    [
        "compare",
        "palm-540b-tpu-v4",
        "--phase",
        "decode",
        "--chips",
        "64",
        "--layouts",
        "ws1d,ws2d",
        "--attention",
        "heads,batch",
        "--format",
        "markdown",
        "--batch",
        "64",
    ],
    ["compare", "palm-540b-tpu-v4", "--phase", "decode", "--chips", "64", "--layouts", "ws2d+batch", "--batch", "64"],
    ["compare", "llama-3-70b-h100", "--phase", "prefill", "--chips", "8", "--batch", "1,8", "--format", "json"],
    ["compare", "tests/golden/palm-540b-tpu-v4.json", "tests/golden/palm-540b-tpu-v4.json"],
    ["compare", "tests/golden/palm-540b-tpu-v4.json", "tests/golden/llama-3-70b-h100.json"],
    [
        "compare",
        "tests/golden/palm-540b-tpu-v4.json",
        "tests/golden/llama-3-70b-h100.json",
        "--allow-different-model",
        "--format",
        "json",
    ],
    ["compare", "--deployment", "palm-540b-tpu-v4"],
    # help and listings
    ["--help"],
    ["plan", "--help"],
    ["explain", "--help"],
    ["serve", "--help"],
    ["compare", "--help"],
    ["presets"],
]
BAD: list[list[str]] = [
    ["plan"],
    ["plan", "--model", "llama-3-8b"],
    ["plan", *SMALL, "--chips", "7"],
    ["plan", *SMALL, "--chips", "8,x"],
    ["plan", *SMALL, "--chips", "8,,16"],
    ["plan", *SMALL, "--weights", "fp9"],
    ["plan", *SMALL, "--phase", "middle"],
    ["plan", *SMALL, "--format", "yaml"],
    ["plan", *SMALL, "--plot", "--format", "json"],
    ["plan", *SMALL, "--phase", "prefill", "--output-tokens", "64"],
    ["plan", *SMALL, "--input-tokens", "1M"],
    ["plan", *SMALL, "--input-tokens", "2k", "--context", "1k"],
    ["plan", *SMALL, "--max-latency", "30"],
    ["plan", *SMALL, "--min-mfu", "40"],
    ["plan", *SMALL, "--load-imbalance", "2"],
    ["plan", *SMALL, "--chips", "8", "--stages", "2"],
    ["plan", "--model", "mixtral-8x7b", "--cluster", "h100-sxm", "--load-imbalance", "0.5"],
    ["plan", *SMALL, "--sparsity", "3:4"],
    ["plan", *SMALL, "--batch", "0"],
    ["plan", *SMALL, "--kv-cache", "fp4"],
    ["plan", "--model", "nosuch", "--cluster", "h100-sxm"],
    ["plan", "nosuch-plan"],
    ["plan", *SMALL, "--bogus"],
    ["explain", *SMALL, "--chips", "8"],
    [
        "explain",
        *SMALL,
        "--phase",
        "decode",
        "--batch",
        "1",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
    ],
    [
        "explain",
        *SMALL,
        "--chips",
        "8,16",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
    ],
    [
        "explain",
        *SMALL,
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
        "--max-latency",
        "1",
    ],
    ["explain", *SMALL, "--chips", "8", "--row", "99", "--phase", "decode", "--batch", "8"],
    ["serve", *SMALL, "--mode", "fast"],
    ["serve", *SMALL, "--mode", "static,static"],
    ["serve", *SMALL, "--ttft", "-1"],
    ["serve", *SMALL, "--price", "cheap"],
    ["serve", *SMALL, "--plot", "x.gif"],
    ["serve", *SMALL, "--chips", "8", "--batch", "8", "--row", "99"],
    ["compare"],
    ["compare", "tests/golden/palm-540b-tpu-v4.json"],
    ["compare", "palm-540b-tpu-v4", "--latency-tolerance", "2"],
    ["compare", "--deployment", "palm-540b-tpu-v4", "llama-3-70b-h100"],
    ["compare", "palm-540b-tpu-v4", "--max-gap", "3"],
    ["compare", "llama-3-70b-h100", "tests/golden/palm-540b-tpu-v4.json"],
    ["compare", "tests/golden/palm-540b-tpu-v4.json", "tests/golden/palm-540b-tpu-v4.json", "--chips", "8"],
    ["compare", "palm-540b-tpu-v4", "--layouts", "ws2d+nope", "--chips", "64", "--phase", "decode"],
]


def sampled(n: int = 24) -> list[list[str]]:
    """`n` seeded combinations of flags, small enough to search in well under a second each."""
    rng = random.Random(SEED)
    models = ["llama-3-8b", "mistral-7b", "palm-8b", "qwen3-32b"]
    clusters = {"h100-sxm": ["1", "8", "1,8"], "h200-sxm": ["1", "8"], "a100-80gb": ["8"], "tpu-v4": ["8", "16"]}
    out = []
    for i in range(n):
        command = ("plan", "serve", "compare", "plan")[i % 4]
        cluster = rng.choice(sorted(clusters))
        args = [
            command,
            "--model",
            rng.choice(models),
            "--cluster",
            cluster,
            "--chips",
            rng.choice(clusters[cluster]),
            "--batch",
            rng.choice(["1,16", "8,64", "32"]),
        ]
        if command == "compare":
            out.append(
                [
                    "compare",
                    "palm-540b-tpu-v4",
                    "--chips",
                    rng.choice(["8", "16"]),
                    "--batch",
                    rng.choice(["1,16", "64"]),
                    "--phase",
                    rng.choice(["prefill", "decode", "both"]),
                    "--weights",
                    rng.choice(["bf16", "int8", "bf16,int8"]),
                ]
            )
            continue
        if command == "plan" and rng.random() < 0.6:
            args += ["--phase", rng.choice(["prefill", "decode", "both"])]
        if rng.random() < 0.5:
            args += ["--weights", rng.choice(["bf16", "int8", "bf16,int8", "all"])]
        if rng.random() < 0.4:
            args += ["--input-tokens", rng.choice(["512", "1k", "4k"])]
        if rng.random() < 0.3 and "prefill" not in args:
            args += ["--output-tokens", rng.choice(["16", "128"])]
        if rng.random() < 0.3:
            args += ["--ffn", rng.choice(["ws1d", "ws2d", "ws1d,wg-xyz"])]
        if rng.random() < 0.3:
            args += ["--attention", rng.choice(["heads", "batch"])]
        if rng.random() < 0.3 and "--weights" not in args:
            args += ["--kv-cache", rng.choice(["bf16", "fp8", "bf16,int8"])]
        args += ["--format", rng.choice(["table", "json", "csv", "markdown"])]
        out.append(args)
    return out


def invocations() -> list[list[str]]:
    return FIXED + BAD + sampled()


def run_one(args: list[str], tmp: str) -> dict:
    from planner.cli import main as cli

    args = [a.replace("{tmp}", tmp) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.run(args)
        except SystemExit as exit_:  # pragma: no cover - run() returns codes
            code = exit_.code
    files = {}
    for path in sorted(Path(tmp).iterdir()):
        files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        path.unlink()
    return {
        "args": args if "{tmp}" not in " ".join(args) else args,
        "code": code,
        "stdout_sha256": hashlib.sha256(out.getvalue().encode()).hexdigest(),
        "stdout_head": out.getvalue()[:200],
        "stderr": err.getvalue(),
        "files": files,
    }


def record() -> list[dict]:
    os.chdir(ROOT)
    os.environ["COLUMNS"] = "80"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for args in invocations():
            result = run_one(args, tmp)
            result["args"] = args
            results.append(result)
    return results


def main(argv: list[str]) -> int:
    if argv[:1] == ["list"]:
        for args in invocations():
            print("planner " + " ".join(args))
        return 0
    if len(argv) != 2 or argv[0] not in ("record", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    results = record()
    path = Path(argv[1])
    if argv[0] == "record":
        path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(
            f"{len(results)} invocations recorded in {path} "
            f"({sum(r['code'] != 0 for r in results)} with a non-zero exit)"
        )
        return 0
    before = json.loads(path.read_text(encoding="utf-8"))
    differ = [(b, a) for b, a in zip(before, results) if b != a]
    if len(before) != len(results):
        print(f"{len(before)} invocations recorded, {len(results)} now")
        return 1
    for b, a in differ:
        print("differs: planner " + " ".join(a["args"]))
        for key in ("code", "stdout_sha256", "stderr", "files"):
            if b[key] != a[key]:
                print(f"  {key}: {b[key]!r}\n      -> {a[key]!r}")
    print(f"{len(results) - len(differ)} of {len(results)} identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
