"""`tundra up` runs daemon + bridge in the foreground; Ctrl-C (SIGINT) stops both."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import httpx
import trio

from tests.support import daemon_env, short_tempdir, tundra_cmd, wait_for


async def test_up_starts_daemon_and_bridge_and_ctrl_c_stops_both() -> None:
    base = short_tempdir("up")
    home = base / "home"
    home.mkdir()
    env = daemon_env(home, base / "d.sock")
    proc = await trio.lowlevel.open_process(
        tundra_cmd("up", "--port", "0"), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        out = b""
        with trio.fail_after(30):
            while b"/login?code=" not in out or not out.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, "tundra up exited early"
                out += chunk
        url = next(w for w in out.decode().split() if "/login?code=" in w)
        base_url = url.split("/login")[0]
        async with httpx.AsyncClient(base_url=base_url) as http:
            r = await http.get("/api/health")
            assert r.json()["daemon"]["state"] in ("up", "connecting")
            r = await http.get(url[len(base_url):])
            assert r.status_code == 303  # the printed link logs the browser in
        lock = json.loads((home / "daemon.lock").read_text())
        daemon_pid = int(lock["pid"])
        os.kill(daemon_pid, 0)
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            code = await proc.wait()
        assert code == 0

        def daemon_gone() -> bool:
            try:
                os.kill(daemon_pid, 0)
            except ProcessLookupError:
                return True
            return False

        await wait_for(daemon_gone, timeout=15, message="the daemon to exit")
        assert not (base / "d.sock").exists()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        shutil.rmtree(base, ignore_errors=True)
