import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_PATH = ROOT.parent / "shared" / "reference" / "pope2022.yaml"
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def reference():
    """The paper's figures (../shared/reference/pope2022.yaml; a copy is kept in tests/ for CI)."""
    path = REFERENCE_PATH if REFERENCE_PATH.exists() else Path(__file__).parent / "reference" / "pope2022.yaml"
    return yaml.safe_load(path.read_text())


class Run(NamedTuple):
    """One in-process CLI run: its exit code, stdout and stderr (attributes, or unpacked)."""

    code: int
    out: str
    err: str


@pytest.fixture
def planner(monkeypatch, capsys):
    """planner(*args) -> Run, through the console script's entry point, in-process; a traceback
    on stderr fails the test (bad input is a message, never a traceback)."""
    from planner.cli import main as cli

    def run(*args) -> Run:
        monkeypatch.setattr(sys, "argv", ["planner", *map(str, args)])
        with pytest.raises(SystemExit) as exit_:
            cli.main()
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return Run(exit_.value.code, out, err)

    return run
