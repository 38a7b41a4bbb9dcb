"""Terminals through the real daemon over IPC: errors, echo, exact resume, broadcast, lag,
shutdown with busy terminals, and restart after ``kill -9`` killing what was left."""

from __future__ import annotations

import os
import signal
import socket as stdsocket
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from tests.support import short_tempdir, start_daemon, wait_for
from tundra.ipc.framing import FrameDecoder, frame
from tundra.ipc.protocol import PROTOCOL_VERSION, ErrorReply, Hello, Request, ServerFrame
from tundra.sessions import proctable
from tundra.sessions.api import TerminalInfo
from tundra.sessions.errors import (
    PtyAtCapacity,
    PtySpawnFailed,
    TerminalDead,
    TerminalNotFound,
)

pytestmark = pytest.mark.skipif(not proctable.HAVE_PROC, reason="needs Linux /proc")


def marked(ids: list[str]) -> list[int]:
    """Live (non-zombie) processes carrying one of these terminal ids."""
    return [m.pid for m in proctable.find_members(terminal_ids=ids)]


def zombie_children(pid: int) -> list[int]:
    return [st.pid for st in proctable.iter_stats() if st.ppid == pid and st.state == "Z"]


async def output_until(c: Any, tid: str, needle: bytes, timeout: float = 15) -> bytes:
    """Read term.output until ``needle`` shows up (IPC round trips, bounded)."""

    async def got() -> bytes | None:
        r = await c.call("term.output", {"id": tid, "since": 0, "max_bytes": 0})
        return r["data"] if needle in r["data"] else None

    data: bytes = await wait_for(got, timeout, interval=0.02, message=f"{needle!r}")
    return data


async def test_ipc_errors_and_echo() -> None:
    async with start_daemon(config="[daemon]\nmax_ptys = 2\nkill_grace_secs = 0.5\n") as d:
        async with d.client() as c:
            info = await c.call(
                "term.new", {"argv": ["cat"], "name": "echo"}, result_type=TerminalInfo
            )
            assert info.status == "disconnected" and info.pid > 0
            await c.call("term.input", {"id": "echo", "data": b"ping\n"})
            await output_until(c, info.id, b"ping\r\nping\r\n")
            await c.call("term.new", {"argv": ["cat"]})
            with pytest.raises(PtyAtCapacity, match=r"^pty pool is at capacity \(2\)$"):
                await c.call("term.new", {"argv": ["cat"]})
            killed = await c.call("term.kill", {"id": info.id[:8]}, result_type=TerminalInfo)
            assert killed.status == "dead" and killed.exit_signal == signal.SIGHUP
            with pytest.raises(TerminalDead) as ei:
                async with c.stream("term.attach", {"id": info.id}) as s:
                    async for _ in s:
                        pass
            assert ei.value.details["exit_signal"] == signal.SIGHUP
            # Slot freed: a new one fits; the dead one's scrollback is still readable.
            third = await c.call("term.new", {"argv": ["cat"]})
            out = await c.call("term.output", {"id": info.id})
            assert b"ping" in out["data"]
            with pytest.raises(PtySpawnFailed, match="not found in PATH"):
                await c.call("term.remove", {"id": third["id"]})
                await c.call("term.new", {"argv": ["no-such-binary-zz"]})
            with pytest.raises(TerminalNotFound):
                await c.call("term.get", {"id": "nope"})
            listing = await c.call("term.list", {})
            assert len(listing["terminals"]) == 2


async def test_exact_resume_over_ipc() -> None:
    cfg = "[terminals]\nscrollback_bytes = 4194304\n"
    expected = b"".join(b"%d\n" % i for i in range(1, 200001))
    async with start_daemon(config=cfg) as d, d.client() as c:
        info = await c.call(
            "term.new",
            {"argv": ["sh", "-c", "stty -onlcr -echo; echo R; read go; seq 1 200000; read x"]},
        )
        tid = info["id"]
        got = bytearray()
        # First attach: take part of the stream, then drop the connection mid-flow.
        async with d.client() as c1:
            async with c1.stream("term.attach", {"id": tid, "since": 0}) as s:
                async for item in s:
                    if item["type"] == "output":
                        assert item["offset"] == len(got)
                        got += item["data"]
                        if got == b"R\n":  # stty has run: start the flood
                            await c.call("term.input", {"id": tid, "data": b"go\n"})
                        if len(got) > 300_000:
                            break
        # Re-attach from the last offset seen: the rest arrives exactly once, no gap.
        async with d.client() as c2, c2.stream("term.attach", {"id": tid, "since": len(got)}) as s:
            async for item in s:
                assert item["type"] != "gap"
                if item["type"] == "output":
                    assert item["offset"] == len(got)
                    got += item["data"]
                    if len(got) >= len(expected) + 2:  # + "R\n"
                        break
        assert bytes(got) == b"R\n" + expected


