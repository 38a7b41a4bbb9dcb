"""The failover router: walks profiles by priority under one overall deadline.

The seed's "Failover Triggers" table, exactly:

==========================  ========  ==================================================
error                       failover  also
==========================  ========  ==================================================
HttpError                   yes       breaker failure
RateLimited (429)           yes       profile cools down max(cooldown_secs, Retry-After);
                                      a cooldown is only ever extended, never shortened
Timeout / call timeout      yes       breaker failure
ApiError 5xx and 529        yes       breaker failure
QuotaExhausted              yes       profile disabled until ``tundra llm reset``; no retry
ApiError 4xx                no        raised to the caller (fix the config/request)
ParseError                  no        raised; counts as a breaker failure
==========================  ========  ==================================================

A round tries every available profile once. When a round fails, the router backs off
(exponential + jitter) and tries again, at most ``[retry] max_retries`` times. When every
profile is cooling down, open or over its local RPM/TPM budget, it waits for the earliest
recovery if that lies within the deadline, else fails with :class:`NoProfileAvailable` listing
each profile and why. Streams fail over only before the first content token reaches the caller.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from tundra.errors import TundraError, UsageError
from tundra.harness.circuit_breaker import CircuitBreaker, CircuitState
from tundra.harness.config import HarnessConfig
from tundra.harness.errors import CircuitOpen, CircuitTimeout, HarnessError, format_duration
from tundra.harness.rate_limiter import MultiKeyRateLimiter, ProfileBuckets
from tundra.harness.retry import backoff_delay
from tundra.intelligence.api import (
    AskParams,
    AskResult,
    ChatMessage,
    CircuitInfo,
    ProfileInfo,
    Usage,
)
from tundra.intelligence.errors import (
    ApiError,
    HttpError,
    LlmError,
    MissingApiKey,
    NoProfileAvailable,
    ParseError,
    ProfileNotFound,
    QuotaExhausted,
    RateLimited,
    Timeout,
    Unsupported,
)
from tundra.intelligence.pricing import estimate_cost
from tundra.intelligence.profiles import ApiProfile
from tundra.intelligence.providers import (
    Completion,
    DeltaCallback,
    LlmRequest,
    Provider,
    ToolSpec,
    make_provider,
)
from tundra.intelligence.usage import UsageTracker

__all__ = ["Router", "ProfileState", "should_failover", "counts_as_failure"]

log = logging.getLogger("tundra.intelligence.router")

EventSink = Callable[[str, dict[str, Any]], None]


def should_failover(err: BaseException) -> bool:
    """The Failover Triggers table."""
    if isinstance(err, QuotaExhausted | RateLimited | HttpError | Timeout):
        return True
    if isinstance(err, CircuitTimeout | CircuitOpen):
        return True
    if isinstance(err, ApiError):
        return err.server_side
    return False


def counts_as_failure(err: BaseException) -> bool:
    """Which outcomes say the provider is unhealthy (feed the circuit breaker)."""
    if isinstance(err, HttpError | Timeout | CircuitTimeout | ParseError):
        return True
    return isinstance(err, ApiError) and not isinstance(err, QuotaExhausted) and err.server_side


@dataclass
class _Blocked:
    reason: str
    recovery: float | None
    """trio time at which the profile may be usable again (None = not by waiting)."""
    error: TundraError | None = None


class ProfileState:
    """Everything the router knows about one profile right now."""

    def __init__(self, profile: ApiProfile, provider: Provider, breaker: CircuitBreaker,
                 buckets: ProfileBuckets) -> None:
        self.profile = profile
        self.provider = provider
        self.breaker = breaker
        self.buckets = buckets
        self.cooldown_until: float | None = None
        self.cooldown_reason: str | None = None
        self.disabled: str | None = None
        self.limits: tuple[int | None, int | None] = (None, None)
        """The (rpm, tpm) the buckets were built with (to detect changes on reload)."""

    @property
    def name(self) -> str:
        return self.profile.name

    def cool_down(self, now: float, secs: float, reason: str) -> None:
        until = now + secs
        if self.cooldown_until is None or until > self.cooldown_until:
            self.cooldown_until = until
            log.info("profile cooling down", extra={"fields": {
                "profile": self.name, "secs": round(until - now, 3), "reason": reason}})
        self.cooldown_reason = reason

    def blocked(self, now: float, tokens: int, env: Mapping[str, str] | None) -> _Blocked | None:
        p = self.profile
        if not p.enabled:
            return _Blocked("disabled in api_profiles.json", None)
        if self.disabled is not None:
            return _Blocked(f"disabled until reset ({self.disabled})", None,
                            QuotaExhausted(402, self.disabled))
        key_problem = p.key_problem(env)
        if key_problem is not None:
            return _Blocked(key_problem, None, MissingApiKey(p.name, p.key_env or "?"))
        if self.cooldown_until is not None and self.cooldown_until > now:
            left = self.cooldown_until - now
            return _Blocked(f"cooling down for {format_duration(left)} after {self.cooldown_reason}",
                            self.cooldown_until)
        st = self.breaker.state
        if st is CircuitState.OPEN:
            left = self.breaker.retry_after()
            return _Blocked(f"circuit is open – refusing call (half-opens in {format_duration(left)})",
                            now + left, CircuitOpen(p.name, retry_after=left))
        if not self.breaker.available():
            return _Blocked("circuit half-open, probe in flight", now + 0.1,
                            CircuitOpen(p.name, retry_after=0.1))
        wait = self.buckets.wait_time(tokens)
        if wait > 0:
            if math.isinf(wait):
                return _Blocked("request larger than the profile's token budget", None)
            return _Blocked(f"local rate limit (rate_limit_rpm/tpm): next slot in {format_duration(wait)}",
                            now + wait)
        return None


def _wall(trio_time: float | None) -> float | None:
    if trio_time is None:
        return None
    return time.time() + (trio_time - trio.current_time())


class _DeadlineReached(Exception):
    pass


class Router:
    """Owns the per-profile state (breakers, buckets, cooldowns) and the multi-key limiter."""

    def __init__(
        self,
        profiles: Sequence[ApiProfile],
        harness: HarnessConfig,
        client: httpx.AsyncClient,
        usage: UsageTracker,
        *,
        env: Mapping[str, str] | None = None,
        on_event: EventSink | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.usage = usage
        self.env = env
        self.on_event = on_event
        self.rng = rng
        self.harness = harness
        self.states: dict[str, ProfileState] = {}
        self.limiter = self._make_limiter(harness)
        self.configure(profiles, harness)

    @staticmethod
    def _make_limiter(h: HarnessConfig) -> MultiKeyRateLimiter:
        rl = h.rate_limit
        return MultiKeyRateLimiter(rl.global_.to_config(), rl.per_user.to_config(),
                                   rl.per_endpoint.to_config())

    def configure(self, profiles: Sequence[ApiProfile], harness: HarnessConfig) -> None:
        """(Re)build per-profile state; profiles whose settings did not change keep their
        breaker, buckets and cooldown."""
        if harness != self.harness:
            self.limiter = self._make_limiter(harness)
        old = self.states
        self.harness = harness
        new: dict[str, ProfileState] = {}
        for p in sorted(profiles, key=lambda p: p.priority):
            limits = harness.limits_for(p.name)
            rpm = limits.rate_limit_rpm if limits and limits.rate_limit_rpm else p.rate_limit_rpm
            tpm = limits.rate_limit_tpm if limits and limits.rate_limit_tpm else p.rate_limit_tpm
            prev = old.get(p.name)
            if (prev is not None and prev.profile == p and prev.limits == (rpm, tpm)
                    and prev.breaker.config == harness.circuit_breaker.to_config()):
                new[p.name] = prev
                continue
            breaker = CircuitBreaker(p.name, harness.circuit_breaker.to_config(),
                                     on_transition=self._transition)
            st = ProfileState(p, make_provider(p, self.client), breaker, ProfileBuckets(rpm, tpm))
            st.limits = (rpm, tpm)
            new[p.name] = st
        self.states = new

    def _transition(self, name: str, old: CircuitState, new: CircuitState) -> None:
        if self.on_event is not None:
            self.on_event("llm.circuit", {"profile": name, "from": old.wire, "to": new.wire})

    # -- requests ----------------------------------------------------------------------------
    @staticmethod
    def messages_of(params: AskParams) -> list[ChatMessage]:
        msgs = list(params.messages or [])
        if params.prompt is not None:
            msgs.append(ChatMessage(role="user", content=params.prompt))
        if not msgs:
            raise UsageError("llm.ask needs `prompt` or `messages`")
        if params.max_tokens < 1:
            raise UsageError(f"max_tokens must be >= 1, got {params.max_tokens}")
        return msgs

    async def ask(
        self,
        params: AskParams,
        *,
        user: str | None = None,
        endpoint: str | None = "llm.ask",
        on_delta: DeltaCallback | None = None,
        tools: list[ToolSpec] | None = None,
        json_mode: bool = False,
    ) -> AskResult:
        """Run one request through the chain. Raises the final :class:`LlmError` (or a
        :class:`HarnessError` from the multi-key limiter)."""
        messages = self.messages_of(params)
        self.limiter.check(user=user, endpoint=endpoint)
        if params.profile is not None:
            st = self.states.get(params.profile)
            if st is None:
                raise ProfileNotFound(params.profile)
            candidates = [st]
        else:
            candidates = [s for s in self.states.values() if s.profile.enabled]
        if not candidates:
            raise NoProfileAvailable({s.name: "disabled in api_profiles.json" for s in self.states.values()})

        needs = set()
        if tools:
            needs.add("tools")
        if json_mode:
            needs.add("json_mode")
        if on_delta is not None:
            needs.add("streaming")

        policy = self.harness.retry.to_policy()
        start = trio.current_time()
        deadline = start + self.harness.router.deadline_secs
        attempts: list[str] = []
        last_error: dict[str, TundraError] = {}
        reasons: dict[str, str] = {}
        recoveries: list[float] = []
        retries = 0
        tried = False
        with trio.move_on_at(deadline) as overall:
            while True:
                now = trio.current_time()
                reasons = {}
                recoveries = []
                tried = False
                unsupported = 0
                for st in candidates:
                    missing = needs - set(st.profile.caps)
                    if missing:
                        reasons[st.name] = f"unsupported: {', '.join(sorted(missing))} not in capabilities"
                        unsupported += 1
                        continue
                    req = LlmRequest(messages=messages, model=params.model or st.profile.model,
                                     max_tokens=params.max_tokens, system=params.system,
                                     temperature=params.temperature, tools=tools, json_mode=json_mode)
                    tokens = req.input_estimate() + req.max_tokens
                    blk = st.blocked(trio.current_time(), tokens, self.env)
                    if blk is not None:
                        reasons[st.name] = blk.reason
                        if blk.recovery is not None:
                            recoveries.append(blk.recovery)
                        if blk.error is not None:
                            last_error[st.name] = blk.error
                        continue
                    tried = True
                    try:
                        return await self._attempt(st, req, on_delta, deadline, attempts, start)
                    except (LlmError, HarnessError) as e:
                        last_error[st.name] = e
                        reasons[st.name] = str(e)
                        attempts.append(f"{st.name}: {e}")
                        if getattr(e, "_tundra_stream_started", False) or not should_failover(e):
                            raise
                        log.info("failover", extra={"fields": {"profile": st.name, "error": str(e)}})
                if unsupported == len(candidates):
                    raise Unsupported("; ".join(f"{k}: {v.removeprefix('unsupported: ')}"
                                                for k, v in reasons.items()))
                if tried:
                    if retries >= policy.max_retries:
                        break
                    wake = trio.current_time() + backoff_delay(retries, policy, rng=self.rng)
                    if recoveries:
                        # Do not sleep past a profile that becomes free sooner.
                        wake = min(wake, max(min(recoveries), trio.current_time()))
                    retries += 1
                else:
                    if not recoveries:
                        break
                    wake = min(recoveries)
                if wake > deadline:
                    break
                await trio.sleep_until(wake)
        now = trio.current_time()
        if overall.cancelled_caught:
            raise Timeout(f"router deadline of {format_duration(self.harness.router.deadline_secs)} "
                          f"exceeded ({'; '.join(attempts) or 'no attempt finished'})")
        if len(candidates) == 1 and candidates[0].name in last_error:
            raise last_error[candidates[0].name]
        retry_after = (min(recoveries) - now) if recoveries else None
        raise NoProfileAvailable(reasons, retry_after=retry_after)

    async def _attempt(
        self,
        st: ProfileState,
        req: LlmRequest,
        on_delta: DeltaCallback | None,
        deadline: float,
        attempts: list[str],
        start: float,
    ) -> AskResult:
        tokens = req.input_estimate() + req.max_tokens
        reservation = st.buckets.reserve(tokens)
        st.breaker.acquire()
        t0 = trio.current_time()
        call_timeout = st.breaker.config.call_timeout_secs
        started = False
        scope = trio.CancelScope(deadline=min(t0 + call_timeout, deadline))

        async def delta(text: str) -> None:
            nonlocal started
            if not started:
                started = True
                # call_timeout bounds the wait for the first token; after that only the
                # overall deadline and the per-read timeout apply.
                scope.deadline = deadline
            assert on_delta is not None
            await on_delta(text)

        key = st.profile.api_key(self.env)
        comp: Completion | None = None
        err: BaseException | None = None
        try:
            with scope:
                if on_delta is not None:
                    comp = await st.provider.stream(req, key, delta)
                else:
                    comp = await st.provider.complete(req, key)
            if scope.cancelled_caught:
                if trio.current_time() >= deadline:
                    raise Timeout("router deadline reached during the call")
                raise CircuitTimeout(call_timeout)
        except (LlmError, HarnessError) as e:
            err = e
        except BaseException:
            # Cancelled (client went away) or a bug: the provider is not to blame.
            st.breaker.release()
            if reservation is not None:
                st.buckets.settle(reservation, None)
            raise
        latency_ms = (trio.current_time() - t0) * 1000.0
        if err is not None:
            if counts_as_failure(err):
                st.breaker.record_failure()
            else:
                st.breaker.release()
            if reservation is not None:
                st.buckets.settle(reservation, None)
            if isinstance(err, QuotaExhausted):
                st.disabled = str(err)
                log.warning("profile disabled: quota exhausted",
                            extra={"fields": {"profile": st.name}})
            elif isinstance(err, RateLimited):
                secs = max(self.harness.router.cooldown_secs, err.retry_after or 0.0)
                st.cool_down(trio.current_time(), secs, str(err))
            self.usage.record_error(st.name, str(err), rate_limited=isinstance(err, RateLimited))
            if started:
                err._tundra_stream_started = True  # type: ignore[attr-defined]
            raise err
        assert comp is not None
        st.breaker.record_success()
        if reservation is not None:
            st.buckets.settle(reservation, comp.usage.input_tokens + comp.usage.output_tokens)
        cost = estimate_cost(comp.model, comp.usage.input_tokens, comp.usage.output_tokens,
                             local=st.profile.provider == "local")
        self.usage.record_success(st.name, comp.usage.input_tokens, comp.usage.output_tokens,
                                  latency_ms, cost)
        return AskResult(
            text=comp.text,
            profile=st.name,
            model=comp.model,
            usage=Usage(input_tokens=comp.usage.input_tokens, output_tokens=comp.usage.output_tokens),
            latency_ms=round((trio.current_time() - start) * 1000.0, 3),
            stop_reason=comp.stop_reason,
            attempts=list(attempts),
        )

    # -- inspection --------------------------------------------------------------------------
    def profiles_info(self) -> list[ProfileInfo]:
        out = []
        now = trio.current_time()
        for st in self.states.values():
            p = st.profile
            problem: str | None = None
            if not p.enabled:
                problem = "disabled in api_profiles.json"
            elif st.disabled:
                problem = f"disabled until reset ({st.disabled})"
            else:
                problem = p.key_problem(self.env)
                if problem is None and st.cooldown_until and st.cooldown_until > now:
                    problem = f"cooling down for {format_duration(st.cooldown_until - now)}"
                if problem is None and st.breaker.state is CircuitState.OPEN:
                    problem = "circuit is open – refusing call"
            out.append(ProfileInfo(
                name=p.name, provider=p.provider, base_url=p.url, default_model=p.model,
                priority=p.priority, enabled=p.enabled, api_key_env=p.key_env,
                key_present=p.key_env is None or p.api_key(self.env) is not None,
                problem=problem, rate_limit_rpm=int(st.buckets.rpm.capacity) if st.buckets.rpm else None,
                rate_limit_tpm=int(st.buckets.tpm.capacity) if st.buckets.tpm else None,
                timeout_secs=p.timeout_secs, capabilities=list(p.caps)))
        return out

    def circuits(self) -> list[CircuitInfo]:
        out = []
        now = trio.current_time()
        for st in self.states.values():
            b = st.breaker
            state = b.state
            cooling = st.cooldown_until if st.cooldown_until and st.cooldown_until > now else None
            until_candidates = [t for t in (b.until(), _wall(cooling)) if t is not None]
            snap = st.buckets.snapshot()
            out.append(CircuitInfo(
                profile=st.name, state=state.wire, failure_count=b.failure_count,
                success_count=b.success_count, opened_at=b.opened_at,
                until=max(until_candidates) if until_candidates else None,
                cooldown_until=_wall(cooling), cooldown_reason=st.cooldown_reason if cooling else None,
                disabled=st.disabled,
                rpm_available=_round(snap["rpm_available"]), rpm_capacity=snap["rpm_capacity"],
                tpm_available=_round(snap["tpm_available"]), tpm_capacity=snap["tpm_capacity"],
                extra={"failure_threshold": b.config.failure_threshold,
                       "timeout_secs": b.config.timeout_secs}))
        return out

    def reset(self, name: str | None = None) -> list[str]:
        """Close circuits, end cooldowns and re-enable quota-disabled profiles."""
        if name is not None and name not in self.states:
            raise ProfileNotFound(name)
        targets = [self.states[name]] if name is not None else list(self.states.values())
        for st in targets:
            st.breaker.reset()
            st.cooldown_until = None
            st.cooldown_reason = None
            st.disabled = None
        return [st.name for st in targets]


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
