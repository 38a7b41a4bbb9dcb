"""`tundra attach ID`: an interactive, raw-mode view of a daemon-owned terminal.

Keystrokes go to the terminal, its output to this tty; the window size follows the local
terminal (SIGWINCH). The detach keys (``[terminals] detach_keys``, default ``ctrl-\\,d``)
leave the terminal running; re-attaching continues from the last offset this user saw
(kept in ``$TUNDRA_HOME/run/attach-offsets.json``), so nothing is replayed twice.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import termios
import tty
from pathlib import Path
from typing import Any

import trio

from tundra.errors import UsageError
from tundra.ipc.client import Client, open_client
from tundra.ipc.errors import Lagged
from tundra.paths import TundraPaths
from tundra.sessions.errors import TerminalDead

__all__ = ["register", "parse_detach_keys", "DetachDetector"]

_DEFAULT_DETACH = "ctrl-\\,d"


def parse_detach_keys(spec: str) -> bytes:
    """``"ctrl-\\\\,d"`` -> ``b"\\x1cd"``. Tokens: ``ctrl-X`` or one character."""
    out = bytearray()
    for tok in spec.split(","):
        tok = tok.strip()
        if tok.lower().startswith("ctrl-") and len(tok) == 6:
            ch = tok[5]
            code = ord(ch.upper()) if ch.isalpha() else ord(ch)
            if not 0x40 <= code <= 0x5F and ch != "?":
                raise UsageError(f"invalid detach key {tok!r}")
            out.append(0x7F if ch == "?" else code & 0x1F)
        elif len(tok) == 1:
            out.append(ord(tok))
        else:
            raise UsageError(f"invalid detach key {tok!r} (use ctrl-X or a single character)")
    if not out:
        raise UsageError("detach keys must not be empty")
    return bytes(out)


class DetachDetector:
    """Splits typed bytes into what goes to the terminal and whether to detach.

    A partial match is held back until the next key decides; a mismatch releases it.
    """

    def __init__(self, seq: bytes) -> None:
        self.seq = seq
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for b in data:
            cand = self._held + bytes([b])
            if self.seq.startswith(cand):
                self._held = cand
                if cand == self.seq:
                    self._held = b""
                    return bytes(out), True
            else:
                out += self._held
                self._held = b""
                if self.seq.startswith(bytes([b])):
                    self._held = bytes([b])
                else:
                    out.append(b)
        return bytes(out), False


def register(sub: Any) -> None:
    p = sub.add_parser("attach", help="attach this terminal to a daemon-owned terminal")
    p.add_argument("id", help="id, unique id prefix, or name")
    p.add_argument("--since", type=int, help="replay from this absolute offset")
    p.add_argument("--replay", action="store_true", help="replay the whole scrollback")
    p.add_argument(
        "--detach-keys", help=f"key sequence that detaches (default {_DEFAULT_DETACH!r})"
    )
    p.set_defaults(func=cmd_attach)


def _offsets_file() -> Path:
    return TundraPaths.from_env().run_dir / "attach-offsets.json"


def _load_offsets() -> dict[str, int]:
    try:
        data = json.loads(_offsets_file().read_text())
        return {str(k): int(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _save_offset(tid: str, offset: int) -> None:
    path = _offsets_file()
    data = _load_offsets()
    data[tid] = offset
    if len(data) > 200:  # forget the oldest entries
        data = dict(list(data.items())[-200:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass


def _detach_spec(args: argparse.Namespace) -> str:
    if args.detach_keys:
        return str(args.detach_keys)
    try:
        from tundra.config.loader import load_config

        return load_config(TundraPaths.from_env().config_file).terminals.detach_keys
    except Exception:
        return _DEFAULT_DETACH


async def _show(
    c: Client, tid: str, since: int | None, stdout_fd: int, state: dict[str, Any]
) -> None:
    """Attach and copy output to our tty until the terminal exits."""
    async with c.stream("term.attach", {"id": tid, "since": since}) as s:
        async for item in s:
            kind = item.get("type")
            if kind == "output":
                # A blocking write to our own tty is fine in this one-user CLI.
                os.write(stdout_fd, item["data"])
                state["offset"] = item["offset"] + len(item["data"])
            elif kind == "gap":
                state["offset"] = item["offset"]
            elif kind == "exit":
                state["exit"] = item
                state["offset"] = item.get("offset", state["offset"])
                return


def cmd_attach(args: argparse.Namespace) -> int:
    seq = parse_detach_keys(_detach_spec(args))
    return trio.run(_attach, args, seq)


async def _attach(args: argparse.Namespace, seq: bytes) -> int:
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    interactive = os.isatty(stdin_fd)
    state: dict[str, Any] = {"offset": None, "exit": None, "detached": False}
    async with open_client() as c:
        info: dict[str, Any] = await c.call("term.get", {"id": args.id})
        tid = info["id"]
        since: int | None
        if args.replay:
            since = None
        elif args.since is not None:
            since = args.since
        else:
            since = _load_offsets().get(tid)
        saved_attrs = termios.tcgetattr(stdin_fd) if interactive else None

        async def sync_size() -> None:
            try:
                cols, rows = os.get_terminal_size(stdout_fd)
            except OSError:
                return
            if rows < 1 or cols < 1:
                return  # a tty with no size set (0x0): keep the terminal's own
            await c.call("term.resize", {"id": tid, "rows": rows, "cols": cols})

        try:
            if interactive:
                tty.setraw(stdin_fd)
                await sync_size()
            async with trio.open_nursery() as nursery:

                async def keys() -> None:
                    det = DetachDetector(seq)
                    while True:
                        await trio.lowlevel.wait_readable(stdin_fd)
                        data = os.read(stdin_fd, 4096)
                        if not data:
                            return  # stdin closed: keep showing output
                        send, detach = det.feed(data)
                        if send:
                            await c.call("term.input", {"id": tid, "data": send})
                        if detach:
                            state["detached"] = True
                            nursery.cancel_scope.cancel()
                            return

                async def winch() -> None:
                    with trio.open_signal_receiver(signal.SIGWINCH) as sigs:
                        async for _ in sigs:
                            await sync_size()

                nursery.start_soon(keys)
                if interactive:
                    nursery.start_soon(winch)
                start = since
                while True:
                    try:
                        await _show(c, tid, start, stdout_fd, state)
                        break
                    except Lagged:
                        # Our tty could not keep up: resume right after the last byte shown.
                        start = state["offset"]
                    except TerminalDead as e:
                        state["exit"] = dict(e.details)
                        break
                nursery.cancel_scope.cancel()
        finally:
            if saved_attrs is not None:
                termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved_attrs)
            if state["offset"] is not None:
                _save_offset(tid, int(state["offset"]))
    if state["detached"]:
        sys.stderr.write(f"\n[detached from {tid[:8]}; `tundra attach {tid[:8]}` resumes]\n")
        return 0
    ex = state["exit"]
    if ex is not None:
        sig = ex.get("exit_signal")
        sys.stderr.write(
            f"\n[terminal exited: {'signal ' + str(sig) if sig else ex.get('exit_code')}]\n"
        )
    return 0
