"""Speed of the planner: candidates evaluated per second by the vectorised core, and the end-to-end
time of the bundled PaLM 540B / TPU v4 plan (interpreter start included). Prints; never asserts.

    python benchmarks/bench_search.py
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.config import load_plan  # noqa: E402
from planner.cost.costmodel import evaluate  # noqa: E402
from planner.search.search import candidates, search  # noqa: E402
from planner.specs.plan import Phase  # noqa: E402

PLAN = ROOT / "configs" / "plans" / "palm-540b-tpu-v4.yaml"


def best_of(runs, fn):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    plan = load_plan(str(PLAN))
    # Vectorised core: every candidate of the plan, with a dense batch sweep 1..4096.
    batch = np.arange(1, 4097)
    cands = [c for phase in Phase for c in candidates(plan, phase)]
    seconds = best_of(3, lambda: [evaluate(plan.model, plan.cluster, plan.workload, c, batch) for c in cands])
    n = len(cands) * batch.size
    print(f"core: {n} candidates (={len(cands)} layouts x {batch.size} batch sizes) in {seconds:.3f} s "
          f"= {n / seconds / 1e6:.2f} M candidates/s (target >= 1 M/s)")
    seconds = best_of(3, lambda: search(plan))
    result = search(plan)
    print(f"search of the bundled plan (in process): {result.evaluated} candidates in {seconds:.3f} s "
          f"= {result.evaluated / seconds / 1e6:.3f} M candidates/s")
    seconds = best_of(5, lambda: subprocess.run(
        [sys.executable, "-m", "planner.cli.main", "plan", str(PLAN), "--format", "json"],
        check=True, capture_output=True, cwd=ROOT))
    print(f"end to end: planner plan {PLAN.name} --format json: {seconds:.3f} s (target < 1 s), "
          "interpreter start included")
    seconds = best_of(5, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
    print(f"(bare interpreter start on this machine: {seconds:.3f} s)")


if __name__ == "__main__":
    main()
