"""Speed of `planner serve` against `planner plan` on the same model and cluster, end to end (a
process each: interpreter start, imports, search, rendering). For every bundled plan: `plan`,
`serve` with all three modes, and `serve` with each mode alone; then DeepSeek-V3 on H200 in fp8
over the cluster preset's every chip count (1-256), `serve` against `plan`. The commands of a
group run in turn, run after run (interleaved, so that a drift of the machine's speed hits them
alike), and each figure is the median of the runs. Prints; never asserts.

    python benchmarks/bench_serve.py [--runs 7]

Targets (issue 24): each bundled plan's serve within 2x of its plan; the DeepSeek-V3 serve under
2 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("static", "colocated", "disaggregated")
HEADLINE = ("--model", "deepseek-v3", "--cluster", "h200-sxm", "--weights", "fp8")


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "planner", *args], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def interleaved(group: dict[str, list[str]], runs: int) -> dict[str, float]:
    """The median seconds of each command of `group`, the commands run in turn `runs` times
    (after one warm-up round, not counted)."""
    times: dict[str, list[float]] = {name: [] for name in group}
    for run in range(runs + 1):
        for name, args in group.items():
            t = seconds(args)
            if run:
                times[name].append(t)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (median; default 7)")
    runs = parser.parse_args().runs
    print(f"medians of {runs} interleaved runs, seconds end to end (a process each)")
    print(f"{'command':58s} {'seconds':>8s} {'x plan':>7s}")
    for plan in sorted((ROOT / "configs" / "plans").glob("*.yaml")):
        name = plan.stem
        group = {
            "plan": ["plan", name, "--format", "json"],
            "serve": ["serve", name, "--format", "json"],
            **{f"serve --mode {m}": ["serve", name, "--mode", m, "--format", "json"] for m in MODES},
        }
        medians = interleaved(group, runs)
        for command, median in medians.items():
            print(f"{f'planner {command} {name}':58s} {median:8.3f} {median / medians['plan']:7.2f}")
    flags = " ".join(HEADLINE)
    medians = interleaved(
        {"plan": ["plan", *HEADLINE, "--format", "json"], "serve": ["serve", *HEADLINE, "--format", "json"]}, runs
    )
    for command, median in medians.items():
        print(f"{f'planner {command} {flags}':58s} {median:8.3f} {median / medians['plan']:7.2f}")
    curve = (
        "--model",
        "deepseek-v3",
        "--cluster",
        "h200-sxm",
        "--chips",
        "8",
        "--weights",
        "fp8",
        "--concurrency",
        "1,4,16,64,256",
    )
    medians = interleaved(
        {
            "plan": ["plan", *curve[:8], "--format", "json"],
            "serve --concurrency": ["serve", *curve, "--format", "json"],
        },
        runs,
    )
    for command, median in medians.items():
        print(f"{f'planner {command} (DeepSeek-V3, 8 H200, fp8)':58s} {median:8.3f} {median / medians['plan']:7.2f}")
    print(
        "target: each bundled plan's serve within 2x of its plan; the DeepSeek-V3 serve (every chip count "
        "of h200-sxm) under 2 s"
    )


if __name__ == "__main__":
    main()
