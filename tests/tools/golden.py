"""Golden results of the bundled plans: `tests/golden/<plan>.json` is exactly what
`planner plan configs/plans/<plan>.yaml --format json` prints. The test suite compares fresh
results with them through `planner compare`; an intended change rewrites them with

    python -m tests.tools.golden --update      # from the repository root; review the diff, commit

Without `--update` it checks instead: exit 1 if any fresh result differs from its golden file
(any change, not only a regression), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from planner.commands.compare.compare import compare_runs
from planner.commands.runs import load_run, plan_dict, run_from_result
from planner.config import list_presets, load_plan
from planner.errors import PlannerError
from planner.search.search import search
from planner.units import to_json

GOLDEN_DIR = Path("tests") / "golden"


def fresh(plan: str) -> str:
    """The JSON `planner plan PLAN --format json` prints for a bundled plan."""
    return to_json(plan_dict(search(load_plan(plan))))


def check(folder: Path) -> list[str]:
    """One line per golden file that is missing, stale or differs from a fresh result."""
    problems = []
    plans = list_presets("plans")
    for plan in plans:
        path = folder / f"{plan}.json"
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        report = compare_runs(load_run(str(path)), run_from_result(search(load_plan(plan)), plan))
        if not report.identical:
            problems.append(f"{path}: {report.verdict()}")
    problems += [
        f"{path}: no bundled plan {path.stem!r}" for path in sorted(folder.glob("*.json")) if path.stem not in plans
    ]
    return problems


def update(folder: Path) -> list[Path]:
    """Rewrite every golden file (and drop those of plans that no longer exist); the changed ones."""
    folder.mkdir(parents=True, exist_ok=True)
    changed = []
    plans = list_presets("plans")
    for plan in plans:
        path = folder / f"{plan}.json"
        text = fresh(plan)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in sorted(folder.glob("*.json")):
        if path.stem not in plans:
            path.unlink()
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tools.golden", description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite the golden files")
    parser.add_argument("--dir", type=Path, default=GOLDEN_DIR, help=f"folder (default {GOLDEN_DIR})")
    args = parser.parse_args(argv)
    try:
        if args.update:
            changed = update(args.dir)
            print("\n".join(f"wrote {path}" for path in changed) or "golden files up to date")
            return 0
        problems = check(args.dir)
    except PlannerError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print("\n".join(problems) or "golden files match fresh results")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
