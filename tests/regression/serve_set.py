"""A regression set for `planner serve`: seeded commands over models, clusters, formats, modes,
targets, prices, weight and KV-cache formats, token counts, layouts and `--row`, run in-process;
each command's exit code and the SHA-256 of its stdout and stderr are compared with those
recorded in serve_set.json (beside this file). A change that should not move serve's output
(a faster sweep, a refactor) must leave every hash as it was.

    python tests/regression/serve_set.py            # check against serve_set.json (exit 1 on a change)
    python tests/regression/serve_set.py --record   # record the current outputs (on purpose only)
    python tests/regression/serve_set.py --save DIR # also write each output to DIR/NNN.{out,err}
    python tests/regression/serve_set.py --list     # print the commands

The commands are the same for a given SEED and COUNT (numpy's seeded generator picks them).
History: recorded from the code before issue 24 (serve's pools costed one `evaluate` per
candidate); re-recorded after it, which moved only commands 075, 093 and 096: their flags leave
no layout to search, now invalid input (exit 2) instead of "nothing fits in HBM" (exit 1).
Re-recorded after issue 26: GPU commands move with the engine profile (sglang by default, its fixed
times in place of the static-batch ones), JSON outputs carry the new `engine` key, and commands 006-008
(deepseek-v3-h200), which had failed with a KeyError on the `dp` layout's serving name, now run.
Outputs carry planner's version (JSON provenance): a version bump moves every JSON command.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "serve_set.json"
SEED, COUNT = 24, 120

# (model, chip counts that hold its weights on each cluster family: small HBM, large HBM)
MODELS = {
    "llama-3-8b": ((1, 2, 4), (1, 2, 4)),
    "mistral-7b": ((1, 2, 4), (1, 2)),
    "llama-3-70b": ((8, 16), (2, 4, 8)),
    "qwen3-32b": ((4, 8), (1, 2, 4)),
    "gemma-3-27b": ((4, 8), (1, 2, 4)),  # local (sliding-window) layers
    "palm-62b": ((8, 16), (2, 4)),
    "mixtral-8x7b": ((8, 16), (2, 4, 8)),  # MoE
    "qwen3-30b-a3b": ((4, 8), (1, 2, 4)),  # MoE
    "gpt-oss-120b": ((8, 16), (2, 4, 8)),  # MoE with local layers
    "llama-4-maverick": ((32, 64), (8, 16)),  # MoE every second layer
    "deepseek-v3": ((64,), (8, 16)),  # MoE, latent attention
}
# cluster -> (family: 0 small HBM, 1 large), weight formats it runs, the smallest slices it forms
GPU = (1, 2, 4, 8, 16, 32, 64)
CLUSTERS = {
    "h100-sxm": (1, ("bf16", "fp8", "int8"), GPU),
    "h200-sxm": (1, ("bf16", "fp8", "int8"), GPU),
    "a100-80gb": (1, ("bf16", "int8"), GPU),
    "b200": (1, ("bf16", "fp8", "fp4"), GPU),
    "mi300x": (1, ("bf16", "fp8"), GPU),
    "gb200-nvl72": (1, ("bf16", "fp8"), GPU),
    "tpu-v4": (0, ("bf16", "int8"), (8, 16, 32, 64)),
    "tpu-v5e": (0, ("bf16", "int8"), (1, 4, 8, 16, 32, 64)),
    "tpu-v5p": (1, ("bf16", "int8"), (4, 8, 16, 32, 64)),
}
SMALL = ("llama-3-8b", "mistral-7b", "qwen3-30b-a3b")  # fast enough to search every chip count
PLANS = ("llama-3-70b-h100", "palm-540b-tpu-v4", "deepseek-v3-h200")
FORMATS = ("json", "csv", "markdown", "table")
MODES = ("static", "colocated", "disaggregated")


def pick(rng, values, k=None):
    """One value of `values` (k None), or a sorted subset of k of them."""
    if k is None:
        return values[int(rng.integers(len(values)))]
    chosen = sorted(rng.choice(len(values), size=min(k, len(values)), replace=False).tolist())
    return [values[i] for i in chosen]


def commands(seed: int = SEED, count: int = COUNT) -> list[list[str]]:
    """The set: the bundled plans in every format (one with each mode alone), then `count`
    seeded commands."""
    out = [["serve", plan, "--format", fmt] for plan in PLANS for fmt in ("json", "csv", "markdown")]
    out += [["serve", "llama-3-70b-h100", "--format", "json", "--mode", mode] for mode in MODES]
    # the headline: DeepSeek-V3 on H200 over the preset's every chip count
    out += [["serve", "--model", "deepseek-v3", "--cluster", "h200-sxm", "--weights", "fp8", "--format", "json"]]
    rng = np.random.default_rng(seed)
    models, clusters = list(MODELS), list(CLUSTERS)
    for _ in range(count):
        model, cluster = pick(rng, models), pick(rng, clusters)
        family, weights, slices = CLUSTERS[cluster]
        if model in ("deepseek-v3", "llama-4-maverick") and "fp8" in weights:
            weights = ("fp8",) + tuple(w for w in weights if w in ("int8", "fp4"))
        chip_choices = sorted({min(n for n in slices if n >= want) for want in MODELS[model][family]})
        args = ["serve", "--model", model, "--cluster", cluster]
        if model not in SMALL or rng.random() < 0.8:  # else the cluster's every chip count
            args += ["--chips", ",".join(map(str, pick(rng, chip_choices, int(rng.integers(1, 3)))))]
        args += (
            ["--weights", ",".join(pick(rng, list(weights), int(rng.integers(1, 3))))]
            if rng.random() < 0.7 or model in ("deepseek-v3", "llama-4-maverick")
            else []
        )
        if rng.random() < 0.6:
            args += [
                "--batch",
                ",".join(map(str, pick(rng, [1, 2, 4, 8, 16, 32, 64, 128, 256], int(rng.integers(2, 6))))),
            ]
        if rng.random() < 0.6:
            args += ["--input-tokens", str(pick(rng, [1, 60, 128, 512, 2048, 8192]))]
        if rng.random() < 0.6:
            args += ["--output-tokens", str(pick(rng, [1, 2, 20, 128, 256, 1024]))]
        if rng.random() < 0.3:
            args += ["--kv-cache", pick(rng, ["bf16", "fp8", "int8", "bf16,fp8"])]
        if rng.random() < 0.2:
            args += ["--attention", pick(rng, ["heads", "batch"])]
        if rng.random() < 0.15:
            args += ["--ffn", pick(rng, ["ws1d", "ws2d", "ws1d,wg-xyz"])]
        if rng.random() < 0.5:
            args += ["--mode", ",".join(pick(rng, list(MODES), int(rng.integers(1, 3))))]
        if rng.random() < 0.25:
            args += ["--ttft", pick(rng, ["50ms", "200ms", "1s", "5s"])]
        if rng.random() < 0.25:
            args += ["--tpot", pick(rng, ["10ms", "20ms", "50ms", "100ms"])]
        if rng.random() < 0.15:
            args += ["--e2e", pick(rng, ["2s", "10s", "60s"])]
        if rng.random() < 0.4:
            args += ["--price", pick(rng, ["2.50/h", "0.85/h", "11/h"])]
        if rng.random() < 0.15:
            args += ["--all"]
        if rng.random() < 0.1:
            args += ["--row", str(pick(rng, [1, 2, 5]))]
        args += ["--format", pick(rng, list(FORMATS))]
        out.append(args)
    return out


def run_one(args: list[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `planner *args`, in this process."""
    from planner.cli import main as cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(args)
    return code, out.getvalue(), err.getvalue()


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write serve_set.json from the current code")
    parser.add_argument("--save", type=Path, help="also write each command's stdout and stderr here")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    parser.add_argument("--only", type=int, nargs="*", help="run only these command numbers")
    options = parser.parse_args()
    cmds = commands()
    if options.list:
        for i, args in enumerate(cmds):
            print(f"{i:03d} planner {' '.join(args)}")
        return 0
    expected = {} if options.record else {e["index"]: e for e in json.loads(EXPECTED.read_text())["commands"]}
    if options.save:
        options.save.mkdir(parents=True, exist_ok=True)
    results, changed, total, start = [], [], {}, time.perf_counter()
    for i, args in enumerate(cmds):
        if options.only and i not in options.only:
            continue
        t0 = time.perf_counter()
        code, out, err = run_one(args)
        seconds = time.perf_counter() - t0
        total[code] = total.get(code, 0) + 1
        entry = {"index": i, "args": args, "code": code, "stdout": digest(out), "stderr": digest(err)}
        results.append(entry)
        if options.save:
            (options.save / f"{i:03d}.out").write_text(out)
            (options.save / f"{i:03d}.err").write_text(err)
        if not options.record:
            want = expected.get(i)
            if want is None or want["args"] != args or any(want[k] != entry[k] for k in ("code", "stdout", "stderr")):
                changed.append(i)
                print(f"CHANGED {i:03d} ({seconds:.2f} s): planner {' '.join(args)}", flush=True)
                continue
        print(f"{'ok' if not options.record else 'recorded'} {i:03d} exit {code} ({seconds:.2f} s)", flush=True)
    elapsed = time.perf_counter() - start
    codes = ", ".join(f"{n} exit {c}" for c, n in sorted(total.items()))
    if options.record:
        EXPECTED.write_text(json.dumps({"seed": SEED, "count": COUNT, "commands": results}, indent=1) + "\n")
        print(f"recorded {len(results)} commands ({codes}) in {elapsed:.1f} s to {EXPECTED}")
        return 0
    print(f"{len(results) - len(changed)} of {len(results)} unchanged ({codes}) in {elapsed:.1f} s")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
