"""What systemd relies on: socket activation (systemd-socket-activate) and watchdog pings."""

from __future__ import annotations

import shutil
import signal
import socket as stdsocket
import statistics
import subprocess
import sys
from pathlib import Path

import trio

from tests.support import daemon_env, need, short_tempdir, wait_for
from tundra.ipc.client import open_client

HERE = Path(__file__).resolve().parent


async def test_socket_activated_daemon_answers_on_the_passed_socket() -> None:
    tool = shutil.which("systemd-socket-activate")
    need(tool is not None, "systemd-socket-activate (apt: systemd) not installed")
    assert tool is not None
    base = short_tempdir("sa")
    activated = base / "act.sock"
    # The daemon's own path differs: if it bound a socket itself, this file would appear.
    env = daemon_env(base / "home", base / "own.sock")
    cmd = [tool, "-l", str(activated)]
    for var in ("PYTHONPATH", "TUNDRA_HOME", "TUNDRA_SOCKET", "TUNDRA_LOG", "PATH"):
        cmd += ["-E", var]  # systemd-socket-activate passes no environment by default
    out = base / "out.log"
    with out.open("wb") as log:
        proc = await trio.lowlevel.open_process(
            [*cmd, sys.executable, "-m", "tundra", "daemon"],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    try:
        await wait_for(activated.exists, message="the activation socket")
        # The first connection makes systemd-socket-activate exec the daemon with LISTEN_FDS=1.
        async with open_client(activated, connect_timeout=20) as client:
            pong = await client.call("ping")
        assert pong["pid"] == proc.pid  # exec'd in place: the activator's pid is the daemon's
        cmdline = (await trio.Path(f"/proc/{proc.pid}/cmdline").read_bytes()).split(b"\0")
        assert b"tundra" in cmdline and b"daemon" in cmdline
        assert not await trio.Path(base / "own.sock").exists()
        assert "socket activation" in await trio.Path(out).read_text()
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(base, ignore_errors=True)


async def test_watchdog_pings_at_half_the_interval_and_stop_when_the_loop_blocks() -> None:
    base = short_tempdir("wd")
    notify_path = base / "notify.sock"
    notify = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM)
    await notify.bind(str(notify_path))
    sock = base / "d.sock"
    usec = 300_000  # pings expected every 0.15 s
    env = daemon_env(
        base / "home", sock, {"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": str(usec)}
    )
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(HERE / "blocking_daemon.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    pings: list[float] = []
    ready = trio.Event()

    async def receive() -> None:
        while True:
            msg = (await notify.recv(65536)).decode().split("\n")
            if "READY=1" in msg:
                ready.set()
            if "WATCHDOG=1" in msg:
                pings.append(trio.current_time())

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            with trio.fail_after(30):
                await ready.wait()
            await wait_for(lambda: len(pings) >= 8, message="8 watchdog pings")
            recent = pings[-7:]
            gaps = [b - a for a, b in zip(recent, recent[1:], strict=False)]
            median = statistics.median(gaps)
            assert 0.10 <= median <= 0.22, gaps  # WATCHDOG_USEC / 2 = 0.15 s

            # Block the loop for 1.2 s (8 intervals): no ping may arrive meanwhile.
            async with open_client(sock) as client:
                before = len(pings)
                t0 = trio.current_time()
                await client.call("test.block_loop", {"secs": 1.2})
                t1 = trio.current_time()
            during = [p for p in pings[before:] if t0 + 0.2 < p < t1 - 0.2]
            assert t1 - t0 >= 1.2
            assert during == [], during
            # ...and they resume once the loop runs again.
            count = len(pings)
            await wait_for(lambda: len(pings) >= count + 3, message="pings after the block")
            window = pings[before - 1 :]
            assert (
                max(b - a for a, b in zip(window, window[1:], strict=False)) >= 1.0
            )  # the silence systemd sees
            nursery.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(20):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        notify.close()
        shutil.rmtree(base, ignore_errors=True)
