"""An incremental Server-Sent Events decoder (the WHATWG event-stream format).

Fed raw bytes in whatever chunks the network delivers; yields complete events. Comment lines
(``: OPENROUTER PROCESSING``) are skipped. :meth:`SseDecoder.pending` tells whether the stream
stopped in the middle of an event -- a cut stream.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseEvent", "SseDecoder"]


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None


class SseDecoder:
    __slots__ = ("_buf", "_event", "_data", "_id", "_dirty")

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._dirty = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        out: list[SseEvent] = []
        buf = self._buf + chunk if self._buf else chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            ev = self._line(line.decode("utf-8", errors="replace"))
            if ev is not None:
                out.append(ev)
        self._buf = buf[start:]
        return out

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._dirty:
                return None
            ev = None
            if self._data:
                ev = SseEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event = ""
            self._data = []
            self._dirty = False
            return ev
        if line[0] == ":":
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        self._dirty = True
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        # "retry" and unknown fields are ignored, as the spec says.
        return None

    def pending(self) -> bool:
        """True when bytes or fields of an unfinished event are buffered."""
        return bool(self._buf.strip()) or bool(self._data)
