"""A three-state circuit breaker (Closed -> Open -> HalfOpen -> Closed), one per provider profile.

Closed counts consecutive failures; at ``failure_threshold`` it opens and refuses every call
(``circuit is open – refusing call``) for ``timeout`` seconds. Then it is HalfOpen: up to
``half_open_max_calls`` probes may run at once; ``success_threshold`` consecutive successes
close it, any failure re-opens it for another ``timeout``. ``call_timeout`` bounds each call.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import trio

from tundra.harness.errors import CircuitOpen, CircuitTimeout

__all__ = ["CircuitState", "CircuitBreakerConfig", "CircuitBreaker"]

log = logging.getLogger("tundra.harness.circuit_breaker")

T = TypeVar("T")


class CircuitState(enum.Enum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"

    @property
    def wire(self) -> Literal["closed", "open", "half_open"]:
        """The snake_case name used on IPC/JSON (``closed``, ``open``, ``half_open``)."""
        if self is CircuitState.OPEN:
            return "open"
        if self is CircuitState.HALF_OPEN:
            return "half_open"
        return "closed"


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """The seed's defaults: 5 failures, 2 successes, 60 s open, 30 s per call, 1 probe."""

    failure_threshold: int = 5
    success_threshold: int = 2
    timeout_secs: float = 60.0
    call_timeout_secs: float = 30.0
    half_open_max_calls: int = 1


class CircuitBreaker:
    """Use :meth:`call` to wrap a coroutine, or :meth:`acquire` + :meth:`record_success` /
    :meth:`record_failure` / :meth:`release` when the caller classifies outcomes itself
    (the LLM router does: a 4xx is the caller's fault, not the provider's)."""

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig | None = None,
        *,
        clock: Callable[[], float] = trio.current_time,
        on_transition: Callable[[str, CircuitState, CircuitState], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config or CircuitBreakerConfig()
        self._clock = clock
        self._on_transition = on_transition
        self._state = CircuitState.CLOSED
        self.failure_count = 0
        self.success_count = 0
        self._opened_mono: float | None = None
        self.opened_at: float | None = None
        """Wall-clock epoch of the last transition to Open."""
        self._probes = 0

    # -- state ------------------------------------------------------------------------------
    def _transition(self, new: CircuitState, why: str = "") -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        suffix = f" ({why})" if why else ""
        log.warning(
            "circuit breaker transitioning %s -> %s%s",
            old.value,
            new.value,
            suffix,
            extra={"fields": {"breaker": self.name, "failure_count": self.failure_count}},
        )
        if self._on_transition is not None:
            self._on_transition(self.name, old, new)

    @property
    def state(self) -> CircuitState:
        """Current state; an Open breaker whose timeout has passed reads as HalfOpen."""
        if self._state is CircuitState.OPEN and self.retry_after() <= 0:
            self.success_count = 0
            self._probes = 0
            self._transition(CircuitState.HALF_OPEN)
        return self._state

    def retry_after(self) -> float:
        """Seconds until an Open breaker lets a probe through (0 if not open)."""
        if self._state is not CircuitState.OPEN or self._opened_mono is None:
            return 0.0
        return max(0.0, self._opened_mono + self.config.timeout_secs - self._clock())

    def until(self) -> float | None:
        """Wall-clock epoch at which an Open breaker half-opens (None if not open)."""
        if self._state is not CircuitState.OPEN:
            return None
        return time.time() + self.retry_after()

    def available(self) -> bool:
        st = self.state
        if st is CircuitState.OPEN:
            return False
        if st is CircuitState.HALF_OPEN:
            return self._probes < self.config.half_open_max_calls
        return True

    # -- manual protocol ----------------------------------------------------------------------
    def acquire(self) -> None:
        """Admit one call or raise :class:`CircuitOpen`. Pair with record_* or release."""
        st = self.state
        if st is CircuitState.OPEN:
            raise CircuitOpen(self.name, retry_after=self.retry_after())
        if st is CircuitState.HALF_OPEN:
            if self._probes >= self.config.half_open_max_calls:
                raise CircuitOpen(self.name, retry_after=0.0)
            self._probes += 1

    def _end_probe(self) -> None:
        if self._state is CircuitState.HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def release(self) -> None:
        """The admitted call ended with an outcome that says nothing about the provider."""
        self._end_probe()

    def record_success(self) -> None:
        self._end_probe()
        if self._state is CircuitState.HALF_OPEN:
            self.success_count += 1
            if self.success_count >= self.config.success_threshold:
                self.failure_count = 0
                self.success_count = 0
                self._transition(CircuitState.CLOSED)
        else:
            self.failure_count = 0

    def record_failure(self) -> None:
        self._end_probe()
        if self._state is CircuitState.HALF_OPEN:
            self._open("failure during probe")
            return
        if self._state is CircuitState.OPEN:
            return
        self.failure_count += 1
        if self.failure_count >= self.config.failure_threshold:
            self._open()

    def _open(self, why: str = "") -> None:
        self._opened_mono = self._clock()
        self.opened_at = time.time()
        self.success_count = 0
        self._probes = 0
        self._transition(CircuitState.OPEN, why)

    def reset(self) -> None:
        """Close the breaker now (``tundra llm reset``)."""
        self.failure_count = 0
        self.success_count = 0
        self._probes = 0
        self._opened_mono = None
        self._transition(CircuitState.CLOSED, "manual reset")

    # -- wrapper --------------------------------------------------------------------------------
    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` under the breaker: refused when open, bounded by ``call_timeout``; any
        exception (and the timeout) counts as a failure."""
        self.acquire()
        try:
            with trio.fail_after(self.config.call_timeout_secs):
                result = await fn()
        except trio.TooSlowError:
            self.record_failure()
            raise CircuitTimeout(self.config.call_timeout_secs) from None
        except trio.Cancelled:
            self.release()
            raise
        except BaseException:
            self.record_failure()
            raise
        self.record_success()
        return result

    def snapshot(self) -> dict[str, object]:
        st = self.state
        return {
            "state": st.wire,
            "failure_count": self.failure_count,
            "success_count": self.success_count,
            "opened_at": self.opened_at,
            "until": self.until(),
        }
