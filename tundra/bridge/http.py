"""HTTP/1.1 plumbing over h11: read one request (head, then a bounded body), write responses.

The bridge reads every request head itself; plain requests are answered here, WebSocket
upgrades are handed to trio-websocket together with the raw bytes already read (see
:class:`PrefixedStream`). Limits: head size (h11), body size (``[bridge] max_body_bytes``,
413), and deadlines for a slow client (408).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import msgspec
import trio

from tundra.bridge.errors import BadRequest, PayloadTooLarge, RequestTimeout
from tundra.errors import TundraError

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "PrefixedStream",
    "RequestReader",
    "json_response",
    "error_response",
    "SECURITY_HEADERS",
    "PAGE_CSP",
    "MAX_HEAD_BYTES",
]

MAX_HEAD_BYTES = 16 * 1024
RECV_BYTES = 65536

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)

# Scripts only from the bridge itself. xterm.js injects <style> elements for its
# dimensions and theme, so inline *styles* are allowed; inline *scripts* never are.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; font-src 'self'; manifest-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_json = msgspec.json.Encoder()


@dataclass
class HttpRequest:
    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names; repeated headers joined with ", " (cookies with "; ")."""
    body: bytes = b""
    request_id: str = ""
    remote: str = ""
    route: str = "unmatched"
    """The route pattern (for metrics labels: never the raw path, which has ids)."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            k, sep, v = part.strip().partition("=")
            if sep and k == name:
                return v
        return None

    @property
    def is_websocket(self) -> bool:
        return self.method == "GET" and "websocket" in self.headers.get("upgrade", "").lower()

    def json(self, type_: Any = Any) -> Any:
        """Decode the body as JSON (empty body = ``{}``); 400 on malformed input."""
        if not self.body.strip():
            return msgspec.convert({}, type_) if type_ is not Any else {}
        try:
            return msgspec.json.decode(self.body, type=type_)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"invalid request body: {exc}") from None
        except msgspec.DecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


def json_response(status: int, data: Any, headers: Iterable[tuple[str, str]] = ()) -> HttpResponse:
    return HttpResponse(status, _json.encode(data), list(headers))


def error_response(err: TundraError, status: int | None = None) -> HttpResponse:
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.hint:
        body["hint"] = err.hint
    if err.details:
        body["details"] = err.details
    return json_response(status or err.http_status, {"error": body})


class PrefixedStream(trio.abc.Stream):
    """A stream that first replays bytes already read from ``inner`` (the request head)."""

    def __init__(self, prefix: bytes, inner: trio.abc.Stream) -> None:
        self._prefix = bytearray(prefix)
        self.inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            n = len(self._prefix) if max_bytes is None else min(max_bytes, len(self._prefix))
            out = bytes(self._prefix[:n])
            del self._prefix[:n]
            await trio.lowlevel.checkpoint()
            return out
        return bytes(await self.inner.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _parse_target(target: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(target)
    path = unquote(parts.path) or "/"
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return path, query


class RequestReader:
    """Reads successive requests from one connection with h11 (keep-alive aware)."""

    def __init__(self, stream: trio.abc.Stream, *, max_body: int, remote: str = "") -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.max_body = max_body
        self.remote = remote
        self.raw = bytearray()
        """Every byte received since the current request began (replayed on WS upgrade)."""

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = bytes(await self.stream.receive_some(RECV_BYTES))
            self.raw += data
            self.conn.receive_data(data)

    async def read_head(self, timeout: float) -> HttpRequest | None:
        """The next request head, or None when the peer closed/idled out between requests."""
        self.raw = bytearray(self.conn.trailing_data[0])
        with trio.move_on_after(timeout) as cs:
            event = await self._next_event()
        if cs.cancelled_caught:
            if self.raw:
                raise RequestTimeout(f"request head not received within {timeout:g}s")
            return None
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise BadRequest(f"unexpected HTTP event {type(event).__name__}")
        headers: dict[str, str] = {}
        for name, value in event.headers:
            k = name.decode("latin-1").lower()
            v = value.decode("latin-1")
            if k in headers:
                headers[k] = headers[k] + ("; " if k == "cookie" else ", ") + v
            else:
                headers[k] = v
        target = event.target.decode("latin-1")
        path, query = _parse_target(target)
        rid = headers.get("x-request-id", "")
        if not rid or len(rid) > 128 or not rid.isprintable():
            rid = secrets.token_hex(8)
        return HttpRequest(
            method=event.method.decode("ascii"),
            target=target,
            path=path,
            query=query,
            headers=headers,
            request_id=rid,
            remote=self.remote,
        )

    async def read_body(self, req: HttpRequest, timeout: float) -> None:
        """Read the body into ``req.body``; 413 past ``max_body``, 408 past ``timeout``."""
        length = req.headers.get("content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                raise BadRequest("invalid Content-Length") from None
            if n > self.max_body:
                raise PayloadTooLarge(f"request body too large ({n} bytes, limit {self.max_body})")
        body = bytearray()
        with trio.move_on_after(timeout) as cs:
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > self.max_body:
                        raise PayloadTooLarge(f"request body too large (limit {self.max_body} bytes)")
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise BadRequest("connection closed before the request body ended")
                elif event is h11.PAUSED:
                    break
        if cs.cancelled_caught:
            raise RequestTimeout(f"request body not received within {timeout:g}s")
        req.body = bytes(body)

    async def send_response(self, req: HttpRequest | None, resp: HttpResponse, *, close: bool = False) -> None:
        headers: list[tuple[str, str]] = list(SECURITY_HEADERS)
        if resp.body or resp.status not in (204, 304):
            headers.append(("content-type", resp.content_type))
        headers.append(("content-length", str(len(resp.body))))
        if req is not None and req.request_id:
            headers.append(("x-request-id", req.request_id))
        headers.extend(resp.headers)
        if close:
            headers.append(("connection", "close"))
        hdrs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        try:
            reason = HTTPStatus(resp.status).phrase.encode()
        except ValueError:
            reason = b""
        data = self.conn.send(h11.Response(status_code=resp.status, headers=hdrs, reason=reason))
        if req is not None and req.method == "HEAD":
            body = b""
        else:
            body = self.conn.send(h11.Data(data=resp.body)) if resp.body else b""
        end = self.conn.send(h11.EndOfMessage())
        await self.stream.send_all((data or b"") + (body or b"") + (end or b""))

    def can_continue(self) -> bool:
        """Whether the connection may serve another request (keep-alive)."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            return True
        return False
