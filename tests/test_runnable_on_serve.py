"""--runnable-on in serve: a colocated or static deployment is one engine server, which runs one
layout (FFN, attention, experts) and one KV format for both phases; disaggregated pools may differ."""

from __future__ import annotations

import json

MOE = "deepseek-v3-h200"
LAYOUT = ("ffn", "attention", "experts", "kv_cache", "weights", "chips")


def _rows(planner, *args) -> dict:
    run = planner("serve", MOE, "--mode", "colocated,static", *args, "--format", "json")
    assert run.code == 0, run.err
    return json.loads(run.out)["modes"]


def _mixed(row: dict) -> bool:
    return any(row["prefill"].get(k) != row["decode"].get(k) for k in LAYOUT)


def test_every_colocated_and_static_row_runs_one_layout_for_both_phases(planner):
    modes = _rows(planner, "--runnable-on", "sglang")
    for mode in ("colocated", "static"):
        rows = modes[mode]["frontier"]
        assert rows, mode
        assert not [r["row"] for r in rows if _mixed(r)], mode


def test_without_it_the_phases_keep_their_own_fastest_layouts(planner):
    # the check above can fail: unrestricted, the colocated frontier pairs different layouts
    modes = _rows(planner)
    assert any(_mixed(r) for r in modes["colocated"]["frontier"])
