"""RUST_LOG-style directives: parsing, seed aliases, environment defaults."""

from __future__ import annotations

import logging

import pytest

from tundra.telemetry import TRACE
from tundra.telemetry.directives import DirectiveError, parse_directives, resolve_directives


def test_parse_default_and_targets() -> None:
    d = parse_directives("info,tundra.daemon=debug,tundra.sessions.pty=trace")
    assert d.default == logging.INFO
    assert d.level_for("tundra.daemon") == logging.DEBUG
    assert d.level_for("tundra.daemon.spawn") == logging.DEBUG
    assert d.level_for("tundra.sessions.pty") == TRACE
    assert d.level_for("tundra.sessions") == logging.INFO
    assert d.level_for("httpx") == logging.INFO


def test_seed_crate_names_are_aliases() -> None:
    d = parse_directives("warn,at_daemon::spawn=debug,at_intelligence=trace")
    assert d.default == logging.WARNING
    assert d.level_for("tundra.daemon.spawn") == logging.DEBUG
    assert d.level_for("tundra.daemon") == logging.WARNING
    assert d.level_for("tundra.intelligence.router") == TRACE


def test_bare_target_means_everything_and_off_silences() -> None:
    d = parse_directives("off,tundra.ipc")
    assert d.level_for("tundra.ipc.server") == TRACE
    assert d.level_for("tundra.daemon") > logging.CRITICAL


def test_invalid_level_is_reported() -> None:
    with pytest.raises(DirectiveError, match="invalid log level `loud`"):
        parse_directives("info,tundra=loud")


@pytest.mark.parametrize(
    ("environment", "daemon_level"),
    [("development", logging.DEBUG), ("staging", logging.DEBUG), ("production", logging.WARNING)],
)
def test_environment_defaults_follow_the_seed(environment: str, daemon_level: int) -> None:
    d = resolve_directives({}, environment)
    assert d.default == logging.INFO
    assert d.level_for("tundra.daemon") == daemon_level


def test_tundra_log_wins_over_rust_log() -> None:
    d = resolve_directives({"TUNDRA_LOG": "error", "RUST_LOG": "trace"}, "development")
    assert d.default == logging.ERROR
    d = resolve_directives({"RUST_LOG": "debug,at_sessions=trace"}, "production")
    assert d.default == logging.DEBUG and d.level_for("tundra.sessions.pty") == TRACE


def test_apply_sets_logger_levels() -> None:
    root = logging.getLogger()
    before = root.level
    try:
        parse_directives("warn,tundra.x=debug").apply()
        assert logging.getLogger("tundra.x.y").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("tundra.z").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(before)
        logging.getLogger("tundra.x").setLevel(logging.NOTSET)
