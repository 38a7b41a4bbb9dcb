"""The `tasks` daemon service: the queue, the scheduler loop, agent runs, review and approval.

All task state lives here in memory (loaded at start) and is written through to the store on
every change, with an append-only event history. Transitions go through
:func:`tundra.tasks.state.next_state` so an invalid move raises ``StateMachineError``.
Each running task is one nursery task (:meth:`TaskService._run_attempt`) that owns its
worktree set-up, agent terminal, supervision (timeout, stuck detection) and outcome.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from tundra.agents.errors import ApprovalError, SupervisorError
from tundra.agents.registry import AgentPreset, PresetRegistry, load_registry
from tundra.agents.supervisor import TAIL_BYTES, StuckDetector
from tundra.errors import TundraError, UsageError
from tundra.tasks import api
from tundra.tasks.errors import (
    AmbiguousTaskIdError,
    LifecycleError,
    StateMachineError,
    TaskNotFoundError,
    TaskRunnerError,
)
from tundra.tasks.model import LANES, AgentRun, Task, TaskEvent, new_task_id
from tundra.tasks.ports import AgentProcess, TaskStore, TerminalLauncher
from tundra.tasks.scheduler import Limits, capacity_left, pick_next
from tundra.tasks.state import next_state
from tundra.tasks.store import MemoryTaskStore
from tundra.workspace.worktrees import WorktreeManager, branch_for

if TYPE_CHECKING:
    from tundra.config.schema import AgentsConfig, Config
    from tundra.daemon.app import Daemon
    from tundra.ipc.registry import CallContext, MethodRegistry, StreamSend

__all__ = ["TaskService"]

log = logging.getLogger("tundra.tasks.service")

_ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[@-Z\\-_]")
_TAIL_LINES = 20
_LOG_KEEP = 4 * 1024 * 1024
_READY_WAIT = 10.0


def output_tail(data: bytes, lines: int = _TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of terminal output, without escape sequences."""
    text = _ANSI.sub(b"", data).decode("utf-8", "replace").replace("\r", "")
    kept = [ln for ln in text.split("\n") if ln.strip()]
    return "\n".join(kept[-lines:])


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _is_tundra(exc: BaseException) -> bool:
    return all(isinstance(e, TundraError) for e in _leaves(exc))


def _describe(exc: BaseException) -> str:
    """The message of the (first) TundraError inside ``exc``, else a generic description."""
    leaves = _leaves(exc)
    for e in leaves:
        if isinstance(e, TundraError):
            return e.message
    return f"internal error: {type(leaves[0]).__name__}: {leaves[0]}"


