"""The daemon starts, answers ping, and stops cleanly on SIGTERM."""

from __future__ import annotations

import stat

from tests.support import start_daemon


async def test_daemon_answers_ping_and_stops_cleanly() -> None:
    async with start_daemon() as d:
        result = await d.call("ping")
        assert result["pong"] is True and result["pid"] == d.pid
        assert stat.S_IMODE(d.socket.stat().st_mode) == 0o600
        code = await d.stop()
        assert code == 0
        assert not d.socket.exists()
