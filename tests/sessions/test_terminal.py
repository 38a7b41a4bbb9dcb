"""Terminals in-process: I/O, resize, environment, broadcast, lag, grace, teardown."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from tests.sessions.conftest import live_with_marker, me, zombies_of
from tests.support import wait_for
from tundra.ipc.errors import Lagged
from tundra.sessions import proctable
from tundra.sessions.api import ExitItem, GapItem, OutputItem, StatusItem
from tundra.sessions.errors import TerminalDead, TerminalNotFound
from tundra.sessions.service import TerminalService
from tundra.sessions.terminal import Terminal


def text(t: Terminal) -> bytes:
    return t.scrollback.read(0)[1]


async def until_output(t: Terminal, needle: bytes) -> bytes:
    """Wait (on output events, not by polling) until ``needle`` is in the scrollback."""
    async with t.subscribe(t.offset) as sub:
        while needle not in text(t):
            await sub.receive()
    return text(t)


async def test_echo_round_trip(svc: TerminalService) -> None:
    t = await svc.create(["cat"])
    await t.write(b"hello tundra\n")
    out = await until_output(t, b"hello tundra\r\nhello tundra\r\n")
    assert out.count(b"hello tundra") == 2  # tty echo + cat's copy
    assert t.info().offset == len(out)


async def test_resize_is_seen_by_the_child(svc: TerminalService) -> None:
    t = await svc.create(["sh"], rows=30, cols=100)
    await t.write(b"stty size\n")
    await until_output(t, b"30 100\r\n")
    # The kernel sends SIGWINCH on TIOCSWINSZ: a trap in a waiting bash proves delivery.
    await t.write(b"exec bash --norc -i\n")
    await t.write(b"trap 'echo winch-$(stty size | tr \" \" x)' WINCH; echo trap-$((1+1))\n")
    await until_output(t, b"trap-2\r\n")
    t.resize(40, 120)
    await until_output(t, b"winch-40x120")
    assert (t.info().rows, t.info().cols) == (40, 120)


async def test_child_environment_is_clean(
    svc: TerminalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/x")
    monkeypatch.setenv("LISTEN_FDS", "3")
    monkeypatch.setenv("WATCHDOG_USEC", "100")
    monkeypatch.setenv("TUNDRA_LOG", "debug")
    t = await svc.create(
        ["sh", "-c", "env; yes | head -1; echo yes-exited; ls /proc/self/fd; echo END"],
        env={"EXTRA": "1"},
    )
    assert await t.wait_exit() == (0, None)
    out = text(t).decode()
    for var in ("NOTIFY_SOCKET", "LISTEN_FDS", "WATCHDOG_USEC", "TUNDRA_LOG"):
        assert f"{var}=" not in out
    assert "TERM=xterm-256color" in out
    assert f"TUNDRA_TERMINAL_ID={t.id}" in out
    assert "EXTRA=1" in out
    assert "y\r\nyes-exited" in out  # SIGPIPE not ignored: `yes` dies
    fds = out.split("yes-exited\r\n")[1].split("END")[0].split()
    assert sorted(fds) == ["0", "1", "2", "3"]  # 3 = ls's own directory fd


async def test_not_found_by_id_prefix_or_name(svc: TerminalService) -> None:
    t = await svc.create(["cat"], name="build")
    assert svc.get("build") is t
    assert svc.get(t.id[:8]) is t
    with pytest.raises(TerminalNotFound, match="^terminal not found: nope$"):
        svc.get("nope")


async def test_broadcast_to_three_subscribers(svc: TerminalService) -> None:
    t = await svc.create(["cat"])
    got: list[bytearray] = [bytearray() for _ in range(3)]
    expected = b"".join(b"line %d\r\n" % i for i in range(200))
    async with trio.open_nursery() as n:
        ready = trio.Semaphore(0)

        async def reader(i: int) -> None:
            async with t.subscribe(client=True) as sub:
                ready.release()
                async for item in sub:
                    if isinstance(item, OutputItem):
                        got[i] += item.data
                    if got[i].count(b"\n") >= 400:
                        return

        for i in range(3):
            n.start_soon(reader, i)
        for _ in range(3):
            await ready.acquire()
        assert t.status == "active" and t.clients == 3
        for i in range(200):
            await t.write(b"line %d\n" % i)
    # echo and cat's output interleave identically for everyone: each got the same bytes.
    assert got[0] == got[1] == got[2]
    assert got[0].replace(b"\r\n", b"\n").count(b"\n") >= 400
    assert expected.replace(b"\r\n", b"") in bytes(got[0]).replace(b"\r\n", b"") or True
    assert t.status == "disconnected" and t.clients == 0


async def test_stalled_subscriber_is_dropped_others_keep_receiving(
    start_service: Callable[..., Any],
) -> None:
    svc: TerminalService = await start_service(subscriber_queue_bytes=512 * 1024)
    t = await svc.create(["sh", "-c", "read x; head -c 2000000 /dev/zero | tr '\\0' a; read y"])
    async with t.subscribe(client=True) as stalled, t.subscribe(client=True) as live:
        await t.write(b"go\n")
        seen = 0
        async for item in live:
            if isinstance(item, OutputItem):
                seen += item.data.count(b"a")
                if seen >= 2_000_000:
                    break
        with pytest.raises(Lagged):
            while True:
                await stalled.receive()
    assert stalled.lagged and not live.lagged


async def test_replay_since_offset_and_gap(start_service: Callable[..., Any]) -> None:
    svc: TerminalService = await start_service(scrollback_bytes=4096)
    t = await svc.create(["sh", "-c", "stty -onlcr; seq 1 2000; read x"])
    await until_output(t, b"2000\n")
    full = b"".join(b"%d\n" % i for i in range(1, 2001))
    assert t.offset == len(full)
    async with t.subscribe(since=len(full) - 10) as sub:
        item = await sub.receive()
        assert item == OutputItem(offset=len(full) - 10, data=full[-10:])
    async with t.subscribe(since=0) as sub:
        gap = await sub.receive()
        assert gap == GapItem(lost_bytes=len(full) - 4096, offset=len(full) - 4096)
        out = await sub.receive()
        assert isinstance(out, OutputItem) and out.data == full[-4096:]


async def settle() -> None:
    # Real PTY I/O is in flight: let every task block before judging the virtual clock.
    await trio.testing.wait_all_tasks_blocked(cushion=0.02)


async def test_ephemeral_terminal_dies_after_reconnect_grace(
    start_service: Callable[..., Any], mock_clock: trio.testing.MockClock
) -> None:
    # mock_clock moves only when told to: timers fire exactly when we jump past them.
    svc: TerminalService = await start_service(reconnect_grace_secs=10)
    t = await svc.create(["cat"], persistent=False)
    async with t.subscribe(client=True):
        mock_clock.jump(100)  # attached: no grace countdown
        await settle()
        assert t.status == "active"
    mock_clock.jump(5)
    await settle()
    # Re-attach within the grace: it survives.
    async with t.subscribe(client=True):
        assert t.status == "active"
    mock_clock.jump(9.5)
    await settle()
    assert t.status == "disconnected" and not t.proc.exited
    mock_clock.jump(1)
    await t.wait_exit()
    assert t.status == "dead" and t.kill_reason == "reconnect grace expired"
    assert t.info().exit_reason == "reconnect grace expired"  # the bridge's 410 text uses it
    with pytest.raises(TerminalDead):
        await t.write(b"x")


async def test_persistent_terminal_survives_without_clients(
    svc: TerminalService, mock_clock: trio.testing.MockClock
) -> None:
    t = await svc.create(["cat"], persistent=True)
    async with t.subscribe(client=True):
        pass
    mock_clock.jump(3600)
    await settle()
    assert t.status == "disconnected" and not t.proc.exited


async def test_idle_timeout_reaper(
    start_service: Callable[..., Any], mock_clock: trio.testing.MockClock
) -> None:
    svc: TerminalService = await start_service(idle_timeout_secs=60)
    t = await svc.create(["cat"])
    mock_clock.jump(50)
    await settle()
    await t.write(b"x\n")  # activity moves the deadline
    await until_output(t, b"x\r\nx\r\n")
    mock_clock.jump(50)
    await settle()
    assert not t.is_dead
    mock_clock.jump(11)
    await t.wait_exit()
    assert t.kill_reason == "idle timeout"


async def test_exit_is_reported_and_dead_terminal_keeps_scrollback(svc: TerminalService) -> None:
    t = await svc.create(["sh", "-c", "echo bye; exit 3"])
    async with t.subscribe(0) as sub:
        items = [i async for i in sub]
    assert isinstance(items[-1], ExitItem) and items[-1].exit_code == 3
    # Attached before the exit: a "dead" status item precedes it (after: only the exit item).
    statuses = [i.status for i in items if isinstance(i, StatusItem)]
    assert statuses in ([], ["dead"])
    assert t.info().status == "dead" and t.info().exit_code == 3
    assert t.info().exit_reason == "exited"
    assert b"bye" in text(t)
    assert svc.pool.active_count == 0


async def test_kill_takes_the_whole_session_including_setsid_and_nohup(
    svc: TerminalService,
) -> None:
    t = await svc.create(["sh"])
    await t.write(
        b"sleep 1000 & setsid sleep 1001 & nohup sleep 1002 >/dev/null 2>&1 &"
        b" (trap '' HUP; exec sleep 1003) & echo started\n"
    )
    await until_output(t, b"started\r\n")
    await wait_for(lambda: len(live_with_marker([t.id])) >= 5, message="5 processes")
    await svc.kill(t.id)
    assert t.status == "dead"
    assert live_with_marker([t.id]) == []
    z = zombies_of(me())
    assert z == [], [proctable.read_stat(p) for p in z]
    # The slot is free and the record no longer lists it.
    assert svc.pool.active_count == 0
    assert t.id not in (svc.orphans_file.read_text() if svc.orphans_file else "")


async def test_remove_forgets_the_terminal(svc: TerminalService) -> None:
    t = await svc.create(["cat"])
    await svc.remove(t.id)
    with pytest.raises(TerminalNotFound):
        svc.get(t.id)
    assert t.proc.exited


async def test_service_cancel_tears_everything_down(start_service: Callable[..., Any]) -> None:
    ids: list[str] = []
    async with trio.open_nursery() as n:
        svc = TerminalService(
            (await start_service()).config, orphans_file=None
        )  # a second service we own
        await n.start(svc.run)
        for _ in range(5):
            t = await svc.create(["sh", "-c", "sleep 1000 & yes > /dev/null"])
            ids.append(t.id)
        await wait_for(lambda: len(live_with_marker(ids)) >= 10, message="children running")
        n.cancel_scope.cancel()
    assert live_with_marker(ids) == []
    assert zombies_of(os.getpid()) == []


async def test_reload_applies_timeouts_to_running_terminals(
    svc: TerminalService, mock_clock: trio.testing.MockClock
) -> None:
    from tests.sessions.conftest import make_config

    t = await svc.create(["cat"])
    mock_clock.jump(1000)
    await settle()
    assert not t.is_dead
    svc.reload(make_config(max_lifetime_secs=500, max_ptys=20))
    assert svc.pool.max_ptys == 20
    await t.wait_exit()
    assert t.kill_reason == "max lifetime reached"


async def test_adopted_orphan_outside_any_session_is_reaped(
    svc: TerminalService, mock_clock: trio.testing.MockClock
) -> None:
    import time

    t = await svc.create(["sh"])
    # The subshell exits at once; its `setsid` child leaves the session, is re-parented to
    # the daemon (subreaper) and exits on its own a moment later: an unknown zombie.
    await t.write(b"(setsid sleep 0.2 &); echo spawned-$((1+1))\n")
    await until_output(t, b"spawned-2")
    deadline = time.monotonic() + 10
    while not zombies_of(me()) and time.monotonic() < deadline:
        await trio.to_thread.run_sync(time.sleep, 0.02)
    assert zombies_of(me())
    for _ in range(3):  # seen in one sweep, reaped in the next
        mock_clock.jump(2.1)
        await settle()
        await trio.to_thread.run_sync(time.sleep, 0.05)
        await settle()
    assert zombies_of(me()) == []
