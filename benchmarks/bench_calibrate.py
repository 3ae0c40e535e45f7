"""Speed of `planner calibrate`: the fit of the bundled TPU v4 measurements (24 points, 8
constants, 32 starting points), best of 5 runs, and the whole command with interpreter start;
also which constants the fit put at a bound or could not identify.
Prints; never asserts. The target is well under a second for tens of points.

    python benchmarks/bench_calibrate.py
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.commands import calibrate  # noqa: E402
from planner.config import load_cluster  # noqa: E402
from planner.config.measurements import load_measurements  # noqa: E402

DATA = ROOT / "configs" / "measurements" / "pope2022-tpu-v4.yaml"


def main() -> None:
    data = load_measurements(str(DATA))
    cluster = load_cluster("tpu-v4")
    times = []
    for _ in range(5):
        start = time.perf_counter()
        result = calibrate.fit(cluster, data)
        times.append(time.perf_counter() - start)
    print(
        f"fit: {len(data.points)} points, {len(calibrate.CONSTANTS)} constants, {result.starts} starts: "
        f"best {min(times):.3f} s, median {sorted(times)[2]:.3f} s (target: well under 1 s)"
    )
    print(
        f"at a bound: {', '.join(result.at_bound) or 'none'}; "
        f"not identified: {', '.join(result.unidentified) or 'none'}"
    )
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "planner", "calibrate", str(DATA), "--cluster", "tpu-v4"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    print(
        f"end to end: planner calibrate {DATA.name} --cluster tpu-v4: "
        f"{time.perf_counter() - start:.3f} s, interpreter start included"
    )


if __name__ == "__main__":
    main()
