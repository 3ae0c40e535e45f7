"""`planner calibrate`: fit a cluster's calibration constants (see planner.calibrate)."""

from planner.cli import app  # noqa: F401
