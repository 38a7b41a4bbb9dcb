"""Log outputs: human text, JSON, journald (native protocol) and a rotating file.

All outputs are written by one background thread (QueueHandler/QueueListener) so a slow
terminal, pipe or disk never blocks the trio loop. Secrets are redacted before any
output sees a record.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import re
import socket
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tundra.telemetry import TRACE
from tundra.telemetry.directives import Directives

__all__ = [
    "HumanFormatter",
    "JsonFormatter",
    "JournaldHandler",
    "Redactor",
    "LoggingHandle",
    "setup_logging",
    "journal_stream_matches",
]

_LEVEL_NAMES = {TRACE: "TRACE", logging.DEBUG: "DEBUG", logging.INFO: "INFO",
                logging.WARNING: "WARN", logging.ERROR: "ERROR", logging.CRITICAL: "ERROR"}

# syslog priorities for journald.
_PRIORITY = {TRACE: 7, logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}

_SECRET_PATTERNS = [
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"sk-or-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"sk-(?:proj-)?[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)(authorization\s*[:=]\s*)(?:bearer\s+|basic\s+|token\s+)?[^\s,;'\"}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)((?:x-api-key|api[_-]?key|access[_-]?token|auth[_-]?token|token|password|passwd|secret)[\"']?\s*[:=]\s*[\"']?)[^\s,;'\"}&]+"),
]
_SECRET_ENV = re.compile(r"(?i)(_API_KEY|_TOKEN|_SECRET|_PASSWORD|^TUNDRA_BRIDGE_TOKEN)$")


class Redactor:
    """Replaces API keys, tokens and Authorization values with ``[REDACTED]``."""

    def __init__(self, environ: dict[str, str] | None = None, extra_secrets: list[str] | None = None) -> None:
        env = os.environ if environ is None else environ
        values = {v for k, v in env.items() if _SECRET_ENV.search(k) and len(v) >= 6}
        values.update(s for s in (extra_secrets or []) if len(s) >= 6)
        self._values = sorted(values, key=len, reverse=True)

    def add_secret(self, value: str) -> None:
        if len(value) >= 6 and value not in self._values:
            self._values.append(value)
            self._values.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for v in self._values:
            if v in text:
                text = text.replace(v, "[REDACTED]")
        for pat in _SECRET_PATTERNS:
            if pat.groups:
                text = pat.sub(lambda m: m.group(1) + "[REDACTED]", text)
            else:
                text = pat.sub("[REDACTED]", text)
        return text


class _RedactFilter(logging.Filter):
    """Formats the message once (msg % args), redacted, before the record is queued."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            msg = f"{record.msg!r} {record.args!r}"
        record.msg = self.redact(msg)
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: self.redact(str(v)) if isinstance(v, str) else v for k, v in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    f = getattr(record, "fields", None)
    return dict(f) if isinstance(f, dict) else {}


def _timestamp(created: float, digits: int = 3) -> str:
    t = time.gmtime(created)
    frac = f"{created % 1:.{digits}f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + frac + "Z"


def _fmt_value(v: Any) -> str:
    s = str(v)
    return json.dumps(s) if (" " in s or "=" in s or not s) else s


class HumanFormatter(logging.Formatter):
    """``2026-03-01T10:30:45.123Z  INFO tundra.daemon: message key=value``."""

    def __init__(self, service: str = "tundra-daemon", debug_location: bool = False) -> None:
        super().__init__()
        self.service = service
        self.debug_location = debug_location

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        parts = [f"{_timestamp(record.created)} {level:>5} {record.name}: {record.getMessage()}"]
        for k, v in _fields(record).items():
            parts.append(f"{k}={_fmt_value(v)}")
        if self.debug_location and record.levelno <= logging.DEBUG:
            parts.append(f'file="{record.pathname}" line={record.lineno}')
        out = " ".join(parts)
        if record.exc_text:
            out += "\n" + record.exc_text
        elif record.exc_info:
            out += "\n" + self.formatException(record.exc_info)
        return out


