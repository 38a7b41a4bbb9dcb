"""The typed IPC contract of the LLM service (``llm.*`` methods), shared by daemon, CLI and bridge.

``llm.ask`` (unary) and ``llm.stream`` (stream) both take :class:`AskParams`:

* ``prompt`` (a single user message) **or** ``messages`` (``[{"role": "user"|"assistant",
  "content": "..."}]``); ``system`` optional;
* ``profile`` pins one profile (no failover); ``model`` overrides the profile's default model;
* ``max_tokens`` defaults to 1024; ``stream`` is ignored by ``llm.ask`` (the bridge may use it
  to choose between ``llm.ask`` and ``llm.stream``).

``llm.ask`` returns :class:`AskResult`. ``llm.stream`` pushes :class:`StreamDelta` items
(``{"type": "delta", "text": "..."}``) and returns the same :class:`AskResult` as its final result.

``llm.profiles`` -> ``{"profiles": [ProfileInfo]}``; ``llm.usage`` -> ``{"usage": [ProfileUsage]}``;
``llm.circuits`` -> ``{"circuits": [CircuitInfo]}``; ``llm.reset {profile?}`` ->
``{"reset": [names]}``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "ChatMessage",
    "AskParams",
    "Usage",
    "AskResult",
    "StreamDelta",
    "ProfileInfo",
    "ProfileUsage",
    "CircuitInfo",
    "ResetParams",
    "NameParams",
]


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    role: Literal["user", "assistant"]
    content: str


class AskParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Params of ``llm.ask`` / ``llm.stream`` (and the body of ``POST /api/llm/complete``)."""

    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    system: str | None = None
    profile: str | None = None
    model: str | None = None
    max_tokens: int = 1024
    stream: bool = False
    temperature: float | None = None


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0


class AskResult(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``llm.ask`` and final result of ``llm.stream``."""

    text: str
    profile: str
    model: str
    usage: Usage
    latency_ms: float
    stop_reason: str | None = None
    attempts: list[str] = msgspec.field(default_factory=list)
    """Profiles tried before this one succeeded, as ``"name: error"`` (empty = first try)."""


class StreamDelta(msgspec.Struct, frozen=True, kw_only=True):
    """One ``llm.stream`` item."""

    type: Literal["delta"] = "delta"
    text: str = ""


class ProfileInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    provider: str
    base_url: str
    default_model: str
    priority: int
    enabled: bool
    api_key_env: str | None
    key_present: bool
    problem: str | None
    """Why this profile cannot be used right now (missing key, disabled, quota exhausted)."""
    rate_limit_rpm: int | None
    rate_limit_tpm: int | None
    timeout_secs: float
    capabilities: list[str]


class ProfileUsage(msgspec.Struct, kw_only=True):
    """The seed's ``ProfileUsage`` (``data/profile_usage.json`` entries), plus latency figures."""

    profile_id: str
    total_requests: int = 0
    successes: int = 0
    total_errors: int = 0
    total_rate_limits: int = 0
    total_tokens_in: int = 0
    total_tokens_out: int = 0
    estimated_spend_usd: float = 0.0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    last_used: float | None = None
    last_error: str | None = None


class CircuitInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Why a profile is (not) accepting calls right now."""

    profile: str
    state: Literal["closed", "open", "half_open"]
    failure_count: int
    success_count: int
    opened_at: float | None
    """Epoch seconds of the last transition to Open."""
    until: float | None
    """Epoch seconds when the profile accepts calls again (circuit timeout or cooldown)."""
    cooldown_until: float | None
    cooldown_reason: str | None
    disabled: str | None
    """Set when quota/spend is exhausted: the profile is off until ``tundra llm reset``."""
    rpm_available: float | None
    rpm_capacity: float | None
    tpm_available: float | None
    tpm_capacity: float | None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


class ResetParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    profile: str | None = None


class NameParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    pass
