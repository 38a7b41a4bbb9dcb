"""Backoff shape, Retry-After floor, and harness.toml validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from tundra.config.errors import ConfigError
from tundra.harness.config import HarnessConfig, load_harness, parse_harness
from tundra.harness.retry import RetryPolicy, backoff_delay, retry_call


def test_backoff_is_exponential_capped_and_jittered_down() -> None:
    p = RetryPolicy(max_retries=5, base_delay_secs=0.5, max_delay_secs=8.0, jitter=0.25)
    assert [backoff_delay(n, p, rng=lambda: 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_delay(2, p, rng=lambda: 1.0) == pytest.approx(1.5)


def test_retry_after_is_a_floor() -> None:
    p = RetryPolicy()
    assert backoff_delay(0, p, retry_after=7.0, rng=lambda: 0.5) == 7.0
    assert backoff_delay(3, p, retry_after=0.1, rng=lambda: 0.0) == 4.0


async def test_retry_call_honours_retry_after_and_gives_up(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []

    class Flaky(Exception):
        retry_after = 3.0

    async def fn() -> str:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise Flaky()
        return "done"

    policy = RetryPolicy(max_retries=2, base_delay_secs=0.5, jitter=0.0)
    out = await retry_call(fn, policy, retryable=lambda e: isinstance(e, Flaky),
                           retry_after_of=lambda e: getattr(e, "retry_after", None))
    assert out == "done"
    assert [round(b - a, 6) for a, b in zip(calls, calls[1:], strict=False)] == [3.0, 3.0]
    calls.clear()
    with pytest.raises(Flaky):
        await retry_call(fn, RetryPolicy(max_retries=0), retryable=lambda e: True)
    with pytest.raises(ValueError):
        await retry_call(_raise_value, policy, retryable=lambda e: isinstance(e, Flaky))


async def _raise_value() -> None:
    raise ValueError("not retryable")


async def test_retry_call_stops_before_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    n = 0

    async def fn() -> None:
        nonlocal n
        n += 1
        raise OSError("x")

    with pytest.raises(OSError):
        await retry_call(fn, RetryPolicy(max_retries=10, base_delay_secs=1, jitter=0),
                         retryable=lambda e: True, deadline=trio.current_time() + 2.5)
    assert n == 2  # delays 1, then 2 would end at 3 > 2.5


def test_missing_file_is_defaults(tmp_path: Path) -> None:
    assert load_harness(tmp_path / "nope.toml") == HarnessConfig()


def test_full_file_parses(tmp_path: Path) -> None:
    f = tmp_path / "harness.toml"
    f.write_text(
        "[circuit_breaker]\nfailure_threshold = 3\nsuccess_threshold = 1\ntimeout_secs = 10\n"
        "call_timeout_secs = 60\n\n[rate_limit.global]\ntokens_per_second = 100.0\nmax_burst = 200.0\n\n"
        "[rate_limit.per_user]\ntokens_per_second = 10.0\nmax_burst = 50.0\n\n"
        "[[profile]]\nname = \"anthropic-primary\"\nrate_limit_rpm = 45\nrate_limit_tpm = 90000\n"
    )
    h = load_harness(f)
    assert h.circuit_breaker.failure_threshold == 3
    assert h.circuit_breaker.to_config().timeout_secs == 10.0
    assert h.rate_limit.global_.max_burst == 200.0
    assert h.limits_for("anthropic-primary") is not None
    assert h.limits_for("anthropic-primary").rate_limit_rpm == 45  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"circuit_breaker": {"failure_threshold": "5"}},
         'harness.toml: circuit_breaker.failure_threshold: expected int, got str "5"'),
        ({"circuit_breaker": {"failure_treshold": 5}},
         "harness.toml: circuit_breaker.failure_treshold: unknown key (did you mean `failure_threshold`?)"),
        ({"rate_limit": {"global": {"max_burst": 0.0}}},
         "harness.toml: rate_limit.global.max_burst: must be > 0, got 0.0"),
        ({"rate_limit": {"globl": {}}},
         "harness.toml: rate_limit.globl: unknown key (did you mean `global`?)"),
        ({"profile": [{"name": "a"}, {"name": "a"}]}, "harness.toml: profile: duplicate name `a`"),
    ],
)
def test_validation_errors_name_file_and_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_harness(data)
    assert str(ei.value) == message


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "harness.toml"
    f.write_text("[circuit_breaker]\nfailure_threshold 5\n")
    with pytest.raises(ConfigError) as ei:
        load_harness(f)
    assert str(ei.value).startswith("harness.toml:2: invalid TOML")
