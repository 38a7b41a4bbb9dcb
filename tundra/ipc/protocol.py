"""The IPC wire protocol: the envelope frames both sides exchange.

A frame is a 4-byte big-endian length followed by a msgpack body (msgspec), capped at
:data:`MAX_FRAME` bytes. Bodies are tagged unions (field ``t``). The first frame each way is
:class:`Hello`. After it the client sends :class:`Request` (and :class:`Cancel` for
streams); the daemon answers each request id with zero or more :class:`StreamItem` frames
followed by exactly one :class:`Response` or :class:`ErrorReply`. Many requests may be in
flight on one connection.

Method parameters and results are Structs declared next to the service that implements
them; on the wire ``params``/``result`` are nested msgpack values (``msgspec.Raw`` on
receipt, so each side decodes them once into the right type).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_FRAME",
    "Hello",
    "Request",
    "Cancel",
    "Response",
    "ErrorReply",
    "StreamItem",
    "ClientFrame",
    "ServerFrame",
]

PROTOCOL_VERSION = 1
MAX_FRAME = 16 * 1024 * 1024


class _Frame(msgspec.Struct, tag_field="t", tag=str.lower, kw_only=True, omit_defaults=True):
    pass


class Hello(_Frame):
    protocol_version: int
    agent: str = ""
    """Who is speaking: ``tundra-cli/0.1.0``, ``tundra-daemon/0.1.0``..."""
    pid: int = 0


class Request(_Frame):
    id: int
    method: str
    params: msgspec.Raw = msgspec.Raw(b"\x80")  # msgpack {} by default


class Cancel(_Frame):
    id: int


class Response(_Frame):
    id: int
    result: msgspec.Raw = msgspec.Raw(b"\xc0")  # msgpack nil


class ErrorReply(_Frame):
    id: int
    """0 = a connection-level error (the daemon closes the connection after it)."""
    code: str
    message: str
    hint: str | None = None
    details: dict[str, Any] | None = None


class StreamItem(_Frame):
    id: int
    data: msgspec.Raw


ClientFrame = Hello | Request | Cancel
ServerFrame = Hello | Response | ErrorReply | StreamItem
