"""Providers against the fake server: wire formats, usage, and every error mapping."""

from __future__ import annotations

import socket
import time
from email.utils import formatdate

import httpx
import pytest

from tests.fakes.fake_llm import FakeLLM
from tests.intelligence.conftest import profile
from tundra.intelligence.api import ChatMessage
from tundra.intelligence.errors import (
    ApiError,
    HttpError,
    ParseError,
    QuotaExhausted,
    RateLimited,
    Timeout,
)
from tundra.intelligence.providers import Completion, LlmRequest, ToolSpec, make_provider
from tundra.intelligence.providers.base import parse_duration, retry_after_from_headers

REQ = LlmRequest(messages=[ChatMessage(role="user", content="Say hi")], model="claude-sonnet-4-20250514",
                 max_tokens=64, system="be brief")

KINDS = ["anthropic", "openai"]


async def _call(kind: str, fake: FakeLLM, client: httpx.AsyncClient, *, stream: bool,
                timeout: float = 5.0, req: LlmRequest = REQ) -> tuple[Completion, list[str]]:
    p = make_provider(profile("p", kind, fake.url, timeout_secs=timeout), client)
    deltas: list[str] = []

    async def on_delta(t: str) -> None:
        deltas.append(t)

    if stream:
        return await p.stream(req, "sk-test", on_delta), deltas
    return await p.complete(req, "sk-test"), deltas


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
async def test_reply_text_and_usage(kind: str, stream: bool, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"text": "Hi there friend", "usage": {"input_tokens": 11, "output_tokens": 3}})
    comp, deltas = await _call(kind, fake, client, stream=stream)
    assert comp.text == "Hi there friend"
    assert (comp.usage.input_tokens, comp.usage.output_tokens) == (11, 3)
    assert comp.stop_reason in ("end_turn", "stop")
    if stream:
        assert deltas == ["Hi", " there", " friend"]
    req = fake.requests[-1]
    if kind == "anthropic":
        assert req["path"] == "/v1/messages"
        assert req["headers"]["x-api-key"] == "sk-test"
        assert req["headers"]["anthropic-version"] == "2023-06-01"
        assert req["body"]["system"] == "be brief"
    else:
        assert req["path"] == "/v1/chat/completions"
        assert req["headers"]["authorization"] == "Bearer sk-test"
        assert req["body"]["messages"][0] == {"role": "system", "content": "be brief"}
        if stream:
            assert req["body"]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls_are_parsed(kind: str, stream: bool, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"tool_use": {"name": "Write", "input": {"file_path": "/tmp/a.txt", "content": "x"}}})
    req = LlmRequest(messages=REQ.messages, model="m", tools=[ToolSpec(name="Write")])
    comp, _ = await _call(kind, fake, client, stream=stream, req=req)
    assert [(c.name, c.input) for c in comp.tool_calls] == [("Write", {"file_path": "/tmp/a.txt", "content": "x"})]
    assert comp.stop_reason in ("tool_use", "tool_calls")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "2"}, 2.0), ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5)],
)
async def test_429_is_rate_limited_with_retry_after(
    kind: str, stream: bool, headers: dict[str, str], expected: float, fake: FakeLLM, client: httpx.AsyncClient
) -> None:
    fake.push({"status": 429, "headers": headers})
    with pytest.raises(RateLimited) as ei:
        await _call(kind, fake, client, stream=stream)
    assert ei.value.retry_after == pytest.approx(expected)
    assert str(ei.value) == f"rate limited: retry after {expected:g}s"


@pytest.mark.parametrize("stream", [False, True])
async def test_quota_exhaustion_is_distinct(stream: bool, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"status": 429, "error": {"type": "insufficient_quota", "code": "insufficient_quota",
                                        "message": "You exceeded your current quota"}})
    with pytest.raises(QuotaExhausted) as ei:
        await _call("openai", fake, client, stream=stream)
    assert str(ei.value) == "API error (status 429): You exceeded your current quota"
    fake.push({"status": 429, "error": {"type": "rate_limit_error", "message": "spend limit reached",
                                        "error_code": "enforced_spend_limit_reached"}})
    with pytest.raises(QuotaExhausted):
        await _call("anthropic", fake, client, stream=stream)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [400, 401, 500, 502, 503, 529])
