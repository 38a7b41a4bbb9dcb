"""/ws/terminal and /ws/events through a real bridge and daemon, with real WebSocket clients."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
import trio
import trio_websocket

from tests.bridge.bridgeproc import BridgeHandle, recv_until, start_bridge, ws_connect, ws_handshake
from tests.support import start_daemon, wait_for

PY = sys.executable


async def new_terminal(bridge: BridgeHandle, command: list[str], **kw: Any) -> dict[str, Any]:
    async with bridge.http() as http:
        r = await http.post("/api/terminals", json={"command": command, **kw})
        assert r.status_code == 201, r.text
        return dict(r.json())


def first_offset(controls: list[dict[str, Any]]) -> int:
    return int(next(c["offset"] for c in controls if c["type"] == "offset"))


async def get_terminal(bridge: BridgeHandle, tid: str) -> dict[str, Any]:
    async with bridge.http() as http:
        r = await http.get(f"/api/terminals/{tid}")
        return dict(r.json())


async def test_input_echo_resize_and_byte_exact_binary_output() -> None:
    async with start_daemon() as daemon, start_bridge(daemon) as bridge:
        t = await new_terminal(bridge, ["sh"])
        async with ws_connect(bridge, f"/ws/terminal/{t['id']}?since=0") as ws:
            await ws.send_message(b"echo hel''lo\r")
            data, controls = await recv_until(ws, lambda d, c: b"hello\r\n" in d)
            assert first_offset(controls) == 0
            # Resize reaches the child (TIOCSWINSZ): stty sees it.
            await ws.send_message(json.dumps({"type": "resize", "rows": 33, "cols": 101}))
            await ws.send_message(json.dumps({"type": "input", "data": "stty size\r"}))
            await recv_until(ws, lambda d, c: b"33 101" in d)
            await ws.send_message(json.dumps({"type": "ping"}))
            await recv_until(ws, lambda d, c: {"type": "pong"} in c)

        # Every byte value arrives unchanged in binary frames (raw mode: no CRLF translation).
        script = "import sys; sys.stdout.buffer.write(bytes(range(256))*4); sys.stdout.flush()"
        t2 = await new_terminal(bridge, ["sh", "-c", f"stty raw -echo; printf START; {PY} -c '{script}'; sleep 30"])
        async with ws_connect(bridge, f"/ws/terminal/{t2['id']}?since=0") as ws:
            expected = b"START" + bytes(range(256)) * 4
            data, _ = await recv_until(ws, lambda d, c: len(d) >= len(expected))
            assert data[: len(expected)] == expected


async def test_disconnect_then_resume_with_since_has_no_loss_and_no_duplicates() -> None:
    async with start_daemon() as daemon, start_bridge(daemon) as bridge:
        # Output keeps flowing (in bursts) while the client is away.
        loop = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line$i; [ $((i % 200)) = 0 ] && sleep 0.1; done"
        cmd = ["sh", "-c", loop + "; sleep 30"]
        t = await new_terminal(bridge, cmd)
        received = bytearray()
        next_offset = 0
        async with ws_connect(bridge, f"/ws/terminal/{t['id']}?since=0") as ws:
            data, controls = await recv_until(ws, lambda d, c: len(d) > 1000)
            assert first_offset(controls) == 0
            assert b"line3000" not in data
            received += data
            next_offset = len(received)
        # The last client left: the terminal is disconnected but still running.
        async def disconnected() -> bool:
            return (await get_terminal(bridge, t["id"]))["status"] == "disconnected"

        await wait_for(disconnected, timeout=10, message="status disconnected")
        async with ws_connect(bridge, f"/ws/terminal/{t['id']}?since={next_offset}") as ws:
            data, controls = await recv_until(ws, lambda d, c: b"line3000\r\n" in d)
            assert first_offset(controls) == next_offset
            received += data
            assert (await get_terminal(bridge, t["id"]))["status"] == "active"
        expected = b"".join(b"line%d\r\n" % i for i in range(1, 3001))
        assert bytes(received) == expected
        log = bridge.log_text()
        assert "WebSocket connection established for terminal" in log
        assert "Replaying" in log


async def test_resume_by_first_control_message() -> None:
    async with start_daemon() as daemon, start_bridge(daemon) as bridge:
        t = await new_terminal(bridge, ["sh", "-c", "echo one; echo two; sleep 30"])
        async with ws_connect(bridge, f"/ws/terminal/{t['id']}?since=0") as ws:
            full, _ = await recv_until(ws, lambda d, c: b"two\r\n" in d)
        cut = full.index(b"two")
        async with ws_connect(bridge, f"/ws/terminal/{t['id']}") as ws:
            await ws.send_message(json.dumps({"type": "attach", "since": cut}))
            data, controls = await recv_until(ws, lambda d, c: b"two\r\n" in d)
            assert first_offset(controls) == cut
            assert data == full[cut:]


async def test_grace_expiry_then_reconnect_gets_410() -> None:
    config = "[terminals]\nreconnect_grace_secs = 0.5\n"
    async with start_daemon(config=config) as daemon, start_bridge(daemon) as bridge:
        t = await new_terminal(bridge, ["cat"])
        async with ws_connect(bridge, f"/ws/terminal/{t['id']}") as ws:
            await ws.send_message(b"x")
            await recv_until(ws, lambda d, c: b"x" in d)

        async def dead() -> bool:
            return (await get_terminal(bridge, t["id"]))["status"] == "dead"

        await wait_for(dead, timeout=10, message="grace expiry")
        status, _, raw, _ = await ws_handshake(bridge, f"/ws/terminal/{t['id']}")
        assert status == 410
        body = json.loads(raw)
        assert body["error"]["code"] == "terminal.dead"
        assert body["error"]["message"] == "terminal is dead (grace period expired)"
        log = bridge.log_text()
        assert "Reconnect attempt received, returning 410 Gone" in log
        assert "Grace period expired" in log


async def test_unknown_terminal_is_404_before_upgrade() -> None:
    async with start_daemon() as daemon, start_bridge(daemon) as bridge:
        status, _, body, _ = await ws_handshake(bridge, "/ws/terminal/00000000-0000-0000-0000-000000000000")
        assert status == 404 and json.loads(body)["error"]["code"] == "terminal.not_found"
        status, _, body, _ = await ws_handshake(bridge, "/ws/nothing")
        assert status == 404


def _frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Parse complete server frames (unmasked) from ``buf``, consuming them."""
    out = []
    while len(buf) >= 2:
        opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                break
            n, pos = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, pos = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < pos + n:
            break
        out.append((opcode, bytes(buf[pos : pos + n])))
        del buf[: pos + n]
    return out


