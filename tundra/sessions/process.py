"""PtyProcess: one child on a pseudo-terminal, spawned off the loop, driven by trio I/O.

Spawning (a blocking fork/exec) runs in a worker thread: ``os.openpty`` + ``subprocess.Popen``
with a new session whose controlling tty is the PTY slave, default signal dispositions and
an empty signal mask, a clean environment and no inherited fds (``close_fds``). Reads and
writes on the non-blocking master fd use ``trio.lowlevel.wait_readable/wait_writable``; the
exit is awaited on a pidfd (Linux), never with a SIGCHLD handler or a blocking wait.
Teardown (:meth:`PtyProcess.terminate`) hangs up the whole session, waits the grace period,
SIGKILLs what is left (including ``setsid``/``nohup`` jobs found by their environment
marker) and reaps.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import pwd
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Final, final

import trio

from tundra.sessions import proctable
from tundra.sessions.errors import PtySpawnFailed, SpawnReason

__all__ = [
    "PtyProcess",
    "ProcTableReader",
    "spawn_pty",
    "clean_environment",
    "default_shell_argv",
    "READ_SIZE",
]

log = logging.getLogger("tundra.sessions.pty")

READ_SIZE: Final = 64 * 1024

_STRIP_EXACT = frozenset(
    {
        "NOTIFY_SOCKET",
        "JOURNAL_STREAM",
        "INVOCATION_ID",
        "MANAGERPID",
        "SYSTEMD_EXEC_PID",
        "RUNTIME_DIRECTORY",
        "STATE_DIRECTORY",
        "LOGS_DIRECTORY",
        "CREDENTIALS_DIRECTORY",
    }
)
_STRIP_PREFIXES = ("LISTEN_", "WATCHDOG_", "TUNDRA_")
# A shell inside a terminal may run the `tundra` CLI: it must reach this same daemon.
_KEEP_TUNDRA = frozenset({"TUNDRA_HOME", "TUNDRA_SOCKET"})
_RESOURCE_ERRNOS = frozenset({errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC})
_DEFAULT_SIGNALS = tuple(
    s
    for s in (
        signal.SIGHUP,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGTERM,
        signal.SIGPIPE,
        signal.SIGTSTP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGCHLD,
        signal.SIGALRM,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
        getattr(signal, "SIGXFSZ", None),
    )
    if s is not None
)


def clean_environment(
    base: Mapping[str, str], extra: Mapping[str, str] | None, terminal_id: str
) -> dict[str, str]:
    """The child's environment: ``base`` minus service-manager and Tundra internals."""
    env = {
        k: v
        for k, v in base.items()
        if k not in _STRIP_EXACT and (not k.startswith(_STRIP_PREFIXES) or k in _KEEP_TUNDRA)
    }
    if extra:
        env.update(extra)
    env["TERM"] = "xterm-256color"
    env[proctable.MARKER_VAR] = terminal_id
    return env


def default_shell_argv() -> list[str]:
    """The user's login shell, as a login shell."""
    shell = os.environ.get("SHELL") or ""
    if not shell:
        try:
            shell = pwd.getpwuid(os.getuid()).pw_shell
        except KeyError:
            shell = ""
    if not shell or not os.access(shell, os.X_OK):
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    return [shell, "-l"]


