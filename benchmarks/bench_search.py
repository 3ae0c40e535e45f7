"""Speed of the search, as users run it. Prints figures; never asserts.

    python benchmarks/bench_search.py            # every bundled plan + the synthetic large search
    python benchmarks/bench_search.py --quick    # fewer repetitions, a smaller synthetic search

For each bundled plan: the search in process (median of several runs) split into the cost per
discrete candidate (one chip count x mesh grouping x FFN x attention layout: what Python loops
over) and per evaluated point (x batch sizes x formats: what numpy sweeps), and the end-to-end
`planner plan PLAN --format json` time against the bare interpreter with the runtime imports
(numpy, yaml, rich, typer) measured side by side in the same run. Then one synthetic large
search (Llama 3 70B on H100 nodes over many chip counts: about 100k discrete candidates).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.config import list_presets, load_plan  # noqa: E402
from planner.search.search import candidates, search  # noqa: E402

RUNTIME_IMPORTS = "import numpy, yaml, rich.console, typer"
# The subprocesses use cached bytecode as an installed planner does (with PYTHONDONTWRITEBYTECODE
# set, every run would compile planner's sources again: about 40 ms); the first run writes it.
# Start-up alone (import times, the bare interpreter both ways): benchmarks/bench_startup.py.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
# planner.cli starts numpy with one BLAS thread (it does no BLAS work); the bare interpreter is
# timed the same way, the stricter baseline (numpy's default thread pool takes longer to start)
ONE_THREAD = {**ENV, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def median_time(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def discrete(plan) -> int:
    """Discrete candidates of a plan: what one evaluation covers (all batch sizes and formats)."""
    first = plan.space.formats(plan.cluster.chip)[:1]
    return sum(len(candidates(plan, phase, formats=first)) for phase in plan.space.phases)


def report_search(label: str, plan, runs: int) -> None:
    n = discrete(plan)
    seconds = median_time(runs, lambda: search(plan, partial=True))
    points = search(plan, partial=True).evaluated
    print(
        f"{label}: {n} discrete candidates, {points} points in {seconds * 1e3:.1f} ms "
        f"(median of {runs}) = {seconds / n * 1e6:.1f} us per candidate, "
        f"{seconds / points * 1e6:.2f} us per point"
    )


def synthetic(plan_name: str, max_chips: int):
    """A large search: every multiple of 8 GPUs up to `max_chips` (and 1, 2, 4), both phases,
    every layout, the plan's batch sizes and formats."""
    plan = load_plan(plan_name)
    counts = tuple(sorted({1, 2, 4} | set(range(8, max_chips + 1, 8))))
    topology = dataclasses.replace(plan.cluster.topology, chip_counts_=counts)
    cluster = dataclasses.replace(plan.cluster, topology=topology)
    return dataclasses.replace(plan, cluster=cluster, space=dataclasses.replace(plan.space, chips=counts))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer runs and a smaller synthetic search")
    args = parser.parse_args()
    runs, cli_runs = (3, 3) if args.quick else (5, 7)

    plans = list_presets("plans")
    for name in plans:
        report_search(f"search {name}", load_plan(name), runs)

    subprocess.run(
        [sys.executable, "-m", "planner", "plan", plans[0], "--format", "json"],
        check=False,
        capture_output=True,
        cwd=ROOT,
        env=ENV,
    )  # untimed: writes the bytecode caches
    bare = median_time(
        cli_runs, lambda: subprocess.run([sys.executable, "-c", RUNTIME_IMPORTS], check=True, env=ONE_THREAD)
    )
    default = median_time(
        cli_runs, lambda: subprocess.run([sys.executable, "-c", RUNTIME_IMPORTS], check=True, env=ENV)
    )
    print(
        f"bare interpreter with the runtime imports: {bare:.3f} s with one BLAS thread (the baseline below), "
        f"{default:.3f} s with numpy's default thread pool"
    )
    for name in plans:
        path = ROOT / "configs" / "plans" / f"{name}.yaml"
        seconds = median_time(
            cli_runs,
            lambda: subprocess.run(
                [sys.executable, "-m", "planner", "plan", str(path), "--format", "json"],
                check=False,
                capture_output=True,
                cwd=ROOT,
                env=ENV,
            ),
        )
        print(
            f"end to end: planner plan {name} --format json: {seconds:.3f} s = {seconds / bare:.2f}x "
            f"the bare interpreter with the runtime imports ({bare:.3f} s, same run; target < 1.5x)"
        )
        formats = ("--weights", "all", "--kv-cache", "bf16,fp8,int8")  # the number-format axes (issue 11)
        seconds = median_time(
            cli_runs,
            lambda: subprocess.run(
                [sys.executable, "-m", "planner", "plan", str(path), "--format", "json", *formats],
                check=False,
                capture_output=True,
                cwd=ROOT,
                env=ENV,
            ),
        )
        print(
            f"end to end: planner plan {name} {' '.join(formats)} --format json: {seconds:.3f} s = "
            f"{seconds / bare:.2f}x the bare interpreter with the runtime imports"
        )

    big = synthetic("llama-3-70b-h100", 384 if args.quick else 1536)
    report_search(
        f"synthetic large search (llama-3-70b-h100, chips 1..{max(big.space.chips)})", big, 1 if args.quick else 3
    )


if __name__ == "__main__":
    main()
