"""``LlmError`` and its variants, with the seed's message texts.

=================  =======================  ===================================================
class              code                     message
=================  =======================  ===================================================
HttpError          llm.http                 ``HTTP error: <details>``
ApiError           llm.api                  ``API error (status N): <message>``
QuotaExhausted     llm.quota_exhausted      ``API error (status N): <message>`` (no retry)
RateLimited        llm.rate_limited         ``rate limited: retry after Ns``
Timeout            llm.timeout              ``request timed out``
ParseError         llm.parse                ``parse error: <details>``
Unsupported        llm.unsupported          ``unsupported: <details>``
MissingApiKey      llm.missing_api_key      ``profile `P`: API key not set (env VAR)``
ProfileNotFound    llm.profile_not_found    ``LLM profile not found: P``
NoProfileAvailable llm.no_profile_available ``no LLM profile available: a: <why>; b: <why>``
=================  =======================  ===================================================
"""

from __future__ import annotations

from typing import Any

from tundra.errors import TundraError
from tundra.harness.errors import format_duration

__all__ = [
    "LlmError",
    "HttpError",
    "ApiError",
    "QuotaExhausted",
    "RateLimited",
    "Timeout",
    "ParseError",
    "Unsupported",
    "MissingApiKey",
    "ProfileNotFound",
    "NoProfileAvailable",
]


class LlmError(TundraError):
    code = "llm.error"
    http_status = 502


class HttpError(LlmError):
    """Network-level failure: connect refused/reset, DNS, TLS, proxy."""

    code = "llm.http"
    http_status = 502
    default_hint = "check the profile's base_url and your network; other profiles take over"

    def __init__(self, detail: str) -> None:
        super().__init__(f"HTTP error: {detail}", details={"detail": detail})


class ApiError(LlmError):
    """The provider answered with an error status (and maybe a vendor error body)."""

    code = "llm.api"
    http_status = 502

    def __init__(self, status: int, message: str, *, error_type: str | None = None) -> None:
        details: dict[str, Any] = {"status": status}
        if error_type:
            details["error_type"] = error_type
        super().__init__(f"API error (status {status}): {message}", details=details)
        self.status = status
        self.error_type = error_type
        if status in (401, 403):
            self.hint = "check the profile's API key (api_key_env) and account status"

    @property
    def server_side(self) -> bool:
        """5xx and 529 (overloaded): the provider's fault -> failover + breaker failure."""
        return self.status >= 500


class QuotaExhausted(ApiError):
    """Spend/credit exhaustion (OpenAI ``insufficient_quota``, Anthropic
    ``enforced_spend_limit_reached``, OpenRouter 402): the profile is disabled until reset."""

    code = "llm.quota_exhausted"
    http_status = 402
    default_hint = "add credits or raise the spend limit, then `tundra llm reset <profile>`"


class RateLimited(LlmError):
    """The provider answered 429 (transient)."""

    code = "llm.rate_limited"
    http_status = 429
    default_hint = "the profile cools down; lower rate_limit_rpm/tpm in config/harness.toml"

    def __init__(self, retry_after: float | None) -> None:
        shown = format_duration(retry_after) if retry_after is not None else "unknown"
        super().__init__(
            f"rate limited: retry after {shown}", details={"retry_after": retry_after}
        )
        self.retry_after = retry_after


class Timeout(LlmError):
    code = "llm.timeout"
    http_status = 504
    default_hint = "raise the profile's timeout_secs or [router] deadline_secs"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__("request timed out", details={"detail": detail} if detail else None)


class ParseError(LlmError):
    """The response was not what the wire format promises (HTML page, bad JSON, cut stream)."""

    code = "llm.parse"
    http_status = 502

    def __init__(self, detail: str) -> None:
        super().__init__(f"parse error: {detail}")


class Unsupported(LlmError):
    code = "llm.unsupported"
    http_status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(f"unsupported: {detail}")


class MissingApiKey(LlmError):
    code = "llm.missing_api_key"
    http_status = 503

    def __init__(self, profile: str, env: str) -> None:
        super().__init__(
            f"profile `{profile}`: API key not set (environment variable {env} is empty)",
            hint=f"export {env}=... in the daemon's environment and restart it",
            details={"profile": profile, "env": env},
        )


class ProfileNotFound(LlmError):
    code = "llm.profile_not_found"
    http_status = 404
    default_hint = "see `tundra llm profiles`"

    def __init__(self, name: str) -> None:
        super().__init__(f"LLM profile not found: {name}", details={"profile": name})


class NoProfileAvailable(LlmError):
    """Every profile is cooling down, open, disabled or failed within the deadline."""

    code = "llm.no_profile_available"
    http_status = 503
    default_hint = "see `tundra llm circuits` for why each profile is refusing"

    def __init__(self, reasons: dict[str, str], *, retry_after: float | None = None) -> None:
        if reasons:
            listing = "; ".join(f"{k}: {v}" for k, v in reasons.items())
        else:
            listing = "no profiles configured (config/api_profiles.json)"
        super().__init__(
            f"no LLM profile available: {listing}",
            details={"profiles": reasons, "retry_after": retry_after},
        )
        self.reasons = reasons
        self.retry_after = retry_after
