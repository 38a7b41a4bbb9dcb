"""Retry with exponential backoff and jitter that honours a server's Retry-After.

``delay(n) = max(min(base * 2**n, cap) * (1 - jitter * U[0,1)), retry_after)`` -- the same shape
as the anthropic/openai SDKs, but a server's Retry-After is a floor, never shortened.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

__all__ = ["RetryPolicy", "backoff_delay", "retry_call"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay_secs: float = 0.5
    max_delay_secs: float = 8.0
    jitter: float = 0.25


def backoff_delay(
    attempt: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number ``attempt`` (0-based)."""
    raw = min(policy.base_delay_secs * (2**attempt), policy.max_delay_secs)
    d = float(raw * (1.0 - policy.jitter * rng()))
    if retry_after is not None:
        d = max(d, retry_after)
    return d


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retryable: Callable[[BaseException], bool],
    retry_after_of: Callable[[BaseException], float | None] = lambda e: None,
    deadline: float = float("inf"),
) -> T:
    """Call ``fn`` until it succeeds, a non-retryable error, ``max_retries`` or ``deadline``
    (trio clock): a retry whose delay would end past the deadline is not attempted."""
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as e:
            if attempt >= policy.max_retries or not retryable(e):
                raise
            d = backoff_delay(attempt, policy, retry_after=retry_after_of(e))
            if trio.current_time() + d > deadline:
                raise
            attempt += 1
            await trio.sleep(d)
