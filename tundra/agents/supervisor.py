"""Stuck detection for a running agent: quiet for ``stuck_after`` and the screen not changing.

The supervisor samples the tail of the agent's output every ``stuck_after / 3`` seconds. The
agent is stuck when nothing was output for ``stuck_after`` *and* the last three samples are
identical (the seed's detector: no change for 300 s, last 3 outputs identical).
"""

from __future__ import annotations

from collections import deque

__all__ = ["StuckDetector", "WINDOWS", "TAIL_BYTES"]

WINDOWS = 3
TAIL_BYTES = 2048


class StuckDetector:
    def __init__(self, stuck_after: float) -> None:
        self.stuck_after = stuck_after
        self._samples: deque[bytes] = deque(maxlen=WINDOWS)

    @property
    def interval(self) -> float:
        return self.stuck_after / WINDOWS

    def observe(self, tail: bytes, *, quiet_for: float) -> bool:
        """Record one output window; True when the agent looks stuck."""
        self._samples.append(tail)
        return (
            quiet_for >= self.stuck_after
            and len(self._samples) == WINDOWS
            and len(set(self._samples)) == 1
        )

    def reset(self) -> None:
        self._samples.clear()
