"""Token buckets: exact retry_after, atomic multi-key checks, per-profile reserve/refund."""

from __future__ import annotations

import math

import pytest
import trio

from tundra.harness.errors import RateLimitExceeded
from tundra.harness.rate_limiter import (
    BucketConfig,
    MultiKeyRateLimiter,
    ProfileBuckets,
    TokenBucket,
)


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_retry_after_is_deficit_over_rate() -> None:
    clock = ManualClock()
    b = TokenBucket(10.0, 1.0, clock=clock)
    b.take(0.5)
    # need 1, have 0.5, rate 10/s -> 0.05 s (the seed's worked example)
    assert b.wait_time(1.0) == pytest.approx(0.05)
    clock.now = 0.05
    assert b.wait_time(1.0) == 0.0


def test_bucket_refills_continuously_up_to_burst() -> None:
    clock = ManualClock()
    b = TokenBucket(2.0, 4.0, clock=clock)
    b.take(4.0)
    clock.now = 1.0
    assert b.level == pytest.approx(2.0)
    clock.now = 100.0
    assert b.level == pytest.approx(4.0)
    assert b.wait_time(5.0) == math.inf


def test_error_text_and_exact_retry_after() -> None:
    clock = ManualClock()
    lim = MultiKeyRateLimiter(BucketConfig(1.0, 2.0), BucketConfig(100, 100), BucketConfig(100, 100),
                              clock=clock)
    lim.check()
    lim.check()
    clock.now = 0.5  # refilled 0.5 of the 1 needed -> wait 0.5 s
    with pytest.raises(RateLimitExceeded) as ei:
        lim.check(cost=1.0)
    assert ei.value.retry_after == pytest.approx(0.5)
    assert str(ei.value) == "rate limit exceeded for key `global` – retry after 0.5s"
    assert ei.value.code == "harness.rate_limit_exceeded"
    clock.now = 0.5 + ei.value.retry_after
    lim.check()  # exactly then it passes


def test_retry_after_formats_like_the_seed() -> None:
    e = RateLimitExceeded("endpoint:chat", 2.5)
    assert str(e) == "rate limit exceeded for key `endpoint:chat` – retry after 2.5s"


def test_rejection_spends_nothing_on_any_key() -> None:
    clock = ManualClock()
    lim = MultiKeyRateLimiter(BucketConfig(10, 100), BucketConfig(10, 100), BucketConfig(1, 1),
                              clock=clock)
    lim.check(user="u1", endpoint="chat")
    before = lim.levels()
    with pytest.raises(RateLimitExceeded) as ei:
        lim.check(user="u1", endpoint="chat")
    assert ei.value.key == "endpoint:chat"
    assert lim.levels() == before  # global and user:u1 untouched
    # A different endpoint is not affected by chat's exhaustion.
    lim.check(user="u1", endpoint="other")


def test_first_rejecting_tier_is_named_and_wait_covers_all_keys() -> None:
    clock = ManualClock()
    lim = MultiKeyRateLimiter(BucketConfig(1, 1), BucketConfig(0.5, 1), BucketConfig(100, 100),
                              clock=clock)
    lim.check(user="7", endpoint="e")
    with pytest.raises(RateLimitExceeded) as ei:
        lim.check(user="7", endpoint="e")
    assert ei.value.key == "global"
    assert ei.value.retry_after == pytest.approx(2.0)  # user:7 refills at 0.5/s


def test_disabled_tier_is_not_checked() -> None:
    clock = ManualClock()
    lim = MultiKeyRateLimiter(BucketConfig(1, 1, enabled=False), BucketConfig(1, 1), BucketConfig(1, 1),
                              clock=clock)
    lim.check(user="a")
    lim.check(user="b")  # global would have refused this


async def test_acquire_waits_exactly_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    lim = MultiKeyRateLimiter(BucketConfig(4.0, 1.0), BucketConfig(10, 10), BucketConfig(10, 10))
    lim.check()
    t0 = trio.current_time()
    await lim.acquire()
    assert trio.current_time() - t0 == pytest.approx(0.25)
    with pytest.raises(RateLimitExceeded):
        await lim.acquire(max_wait=0.1)


def test_profile_buckets_reserve_and_refund() -> None:
    clock = ManualClock()
    pb = ProfileBuckets(rpm=60, tpm=1000, clock=clock)
    r = pb.reserve(600)  # input estimate + max_tokens
    assert r is not None
    assert pb.tpm is not None and pb.tpm.level == pytest.approx(400)
    assert pb.reserve(600) is None  # would overdraw TPM: nothing taken
    assert pb.rpm is not None and pb.rpm.level == pytest.approx(59)
    pb.settle(r, actual_tokens=100)
    assert pb.tpm.level == pytest.approx(900)
    pb.settle(r, actual_tokens=0)  # settling twice is a no-op
    assert pb.tpm.level == pytest.approx(900)


def test_profile_buckets_debit_usage_above_reservation() -> None:
    clock = ManualClock()
    pb = ProfileBuckets(rpm=None, tpm=600, clock=clock)
    r = pb.reserve(100)
    assert r is not None
    pb.settle(r, actual_tokens=700)
    assert pb.tpm is not None and pb.tpm.level == pytest.approx(-100)
    # Overdraft + 100 tokens at 10 tokens/s -> 20 s.
    assert pb.wait_time(100) == pytest.approx(20.0)


def test_rpm_wait_time() -> None:
    clock = ManualClock()
    pb = ProfileBuckets(rpm=2, tpm=None, clock=clock)
    assert pb.reserve(10) and pb.reserve(10)
    assert pb.reserve(10) is None
    assert pb.wait_time(10) == pytest.approx(30.0)  # 2 RPM -> one slot per 30 s
