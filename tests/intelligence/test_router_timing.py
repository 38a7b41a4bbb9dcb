"""Router policy under trio's autojump clock: failover table, cooldowns, circuits, deadlines.

Providers here are scripted in-process stand-ins (the wire is covered against the real fake
server in test_providers/test_router_wire); this keeps the timing exact and instant.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing

from tests.intelligence.conftest import harness, make_router, profile
from tundra.harness.circuit_breaker import CircuitState
from tundra.harness.errors import RateLimitExceeded
from tundra.intelligence.api import AskParams, Usage
from tundra.intelligence.errors import (
    ApiError,
    HttpError,
    NoProfileAvailable,
    ParseError,
    QuotaExhausted,
    RateLimited,
    Timeout,
)
from tundra.intelligence.providers import Completion, DeltaCallback, LlmRequest, Provider
from tundra.intelligence.router import Router

ASK = AskParams(prompt="hi", max_tokens=100)


class Scripted(Provider):
    """Plays a script: an exception to raise, ("sleep", s) then reply, or "ok"."""

    def __init__(self, router: Router, name: str, *steps: Any) -> None:
        st = router.states[name]
        super().__init__(st.profile, router.client)
        self.steps: deque[Any] = deque(steps)
        self.calls: list[float] = []
        st.provider = self

    def _next(self) -> Any:
        self.calls.append(trio.current_time())
        return self.steps.popleft() if self.steps else "ok"

    def _reply(self, req: LlmRequest) -> Completion:
        return Completion(text=f"{self.profile.name} says hi", model=req.model, stop_reason="end_turn",
                          usage=Usage(input_tokens=10, output_tokens=5))

    async def complete(self, req: LlmRequest, api_key: str | None) -> Completion:
        step = self._next()
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, tuple):
            await trio.sleep(step[1])
        return self._reply(req)

    async def stream(self, req: LlmRequest, api_key: str | None, on_delta: DeltaCallback) -> Completion:
        step = self._next()
        if isinstance(step, tuple) and step[0] == "sleep":
            await trio.sleep(step[1])
        if isinstance(step, BaseException):
            raise step
        await on_delta(f"{self.profile.name}:")
        if isinstance(step, tuple) and step[0] == "fail_after_first":
            raise step[1]
        await on_delta(" hi")
        return self._reply(req)


def two(client: httpx.AsyncClient, **h: Any) -> Router:
    return make_router([profile("primary", "anthropic", "http://x", 0),
                        profile("secondary", "openai", "http://y", 1)], client, harness(**h))


@pytest.mark.parametrize("err", [HttpError("ConnectError"), Timeout(), ApiError(500, "x"), ApiError(502, "x"),
                                 ApiError(503, "x"), ApiError(529, "Overloaded"), RateLimited(1.0),
                                 QuotaExhausted(429, "quota")])
async def test_failover_triggers(err: Exception, autojump_clock: trio.testing.MockClock,
                                 client: httpx.AsyncClient) -> None:
    r = two(client)
    Scripted(r, "primary", err)
    sec = Scripted(r, "secondary")
    res = await r.ask(ASK)
    assert res.profile == "secondary" and res.text == "secondary says hi"
    assert res.attempts == [f"primary: {err}"]
    assert len(sec.calls) == 1


@pytest.mark.parametrize("err", [ApiError(400, "bad"), ApiError(401, "key"), ApiError(403, "no"),
                                 ParseError("expected JSON, got an HTML page")])
async def test_no_failover_on_4xx_or_parse_error(err: Exception, autojump_clock: trio.testing.MockClock,
                                                 client: httpx.AsyncClient) -> None:
    r = two(client)
    Scripted(r, "primary", err)
    sec = Scripted(r, "secondary")
    with pytest.raises(type(err)) as ei:
        await r.ask(ASK)
    assert str(ei.value) == str(err)
    assert sec.calls == []


async def test_rate_limited_cools_down_60s_even_with_shorter_retry_after(
    autojump_clock: trio.testing.MockClock, client: httpx.AsyncClient
) -> None:
    r = two(client)
    prim = Scripted(r, "primary", RateLimited(5.0))
    Scripted(r, "secondary")
    t0 = trio.current_time()
    await r.ask(ASK)
    st = r.states["primary"]
    assert st.cooldown_until == pytest.approx(t0 + 60.0)
    await trio.sleep(59)
    assert (await r.ask(ASK)).profile == "secondary"
    assert len(prim.calls) == 1  # not touched while cooling
    await trio.sleep(1)
    assert (await r.ask(ASK)).profile == "primary"


async def test_longer_retry_after_wins_over_60s(autojump_clock: trio.testing.MockClock,
                                               client: httpx.AsyncClient) -> None:
    r = two(client)
    Scripted(r, "primary", RateLimited(120.0))
    Scripted(r, "secondary")
    t0 = trio.current_time()
    await r.ask(ASK)
    assert r.states["primary"].cooldown_until == pytest.approx(t0 + 120.0)
    info = {c.profile: c for c in r.circuits()}["primary"]
    assert info.cooldown_reason == "rate limited: retry after 120s"
    assert info.until is not None


async def test_cooldown_never_shortens(autojump_clock: trio.testing.MockClock, client: httpx.AsyncClient) -> None:
    r = two(client)
    # Two concurrent calls hit primary; the later 429 carries a shorter Retry-After.
    Scripted(r, "primary", ("sleep", 1), ("sleep", 2))
    Scripted(r, "secondary")
    st = r.states["primary"]
    st.cool_down(trio.current_time(), 300.0, "rate limited: retry after 300s")
    until = st.cooldown_until
    st.cool_down(trio.current_time(), 60.0, "rate limited: retry after 1s")
    assert st.cooldown_until == until


async def test_waits_for_earliest_recovery_within_deadline(autojump_clock: trio.testing.MockClock,
                                                           client: httpx.AsyncClient) -> None:
    r = make_router([profile("only", "anthropic", "http://x")], client,
                    harness(retry={"max_retries": 1}, router={"cooldown_secs": 0, "deadline_secs": 30}))
    prov = Scripted(r, "only", RateLimited(10.0))
    t0 = trio.current_time()
    res = await r.ask(ASK)
    assert res.profile == "only"
    assert prov.calls[1] - t0 == pytest.approx(10.0)  # waited exactly for the cooldown


async def test_fails_listing_each_profile_when_recovery_is_past_deadline(
    autojump_clock: trio.testing.MockClock, client: httpx.AsyncClient
) -> None:
    r = two(client, router={"deadline_secs": 30})
    Scripted(r, "primary", RateLimited(90.0))
    Scripted(r, "secondary", RateLimited(None))
    await trio.lowlevel.checkpoint()
    with pytest.raises(NoProfileAvailable) as ei:
        await r.ask(ASK)
    msg = str(ei.value)
    assert msg.startswith("no LLM profile available: primary: rate limited: retry after 90s")
    assert "secondary: rate limited: retry after unknown" in msg
    t = trio.current_time()
    with pytest.raises(NoProfileAvailable) as ei:
        await r.ask(ASK)
    assert trio.current_time() == t  # answered at once, no pointless wait
    assert "primary: cooling down for 1m30s" not in str(ei.value)
    assert "primary: cooling down for 90s after rate limited: retry after 90s" in str(ei.value)
    assert ei.value.retry_after == pytest.approx(60.0)


async def test_circuit_opens_then_half_open_probe_failure_reopens(
    autojump_clock: trio.testing.MockClock, client: httpx.AsyncClient
) -> None:
    r = two(client)
    prim = Scripted(r, "primary", *[HttpError("reset")] * 6)
    Scripted(r, "secondary")
    for _ in range(5):
        assert (await r.ask(ASK)).profile == "secondary"
    br = r.states["primary"].breaker
    assert br.state is CircuitState.OPEN
    assert (await r.ask(ASK)).profile == "secondary"
    assert len(prim.calls) == 5  # open: refused without a call
    await trio.sleep(60)
    assert br.state is CircuitState.HALF_OPEN
    await r.ask(ASK)  # the probe fails -> Open again
    assert len(prim.calls) == 6
    assert br.state is CircuitState.OPEN
    await trio.sleep(60)
    assert (await r.ask(ASK)).profile == "primary"
    assert (await r.ask(ASK)).profile == "primary"
    assert br.state is CircuitState.CLOSED


async def test_quota_exhaustion_disables_until_reset(autojump_clock: trio.testing.MockClock,
                                                    client: httpx.AsyncClient) -> None:
    r = two(client)
    prim = Scripted(r, "primary", QuotaExhausted(429, "You exceeded your current quota"))
    Scripted(r, "secondary")
    await r.ask(ASK)
    await trio.sleep(3600)
    assert (await r.ask(ASK)).profile == "secondary"
    assert len(prim.calls) == 1
    assert {c.profile: c for c in r.circuits()}["primary"].disabled
    assert r.reset("primary") == ["primary"]
    assert (await r.ask(ASK)).profile == "primary"


async def test_call_timeout_fails_over_and_counts(autojump_clock: trio.testing.MockClock,
                                                 client: httpx.AsyncClient) -> None:
    r = two(client)
    Scripted(r, "primary", ("sleep", 1000))
    Scripted(r, "secondary")
    t0 = trio.current_time()
    res = await r.ask(ASK)
    assert res.profile == "secondary"
    assert res.attempts == ["primary: call timed out after 30s"]
    assert trio.current_time() - t0 == pytest.approx(30.0)
    assert r.states["primary"].breaker.failure_count == 1


async def test_one_deadline_for_the_whole_chain(autojump_clock: trio.testing.MockClock,
                                               client: httpx.AsyncClient) -> None:
    r = two(client, router={"deadline_secs": 45}, retry={"max_retries": 5})
    Scripted(r, "primary", *[("sleep", 1000)] * 5)
    Scripted(r, "secondary", *[("sleep", 1000)] * 5)
    t0 = trio.current_time()
    with pytest.raises(Timeout) as ei:
        await r.ask(ASK)
    assert trio.current_time() - t0 == pytest.approx(45.0)
    assert "router deadline of 45s exceeded" in str(ei.value.details.get("detail"))


async def test_stream_fails_over_only_before_first_token(autojump_clock: trio.testing.MockClock,
                                                         client: httpx.AsyncClient) -> None:
    r = two(client)
    Scripted(r, "primary", ApiError(529, "Overloaded"))
    Scripted(r, "secondary")
    got: list[str] = []

    async def on_delta(t: str) -> None:
        got.append(t)

    res = await r.ask(ASK, on_delta=on_delta)
    assert res.profile == "secondary" and got == ["secondary:", " hi"]

    r2 = two(client)
    Scripted(r2, "primary", ("fail_after_first", ApiError(529, "Overloaded")))
    sec = Scripted(r2, "secondary")
    got.clear()
    with pytest.raises(ApiError):
        await r2.ask(ASK, on_delta=on_delta)
    assert got == ["primary:"] and sec.calls == []


async def test_slow_first_token_hits_call_timeout(autojump_clock: trio.testing.MockClock,
                                                  client: httpx.AsyncClient) -> None:
    r = two(client)
    Scripted(r, "primary", ("sleep", 40))
    Scripted(r, "secondary")

    async def on_delta(t: str) -> None:
        pass

    res = await r.ask(ASK, on_delta=on_delta)
    assert res.profile == "secondary"
    assert res.attempts == ["primary: call timed out after 30s"]


async def test_local_rpm_budget_waits_or_spills_over(autojump_clock: trio.testing.MockClock,
                                                    client: httpx.AsyncClient) -> None:
    r = make_router([profile("only", "anthropic", "http://x", rate_limit_rpm=2)], client)
    prov = Scripted(r, "only")
    await r.ask(ASK)
    await r.ask(ASK)
    await r.ask(ASK)  # bucket empty: waits exactly one refill (30 s at 2 RPM)
    assert prov.calls[2] - prov.calls[1] == pytest.approx(30.0)
    r2 = make_router([profile("a", "anthropic", "http://x", 0, rate_limit_rpm=1),
                      profile("b", "openai", "http://y", 1)], client)
    Scripted(r2, "a")
    Scripted(r2, "b")
    assert (await r2.ask(ASK)).profile == "a"
    assert (await r2.ask(ASK)).profile == "b"


async def test_multi_key_limiter_guards_the_router(autojump_clock: trio.testing.MockClock,
                                                   client: httpx.AsyncClient) -> None:
    r = make_router([profile("only", "anthropic", "http://x")], client,
                    harness(rate_limit={"per_user": {"tokens_per_second": 1.0, "max_burst": 1.0}}))
    Scripted(r, "only")
    await r.ask(ASK, user="1000")
    with pytest.raises(RateLimitExceeded) as ei:
        await r.ask(ASK, user="1000")
    assert str(ei.value) == "rate limit exceeded for key `user:1000` – retry after 1s"
    await r.ask(ASK, user="1001")


async def test_reconfigure_keeps_state_of_unchanged_profiles(autojump_clock: trio.testing.MockClock,
                                                            client: httpx.AsyncClient) -> None:
    r = two(client)
    Scripted(r, "primary", RateLimited(5.0))
    Scripted(r, "secondary")
    await r.ask(ASK)
    kept = r.states["primary"]
    r.configure([kept.profile, r.states["secondary"].profile], r.harness)
    assert r.states["primary"] is kept and kept.cooldown_until is not None
    from tundra.harness.config import parse_harness

    r.configure([kept.profile], parse_harness({"profile": [{"name": "primary", "rate_limit_rpm": 5}]}))
    assert r.states["primary"] is not kept  # new limits -> new buckets
    assert list(r.states) == ["primary"]


async def test_empty_request_is_a_usage_error(client: httpx.AsyncClient) -> None:
    from tundra.errors import UsageError

    r = two(client)
    with pytest.raises(UsageError):
        await r.ask(AskParams())
    with pytest.raises(UsageError):
        await r.ask(AskParams(prompt="x", max_tokens=0))
