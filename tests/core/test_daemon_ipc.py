"""The real daemon process: socket security, lifecycle, signals, systemd hooks, bad input."""

from __future__ import annotations

import os
import signal
import socket
import stat
import struct
import sys

import msgspec
import pytest
import trio

from tests.support import daemon_env, short_tempdir, start_daemon, tundra_cmd, wait_for
from tundra.ipc.client import BlockingClient, open_client
from tundra.ipc.errors import DaemonNotResponding, DaemonNotRunning, ProtocolMismatch, UnknownMethod
from tundra.ipc.framing import FrameDecoder, frame
from tundra.ipc.protocol import PROTOCOL_VERSION, ErrorReply, Hello, Request, ServerFrame

enc = msgspec.msgpack.Encoder()
dec = msgspec.msgpack.Decoder(ServerFrame)


async def raw_connect(path: os.PathLike[str] | str, hello: bool = True) -> trio.SocketStream:
    s = await trio.open_unix_socket(str(path))
    if hello:
        await s.send_all(frame(enc.encode(Hello(protocol_version=PROTOCOL_VERSION))))
    return s


async def read_frames_until_eof(s: trio.SocketStream, limit: float = 10) -> list[object]:
    d = FrameDecoder()
    out: list[object] = []
    with trio.fail_after(limit):
        while True:
            try:
                data = await s.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not data:
                break
            d.feed(data)
            out.extend(dec.decode(b) for b in d.frames())
    return out


async def test_socket_is_private_and_ready_means_accepting() -> None:
    async with start_daemon() as d:
        # READY=1 has been received: the very first connect must succeed, no retry.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(d.socket))
        s.close()
        st = d.socket.stat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(d.socket.parent.stat().st_mode) == 0o700
        assert any("STATUS=serving on" in m for m in d.notify_messages)


async def test_second_daemon_refused_with_exit_2() -> None:
    async with start_daemon() as d:
        r = await trio.run_process(tundra_cmd("daemon"), env=d.env, capture_stdout=True, capture_stderr=True, check=False)
        assert r.returncode == 2
        err = r.stderr.decode()
        assert f"daemon already running (pid {d.pid}, socket {d.socket})" in err
        assert "Traceback" not in err
        assert (await d.call("ping"))["pid"] == d.pid


async def test_sigterm_is_a_clean_exit() -> None:
    async with start_daemon() as d:
        code = await d.stop(signal.SIGTERM)
        assert code == 0
        assert not d.socket.exists()
        assert "daemon stopped" in d.log_text()


async def test_sighup_reloads_and_ignores_invalid_config() -> None:
    async with start_daemon(config="[terminals]\nreconnect_grace_secs = 10.0\n") as d:
        async with d.client() as c, c.stream("events.subscribe", {"topics": ["daemon."]}) as events:
            (d.home / "config.toml").write_text("[terminals]\nreconnect_grace_secs = 3.0\n")
            d.send_signal(signal.SIGHUP)
            async for ev in events:
                assert ev["topic"] == "daemon.config_reloaded"
                assert ev["data"]["changed"] == ["terminals.reconnect_grace_secs"]
                break
        # Log records are written by a background thread: wait for the line.
        await wait_for(lambda: "config changed: terminals.reconnect_grace_secs: 10.0 -> 3.0" in d.log_text(),
                       message="config change log line")
        (d.home / "config.toml").write_text('[dolt]\nport = "x"\n')
        d.send_signal(signal.SIGHUP)
        await wait_for(lambda: "config reload failed" in d.log_text(), message="reload failure log")
        assert "dolt.port: expected int" in d.log_text()
        assert (await d.call("ping"))["pong"] is True


async def test_invalid_config_exits_2_without_traceback() -> None:
    base = short_tempdir()
    (base / "config.toml").write_text("[daemon]\nmax_ptys = 0\n")
    env = daemon_env(base, base / "d.sock")
    r = await trio.run_process(tundra_cmd("daemon"), env=env, capture_stderr=True, check=False)
    assert r.returncode == 2
    assert b"daemon.max_ptys: must be 1-100000, got 0" in r.stderr
    assert b"Traceback" not in r.stderr


