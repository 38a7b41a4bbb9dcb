"""Circuit breaker transitions with the seed's defaults, timed with trio's autojump clock."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from tundra.harness.circuit_breaker import CircuitBreaker, CircuitBreakerConfig, CircuitState
from tundra.harness.errors import CircuitOpen, CircuitTimeout


async def _ok() -> str:
    return "ok"


async def _boom() -> str:
    raise RuntimeError("boom")


async def _fail(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(RuntimeError):
            await b.call(_boom)


def test_defaults_are_the_seeds() -> None:
    c = CircuitBreakerConfig()
    assert (c.failure_threshold, c.success_threshold, c.timeout_secs, c.call_timeout_secs) == (5, 2, 60.0, 30.0)


async def test_opens_after_five_consecutive_failures(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tundra.harness.circuit_breaker")
    b = CircuitBreaker("p")
    await _fail(b, 4)
    assert b.state is CircuitState.CLOSED and b.failure_count == 4
    await _fail(b, 1)
    assert b.state is CircuitState.OPEN
    assert "circuit breaker transitioning Closed -> Open" in caplog.text
    with pytest.raises(CircuitOpen) as ei:
        await b.call(_ok)
    assert str(ei.value) == "circuit is open – refusing call"
    assert ei.value.retry_after == pytest.approx(60.0)


async def test_success_resets_failure_count(autojump_clock: trio.testing.MockClock) -> None:
    b = CircuitBreaker("p")
    await _fail(b, 4)
    assert await b.call(_ok) == "ok"
    assert b.failure_count == 0
    await _fail(b, 4)
    assert b.state is CircuitState.CLOSED


async def test_half_open_after_timeout_then_closes_after_two_successes(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tundra.harness.circuit_breaker")
    b = CircuitBreaker("p")
    await _fail(b, 5)
    await trio.sleep(59.9)
    assert b.state is CircuitState.OPEN
    await trio.sleep(0.1)
    assert b.state is CircuitState.HALF_OPEN
    assert "Open -> HalfOpen" in caplog.text
    await b.call(_ok)
    assert b.state is CircuitState.HALF_OPEN and b.success_count == 1
    await b.call(_ok)
    assert b.state is CircuitState.CLOSED
    assert "HalfOpen -> Closed" in caplog.text


async def test_failed_probe_reopens_for_a_full_timeout(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tundra.harness.circuit_breaker")
    b = CircuitBreaker("p")
    await _fail(b, 5)
    await trio.sleep(60)
    await b.call(_ok)  # one success in HalfOpen ...
    await _fail(b, 1)  # ... then a failure: straight back to Open
    assert b.state is CircuitState.OPEN
    assert "HalfOpen -> Open (failure during probe)" in caplog.text
    assert b.retry_after() == pytest.approx(60.0)
    await trio.sleep(59)
    assert b.state is CircuitState.OPEN


async def test_half_open_admits_one_probe_at_a_time(autojump_clock: trio.testing.MockClock) -> None:
    b = CircuitBreaker("p", CircuitBreakerConfig(failure_threshold=1, timeout_secs=1))
    await _fail(b, 1)
    await trio.sleep(1)
    release = trio.Event()
    entered = trio.Event()

    async def slow() -> str:
        entered.set()
        await release.wait()
        return "ok"

    async with trio.open_nursery() as n:
        n.start_soon(b.call, slow)
        await entered.wait()
        with pytest.raises(CircuitOpen):
            await b.call(_ok)
        release.set()
    assert b.success_count == 1


async def test_call_timeout_counts_as_failure(autojump_clock: trio.testing.MockClock) -> None:
    b = CircuitBreaker("p", CircuitBreakerConfig(failure_threshold=2))

    async def hang() -> str:
        await trio.sleep_forever()
        return ""

    t0 = trio.current_time()
    with pytest.raises(CircuitTimeout) as ei:
        await b.call(hang)
    assert trio.current_time() - t0 == pytest.approx(30.0)
    assert str(ei.value) == "call timed out after 30s"
    with pytest.raises(CircuitTimeout):
        await b.call(hang)
    assert b.state is CircuitState.OPEN


async def test_manual_reset_closes(autojump_clock: trio.testing.MockClock) -> None:
    b = CircuitBreaker("p")
    await _fail(b, 5)
    b.reset()
    assert b.state is CircuitState.CLOSED
    assert await b.call(_ok) == "ok"


async def test_transition_callback(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[str, str]] = []
    b = CircuitBreaker("p", CircuitBreakerConfig(failure_threshold=1, timeout_secs=5),
                       on_transition=lambda n, o, s: seen.append((o.wire, s.wire)))
    await _fail(b, 1)
    await trio.sleep(5)
    await b.call(_ok)
    await b.call(_ok)
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
