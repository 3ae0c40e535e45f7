"""Speed of `planner serve` on the bundled plans, end to end (interpreter start and runtime
imports included), and as a ratio to the bare interpreter. Prints; never asserts.

    python benchmarks/bench_serve.py
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def best_of(runs, args):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    bare = best_of(5, [sys.executable, "-c", "pass"])
    imports = best_of(5, [sys.executable, "-c", "import numpy, typer, rich, yaml"])
    print(f"bare interpreter start: {bare:.3f} s; with the runtime imports (numpy, typer, rich, yaml): {imports:.3f} s")
    for plan in sorted((ROOT / "configs" / "plans").glob("*.yaml")):
        seconds = best_of(5, [sys.executable, "-m", "planner", "serve", str(plan), "--format", "json"])
        print(f"planner serve {plan.name} --format json: {seconds:.3f} s (target < 1 s) = "
              f"{seconds / bare:.1f}x the bare interpreter, {seconds / imports:.1f}x the runtime imports")
    curve = ["serve", "--model", "deepseek-v3", "--cluster", "h200-sxm", "--chips", "8", "--weights", "fp8",
             "--concurrency", "1,4,16,64,256", "--format", "json"]
    seconds = best_of(5, [sys.executable, "-m", "planner", *curve])
    print(f"planner {' '.join(curve)}: {seconds:.3f} s = {seconds / bare:.1f}x the bare interpreter")


if __name__ == "__main__":
    main()
