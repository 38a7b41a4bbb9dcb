"""The configuration reference in docs/ matches the schema."""

from __future__ import annotations

from pathlib import Path

from tundra.config.example import render_reference_markdown


def test_configuration_reference_is_current() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert render_reference_markdown() in doc, (
        "docs/configuration.md is stale: run `python tools/gen_config_reference.py`"
    )
