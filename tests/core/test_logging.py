"""Log outputs: the seed's human and JSON formats, journald native protocol, rotation, redaction."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import short_tempdir
from tundra.telemetry import TRACE
from tundra.telemetry.directives import parse_directives
from tundra.telemetry.logging_setup import (
    LoggingHandle,
    Redactor,
    journal_stream_matches,
    setup_logging,
)


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _flush(handle: LoggingHandle) -> None:
    handle.listener.stop()  # drains the queue
    handle.listener.start()


def test_human_format_has_timestamp_level_target_fields(restore_root: None) -> None:
    out = io.StringIO()
    h = setup_logging(directives=parse_directives("info"), fmt="human", stderr=out, environ={})
    try:
        logging.getLogger("tundra.daemon").info("daemon ready", extra={"fields": {"pid": 42, "socket": "/x y"}})
        logging.getLogger("tundra.daemon").debug("hidden")
        _flush(h)
    finally:
        h.close()
    line = out.getvalue().strip()
    assert line.endswith(' INFO tundra.daemon: daemon ready pid=42 socket="/x y"'), line
    assert line[:4].isdigit() and line[10] == "T" and "Z " in line
    assert "hidden" not in out.getvalue()


def test_json_format_uses_the_seed_fields(restore_root: None) -> None:
    out = io.StringIO()
    h = setup_logging(directives=parse_directives("trace"), fmt="json", stderr=out, environ={})
    try:
        logging.getLogger("tundra.sessions.pty").log(TRACE, "spawned %s", "bash", extra={"fields": {"pid": 7}})
        _flush(h)
    finally:
        h.close()
    doc = json.loads(out.getvalue())
    assert doc["level"] == "TRACE" and doc["target"] == "tundra.sessions.pty"
    assert doc["fields"] == {"message": "spawned bash", "service": "tundra-daemon", "pid": 7}
    assert doc["file"].endswith("test_logging.py") and isinstance(doc["line"], int)
    assert doc["timestamp"].endswith("Z")


def test_secrets_are_redacted_everywhere(restore_root: None, tmp_path: Path) -> None:
    out = io.StringIO()
    env = {"ANTHROPIC_API_KEY": "sk-ant-api03-SECRETSECRET", "MY_TOKEN": "tok-123456789"}
    h = setup_logging(directives=parse_directives("info"), fmt="human", stderr=out, environ=env,
                      log_file=tmp_path / "d.log")
    try:
        log = logging.getLogger("tundra.intelligence")
        log.info("calling with key %s", "sk-ant-api03-SECRETSECRET")
        log.info("headers: Authorization: Bearer abcdefghijklmnop", extra={"fields": {"token": "tok-123456789"}})
        log.info("x-api-key: sk-proj-abcdefghijklmnopqrstuv")
        try:
            raise RuntimeError("failed with api_key=hunter2hunter2")
        except RuntimeError:
            log.exception("boom")
        _flush(h)
    finally:
        h.close()
    for text in (out.getvalue(), (tmp_path / "d.log").read_text()):
        assert "SECRETSECRET" not in text
        assert "abcdefghijklmnop" not in text
        assert "tok-123456789" not in text
        assert "sk-proj-abcdefghijklmnopqrstuv" not in text
        assert "hunter2hunter2" not in text
        assert text.count("[REDACTED]") >= 5


def test_redactor_leaves_ordinary_text() -> None:
    r = Redactor({})
    assert r("terminal 3f2a exited with code 0") == "terminal 3f2a exited with code 0"


def test_file_output_rotates_by_size(restore_root: None, tmp_path: Path) -> None:
    h = setup_logging(directives=parse_directives("info"), fmt="human", stderr=io.StringIO(), environ={},
                      log_file=tmp_path / "daemon.log", max_bytes=4096, backups=2)
    try:
        for i in range(200):
            logging.getLogger("tundra.daemon").info("line %d %s", i, "x" * 60)
        _flush(h)
    finally:
        h.close()
    assert (tmp_path / "daemon.log.1").exists() and (tmp_path / "daemon.log.2").exists()
    assert not (tmp_path / "daemon.log.3").exists()
    assert (tmp_path / "daemon.log").stat().st_size <= 4096


def _parse_journal(datagram: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    i = 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            k, _, v = line.partition(b"=")
            fields[k.decode()] = v.decode()
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", datagram[nl + 1 : nl + 9])
            fields[line.decode()] = datagram[nl + 9 : nl + 9 + n].decode()
            i = nl + 9 + n + 1
    return fields


def test_journald_native_protocol_one_entry_per_traceback(restore_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    base = short_tempdir()
    path = base / "journal.sock"
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(str(path))
    journal.settimeout(10)
    monkeypatch.setenv("TUNDRA_JOURNAL_SOCKET", str(path))
    # Make stderr "the journal stream": JOURNAL_STREAM=dev:ino of fd 2.
    st = os.fstat(2)
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    assert journal_stream_matches(env)
    h = setup_logging(directives=parse_directives("info"), fmt="auto", environ=env)
    try:
        assert h.outputs == ["journald"]
        log = logging.getLogger("tundra.daemon")
        log.warning("circuit breaker opened", extra={"fields": {"profile": "anthropic"}})
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            log.exception("crashed")
        _flush(h)
        first = _parse_journal(journal.recv(65536))
        second = _parse_journal(journal.recv(65536))
    finally:
        h.close()
        journal.close()
    assert first["MESSAGE"] == "circuit breaker opened"
    assert first["PRIORITY"] == "4" and first["SYSLOG_IDENTIFIER"] == "tundra-daemon"
    assert first["CODE_FILE"].endswith("test_logging.py") and first["TUNDRA_PROFILE"] == "anthropic"
    assert second["PRIORITY"] == "3"
    assert second["MESSAGE"].startswith("crashed\nTraceback (most recent call last):")
    assert "ValueError: bad\nthing" in second["MESSAGE"]


def test_journal_stream_mismatch_means_no_journald() -> None:
    assert not journal_stream_matches({"JOURNAL_STREAM": "1:2"})
    assert not journal_stream_matches({})
