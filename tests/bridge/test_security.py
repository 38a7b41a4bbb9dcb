"""Secure by default: token, login code + cookie, Origin and Host allowlists, loopback bind."""

from __future__ import annotations

import json

import httpx
import trio

from tests.bridge.bridgeproc import start_bridge, ws_connect, ws_handshake
from tests.support import start_daemon, tundra_cmd


async def test_rest_and_websocket_need_auth_and_allowed_origin_and_host() -> None:
    with trio.fail_after(30):
        await _auth_checks()


async def _auth_checks() -> None:
    async with start_daemon() as daemon, start_bridge(daemon) as bridge:
        async with httpx.AsyncClient(base_url=bridge.url) as anon:
            r = await anon.get("/api/terminals")
            assert r.status_code == 401 and r.json()["error"]["code"] == "auth.unauthorized"
            r = await anon.get("/api/terminals", headers={"Authorization": "Bearer wrong-token-wrong-token"})
            assert r.status_code == 401
            r = await anon.get("/metrics")
            assert r.status_code == 401
        async with bridge.http() as http:
            r = await http.get("/api/terminals", headers={"Origin": "http://evil.example"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "auth.origin_forbidden"
            # DNS rebinding: the attacker's name resolves to 127.0.0.1; the Host header gives it away.
            r = await http.get("/api/terminals", headers={"Host": f"evil.example:{bridge.port}"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "auth.host_forbidden"
            r = await http.get("/api/terminals", headers={"Origin": f"http://localhost:{bridge.port}",
                                                          "Host": f"localhost:{bridge.port}"})
            assert r.status_code == 200
            r = await http.post("/api/terminals", json={"command": ["cat"]})
            tid = r.json()["id"]
        path = f"/ws/terminal/{tid}"
        status, _, body, _ = await ws_handshake(bridge, path, bearer=False)
        assert status == 401 and json.loads(body)["error"]["code"] == "auth.unauthorized"
        status, _, body, _ = await ws_handshake(bridge, path, {"Origin": "http://evil.example"})
        assert status == 403 and json.loads(body)["error"]["code"] == "auth.origin_forbidden"
        status, _, _, _ = await ws_handshake(bridge, path, {"Host": f"attacker.example:{bridge.port}"})
        assert status == 403
        # With the bearer token and no Origin (a non-browser tool) the upgrade succeeds.
        async with ws_connect(bridge, path) as ws:
            await ws.send_message(b"ok\n")
            with_ok = await ws.get_message()
            assert with_ok


async def test_login_code_sets_a_strict_cookie_that_works_once() -> None:
    async with start_daemon() as daemon, start_bridge(daemon) as bridge:
        out = await trio.run_process(tundra_cmd("bridge", "url", "--json"), env={**daemon.env},
                                     capture_stdout=True, capture_stderr=True)
        data = json.loads(out.stdout)
        url = data["url"]
        assert url.startswith(bridge.url + "/login?code=")
        assert bridge.token not in url  # the long-lived token never goes in a URL
        origin = bridge.url
        async with httpx.AsyncClient(base_url=bridge.url) as browser:
            r = await browser.get(url[len(bridge.url):])
            assert r.status_code == 303 and r.headers["location"] == "/"
            cookie = r.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            name = f"tundra_session_{bridge.port}"
            assert browser.cookies.get(name)
            # The code works once.
            r = await browser.get(url[len(bridge.url):])
            assert r.status_code == 401
            # The cookie authenticates same-origin calls ...
            r = await browser.get("/api/terminals")
            assert r.status_code == 200
            r = await browser.post("/api/terminals", json={"command": ["cat"]}, headers={"Origin": origin})
            assert r.status_code == 201
            tid = r.json()["id"]
            # ... but a state-changing request without an Origin needs the bearer token.
            r = await browser.post("/api/terminals", json={"command": ["cat"]})
            assert r.status_code == 403
            page = await browser.get("/")
            assert page.status_code == 200
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
            cookie_header = {"Cookie": f"{name}={browser.cookies.get(name)}"}
        status, _, _, stream = await ws_handshake(bridge, f"/ws/terminal/{tid}", {**cookie_header, "Origin": origin},
                                                  bearer=False)
        assert status == 101
        await stream.aclose()
        status, _, _, _ = await ws_handshake(bridge, f"/ws/terminal/{tid}", cookie_header, bearer=False)
        assert status == 403  # a cookie without Origin is not a browser: refuse


async def test_non_loopback_bind_needs_allow_remote() -> None:
    async with start_daemon() as daemon:
        with trio.fail_after(30):
            out = await trio.run_process(tundra_cmd("bridge", "--host", "0.0.0.0", "--port", "0"),
                                         env={**daemon.env}, capture_stdout=True, capture_stderr=True, check=False)
        assert out.returncode == 2
        assert b"refusing to listen on non-loopback address 0.0.0.0 without --allow-remote" in out.stderr
        async with start_bridge(daemon, "--host", "0.0.0.0", "--allow-remote") as bridge:
            assert "non-loopback" in bridge.log_text()
            async with bridge.http() as http:
                assert (await http.get("/api/terminals")).status_code == 200


async def test_tls_serves_https_and_wss_with_a_secure_cookie() -> None:
    import shutil as _shutil
    import ssl

    from tests.support import need, short_tempdir
    from tundra.bridge.auth import make_login_code

    openssl = _shutil.which("openssl")
    need(openssl, "openssl not installed (needed to make a test certificate)")
    assert openssl is not None
    certs = short_tempdir("tls")
    await trio.run_process(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem")],
        capture_stdout=True, capture_stderr=True,
    )
    config = f'[bridge]\ntls_cert = "{certs / "cert.pem"}"\ntls_key = "{certs / "key.pem"}"\n'
    async with start_daemon(config=config) as daemon, start_bridge(daemon) as bridge:
        assert bridge.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(certs / "cert.pem"))
        async with httpx.AsyncClient(base_url=bridge.url, verify=ctx) as http:
            r = await http.get("/api/health")
            assert r.status_code == 200
            r = await http.get(f"/login?code={make_login_code(bridge.token)}")
            assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]
            r = await http.post("/api/terminals", json={"command": ["cat"]}, headers=bridge.auth)
            tid = r.json()["id"]
        import trio_websocket

        async with trio_websocket.open_websocket_url(
            f"wss://127.0.0.1:{bridge.port}/ws/terminal/{tid}", ssl_context=ctx,
            extra_headers=[(b"Authorization", f"Bearer {bridge.token}".encode())], message_queue_size=64,
            disconnect_timeout=2,
        ) as ws:
            await ws.send_message(b"tls\n")
            data = b""
            with trio.fail_after(10):
                while b"tls" not in data:
                    msg = await ws.get_message()
                    if isinstance(msg, bytes):
                        data += msg
            await ws._stream.aclose()
    _shutil.rmtree(certs, ignore_errors=True)
