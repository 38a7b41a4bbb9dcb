"""Supervision of the managed ``dolt sql-server`` child: init of a new dir, start, restart
after a crash, stop on cancellation, missing binary.

Dolt is not packaged in Debian, so these tests put a stand-in ``dolt`` on PATH: a shell script
that answers ``dolt init`` and, for ``dolt sql-server --host H --port P``, execs a real
``mariadbd`` on that port -- a real MySQL-protocol server process to start, kill and stop.
The Dolt-specific SQL (DOLT_COMMIT, dolt_log) is covered only where a real ``dolt`` exists
(tests/store/test_faults.py::test_managed_dolt_server_runs_and_migrates).
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
import trio

from tests.store.mariadb import free_port, mariadb_binaries
from tests.support import wait_for
from tundra.config.schema import DoltConfig
from tundra.paths import TundraPaths
from tundra.store.dolt import DoltServer
from tundra.store.errors import DoltNotFound, StoreError

SHIM = """#!/bin/sh
# Stand-in for `dolt` in tests: init makes .dolt, sql-server runs mariadbd.
set -e
case "$1" in
  init)
    echo "$@" > init-args
    mkdir -p .dolt
    ;;
  sql-server)
    host="$3"; port="$5"
    rm -rf "$PWD/mdb"
    cp -a "{template}" "$PWD/mdb"
    exec "{mariadbd}" --no-defaults --datadir="$PWD/mdb" --port="$port" --bind-address="$host" \\
      --socket="$PWD/mdb.sock" --pid-file="$PWD/mdb.pid" --skip-log-bin --innodb-buffer-pool-size=16M {user}
    ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture
def dolt_shim(mariadb_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bins = mariadb_binaries()
    assert bins is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "dolt"
    shim.write_text(
        SHIM.replace("{template}", str(mariadb_template))
        .replace("{mariadbd}", bins[0])
        .replace("{user}", "--user=root" if os.geteuid() == 0 else "")
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return shim


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_managed_server_inits_starts_restarts_and_stops(
    dolt_shim: Path, tmp_path: Path
) -> None:
    port = free_port()
    cfg = DoltConfig(
        manage=True, port=port, dir=str(tmp_path / "doltdir"), restart_backoff_max_secs=0.5
    )
    paths = TundraPaths(tmp_path / "home")
    errors: list[StoreError] = []
    server = DoltServer(cfg, paths, on_error=errors.append, backoff_base=0.05)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            await nursery.start(server.run)
        first = server.pid
        assert first is not None and server.running and _accepts(port)
        assert (tmp_path / "doltdir" / ".dolt").is_dir()
        assert (
            "--name Auto Tundra --email auto@tundra.local"
            in (tmp_path / "doltdir" / "init-args").read_text()
        )
        assert paths.logs_dir.joinpath("dolt-sql-server.log").exists()

        os.kill(first, signal.SIGKILL)  # the server crashes
        await wait_for(lambda: server.restarts >= 1, timeout=20, message="restart counted")
        await wait_for(
            lambda: server.running and server.pid not in (None, first),
            timeout=60,
            message="restarted",
        )
        assert _accepts(port)
        assert any("exited with" in e.message for e in errors)
        second = server.pid
        assert second is not None
        st = server.status()
        assert st["running"] and st["restarts"] == 1 and st["port"] == port
        nursery.cancel_scope.cancel()
    assert not _alive(second), "the server must be stopped when the daemon shuts down"
    assert server.pid is None


async def test_missing_dolt_binary_is_reported_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    cfg = DoltConfig(manage=True, port=free_port(), dir=str(tmp_path / "d"))
    errors: list[StoreError] = []
    server = DoltServer(
        cfg, TundraPaths(tmp_path / "home"), on_error=errors.append, backoff_base=0.05
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        await wait_for(lambda: errors, message="error reported")
        nursery.cancel_scope.cancel()
    assert isinstance(errors[0], DoltNotFound)
    assert errors[0].message.startswith("dolt not found on PATH")
    assert errors[0].hint is not None and "brew install dolt" in errors[0].hint