async def test_heartbeat_timeout_closes_a_client_that_stops_answering_pings() -> None:
    config = "[bridge]\nheartbeat_interval_secs = 0.3\nheartbeat_timeout_secs = 0.5\n"
    async with start_daemon(config=config) as daemon, start_bridge(daemon) as bridge:
        t = await new_terminal(bridge, ["cat"])
        status, _, leftover, stream = await ws_handshake(bridge, f"/ws/terminal/{t['id']}")
        assert status == 101
        buf = bytearray(leftover)
        seen: list[int] = []
        close_code = None
        with trio.fail_after(10):
            while close_code is None:
                for opcode, payload in _frames(buf):
                    seen.append(opcode)
                    if opcode == 0x8:
                        close_code = int.from_bytes(payload[:2], "big")
                if close_code is None:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    buf += chunk
        await stream.aclose()
        assert 0x9 in seen  # the server pinged
        assert close_code == 1001
        log = bridge.log_text()
        assert "Pong timeout after 0.5 seconds" in log
        assert "Heartbeat failure detected, closing connection" in log


async def test_idle_timeout_closes_a_silent_connection() -> None:
    config = "[bridge]\nidle_timeout_secs = 0.5\n"
    async with start_daemon(config=config) as daemon, start_bridge(daemon) as bridge:
        t = await new_terminal(bridge, ["cat"])
        async with ws_connect(bridge, f"/ws/terminal/{t['id']}") as ws:
            with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as info:
                while True:
                    await ws.get_message()
            assert info.value.reason.code == 1000
            assert info.value.reason.reason == "idle timeout"
        assert "Idle timeout reached, closing WebSocket" in bridge.log_text()


async def test_events_stream_and_daemon_restart_closes_with_1012_then_recovers() -> None:
    async with start_daemon() as daemon:
        sock = daemon.socket
        async with start_bridge(daemon) as bridge:
            async with ws_connect(bridge, "/ws/events") as events:
                hello = json.loads(await events.get_message())
                assert hello["type"] == "hello"
                t = await new_terminal(bridge, ["cat"])
                with trio.fail_after(10):
                    while True:
                        ev = json.loads(await events.get_message())
                        if ev.get("topic") == "terminal.created":
                            assert ev["data"]["id"] == t["id"]
                            break
                async with ws_connect(bridge, f"/ws/terminal/{t['id']}") as ws:
                    await ws.send_message(b"ping\n")
                    await recv_until(ws, lambda d, c: b"ping" in d)
                    await daemon.stop()
                    with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as info:
                        while True:
                            await ws.get_message()
                    assert info.value.reason.code in (1012, 1013)
                with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as info:
                    while True:
                        await events.get_message()
                assert info.value.reason.code in (1012, 1013)
            # The bridge recovers without a restart; a client re-attaches to a new terminal.
            async with start_daemon(daemon.home, env={"TUNDRA_SOCKET": str(sock)}):
                async def up() -> bool:
                    async with bridge.http() as http:
                        return (await http.get("/api/health")).json()["daemon"]["state"] == "up"

                await wait_for(up, timeout=15, message="bridge reconnect")
                t2 = await new_terminal(bridge, ["cat"])
                async with ws_connect(bridge, f"/ws/terminal/{t2['id']}?since=0") as ws:
                    await ws.send_message(b"again\n")
                    await recv_until(ws, lambda d, c: b"again" in d)


async def test_a_stalled_client_is_closed_with_1013_and_memory_stays_bounded() -> None:
    config = "[bridge]\nsend_queue_bytes = 65536\nheartbeat_timeout_secs = 1.0\n"
    async with start_daemon(config=config) as daemon, start_bridge(daemon) as bridge:
        t = await new_terminal(bridge, ["yes"])
        status, _, _, stream = await ws_handshake(bridge, f"/ws/terminal/{t['id']}?since=0")
        assert status == 101
        try:
            # The client never reads: the bridge must give up on it rather than buffer forever.
            async def closed_1013() -> bool:
                async with bridge.http() as http:
                    text = (await http.get("/metrics")).text
                return 'tundra_bridge_ws_closed_total{kind="terminal",code="1013"} 1' in text

            await wait_for(closed_1013, timeout=30, interval=0.2, message="slow client closed with 1013")
            assert "client too slow" in bridge.log_text()
            # The terminal itself keeps running; a fresh client resumes from an offset.
            assert (await get_terminal(bridge, t["id"]))["status"] != "dead"
        finally:
            await stream.aclose()
