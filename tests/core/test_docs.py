"""The configuration reference in docs/ matches the schema."""

from __future__ import annotations

from pathlib import Path

from tundra.config.example import render_reference_markdown


def test_configuration_reference_is_current() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert render_reference_markdown() in doc, (
        "docs/configuration.md is stale: run `python tools/gen_config_reference.py`"
    )


def test_error_reference_is_current() -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("gen_error_reference", root / "tools" / "gen_error_reference.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (root / "docs" / "errors.md").read_text() == mod.render(), (
        "docs/errors.md is stale: run `python tools/gen_error_reference.py`"
    )


def test_seed_error_codes_are_registered() -> None:
    import importlib
    import pkgutil

    import tundra
    from tundra.errors import all_error_codes

    for mod in pkgutil.walk_packages(tundra.__path__, "tundra."):
        if mod.name.endswith(".errors"):
            importlib.import_module(mod.name)
    codes = all_error_codes()
    for code in ("pty.at_capacity", "pty.handle_not_found", "pty.spawn_failed", "terminal.dead",
                 "ipc.frame_too_large", "ipc.invalid_request", "ipc.unknown_message", "config.invalid",
                 "daemon.unavailable", "internal"):
        assert code in codes, code
