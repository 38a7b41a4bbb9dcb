"""Fixtures for the service tests: a short temp dir (socket paths) removed afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import short_tempdir


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = short_tempdir("tsv")
    yield d
    shutil.rmtree(d, ignore_errors=True)
