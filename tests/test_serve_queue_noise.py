"""serve --concurrency: below saturation the wait is 0 in CSV and JSON (as the table's '-'), not
the rounding of C / x - O tpot - TTFT (3.7e-16 s once); past it, the wait as computed."""

from __future__ import annotations

import csv
import io
import json

ARGS = ("serve", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "8", "--batch", "8,64")


def test_no_rounding_noise_in_the_wait(planner):
    run = planner(*ARGS, "--concurrency", "1,8,64,512,4096", "--format", "csv")
    assert run.code == 0, run.err
    rows = list(csv.DictReader(io.StringIO(run.out)))
    waits = [float(r["queue_s"]) for r in rows]
    assert all(w == 0.0 or w > 1e-3 for w in waits)
    assert any(w == 0.0 for w in waits) and any(w > 1.0 for w in waits)  # both sides of saturation
    for r in rows:  # queued requests wait; none queued, none waits
        assert (float(r["queue_s"]) > 0) == (int(r["queued"]) > 0)
    data = json.loads(planner(*ARGS, "--concurrency", "1,8,64", "--format", "json").out)
    assert {p["queue_s"] for c in data["curves"] for p in c["points"]} == {0.0}
