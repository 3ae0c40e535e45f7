import sys
from pathlib import Path

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
