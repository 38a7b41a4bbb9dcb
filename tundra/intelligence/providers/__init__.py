"""LLM provider clients over one shared ``httpx.AsyncClient``: Anthropic Messages API and the
OpenAI Chat Completions format (OpenAI, OpenRouter, local OpenAI-compatible servers)."""

from __future__ import annotations

import httpx

from tundra.intelligence.profiles import ApiProfile
from tundra.intelligence.providers.anthropic import AnthropicProvider
from tundra.intelligence.providers.base import (
    Completion,
    DeltaCallback,
    LlmRequest,
    Provider,
    ToolCall,
    ToolSpec,
)
from tundra.intelligence.providers.openai_compat import OpenAICompatProvider

__all__ = [
    "Completion",
    "DeltaCallback",
    "LlmRequest",
    "Provider",
    "ToolCall",
    "ToolSpec",
    "AnthropicProvider",
    "OpenAICompatProvider",
    "make_provider",
    "make_http_client",
]


def make_provider(profile: ApiProfile, client: httpx.AsyncClient) -> Provider:
    if profile.provider == "anthropic":
        return AnthropicProvider(profile, client)
    return OpenAICompatProvider(profile, client)


def make_http_client(max_connections: int = 100) -> httpx.AsyncClient:
    """The process-wide client: pooled keep-alive connections, no env proxies surprises for
    loopback, per-request timeouts set by each provider call."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=32),
        timeout=httpx.Timeout(30.0, connect=5.0),
        follow_redirects=False,
    )
