"""Per-profile usage (the seed's ``ProfileUsage``), persisted atomically to
``data/profile_usage.json`` so it survives restarts.

The file is a JSON array of ProfileUsage objects (``jq '.[] | {profile_id, total_requests}'``
works as in the seed). Writes go to a temp file in the same directory, are fsynced, then
``os.replace``d over the old file: a crash leaves either the old or the new file, never half.
Latency p50/p95 come from the last 256 calls of this process (the persisted figures are kept
until new calls arrive).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import deque
from pathlib import Path

import msgspec
import trio

from tundra.intelligence.api import ProfileUsage

__all__ = ["UsageTracker", "read_usage_file", "write_usage_file"]

log = logging.getLogger("tundra.intelligence.usage")

_SAMPLES = 256


def read_usage_file(path: Path) -> list[ProfileUsage]:
    """Blocking. A missing file is empty; a corrupt one is logged and ignored (usage is
    statistics, not worth refusing to start over)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        data = msgspec.json.decode(raw)
        if isinstance(data, dict):  # tolerate {"name": {...}} maps too
            data = list(data.values())
        return msgspec.convert(data, list[ProfileUsage])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return []


def write_usage_file(path: Path, entries: list[ProfileUsage]) -> None:
    """Blocking atomic write (temp file + fsync + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = msgspec.json.format(msgspec.json.encode(entries), indent=2) + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=".profile_usage.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


class UsageTracker:
    """In-memory counters + a dirty flag; :meth:`flush` persists (call from a trio task)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, ProfileUsage] = {}
        self._latency: dict[str, deque[float]] = {}
        self._dirty = False
        self._changed = trio.Event()
        self._limiter = trio.CapacityLimiter(1)

    def load_entries(self, entries: list[ProfileUsage]) -> None:
        for e in entries:
            self._entries[e.profile_id] = e

    def _entry(self, name: str) -> ProfileUsage:
        e = self._entries.get(name)
        if e is None:
            e = self._entries[name] = ProfileUsage(profile_id=name)
        return e

    def _touch(self) -> None:
        self._dirty = True
        self._changed.set()

    def record_success(self, name: str, tokens_in: int, tokens_out: int, latency_ms: float,
                       cost_usd: float) -> None:
        e = self._entry(name)
        e.total_requests += 1
        e.successes += 1
        e.total_tokens_in += tokens_in
        e.total_tokens_out += tokens_out
        e.estimated_spend_usd = round(e.estimated_spend_usd + cost_usd, 8)
        e.last_used = time.time()
        samples = self._latency.setdefault(name, deque(maxlen=_SAMPLES))
        samples.append(latency_ms)
        ordered = sorted(samples)
        e.latency_p50_ms = round(_percentile(ordered, 0.50), 3)
        e.latency_p95_ms = round(_percentile(ordered, 0.95), 3)
        self._touch()

    def record_error(self, name: str, message: str, *, rate_limited: bool = False,
                     tokens_in: int = 0, tokens_out: int = 0) -> None:
        e = self._entry(name)
        e.total_requests += 1
        e.total_errors += 1
        if rate_limited:
            e.total_rate_limits += 1
        e.total_tokens_in += tokens_in
        e.total_tokens_out += tokens_out
        e.last_used = time.time()
        e.last_error = message
        self._touch()

    def snapshot(self) -> list[ProfileUsage]:
        return [msgspec.structs.replace(e) for e in sorted(self._entries.values(), key=lambda e: e.profile_id)]

    def get(self, name: str) -> ProfileUsage | None:
        return self._entries.get(name)

    async def load(self) -> None:
        if self.path is None:
            return
        entries = await trio.to_thread.run_sync(read_usage_file, self.path, limiter=self._limiter)
        self.load_entries(entries)

    async def flush(self) -> None:
        """Persist if anything changed since the last flush."""
        if self.path is None or not self._dirty:
            return
        self._dirty = False
        entries = self.snapshot()
        try:
            await trio.to_thread.run_sync(write_usage_file, self.path, entries, limiter=self._limiter)
        except OSError as exc:
            self._dirty = True
            log.warning("cannot write %s: %s", self.path, exc)

    async def run_flusher(self, interval: float = 1.0) -> None:
        """Flush at most every ``interval`` seconds while changes arrive; until cancelled,
        then one last flush (shielded, bounded)."""
        try:
            while True:
                await self._changed.wait()
                self._changed = trio.Event()
                await trio.sleep(interval)
                await self.flush()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush()
