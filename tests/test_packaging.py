"""What the wheel holds: pyproject.toml names its packages one by one, so a new package missing from
the list would install without its modules. Every folder of planner/ with Python modules must be
listed, and nothing that is a developer tool ships in the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
pytestmark = pytest.mark.skipif(not PYPROJECT.is_file(), reason="not a source checkout")


def _listed() -> set[str]:
    return set(tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"])


def test_every_package_with_modules_is_listed():
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "planner").rglob("*.py")}
    missing = sorted(folders - _listed())
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_every_listed_package_exists():
    folders = {name for name in _listed() if name != "planner.configs"}
    gone = sorted(name for name in folders if not (ROOT / Path(*name.split("."))).is_dir())
    assert not gone, f"listed in pyproject.toml but not in the tree: {gone}"


def test_developer_tools_are_not_in_the_package():
    shipped = {p.stem for p in (ROOT / "planner").rglob("*.py")}
    assert not shipped & {"golden", "regression"}, "developer tools live in tests/tools/"
