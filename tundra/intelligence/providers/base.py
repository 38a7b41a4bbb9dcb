"""What every provider shares: request/response types, the HTTP call with error translation,
vendor error-body parsing and Retry-After extraction.

httpx errors are translated here, once: timeouts -> :class:`Timeout`, transport errors ->
:class:`HttpError`, non-2xx -> :class:`ApiError` / :class:`RateLimited` / :class:`QuotaExhausted`,
a body that is not the promised format -> :class:`ParseError`.
"""

from __future__ import annotations

import email.utils
import html
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import httpx
import msgspec
import trio

from tundra.intelligence.api import ChatMessage, Usage
from tundra.intelligence.errors import (
    ApiError,
    HttpError,
    LlmError,
    ParseError,
    QuotaExhausted,
    RateLimited,
    Timeout,
)
from tundra.intelligence.profiles import ApiProfile
from tundra.intelligence.providers.sse import SseDecoder, SseEvent

__all__ = [
    "ToolSpec",
    "ToolCall",
    "LlmRequest",
    "Completion",
    "DeltaCallback",
    "Provider",
    "retry_after_from_headers",
    "error_from_response",
    "parse_duration",
]

log = logging.getLogger("tundra.intelligence.providers")

DeltaCallback = Callable[[str], Awaitable[None]]

_QUOTA_CODES = {"insufficient_quota", "enforced_spend_limit_reached", "billing_hard_limit_reached"}


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    input_schema: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    input: dict[str, Any]


class LlmRequest(msgspec.Struct, frozen=True, kw_only=True):
    messages: list[ChatMessage]
    model: str
    max_tokens: int = 1024
    system: str | None = None
    temperature: float | None = None
    tools: list[ToolSpec] | None = None
    json_mode: bool = False

    def needs(self) -> set[str]:
        """Capabilities a profile must have to serve this request."""
        out: set[str] = set()
        if self.tools:
            out.add("tools")
        if self.json_mode:
            out.add("json_mode")
        return out

    def input_estimate(self) -> int:
        """A cheap upper-ish estimate of input tokens (~4 chars/token) for TPM reservations."""
        chars = sum(len(m.content) for m in self.messages) + len(self.system or "")
        return chars // 4 + 8


class Completion(msgspec.Struct, kw_only=True):
    text: str
    model: str
    stop_reason: str | None
    usage: Usage
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)


# -- headers -----------------------------------------------------------------------------------
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations: ``6m0s``, ``1s``, ``20ms``, ``1h2m3.5s`` -> seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    pos = 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        pos = m.end()
        v = float(m.group(1))
        total += v * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
    return total if pos == len(text) and pos > 0 else None


def _until(stamp: str, now: float) -> float | None:
    try:
        dt = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, dt.timestamp() - now)


