"""`--app MODULE:ATTRIBUTE`: loading a user's Lodestar app, and the one-line errors when it cannot be loaded."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lodestar.app import AppLoadError, Lodestar, load_app

APP = """
from lodestar import Agent, Lodestar
from lodestar.storage import SQLiteStorage
helper = Agent("helper", description="Helps.")
app = Lodestar(agents=[helper], storage=SQLiteStorage("app.db"))
other = 42
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with the user's modules, as the current directory; their imports are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_an_app_loads_from_the_current_directory(project: Path) -> None:
    (project / "myagents.py").write_text(APP)
    app = load_app("myagents:app")
    assert isinstance(app, Lodestar) and list(app.agents) == ["helper"]


@pytest.mark.parametrize(
    ("spec", "source", "message"),
    [
        ("myagents", APP, "give MODULE:ATTRIBUTE, e.g. --app mypkg.agents:app"),
        ("nowhere:app", APP, "importing nowhere failed: ModuleNotFoundError: No module named 'nowhere'"),
        ("myagents:app", "def broken(:\n", "importing myagents failed: SyntaxError"),
        ("myagents:missing", APP, "myagents has no 'missing'; its Lodestar apps: app"),
        ("myagents:other", APP, "other is of type int, not a Lodestar app"),
    ],
)
def test_an_app_that_cannot_load_is_one_clear_error(project: Path, spec: str, source: str, message: str) -> None:
    (project / "myagents.py").write_text(source)
    with pytest.raises(AppLoadError) as info:
        load_app(spec)
    assert message in str(info.value) and str(info.value).startswith(f"--app {spec}") and "\n" not in str(info.value)
