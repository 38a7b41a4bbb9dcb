"""REST API against a real daemon and a real bridge process: happy paths and every error."""

from __future__ import annotations

import os
import stat

import httpx
import trio

from tests.bridge.bridgeproc import start_bridge
from tests.support import start_daemon


async def raw_request(port: int, data: bytes, timeout: float = 15.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    out = bytearray()
    async with stream:
        try:
            await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # the server answered early and closed
        with trio.fail_after(timeout):
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                out += chunk
    return bytes(out)

SHELL_CAT = ["cat"]


async def test_terminal_rest_lifecycle_and_headers() -> None:
    async with start_daemon() as daemon, start_bridge(daemon) as bridge, bridge.http() as http:
        token_file = daemon.home / "bridge.token"
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600

        # Health needs no auth and leaks no secret.
        async with httpx.AsyncClient(base_url=bridge.url) as anon:
            r = await anon.get("/api/health")
        assert r.status_code == 200
        assert r.json()["daemon"]["state"] == "up"
        assert bridge.token not in r.text

        r = await http.post("/api/terminals", json={"command": SHELL_CAT, "rows": 30, "cols": 100, "name": "t1"})
        assert r.status_code == 201, r.text
        info = r.json()
        assert info["persistent"] is False  # browser-created terminals are ephemeral by default
        assert (info["rows"], info["cols"]) == (30, 100)
        tid = info["id"]
        assert r.headers["location"] == f"/api/terminals/{tid}"
        # Security headers and request ids.
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
        assert len(r.headers["x-request-id"]) >= 8
        r = await http.get("/api/terminals", headers={"x-request-id": "req-abc-123"})
        assert r.headers["x-request-id"] == "req-abc-123"
        assert tid in [t["id"] for t in r.json()["terminals"]]

        r = await http.get(f"/api/terminals/{tid[:8]}")
        assert r.status_code == 200 and r.json()["id"] == tid
        r = await http.post(f"/api/terminals/{tid}/resize", json={"rows": 40, "cols": 120})
        assert r.status_code == 200 and (r.json()["rows"], r.json()["cols"]) == (40, 120)

        r = await http.delete(f"/api/terminals/{tid}")
        assert r.status_code == 200
        assert r.json() == {"status": "deleted", "id": tid}
        r = await http.get(f"/api/terminals/{tid}")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "terminal.not_found"
        assert r.json()["error"]["message"] == f"terminal not found: {tid}"


async def test_request_errors_have_codes_and_statuses() -> None:
    async with start_daemon() as daemon, start_bridge(daemon) as bridge, bridge.http() as http:
        r = await http.get("/api/nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "http.not_found"
        r = await http.put("/api/terminals")
        assert r.status_code == 405 and r.json()["error"]["code"] == "http.method_not_allowed"
        r = await http.post("/api/terminals", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "http.bad_request"
        r = await http.post("/api/terminals", json={"rows": 0})
        assert r.status_code == 400 and "rows" in r.json()["error"]["message"]
        r = await http.post("/api/terminals", json={"bogus": 1})
        assert r.status_code == 400
        r = await http.post("/api/terminals/x/resize", json={"rows": 10, "cols": 10})
        assert r.status_code == 404 and r.json()["error"]["code"] == "terminal.not_found"
        # 413 from the declared length, before the body is read ...
        head = (f"POST /api/terminals HTTP/1.1\r\nHost: 127.0.0.1:{bridge.port}\r\n"
                f"Authorization: Bearer {bridge.token}\r\nContent-Length: {2 * 1024 * 1024 + 1}\r\n\r\n")
        resp = await raw_request(bridge.port, head.encode())
        assert resp.startswith(b"HTTP/1.1 413") and b"http.payload_too_large" in resp
        # ... and from a chunked body that grows past the limit.
        chunk = b"x" * 65536
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(33))
        head = (f"POST /api/terminals HTTP/1.1\r\nHost: 127.0.0.1:{bridge.port}\r\n"
                f"Authorization: Bearer {bridge.token}\r\nTransfer-Encoding: chunked\r\n\r\n")
        resp = await raw_request(bridge.port, head.encode() + body)
        assert resp.startswith(b"HTTP/1.1 413")
        r = await http.post("/api/terminals", json={"command": ["/nonexistent/binary"]})
        assert r.status_code == 500 and r.json()["error"]["code"] == "pty.spawn_failed"
        r = await http.post("/api/llm/complete", json={})
        assert r.status_code == 400 and "prompt" in r.json()["error"]["message"]
        r = await http.post("/api/tasks/abc/explode", json={})
        assert r.status_code == 404
        resp = await raw_request(bridge.port, b"GARBAGE\r\n\r\n")
        assert resp.startswith(b"HTTP/1.1 400")
        # A head that grows past 16 KiB without ending is refused without waiting for the rest.
        resp = await raw_request(bridge.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000)
        assert resp.startswith(b"HTTP/1.1 431")


async def test_at_capacity_is_503_with_the_seed_message() -> None:
    async with start_daemon(config="[daemon]\nmax_ptys = 1\n") as daemon, start_bridge(daemon) as bridge:
        async with bridge.http() as http:
            r = await http.post("/api/terminals", json={"command": SHELL_CAT})
            assert r.status_code == 201
            r = await http.post("/api/terminals", json={"command": SHELL_CAT})
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "pty.at_capacity"
            assert r.json()["error"]["message"] == "pty pool is at capacity (1)"
            m = await http.get("/metrics")
            assert m.status_code == 200
            assert m.headers["content-type"].startswith("text/plain")
            text = m.text
            assert 'tundra_bridge_http_requests_total{method="POST",route="/api/terminals",status="503"} 1' in text
            assert "tundra_bridge_daemon_up 1" in text
            assert "tundra_pty_pool_active 1" in text and "tundra_pty_pool_max 1" in text
            assert 'tundra_terminals{status="disconnected"} 1' in text
            assert "tundra_bridge_http_request_duration_seconds_bucket" in text


async def test_daemon_down_gives_503_then_recovers() -> None:
    async with start_daemon() as daemon:
        sock = daemon.socket
        async with start_bridge(daemon) as bridge, bridge.http() as http:
            await daemon.stop()
            from tests.support import wait_for

            async def unavailable() -> bool:
                r = await http.get("/api/terminals")
                return r.status_code == 503 and r.json()["error"]["code"] == "daemon.unavailable"

            await wait_for(unavailable, timeout=10, message="503 daemon.unavailable")
            r = await http.get("/api/health")
            assert r.status_code == 200 and r.json()["daemon"]["state"] != "up"
            async with start_daemon(daemon.home, env={"TUNDRA_SOCKET": str(sock)}):
                async def recovered() -> bool:
                    r = await http.get("/api/terminals")
                    return r.status_code == 200

                await wait_for(recovered, timeout=15, message="bridge to reconnect")
            assert "reconnect attempt" in bridge.log_text()


async def test_llm_complete_and_task_routes_pass_through_to_the_daemon() -> None:
    import json

    from tests.fakes.fake_llm import FakeLLM
    from tests.support import short_tempdir

    with FakeLLM() as fake:
        base = short_tempdir("bl")
        home = base / "home"
        (home / "config").mkdir(parents=True)
        (home / "config" / "api_profiles.json").write_text(json.dumps({"profiles": [
            {"name": "primary", "provider": "anthropic", "base_url": fake.url, "api_key_env": "T_BRIDGE_KEY",
             "priority": 0, "timeout_secs": 5}]}))
        async with start_daemon(home, env={"T_BRIDGE_KEY": "sk-ant-test-0000"}) as daemon, \
                start_bridge(daemon) as bridge, bridge.http() as http:
            fake.push({"match": {"api": "anthropic"}, "text": "bonjour from the fake"})
            r = await http.post("/api/llm/complete", json={"prompt": "say hi", "max_tokens": 20})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["text"] == "bonjour from the fake" and body["profile"] == "primary"
            assert "sk-ant-test-0000" not in r.text

            r = await http.get("/api/tasks")
            assert r.status_code == 200 and r.json()["tasks"] == []
            r = await http.get("/api/tasks/deadbeef")
            assert r.status_code == 404 and r.json()["error"]["code"] == "task.not_found"
            r = await http.post("/api/tasks/deadbeef/approve", json={})
            assert r.status_code == 404 and r.json()["error"]["code"] == "task.not_found"
            r = await http.post("/api/tasks", json={"prompt": "no title"})
            assert r.status_code == 400
