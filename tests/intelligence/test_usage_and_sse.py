"""Usage persistence (atomic, survives reload), the price table, the SSE decoder, profiles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tundra.config.errors import ConfigError
from tundra.intelligence.pricing import estimate_cost, price_for
from tundra.intelligence.profiles import default_profiles, load_profiles, parse_profiles
from tundra.intelligence.providers.sse import SseDecoder, SseEvent
from tundra.intelligence.usage import UsageTracker, read_usage_file


async def test_usage_flushes_atomically_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "data" / "profile_usage.json"
    u = UsageTracker(path)
    u.record_success("a", 100, 20, 12.5, 0.001)
    u.record_success("a", 50, 10, 30.0, 0.0005)
    u.record_error("a", "rate limited: retry after 5s", rate_limited=True)
    u.record_error("b", "HTTP error: ConnectError")
    await u.flush()
    raw = json.loads(path.read_text())
    a = next(e for e in raw if e["profile_id"] == "a")
    assert (a["total_requests"], a["successes"], a["total_errors"], a["total_rate_limits"]) == (3, 2, 1, 1)
    assert (a["total_tokens_in"], a["total_tokens_out"]) == (150, 30)
    assert a["estimated_spend_usd"] == pytest.approx(0.0015)
    assert a["latency_p50_ms"] in (12.5, 30.0) and a["latency_p95_ms"] == 30.0
    assert a["last_error"] == "rate limited: retry after 5s"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["profile_usage.json"]  # no temp files left
    u2 = UsageTracker(path)
    await u2.load()
    again = u2.get("a")
    assert again is not None and again.total_requests == 3
    u2.record_success("a", 1, 1, 1.0, 0.0)
    assert u2.get("a").total_requests == 4  # type: ignore[union-attr]


def test_corrupt_usage_file_is_ignored(tmp_path: Path) -> None:
    p = tmp_path / "profile_usage.json"
    p.write_text("{not json")
    assert read_usage_file(p) == []
    assert read_usage_file(tmp_path / "missing.json") == []


async def test_flush_without_changes_does_not_write(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    u = UsageTracker(path)
    await u.flush()
    assert not path.exists()
    u.record_error("x", "e")
    await u.flush()
    mtime = os.stat(path).st_mtime_ns
    await u.flush()
    assert os.stat(path).st_mtime_ns == mtime


def test_price_table() -> None:
    assert price_for("claude-sonnet-4-20250514") == (3.0, 15.0)
    assert price_for("anthropic/claude-opus-4-20250514") == (15.0, 75.0)
    assert price_for("gpt-4o-mini-2024-07-18") == (0.15, 0.6)
    assert price_for("gpt-4o") == (2.5, 10.0)
    assert price_for("qwen2.5-coder:14b") is None
    assert estimate_cost("claude-sonnet-4-20250514", 1_000_000, 1_000_000) == pytest.approx(18.0)
    assert estimate_cost("gpt-4o", 1000, 1000, local=True) == 0.0


EVENTS = [SseEvent("message_start", '{"a": 1}'), SseEvent("message", "[DONE]"),
          SseEvent("content_block_delta", 'line1\nline2')]
WIRE = (b": OPENROUTER PROCESSING\r\n\r\nevent: message_start\r\ndata: {\"a\": 1}\r\n\r\n"
        b"data: [DONE]\n\nevent: content_block_delta\ndata: line1\ndata:line2\n\n")


@given(st.lists(st.integers(min_value=1, max_value=len(WIRE)), max_size=20))
def test_sse_decoder_is_chunking_independent(cuts: list[int]) -> None:
    d = SseDecoder()
    out: list[SseEvent] = []
    prev = 0
    for c in sorted(set(cuts)) + [len(WIRE)]:
        out.extend(d.feed(WIRE[prev:c]))
        prev = c
    assert out == EVENTS
    assert not d.pending()


def test_sse_decoder_reports_a_cut_event() -> None:
    d = SseDecoder()
    assert d.feed(b"event: message_delta\ndata: {\"type\": \"mess") == []
    assert d.pending()


def test_profiles_defaults_and_aliases(tmp_path: Path) -> None:
    assert [p.name for p in load_profiles(tmp_path / "none.json")] == [p.name for p in default_profiles()]
    ps = parse_profiles(b'{"profiles": [{"name": "or", "provider": "open_router", "priority": 2},'
                        b' {"name": "loc", "provider": "local", "priority": 1}]}')
    assert [p.name for p in ps] == ["loc", "or"]
    orp = ps[1]
    assert (orp.provider, orp.model, orp.url, orp.key_env) == (
        "openrouter", "anthropic/claude-sonnet-4-20250514", "https://openrouter.ai/api", "OPENROUTER_API_KEY")
    assert ps[0].key_problem({}) is None  # local needs no key
    assert orp.key_problem({}) == "API key not set (environment variable OPENROUTER_API_KEY is empty)"
    assert orp.api_key({"OPENROUTER_API_KEY": "k"}) == "k"


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"profiles": [{"name": "a", "provider": "anthropc"}]}',
     "api_profiles.json: profiles.0.provider: invalid value 'anthropc'; expected one of 'anthropic', 'local', 'openai', 'openrouter'"),
    (b'{"profiles": [{"name": "a", "provider": "openai", "priorty": 1}]}',
     "api_profiles.json: profiles.0.priorty: unknown key (did you mean `priority`?)"),
    (b'{"profiles": [{"name": "a", "provider": "openai", "timeout_secs": 0}]}',
     "api_profiles.json: profiles.0.timeout_secs: must be > 0, got 0.0"),
    (b'{"profiles": [{"name": "a", "provider": "openai"}, {"name": "a", "provider": "local"}]}',
     "api_profiles.json: profiles: duplicate name `a`"),
])
def test_profile_file_errors(raw: bytes, message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_profiles(raw)
    assert str(ei.value) == message
