"""TerminalScrollback: a byte ring in which every byte keeps its absolute offset."""

from __future__ import annotations

from typing import final

__all__ = ["TerminalScrollback"]


@final
class TerminalScrollback:
    """The last ``capacity`` bytes a terminal produced.

    Offsets are absolute: byte ``n`` is the n-th byte ever written (from 0). The ring holds
    ``[start, end)``. Storage grows on demand up to ``capacity`` so an idle terminal does not
    pay for a full ring.
    """

    __slots__ = ("_buf", "_cap", "_end")

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be > 0")
        self._cap = capacity
        self._buf = bytearray()
        self._end = 0

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def end(self) -> int:
        """Absolute offset one past the newest byte (= total bytes written)."""
        return self._end

    @property
    def start(self) -> int:
        """Absolute offset of the oldest byte retained."""
        return max(0, self._end - self._cap)

    def __len__(self) -> int:
        return self._end - self.start

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; returns the absolute offset of its first byte."""
        first = self._end
        mv = memoryview(data)
        n = len(mv)
        if n == 0:
            return first
        cap = self._cap
        if n >= cap:
            # Only the tail survives; lay it out so that physical index == offset % cap.
            new_end = self._end + n
            tail = bytes(mv[n - cap :])
            p = (new_end - cap) % cap
            self._buf = bytearray(tail[cap - p :] + tail[: cap - p])
            self._end = new_end
            return first
        buf = self._buf
        if len(buf) < cap:
            # Growing phase: the ring has never wrapped, physical == absolute offset.
            room = cap - len(buf)
            take = min(room, n)
            buf += mv[:take]
            self._end += take
            mv = mv[take:]
            n -= take
            if n == 0:
                return first
        pos = self._end % cap
        first_part = min(n, cap - pos)
        buf[pos : pos + first_part] = mv[:first_part]
        rest = n - first_part
        if rest:
            buf[0:rest] = mv[first_part:]
        self._end += n
        return first

    def read(
        self, since: int | None = None, max_bytes: int | None = None
    ) -> tuple[int, bytes, int]:
        """Bytes from absolute offset ``since`` (None = oldest retained).

        Returns ``(start, data, lost)``: ``data`` begins at absolute ``start``; ``lost`` is
        how many bytes between ``since`` and ``start`` have already left the ring. An offset
        past the end reads nothing from the end.
        """
        lo = self.start
        if since is None:
            since = lo
        lost = 0
        if since < lo:
            lost = lo - since
            since = lo
        if since > self._end:
            since = self._end
        stop = self._end
        if max_bytes is not None and max_bytes >= 0:
            stop = min(stop, since + max_bytes)
        return since, self._slice(since, stop), lost

    def _slice(self, a: int, b: int) -> bytes:
        if b <= a:
            return b""
        cap = self._cap
        buf = self._buf
        if len(buf) < cap:
            return bytes(buf[a:b])
        pa = a % cap
        pb = pa + (b - a)
        if pb <= cap:
            return bytes(buf[pa:pb])
        return bytes(buf[pa:]) + bytes(buf[: pb - cap])
