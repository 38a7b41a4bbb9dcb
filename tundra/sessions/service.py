"""TerminalService ("terminals"): owns the PTY pool and every terminal; the term.* IPC methods.

Other services use it in-process (``daemon.service("terminals")``): :meth:`create`,
:meth:`get`, :meth:`list`, :meth:`kill`, :meth:`remove`. Terminals run inside this
service's nursery; cancelling the service (daemon shutdown) tears all of them down, each
shielded and bounded. At start, leftovers of a previous daemon's terminals are killed.
"""

from __future__ import annotations

import builtins
import logging
import os
import signal
from typing import TYPE_CHECKING, Any, Final, final

import msgspec
import trio

from tundra.errors import UsageError
from tundra.ipc.registry import CallContext, MethodRegistry, NoParams, StreamSend
from tundra.sessions import orphans, proctable
from tundra.sessions.api import (
    AttachParams,
    IdParams,
    InputParams,
    NewParams,
    OutputParams,
    OutputResult,
    ResizeParams,
    TerminalInfo,
)
from tundra.sessions.errors import TerminalDead, TerminalNotFound
from tundra.sessions.pool import PtyPool
from tundra.sessions.process import default_shell_argv
from tundra.sessions.terminal import Terminal, TerminalSettings

if TYPE_CHECKING:
    from pathlib import Path

    from tundra.config.schema import Config
    from tundra.daemon.app import Daemon

__all__ = ["TerminalService"]

log = logging.getLogger("tundra.sessions.service")

_MAX_OUTPUT_READ: Final = 8 * 1024 * 1024
_ZOMBIE_SWEEP_SECS: Final = 2.0


def _settings_from(config: Config) -> TerminalSettings:
    t = config.terminals
    return TerminalSettings(
        scrollback_bytes=t.scrollback_bytes,
        reconnect_grace=t.reconnect_grace_secs,
        idle_timeout=t.idle_timeout_secs,
        max_lifetime=t.max_lifetime_secs,
        subscriber_queue_bytes=t.subscriber_queue_bytes,
        kill_grace=config.daemon.kill_grace_secs,
    )


def _check_size(rows: int, cols: int) -> None:
    if not (1 <= rows <= 1000 and 1 <= cols <= 1000):
        raise UsageError(f"invalid terminal size {cols}x{rows} (rows and cols must be 1-1000)")


