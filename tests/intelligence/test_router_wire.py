"""The router over real HTTP against the fake provider (real time, short timeouts)."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.fake_llm import FakeLLM
from tests.intelligence.conftest import harness, make_router, profile
from tundra.intelligence.api import AskParams
from tundra.intelligence.errors import ApiError, MissingApiKey, ParseError
from tundra.intelligence.usage import UsageTracker


def _router(fake: FakeLLM, client: httpx.AsyncClient, usage: UsageTracker | None = None):  # type: ignore[no-untyped-def]
    return make_router([profile("anthropic-primary", "anthropic", fake.url, 0, timeout_secs=2),
                        profile("openai-backup", "openai", fake.url, 1, timeout_secs=2)],
                       client, harness(router={"deadline_secs": 10}), usage=usage)


async def test_429_fails_over_and_is_counted(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    usage = UsageTracker(None)
    r = _router(fake, client, usage)
    fake.push({"match": {"api": "anthropic"}, "status": 429, "headers": {"retry-after-ms": "2500"}})
    res = await r.ask(AskParams(prompt="hi"))
    assert res.profile == "openai-backup"
    assert res.attempts == ["anthropic-primary: rate limited: retry after 2.5s"]
    a = usage.get("anthropic-primary")
    b = usage.get("openai-backup")
    assert a is not None and (a.total_requests, a.total_rate_limits, a.total_errors) == (1, 1, 1)
    assert b is not None and b.successes == 1 and b.total_tokens_out == res.usage.output_tokens
    assert b.estimated_spend_usd > 0  # gpt-4o is priced
    assert [q["api"] for q in fake.requests] == ["anthropic", "openai"]


async def test_529_overloaded_fails_over_but_400_does_not(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    r = _router(fake, client)
    fake.push({"match": {"api": "anthropic"}, "status": 529})
    assert (await r.ask(AskParams(prompt="hi"))).profile == "openai-backup"
    r.reset()
    fake.push({"match": {"api": "anthropic"}, "status": 400, "error": {"message": "max_tokens too large"}})
    with pytest.raises(ApiError) as ei:
        await r.ask(AskParams(prompt="hi"))
    assert str(ei.value) == "API error (status 400): max_tokens too large"
    assert fake.requests[-1]["api"] == "anthropic"


async def test_html_page_is_not_failed_over(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    r = _router(fake, client)
    fake.push({"match": {"api": "anthropic"}, "fault": "html", "status": 200})
    with pytest.raises(ParseError):
        await r.ask(AskParams(prompt="hi"))
    assert all(q["api"] == "anthropic" for q in fake.requests)


async def test_hang_times_out_and_fails_over(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    r = _router(fake, client)
    fake.push({"match": {"api": "anthropic"}, "fault": "hang"})
    res = await r.ask(AskParams(prompt="hi"))
    assert res.profile == "openai-backup"
    assert res.attempts == ["anthropic-primary: request timed out"]


async def test_stream_error_event_before_first_token_fails_over(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    r = _router(fake, client)
    fake.push({"match": {"api": "anthropic"}, "fault": "error_event", "after": 0,
               "error": {"type": "overloaded_error", "message": "Overloaded"}})
    got: list[str] = []

    async def on_delta(t: str) -> None:
        got.append(t)

    res = await r.ask(AskParams(prompt="hi"), on_delta=on_delta)
    assert res.profile == "openai-backup" and "".join(got) == res.text
    assert res.attempts == ["anthropic-primary: API error (status 529): Overloaded"]


async def test_stream_cut_after_first_token_is_raised(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    r = _router(fake, client)
    fake.push({"match": {"api": "anthropic"}, "fault": "error_event", "after": 2, "text": "a b c d",
               "error": {"type": "overloaded_error", "message": "Overloaded"}})
    got: list[str] = []

    async def on_delta(t: str) -> None:
        got.append(t)

    with pytest.raises(ApiError):
        await r.ask(AskParams(prompt="hi"), on_delta=on_delta)
    assert got == ["a", " b"]
    assert all(q["api"] == "anthropic" for q in fake.requests)


async def test_missing_key_skips_profile_or_fails_when_pinned(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    r = make_router([profile("a", "anthropic", fake.url, 0, api_key_env="NOPE_KEY"),
                     profile("b", "openai", fake.url, 1)], client)
    res = await r.ask(AskParams(prompt="hi"))
    assert res.profile == "b"
    with pytest.raises(MissingApiKey) as ei:
        await r.ask(AskParams(prompt="hi", profile="a"))
    assert str(ei.value) == "profile `a`: API key not set (environment variable NOPE_KEY is empty)"


async def test_model_override_and_keys_sent(fake: FakeLLM, client: httpx.AsyncClient) -> None:
    r = _router(fake, client)
    res = await r.ask(AskParams(prompt="hi", model="claude-haiku-4-20250514", system="sys", max_tokens=7))
    assert res.model == "claude-haiku-4-20250514"
    q = fake.requests[-1]
    assert q["body"]["model"] == "claude-haiku-4-20250514" and q["body"]["max_tokens"] == 7
    assert q["headers"]["x-api-key"] == "sk-ant-test-key"
