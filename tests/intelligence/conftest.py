"""Fixtures: the fake provider server, a shared httpx client, profile/router builders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.fake_llm import FakeLLM
from tundra.harness.config import HarnessConfig, parse_harness
from tundra.intelligence.profiles import ApiProfile
from tundra.intelligence.providers import make_http_client
from tundra.intelligence.router import Router
from tundra.intelligence.usage import UsageTracker

ENV = {"ANTHROPIC_API_KEY": "sk-ant-test-key", "OPENAI_API_KEY": "sk-openai-test",
       "OPENROUTER_API_KEY": "sk-or-test"}


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as f:
        yield f


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def profile(name: str, provider: str, url: str, priority: int = 0, **kw: Any) -> ApiProfile:
    return ApiProfile(name=name, provider=provider, base_url=url, priority=priority, **kw)  # type: ignore[arg-type]


def harness(**sections: Any) -> HarnessConfig:
    base: dict[str, Any] = {"retry": {"max_retries": 0}}
    base.update(sections)
    return parse_harness(base)


def make_router(profiles: list[ApiProfile], client: httpx.AsyncClient, h: HarnessConfig | None = None,
                usage: UsageTracker | None = None, env: dict[str, str] | None = None) -> Router:
    return Router(profiles, h or harness(), client, usage or UsageTracker(None),
                  env=ENV if env is None else env, rng=lambda: 0.0)
