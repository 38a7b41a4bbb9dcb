"""`tundra task ...` and `tundra queue ...`, plus the gastown-style aliases sling/hook/done/nudge.

Every command is one IPC call (see :mod:`tundra.tasks.api`); `task logs --follow` and
`task attach` stream.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from tundra.cli.output import emit
from tundra.errors import TundraError, UsageError
from tundra.ipc.client import BlockingClient

__all__ = ["register"]

_LANES = ["critical", "standard", "experimental"]
_STATES = ["queued", "running", "waiting", "review", "done", "failed", "cancelled", "interrupted"]


def _rpc(c: BlockingClient, method: str, params: Any = None) -> Any:
    result: Any = c.call(method, params)
    return result


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", help="what the agent should do (default: the title)")
    p.add_argument("--prompt-file", help="read the prompt from this file ('-' = stdin)")
    p.add_argument("--repo", default=".", help="git repository to work on (default: .)")
    p.add_argument("--base", default="", help="base branch (default: the repo's current branch)")
    p.add_argument("--agent", default="", help="agent preset (see `tundra agents ls`)")
    p.add_argument("--lane", choices=_LANES, default="standard")
    p.add_argument("--priority", type=int, default=0, help="higher runs first within a lane")
    p.add_argument(
        "--approve",
        dest="approve",
        action="store_true",
        default=True,
        help="require review + `task approve` before merging (default)",
    )
    p.add_argument(
        "--no-approve",
        dest="approve",
        action="store_false",
        help="merge automatically when the agent succeeds",
    )
    p.add_argument("--max-attempts", type=int, default=0)
    p.add_argument("--timeout", type=float, default=0.0, help="seconds per attempt")
    p.add_argument("--hold", action="store_true", help="add it paused (run with `task resume`)")
    _json(p)


def register(sub: Any) -> None:
    t = sub.add_parser("task", help="queue and manage agent tasks")
    ts = t.add_subparsers(dest="task_cmd", metavar="COMMAND", required=True)

    p = ts.add_parser("add", help="queue a task for an agent")
    p.add_argument("title")
    _add_options(p)
    p.set_defaults(func=cmd_add)

    p = ts.add_parser("ls", help="list tasks")
    p.add_argument("--state", choices=_STATES)
    p.add_argument("--limit", type=int, default=0)
    _json(p)
    p.set_defaults(func=cmd_ls)

    p = ts.add_parser("show", help="one task with its history")
    p.add_argument("id")
    _json(p)
    p.set_defaults(func=cmd_show)

    p = ts.add_parser("logs", help="the agent's output")
    p.add_argument("id")
    p.add_argument("-f", "--follow", action="store_true", help="keep streaming until the run ends")
    p.set_defaults(func=cmd_logs)

    for name, helptext in (
        ("cancel", "cancel a task (kills its agent)"),
        ("retry", "queue a failed or interrupted task again"),
        ("pause", "hold a queued task, or pause a running one (waiting)"),
        ("resume", "release a held task, or resume a paused one"),
        ("approve", "merge the task branch into its base (--no-ff) and finish it"),
    ):
        p = ts.add_parser(name, help=helptext)
        p.add_argument("id")
        _json(p)
        p.set_defaults(func=cmd_simple, method=f"task.{name}")

    p = ts.add_parser("reject", help="send a task in review back (with the reason) or cancel it")
    p.add_argument("id")
    p.add_argument("--reason", default="", help="appended to the prompt for the next attempt")
    p.add_argument("--cancel", action="store_true", help="cancel instead of re-queueing")
    _json(p)
    p.set_defaults(func=cmd_reject)

    p = ts.add_parser("diff", help="the changes on the task branch since its base")
    p.add_argument("id")
    p.add_argument("--stat", action="store_true", help="only the diffstat")
    _json(p)
    p.set_defaults(func=cmd_diff)

    p = ts.add_parser("clean", help="remove a finished task's worktree and branch")
    p.add_argument("id")
    p.add_argument("--force", action="store_true", help="also drop unmerged commits/changes")
    _json(p)
    p.set_defaults(func=cmd_clean)

    p = ts.add_parser("attach", help="attach to the live agent terminal")
    p.add_argument("id")
    p.add_argument("--replay", action="store_true", help="replay the whole scrollback")
    p.add_argument("--detach-keys", help="key sequence that detaches (see `tundra attach`)")
    p.set_defaults(func=cmd_attach)

    p = ts.add_parser("nudge", help="type text into the running agent")
    p.add_argument("id")
    p.add_argument("text")
    p.set_defaults(func=cmd_nudge)

    # gastown-style aliases
    p = sub.add_parser("sling", help="alias: task add (sling work onto an agent)")
    p.add_argument("title")
    _add_options(p)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("hook", help="alias: show a task, or the running/waiting ones")
    p.add_argument("id", nargs="?")
    _json(p)
    p.set_defaults(func=cmd_hook)

    p = sub.add_parser("done", help="alias: task approve")
    p.add_argument("id")
    _json(p)
    p.set_defaults(func=cmd_simple, method="task.approve")

    p = sub.add_parser("nudge", help="alias: task nudge")
    p.add_argument("id")
    p.add_argument("text")
    p.set_defaults(func=cmd_nudge)

    q = sub.add_parser("queue", help="pause, resume or drain the task queue")
    qs = q.add_subparsers(dest="queue_cmd", metavar="COMMAND", required=True)
    for name, helptext in (
        ("status", "queued/running counts and limits"),
        ("pause", "stop dispatching new tasks"),
        ("resume", "dispatch again"),
    ):
        p = qs.add_parser(name, help=helptext)
        _json(p)
        p.set_defaults(func=cmd_queue, method=f"queue.{name}")
    p = qs.add_parser("drain", help="stop dispatching and wait for running tasks")
    p.add_argument("--timeout", type=float, default=0.0, help="seconds to wait (0 = do not wait)")
    _json(p)
    p.set_defaults(func=cmd_queue, method="queue.drain")


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, int(time.time() - ts))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    return f"{s // 3600}h"


def _human_task(t: dict[str, Any]) -> str:
    lines = [
        f"{t['id']}  {t['state']}{' (held)' if t.get('held') else ''}  {t['title']}",
        f"  agent {t['preset']}  lane {t['lane']}  priority {t['priority']}  "
        f"attempts {t['attempts']}/{t['max_attempts']}",
        f"  repo {t['repo']}  base {t['base_branch']}  branch {t['branch']}",
    ]
    if t.get("worktree"):
        lines.append(f"  worktree {t['worktree']}")
    if t.get("terminal_id") and t["state"] in ("running", "waiting"):
        lines.append(f"  terminal {t['terminal_id']}  (tundra task attach {t['id']})")
    if t.get("result"):
        lines.append("  result: " + t["result"].replace("\n", "\n    "))
    return "\n".join(lines)


def _human_list(r: dict[str, Any]) -> str:
    tasks = r["tasks"]
    if not tasks:
        return "no tasks"
    rows = [f"{'ID':<9} {'STATE':<11} {'LANE':<12} {'PRI':>3} {'AGENT':<9} {'AGE':>4}  TITLE"]
    for t in tasks:
        state = t["state"] + ("*" if t.get("held") else "")
        rows.append(
            f"{t['id']:<9} {state:<11} {t['lane']:<12} {t['priority']:>3} {t['preset']:<9} "
            f"{_ago(t['created_at']):>4}  {t['title']}"
        )
    return "\n".join(rows)


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt_file:
        if args.prompt_file == "-":
            return sys.stdin.read()
        try:
            return Path(args.prompt_file).read_text()
        except OSError as exc:
            raise UsageError(
                f"cannot read prompt file {args.prompt_file}: {exc.strerror}"
            ) from None
    return str(args.prompt or "")


def cmd_add(args: argparse.Namespace) -> int:
    params = {
        "title": args.title,
        "prompt": _read_prompt(args),
        "repo": os.path.abspath(args.repo),
        "base_branch": args.base,
        "agent": args.agent,
        "lane": args.lane,
        "priority": args.priority,
        "requires_approval": args.approve,
        "max_attempts": args.max_attempts,
        "timeout_secs": args.timeout,
        "held": args.hold,
    }
    with BlockingClient() as c:
        task = _rpc(c, "task.add", params)
    return emit(args, task, lambda t: f"queued {t['id']}: {t['title']} (agent {t['preset']})")


def cmd_ls(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        r = _rpc(c, "task.list", {"state": args.state, "limit": args.limit})
    return emit(args, r, _human_list)


def _human_show(r: dict[str, Any]) -> str:
    out = [_human_task(r["task"]), "  history:"]
    for e in r["events"]:
        when = time.strftime("%H:%M:%S", time.localtime(e["ts"]))
        what = f"{e['from_state'] or '-'} -> {e['to_state']}" if e["kind"] == "state" else e["kind"]
        out.append(f"    {when}  {what}  {e.get('message', '')}".rstrip())
    if r.get("runs"):
        out.append("  runs:")
        for run in r["runs"]:
            exit_ = run["exit_code"] if run["exit_code"] is not None else run["exit_signal"]
            out.append(
                f"    #{run['attempt']} {run['state']:<11} exit {exit_ if exit_ is not None else '-'}"
                f"  terminal {run['terminal_id'] or '-'}"
            )
    return "\n".join(out)


def cmd_show(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        task = _rpc(c, "task.get", {"id": args.id})
        events = _rpc(c, "task.history", {"id": task["id"]})["events"]
        runs = _rpc(c, "task.runs", {"id": task["id"]})["runs"]
    return emit(args, {"task": task, "events": events, "runs": runs}, _human_show)


def cmd_logs(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    with (
        BlockingClient() as c,
        c.stream("task.logs", {"id": args.id, "follow": args.follow}) as items,
    ):
        for item in items:
            if item.get("type") == "output":
                out.write(item["data"])
                out.flush()
    return 0


def cmd_simple(args: argparse.Namespace) -> int:
    with BlockingClient(timeout=120) as c:
        task = _rpc(c, args.method, {"id": args.id})
    return emit(args, task, _human_task)


def cmd_reject(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        task = _rpc(c, "task.reject", {"id": args.id, "reason": args.reason, "cancel": args.cancel})
    return emit(args, task, _human_task)


def cmd_clean(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        task = _rpc(c, "task.clean", {"id": args.id, "force": args.force})
    return emit(args, task, lambda t: f"removed the worktree and branch of {t['id']}")


def cmd_diff(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        d = _rpc(c, "task.diff", {"id": args.id})
    return emit(args, d, lambda d: d["stat"] if args.stat else (d["diff"] or "(no changes)"))


def cmd_nudge(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        _rpc(c, "task.nudge", {"id": args.id, "text": args.text})
    return 0


def cmd_hook(args: argparse.Namespace) -> int:
    if args.id:
        return cmd_show(args)
    with BlockingClient() as c:
        running = _rpc(c, "task.list", {"state": "running"})["tasks"]
        waiting = _rpc(c, "task.list", {"state": "waiting"})["tasks"]
    return emit(args, {"tasks": running + waiting}, _human_list)


def cmd_attach(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        info = _rpc(c, "task.attach-info", {"id": args.id})
    if not info["terminal_id"] or not info["alive"]:
        raise TundraError(
            f"task {info['id']} has no live agent terminal (state {info['state']})",
            hint=f"see its output with `tundra task logs {info['id']}`",
        )
    # The same attach loop as `tundra attach` (detach keys, resize, replay).
    from tundra.cli.attach import cmd_attach as attach_terminal

    ns = argparse.Namespace(
        id=info["terminal_id"], since=None, replay=args.replay, detach_keys=args.detach_keys
    )
    return int(attach_terminal(ns))


def _human_queue(q: dict[str, Any]) -> str:
    state = "draining" if q["draining"] else "paused" if q["paused"] else "dispatching"
    limit = q["per_repo_limit"] or "none"
    return (
        f"queue {state}: {q['queued']} queued, {q['running']} running "
        f"(max_concurrent {q['max_concurrent']}, per-repo limit {limit})"
    )


def cmd_queue(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.method == "queue.drain":
        params["timeout_secs"] = args.timeout
    with BlockingClient(timeout=max(30.0, getattr(args, "timeout", 0.0) + 10)) as c:
        q = _rpc(c, args.method, params)
    return emit(args, q, _human_queue)
