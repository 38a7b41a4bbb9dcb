"""Logging (RUST_LOG-style directives, human/JSON/journald/file outputs) and systemd notify."""

import logging

TRACE = 5
"""A level below DEBUG, as in Rust's tracing (TUNDRA_LOG=...=trace)."""

logging.addLevelName(TRACE, "TRACE")

__all__ = ["TRACE"]
