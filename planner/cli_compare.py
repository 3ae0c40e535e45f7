"""`planner compare`: compare layouts and gate regressions (see planner.compare)."""

from planner.cli import app  # noqa: F401
