"""Reading the process table (/proc on Linux) to find a terminal's whole session.

A terminal's processes are found by session id, process group, ancestry from the child,
and the ``TUNDRA_TERMINAL_ID`` marker every child inherits in its environment (which also
catches ``setsid``/``nohup`` jobs that left the session). All functions here block briefly
on /proc reads: call them through ``trio.to_thread``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time
from collections.abc import Iterable

import msgspec

__all__ = [
    "ProcStat",
    "read_stat",
    "iter_stats",
    "find_members",
    "snapshot",
    "signal_pids",
    "reap_adopted_zombies",
    "become_subreaper",
    "reap_when_gone",
    "reap_session_zombies",
    "signal_group",
    "MARKER_VAR",
    "HAVE_PROC",
]

log = logging.getLogger("tundra.sessions.proctable")

MARKER_VAR = "TUNDRA_TERMINAL_ID"
HAVE_PROC = os.path.isdir("/proc/self") and sys.platform.startswith("linux")
_PR_SET_CHILD_SUBREAPER = 36


class ProcStat(msgspec.Struct, frozen=True):
    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    starttime: int
    """Clock ticks after boot: with the pid it identifies a process despite pid reuse."""


def read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcStat(
            pid=pid,
            state=rest[0].decode(),
            ppid=int(rest[1]),
            pgid=int(rest[2]),
            sid=int(rest[3]),
            starttime=int(rest[19]),
        )
    except (IndexError, ValueError):
        return None


def iter_stats() -> Iterable[ProcStat]:
    if not HAVE_PROC:
        return
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                yield st


_marker_cache: dict[tuple[int, int], str | None] = {}
_MARKER_PREFIX = (MARKER_VAR + "=").encode()


def _marker_of(st: ProcStat) -> str | None:
    """The process's ``TUNDRA_TERMINAL_ID`` (cached per pid + start time: reading every
    process's environ on every scan is what made teardown of many terminals slow)."""
    key = (st.pid, st.starttime)
    if key in _marker_cache:
        return _marker_cache[key]
    value: str | None = None
    try:
        with open(f"/proc/{st.pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None  # not cached: unreadable now (exiting, other user) may change
    for entry in env.split(b"\0"):
        if entry.startswith(_MARKER_PREFIX):
            value = entry[len(_MARKER_PREFIX) :].decode(errors="replace")
            break
    if env:  # an empty environ (kernel thread, zombie) is not worth remembering
        _marker_cache[key] = value
    return value


def _prune_marker_cache(live: set[int]) -> None:
    if len(_marker_cache) > 4 * max(len(live), 256):
        for key in [k for k in list(_marker_cache) if k[0] not in live]:
            _marker_cache.pop(key, None)


def snapshot() -> dict[int, ProcStat]:
    """The whole process table, pid -> stat."""
    table = {st.pid: st for st in iter_stats()}
    _prune_marker_cache(set(table))
    return table


def find_members(
    *,
    sids: Iterable[int] = (),
    pgids: Iterable[int] = (),
    roots: Iterable[int] = (),
    terminal_ids: Iterable[str] = (),
    not_before: int = 0,
    table: dict[int, ProcStat] | None = None,
) -> list[ProcStat]:
    """Live (non-zombie) processes that belong to the given terminals.

    A process belongs when its session or process group is one of ``sids``/``pgids`` (and
    it started at or after ``not_before``, guarding against pid reuse), when it descends
    from one of ``roots``, or when its environment carries one of ``terminal_ids`` as
    ``TUNDRA_TERMINAL_ID``. The daemon itself is never included. ``table`` is a
    :func:`snapshot` to use instead of walking /proc again.
    """
    sid_set, pgid_set, root_set = set(sids), set(pgids), set(roots)
    markers = set(terminal_ids)
    me = os.getpid()
    if table is None:
        table = snapshot()
    out: list[ProcStat] = []
    for st in table.values():
        if st.pid == me or st.state in ("Z", "X"):
            continue
        hit = (st.sid in sid_set or st.pgid in pgid_set) and st.starttime >= not_before
        if not hit and root_set:
            p, hops = st.pid, 0
            while p > 1 and hops < 64:
                if p in root_set:
                    hit = True
                    break
                parent = table.get(p)
                if parent is None:
                    break
                p, hops = parent.ppid, hops + 1
        if not hit and markers:
            hit = _marker_of(st) in markers
        if hit:
            out.append(st)
    return out


def signal_pids(pids: Iterable[int], sig: int) -> int:
    """Send ``sig`` to each pid; returns how many were signalled."""
    n = 0
    for pid in pids:
        if pid <= 1 or pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
            n += 1
        except (ProcessLookupError, PermissionError):
            pass
    return n


def signal_group(pgid: int, sig: int) -> bool:
    if pgid <= 1 or pgid == os.getpgrp():
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def reap_adopted_zombies(
    *, sids: set[int], pgids: set[int], pids: set[int], exclude: set[int]
) -> list[int]:
    """Reap zombie children of the daemon that came from terminals.

    With the daemon as child subreaper, grandchildren of terminals (``sleep 1000 &`` left
    by an exited shell) are re-parented to it; they must be waited for or they stay
    zombies. Only zombies from terminal sessions/groups (or explicitly killed pids) are
    reaped, never other services' children; ``exclude`` are pids a Popen still owns.
    """
    me = os.getpid()
    reaped: list[int] = []
    for st in iter_stats():
        if st.ppid != me or st.state != "Z" or st.pid in exclude:
            continue
        if st.sid in sids or st.pgid in pgids or st.pid in pids:
            try:
                got, _ = os.waitpid(st.pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if got:
                reaped.append(st.pid)
    return reaped


def reap_when_gone(
    pids: Iterable[int], timeout: float, sids: Iterable[int] = (), exclude: int = 0
) -> list[int]:
    """Wait (blocking, bounded) until ``pids`` have exited, then reap our zombie children.

    Signals are asynchronous: a killed process lingers a moment before it is a zombie.
    Zombie children whose session is in ``sids`` are reaped too (a zombie keeps its sid).
    """
    pids = list(pids)
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if (st := read_stat(p)) and st.state != "Z"]
        if pending:
            time.sleep(0.01)
    me = os.getpid()
    reaped: list[int] = []
    wanted, sid_set = set(pids), set(sids)
    # Walking the whole table is only needed to match by session.
    stats = iter_stats() if sid_set else filter(None, (read_stat(p) for p in wanted))
    for st in stats:
        if st.pid == exclude:
            continue  # owned by a Popen: reaping it here would steal its exit status
        if st.state == "Z" and st.ppid == me and (st.pid in wanted or st.sid in sid_set):
            pid = st.pid
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    reaped.append(pid)
            except ChildProcessError:
                pass
    return reaped


def reap_session_zombies(table: dict[int, ProcStat], sid: int, exclude: int = 0) -> list[int]:
    """Reap our zombie children that belong to session ``sid`` (non-blocking ``WNOHANG``)."""
    me = os.getpid()
    reaped: list[int] = []
    for st in table.values():
        if st.state == "Z" and st.ppid == me and st.sid == sid and st.pid != exclude:
            try:
                if os.waitpid(st.pid, os.WNOHANG)[0]:
                    reaped.append(st.pid)
            except ChildProcessError:
                pass
    return reaped


def become_subreaper(on: bool = True) -> bool:
    """Make orphaned descendants re-parent to this process (Linux), so it can reap them."""
    if not HAVE_PROC:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        ok = bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
    if not ok:
        log.warning("could not become child subreaper; orphaned grandchildren go to init")
    return ok
