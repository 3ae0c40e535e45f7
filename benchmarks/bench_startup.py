"""Start-up cost of the command line: how long planner's own modules take to import on top of the
runtime imports (numpy, yaml, rich, typer), and the end-to-end `planner plan` time of each bundled
plan against the bare interpreter with those imports. Prints figures; never asserts.

    python benchmarks/bench_startup.py                      # 15 rounds
    python benchmarks/bench_startup.py --runs 31            # steadier medians on a noisy machine
    python benchmarks/bench_startup.py --modules            # also each module's own import time
    python benchmarks/bench_startup.py --against ../main    # the same figures for another source
                                                            # tree (before/after), side by side

Every variant runs as a fresh subprocess; the variants take turns within each round (side by side,
so a slow spell of the machine hits them all alike) and each figure is the median over the rounds.
Wall-clock figures are what the speed target counts; the CPU (user + system) figures beside them
move less when other work shares the machine. The subprocesses may write and use cached bytecode
(__pycache__), as an installed planner does: PYTHONDONTWRITEBYTECODE is dropped from their
environment and a first, untimed round writes the caches (without them every run compiles
planner's sources again: about 40 ms more).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_IMPORTS = "import numpy, yaml, rich.console, typer"
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
# What `planner plan PLAN --format json` imports: the app, then (lazily, inside the command) the
# config loader, the search and the JSON document. The other formats add the renderers.
PLAN_PATH = ("planner.cli.main", "planner.config", "planner.search.search", "planner.commands.runs")
RENDERERS = ("planner.render.plan",)
BLAS_ONE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
# The dataclass decorator generates and compiles each class's methods at import: its share.
DATACLASS_SHARE = f"""
import dataclasses, time
{RUNTIME_IMPORTS}
process, spent = dataclasses._process_class, []
def timed(cls, *args, **kwargs):
    start = time.perf_counter()
    out = process(cls, *args, **kwargs)
    spent.append(time.perf_counter() - start)
    return out
dataclasses._process_class = timed
start = time.perf_counter()
import {", ".join(PLAN_PATH)}
print(len(spent), sum(spent), time.perf_counter() - start)
"""


def plans(root: Path) -> list[str]:
    return sorted(path.stem for path in (root / "configs" / "plans").glob("*.yaml"))


def variants(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """label -> (working directory, command). Run from `root`, `-c` and `-m` import planner from
    `root` (the current directory comes first on sys.path)."""
    python = [sys.executable]
    out = {
        "import planner.cli.main": python + ["-c", f"{RUNTIME_IMPORTS}; import planner.cli.main"],
        "import what plan --format json imports": python + ["-c", f"{RUNTIME_IMPORTS}; import {', '.join(PLAN_PATH)}"],
        "  ... and the table/csv/markdown renderers": python
        + ["-c", f"{RUNTIME_IMPORTS}; import {', '.join(PLAN_PATH + RENDERERS)}"],
    }
    for name in plans(root):
        out[f"plan {name}"] = python + [
            "-m",
            "planner",
            "plan",
            str(root / "configs" / "plans" / f"{name}.yaml"),
            "--format",
            "json",
        ]
    return {label: (root, command) for label, command in out.items()}


def run_once(cwd: Path, command: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of `command`."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if process.returncode:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)} in {cwd}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def measure(commands: dict[str, tuple[Path, list[str]]], rounds: int) -> dict[str, tuple[float, float]]:
    """Median wall-clock and CPU seconds of each command."""
    for cwd, command in commands.values():  # untimed: writes the bytecode caches
        run_once(cwd, command)
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(rounds):
        for label, (cwd, command) in commands.items():
            times[label].append(run_once(cwd, command))
    return {
        label: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for label, values in times.items()
    }


def dataclass_share(rounds: int) -> None:
    runs = [
        subprocess.run(
            [sys.executable, "-c", DATACLASS_SHARE], check=True, capture_output=True, text=True, cwd=ROOT, env=ENV
        ).stdout.split()
        for _ in range(rounds)
    ]
    classes = int(runs[0][0])
    share, total = (statistics.median(float(r[i]) for r in runs) * 1e3 for i in (1, 2))
    print(
        f"in process: importing what plan --format json imports takes {total:.1f} ms, of which "
        f"{share:.1f} ms is the dataclass decorator on {classes} classes ({share / classes * 1e3:.0f} us each)"
    )


def module_times(rounds: int) -> list[tuple[float, str]]:
    """Each planner module's own (self) import time, median over `rounds` runs of -X importtime."""
    code = f"{RUNTIME_IMPORTS}; import {', '.join(PLAN_PATH)}"
    samples: dict[str, list[int]] = {}
    for _ in range(rounds):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=ENV,
        ).stderr
        for match in re.finditer(r"import time:\s+(\d+) \|\s+\d+ \|\s*(planner\S*)", err):
            samples.setdefault(match[2], []).append(int(match[1]))
    return sorted(((statistics.median(us) / 1e3, name) for name, us in samples.items()), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15, help="rounds (median over them)")
    parser.add_argument("--modules", action="store_true", help="also each planner module's import time")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="TREE",
        help="another planner source tree (e.g. a worktree of main): its figures too",
    )
    args = parser.parse_args()

    trees = {"": ROOT} if args.against is None else {"this tree: ": ROOT, "against: ": args.against.resolve()}
    commands = {
        "bare": (ROOT, [sys.executable, "-c", RUNTIME_IMPORTS]),
        # planner.cli sets these before numpy starts its BLAS thread pool (the search does
        # no BLAS work): the bare interpreter without that pool, for comparison
        "bare, one BLAS thread (as planner runs numpy)": (
            ROOT,
            [sys.executable, "-c", f"import os; os.environ.update({BLAS_ONE_THREAD!r}); {RUNTIME_IMPORTS}"],
        ),
    }
    for prefix, root in trees.items():
        commands.update({prefix + label: command for label, command in variants(root).items()})
    medians = measure(commands, args.runs)
    bare, bare_cpu = medians.pop("bare")
    print(
        f"bare interpreter with the runtime imports ({RUNTIME_IMPORTS}): {bare * 1e3:.1f} ms "
        f"(CPU {bare_cpu * 1e3:.1f} ms; medians of {args.runs}, side by side)"
    )
    for label, (seconds, cpu) in medians.items():
        print(
            f"{label}: {seconds * 1e3:.1f} ms = +{(seconds - bare) * 1e3:.1f} ms over bare, "
            f"{seconds / bare:.2f}x (CPU +{(cpu - bare_cpu) * 1e3:.1f} ms, {cpu / bare_cpu:.2f}x)"
        )
    if args.modules:
        rounds = max(3, args.runs // 3)
        dataclass_share(rounds)
        rows = module_times(rounds)
        print(
            f"planner modules' own import time (-X importtime, self, median; sum {sum(ms for ms, _ in rows):.1f} ms):"
        )
        for ms, name in rows:
            print(f"  {ms:6.2f} ms  {name}")


if __name__ == "__main__":
    main()