def _resolve_executable(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> str:
    if not argv or not argv[0]:
        raise PtySpawnFailed("empty command", reason=SpawnReason.INVALID)
    prog = argv[0]
    if "/" in prog:
        path = prog if os.path.isabs(prog) else os.path.join(cwd, prog)
        if not os.path.exists(path):
            raise PtySpawnFailed(f"{prog}: not found", reason=SpawnReason.NOT_FOUND)
    else:
        found = shutil.which(prog, path=env.get("PATH", os.defpath))
        if found is None:
            # `which` skips non-executable files: tell those apart from missing ones.
            for d in env.get("PATH", os.defpath).split(os.pathsep):
                cand = os.path.join(d or ".", prog)
                if os.path.isfile(cand):
                    raise PtySpawnFailed(
                        f"{cand}: not executable (permission denied)",
                        reason=SpawnReason.NOT_EXECUTABLE,
                        hint=f"chmod +x {cand}",
                    )
            raise PtySpawnFailed(
                f"{prog}: not found in PATH",
                reason=SpawnReason.NOT_FOUND,
                hint="use an absolute path or fix PATH",
            )
        path = found
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise PtySpawnFailed(
            f"{path}: not executable (permission denied)",
            reason=SpawnReason.NOT_EXECUTABLE,
            hint=f"chmod +x {path}",
        )
    return path


def _child_setup() -> None:  # pragma: no cover - runs in the forked child
    # Runs after setsid(): make the PTY slave (fd 0) our controlling terminal, and undo
    # what the daemon may carry (blocked signals, SIGHUP ignored under nohup...).
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for sig in _DEFAULT_SIGNALS:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass


def _open_exit_watch(pid: int) -> tuple[int, Callable[[], None]] | None:
    """``(fd, close)`` where ``fd`` turns readable when ``pid`` exits; None = poll instead."""
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        return fd, partial(os.close, fd)
    if sys.platform == "darwin" or sys.platform.startswith("freebsd"):
        import select

        kq = select.kqueue()
        ev = select.kevent(
            pid,
            filter=select.KQ_FILTER_PROC,
            flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,
            fflags=select.KQ_NOTE_EXIT,
        )
        try:
            kq.control([ev], 0)
        except OSError:  # already gone: the poll fallback collects it
            kq.close()
            return None
        return kq.fileno(), kq.close
    return None


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def spawn_pty(
    argv: Sequence[str],
    *,
    terminal_id: str,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    rows: int = 24,
    cols: int = 80,
    base_env: Mapping[str, str] | None = None,
) -> PtyProcess:
    """Spawn ``argv`` on a new PTY. Blocking: call it via ``trio.to_thread.run_sync``.

    Raises :class:`PtySpawnFailed` with ``details["reason"]`` one of
    :class:`SpawnReason`'s values.
    """
    argv = list(argv)
    cwd = os.path.abspath(os.path.expanduser(cwd)) if cwd else os.getcwd()
    child_env = clean_environment(os.environ if base_env is None else base_env, env, terminal_id)
    if not os.path.isdir(cwd):
        raise PtySpawnFailed(f"cwd missing: {cwd}", reason=SpawnReason.CWD_MISSING)
    exe = _resolve_executable(argv, cwd, child_env)
    try:
        master, slave = os.openpty()
    except OSError as e:
        raise PtySpawnFailed(
            f"out of PTYs/fds ({errno.errorcode.get(e.errno or 0, e.errno)}: {e.strerror})",
            reason=SpawnReason.RESOURCES,
            hint="check `ulimit -n` and /proc/sys/kernel/pty/nr against pty/max",
        ) from e
    try:
        _set_winsize(master, rows, cols)
        popen = subprocess.Popen(
            argv,
            executable=exe,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=child_env,
            close_fds=True,
            start_new_session=True,
            restore_signals=True,
            preexec_fn=_child_setup,
        )
    except OSError as e:
        os.close(master)
        if e.errno in _RESOURCE_ERRNOS:
            raise PtySpawnFailed(
                f"out of PTYs/fds ({errno.errorcode.get(e.errno or 0, e.errno)}: {e.strerror})",
                reason=SpawnReason.RESOURCES,
            ) from e
        if e.filename == cwd:
            raise PtySpawnFailed(
                f"cwd missing: {cwd} ({e.strerror})", reason=SpawnReason.CWD_MISSING
            ) from e
        if e.errno == errno.ENOENT:
            raise PtySpawnFailed(f"{argv[0]}: not found", reason=SpawnReason.NOT_FOUND) from e
        if e.errno == errno.EACCES:
            raise PtySpawnFailed(
                f"{exe}: not executable (permission denied)", reason=SpawnReason.NOT_EXECUTABLE
            ) from e
        raise PtySpawnFailed(
            f"exec error: {exe}: {e.strerror or e}", reason=SpawnReason.EXEC_ERROR
        ) from e
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    st = proctable.read_stat(popen.pid) if proctable.HAVE_PROC else None
    return PtyProcess(terminal_id, argv, cwd, popen, master, rows, cols, st.starttime if st else 0)


@final
class ProcTableReader:
    """Coalesces concurrent /proc walks: when hundreds of terminals are torn down at once
    (shutdown), each needs a fresh process table, and one walk can serve them all.

    :meth:`fresh` returns a table whose walk started after the call -- never an older one, so
    a process forked before the call is always in it.
    """

    def __init__(self) -> None:
        self._lock = trio.Lock()
        self._started = 0
        self._done = 0
        self._table: dict[int, proctable.ProcStat] = {}

    async def fresh(self) -> dict[int, proctable.ProcStat]:
        want = self._started + 1
        async with self._lock:
            if self._done >= want:
                return self._table
            self._started += 1
            gen = self._started
            table = await trio.to_thread.run_sync(proctable.snapshot)
            self._table, self._done = table, gen
            return table


@final
class PtyProcess:
    """A spawned PTY child. Not thread-safe: use it from the trio loop only."""

    def __init__(
        self,
        terminal_id: str,
        argv: list[str],
        cwd: str,
        popen: subprocess.Popen[bytes],
        master_fd: int,
        rows: int,
        cols: int,
        starttime: int = 0,
    ) -> None:
        self.terminal_id = terminal_id
        self.argv = argv
        self.cwd = cwd
        self.pid = popen.pid
        # start_new_session: the child leads its own session and process group.
        self.pgid = popen.pid
        self.sid = popen.pid
        self.rows = rows
        self.cols = cols
        self._popen = popen
        self._fd: int | None = master_fd
        # Read in the spawn thread (a /proc read): guards pid-reuse when killing leftovers.
        self.starttime = starttime
        # An fd that becomes readable when the child exits: a pidfd on Linux, a private
        # kqueue watching NOTE_EXIT on macOS/BSD (trio waits on either like on a socket).
        watch = _open_exit_watch(popen.pid)
        self._pidfd: int | None = watch[0] if watch else None
        self._close_watch: Callable[[], None] | None = watch[1] if watch else None
        self._watching = False
        self._exit_changed = trio.Event()
        self._write_lock = trio.Lock()
        self.table_reader: ProcTableReader | None = None
        """Shared /proc walker (set by the pool) so concurrent teardowns share walks."""
        self.returncode: int | None = None
        self.exited_at: float | None = None

    # -- state -----------------------------------------------------------------------
    @property
    def exited(self) -> bool:
        return self.returncode is not None

    @property
    def exit_status(self) -> tuple[int | None, int | None]:
        """``(exit_code, exit_signal)``; both None while running."""
        rc = self.returncode
        if rc is None:
            return None, None
        return (None, -rc) if rc < 0 else (rc, None)

    @property
    def master_fd(self) -> int | None:
        return self._fd

    # -- I/O -------------------------------------------------------------------------
    async def read(self, max_bytes: int = READ_SIZE) -> bytes:
        """Wait for output; returns up to ``max_bytes`` (several reads coalesced) or b"" at EOF.

        Linux reports EOF on a PTY master as EIO once every slave fd is closed.
        """
        while True:
            fd = self._fd
            if fd is None:
                return b""
            await trio.lowlevel.wait_readable(fd)
            chunks: list[bytes] = []
            total = 0
            # A PTY read returns a few KiB at a time; drain what is ready now so that
            # flowing output becomes few large frames, while a lone echo goes at once.
            while total < max_bytes:
                try:
                    data = os.read(fd, min(READ_SIZE, max_bytes - total))
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno.EIO:
                        if not chunks:
                            return b""
                        break
                    raise
                if not data:
                    if not chunks:
                        return b""
                    break
                chunks.append(data)
                total += len(data)
            if chunks:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            # Spurious wakeup: wait again.

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` in order, waiting (not blocking) while the PTY is full."""
        async with self._write_lock:
            mv = memoryview(data)
            while mv:
                fd = self._fd
                if fd is None:
                    raise trio.ClosedResourceError("pty is closed")
                try:
                    n = os.write(fd, mv)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(fd)
                    continue
                except OSError as e:
                    if e.errno == errno.EIO:
                        raise trio.BrokenResourceError("pty is gone") from e
                    raise
                mv = mv[n:]
            await trio.lowlevel.checkpoint()

    def resize(self, rows: int, cols: int) -> None:
        """Set the window size; the kernel sends SIGWINCH to the foreground process group."""
        if self._fd is None:
            return
        _set_winsize(self._fd, rows, cols)
        self.rows, self.cols = rows, cols

    # -- exit ------------------------------------------------------------------------
    def _collect(self) -> bool:
        if self.returncode is None:
            rc = self._popen.poll()
            if rc is None:
                return False
            self.returncode = rc
            self.exited_at = time.time()
            if self._close_watch is not None and self._pidfd is not None:
                # Another task may be parked on it: wake it before the fd goes away.
                trio.lowlevel.notify_closing(self._pidfd)
                self._close_watch()
                self._pidfd = self._close_watch = None
        return True

    async def wait_exit(self) -> tuple[int | None, int | None]:
        """Wait until the child exits (and is reaped); returns ``(exit_code, exit_signal)``."""
        while not self._collect():
            if self._watching:
                await self._exit_changed.wait()
                continue
            self._watching = True
            try:
                if self._pidfd is not None:
                    try:
                        await trio.lowlevel.wait_readable(self._pidfd)
                    except trio.ClosedResourceError:
                        pass  # collected by another task meanwhile
                else:  # no pidfd (old kernel / macOS): poll without blocking the loop
                    await trio.sleep(0.05)
            finally:
                self._watching = False
                ev, self._exit_changed = self._exit_changed, trio.Event()
                ev.set()
        return self.exit_status

    # -- teardown --------------------------------------------------------------------
    def close_master(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            trio.lowlevel.notify_closing(fd)
            os.close(fd)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (the foreground job, usually)."""
        if not self.exited:
            proctable.signal_group(self.pgid, sig)

    async def _members(self) -> list[proctable.ProcStat]:
        if not proctable.HAVE_PROC:
            return []
        reader = self.table_reader
        table = await reader.fresh() if reader is not None else None
        return await trio.to_thread.run_sync(
            partial(
                proctable.find_members,
                sids=(self.sid,),
                pgids=(self.pgid,),
                roots=(self.pid,),
                terminal_ids=(self.terminal_id,),
                not_before=self.starttime,
                table=table,
            )
        )

    async def terminate(self, grace: float) -> list[int]:
        """Hang up the whole session, wait up to ``grace`` s, SIGKILL the rest, reap.

        Returns the pids of other session members that had to be signalled. Safe to call
        more than once and after the child exited. Callers shield it from cancellation.
        """
        seen: set[int] = set()

        async def scan() -> list[int]:
            pids = [m.pid for m in await self._members() if m.pid != self.pid]
            seen.update(pids)
            return pids

        members = await scan()
        if not self.exited:
            proctable.signal_group(self.pgid, signal.SIGHUP)
            proctable.signal_group(self.pgid, signal.SIGCONT)
        proctable.signal_pids(members, signal.SIGHUP)
        proctable.signal_pids(members, signal.SIGCONT)
        self.close_master()
        with trio.move_on_after(grace):
            await self.wait_exit()
            # Give the session's other processes the rest of the grace to go away.
            while members:
                await trio.sleep(0.05)
                members = await scan()
        leftovers = await scan()
        if not self.exited:
            proctable.signal_group(self.pgid, signal.SIGKILL)
            proctable.signal_pids([self.pid], signal.SIGKILL)
        if leftovers:
            log.debug(
                "SIGKILL %d leftover process(es) of terminal",
                len(leftovers),
                extra={"fields": {"terminal_id": self.terminal_id, "pids": leftovers}},
            )
            proctable.signal_pids(leftovers, signal.SIGKILL)
        with trio.move_on_after(5):
            await self.wait_exit()
        # Signals are asynchronous: wait (bounded) until every process seen is gone or a
        # zombie, then reap those re-parented to us (the daemon is their subreaper).
        await trio.to_thread.run_sync(proctable.reap_when_gone, sorted(seen), 2.0, (), self.pid)
        # Session members that were zombies already when we started (a job its shell had
        # not reaped yet) are ours now too; a shared, fresh walk finds them.
        if proctable.HAVE_PROC and self.table_reader is not None:
            table = await self.table_reader.fresh()
            proctable.reap_session_zombies(table, self.sid, exclude=self.pid)
        return leftovers

    def __repr__(self) -> str:
        return f"<PtyProcess {self.terminal_id} pid={self.pid} rc={self.returncode}>"


if sys.platform == "win32":  # pragma: no cover
    raise ImportError("tundra.sessions needs a POSIX system")
