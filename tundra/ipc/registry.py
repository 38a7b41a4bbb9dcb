"""The daemon's table of IPC methods: name -> params type + handler.

Services register their methods at start-up::

    registry.unary("term.new", TermNewParams, self.handle_new)
    registry.stream("term.attach", AttachParams, self.handle_attach)

A unary handler is ``async def h(ctx: CallContext, params: P) -> R`` (R any
msgspec-encodable value). A stream handler is
``async def h(ctx: CallContext, params: P, send: StreamSend) -> R``: it calls
``await send(item)`` for each pushed item and returns the final result; the client's
:class:`~tundra.ipc.protocol.Cancel` (or its disconnect) cancels it.
Handlers raise :class:`~tundra.errors.TundraError` subclasses for failures; anything else
becomes ``internal`` and is logged with its traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

if TYPE_CHECKING:
    from tundra.daemon.app import Daemon

__all__ = ["CallContext", "MethodRegistry", "MethodSpec", "StreamSend", "NoParams"]

P = TypeVar("P")
StreamSend = Callable[[Any], Awaitable[None]]


class NoParams(msgspec.Struct, forbid_unknown_fields=False):
    """Params of methods that take none."""


@dataclass
class CallContext:
    """Who is calling and what they can reach."""

    daemon: Daemon
    peer_pid: int
    peer_uid: int
    connection_id: int
    request_id: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec(Generic[P]):
    name: str
    params_type: type[P]
    handler: Callable[..., Awaitable[Any]]
    streaming: bool
    doc: str
    inline: bool = False
    """Runs on the connection's reader without a task of its own: only for handlers that
    never wait (a handler that waits would hold up that connection's other requests)."""


class MethodRegistry:
    """Method name -> :class:`MethodSpec`. Names are dotted: ``term.new``, ``llm.ask``."""

    def __init__(self) -> None:
        self._methods: dict[str, MethodSpec[Any]] = {}
        self._decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}

    def unary(
        self,
        name: str,
        params_type: type[P],
        handler: Callable[[CallContext, P], Awaitable[Any]],
        doc: str = "",
        *,
        inline: bool = False,
    ) -> None:
        self._add(MethodSpec(name, params_type, handler, False, doc or (handler.__doc__ or ""), inline))

    def stream(
        self,
        name: str,
        params_type: type[P],
        handler: Callable[[CallContext, P, StreamSend], Awaitable[Any]],
        doc: str = "",
    ) -> None:
        self._add(MethodSpec(name, params_type, handler, True, doc or (handler.__doc__ or "")))

    def _add(self, spec: MethodSpec[Any]) -> None:
        if spec.name in self._methods:
            raise ValueError(f"IPC method registered twice: {spec.name}")
        self._methods[spec.name] = spec
        self._decoders[spec.name] = msgspec.msgpack.Decoder(spec.params_type)

    def decode_params(self, name: str, raw: bytes) -> Any:
        """Params of ``name`` decoded with a decoder built once per method."""
        return self._decoders[name].decode(raw)

    def get(self, name: str) -> MethodSpec[Any] | None:
        return self._methods.get(name)

    def names(self) -> list[str]:
        return sorted(self._methods)
