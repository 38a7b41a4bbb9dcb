"""Shared fixtures: an isolated TUNDRA_HOME per test and strict-mode reporting."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import short_tempdir


@pytest.fixture
def tundra_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh TUNDRA_HOME (short path) with TUNDRA_SOCKET inside it, set in os.environ."""
    import shutil

    base = short_tempdir("th")
    monkeypatch.setenv("TUNDRA_HOME", str(base))
    monkeypatch.setenv("TUNDRA_SOCKET", str(base / "d.sock"))
    for var in ("TUNDRA_LOG", "RUST_LOG", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC"):
        monkeypatch.delenv(var, raising=False)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> str:
    strict = os.environ.get("TUNDRA_TEST_STRICT") == "1"
    return f"tundra: strict component checks {'ON' if strict else 'off'} (TUNDRA_TEST_STRICT)"
