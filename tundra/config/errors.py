"""ConfigError: every way a configuration file can be wrong."""

from __future__ import annotations

from tundra.errors import TundraError

__all__ = ["ConfigError", "MissingDatabaseUrl"]


class ConfigError(TundraError):
    """A configuration file is unreadable, not TOML/JSON, or has a wrong value.

    The message names the file, the line or field, and what was expected, e.g.
    ``config.toml: dolt.port: expected int, got str "3306"``.
    """

    code = "config.invalid"
    http_status = 500
    default_hint = "run `tundra config validate` for every problem; `tundra config init` writes an example"


class MissingDatabaseUrl(ConfigError):
    """The seed's ``ConfigError::MissingDatabaseUrl``: an engine needs a URL/host and has none."""

    code = "config.missing_database_url"