def retry_after_from_headers(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, ``retry-after`` (seconds or an
    HTTP date), else the latest reset among Anthropic/OpenAI rate-limit headers."""
    now = time.time() if now is None else now
    raw = headers.get("retry-after-ms")
    if raw:
        try:
            return max(0.0, float(raw) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - now)
            except (TypeError, ValueError):
                pass
    resets: list[float] = []
    for name in ("anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset",
                 "anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-output-tokens-reset"):
        v = headers.get(name)
        if v:
            s = _until(v, now)
            if s is not None:
                resets.append(s)
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        v = headers.get(name)
        if v:
            d = parse_duration(v)
            if d is not None:
                resets.append(d)
    return max(resets) if resets else None


# -- error bodies ------------------------------------------------------------------------------
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")


def _looks_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def describe_html(body: bytes) -> str:
    m = _TITLE.search(body)
    text = m.group(1).decode("utf-8", "replace") if m else body[:300].decode("utf-8", "replace")
    text = html.unescape(_TAGS.sub(" ", text))
    return " ".join(text.split())[:200] or "HTML page"


def parse_vendor_error(body: bytes) -> tuple[str | None, str | None, bool]:
    """(message, error type/code, is_quota) from Anthropic/OpenAI/OpenRouter error bodies."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None, None, False
    if not isinstance(data, dict):
        return None, None, False
    err = data.get("error")
    if isinstance(err, str):
        return err, None, False
    if not isinstance(err, dict):
        msg = data.get("message")
        return (msg if isinstance(msg, str) else None), None, False
    message = err.get("message") if isinstance(err.get("message"), str) else None
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    code = err.get("code")
    raw_details = err.get("details")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    markers = {etype, code if isinstance(code, str) else None, details.get("error_code")}
    quota = bool(markers & _QUOTA_CODES)
    return message, (etype or (code if isinstance(code, str) else None)), quota


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> LlmError:
    """The typed error for a non-2xx answer."""
    message, etype, quota = parse_vendor_error(body)
    if quota or status == 402:
        return QuotaExhausted(status, message or "quota exhausted", error_type=etype or "quota")
    if status == 429:
        return RateLimited(retry_after_from_headers(headers))
    if message is None:
        if _looks_html(body):
            message = describe_html(body)
        else:
            text = body[:200].decode("utf-8", "replace").strip()
            message = text or httpx.codes.get_reason_phrase(status) or "error"
    return ApiError(status, message, error_type=etype)


_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def error_from_stream_event(payload: Any) -> LlmError:
    """An error delivered inside a 200 stream, mapped like the equivalent HTTP error."""
    err = payload.get("error") if isinstance(payload, dict) else None
    status = 500
    if isinstance(err, dict):
        code = err.get("code")
        etype = err.get("type")
        if isinstance(code, int) and 400 <= code <= 599:
            status = code
        elif isinstance(etype, str) and etype in _STREAM_ERROR_STATUS:
            status = _STREAM_ERROR_STATUS[etype]
    body = msgspec.json.encode(payload)
    return error_from_response(status, {}, body)


def describe_transport_error(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class Provider(ABC):
    """One profile's client. Stateless apart from the profile; safe for concurrent calls."""

    def __init__(self, profile: ApiProfile, client: httpx.AsyncClient) -> None:
        self.profile = profile
        self.client = client
        t = profile.timeout_secs
        # read = longest silence allowed between bytes (a hang shows up as a read timeout).
        self.timeout = httpx.Timeout(t, connect=min(5.0, t))

    @abstractmethod
    async def complete(self, req: LlmRequest, api_key: str | None) -> Completion:
        """One non-streaming call."""

    @abstractmethod
    async def stream(
        self, req: LlmRequest, api_key: str | None, on_delta: DeltaCallback
    ) -> Completion:
        """One streaming call: ``on_delta(text)`` per content token; returns the whole reply."""

    async def post_json(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
        try:
            resp = await self.client.post(
                url, content=msgspec.json.encode(body), headers=headers, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            raise Timeout(type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise HttpError(describe_transport_error(exc)) from None
        if not 200 <= resp.status_code < 300:
            raise error_from_response(resp.status_code, resp.headers, resp.content)
        body_bytes = resp.content
        if _looks_html(body_bytes):
            raise ParseError(f"expected JSON, got an HTML page: {describe_html(body_bytes)}")
        try:
            return msgspec.json.decode(body_bytes)
        except msgspec.DecodeError as exc:
            raise ParseError(f"invalid JSON body: {exc}") from None

    async def stream_events(
        self,
        url: str,
        headers: dict[str, str],
        body: dict[str, Any],
        handle: Callable[[SseEvent], Awaitable[bool]],
    ) -> bool:
        """POST and feed each SSE event to ``handle`` (which returns True on the terminal event).

        Returns whether the terminal event arrived. A stream that ends or breaks in the middle
        of an event raises :class:`ParseError`; timeouts raise :class:`Timeout`; errors raised
        by ``handle`` propagate. httpx's body iterators are nested async generators that must
        not be abandoned half-way, so we never ``break`` out of them: we stop by cancelling a
        scope around the loop, which unwinds every layer.
        """
        request = self.client.build_request(
            "POST", url, content=msgspec.json.encode(body), headers=headers, timeout=self.timeout
        )
        try:
            resp = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise Timeout(type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise HttpError(describe_transport_error(exc)) from None
        try:
            if not 200 <= resp.status_code < 300:
                try:
                    data = await resp.aread()
                except httpx.TimeoutException as exc:
                    raise Timeout(type(exc).__name__) from None
                except httpx.HTTPError as exc:
                    raise HttpError(describe_transport_error(exc)) from None
                raise error_from_response(resp.status_code, resp.headers, data)
            ctype = resp.headers.get("content-type", "")
            if "text/event-stream" not in ctype:
                try:
                    data = await resp.aread()
                except httpx.HTTPError:
                    data = b""
                if _looks_html(data):
                    raise ParseError(f"expected an event stream, got an HTML page: {describe_html(data)}")
                raise ParseError(f"expected text/event-stream, got {ctype or 'no content-type'}")
            return await self._pump(resp, handle)
        finally:
            await resp.aclose()

    @staticmethod
    async def _pump(resp: httpx.Response, handle: Callable[[SseEvent], Awaitable[bool]]) -> bool:
        decoder = SseDecoder()
        finished = False
        failure: BaseException | None = None
        try:
            with trio.CancelScope() as scope:
                async for chunk in resp.aiter_bytes():
                    if finished or failure is not None:
                        continue  # draining until the scope's deadline or EOF
                    for ev in decoder.feed(chunk):
                        try:
                            done = await handle(ev)
                        except BaseException as exc:  # noqa: BLE001 -- re-raised below
                            failure = exc
                            scope.cancel()
                            break
                        if done:
                            finished = True
                            # Let the body end naturally (keeps the connection reusable).
                            scope.deadline = trio.current_time() + 0.5
                            break
        except httpx.TimeoutException as exc:
            if failure is None and not finished:
                raise Timeout(f"stream stalled: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            if failure is None and not finished:
                raise ParseError(f"stream cut mid-event ({describe_transport_error(exc)})") from None
        if failure is not None:
            raise failure
        if not finished and decoder.pending():
            # Bytes of an event without its terminating blank line: the stream was cut.
            raise ParseError("stream cut mid-event (unterminated event at end of stream)")
        return finished


def decode_event_json(ev: SseEvent) -> Any:
    try:
        return msgspec.json.decode(ev.data)
    except msgspec.DecodeError as exc:
        raise ParseError(f"malformed JSON in {ev.event!r} event: {exc}") from None
