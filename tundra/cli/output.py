"""Printing for CLI commands: human text or ``--json``, and errors as message + hint."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from tundra.errors import TundraError

__all__ = ["emit", "fail", "print_error", "to_jsonable"]


def to_jsonable(data: Any) -> Any:
    """Structs, bytes (as text when UTF-8, else base64 via msgspec) -> JSON-able builtins."""
    def enc_hook(obj: Any) -> Any:
        if isinstance(obj, bytes):
            try:
                return obj.decode()
            except UnicodeDecodeError:
                return obj.hex()
        raise NotImplementedError(type(obj))

    return msgspec.to_builtins(data, enc_hook=enc_hook)


def emit(args: Any, data: Any, human: Callable[[Any], str] | None = None) -> int:
    """Print ``data`` as JSON with ``--json``, else ``human(data)``; returns exit code 0."""
    if getattr(args, "json", False) or human is None:
        sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=False, default=str) + "\n")
    else:
        text = human(data)
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    return 0


def print_error(err: TundraError, *, as_json: bool = False) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"error": to_jsonable(err.to_dict())}, indent=2) + "\n")
        sys.stdout.flush()
        return
    sys.stderr.write(f"error: {err.message}\n")
    if err.hint:
        sys.stderr.write(f"hint: {err.hint}\n")
    sys.stderr.flush()


def fail(message: str, hint: str | None = None) -> TundraError:
    """Build a plain failure to ``raise`` from a command (exit 1)."""
    return TundraError(message, hint=hint)
