"""Speed of the bundled mixture-of-experts plan (DeepSeek-V3): its search in process and
`planner plan deepseek-v3-h200 --format json` end to end, interpreter start included (target < 1 s).
Prints; never asserts.

    python benchmarks/bench_moe.py
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.config import load_plan  # noqa: E402
from planner.search.search import search  # noqa: E402

PLAN = ROOT / "configs" / "plans" / "deepseek-v3-h200.yaml"


def best_of(runs, fn):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    plan = load_plan(str(PLAN))
    result = search(plan)
    seconds = best_of(3, lambda: search(plan))
    print(f"search of {PLAN.name} (in process): {result.evaluated} points in {seconds:.3f} s")
    seconds = best_of(
        5,
        lambda: subprocess.run(
            [sys.executable, "-m", "planner", "plan", str(PLAN), "--format", "json"],
            check=True,
            capture_output=True,
            cwd=ROOT,
        ),
    )
    print(
        f"end to end: planner plan {PLAN.name} --format json: {seconds:.3f} s (target < 1 s), "
        "interpreter start included"
    )
    seconds = best_of(5, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
    print(f"(bare interpreter start on this machine: {seconds:.3f} s)")


if __name__ == "__main__":
    main()