async def test_socket_activation_uses_the_passed_socket() -> None:
    base = short_tempdir()
    path = base / "act.sock"
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(str(path))
    lsock.listen(16)
    fd = lsock.fileno()
    home = base / "home"
    env = daemon_env(home, base / "unused.sock")
    # What systemd does between fork and exec: the socket becomes fd 3, LISTEN_PID = own pid.
    shim = (
        f"import os, sys; os.dup2({fd}, 3); os.close({fd}); "
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
        "os.execv(sys.executable, [sys.executable, '-m', 'tundra', 'daemon'])"
    )
    cmd = [sys.executable, "-c", shim]
    proc = await trio.lowlevel.open_process(cmd, env=env, pass_fds=(fd,))
    try:
        lsock.close()
        async def ping() -> bool:
            assert proc.returncode is None, "daemon exited"
            try:
                async with open_client(path, connect_timeout=2) as c:
                    return bool((await c.call("ping"))["pid"] == proc.pid)
            except Exception:
                return False
        await wait_for(ping, timeout=20, interval=0.05, message="ping over the activated socket")
        assert not (base / "unused.sock").exists()
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await proc.wait() == 0
        assert path.exists()  # the service manager owns the activated socket file
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_stale_socket_is_replaced_but_a_live_one_is_not() -> None:
    base = short_tempdir()
    sock = base / "d.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()  # a file nobody listens on, as after kill -9
    async with start_daemon(env={"TUNDRA_SOCKET": str(sock)}) as d:
        assert (await d.call("ping"))["pid"] == d.pid
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(sock))
    live.listen(1)
    try:
        env = daemon_env(base / "h2", sock)
        r = await trio.run_process(tundra_cmd("daemon"), env=env, capture_stderr=True, check=False)
        assert r.returncode == 2
        assert f"socket {sock} is live".encode() in r.stderr
        assert sock.exists()
    finally:
        live.close()


async def exchange(path: os.PathLike[str], payload: bytes, *, hello: bool = True, eof: bool = False) -> list[object]:
    s = await raw_connect(path, hello=hello)
    try:
        if payload:
            await s.send_all(payload)
        if eof:
            await s.send_eof()
        return await read_frames_until_eof(s)
    finally:
        await s.aclose()


BAD_INPUTS = {
    "garbage_prefix": (b"\xde\xad\xbe\xef" * 4, "ipc.frame_too_large"),
    "garbage_body": (frame(b"\xc1\xff\x00garbage"), "ipc.invalid_request"),
    "length_2_31": (struct.pack(">I", 2**31), "ipc.frame_too_large"),
    "unknown_type": (frame(enc.encode({"t": "launch_missiles", "id": 1})), "ipc.unknown_message"),
    "missing_fields": (frame(enc.encode({"t": "request", "id": 1})), "ipc.invalid_request"),
    "not_a_map": (frame(enc.encode([1, 2, 3])), "ipc.unknown_message"),
}


async def test_bad_input_gets_an_error_frame_and_the_daemon_keeps_serving() -> None:
    async with start_daemon(env={"TUNDRA_HANDSHAKE_TIMEOUT": "0.5"}) as d:
        async with d.client() as healthy:
            for name, (payload, code) in BAD_INPUTS.items():
                frames = await exchange(d.socket, payload)
                errors = [f for f in frames if isinstance(f, ErrorReply)]
                assert errors and errors[-1].code == code and errors[-1].id == 0, (name, frames)
                assert (await healthy.call("ping"))["pong"]
            # Truncated frame: half a frame then EOF on our side.
            frames = await exchange(d.socket, frame(enc.encode(Request(id=1, method="ping")))[:7], eof=True)
            assert isinstance(frames[-1], ErrorReply) and "truncated frame" in frames[-1].message
            # A client that connects and sends nothing is closed after the handshake timeout.
            frames = await exchange(d.socket, b"", hello=False)
            assert isinstance(frames[-1], ErrorReply) and "no Hello" in frames[-1].message
            # Protocol mismatch: clear error.
            frames = await exchange(d.socket, frame(enc.encode(Hello(protocol_version=99))), hello=False)
            assert isinstance(frames[-1], ErrorReply) and frames[-1].code == "ipc.protocol_mismatch"
            assert "client speaks v99, daemon speaks v1" in frames[-1].message
            # An unknown method is an error for that request only.
            with pytest.raises(UnknownMethod):
                await healthy.call("no.such.method")
            assert (await healthy.call("ping"))["pong"]
        assert "Traceback" not in d.log_text()