class JsonFormatter(logging.Formatter):
    """The seed's JSON shape: timestamp, level, target, fields{message,...}, file, line."""

    def __init__(self, service: str = "tundra-daemon") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"message": record.getMessage(), "service": self.service}
        fields.update(_fields(record))
        if record.exc_text:
            fields["exception"] = record.exc_text
        elif record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        doc = {
            "timestamp": _timestamp(record.created, 6),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname),
            "target": record.name,
            "fields": fields,
            "file": record.pathname,
            "line": record.lineno,
        }
        return json.dumps(doc, default=str, ensure_ascii=False)


def journal_stream_matches(environ: dict[str, str] | None = None, fd: int = 2) -> bool:
    """True when stderr is the journal stream systemd gave us (JOURNAL_STREAM=dev:ino)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


class JournaldHandler(logging.Handler):
    """journald's native protocol: one datagram per record, multi-line values kept whole."""

    def __init__(self, identifier: str = "tundra-daemon", path: str | None = None) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path or os.environ.get("TUNDRA_JOURNAL_SOCKET", "/run/systemd/journal/socket")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @staticmethod
    def _field(name: str, value: str) -> bytes:
        data = value.encode("utf-8", "replace")
        key = name.encode()
        if b"\n" in data:
            return key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        return key + b"=" + data + b"\n"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_text:
                msg += "\n" + record.exc_text
            parts = [
                self._field("MESSAGE", msg),
                self._field("PRIORITY", str(_PRIORITY.get(record.levelno, 6))),
                self._field("SYSLOG_IDENTIFIER", self.identifier),
                self._field("CODE_FILE", record.pathname),
                self._field("CODE_LINE", str(record.lineno)),
                self._field("CODE_FUNC", record.funcName),
                self._field("TUNDRA_TARGET", record.name),
            ]
            for k, v in _fields(record).items():
                key = re.sub(r"[^A-Z0-9_]", "_", str(k).upper()).lstrip("_") or "FIELD"
                parts.append(self._field(f"TUNDRA_{key}", str(v)))
            self.sock.sendto(b"".join(parts), self.path)
        except OSError:
            # journald gone: fall back to stderr so nothing is silently lost.
            sys.stderr.write(HumanFormatter().format(record) + "\n")
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


class LoggingHandle:
    """What :func:`setup_logging` installed; ``close()`` flushes and stops the writer thread."""

    def __init__(self, listener: logging.handlers.QueueListener, handler: logging.Handler,
                 redactor: Redactor, outputs: list[str]) -> None:
        self.listener = listener
        self.handler = handler
        self.redactor = redactor
        self.outputs = outputs

    def set_directives(self, directives: Directives) -> None:
        directives.apply()

    def close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        self.listener.stop()
        for h in self.listener.handlers:
            h.close()


def setup_logging(
    *,
    directives: Directives,
    service: str = "tundra-daemon",
    fmt: str = "auto",
    log_file: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
    environ: dict[str, str] | None = None,
    stderr: Any = None,
) -> LoggingHandle:
    """Install the outputs for this process. ``fmt``: auto | human | json."""
    env = dict(os.environ) if environ is None else environ
    stream = stderr if stderr is not None else sys.stderr
    handlers: list[logging.Handler] = []
    outputs: list[str] = []
    under_journald = journal_stream_matches(env) if stderr is None else False
    if fmt == "auto" and under_journald:
        handlers.append(JournaldHandler(service))
        outputs.append("journald")
    else:
        h = logging.StreamHandler(stream)
        h.setFormatter(JsonFormatter(service) if fmt == "json" else HumanFormatter(service))
        handlers.append(h)
        outputs.append("json" if fmt == "json" else "human")
        if log_file is not None:
            log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fh = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
            fh.setFormatter(JsonFormatter(service) if fmt == "json" else HumanFormatter(service))
            handlers.append(fh)
            outputs.append(f"file:{log_file}")
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    qh = logging.handlers.QueueHandler(q)
    redactor = Redactor(env)
    qh.addFilter(_RedactFilter(redactor))
    qh.prepare = lambda record: record  # type: ignore[method-assign]  # already formatted+redacted
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(qh)
    listener = logging.handlers.QueueListener(q, *handlers, respect_handler_level=False)
    listener.start()
    directives.apply(root)
    logging.captureWarnings(True)
    return LoggingHandle(listener, qh, redactor, outputs)
