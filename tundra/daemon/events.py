"""A small in-process event bus: services publish, IPC subscribers (`events.subscribe`) read.

``publish`` never blocks and never fails: each subscriber has a bounded buffer, and one
that falls behind is closed with ``lagged`` instead of slowing the publisher.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

__all__ = ["Event", "EventBus"]


class Event(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    topic: str
    """Dotted: ``terminal.created``, ``terminal.status``, ``task.state``..."""
    ts: float
    data: dict[str, Any]


class _Subscriber:
    __slots__ = ("prefixes", "send", "lagged")

    def __init__(self, prefixes: tuple[str, ...], send: trio.MemorySendChannel[Event]) -> None:
        self.prefixes = prefixes
        self.send = send
        self.lagged = False


class EventBus:
    def __init__(self, buffer: int = 1024) -> None:
        self._buffer = buffer
        self._subs: set[_Subscriber] = set()
        self._seq = itertools.count(1)

    def publish(self, topic: str, data: dict[str, Any]) -> Event:
        ev = Event(seq=next(self._seq), topic=topic, ts=time.time(), data=data)
        for sub in list(self._subs):
            if sub.prefixes and not any(topic.startswith(p) for p in sub.prefixes):
                continue
            try:
                sub.send.send_nowait(ev)
            except trio.WouldBlock:
                sub.lagged = True
                sub.send.close()
                self._subs.discard(sub)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._subs.discard(sub)
        return ev

    @asynccontextmanager
    async def subscribe(
        self, prefixes: tuple[str, ...] = ()
    ) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """Receive events whose topic starts with one of ``prefixes`` (all when empty).

        When the subscriber lags, the channel ends; check :meth:`was_lagged`.
        """
        send, recv = trio.open_memory_channel[Event](self._buffer)
        sub = _Subscriber(prefixes, send)
        self._subs.add(sub)
        try:
            async with recv:
                yield recv
        finally:
            self._subs.discard(sub)
            send.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
