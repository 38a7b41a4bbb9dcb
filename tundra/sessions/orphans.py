"""The record of live terminals' process groups/sessions, and the start-up sweep.

The daemon writes ``data/terminal_pgids.json`` whenever a terminal starts or dies. If the
daemon is killed (``kill -9``, OOM, crash) its children survive it; the next daemon reads
the record at start and kills whatever is left of those sessions (matching by session id,
process group, and the ``TUNDRA_TERMINAL_ID`` environment marker, with the recorded start
time as a guard against pid reuse).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from pathlib import Path

import msgspec

from tundra.sessions import proctable

__all__ = ["OrphanEntry", "OrphanRecord", "write_record", "read_record", "kill_leftovers"]

log = logging.getLogger("tundra.sessions.orphans")


class OrphanEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    pid: int
    pgid: int
    sid: int
    starttime: int = 0


class OrphanRecord(msgspec.Struct, kw_only=True):
    daemon_pid: int = 0
    updated_at: float = 0.0
    terminals: list[OrphanEntry] = msgspec.field(default_factory=list)


def write_record(path: Path, entries: list[OrphanEntry]) -> None:
    """Atomically replace the record (blocking: call via ``trio.to_thread``)."""
    rec = OrphanRecord(daemon_pid=os.getpid(), updated_at=time.time(), terminals=entries)
    data = msgspec.json.encode(rec)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pgids-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_record(path: Path) -> OrphanRecord | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(raw, type=OrphanRecord)
    except msgspec.DecodeError:
        log.warning("ignoring unreadable terminal record %s", path)
        return None


def kill_leftovers(path: Path, *, wait: float = 3.0) -> list[int]:
    """Kill what a previous daemon's terminals left running. Blocking (use a thread).

    Returns the pids that were sent SIGKILL. The record is reset afterwards.
    """
    rec = read_record(path)
    if rec is None or not rec.terminals:
        return []
    if rec.daemon_pid and rec.daemon_pid != os.getpid() and _alive(rec.daemon_pid, rec):
        # Another daemon still owns them (the lock should prevent this); leave them.
        log.warning("terminal record belongs to a running daemon (pid %d)", rec.daemon_pid)
        return []
    killed: list[int] = []
    for entry in rec.terminals:
        members = proctable.find_members(
            sids=(entry.sid,),
            pgids=(entry.pgid,),
            terminal_ids=(entry.id,),
            not_before=entry.starttime,
        )
        pids = [m.pid for m in members]
        if pids:
            proctable.signal_pids(pids, signal.SIGKILL)
            killed.extend(pids)
            log.warning(
                "killed %d process(es) left by terminal %s of a previous daemon",
                len(pids),
                entry.id,
                extra={"fields": {"terminal_id": entry.id, "pids": pids}},
            )
    deadline = time.monotonic() + wait
    pending = list(killed)
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if (st := proctable.read_stat(p)) and st.state != "Z"]
        if pending:
            time.sleep(0.02)
    write_record(path, [])
    return killed


def _alive(pid: int, rec: OrphanRecord) -> bool:
    st = proctable.read_stat(pid)
    if st is None or st.state == "Z":
        return False
    # A recycled pid: a process that started after the record was written is not it.
    try:
        boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        started = boot + st.starttime / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return True
    return started <= rec.updated_at + 1