async def test_200_concurrent_connections_and_concurrent_requests() -> None:
    async with start_daemon() as d:
        results: list[int] = []

        async def one() -> None:
            async with open_client(d.socket) as c:
                async with trio.open_nursery() as n:
                    for _ in range(3):
                        n.start_soon(lambda: c.call("ping"))
                results.append((await c.call("ping"))["pid"])

        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                for _ in range(200):
                    n.start_soon(one)
        assert results == [d.pid] * 200
        st = await d.call("status")
        assert st["ipc"]["requests_served"] >= 800


async def test_status_reports_pid_version_socket() -> None:
    async with start_daemon() as d:
        st = await d.call("status")
        assert st["pid"] == d.pid and st["socket"] == str(d.socket)
        assert st["environment"] == "development"
        assert st["uptime_secs"] >= 0
        r = await trio.run_process(tundra_cmd("status", "--json"), env=d.env, capture_stdout=True)
        assert msgspec.json.decode(r.stdout)["pid"] == d.pid
        r = await trio.run_process(tundra_cmd("ping"), env=d.env, capture_stdout=True)
        assert b"pong from pid" in r.stdout
        # The blocking client works too.
        with BlockingClient(d.socket) as bc:
            assert bc.call("ping")["pid"] == d.pid


async def test_client_errors_are_clear() -> None:
    base = short_tempdir()
    with pytest.raises(DaemonNotRunning) as e:
        async with open_client(base / "none.sock"):
            pass
    assert e.value.message == f"IPC error: daemon not running (no socket at {base / 'none.sock'})"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(base / "stale.sock"))
    stale.close()
    with pytest.raises(DaemonNotRunning, match="stale socket"):
        BlockingClient(base / "stale.sock").call("ping")
    # A server that accepts but never speaks: "not responding".
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(base / "mute.sock"))
    mute.listen(1)
    try:
        with pytest.raises(DaemonNotResponding, match="daemon not responding"):
            async with open_client(base / "mute.sock", connect_timeout=0.3):
                pass
    finally:
        mute.close()
    env = daemon_env(base, base / "none.sock")
    r = await trio.run_process(tundra_cmd("status"), env=env, capture_stderr=True, check=False)
    err = r.stderr.decode()
    assert r.returncode == 1
    assert "error: IPC error: daemon not running (no socket at" in err
    assert "hint:" in err and "Traceback" not in err


async def test_client_rejects_a_daemon_of_another_protocol_version() -> None:
    base = short_tempdir()
    path = base / "v9.sock"
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(str(path))
    listener.listen(1)

    async def fake_daemon() -> None:
        conn, _ = await listener.accept()
        stream = trio.SocketStream(conn)
        await stream.send_all(frame(enc.encode(Hello(protocol_version=9))))
        await stream.receive_some(1024)
        await stream.aclose()

    async with trio.open_nursery() as n:
        n.start_soon(fake_daemon)
        with pytest.raises(ProtocolMismatch, match="daemon speaks v9, client speaks v1"):
            async with open_client(path):
                pass
    listener.close()


async def test_second_sigterm_forces_exit_and_kills_children_without_grace() -> None:
    # A shell that ignores SIGHUP and a 60 s kill grace: a graceful stop would wait 60 s.
    cfg = "[daemon]\nkill_grace_secs = 60.0\nshutdown_timeout_secs = 120.0\n"
    async with start_daemon(config=cfg) as d:
        async with d.client() as c:
            info = await c.call("term.new", {"argv": ["sh", "-c", "trap '' HUP; echo ready; exec sleep 1000"]})

            async def printed_ready() -> bool:
                out = await c.call("term.output", {"id": info["id"]})
                return b"ready" in out["data"]

            await wait_for(printed_ready, message="child ready")
        child = info["pid"]
        d.send_signal(signal.SIGTERM)
        await wait_for(lambda: "shutting down (SIGTERM)" in d.log_text(), message="graceful stop begins")
        d.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            await d.proc.wait()
        assert "second SIGTERM: forcing exit" in d.log_text()

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            return False

        await wait_for(gone, timeout=5, message="the terminal's child to be killed")
