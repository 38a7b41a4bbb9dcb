"""A fake LLM provider: a real local HTTP server speaking the Anthropic Messages API
(``/v1/messages``) and OpenAI Chat Completions (``/v1/chat/completions``), streaming and not,
with scriptable faults.

In tests::

    with FakeLLM() as fake:
        fake.push({"status": 429, "headers": {"retry-after": "2"}})
        fake.push({"text": "hello"})
        ... point a profile's base_url at fake.url ...

Standalone (e.g. to point the Claude Code CLI at it with ANTHROPIC_BASE_URL)::

    python tests/fakes/fake_llm.py --port 8765 --script script.json

A script file is a JSON list of steps, or ``{"steps": [...], "default": {...}}``. Each request
takes the first unused step whose ``match`` fits (else the default step). Step keys:

* ``match``: ``{"api": "anthropic"|"openai", "model": substr, "stream": bool, "has_tools": bool,
  "last_user_contains": substr, "has_tool_result": bool}``
* ``repeat``: how many requests the step serves (default 1; -1 = forever)
* ``status`` (default 200), ``headers`` (extra response headers), ``delay`` (seconds before the
  response head), ``first_token_delay``, ``chunk_delay``
* ``text`` (reply), ``chunks`` (explicit stream pieces), ``stop_reason``, ``usage``
  ``{"input_tokens", "output_tokens"}``, ``model``
* ``tool_use``: ``{"name": "Write", "input": {...}, "id"?}`` (or a list of them) -> Anthropic
  ``tool_use`` blocks / OpenAI ``tool_calls``
* ``error``: ``{"type", "message", "code"?, "error_code"?}`` -> the vendor error body for
  ``status`` (``error_code`` lands in Anthropic ``error.details.error_code``)
* ``fault``: ``hang`` (no bytes at all) | ``html`` (HTML error page with ``status``) |
  ``malformed_json`` | ``cut_stream`` (connection dropped mid-event) | ``truncated_stream``
  (clean end of body mid-event) | ``error_event`` (an error event after ``after`` chunks of a
  200 stream; ``error`` gives its type) | ``close`` (connection closed before any response)

Control endpoints: ``POST /_fake/steps`` (append a list of steps), ``POST /_fake/reset``,
``GET /_fake/requests`` (recorded requests).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["FakeLLM"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "api_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
    404: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
    502: "server_error", 503: "server_error",
}
_REASONS = {529: "Overloaded"}


def _words(text: str) -> list[str]:
    out: list[str] = []
    for i, w in enumerate(text.split(" ")):
        out.append(w if i == 0 else " " + w)
    return [w for w in out if w] or [text]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _Script:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps: list[dict[str, Any]] = []
        self.default: dict[str, Any] = {"text": "Hello from the fake provider."}
        self.requests: list[dict[str, Any]] = []

    def take(self, api: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            for step in self.steps:
                if step.get("_left", 1) == 0 or not _matches(step.get("match") or {}, api, body):
                    continue
                left = step.get("_left", step.get("repeat", 1))
                if left > 0:
                    step["_left"] = left - 1
                return step
            return self.default


def _last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            return " ".join(str(b.get("text", "")) for b in c if isinstance(b, dict))
    return ""


def _has_tool_result(body: dict[str, Any]) -> bool:
    for m in body.get("messages") or []:
        if m.get("role") == "tool":
            return True
        c = m.get("content")
        if isinstance(c, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in c):
            return True
    return False


def _matches(match: dict[str, Any], api: str, body: dict[str, Any]) -> bool:
    if "api" in match and match["api"] != api:
        return False
    if "model" in match and match["model"] not in str(body.get("model", "")):
        return False
    if "stream" in match and bool(match["stream"]) != bool(body.get("stream")):
        return False
    if "has_tools" in match and bool(match["has_tools"]) != bool(body.get("tools")):
        return False
    if "has_tool_result" in match and bool(match["has_tool_result"]) != _has_tool_result(body):
        return False
    return not ("last_user_contains" in match and match["last_user_contains"] not in _last_user_text(body))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out in separate writes; without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to every response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write("fake_llm: " + (format % args) + "\n")

    # -- plumbing ------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status, _REASONS.get(status))
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _sleep(self, secs: float) -> bool:
        """Sleep unless the server stops; False when it stopped."""
        return not self.server.stopping.wait(secs) if secs > 0 else True

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routes --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path.startswith("/_fake/requests"):
            with self.server.script.lock:
                self._json(200, list(self.server.script.requests))
        else:
            self._json(200, {"ok": True})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        raw = self._read_body()
        path = self.path.split("?", 1)[0]
        if path == "/_fake/steps":
            steps = json.loads(raw or b"[]")
            with self.server.script.lock:
                self.server.script.steps.extend(steps if isinstance(steps, list) else [steps])
            self._json(200, {"ok": True})
            return
        if path == "/_fake/reset":
            with self.server.script.lock:
                self.server.script.steps.clear()
                self.server.script.requests.clear()
            self._json(200, {"ok": True})
            return
        if path.endswith("/messages/count_tokens"):
            body = json.loads(raw or b"{}")
            self._json(200, {"input_tokens": _tokens(json.dumps(body.get("messages", [])))})
            return
        if path.endswith("/messages"):
            api = "anthropic"
        elif path.endswith("/chat/completions"):
            api = "openai"
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found_error"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(api, {"status": 400, "error": {"message": "body is not JSON"}})
            return
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        step = self.server.script.take(api, body)
        with self.server.script.lock:
            self.server.script.requests.append(
                {"api": api, "path": self.path, "headers": hdrs, "body": body,
                 "step": {k: v for k, v in step.items() if not k.startswith("_")}})
        if not self._sleep(float(step.get("delay", 0))):
            return
        fault = step.get("fault")
        if fault == "hang":
            self.server.stopping.wait(float(step.get("hang_secs", 3600)))
            self._drop()
            return
        if fault == "close":
            self._drop()
            return
        status = int(step.get("status", 200))
        if fault == "html":
            page = (f"<!DOCTYPE html><html><head><title>{status} Bad Gateway</title></head>"
                    f"<body><h1>{status} Bad Gateway</h1><p>cloudflare</p></body></html>").encode()
            self._send(status, page, "text/html; charset=utf-8", step.get("headers"))
            return
        if status >= 400:
            self._error(api, step)
            return
        if fault == "malformed_json":
            if body.get("stream"):
                self._stream_head(step)
                self._chunk(b'event: message_start\ndata: {"type": "message_start", "mess\n\n'
                            if api == "anthropic" else b'data: {"id": "x", "choices": [\n\n')
                self._chunk(b"")
            else:
                self._send(200, b'{"id": "msg_1", "content": [', headers=step.get("headers"))
            return
        if body.get("stream"):
            if api == "anthropic":
                self._anthropic_stream(body, step)
            else:
                self._openai_stream(body, step)
        elif api == "anthropic":
            self._json(200, self._anthropic_message(body, step), step.get("headers"))
        else:
            self._json(200, self._openai_completion(body, step), step.get("headers"))

    # -- errors --------------------------------------------------------------------------------
    def _error(self, api: str, step: dict[str, Any]) -> None:
        status = int(step.get("status", 400))
        err = dict(step.get("error") or {})
        if api == "anthropic":
            e: dict[str, Any] = {"type": err.get("type") or _ANTHROPIC_TYPES.get(status, "api_error"),
                                 "message": err.get("message") or f"fake error {status}"}
            if err.get("error_code"):
                e["details"] = {"error_code": err["error_code"]}
            obj: dict[str, Any] = {"type": "error", "error": e}
        else:
            obj = {"error": {"message": err.get("message") or f"fake error {status}",
                             "type": err.get("type") or _OPENAI_TYPES.get(status, "server_error"),
                             "param": None, "code": err.get("code")}}
        headers = {"x-should-retry": "false"} if status < 500 and status != 429 else {}
        headers.update(step.get("headers") or {})
        self._json(status, obj, headers)

    # -- replies -------------------------------------------------------------------------------
    @staticmethod
    def _tool_uses(step: dict[str, Any]) -> list[dict[str, Any]]:
        t = step.get("tool_use")
        items = t if isinstance(t, list) else ([t] if t else [])
        return [{"id": x.get("id") or f"toolu_{uuid.uuid4().hex[:24]}", "name": x["name"],
                 "input": x.get("input", {})} for x in items]

    @staticmethod
    def _usage(body: dict[str, Any], step: dict[str, Any], text: str) -> tuple[int, int]:
        u = step.get("usage") or {}
        i = u.get("input_tokens", _tokens(json.dumps(body.get("messages", [])) + str(body.get("system", ""))))
        o = u.get("output_tokens", max(1, len(_words(text)) if text else 1))
        return int(i), int(o)

    def _anthropic_message(self, body: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
        text = str(step.get("text", "" if step.get("tool_use") else "Hello from the fake provider."))
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        tools = self._tool_uses(step)
        content += [{"type": "tool_use", **t} for t in tools]
        i, o = self._usage(body, step, text)
        return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                "model": step.get("model") or body.get("model", "fake"), "content": content,
                "stop_reason": step.get("stop_reason") or ("tool_use" if tools else "end_turn"),
                "stop_sequence": None,
                "usage": {"input_tokens": i, "output_tokens": o,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}

    def _openai_completion(self, body: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
        text = str(step.get("text", "" if step.get("tool_use") else "Hello from the fake provider."))
        tools = self._tool_uses(step)
        msg: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if tools:
            msg["tool_calls"] = [{"id": t["id"].replace("toolu_", "call_"), "type": "function",
                                  "function": {"name": t["name"], "arguments": json.dumps(t["input"])}}
                                 for t in tools]
        i, o = self._usage(body, step, text)
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                "created": int(time.time()), "model": step.get("model") or body.get("model", "fake"),
                "choices": [{"index": 0, "message": msg, "logprobs": None,
                             "finish_reason": step.get("stop_reason") or ("tool_calls" if tools else "stop")}],
                "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}}

    def _stream_head(self, step: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for k, v in (step.get("headers") or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.flush()

    def _stream_pieces(self, step: dict[str, Any], default: str) -> list[str]:
        if "chunks" in step:
            return [str(c) for c in step["chunks"]]
        text = str(step.get("text", "" if step.get("tool_use") else default))
        return _words(text) if text else []

    def _emit(self, events: list[bytes], step: dict[str, Any], first_content: int) -> None:
        """Send events one chunk each, applying delays and stream faults."""
        fault = step.get("fault")
        after = int(step.get("after", 1))
        for n, ev in enumerate(events):
            if n == first_content and not self._sleep(float(step.get("first_token_delay", 0))):
                self._drop()
                return
            if fault in ("cut_stream", "truncated_stream") and n == first_content + after:
                self._chunk(ev[: max(1, len(ev) // 2)])
                if fault == "cut_stream":
                    self._drop()
                else:
                    self._chunk(b"")
                return
            if fault == "error_event" and n == first_content + after:
                self._chunk(self._error_event(step))
                self._chunk(b"")
                return
            self._chunk(ev)
            if n >= first_content and not self._sleep(float(step.get("chunk_delay", 0))):
                self._drop()
                return
        self._chunk(b"")

    def _error_event(self, step: dict[str, Any]) -> bytes:
        err = dict(step.get("error") or {})
        if self.api == "anthropic":
            payload = {"type": "error", "error": {"type": err.get("type", "overloaded_error"),
                                                  "message": err.get("message", "Overloaded")}}
            return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"
        payload2 = {"error": {"message": err.get("message", "upstream error"),
                              "type": err.get("type", "server_error"), "code": err.get("code", 502)}}
        return b"data: " + json.dumps(payload2).encode() + b"\n\n"

    def _anthropic_stream(self, body: dict[str, Any], step: dict[str, Any]) -> None:
        self.api = "anthropic"
        pieces = self._stream_pieces(step, "Hello from the fake provider.")
        tools = self._tool_uses(step)
        i, o = self._usage(body, step, "".join(pieces))
        model = step.get("model") or body.get("model", "fake")

        def ev(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        events = [ev("message_start", {"type": "message_start", "message": {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": i, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
            ev("ping", {"type": "ping"})]
        first_content = len(events)
        idx = 0
        if pieces:
            events.append(ev("content_block_start", {"type": "content_block_start", "index": 0,
                                                     "content_block": {"type": "text", "text": ""}}))
            first_content = len(events)
            for p in pieces:
                events.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                         "delta": {"type": "text_delta", "text": p}}))
            events.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
            idx = 1
        for t in tools:
            events.append(ev("content_block_start", {"type": "content_block_start", "index": idx,
                             "content_block": {"type": "tool_use", "id": t["id"], "name": t["name"], "input": {}}}))
            js = json.dumps(t["input"])
            half = len(js) // 2
            for part in (js[:half], js[half:]):
                events.append(ev("content_block_delta", {"type": "content_block_delta", "index": idx,
                                 "delta": {"type": "input_json_delta", "partial_json": part}}))
            events.append(ev("content_block_stop", {"type": "content_block_stop", "index": idx}))
            idx += 1
        stop = step.get("stop_reason") or ("tool_use" if tools else "end_turn")
        events.append(ev("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": stop, "stop_sequence": None},
                                           "usage": {"output_tokens": o}}))
        events.append(ev("message_stop", {"type": "message_stop"}))
        self._stream_head(step)
        self._emit(events, step, first_content)

    def _openai_stream(self, body: dict[str, Any], step: dict[str, Any]) -> None:
        self.api = "openai"
        pieces = self._stream_pieces(step, "Hello from the fake provider.")
        tools = self._tool_uses(step)
        i, o = self._usage(body, step, "".join(pieces))
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model = step.get("model") or body.get("model", "fake")

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
            obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                   "model": model, "choices": choices}
            if usage is not None:
                obj["usage"] = usage
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        events = [b": OPENROUTER PROCESSING\n\n",
                  chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                          "logprobs": None, "finish_reason": None}])]
        first_content = len(events)
        for p in pieces:
            events.append(chunk([{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}]))
        for n, t in enumerate(tools):
            events.append(chunk([{"index": 0, "delta": {"tool_calls": [{"index": n, "id": t["id"].replace("toolu_", "call_"),
                                  "type": "function", "function": {"name": t["name"], "arguments": ""}}]},
                                  "logprobs": None, "finish_reason": None}]))
            events.append(chunk([{"index": 0, "delta": {"tool_calls": [{"index": n, "function": {
                "arguments": json.dumps(t["input"])}}]}, "logprobs": None, "finish_reason": None}]))
        stop = step.get("stop_reason") or ("tool_calls" if tools else "stop")
        events.append(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": stop}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(chunk([], {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}))
        events.append(b"data: [DONE]\n\n")
        self._stream_head(step)
        self._emit(events, step, first_content)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], script: _Script, verbose: bool) -> None:
        super().__init__(addr, _Handler)
        self.script = script
        self.verbose = verbose
        self.stopping = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping pooled or deliberately cut connections is normal here.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeLLM:
    """The fake provider on a background thread. Use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        self.script = _Script()
        self._server = _Server((host, port), self.script, verbose)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-llm", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL (no /v1): what a Tundra profile's ``base_url`` or ANTHROPIC_BASE_URL takes."""
        return f"http://127.0.0.1:{self.port}"

    def push(self, *steps: dict[str, Any]) -> None:
        with self.script.lock:
            self.script.steps.extend(dict(s) for s in steps)

    def set_default(self, step: dict[str, Any]) -> None:
        with self.script.lock:
            self.script.default = dict(step)

    def load(self, data: Any) -> None:
        if isinstance(data, dict):
            if "default" in data:
                self.set_default(data["default"])
            self.push(*data.get("steps", []))
        else:
            self.push(*data)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self.script.lock:
            return list(self.script.requests)

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fake Anthropic/OpenAI provider for tests.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", type=Path, help="JSON steps file (list or {steps, default})")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    fake = FakeLLM(args.host, args.port, verbose=args.verbose)
    if args.script:
        fake.load(json.loads(args.script.read_text()))
    print(f"fake_llm listening on {fake.url}", flush=True)
    try:
        fake._server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.stopping.set()
        fake._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
