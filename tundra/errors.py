"""The root of Tundra's error tree and the stable error codes shared by IPC and HTTP.

Every failure a user can meet is a subclass of :class:`TundraError` with:

* ``code`` -- a stable, dotted identifier (``pty.at_capacity``) carried on the IPC and
  HTTP surfaces; clients rebuild the typed exception from it;
* ``http_status`` -- the status the bridge answers with;
* a message whose text follows the troubleshooting guide (the seed);
* an optional one-line ``hint`` the CLI prints under the message.

Errors are raised where they happen and only mapped to codes at the I/O boundary.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["TundraError", "InternalError", "UsageError", "error_class_for_code", "all_error_codes"]

_REGISTRY: dict[str, type[TundraError]] = {}


class TundraError(Exception):
    """Root of every error Tundra raises on purpose."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    default_hint: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.details: dict[str, Any] = dict(details or {})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The most specific class registered for a code wins when the code is reused
        # only if it is declared on the class itself.
        if "code" in cls.__dict__:
            _REGISTRY[cls.code] = cls

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The wire shape used by IPC error frames and HTTP error bodies."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_wire(
        cls, code: str, message: str, hint: str | None = None, details: dict[str, Any] | None = None
    ) -> TundraError:
        """Rebuild a typed error received from the daemon (client side)."""
        klass = _REGISTRY.get(code, TundraError)
        err = klass.__new__(klass)
        TundraError.__init__(err, message, hint=hint, details=details)
        if klass is TundraError and code != TundraError.code:
            # Unknown code (newer daemon): keep the code the peer sent.
            err.code = code  # type: ignore[misc]
        return err


_REGISTRY[TundraError.code] = TundraError


class InternalError(TundraError):
    """A bug: something failed that should not have. The daemon logs the traceback."""

    code = "internal"
    http_status = 500


class UsageError(TundraError):
    """The user asked for something malformed (bad CLI argument, bad request field)."""

    code = "usage"
    http_status = 400


def error_class_for_code(code: str) -> type[TundraError]:
    """The exception class registered for a stable code (``TundraError`` if unknown)."""
    return _REGISTRY.get(code, TundraError)


def all_error_codes() -> dict[str, type[TundraError]]:
    """Every registered code -> class; used by docs and the export test."""
    return dict(_REGISTRY)
