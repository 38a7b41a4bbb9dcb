"""Token buckets: the multi-key limiter (``global`` -> ``user:<id>`` -> ``endpoint:<name>``) and
per-profile RPM/TPM buckets with reserve/refund.

Buckets refill continuously (``tokens_per_second``) up to ``max_burst``. A multi-key check is
atomic: every bucket is tested first and tokens are taken only when all of them can pay, so a
rejected request spends nothing. ``retry_after`` is exact: ``deficit / tokens_per_second``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from tundra.harness.errors import RateLimitExceeded

__all__ = ["TokenBucket", "BucketConfig", "MultiKeyRateLimiter", "ProfileBuckets", "Reservation"]

log = logging.getLogger("tundra.harness.rate_limiter")

Clock = Callable[[], float]


def _trio_clock() -> float:
    return trio.current_time()


@dataclass(frozen=True)
class BucketConfig:
    tokens_per_second: float
    max_burst: float
    enabled: bool = True


class TokenBucket:
    """One bucket. ``level`` may go below zero when a refund turns into a debit (usage above the
    reservation); the next requests then wait for the overdraft to refill."""

    __slots__ = ("rate", "capacity", "_level", "_stamp", "_clock")

    def __init__(self, rate: float, capacity: float, *, clock: Clock = _trio_clock) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("token bucket rate and capacity must be > 0")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._stamp = clock()

    def _refill(self) -> float:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._level = min(self.capacity, self._level + elapsed * self.rate)
            self._stamp = now
        return self._level

    @property
    def level(self) -> float:
        return self._refill()

    def wait_time(self, cost: float) -> float:
        """Seconds until ``cost`` tokens are available (0 if now; inf if cost > capacity)."""
        if cost > self.capacity:
            return math.inf
        deficit = cost - self._refill()
        return deficit / self.rate if deficit > 0 else 0.0

    def take(self, cost: float) -> None:
        self._refill()
        self._level -= cost

    def give_back(self, amount: float) -> None:
        """Refund (amount > 0) or extra debit (amount < 0), clamped to [-capacity, capacity]."""
        self._refill()
        self._level = max(-self.capacity, min(self.capacity, self._level + amount))

    def is_full(self) -> bool:
        return self._refill() >= self.capacity


class MultiKeyRateLimiter:
    """Tiers ``global``, ``user:<id>``, ``endpoint:<name>``; one bucket per concrete key."""

    _PRUNE_EVERY = 1024

    def __init__(
        self,
        global_: BucketConfig,
        per_user: BucketConfig,
        per_endpoint: BucketConfig,
        *,
        clock: Clock = _trio_clock,
    ) -> None:
        self._tiers = {"global": global_, "user": per_user, "endpoint": per_endpoint}
        self._buckets: dict[str, TokenBucket] = {}
        self._clock = clock
        self._created = 0

    def _bucket(self, key: str) -> TokenBucket | None:
        tier = key.split(":", 1)[0]
        cfg = self._tiers[tier]
        if not cfg.enabled:
            return None
        b = self._buckets.get(key)
        if b is None:
            self._created += 1
            if self._created % self._PRUNE_EVERY == 0:
                # Full buckets carry no state; dropping them bounds memory with many users.
                for k in [k for k, v in self._buckets.items() if v.is_full()]:
                    del self._buckets[k]
            b = self._buckets[key] = TokenBucket(
                cfg.tokens_per_second, cfg.max_burst, clock=self._clock
            )
        return b

    @staticmethod
    def keys_for(user: str | None = None, endpoint: str | None = None) -> list[str]:
        keys = ["global"]
        if user is not None:
            keys.append(f"user:{user}")
        if endpoint is not None:
            keys.append(f"endpoint:{endpoint}")
        return keys

    def check(
        self, *, user: str | None = None, endpoint: str | None = None, cost: float = 1.0
    ) -> None:
        """Take ``cost`` from every applicable bucket, or raise :class:`RateLimitExceeded` for
        the first key (in tier order) that cannot pay, taking nothing anywhere.

        The error's ``retry_after`` is the exact wait after which *all* keys can pay.
        """
        self.check_keys(self.keys_for(user, endpoint), cost=cost)

    def check_keys(self, keys: Sequence[str], *, cost: float = 1.0) -> None:
        buckets = [(k, self._bucket(k)) for k in keys]
        first: str | None = None
        wait = 0.0
        for key, b in buckets:
            if b is None:
                continue
            w = b.wait_time(cost)
            if w > 0:
                if first is None:
                    first = key
                wait = max(wait, w)
        if first is not None:
            log.debug(
                "rate limit exceeded",
                extra={"fields": {"key": first, "retry_after": wait, "cost": cost}},
            )
            raise RateLimitExceeded(first, wait, cost=cost)
        for _, b in buckets:
            if b is not None:
                b.take(cost)

    async def acquire(
        self,
        *,
        user: str | None = None,
        endpoint: str | None = None,
        cost: float = 1.0,
        max_wait: float = math.inf,
    ) -> None:
        """Wait (at most ``max_wait``) until :meth:`check` passes; re-raise when it would not."""
        deadline = trio.current_time() + max_wait
        while True:
            try:
                self.check(user=user, endpoint=endpoint, cost=cost)
                return
            except RateLimitExceeded as e:
                if trio.current_time() + e.retry_after > deadline:
                    raise
                await trio.sleep(e.retry_after)

    def levels(self) -> dict[str, float]:
        return {k: b.level for k, b in self._buckets.items()}


@dataclass
class Reservation:
    """What :meth:`ProfileBuckets.reserve` took; settle it with :meth:`ProfileBuckets.settle`."""

    requests: float
    tokens: float
    settled: bool = False


class ProfileBuckets:
    """A profile's RPM and TPM buckets (either may be absent = unlimited).

    A call reserves 1 request and ``input_estimate + max_tokens`` tokens up front; when the
    call finishes, :meth:`settle` refunds the difference to the actual usage (or debits more).
    """

    def __init__(self, rpm: int | None, tpm: int | None, *, clock: Clock = _trio_clock) -> None:
        self.rpm = TokenBucket(rpm / 60.0, float(rpm), clock=clock) if rpm else None
        self.tpm = TokenBucket(tpm / 60.0, float(tpm), clock=clock) if tpm else None

    def wait_time(self, tokens: float) -> float:
        """Seconds until both buckets can pay (0 = now). Token costs above the TPM capacity are
        clamped to it: such a request can still run alone in an empty-ish minute."""
        w = 0.0
        if self.rpm is not None:
            w = max(w, self.rpm.wait_time(1.0))
        if self.tpm is not None:
            w = max(w, self.tpm.wait_time(min(tokens, self.tpm.capacity)))
        return w

    def reserve(self, tokens: float) -> Reservation | None:
        """Take 1 request + ``tokens`` atomically, or return None (nothing taken)."""
        if self.wait_time(tokens) > 0:
            return None
        if self.rpm is not None:
            self.rpm.take(1.0)
        t = 0.0
        if self.tpm is not None:
            t = min(tokens, self.tpm.capacity)
            self.tpm.take(t)
        return Reservation(requests=1.0, tokens=t)

    def settle(self, r: Reservation, actual_tokens: int | None) -> None:
        """Refund unused tokens (``actual_tokens`` None = the call failed before any usage was
        reported: the provider may still count the request, so only tokens are refunded)."""
        if r.settled:
            return
        r.settled = True
        if self.tpm is not None:
            used = 0 if actual_tokens is None else actual_tokens
            self.tpm.give_back(r.tokens - used)

    def snapshot(self) -> dict[str, float | None]:
        return {
            "rpm_available": None if self.rpm is None else self.rpm.level,
            "rpm_capacity": None if self.rpm is None else self.rpm.capacity,
            "tpm_available": None if self.tpm is None else self.tpm.level,
            "tpm_capacity": None if self.tpm is None else self.tpm.capacity,
        }
