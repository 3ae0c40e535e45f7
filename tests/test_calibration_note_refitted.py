"""A borrowed calibration with constants refitted to the chip's own serving runs (mi300x) says
which were fitted and that the rest are borrowed, never that no measurements of the chip exist;
calibrate's serving table labels such a cluster briefly."""

from __future__ import annotations

import dataclasses

from planner.config import load_cluster
from planner.render.common import calibration_note

PLAN = ("plan", "--model", "llama-3-8b", "--cluster", "mi300x", "--chips", "1", "--batch", "1")


def test_the_note_names_the_refitted_constants_and_the_borrowed_rest(planner):
    for fmt in ("table", "markdown"):
        run = planner(*PLAN, "--format", fmt)
        assert run.code == 0, run.err
        text = " ".join(run.out.split())
        assert "hbm_efficiency and kernel_overhead_s were fitted to this chip's steady serving runs" in text, fmt
        assert "every other constant is h100-sxm's" in text and "No published measurements" not in text, fmt


def test_a_borrowed_cluster_without_refitted_constants_keeps_its_sentence():
    mi300x = load_cluster("mi300x")
    bare = dataclasses.replace(mi300x, calibration_refitted=())
    assert "No published measurements of this chip are in the calibration sets" in calibration_note(bare)
    assert "No published measurements" not in calibration_note(mi300x)


def test_calibrates_table_labels_the_cluster_briefly(planner):
    for fmt in ("table", "markdown"):
        out = planner("calibrate", "configs/measurements/serving.yaml", "--format", fmt).out
        assert "mi300x (borrowed from h100-sxm, 2 constants refitted)" in out, fmt
        assert "h200-sxm (calibrated)" in out, fmt
        assert "mi300x (calibration borrowed" not in out, fmt
