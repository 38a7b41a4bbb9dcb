"""Configuration: schema, loading with precise errors, and the commented example."""

from tundra.config.errors import ConfigError, MissingDatabaseUrl
from tundra.config.loader import (
    ConfigProblem,
    convert_section,
    load_config,
    parse_config,
    read_toml,
)
from tundra.config.schema import Config

__all__ = [
    "Config",
    "ConfigError",
    "ConfigProblem",
    "MissingDatabaseUrl",
    "convert_section",
    "load_config",
    "parse_config",
    "read_toml",
]