async def test_broadcast_to_three_clients_and_stalled_client_dropped() -> None:
    cfg = "[terminals]\nsubscriber_queue_bytes = 262144\n"
    async with start_daemon(config=cfg) as d, d.client() as c:
        info = await c.call(
            "term.new",
            # Paced (50 x 60 kB): the three readers keep up even on a loaded machine, while
            # the client that never reads overflows its 256 KiB queue.
            {
                "argv": [
                    "sh",
                    "-c",
                    "read go; for i in $(seq 50); do head -c 60000 /dev/zero | tr '\\0' a;"
                    " sleep 0.01; done; read x",
                ]
            },
        )
        tid = info["id"]
        counts = [0, 0, 0]
        async with trio.open_nursery() as n:
            attached = trio.Semaphore(0)

            async def reader(i: int) -> None:
                async with d.client() as ci, ci.stream("term.attach", {"id": tid}) as s:
                    attached.release()
                    async for item in s:
                        if item["type"] == "output":
                            counts[i] += item["data"].count(b"a")
                            if counts[i] >= 3_000_000:
                                return

            lag_error: list[str] = []

            async def stalled() -> None:
                # A raw connection that asks for the stream and then stops reading: the
                # socket fills, the daemon's queue for it overflows, it gets `ipc.lagged`.
                sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
                await sock.connect(str(d.socket))
                stream = trio.SocketStream(sock)
                enc = msgspec.msgpack.Encoder()
                await stream.send_all(frame(enc.encode(Hello(protocol_version=PROTOCOL_VERSION))))
                params = msgspec.Raw(enc.encode({"id": tid}))
                req = Request(id=1, method="term.attach", params=params)
                await stream.send_all(frame(enc.encode(req)))
                attached.release()
                await done.wait()
                dec = FrameDecoder()
                async with stream:
                    while not lag_error:
                        data = await stream.receive_some(65536)
                        if not data:
                            break
                        dec.feed(data)
                        for body in dec.frames():
                            msg = msgspec.msgpack.decode(body, type=ServerFrame)
                            if isinstance(msg, ErrorReply):
                                lag_error.append(msg.code)

            done = trio.Event()
            n.start_soon(stalled)
            async with trio.open_nursery() as readers:
                for i in range(3):
                    readers.start_soon(reader, i)
                for _ in range(4):
                    await attached.acquire()

                # The daemon registers each attach a moment after the client sent it.
                async def all_attached() -> bool:
                    got = await c.call("term.get", {"id": tid})
                    return bool(got["clients"] == 4 and got["status"] == "active")

                await wait_for(all_attached, 10, message="4 clients attached")
                await c.call("term.input", {"id": tid, "data": b"go\n"})
            done.set()
        assert counts == [3_000_000] * 3
        assert lag_error == ["ipc.lagged"]


async def test_sigterm_with_20_busy_terminals_leaves_nothing() -> None:
    cfg = "[daemon]\nmax_ptys = 30\nkill_grace_secs = 1.0\n"
    async with start_daemon(config=cfg) as d:
        ids: list[str] = []
        async with d.client() as c:
            for _ in range(20):
                info = await c.call(
                    "term.new",
                    {"argv": ["sh", "-c", "sleep 1000 & nohup sleep 1001 >/dev/null 2>&1 & yes"]},
                )
                ids.append(info["id"])
        await wait_for(lambda: len(marked(ids)) >= 60, 20, message="60 busy processes")
        daemon_pid = d.pid
        rc = await d.stop(signal.SIGTERM)
        assert rc == 0
        assert marked(ids) == []
        assert zombie_children(daemon_pid) == []


async def test_restart_after_kill9_kills_leftovers() -> None:
    home = short_tempdir("kh") / "home"
    home.mkdir(parents=True)
    cfg = "[daemon]\nmax_ptys = 30\n"
    ids: list[str] = []
    try:
        async with start_daemon(home, config=cfg) as d:
            async with d.client() as c:
                for _ in range(20):
                    # Survivors of a hangup: a `setsid` job, a `nohup` job, and `sleep 1000 &`
                    # inside an interactive shell (its own job, hence its own process group).
                    argv = [
                        "sh",
                        "-c",
                        "setsid sleep 1000 & nohup sleep 1001 >/dev/null 2>&1 & exec bash --norc -i",
                    ]
                    info = await c.call("term.new", {"argv": argv})
                    ids.append(info["id"])
                    await c.call("term.input", {"id": info["id"], "data": b"sleep 1002 &\n"})
            await wait_for(lambda: len(marked(ids)) >= 80, 20, message="80 processes")
            d.send_signal(signal.SIGKILL)
            await d.proc.wait()
        # The daemon is gone; the jobs that ignore or escape the hangup survive it.
        survivors = await wait_for(lambda: len(marked(ids)) <= 60 and marked(ids), 10)
        assert len(survivors) >= 40
        async with start_daemon(home, config=cfg) as d2:
            await wait_for(lambda: not marked(ids), 5, message="leftovers killed")
            text = d2.log_text()
            assert "previous daemon" in text
    finally:
        for pid in marked(ids):
            os.kill(pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(Path(home).parent, ignore_errors=True)


def _store_rows(home: Path) -> dict[str, str]:
    import sqlite3

    db = home / "data" / "tundra.sqlite3"
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT id, status FROM terminals").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        con.close()


async def test_terminal_metadata_is_persisted_in_the_store() -> None:
    home = short_tempdir("st") / "home"
    home.mkdir(parents=True)
    try:
        async with start_daemon(home, config="[daemon]\nkill_grace_secs = 0.5\n") as d:
            async with d.client() as c:
                a = (await c.call("term.new", {"argv": ["cat"]}))["id"]
                b = (await c.call("term.new", {"argv": ["cat"]}))["id"]
                await c.call("term.kill", {"id": a})

            async def rows_written() -> bool:
                rows = await trio.to_thread.run_sync(_store_rows, home)
                return rows.get(a) == "dead" and rows.get(b) == "disconnected"

            await wait_for(rows_written, 10, interval=0.05, message="store rows")
            d.send_signal(signal.SIGKILL)
            await d.proc.wait()
        # A restarted daemon marks rows of terminals that died with its predecessor as dead.
        async with start_daemon(home, config="[daemon]\nkill_grace_secs = 0.5\n"):

            async def reconciled() -> bool:
                rows = await trio.to_thread.run_sync(_store_rows, home)
                return rows.get(b) == "dead"

            await wait_for(reconciled, 10, interval=0.05, message="stale row marked dead")
    finally:
        import shutil

        shutil.rmtree(home.parent, ignore_errors=True)
