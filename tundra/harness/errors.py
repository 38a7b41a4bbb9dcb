"""Errors raised by the harness: the seed's ``RateLimitError`` and ``CircuitBreakerError`` variants."""

from __future__ import annotations

from tundra.errors import TundraError

__all__ = [
    "HarnessError",
    "RateLimitExceeded",
    "CircuitBreakerError",
    "CircuitOpen",
    "CircuitTimeout",
    "format_duration",
]


def format_duration(seconds: float) -> str:
    """``2.5s``, ``0.05s``, ``60s``: seconds rounded to the millisecond, no trailing zeros."""
    if seconds == float("inf"):
        return "never"
    text = f"{max(seconds, 0.0):.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


class HarnessError(TundraError):
    """Root of harness errors."""

    code = "harness.error"
    http_status = 503


class RateLimitExceeded(HarnessError):
    """``RateLimitError::Exceeded``: a token bucket has not enough tokens for this request.

    ``retry_after`` is exact: after that long every bucket checked has refilled enough.
    """

    code = "harness.rate_limit_exceeded"
    http_status = 429
    default_hint = "wait retry_after, or raise tokens_per_second/max_burst in config/harness.toml"

    def __init__(self, key: str, retry_after: float, *, cost: float = 1.0) -> None:
        super().__init__(
            f"rate limit exceeded for key `{key}` – retry after {format_duration(retry_after)}",
            details={"key": key, "retry_after": retry_after, "cost": cost},
        )
        self.key = key
        self.retry_after = retry_after


class CircuitBreakerError(HarnessError):
    code = "harness.circuit_breaker"


class CircuitOpen(CircuitBreakerError):
    """``CircuitBreakerError::Open``: the breaker refuses calls without touching the provider."""

    code = "harness.circuit_open"
    http_status = 503
    default_hint = "see `tundra llm circuits`; `tundra llm reset` closes circuits"

    def __init__(self, name: str = "", *, retry_after: float | None = None) -> None:
        details: dict[str, object] = {"name": name}
        if retry_after is not None:
            details["retry_after"] = retry_after
        super().__init__("circuit is open – refusing call", details=details)
        self.name = name
        self.retry_after = retry_after


class CircuitTimeout(CircuitBreakerError):
    """``CircuitBreakerError::Timeout``: one call exceeded ``call_timeout``."""

    code = "harness.call_timeout"
    http_status = 504
    default_hint = "raise [circuit_breaker] call_timeout_secs in config/harness.toml"

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"call timed out after {format_duration(timeout)}", details={"timeout": timeout}
        )
        self.timeout = timeout
