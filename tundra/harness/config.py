"""``config/harness.toml``: circuit breaker, rate-limit tiers, retry, router and per-profile limits.

Validated like ``config.toml`` (file, dotted field, expected/got, did-you-mean)::

    harness.toml: circuit_breaker.failure_threshold: expected int, got str "5"
    harness.toml: rate_limit.global.max_burst: must be > 0, got 0.0

A missing file means the seed's defaults.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from tundra.config.errors import ConfigError
from tundra.config.loader import convert_section, read_toml
from tundra.harness.circuit_breaker import CircuitBreakerConfig
from tundra.harness.rate_limiter import BucketConfig
from tundra.harness.retry import RetryPolicy

__all__ = [
    "HarnessConfig",
    "CircuitBreakerSection",
    "BucketSection",
    "RateLimitSection",
    "RetrySection",
    "RouterSection",
    "ProfileLimits",
    "load_harness",
    "parse_harness",
]

FILENAME = "harness.toml"
_SPLIT_FIELD = re.compile(r"^(\S+: [\w.]+): (\w+): (.*)$")


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


def _check(cond: bool, field: str, message: str) -> None:
    if not cond:
        raise ValueError(f"{field}: {message}")


class CircuitBreakerSection(_Section):
    failure_threshold: int = 5
    success_threshold: int = 2
    timeout_secs: float = 60.0
    call_timeout_secs: float = 30.0
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        _check(self.failure_threshold >= 1, "failure_threshold", f"must be >= 1, got {self.failure_threshold}")
        _check(self.success_threshold >= 1, "success_threshold", f"must be >= 1, got {self.success_threshold}")
        _check(self.timeout_secs > 0, "timeout_secs", f"must be > 0, got {self.timeout_secs}")
        _check(self.call_timeout_secs > 0, "call_timeout_secs", f"must be > 0, got {self.call_timeout_secs}")
        _check(self.half_open_max_calls >= 1, "half_open_max_calls", f"must be >= 1, got {self.half_open_max_calls}")

    def to_config(self) -> CircuitBreakerConfig:
        return CircuitBreakerConfig(
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            timeout_secs=self.timeout_secs,
            call_timeout_secs=self.call_timeout_secs,
            half_open_max_calls=self.half_open_max_calls,
        )


class BucketSection(_Section):
    tokens_per_second: float = 10.0
    max_burst: float = 50.0
    enabled: bool = True

    def __post_init__(self) -> None:
        _check(self.tokens_per_second > 0, "tokens_per_second", f"must be > 0, got {self.tokens_per_second}")
        _check(self.max_burst > 0, "max_burst", f"must be > 0, got {self.max_burst}")

    def to_config(self) -> BucketConfig:
        return BucketConfig(self.tokens_per_second, self.max_burst, self.enabled)


def _global_default() -> BucketSection:
    return BucketSection(tokens_per_second=100.0, max_burst=200.0)


def _user_default() -> BucketSection:
    return BucketSection(tokens_per_second=10.0, max_burst=50.0)


def _endpoint_default() -> BucketSection:
    return BucketSection(tokens_per_second=5.0, max_burst=20.0)


class RateLimitSection(_Section, rename={"global_": "global"}):
    global_: BucketSection = msgspec.field(default_factory=_global_default)
    per_user: BucketSection = msgspec.field(default_factory=_user_default)
    per_endpoint: BucketSection = msgspec.field(default_factory=_endpoint_default)


class RetrySection(_Section):
    max_retries: int = 2
    """Extra rounds over the profile chain after the first one fails."""
    base_delay_secs: float = 0.5
    max_delay_secs: float = 8.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        _check(0 <= self.max_retries <= 20, "max_retries", f"must be 0-20, got {self.max_retries}")
        _check(self.base_delay_secs >= 0, "base_delay_secs", f"must be >= 0, got {self.base_delay_secs}")
        _check(self.max_delay_secs >= self.base_delay_secs, "max_delay_secs", "must be >= base_delay_secs")
        _check(0 <= self.jitter <= 1, "jitter", f"must be 0-1, got {self.jitter}")

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.base_delay_secs, self.max_delay_secs, self.jitter)


class RouterSection(_Section):
    deadline_secs: float = 120.0
    """One deadline for the whole chain: every retry, failover and wait for capacity."""
    cooldown_secs: float = 60.0
    """A rate-limited profile rests this long, or the server's Retry-After if longer."""

    def __post_init__(self) -> None:
        _check(self.deadline_secs > 0, "deadline_secs", f"must be > 0, got {self.deadline_secs}")
        _check(self.cooldown_secs >= 0, "cooldown_secs", f"must be >= 0, got {self.cooldown_secs}")


class ProfileLimits(_Section):
    """``[[profile]]``: overrides a profile's RPM/TPM from api_profiles.json."""

    name: str
    rate_limit_rpm: int | None = None
    rate_limit_tpm: int | None = None

    def __post_init__(self) -> None:
        _check(self.name != "", "name", "must not be empty")
        if self.rate_limit_rpm is not None:
            _check(self.rate_limit_rpm >= 1, "rate_limit_rpm", f"must be >= 1, got {self.rate_limit_rpm}")
        if self.rate_limit_tpm is not None:
            _check(self.rate_limit_tpm >= 1, "rate_limit_tpm", f"must be >= 1, got {self.rate_limit_tpm}")


class HarnessConfig(_Section):
    circuit_breaker: CircuitBreakerSection = msgspec.field(default_factory=CircuitBreakerSection)
    rate_limit: RateLimitSection = msgspec.field(default_factory=RateLimitSection)
    retry: RetrySection = msgspec.field(default_factory=RetrySection)
    router: RouterSection = msgspec.field(default_factory=RouterSection)
    profile: list[ProfileLimits] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for p in self.profile:
            _check(p.name not in seen, "profile", f"duplicate name `{p.name}`")
            seen.add(p.name)

    def limits_for(self, name: str) -> ProfileLimits | None:
        return next((p for p in self.profile if p.name == name), None)


def parse_harness(data: dict[str, object], filename: str = FILENAME) -> HarnessConfig:
    try:
        return convert_section(data, HarnessConfig, filename)
    except ConfigError as exc:
        # The shared explainer does not know msgspec renames (`global` is `global_` in Python):
        # fold "a.global: field: msg" into "a.global.field: msg" and show the TOML key name.
        msg = exc.message.replace("`global_`", "`global`")
        m = _SPLIT_FIELD.match(msg)
        if m:
            msg = f"{m.group(1)}.{m.group(2)}: {m.group(3)}"
        raise ConfigError(msg, hint=exc.hint, details=exc.details) from None


def load_harness(path: Path) -> HarnessConfig:
    """Blocking (file read): call from a worker thread inside the daemon."""
    data = read_toml(path, FILENAME)
    if data is None:
        return HarnessConfig()
    return parse_harness(data)
