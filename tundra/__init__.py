"""Tundra: a trio daemon that runs AI coding agents and terminals."""

__version__ = "0.1.0"

__all__ = ["__version__"]
