"""API profiles from ``config/api_profiles.json``: which provider, where, which key, which limits.

``{"profiles": [{"name", "provider", "base_url", "api_key_env", "default_model", "priority",
"enabled", "rate_limit_rpm", "rate_limit_tpm", "timeout_secs", "capabilities"}]}``.
Only ``name`` and ``provider`` are required; the rest default per provider. Keys are read from
the environment variable named by ``api_key_env`` at call time, never from the file.
A missing file means three default profiles (anthropic, openrouter, openai) -- usable as soon
as their key variables are set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from tundra.config.errors import ConfigError
from tundra.config.loader import convert_section

__all__ = [
    "ProviderKind",
    "ApiProfile",
    "ProfilesFile",
    "load_profiles",
    "parse_profiles",
    "default_profiles",
    "DEFAULT_MODELS",
    "CAPABILITIES",
]

FILENAME = "api_profiles.json"

ProviderKind = Literal["anthropic", "openai", "openrouter", "local"]

# Accepted spellings of provider kinds (the original used open_router/open_ai/custom).
_ALIASES = {"open_router": "openrouter", "open_ai": "openai", "custom": "local", "vllm": "local",
            "ollama": "local"}

DEFAULT_MODELS: dict[str, str] = {
    "anthropic": "claude-sonnet-4-20250514",
    "openrouter": "anthropic/claude-sonnet-4-20250514",
    "openai": "gpt-4o",
    "local": "qwen2.5-coder:14b",
}
DEFAULT_BASE_URLS: dict[str, str] = {
    "anthropic": "https://api.anthropic.com",
    "openrouter": "https://openrouter.ai/api",
    "openai": "https://api.openai.com",
    "local": "http://127.0.0.1:11434",
}
DEFAULT_KEY_ENVS: dict[str, str | None] = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "openai": "OPENAI_API_KEY",
    "local": None,
}
CAPABILITIES = ("streaming", "tools", "vision", "json_mode")
# The seed's feature table: local support is model-dependent, so only streaming by default.
DEFAULT_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "anthropic": ("streaming", "tools", "vision", "json_mode"),
    "openrouter": ("streaming", "tools", "vision", "json_mode"),
    "openai": ("streaming", "tools", "vision", "json_mode"),
    "local": ("streaming",),
}


class ApiProfile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    provider: ProviderKind
    base_url: str = ""
    api_key_env: str | None = ""
    """Empty string = the provider's usual variable; null = no key (local servers)."""
    default_model: str = ""
    priority: int = 0
    enabled: bool = True
    rate_limit_rpm: int | None = None
    rate_limit_tpm: int | None = None
    timeout_secs: float = 30.0
    capabilities: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: must not be empty")
        if self.timeout_secs <= 0:
            raise ValueError(f"timeout_secs: must be > 0, got {self.timeout_secs}")
        for f in ("rate_limit_rpm", "rate_limit_tpm"):
            v = getattr(self, f)
            if v is not None and v < 1:
                raise ValueError(f"{f}: must be >= 1 or null, got {v}")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: must start with http:// or https://, got {self.base_url!r}")
        for c in self.capabilities or []:
            if c not in CAPABILITIES:
                raise ValueError(f"capabilities: unknown capability {c!r}; expected {', '.join(CAPABILITIES)}")

    # Resolved views (defaults per provider) -----------------------------------------------
    @property
    def url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URLS[self.provider]).rstrip("/")

    @property
    def model(self) -> str:
        return self.default_model or DEFAULT_MODELS[self.provider]

    @property
    def key_env(self) -> str | None:
        if self.api_key_env == "":
            return DEFAULT_KEY_ENVS[self.provider]
        return self.api_key_env

    @property
    def caps(self) -> tuple[str, ...]:
        if self.capabilities is None:
            return DEFAULT_CAPABILITIES[self.provider]
        return tuple(self.capabilities)

    def api_key(self, env: Mapping[str, str] | None = None) -> str | None:
        """The key from the environment (None when unset or not needed)."""
        var = self.key_env
        if var is None:
            return None
        value = (os.environ if env is None else env).get(var, "")
        return value or None

    def key_problem(self, env: Mapping[str, str] | None = None) -> str | None:
        """Why the key is unusable, or None. Local servers do not need one."""
        var = self.key_env
        if var is None or self.provider == "local":
            return None
        if self.api_key(env) is None:
            return f"API key not set (environment variable {var} is empty)"
        return None


class ProfilesFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    profiles: list[ApiProfile] = msgspec.field(default_factory=list)


def default_profiles() -> list[ApiProfile]:
    return [
        ApiProfile(name="anthropic-primary", provider="anthropic", priority=0),
        ApiProfile(name="openrouter-backup", provider="openrouter", priority=1),
        ApiProfile(name="openai-backup", provider="openai", priority=2),
    ]


def parse_profiles(raw: bytes, filename: str = FILENAME) -> list[ApiProfile]:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ConfigError(
            f"{filename}: invalid JSON: {exc}",
            hint="fix the JSON syntax (no comments, no trailing commas)",
            details={"file": filename},
        ) from None
    if isinstance(data, dict):
        for p in data.get("profiles") or []:
            if isinstance(p, dict) and isinstance(p.get("provider"), str):
                p["provider"] = _ALIASES.get(p["provider"], p["provider"])
    parsed = convert_section(data, ProfilesFile, filename)
    seen: set[str] = set()
    for p in parsed.profiles:
        if p.name in seen:
            raise ConfigError(f"{filename}: profiles: duplicate name `{p.name}`",
                              details={"file": filename, "field": "profiles"})
        seen.add(p.name)
    # Stable: priority, then file order.
    return sorted(parsed.profiles, key=lambda p: p.priority)


def load_profiles(path: Path) -> list[ApiProfile]:
    """Blocking (file read): call from a worker thread inside the daemon."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return default_profiles()
    except OSError as exc:
        raise ConfigError(f"{FILENAME}: cannot read {path}: {exc.strerror}") from None
    return parse_profiles(raw)
