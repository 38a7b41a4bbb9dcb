"""`tundra logs`: the journal when running under systemd, else ``logs/daemon.log``.

File records are the telemetry's human lines (``2026-03-01T10:30:45.123Z  WARN target: msg``)
or its JSON lines; a line that starts neither way (a traceback) belongs to the record above,
so a multi-line traceback is filtered and counted as one record.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from tundra.paths import TundraPaths
from tundra.service.units import BRIDGE_SERVICE, DAEMON_SERVICE, Scope

__all__ = [
    "LEVELS",
    "LogRecord",
    "journalctl_command",
    "parse_records",
    "tail_records",
    "follow_records",
    "log_files",
    "level_rank",
]

# Ranks follow syslog (lower = more severe), so `-p warning` means "rank <= 4" as in journalctl.
LEVELS: dict[str, int] = {
    "emerg": 0,
    "alert": 1,
    "crit": 2,
    "critical": 2,
    "err": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
    "trace": 7,
}
_HUMAN = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?)\s+(?P<level>[A-Z]+)\s+(?P<target>[^\s:]+):\s?(?P<msg>.*)$"
)
TAIL_CHUNK = 64 * 1024


class LogRecord(msgspec.Struct, kw_only=True):
    timestamp: str
    level: str
    target: str
    message: str
    source: str
    """File name the record came from."""
    extra: dict[str, Any] = msgspec.field(default_factory=dict)

    def text(self) -> str:
        return f"{self.timestamp} {self.level:>5} {self.target}: {self.message}"


def level_rank(name: str) -> int:
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown level {name!r}; expected one of {', '.join(LEVELS)}") from None


def journalctl_command(
    scope: Scope,
    *,
    bridge: bool = False,
    lines: int = 50,
    follow: bool = False,
    priority: str | None = None,
    as_json: bool = False,
) -> list[str]:
    """The journalctl invocation equivalent to the options (the unit's SyslogIdentifier too)."""
    unit = BRIDGE_SERVICE if bridge else DAEMON_SERVICE
    cmd = ["journalctl", *(["--user"] if scope == "user" else []), "-u", unit, "-n", str(lines)]
    cmd += ["--no-pager", "-o", "json" if as_json else "short-iso"]
    if follow:
        cmd.append("-f")
    if priority:
        # journalctl takes the numeric syslog priority; our names (warn, trace) are not all its.
        cmd += ["-p", str(level_rank(priority))]
    return cmd


def log_files(paths: TundraPaths, *, bridge: bool = False) -> list[Path]:
    """The current log file, then launchd's stdout/stderr captures when they exist."""
    name = "bridge" if bridge else "daemon"
    files = [paths.bridge_log if bridge else paths.daemon_log]
    mac_logs = Path.home() / "Library" / "Logs" / "tundra"
    files += [mac_logs / f"{name}.err.log", mac_logs / f"{name}.out.log"]
    return [f for f in files if f.exists()] or files[:1]


def _parse_json_line(line: str, source: str) -> LogRecord | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "level" not in doc:
        return None
    raw_fields = doc.get("fields")
    fields: dict[str, Any] = raw_fields if isinstance(raw_fields, dict) else {}
    message = str(fields.get("message", doc.get("message", "")))
    if fields.get("exception"):
        message += "\n" + str(fields["exception"])
    extra = {k: v for k, v in fields.items() if k not in ("message", "exception")}
    return LogRecord(
        timestamp=str(doc.get("timestamp", "")),
        level=str(doc["level"]).upper(),
        target=str(doc.get("target", "")),
        message=message,
        source=source,
        extra=extra,
    )


def parse_records(lines: Iterable[str], source: str = "") -> Iterator[LogRecord]:
    """Group raw lines into records (continuation lines join the record above)."""
    current: LogRecord | None = None
    for raw in lines:
        line = raw.rstrip("\n")
        if not line:
            continue
        rec: LogRecord | None = None
        m = _HUMAN.match(line)
        if m:
            rec = LogRecord(
                timestamp=m["ts"],
                level=m["level"],
                target=m["target"],
                message=m["msg"],
                source=source,
            )
        elif line.startswith("{"):
            rec = _parse_json_line(line, source)
        if rec is not None:
            if current is not None:
                yield current
            current = rec
        elif current is not None:
            current.message += "\n" + line
        else:
            # Output before the first record (faulthandler dump, print to stderr).
            current = LogRecord(
                timestamp="", level="INFO", target="stderr", message=line, source=source
            )
    if current is not None:
        yield current


def _passes(rec: LogRecord, max_rank: int | None) -> bool:
    if max_rank is None:
        return True
    return LEVELS.get(rec.level.lower(), 6) <= max_rank


def _read_tail(path: Path, want_lines: int) -> list[str]:
    """About the last ``want_lines`` lines (reads backwards in chunks, not the whole file)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            data = b""
            pos = end
            while pos > 0 and data.count(b"\n") <= want_lines:
                step = min(TAIL_CHUNK, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if pos > 0 and lines:
        lines = lines[1:]  # first line is probably partial
    return lines


def tail_records(files: list[Path], *, n: int = 50, priority: str | None = None) -> list[LogRecord]:
    """The last ``n`` records at or above ``priority`` across ``files`` (rotated ones too)."""
    max_rank = level_rank(priority) if priority else None
    out: list[LogRecord] = []
    for path in files:
        # Walk back through rotations (daemon.log.1, .2...) until there are enough records.
        candidates = [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, 10)]
        got: list[LogRecord] = []
        budget = max(n * 4, 200)
        for c in candidates:
            if not c.exists():
                break
            recs = [r for r in parse_records(_read_tail(c, budget), c.name) if _passes(r, max_rank)]
            got = recs + got
            if len(got) >= n:
                break
        out += got
    out.sort(key=lambda r: r.timestamp)
    return out[-n:] if n > 0 else []


def follow_records(
    path: Path,
    *,
    priority: str | None = None,
    poll_secs: float = 0.25,
    stop_after: float | None = None,
    start: tuple[int, int] | None = None,
) -> Iterator[LogRecord]:
    """Yield new records appended to ``path``; survives rotation (reopens on inode change).

    ``start`` = (inode, offset) measured before the tail was printed, so nothing written
    between the tail and the first read is lost; without it, following starts at the end.
    A file rotated away is read to its end before the new one is opened from its start.
    """
    max_rank = level_rank(priority) if priority else None
    f: Any = None
    ino = -1
    first = True
    pending = ""
    deadline = None if stop_after is None else time.monotonic() + stop_after
    while deadline is None or time.monotonic() < deadline:
        if f is None:
            try:
                f = path.open("r", encoding="utf-8", errors="replace")
            except FileNotFoundError:
                f = None
            else:
                ino = os.fstat(f.fileno()).st_ino
                if first and start is None:
                    f.seek(0, os.SEEK_END)
                elif first and start is not None and start[0] == ino:
                    f.seek(start[1])
                first = False
        chunk = f.read() if f is not None else ""
        if chunk:
            pending += chunk
            complete, _, pending = pending.rpartition("\n")
            for rec in parse_records(complete.splitlines(), path.name):
                if _passes(rec, max_rank):
                    yield rec
            continue
        try:
            rotated = path.stat().st_ino != ino
        except FileNotFoundError:
            rotated = False  # between rename and re-create: keep the old one until it appears
        if rotated:
            if f is not None:
                f.close()
            f = None
            continue
        time.sleep(poll_secs)  # polling the file: no inotify dependency, also on macOS
    if f is not None:
        f.close()


def write_record(rec: LogRecord, as_json: bool, out: Any = None) -> None:
    out = out or sys.stdout
    if as_json:
        out.write(json.dumps(msgspec.to_builtins(rec)) + "\n")
    else:
        out.write(rec.text() + "\n")
    out.flush()
