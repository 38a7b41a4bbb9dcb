"""Pure logic of the bridge: allowlists, login codes and cookies, the send queue, metrics."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from tundra.bridge.auth import BridgeAuth, load_or_create_token, make_login_code
from tundra.bridge.errors import LoginCodeInvalid
from tundra.bridge.metrics import BridgeMetrics
from tundra.bridge.policy import OriginPolicy, is_loopback_host
from tundra.bridge.terminal_ws import dead_message
from tundra.bridge.ws_session import MAX_FRAME_BYTES, QueueStalled, SendQueue


def test_host_allowlist_blocks_dns_rebinding_names() -> None:
    p = OriginPolicy(bind_host="127.0.0.1", port=3000, tls=False)
    for ok in ("127.0.0.1:3000", "localhost:3000", "[::1]:3000", "LOCALHOST:3000"):
        assert p.host_allowed(ok), ok
    for bad in ("evil.example:3000", "127.0.0.1:3001", "localhost", None, "", "127.0.0.1.evil.example:3000"):
        assert not p.host_allowed(bad), bad
    p2 = OriginPolicy(bind_host="127.0.0.1", port=3000, tls=True, allowed_hosts=["tundra.example.com"])
    assert p2.host_allowed("tundra.example.com") and p2.host_allowed("tundra.example.com:8443")


def test_origin_allowlist() -> None:
    p = OriginPolicy(bind_host="127.0.0.1", port=3000, tls=False, allowed_origins=["https://ide.example.com/"])
    assert p.origin_allowed("http://127.0.0.1:3000")
    assert p.origin_allowed("http://localhost:3000")
    assert p.origin_allowed("http://[::1]:3000")
    assert p.origin_allowed("https://ide.example.com")
    assert not p.origin_allowed("http://evil.example")
    assert not p.origin_allowed("http://localhost:3001")
    assert not p.origin_allowed("null")
    assert is_loopback_host("127.0.0.2") and is_loopback_host("[::1]") and not is_loopback_host("0.0.0.0")


def test_login_code_works_once_and_expires_and_cannot_be_forged() -> None:
    auth = BridgeAuth("t" * 43, cookie_name="c")
    code = make_login_code("t" * 43, now=1000.0)
    auth.redeem_login_code(code, now=1001.0)
    with pytest.raises(LoginCodeInvalid, match="already used"):
        auth.redeem_login_code(code, now=1002.0)
    with pytest.raises(LoginCodeInvalid, match="expired"):
        auth.redeem_login_code(make_login_code("t" * 43, now=1000.0), now=2000.0)
    with pytest.raises(LoginCodeInvalid, match="not valid"):
        auth.redeem_login_code(make_login_code("other-token-other-token", now=1000.0), now=1001.0)
    nonce, exp, sig = make_login_code("t" * 43, now=1000.0).split(".")
    with pytest.raises(LoginCodeInvalid):
        auth.redeem_login_code(f"{nonce}.{int(exp) + 9999}.{sig}", now=1001.0)


def test_session_cookie_signature_and_expiry() -> None:
    auth = BridgeAuth("k" * 43, cookie_name="c")
    value = auth.issue_session(now=0.0)
    assert auth.check_session(value, now=10.0)
    assert not auth.check_session(value, now=10**9)
    assert not auth.check_session(value[:-2] + "xx", now=10.0)
    assert not BridgeAuth("z" * 43, cookie_name="c").check_session(value, now=10.0)
    assert auth.check_bearer("Bearer " + "k" * 43) and not auth.check_bearer("Bearer nope")
    assert not auth.check_bearer(None) and not auth.check_bearer("Basic " + "k" * 43)


def test_token_file_is_created_0600_and_loose_modes_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "bridge.token"
    token = load_or_create_token(path)
    assert len(token) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.chmod(0o644)
    assert load_or_create_token(path) == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_send_queue_coalesces_output_and_keeps_control_order() -> None:
    q = SendQueue(max_bytes=1 << 20, stall_timeout=1.0)
    q.put_control({"type": "offset", "offset": 0})
    await q.put_bytes(b"a" * 10)
    await q.put_bytes(b"b" * 10)
    q.put_control({"type": "status", "status": "active"})
    await q.put_bytes(b"c")
    assert await q.get() == '{"type":"offset","offset":0}'
    assert await q.get() == b"a" * 10 + b"b" * 10
    assert (await q.get()).startswith('{"type":"status"')  # type: ignore[union-attr]
    assert await q.get() == b"c"
    assert q.queued_bytes == 0
    big = b"x" * (MAX_FRAME_BYTES - 1)
    await q.put_bytes(big)
    await q.put_bytes(b"yy")
    assert await q.get() == big  # frames never exceed the cap
    assert await q.get() == b"yy"


async def test_send_queue_waits_for_room_then_gives_up_on_a_stalled_client(autojump_clock: trio.abc.Clock) -> None:
    q = SendQueue(max_bytes=100, stall_timeout=5.0)
    await q.put_bytes(b"x" * 80)
    # A reader that drains in time lets the producer continue (backpressure, no drop).
    async with trio.open_nursery() as nursery:
        async def drain_later() -> None:
            await trio.sleep(2)
            await q.get()

        nursery.start_soon(drain_later)
        await q.put_bytes(b"y" * 80)
    assert q.queued_bytes == 80
    start = trio.current_time()
    with pytest.raises(QueueStalled):
        await q.put_bytes(b"z" * 80)
    assert trio.current_time() - start == pytest.approx(5.0)


def test_metrics_render_prometheus_text() -> None:
    m = BridgeMetrics()
    m.observe_request("GET", "/api/terminals", 200, 0.003)
    m.observe_request("GET", "/api/terminals", 200, 0.2)
    m.ws_clients["terminal"] = 2
    text = m.render(pool={"active": 3, "max": 10}, terminals_by_status={"active": 1, "dead": 2})
    assert 'tundra_bridge_http_requests_total{method="GET",route="/api/terminals",status="200"} 2' in text
    assert 'tundra_bridge_http_request_duration_seconds_bucket{route="/api/terminals",le="0.005"} 1' in text
    assert 'tundra_bridge_http_request_duration_seconds_bucket{route="/api/terminals",le="+Inf"} 2' in text
    assert 'tundra_bridge_ws_clients{kind="terminal"} 2' in text
    assert "tundra_pty_pool_active 3" in text and "tundra_pty_pool_max 10" in text
    assert 'tundra_terminals{status="dead"} 2' in text
    assert "# TYPE tundra_bridge_http_request_duration_seconds histogram" in text


def test_dead_message_names_the_reason() -> None:
    assert dead_message({"exit_reason": "grace_expired"}) == "terminal is dead (grace period expired)"
    assert dead_message({"exit_code": 3}) == "terminal is dead (exit code 3)"
    assert dead_message({"exit_signal": 9}) == "terminal is dead (killed by signal 9)"


async def test_request_reader_times_out_a_slow_head_and_limits_bodies(autojump_clock: trio.abc.Clock) -> None:
    import trio.testing

    from tundra.bridge.errors import PayloadTooLarge, RequestTimeout
    from tundra.bridge.http import RequestReader

    # A client that sends half a head and stops: 408 after the head timeout (slowloris).
    client, server = trio.testing.memory_stream_pair()
    reader = RequestReader(server, max_body=1024)
    await client.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
    with pytest.raises(RequestTimeout):
        await reader.read_head(10.0)
    # A client that sends nothing: the connection just ends (no response).
    client, server = trio.testing.memory_stream_pair()
    assert await RequestReader(server, max_body=1024).read_head(10.0) is None
    # Bodies: the declared length is checked before reading, a chunked body while reading.
    client, server = trio.testing.memory_stream_pair()
    reader = RequestReader(server, max_body=1024)
    await client.send_all(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
    req = await reader.read_head(10.0)
    assert req is not None
    with pytest.raises(PayloadTooLarge):
        await reader.read_body(req, 10.0)
    client, server = trio.testing.memory_stream_pair()
    reader = RequestReader(server, max_body=1024)
    await client.send_all(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"1\r\nx\r\n0\r\n\r\n")
    req = await reader.read_head(10.0)
    assert req is not None
    with pytest.raises(PayloadTooLarge):
        await reader.read_body(req, 10.0)
    # Within limits: body read, request id generated, cookies parsed.
    client, server = trio.testing.memory_stream_pair()
    reader = RequestReader(server, max_body=1024)
    await client.send_all(b"POST /x?a=1 HTTP/1.1\r\nHost: a\r\nCookie: s=1; t=2\r\nContent-Length: 2\r\n\r\n{}")
    req = await reader.read_head(10.0)
    assert req is not None
    await reader.read_body(req, 10.0)
    assert req.body == b"{}" and req.query == {"a": "1"} and req.cookie("t") == "2" and len(req.request_id) == 16
