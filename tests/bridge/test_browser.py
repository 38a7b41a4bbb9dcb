"""A real browser: headless Chromium opens the page, creates a terminal, types `echo hi`.

Chromium is driven over the DevTools protocol (its --remote-debugging-port) with
trio-websocket. A screenshot is saved to tests/artifacts/bridge-browser.png.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
from typing import Any

import httpx
import pytest
import trio
import trio_websocket

from tests.bridge.bridgeproc import start_bridge
from tests.support import REPO, need, short_tempdir, start_daemon, wait_for
from tundra.bridge.auth import make_login_code
from tundra.bridge.web_assets import WebAssets

ARTIFACTS = REPO / "tests" / "artifacts"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Cdp:
    """Just enough of the Chrome DevTools protocol: commands with ids, events kept in a list."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []

    async def reader(self) -> None:
        while True:
            msg = json.loads(await self.ws.get_message())
            if "id" in msg and msg["id"] in self.waiting:
                await self.waiting.pop(msg["id"]).send(msg)
            else:
                self.events.append(msg)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        send, recv = trio.open_memory_channel[dict[str, Any]](1)
        self.waiting[mid] = send
        await self.ws.send_message(json.dumps({"id": mid, "method": method, "params": params}))
        with trio.fail_after(20):
            msg = await recv.receive()
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return dict(msg.get("result", {}))

    async def js(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")


SCREEN_TEXT = """(() => {
  const t = window.tundra && window.tundra.terminal;
  if (!t) return null;
  const b = t.buffer.active, out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
  return out.join("\\n");
})()"""


@pytest.mark.browser
async def test_browser_types_echo_hi_and_sees_hi() -> None:
    chromium = _chromium()
    need(chromium, "headless chromium not installed (apt-get install chromium)")
    need(WebAssets().built, "web assets not built (npm ci && npm run build)")
    assert chromium is not None
    async with start_daemon() as daemon, contextlib.AsyncExitStack() as outer:
        bridges = contextlib.AsyncExitStack()
        outer.push_async_callback(lambda: bridges.aclose())
        bridge = await bridges.enter_async_context(start_bridge(daemon))
        profile = short_tempdir("chr")
        proc = await trio.lowlevel.open_process(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1100,700", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        try:
            port_file = profile / "DevToolsActivePort"
            await wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout=30,
                           message="chromium DevTools port")
            devtools_port = int(port_file.read_text().split()[0])
            async with httpx.AsyncClient() as http:
                targets = (await http.get(f"http://127.0.0.1:{devtools_port}/json/list")).json()
            page = next(t for t in targets if t["type"] == "page")
            async with trio_websocket.open_websocket_url(page["webSocketDebuggerUrl"],
                                                         max_message_size=64 * 1024 * 1024) as ws, \
                    trio.open_nursery() as nursery:
                cdp = Cdp(ws)
                nursery.start_soon(cdp.reader)
                await cdp.call("Page.enable")
                await cdp.call("Runtime.enable")
                await cdp.call("Log.enable")
                login = f"{bridge.url}/login?code={make_login_code(bridge.token)}"
                await cdp.call("Page.navigate", url=login)
                await wait_for(lambda: cdp.js("document.readyState === 'complete' && location.pathname === '/' "
                                              "&& !!window.tundra"),
                               timeout=20, message="page and its module loaded after login")
                # The task board: one column per state, fed by /api/tasks.
                await cdp.js("document.querySelector('#tab-tasks').click()")
                await wait_for(lambda: cdp.js("document.querySelectorAll('#task-board .column').length === 8"),
                               timeout=20, message="task board columns")
                await cdp.js("document.querySelector('#tab-terminals').click()")
                await cdp.js("document.querySelector('#new-terminal').click()")
                await wait_for(lambda: cdp.js("!!document.querySelector('.xterm-helper-textarea')"),
                               timeout=20, message="xterm on the page")
                await wait_for(lambda: cdp.js("document.querySelector('#terminal-status').textContent === 'active'"),
                               timeout=20, message="terminal socket active")
                await cdp.js("document.querySelector('.xterm-helper-textarea').focus()")
                await cdp.call("Input.insertText", text="echo hi")
                for kind in ("keyDown", "keyUp"):
                    await cdp.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                                   windowsVirtualKeyCode=13, nativeVirtualKeyCode=13,
                                   **({"text": "\r"} if kind == "keyDown" else {}))

                async def sees_hi() -> bool:
                    text = await cdp.js(SCREEN_TEXT)
                    lines = [ln.rstrip() for ln in (text or "").split("\n")]
                    return "echo hi" in (text or "") and "hi" in lines

                await wait_for(sees_hi, timeout=20, message="`hi` on the xterm screen")
                shot = await cdp.call("Page.captureScreenshot", format="png")
                ARTIFACTS.mkdir(exist_ok=True)
                out = ARTIFACTS / "bridge-browser.png"
                await trio.Path(out).write_bytes(base64.b64decode(shot["data"]))
                assert out.stat().st_size > 1000
                # The strict CSP held: no script or style was refused.
                violations = [e for e in cdp.events if e.get("method") == "Log.entryAdded"
                              and "Content Security Policy" in e["params"]["entry"].get("text", "")]
                assert not violations, violations

                # The bridge restarts (same port, same token): the page reconnects by itself
                # with `since`, so the screen neither loses nor repeats output.
                await bridges.aclose()
                bridges = contextlib.AsyncExitStack()
                bridge = await bridges.enter_async_context(start_bridge(daemon, "--port", str(bridge.port)))
                await wait_for(lambda: cdp.js("window.tundra.connects >= 2 && "
                                              "document.querySelector('#terminal-status').textContent === 'active'"),
                               timeout=20, message="page reconnected to the restarted bridge")
                await cdp.js("document.querySelector('.xterm-helper-textarea').focus()")
                await cdp.call("Input.insertText", text="echo again")
                for kind in ("keyDown", "keyUp"):
                    await cdp.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                                   windowsVirtualKeyCode=13, nativeVirtualKeyCode=13,
                                   **({"text": "\r"} if kind == "keyDown" else {}))

                async def sees_again() -> bool:
                    text = await cdp.js(SCREEN_TEXT)
                    return "again" in [ln.rstrip() for ln in (text or "").split("\n")]

                await wait_for(sees_again, timeout=20, message="`again` after the reconnect")
                lines = [ln.rstrip() for ln in (await cdp.js(SCREEN_TEXT)).split("\n")]
                assert lines.count("hi") == 1 and lines.count("again") == 1, lines
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                proc.terminate()
                with trio.move_on_after(10):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                shutil.rmtree(profile, ignore_errors=True)
