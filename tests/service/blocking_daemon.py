"""The real daemon plus one test-only IPC method, ``test.block_loop {secs}``, that blocks the
trio loop with ``time.sleep`` -- what a buggy blocking call would do. Used to prove that the
systemd watchdog pings come from the event loop (they stop while it is blocked), so systemd
would restart a wedged daemon. Run as a script: ``python blocking_daemon.py``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import msgspec
import trio

import tundra.daemon.run as run
from tundra.daemon.app import Daemon
from tundra.ipc.registry import CallContext, MethodRegistry


class BlockParams(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    secs: float


class LoopBlocker:
    name = "loop_blocker"

    def register(self, registry: MethodRegistry) -> None:
        async def block(ctx: CallContext, params: BlockParams) -> dict[str, Any]:
            time.sleep(params.secs)  # deliberately blocking the loop  # noqa: ASYNC251
            return {"blocked": params.secs}

        registry.unary("test.block_loop", BlockParams, block)

    async def run(self, daemon: Daemon, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def status(self) -> dict[str, Any]:
        return {"state": "ready"}

    def reload(self, config: Any) -> None:
        pass


_real_build = run.build_services


def _build(daemon: Daemon) -> list[Any]:
    return [*_real_build(daemon), LoopBlocker()]


if __name__ == "__main__":
    run.build_services = _build  # type: ignore[assignment]
    sys.exit(run.run_daemon(run.DaemonOptions()))
