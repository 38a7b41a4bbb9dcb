"""`tundra logs`: file records (human and JSON), levels, tracebacks, rotation, follow; journalctl args."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import trio

from tests.support import REPO
from tundra.service.logs import journalctl_command, parse_records, tail_records


def _line(n: int, level: str = "INFO", msg: str = "") -> str:
    return f"2026-03-01T10:30:{n:02d}.000Z {level:>5} tundra.daemon: {msg or f'record {n}'}\n"


TRACEBACK = (
    _line(3, "ERROR", "service crashed")
    + "Traceback (most recent call last):\n"
    + '  File "x.py", line 1, in <module>\n'
    + "ValueError: boom\n"
)


def test_a_traceback_is_one_record_with_its_level() -> None:
    text = _line(1) + _line(2, "WARN", "slow") + TRACEBACK + _line(4, "DEBUG")
    recs = list(parse_records(text.splitlines(), "daemon.log"))
    assert [r.level for r in recs] == ["INFO", "WARN", "ERROR", "DEBUG"]
    assert recs[2].message.endswith("ValueError: boom")
    assert recs[2].message.count("\n") == 3


def test_priority_filters_like_journalctl(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    log.write_text(_line(1) + _line(2, "WARN", "slow") + TRACEBACK + _line(4, "DEBUG"))
    recs = tail_records([log], n=50, priority="warning")
    assert [r.message.splitlines()[0] for r in recs] == ["slow", "service crashed"]
    assert [r.level for r in tail_records([log], n=50, priority="error")] == ["ERROR"]
    assert len(tail_records([log], n=50, priority="trace")) == 4


def test_json_lines_are_understood(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    doc = {
        "timestamp": "2026-03-01T10:30:45.123456Z",
        "level": "WARN",
        "target": "tundra.sessions.pty",
        "fields": {"message": "pty slow", "terminal_id": "abc", "service": "tundra-daemon"},
    }
    log.write_text(json.dumps(doc) + "\n" + _line(50))
    [rec] = tail_records([log], n=10, priority="warning")
    assert rec.message == "pty slow" and rec.target == "tundra.sessions.pty"
    assert rec.extra["terminal_id"] == "abc"


def test_tail_reaches_into_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    (tmp_path / "daemon.log.1").write_text("".join(_line(i) for i in range(0, 5)))
    log.write_text("".join(_line(i) for i in range(5, 8)))
    recs = tail_records([log], n=6)
    assert [r.message for r in recs] == [f"record {i}" for i in range(2, 8)]


def test_journalctl_command_matches_the_options() -> None:
    assert journalctl_command("user", lines=20, follow=True, priority="warning") == [
        "journalctl",
        "--user",
        "-u",
        "tundra-daemon.service",
        "-n",
        "20",
        "--no-pager",
        "-o",
        "short-iso",
        "-f",
        "-p",
        "4",
    ]
    cmd = journalctl_command("system", bridge=True, as_json=True)
    assert (
        cmd[:3] == ["journalctl", "-u", "tundra-bridge.service"]
        and cmd[cmd.index("-o") + 1] == "json"
    )


async def test_logs_follow_prints_new_records_across_rotation(short_dir: Path) -> None:
    home = short_dir
    logs = home / "logs"
    logs.mkdir()
    log = logs / "daemon.log"
    log.write_text(_line(1, msg="before"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TUNDRA_")},
        "TUNDRA_HOME": str(home),
        "PYTHONPATH": str(REPO),
    }
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tundra", "logs", "-f", "-n", "5", "--json", "--source", "file"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    buf = b""

    async def next_record() -> dict[str, object]:
        nonlocal buf
        with trio.fail_after(10):
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some(65536)  # type: ignore[union-attr]
                assert chunk, "tundra logs exited"
                buf += chunk
        line, _, buf = buf.partition(b"\n")
        rec: dict[str, object] = json.loads(line)
        return rec

    try:
        assert (await next_record())["message"] == "before"
        with log.open("a") as f:
            f.write(_line(2, "WARN", "appended"))
        assert (await next_record())["message"] == "appended"
        # Rotation as RotatingFileHandler does it: rename, then a fresh file.
        log.rename(logs / "daemon.log.1")
        log.write_text(_line(3, msg="after rotation"))
        assert (await next_record())["message"] == "after rotation"
    finally:
        proc.kill()
        await proc.wait()