@final
class TerminalService:
    """The daemon's terminals. Also usable without a daemon (tests, benchmarks)."""

    name = "terminals"

    def __init__(self, config: Config, *, orphans_file: Path | None = None) -> None:
        self.config = config
        self.settings = _settings_from(config)
        self.pool = PtyPool(
            config.daemon.max_ptys,
            queue_when_full=config.daemon.queue_when_full,
            queue_timeout=config.daemon.queue_timeout_secs,
        )
        self.orphans_file = orphans_file
        self._terminals: dict[str, Terminal] = {}
        self._nursery: trio.Nursery | None = None
        self._daemon: Daemon | None = None
        self._record_lock = trio.Lock()
        self._record_version = 0
        self._record_written = 0
        self._known_sids: set[int] = set()
        self._store_send: trio.MemorySendChannel[tuple[str, Any]] | None = None
        self._subreaper = False
        self.killed_at_start: list[int] = []
        self.last_error: str | None = None

    # -- Service protocol ------------------------------------------------------------
    def register(self, registry: MethodRegistry) -> None:
        registry.unary("term.new", NewParams, self._h_new, "Create a terminal.")
        registry.unary("term.list", NoParams, self._h_list, "List terminals.")
        registry.unary("term.get", IdParams, self._h_get, "One terminal (id, prefix or name).")
        registry.unary("term.input", InputParams, self._h_input, "Write input bytes.")
        registry.unary("term.resize", ResizeParams, self._h_resize, "Set rows/cols.")
        registry.unary("term.kill", IdParams, self._h_kill, "Kill (keeps it as dead).")
        registry.unary("term.remove", IdParams, self._h_remove, "Kill if alive and forget.")
        registry.unary("term.output", OutputParams, self._h_output, "Read scrollback bytes.")
        registry.stream("term.attach", AttachParams, self._h_attach, "Replay + live output.")

    async def run(
        self,
        daemon: Daemon | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._daemon = daemon
        if daemon is not None and self.orphans_file is None:
            self.orphans_file = daemon.paths.orphans_file
        if self.orphans_file is not None:
            self.killed_at_start = await trio.to_thread.run_sync(
                orphans.kill_leftovers, self.orphans_file
            )
            if self.killed_at_start:
                log.warning(
                    "killed %d process(es) left behind by a previous daemon",
                    len(self.killed_at_start),
                )
        # Orphaned grandchildren of terminals re-parent to us, so we can reap them.
        self._subreaper = proctable.become_subreaper()
        store_send, store_recv = trio.open_memory_channel[tuple[str, Any]](1000)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._store_send = store_send
                nursery.start_soon(self._store_writer, store_recv)
                self._store_put("reconcile", None)
                if self._subreaper:
                    nursery.start_soon(self._zombie_sweeper)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._store_send = None
            store_send.close()
            with trio.CancelScope(shield=True):
                await self._reap_zombies()
                if self._subreaper:
                    proctable.become_subreaper(False)
                    self._subreaper = False
                if self.orphans_file is not None:
                    with trio.move_on_after(5):
                        await self._write_record()

    def status(self) -> dict[str, Any]:
        counts = {"active": 0, "disconnected": 0, "dead": 0}
        for t in self._terminals.values():
            counts[t.status] += 1
        return {
            "state": "running" if self._nursery is not None else "stopped",
            "terminals": len(self._terminals),
            **counts,
            **self.pool.stats(),
            "last_error": self.last_error,
        }

    def force_stop(self) -> None:
        """Second SIGTERM/SIGINT: SIGKILL every terminal's session now, skipping the grace.

        The regular (shielded) teardown still runs afterwards and reaps what this killed.
        """
        for t in list(self._terminals.values()):
            if t.proc.exited:
                continue
            members = proctable.find_members(
                sids=(t.proc.sid,), pgids=(t.proc.pgid,), roots=(t.proc.pid,),
                terminal_ids=(t.proc.terminal_id,), not_before=t.proc.starttime,
            )
            proctable.signal_group(t.proc.pgid, signal.SIGKILL)
            proctable.signal_pids([m.pid for m in members], signal.SIGKILL)

    def reload(self, config: Config) -> None:
        new = _settings_from(config)
        for slot in TerminalSettings.__slots__:
            setattr(self.settings, slot, getattr(new, slot))
        self.pool.max_ptys = config.daemon.max_ptys
        self.pool.queue_when_full = config.daemon.queue_when_full
        self.pool.queue_timeout = config.daemon.queue_timeout_secs
        self.config = config
        for t in self._terminals.values():
            t._changed()  # let watchdogs pick up new timeouts

    # -- in-process API --------------------------------------------------------------
    async def create(
        self,
        argv: list[str] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        name: str | None = None,
        rows: int | None = None,
        cols: int | None = None,
        persistent: bool = True,
    ) -> Terminal:
        """Spawn a terminal. Raises PtyAtCapacity, PtySpawnFailed, UsageError."""
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError("terminals service is not running")
        rows = rows or self.config.terminals.default_rows
        cols = cols or self.config.terminals.default_cols
        _check_size(rows, cols)
        if name:
            if any(t.name == name and not t.is_dead for t in self._terminals.values()):
                raise UsageError(f"terminal name already in use: {name}")
        argv = list(argv) if argv else default_shell_argv()
        proc = await self.pool.spawn(argv, cwd=cwd, env=env, rows=rows, cols=cols)
        term = Terminal(
            proc,
            name=name or "",
            persistent=persistent,
            # Shared: a reload changes timeouts of running terminals too (the ring size is
            # read once, at creation).
            settings=self.settings,
            on_event=self._on_terminal_event,
        )
        self._terminals[term.id] = term
        self._known_sids.add(proc.sid)
        await nursery.start(self._run_terminal, term)
        await self._write_record()
        self._on_terminal_event("terminal.created", term)
        log.info(
            "terminal created: %s",
            " ".join(argv),
            extra={"fields": {"id": term.id, "pid": proc.pid, "name": term.name}},
        )
        return term

    def get(self, ident: str) -> Terminal:
        """By full id, name (live first), or unique id prefix. Raises TerminalNotFound."""
        t = self._terminals.get(ident)
        if t is not None:
            return t
        named = [t for t in self._terminals.values() if t.name and t.name == ident]
        if named:
            live = [t for t in named if not t.is_dead]
            return (live or named)[-1]
        if ident:
            hits = [t for tid, t in self._terminals.items() if tid.startswith(ident)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise TerminalNotFound(ident, ambiguous=[t.id for t in hits])
        raise TerminalNotFound(ident)

    def list(self) -> list[Terminal]:
        return sorted(self._terminals.values(), key=lambda t: t.created_at)

    async def kill(self, ident: str) -> Terminal:
        """Kill the terminal's whole session (SIGHUP, grace, SIGKILL); it stays as dead."""
        t = self.get(ident)
        if not t.is_dead:
            t.request_kill("killed")
            await t.wait_exit()
        return t

    async def remove(self, ident: str) -> None:
        t = await self.kill(ident)
        if self._terminals.pop(t.id, None) is not None:
            self._emit_event("terminal.removed", t)
            self._store_put("delete", t.id)

    # -- internals -------------------------------------------------------------------
    async def _run_terminal(
        self, term: Terminal, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await term.run(on_dead=self._on_dead, task_status=task_status)

    async def _on_dead(self, term: Terminal) -> None:
        # (Teardown already reaped the session's zombies; the sweeper handles stragglers.)
        self.pool.release(term.id)
        if self.orphans_file is not None:
            with trio.move_on_after(5):
                await self._write_record()

    def _emit_event(self, topic: str, term: Terminal) -> None:
        if self._daemon is not None:
            self._daemon.events.publish(topic, msgspec.to_builtins(term.info()))

    def _on_terminal_event(self, topic: str, term: Terminal) -> None:
        self._emit_event(topic, term)
        if topic in ("terminal.created", "terminal.status", "terminal.exit"):
            self._store_put("upsert", term.info())

    def _store_put(self, op: str, arg: Any) -> None:
        if self._store_send is None or self._daemon is None:
            return
        if self._daemon.services.get("store") is None:
            return
        try:
            self._store_send.send_nowait((op, arg))
        except (trio.WouldBlock, trio.ClosedResourceError):
            pass  # the store is behind: the next status change writes a fresh row

    async def _store_writer(self, recv: trio.MemoryReceiveChannel[tuple[str, Any]]) -> None:
        async for op, arg in recv:
            try:
                store = self._daemon.services.get("store") if self._daemon else None
                repo = getattr(store, "terminals", None) if store is not None else None
                if repo is None:
                    continue
                with trio.move_on_after(5):
                    if op == "upsert":
                        await repo.upsert(arg)
                    elif op == "delete":
                        await repo.delete(arg)
                    elif op == "reconcile":
                        # Rows a previous daemon left non-dead: those processes are gone now.
                        for rec in await repo.list():
                            if rec.status != "dead" and rec.id not in self._terminals:
                                await repo.mark_dead(rec.id)
            except Exception as e:  # the store is optional for terminals
                log.debug("could not persist terminal metadata: %s", e)

    async def _write_record(self) -> None:
        """Persist pgids/sids of live terminals (coalesces concurrent callers)."""
        path = self.orphans_file
        if path is None:
            return
        self._record_version += 1
        mine = self._record_version
        async with self._record_lock:
            if self._record_written >= mine:
                return
            version = self._record_version
            entries = [
                orphans.OrphanEntry(
                    id=t.id,
                    pid=t.proc.pid,
                    pgid=t.proc.pgid,
                    sid=t.proc.sid,
                    starttime=t.proc.starttime,
                )
                for t in self._terminals.values()
                if not t.is_dead
            ]
            try:
                await trio.to_thread.run_sync(orphans.write_record, path, entries)
            except OSError as e:
                self.last_error = f"could not write {path}: {e}"
                log.error("could not record terminal process groups: %s", e)
            self._record_written = version

    async def _reap_zombies(self, stale: set[int] | None = None) -> set[int]:
        """Reap zombie children from terminal sessions (and those in ``stale``).

        Returns the zombie children left (candidates for the next sweep's ``stale``).
        """
        if not self._subreaper:
            return set()
        sids = set(self._known_sids)
        exclude = {t.proc.pid for t in self._terminals.values() if not t.proc.exited}
        old = stale or set()

        def sweep() -> tuple[list[int], set[int]]:
            reaped = proctable.reap_adopted_zombies(
                sids=sids, pgids=sids, pids=old, exclude=exclude
            )
            me = os.getpid()
            left = {
                st.pid
                for st in proctable.iter_stats()
                if st.ppid == me and st.state == "Z" and st.pid not in exclude
            }
            return reaped, left

        reaped, left = await trio.to_thread.run_sync(sweep)
        if reaped:
            log.debug("reaped %d orphaned process(es)", len(reaped))
        return left

    async def _zombie_sweeper(self) -> None:
        # Being the subreaper, the daemon adopts every orphan below it, including ones that
        # did not come from a terminal. A zombie child still there one sweep later has no
        # owner waiting for it (an owner reaps at once on exit): reap it too.
        stale: set[int] = set()
        while True:
            await trio.sleep(_ZOMBIE_SWEEP_SECS)
            stale = await self._reap_zombies(stale)

    # -- IPC handlers ----------------------------------------------------------------
    async def _h_new(self, ctx: CallContext, p: NewParams) -> TerminalInfo:
        t = await self.create(p.argv, p.cwd, p.env, p.name, p.rows, p.cols, persistent=p.persistent)
        return t.info()

    async def _h_list(
        self, ctx: CallContext, p: NoParams
    ) -> dict[str, builtins.list[TerminalInfo]]:
        return {"terminals": [t.info() for t in self.list()]}

    async def _h_get(self, ctx: CallContext, p: IdParams) -> TerminalInfo:
        return self.get(p.id).info()

    async def _h_input(self, ctx: CallContext, p: InputParams) -> dict[str, Any]:
        await self.get(p.id).write(p.data)
        return {}

    async def _h_resize(self, ctx: CallContext, p: ResizeParams) -> TerminalInfo:
        _check_size(p.rows, p.cols)
        t = self.get(p.id)
        t.resize(p.rows, p.cols)
        return t.info()

    async def _h_kill(self, ctx: CallContext, p: IdParams) -> TerminalInfo:
        return (await self.kill(p.id)).info()

    async def _h_remove(self, ctx: CallContext, p: IdParams) -> dict[str, Any]:
        await self.remove(p.id)
        return {}

    async def _h_output(self, ctx: CallContext, p: OutputParams) -> OutputResult:
        t = self.get(p.id)
        limit = _MAX_OUTPUT_READ if p.max_bytes <= 0 else min(p.max_bytes, _MAX_OUTPUT_READ)
        start, data, lost = t.scrollback.read(p.since, limit)
        return OutputResult(start=start, data=data, end=start + len(data), lost=lost)

    async def _h_attach(self, ctx: CallContext, p: AttachParams, send: StreamSend) -> TerminalInfo:
        t = self.get(p.id)
        if t.is_dead:
            raise TerminalDead(t.exit_code, t.exit_signal)
        async with t.subscribe(p.since, client=True) as sub:
            async for item in sub:
                await send(item)
        return t.info()
