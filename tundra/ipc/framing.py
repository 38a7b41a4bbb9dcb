"""Length-prefixed frames, sans-IO: a 4-byte big-endian length, then a msgpack body.

:class:`FrameDecoder` is fed raw bytes and yields complete bodies; it rejects a length
above the cap *before* buffering the body, so a hostile prefix of 2**31 costs nothing.
Both the trio server/client and the blocking client use it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from tundra.ipc.errors import FrameTooLarge
from tundra.ipc.protocol import MAX_FRAME

__all__ = ["FrameDecoder", "frame", "HEADER"]

HEADER = struct.Struct(">I")


def frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length (raises FrameTooLarge above the cap)."""
    if len(body) > MAX_FRAME:
        raise FrameTooLarge(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Accumulates bytes; :meth:`frames` yields each complete body in order."""

    __slots__ = ("_buf", "_need", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._need: int | None = None
        self.max_frame = max_frame

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def in_frame(self) -> bool:
        """True when a partial frame is buffered (EOF now means a truncated frame)."""
        return bool(self._buf) or self._need is not None

    def frames(self) -> Iterator[bytes]:
        buf = self._buf
        while True:
            if self._need is None:
                if len(buf) < 4:
                    return
                (n,) = HEADER.unpack_from(buf)
                if n > self.max_frame:
                    raise FrameTooLarge(
                        f"frame length {n} exceeds the {self.max_frame}-byte limit"
                    )
                del buf[:4]
                self._need = n
            n = self._need
            if len(buf) < n:
                return
            body = bytes(buf[:n])
            del buf[:n]
            self._need = None
            yield body