async def test_error_statuses_become_api_errors(kind: str, status: int, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"status": status, "error": {"message": f"boom {status}"}})
    with pytest.raises(ApiError) as ei:
        await _call(kind, fake, client, stream=False)
    assert ei.value.status == status
    assert str(ei.value) == f"API error (status {status}): boom {status}"
    assert ei.value.server_side is (status >= 500)


@pytest.mark.parametrize("kind", KINDS)
async def test_html_page_on_200_is_a_parse_error(kind: str, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"fault": "html", "status": 200})
    with pytest.raises(ParseError) as ei:
        await _call(kind, fake, client, stream=False)
    assert str(ei.value).startswith("parse error: expected JSON, got an HTML page")


@pytest.mark.parametrize("stream", [False, True])
async def test_html_page_on_502_keeps_the_status(stream: bool, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"fault": "html", "status": 502})
    with pytest.raises(ApiError) as ei:
        await _call("anthropic", fake, client, stream=stream)
    assert str(ei.value) == "API error (status 502): 502 Bad Gateway"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_json_is_a_parse_error(kind: str, stream: bool, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"fault": "malformed_json"})
    with pytest.raises(ParseError):
        await _call(kind, fake, client, stream=stream)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["cut_stream", "truncated_stream"])
async def test_stream_cut_mid_event_is_a_parse_error(kind: str, fault: str, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"fault": fault, "text": "one two three four", "after": 2})
    with pytest.raises(ParseError) as ei:
        await _call(kind, fake, client, stream=True)
    assert "stream cut mid-event" in str(ei.value)


async def test_anthropic_error_event_after_200_maps_like_http(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"fault": "error_event", "after": 1, "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(ApiError) as ei:
        await _call("anthropic", fake, client, stream=True)
    assert ei.value.status == 529
    assert str(ei.value) == "API error (status 529): Overloaded"
    fake.push({"fault": "error_event", "after": 0, "error": {"type": "rate_limit_error", "message": "slow down"}})
    with pytest.raises(RateLimited):
        await _call("anthropic", fake, client, stream=True)


async def test_openai_error_chunk_after_200_maps_like_http(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"fault": "error_event", "after": 1, "error": {"code": 502, "message": "upstream died"}})
    with pytest.raises(ApiError) as ei:
        await _call("openai", fake, client, stream=True)
    assert ei.value.status == 502


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
async def test_hang_is_a_timeout(kind: str, stream: bool, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"fault": "hang"})
    t0 = time.monotonic()
    with pytest.raises(Timeout) as ei:
        await _call(kind, fake, client, stream=stream, timeout=0.3)
    assert str(ei.value) == "request timed out"
    assert time.monotonic() - t0 < 3


async def test_stalled_stream_is_a_timeout(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"text": "a b c", "first_token_delay": 2})
    with pytest.raises(Timeout):
        await _call("anthropic", fake, client, stream=True, timeout=0.3)


async def test_connection_refused_is_http_error(client: httpx.AsyncClient) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = make_provider(profile("p", "anthropic", f"http://127.0.0.1:{port}"), client)
    with pytest.raises(HttpError) as ei:
        await p.complete(REQ, "k")
    assert str(ei.value).startswith("HTTP error: ConnectError")


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_closed_without_response_is_http_error(stream: bool, fake: FakeLLM, client: httpx.AsyncClient) -> None:
    fake.push({"fault": "close"})
    with pytest.raises(HttpError):
        await _call("openai", fake, client, stream=stream)


async def test_openai_base_url_with_v1_suffix(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    p = make_provider(profile("p", "local", fake.url + "/v1"), client)
    comp = await p.complete(REQ, None)
    assert comp.text
    assert "authorization" not in fake.requests[-1]["headers"]


def test_retry_after_header_forms() -> None:
    now = 1_700_000_000.0
    assert retry_after_from_headers({"retry-after": formatdate(now + 30, usegmt=True)}, now) == pytest.approx(30, abs=1)
    assert retry_after_from_headers({"anthropic-ratelimit-requests-reset": "2023-11-14T22:13:40Z"}, now) == pytest.approx(20)
    assert retry_after_from_headers({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, now) == 360
    assert retry_after_from_headers({}, now) is None
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("soon") is None