class _Run:
    """Book-keeping of one active attempt."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.scope = trio.CancelScope()
        self.proc: AgentProcess | None = None
        self.kill_reason: str | None = None
        self.user_paused = False
        self.paused_at = 0.0
        self.paused_total = 0.0
        """Seconds spent paused by the user (not counted against the timeout)."""
        self.record: AgentRun | None = None
        self.recorded = False
        self.outcome = ""
        self.error = ""
        self.exit: tuple[int | None, int | None] = (None, None)
        self.log = bytearray()
        self.log_changed = trio.Event()
        self.done = trio.Event()

    def append_log(self, data: bytes) -> None:
        self.log += data
        if len(self.log) > _LOG_KEEP:
            del self.log[: len(self.log) - _LOG_KEEP]
        ev, self.log_changed = self.log_changed, trio.Event()
        ev.set()


class TaskService:
    """Named ``tasks``. Build with explicit parts (tests) or let :meth:`run` take them from
    the daemon (store, terminals)."""

    name = "tasks"

    def __init__(
        self,
        config: AgentsConfig,
        *,
        worktrees_dir: Path,
        logs_dir: Path,
        agents_file: Path | None = None,
        store: TaskStore | None = None,
        launcher: TerminalLauncher | None = None,
        registry: PresetRegistry | None = None,
        publish: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self.config = config
        self.worktrees = WorktreeManager(worktrees_dir)
        self.logs_dir = logs_dir
        self.agents_file = agents_file
        self.store: TaskStore = store if store is not None else MemoryTaskStore()
        self.launcher = launcher
        self.registry = registry
        self._publish = publish
        self._tasks: dict[str, Task] = {}
        self._runs: dict[str, _Run] = {}
        self._spawning = 0
        self._paused = False
        self._draining = False
        self._wake = trio.Event()
        self._idle = trio.Event()
        self._persist_lock = trio.Lock()
        self._merging: set[str] = set()
        self._merge_locks: dict[str, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        self._fs_limiter = trio.CapacityLimiter(2)
        self._started = False
        self._phase = "starting"
        self._reload_presets = False
        self._ready = trio.Event()
        self.max_running_seen = 0
        self.last_error: str | None = None

    # -- service protocol ----------------------------------------------------------------
    @classmethod
    def from_daemon(cls, daemon: Daemon) -> TaskService:
        paths = daemon.paths
        return cls(
            daemon.config.agents,
            worktrees_dir=paths.worktrees_dir,
            logs_dir=paths.logs_dir / "tasks",
            agents_file=paths.agents_file,
            publish=daemon.events.publish,
        )

    def register(self, registry: MethodRegistry) -> None:
        def u(name: str, params: Any, handler: Callable[..., Any]) -> None:
            registry.unary(name, params, self._when_ready(handler), doc=handler.__doc__ or "")

        u("task.add", api.TaskAddParams, self._h_add)
        u("task.list", api.TaskListParams, self._h_list)
        u("task.get", api.TaskIdParams, self._h_get)
        u("task.history", api.TaskIdParams, self._h_history)
        u("task.cancel", api.TaskIdParams, self._h_cancel)
        u("task.retry", api.TaskIdParams, self._h_retry)
        u("task.pause", api.TaskIdParams, self._h_pause)
        u("task.resume", api.TaskIdParams, self._h_resume)
        u("task.approve", api.TaskIdParams, self._h_approve)
        u("task.reject", api.TaskRejectParams, self._h_reject)
        u("task.diff", api.TaskIdParams, self._h_diff)
        u("task.attach-info", api.TaskIdParams, self._h_attach_info)
        u("task.nudge", api.TaskNudgeParams, self._h_nudge)
        u("task.clean", api.TaskCleanParams, self._h_clean)
        u("task.runs", api.TaskIdParams, self._h_runs)
        registry.stream("task.logs", api.TaskLogsParams, self._when_ready(self._h_logs))
        from tundra.ipc.registry import NoParams

        u("queue.status", NoParams, self._h_queue_status)
        u("queue.pause", NoParams, self._h_queue_pause)
        u("queue.resume", NoParams, self._h_queue_resume)
        u("queue.drain", api.QueueDrainParams, self._h_queue_drain)
        u("agents.list", NoParams, self._h_agents_list)

    def _when_ready(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap an IPC handler so that calls made right after start-up wait (bounded) for
        the tasks to be loaded instead of failing."""

        async def wrapped(*args: Any) -> Any:
            if not self._started:
                with trio.move_on_after(_READY_WAIT):
                    await self._ready.wait()
            return await handler(*args)

        return wrapped

    async def run(
        self, daemon: Daemon, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Take store + terminals from the daemon, then :meth:`serve`."""
        from tundra.agents.terminals import DaemonTerminalLauncher
        from tundra.tasks.store import RecordTaskStore

        if self.launcher is None:
            self.launcher = DaemonTerminalLauncher(daemon)
        try:
            store = daemon.service("store")
        except KeyError:
            log.warning("no store service: tasks are kept in memory only")
            await self.serve(task_status=task_status)
            return
        self.store = RecordTaskStore(store)
        # Ready at once: the daemon must start even while the database is unreachable; task
        # methods answer LifecycleError until the tasks are loaded.
        task_status.started()
        self._phase = "waiting for the store"
        while True:
            try:
                await store.wait_ready(timeout=30)
                break
            except TundraError as exc:
                self.last_error = str(exc)
                log.warning("tasks wait for the store: %s", exc)
        await self.serve()

    def status(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for t in self._tasks.values():
            counts[t.state] = counts.get(t.state, 0) + 1
        return {
            "state": "running" if self._started else self._phase,
            "paused": self._paused,
            "draining": self._draining,
            "running": len(self._runs),
            "max_concurrent": self.config.max_concurrent,
            "tasks": counts,
            "last_error": self.last_error,
        }

    def reload(self, config: Config) -> None:
        """New [agents] limits apply at once; agents.toml is re-read by the scheduler loop
        (off the event loop); a broken file keeps the previous presets."""
        self.config = config.agents
        self._reload_presets = True
        self._kick()

    async def _maybe_reload_presets(self) -> None:
        if not self._reload_presets:
            return
        self._reload_presets = False
        try:
            self.registry = await trio.to_thread.run_sync(load_registry, self.agents_file)
            log.info("agent presets reloaded: %s", ", ".join(self.registry.names()))
        except TundraError as exc:
            self.last_error = str(exc)
            log.error("agent presets not reloaded: %s", exc)

    # -- start-up and the scheduler loop -------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.registry is None:
            self.registry = await trio.to_thread.run_sync(load_registry, self.agents_file)
        for t in await self.store.load_all():
            self._tasks[t.id] = t
        await self._recover()
        await self._prune_worktrees()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._started = True
                self._ready.set()
                task_status.started()
                await self._schedule_forever()
        finally:
            self._nursery = None
            self._started = False

    async def _recover(self) -> None:
        """Tasks a dead daemon left running come back ``interrupted -> queued``."""
        for t in list(self._tasks.values()):
            if t.state in ("running", "waiting"):
                await self._transition(t, "interrupt", message="daemon stopped during the run")
                for rec in await self.store.runs(t.id):
                    if rec.state == "running":
                        rec.state, rec.finished_at = "interrupted", time.time()
                        rec.error = "daemon stopped during the run"
                        await self.store.run_finished(rec)
            if t.state == "interrupted":
                await self._transition(
                    t,
                    "requeue",
                    message="requeued after interruption",
                    terminal_id="",
                    resume=bool(t.session_id),
                )

    async def _prune_worktrees(self) -> None:
        repos = {t.repo for t in self._tasks.values() if t.repo}
        for repo in repos:
            try:
                await self.worktrees.prune(repo)
            except TundraError as exc:
                log.warning("worktree prune failed: %s", exc, extra={"fields": {"repo": repo}})

    def _kick(self) -> None:
        ev, self._wake = self._wake, trio.Event()
        ev.set()

    def _limits(self) -> Limits:
        return Limits(
            max_concurrent=self.config.max_concurrent, per_repo_limit=self.config.per_repo_limit
        )

    def _free_ptys(self) -> int:
        if self.launcher is None:
            return 0
        return self.launcher.free_slots() - self._spawning

    async def _schedule_forever(self) -> None:
        while True:
            wake = self._wake
            await self._maybe_reload_presets()
            next_at = self._dispatch_ready()
            delay = max(0.0, next_at - time.time()) if next_at < math.inf else math.inf
            if self._free_ptys() <= 0 and self._has_ready(time.time()):
                # The PTY pool frees up without telling us (other terminals exiting): re-check.
                delay = min(delay, 0.5)
            with trio.move_on_after(delay):
                await wake.wait()

    def _has_ready(self, now: float) -> bool:
        return not (self._paused or self._draining) and any(
            t.state == "queued" and not t.held and t.not_before <= now for t in self._tasks.values()
        )

    def _dispatch_ready(self) -> float:
        """Start every task that may start now; return when the next backoff ends."""
        assert self._nursery is not None
        next_at = math.inf
        if self._paused or self._draining:
            return next_at
        now = time.time()
        while capacity_left(self._limits(), len(self._runs), self._free_ptys()) > 0:
            running = [self._tasks[i] for i in self._runs]
            task = pick_next(self._tasks.values(), running, self._limits(), now=now)
            if task is None:
                break
            ev = self._apply(
                task,
                "start",
                attempts=task.attempts + 1,
                started_at=time.time(),
                finished_at=None,
                exit_code=None,
                message=f"attempt {task.attempts + 1}",
            )
            run = _Run(task.id)
            self._runs[task.id] = run
            self._spawning += 1
            self._idle = trio.Event()
            self.max_running_seen = max(self.max_running_seen, len(self._runs))
            self._nursery.start_soon(self._run_attempt, task, run, ev)
        for t in self._tasks.values():
            if t.state == "queued" and not t.held and t.not_before > now:
                next_at = min(next_at, t.not_before)
        return next_at

    # -- transitions and persistence -----------------------------------------------------
    async def _transition(
        self, task: Task, event: str, *, message: str = "", **changes: Any
    ) -> Task:
        """Apply ``event`` (raises StateMachineError), set ``changes``, persist, publish."""
        ev = self._apply(task, event, message=message, **changes)
        await self._commit(task, ev)
        return task

    def _apply(self, task: Task, event: str, *, message: str = "", **changes: Any) -> TaskEvent:
        """The in-memory half of a transition (synchronous, so it is atomic under trio)."""
        old = task.state
        new = next_state(old, event, task_id=task.id)
        now = time.time()
        task.state = new
        task.updated_at = now
        for k, v in changes.items():
            setattr(task, k, v)
        if new in ("done", "cancelled", "failed", "review") and "finished_at" not in changes:
            task.finished_at = now
        log.info(
            "task %s: %s -> %s (%s)",
            task.id,
            old,
            new,
            event,
            extra={"fields": {"task_id": task.id, "event": event}},
        )
        return TaskEvent(
            task_id=task.id,
            ts=now,
            kind="state",
            from_state=old,
            to_state=new,
            message=message,
            data={"event": event},
        )

    async def _commit(self, task: Task, ev: TaskEvent) -> None:
        """The durable half: persist the task + event, publish, wake the scheduler."""
        await self._persist(task, ev)
        self._emit(
            "task.state",
            {**task.to_dict(), "from_state": ev.from_state, "event": ev.data.get("event", "")},
        )
        self._kick()

    async def _persist(self, task: Task, event: TaskEvent | None = None) -> None:
        async with self._persist_lock:
            try:
                await self.store.save(task)
                if event is not None:
                    await self.store.append_event(event)
            except TundraError as exc:
                self.last_error = str(exc)
                log.error("could not persist task %s: %s", task.id, exc)
                raise

    async def _note(self, task: Task, kind: str, message: str, **data: Any) -> None:
        ev = TaskEvent(task_id=task.id, ts=time.time(), kind=kind, message=message, data=data)
        async with self._persist_lock:
            await self.store.append_event(ev)
        self._emit(f"task.{kind}", {"id": task.id, "message": message, **data})

    async def _writes_settled(self) -> None:
        """Wait for the writes already queued (trio locks are FIFO), so a reader who saw a
        state also sees its history event."""
        async with self._persist_lock:
            pass

    def _emit(self, topic: str, data: dict[str, Any]) -> None:
        if self._publish is not None:
            self._publish(topic, data)

    # -- one attempt ---------------------------------------------------------------------
    async def _run_attempt(self, task: Task, run: _Run, start: TaskEvent) -> None:
        spawned = False
        try:
            with run.scope:
                await self._commit(task, start)
                try:
                    proc, preset = await self._spawn(task, run)
                finally:
                    self._spawning -= 1
                    spawned = True
                await self._supervise(task, run, proc, preset)
        except Exception as exc:
            # A failed attempt (or a bug) fails this task, never the daemon.
            reason = _describe(exc)
            if not _is_tundra(exc):
                log.exception("task %s: unexpected error in the runner", task.id)
            self.last_error = reason
            run.outcome, run.error = "error", reason
            with trio.CancelScope(shield=True):
                if run.proc is not None:
                    with trio.move_on_after(30):
                        await run.proc.kill()
                if task.state in ("running", "waiting"):
                    try:
                        await self._fail(task, reason)
                    except TundraError as exc2:
                        log.error("task %s: could not record failure: %s", task.id, exc2)
        finally:
            if not spawned:
                self._spawning -= 1
            self._runs.pop(task.id, None)
            run.done.set()
            with trio.CancelScope(shield=True):
                await self._save_log(task, run)
                await self._record_run_end(task, run)
                if run.proc is not None and self.launcher is not None:
                    with trio.move_on_after(10):
                        await self.launcher.forget(run.proc.id)
            if not self._runs:
                self._idle.set()
            self._kick()

    async def _spawn(self, task: Task, run: _Run) -> tuple[AgentProcess, AgentPreset]:
        assert self.registry is not None
        if self.launcher is None:
            raise TaskRunnerError("no terminal service to run agents in")
        preset = self.registry.get(task.preset)
        wt = await self.worktrees.ensure(task.repo, task.id, task.base_branch)
        task.worktree, task.branch = wt.path, wt.branch
        resuming = task.resume and preset.can_resume(task.session_id)
        argv = preset.render(
            task.prompt,
            task_id=task.id,
            worktree=wt.path,
            session_id=task.session_id,
            resume=resuming,
        )
        task.resume = False
        if resuming:
            await self._note(task, "note", f"resuming agent session {task.session_id}")
        env = preset.environment(task.env)
        env["TUNDRA_TASK_ID"] = task.id
        env["TUNDRA_TASK_PROMPT"] = task.prompt
        env["TUNDRA_TASK_ATTEMPT"] = str(task.attempts)
        proc = await self.launcher.launch(
            argv, cwd=wt.path, env=env, name=f"task-{task.id}-{task.attempts}"
        )
        run.proc = proc
        task.terminal_id = proc.id
        run.record = AgentRun(
            id=f"{task.id}-{task.attempts}",
            task_id=task.id,
            attempt=task.attempts,
            preset=preset.name,
            terminal_id=proc.id,
            pid=getattr(proc, "pid", None),
            started_at=time.time(),
        )
        await self.store.run_started(run.record)
        await self._persist(task)
        await self._note(task, "spawned", f"agent {preset.name} started", terminal_id=proc.id)
        return proc, preset

    async def _supervise(
        self, task: Task, run: _Run, proc: AgentProcess, preset: AgentPreset
    ) -> None:
        pumped = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump_log, task, run, proc, preset, pumped)
            nursery.start_soon(self._watchdog, task, run, proc, preset)
            code, sig = await proc.wait_exit()
            # Let the log pump read what the agent wrote last (it ends on the exit item).
            with trio.move_on_after(2):
                await pumped.wait()
            nursery.cancel_scope.cancel()
        await self._finish(task, run, proc, code, sig)

    async def _pump_log(
        self,
        task: Task,
        run: _Run,
        proc: AgentProcess,
        preset: AgentPreset,
        pumped: trio.Event,
    ) -> None:
        pattern = (
            re.compile(preset.session_id_pattern.encode()) if preset.session_id_pattern else None
        )
        try:
            async with proc.subscribe(0) as items:
                async for item in items:
                    data = getattr(item, "data", None)
                    if not data:
                        continue
                    run.append_log(bytes(data))
                    if pattern is not None:
                        # Search the recent tail: an id may straddle two chunks.
                        m = pattern.search(bytes(run.log[-(len(data) + 256) :]))
                        if m and m.group(1).decode(errors="replace") != task.session_id:
                            task.session_id = m.group(1).decode(errors="replace")
                            await self._persist(task)
        except TundraError as exc:
            log.debug("log pump of %s ended: %s", run.task_id, exc)
        finally:
            pumped.set()

    async def _watchdog(
        self, task: Task, run: _Run, proc: AgentProcess, preset: AgentPreset
    ) -> None:
        stuck_after = preset.stuck_after_secs or self.config.stuck_after_secs
        detector = StuckDetector(stuck_after)
        deadline = trio.current_time() + task.timeout_secs
        nudges = 0
        while True:
            now = trio.current_time()
            paused = run.paused_total + (now - run.paused_at if run.user_paused else 0.0)
            if now >= deadline + paused and not run.user_paused:
                await self._kill(run, proc, "timeout")
                return
            await trio.sleep(max(0.01, min(detector.interval, deadline + paused - now)))
            if run.user_paused:
                detector.reset()
                continue
            now = trio.current_time()
            if now >= deadline + run.paused_total:
                continue
            _, tail, _ = proc.read(max(0, proc.offset - TAIL_BYTES))
            quiet = trio.current_time() - proc.last_output_at
            if preset.idle_markers:
                await self._check_idle(task, preset, tail, quiet, detector.interval)
            if task.state == "waiting":
                # Waiting for input is not being stuck.
                detector.reset()
                continue
            if not detector.observe(tail, quiet_for=quiet):
                continue
            detector.reset()
            policy = preset.stuck_policy
            if policy == "nudge" and nudges >= 3:
                policy = "restart"
            await self._note(
                task,
                "stuck",
                f"no output for {quiet:.0f}s; policy {policy}",
                quiet_secs=round(quiet, 1),
                policy=policy,
            )
            if policy == "nudge":
                nudges += 1
                text = preset.nudge_text or "continue"
                try:
                    await proc.write(text.encode() + b"\r")
                except TundraError:
                    return
            else:
                await self._kill(run, proc, "restart" if policy == "restart" else "stuck")
                return

    async def _check_idle(
        self, task: Task, preset: AgentPreset, tail: bytes, quiet: float, interval: float
    ) -> None:
        text = output_tail(tail, 3)
        waiting = quiet >= interval and any(m in text for m in preset.idle_markers)
        if waiting and task.state == "running":
            await self._transition(task, "wait", message="agent is waiting for input")
        elif not waiting and task.state == "waiting" and quiet < interval:
            await self._transition(task, "resume", message="agent output resumed")

    async def _record_run_end(self, task: Task, run: _Run) -> None:
        rec = run.record
        if rec is None or run.recorded:
            return
        run.recorded = True
        if task.state == "cancelled":
            run.outcome = "cancelled"
        rec.state = run.outcome or "interrupted"
        rec.exit_code, rec.exit_signal = run.exit
        rec.error = run.error
        rec.finished_at = time.time()
        try:
            with trio.move_on_after(10):
                await self.store.run_finished(rec)
        except TundraError as exc:
            log.warning("could not record the end of run %s: %s", rec.id, exc)

    async def _kill(self, run: _Run, proc: AgentProcess, reason: str) -> None:
        if run.kill_reason is None:
            run.kill_reason = reason
        with trio.move_on_after(30):
            await proc.kill()
            return
        raise SupervisorError(f"could not kill the agent of task {run.task_id} ({reason})")

    async def _finish(
        self, task: Task, run: _Run, proc: AgentProcess, code: int | None, sig: int | None
    ) -> None:
        task.exit_code = code
        run.exit = (code, sig)
        if task.state == "cancelled":
            await self._persist(task)
            return
        reason = run.kill_reason
        run.outcome = {"timeout": "timeout", "stuck": "stuck", "restart": "stuck"}.get(
            reason or "", "succeeded" if code == 0 else "failed"
        )
        # Record the attempt before the task's final state shows, so readers see both.
        await self._record_run_end(task, run)
        tail = output_tail(bytes(run.log[-16384:]) or proc.read(max(0, proc.offset - 16384))[1])
        if reason == "timeout":
            await self._fail(task, f"timed out after {task.timeout_secs:g}s", tail)
            return
        if reason in ("stuck", "restart"):
            await self._fail(task, "stuck: no progress", tail, force_retry=reason == "restart")
            return
        if code != 0:
            what = f"exit code {code}" if code is not None else f"signal {sig}"
            await self._fail(task, f"agent failed ({what})", tail)
            return
        if task.state == "waiting":
            await self._transition(task, "resume", message="agent exited")
        await self.worktrees.commit_all(task.worktree, f"tundra: {task.title} ({task.id})")
        ahead = await self.worktrees.commits_ahead(task.repo, task.base_branch, task.branch)
        summary = f"{ahead} commit(s) on {task.branch}"
        if not task.requires_approval and ahead == 0:
            await self._transition(task, "finish", result="nothing to merge", message="no changes")
            await self._remove_worktree(task)
            return
        await self._transition(task, "complete", result=summary, message=summary)
        if not task.requires_approval:
            try:
                await self.approve(task.id)
            except TundraError as exc:
                # A conflict fails the task (approve did that); anything else (dirty base
                # checkout...) leaves it in review for a human.
                log.warning("auto-merge of %s failed: %s", task.id, exc)
                if task.state == "review":
                    await self._note(task, "note", f"auto-merge failed: {exc}")

    async def _fail(
        self, task: Task, reason: str, tail: str = "", *, force_retry: bool = False
    ) -> None:
        result = f"{reason}\n{tail}".strip() if tail else reason
        await self._transition(task, "fail", result=result, message=reason)
        retry = (self.config.auto_restart or force_retry) and task.attempts < task.max_attempts
        if retry:
            backoff = min(
                self.config.retry_backoff_secs * (2 ** max(0, task.attempts - 1)),
                self.config.retry_backoff_max_secs,
            )
            await self._transition(
                task,
                "retry",
                not_before=time.time() + backoff,
                finished_at=None,
                message=f"retry {task.attempts + 1}/{task.max_attempts} in {backoff:g}s",
            )

    async def _remove_worktree(self, task: Task, *, force: bool = False) -> None:
        try:
            await self.worktrees.remove(task.repo, task.id, task.base_branch, force=force)
        except TundraError as exc:
            log.warning("could not remove worktree of %s: %s", task.id, exc)
            return
        task.worktree = ""
        await self._persist(task)

    async def _save_log(self, task: Task, run: _Run) -> None:
        if not run.log:
            return
        path = self.logs_dir / f"{task.id}.log"
        header = f"\n=== attempt {task.attempts} ===\n".encode()
        data = bytes(run.log)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as f:
                f.write(header + data)

        try:
            with trio.move_on_after(10):
                await trio.to_thread.run_sync(write, limiter=self._fs_limiter)
        except OSError as exc:
            log.warning("could not save log of %s: %s", task.id, exc)

    # -- public operations (IPC handlers call these) -------------------------------------
    def _require_started(self) -> None:
        if not self._started:
            raise LifecycleError(
                f"the tasks service is not ready ({self._phase})",
                hint="see `tundra status` (the store may be unreachable)",
            )

    def resolve(self, task_id: str) -> Task:
        self._require_started()
        t = self._tasks.get(task_id)
        if t is not None:
            return t
        matches = [i for i in self._tasks if i.startswith(task_id)] if task_id else []
        if not matches:
            raise TaskNotFoundError(task_id)
        if len(matches) > 1:
            raise AmbiguousTaskIdError(task_id, matches)
        return self._tasks[matches[0]]

    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    async def add(self, p: api.TaskAddParams) -> Task:
        self._require_started()
        assert self.registry is not None
        if not p.title.strip():
            raise UsageError("task title must not be empty")
        if p.lane not in LANES:
            raise UsageError(f"unknown lane: {p.lane} (lanes: {', '.join(LANES)})")
        if not p.repo or not p.repo.startswith(("/", "~")):
            raise UsageError(
                f"task repo must be an absolute path to a git repository, got {p.repo!r}"
            )
        if p.max_attempts < 0 or p.timeout_secs < 0:
            raise UsageError("max_attempts and timeout_secs must be >= 0 (0 = the default)")
        preset = self.registry.get(p.agent or self.config.default_preset)
        root = await self.worktrees.repo_root(p.repo)
        base = p.base_branch or await self.worktrees.current_branch(root)
        if not await self.worktrees.branch_exists(root, base):
            from tundra.workspace.errors import RepoError

            raise RepoError(f"base branch not found: {base} in {root}")
        tid = new_task_id()
        while tid in self._tasks:
            tid = new_task_id()
        now = time.time()
        task = Task(
            id=tid,
            title=p.title.strip(),
            prompt=p.prompt or p.title,
            repo=str(root),
            base_branch=base,
            preset=preset.name,
            lane=p.lane,  # type: ignore[arg-type]
            priority=p.priority,
            requires_approval=p.requires_approval,
            max_attempts=p.max_attempts or self.config.default_max_attempts,
            timeout_secs=p.timeout_secs or self.config.default_timeout_secs,
            branch=branch_for(tid),
            created_at=now,
            updated_at=now,
            env=dict(p.env),
            held=p.held,
        )
        async with self._persist_lock:
            await self.store.insert(task)
            await self.store.append_event(
                TaskEvent(task_id=tid, ts=now, kind="state", to_state="queued", message="created")
            )
        self._tasks[tid] = task
        self._emit("task.created", task.to_dict())
        self._kick()
        return task

    async def cancel(self, task_id: str) -> Task:
        task = self.resolve(task_id)
        await self._transition(task, "cancel", message="cancelled by user")
        run = self._runs.get(task.id)
        if run is not None:
            run.kill_reason = run.kill_reason or "cancelled"
            if run.proc is not None and run.user_paused:
                run.proc.resume()  # a stopped group would only die at the SIGKILL after the grace
            if run.proc is not None:
                with trio.move_on_after(30):
                    await run.proc.kill()
            else:
                run.scope.cancel()
            with trio.move_on_after(30):
                await run.done.wait()
        return task

    async def retry(self, task_id: str) -> Task:
        task = self.resolve(task_id)
        event = "requeue" if task.state == "interrupted" else "retry"
        return await self._transition(
            task, event, not_before=0.0, finished_at=None, message="retry requested"
        )

    async def pause(self, task_id: str) -> Task:
        task = self.resolve(task_id)
        if task.state == "queued":
            if task.held:
                raise StateMachineError("pause", "queued (held)", task_id=task.id)
            task.held = True
            await self._persist(task)
            await self._note(task, "note", "held in the queue")
            return task
        run = self._runs.get(task.id)
        if task.state == "waiting" and run is not None and not run.user_paused:
            await self._note(task, "note", "paused by user")
        else:
            await self._transition(task, "wait", message="paused by user")
        if run is not None and not run.user_paused:
            run.user_paused = True
            run.paused_at = trio.current_time()
            if run.proc is not None:
                # Stop the agent's whole process group; the timeout clock stops too.
                run.proc.suspend()
        return task

    async def resume(self, task_id: str) -> Task:
        task = self.resolve(task_id)
        if task.state == "queued":
            if not task.held:
                raise StateMachineError("resume", "queued", task_id=task.id)
            task.held = False
            await self._persist(task)
            await self._note(task, "note", "released from hold")
            self._kick()
            return task
        run = self._runs.get(task.id)
        await self._transition(task, "resume", message="resumed by user")
        if run is not None and run.user_paused:
            run.user_paused = False
            run.paused_total += trio.current_time() - run.paused_at
            if run.proc is not None:
                run.proc.resume()
        return task

    async def approve(self, task_id: str) -> Task:
        task = self.resolve(task_id)
        if task.state != "review" or task.id in self._merging:
            raise ApprovalError(
                f"cannot approve task {task.id}: it is {task.state}, not review",
                details={"id": task.id, "state": task.state},
            )
        self._merging.add(task.id)
        # One merge at a time per repository: concurrent merges would fight over its index.
        lock = self._merge_locks.setdefault(task.repo, trio.Lock())
        try:
            async with lock:
                return await self._approve_locked(task)
        finally:
            self._merging.discard(task.id)

    async def _approve_locked(self, task: Task) -> Task:
        ahead = await self.worktrees.commits_ahead(task.repo, task.base_branch, task.branch)
        if ahead == 0:
            await self._transition(task, "approve", result="nothing to merge", message="approved")
            await self._remove_worktree(task)
            return task
        res = await self.worktrees.merge(
            task.repo,
            task.branch,
            task.base_branch,
            f"Merge {task.branch}: {task.title} (tundra task {task.id})",
        )
        if not res.merged:
            files = ", ".join(res.conflicts)
            await self._transition(
                task,
                "fail",
                result=f"merge conflict in: {files}",
                message=f"merge into {task.base_branch} conflicts",
            )
            raise ApprovalError(
                f"merge of {task.branch} into {task.base_branch} conflicts: {files}",
                hint="the worktree is kept; resolve there and retry, or reject",
                details={"id": task.id, "files": res.conflicts},
            )
        await self._transition(
            task,
            "approve",
            result=f"merged into {task.base_branch} ({res.commit[:10]})",
            message="approved and merged",
        )
        await self._note(task, "merge", f"merged {task.branch}", commit=res.commit)
        await self._remove_worktree(task)
        return task

    async def reject(self, task_id: str, reason: str, cancel: bool) -> Task:
        task = self.resolve(task_id)
        if task.state != "review":
            raise ApprovalError(
                f"cannot reject task {task.id}: it is {task.state}, not review",
                details={"id": task.id, "state": task.state},
            )
        if cancel:
            return await self._transition(task, "cancel", message=f"rejected: {reason}")
        assert self.registry is not None
        try:
            prompt = self.registry.get(task.preset).with_feedback(task.prompt, reason)
        except TundraError:
            prompt = f"{task.prompt}\n\nReviewer feedback: {reason}" if reason else task.prompt
        return await self._transition(
            task,
            "reject",
            prompt=prompt,
            not_before=0.0,
            finished_at=None,
            message=f"rejected: {reason}",
        )

    async def diff(self, task_id: str) -> api.TaskDiff:
        task = self.resolve(task_id)
        if not await self.worktrees.branch_exists(task.repo, task.branch):
            return api.TaskDiff(
                id=task.id, branch=task.branch, base_branch=task.base_branch, stat="", diff=""
            )
        stat, patch = await self.worktrees.diff(task.repo, task.base_branch, task.branch)
        return api.TaskDiff(
            id=task.id, branch=task.branch, base_branch=task.base_branch, stat=stat, diff=patch
        )

    async def history(self, task_id: str) -> list[TaskEvent]:
        """The task's events, oldest first, including every change already visible."""
        task = self.resolve(task_id)
        await self._writes_settled()
        return await self.store.events(task.id)

    async def runs(self, task_id: str) -> list[AgentRun]:
        task = self.resolve(task_id)
        await self._writes_settled()
        return await self.store.runs(task.id)

    async def clean(self, task_id: str, force: bool = False) -> Task:
        """Remove the worktree and branch of a task that is not running. Refuses to drop
        unmerged commits or uncommitted changes unless ``force`` (WorktreeError)."""
        task = self.resolve(task_id)
        if task.id in self._runs or task.state in ("running", "waiting"):
            raise StateMachineError("clean", task.state, task_id=task.id)
        await self.worktrees.remove(task.repo, task.id, task.base_branch, force=force)
        task.worktree = ""
        await self._persist(task)
        await self._note(task, "note", "worktree removed" + (" (forced)" if force else ""))
        return task

    async def nudge(self, task_id: str, text: str, enter: bool = True) -> None:
        task = self.resolve(task_id)
        run = self._runs.get(task.id)
        if run is None or run.proc is None:
            raise StateMachineError("nudge", task.state, task_id=task.id)
        await run.proc.write(text.encode() + (b"\r" if enter else b""))
        await self._note(task, "nudge", text)

    def queue_status(self) -> api.QueueStatus:
        return api.QueueStatus(
            paused=self._paused,
            draining=self._draining,
            queued=sum(1 for t in self._tasks.values() if t.state == "queued"),
            running=len(self._runs),
            max_concurrent=self.config.max_concurrent,
            per_repo_limit=self.config.per_repo_limit,
        )

    def pause_queue(self) -> api.QueueStatus:
        self._paused = True
        return self.queue_status()

    def resume_queue(self) -> api.QueueStatus:
        self._paused = False
        self._draining = False
        self._kick()
        return self.queue_status()

    async def drain(self, timeout: float) -> api.QueueStatus:
        """Stop dispatching; with ``timeout`` wait that long for running tasks to end."""
        self._draining = True
        if timeout > 0 and self._runs:
            with trio.move_on_after(timeout):
                await self._idle.wait()
        return self.queue_status()

    async def read_log(self, task: Task) -> bytes:
        path = self.logs_dir / f"{task.id}.log"

        def read() -> bytes:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return b""

        return await trio.to_thread.run_sync(read, limiter=self._fs_limiter)

    # -- IPC handlers --------------------------------------------------------------------
    async def _h_add(self, ctx: CallContext, p: api.TaskAddParams) -> dict[str, Any]:
        return (await self.add(p)).to_dict()

    async def _h_list(self, ctx: CallContext, p: api.TaskListParams) -> dict[str, Any]:
        self._require_started()
        out = [
            t
            for t in self._tasks.values()
            if (p.state is None or t.state == p.state) and (p.repo is None or t.repo == p.repo)
        ]
        out.sort(key=lambda t: t.created_at, reverse=True)
        if p.limit > 0:
            out = out[: p.limit]
        return {"tasks": [t.to_dict() for t in out]}

    async def _h_get(self, ctx: CallContext, p: api.TaskIdParams) -> dict[str, Any]:
        return self.resolve(p.id).to_dict()

    async def _h_history(self, ctx: CallContext, p: api.TaskIdParams) -> dict[str, Any]:
        return {"events": [msgspec.to_builtins(e) for e in await self.history(p.id)]}

    async def _h_cancel(self, ctx: CallContext, p: api.TaskIdParams) -> dict[str, Any]:
        return (await self.cancel(p.id)).to_dict()

    async def _h_retry(self, ctx: CallContext, p: api.TaskIdParams) -> dict[str, Any]:
        return (await self.retry(p.id)).to_dict()

    async def _h_pause(self, ctx: CallContext, p: api.TaskIdParams) -> dict[str, Any]:
        return (await self.pause(p.id)).to_dict()

    async def _h_resume(self, ctx: CallContext, p: api.TaskIdParams) -> dict[str, Any]:
        return (await self.resume(p.id)).to_dict()

    async def _h_approve(self, ctx: CallContext, p: api.TaskIdParams) -> dict[str, Any]:
        return (await self.approve(p.id)).to_dict()

    async def _h_reject(self, ctx: CallContext, p: api.TaskRejectParams) -> dict[str, Any]:
        return (await self.reject(p.id, p.reason, p.cancel)).to_dict()

    async def _h_diff(self, ctx: CallContext, p: api.TaskIdParams) -> api.TaskDiff:
        return await self.diff(p.id)

    async def _h_attach_info(self, ctx: CallContext, p: api.TaskIdParams) -> api.AttachInfo:
        task = self.resolve(p.id)
        alive = (
            bool(task.terminal_id)
            and self.launcher is not None
            and self.launcher.is_alive(task.terminal_id)
        )
        return api.AttachInfo(
            id=task.id, state=task.state, terminal_id=task.terminal_id, alive=alive
        )

    async def _h_runs(self, ctx: CallContext, p: api.TaskIdParams) -> dict[str, Any]:
        return {"runs": [msgspec.to_builtins(r) for r in await self.runs(p.id)]}

    async def _h_clean(self, ctx: CallContext, p: api.TaskCleanParams) -> dict[str, Any]:
        return (await self.clean(p.id, p.force)).to_dict()

    async def _h_nudge(self, ctx: CallContext, p: api.TaskNudgeParams) -> dict[str, Any]:
        await self.nudge(p.id, p.text, p.enter)
        return {}

    async def _h_logs(
        self, ctx: CallContext, p: api.TaskLogsParams, send: StreamSend
    ) -> dict[str, Any]:
        task = self.resolve(p.id)
        offset = 0
        saved = await self.read_log(task)
        run = self._runs.get(task.id)
        if saved:
            await self._send_chunk(send, saved, offset, p.since)
            offset += len(saved)
        while True:
            run = self._runs.get(task.id)
            if run is None:
                return {"state": task.state}
            base = offset
            sent = 0
            while True:
                changed = run.log_changed
                data = bytes(run.log[sent:])
                if data:
                    await self._send_chunk(send, data, base + sent, p.since)
                    sent += len(data)
                if not p.follow or run.done.is_set():
                    break
                with trio.move_on_after(1):
                    await changed.wait()
            if not p.follow:
                return {"state": task.state}
            await run.done.wait()
            offset = base + sent
            # The next attempt (retry) may start: follow it while the task is not final.
            # A retry is dispatched after its backoff (plus a little scheduling slack).
            wait = max(0.0, task.not_before - time.time()) + 2.0 if task.state == "queued" else 0
            with trio.move_on_after(wait):
                while task.id not in self._runs and task.state == "queued":
                    await self._wake.wait()
            if task.id not in self._runs:
                return {"state": task.state}

    @staticmethod
    async def _send_chunk(send: StreamSend, data: bytes, offset: int, since: int) -> None:
        if offset + len(data) <= since:
            return
        if offset < since:
            data = data[since - offset :]
            offset = since
        for i in range(0, len(data), 65536):
            await send({"type": "output", "offset": offset + i, "data": data[i : i + 65536]})

    async def _h_queue_status(self, ctx: CallContext, p: Any) -> api.QueueStatus:
        return self.queue_status()

    async def _h_queue_pause(self, ctx: CallContext, p: Any) -> api.QueueStatus:
        return self.pause_queue()

    async def _h_queue_resume(self, ctx: CallContext, p: Any) -> api.QueueStatus:
        return self.resume_queue()

    async def _h_queue_drain(self, ctx: CallContext, p: api.QueueDrainParams) -> api.QueueStatus:
        return await self.drain(p.timeout_secs)

    async def _h_agents_list(self, ctx: CallContext, p: Any) -> dict[str, Any]:
        from tundra.agents.registry import preset_infos

        assert self.registry is not None
        infos = await trio.to_thread.run_sync(preset_infos, self.registry)
        return {"presets": [msgspec.to_builtins(i) for i in infos]}
