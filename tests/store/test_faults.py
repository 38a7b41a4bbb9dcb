"""Store faults: server killed mid-session, unreachable server at daemon start, port in use,
data dir not writable, access denied, missing database URL, the managed Dolt server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.store.conftest import PW_ENV, store_config
from tests.store.mariadb import MariaDB, free_port
from tests.support import REPO, start_daemon, wait_for
from tundra.config.errors import MissingDatabaseUrl
from tundra.config.schema import Config, StoreConfig
from tundra.paths import TundraPaths
from tundra.store.api import TaskRecord
from tundra.store.errors import PortInUse, StoreAccessDenied, StoreConnectError, StoreUnavailable
from tundra.store.ports import check_port_free, find_port_holder
from tundra.store.store import build_engine, open_store


def _task(tid: str) -> TaskRecord:
    return TaskRecord(id=tid, title=tid, prompt="p")


def _comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


async def test_server_killed_mid_session_reconnects_and_loses_no_acknowledged_write(
    mariadb_private: MariaDB, tmp_path: Path
) -> None:
    server = mariadb_private
    config = store_config(write_retry_secs=60.0, health_check_secs=0.1)
    acked: list[str] = []
    refused: list[str] = []
    states: list[str] = []
    async with open_store(
        config, TundraPaths(tmp_path), url=server.url("faults"), env={PW_ENV: server.password}
    ) as st:
        stop = trio.Event()

        async def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                tid = f"w{n}-{i}"
                i += 1
                try:
                    await st.tasks.insert(_task(tid))
                except StoreUnavailable:
                    refused.append(tid)  # raised to the caller: not acknowledged, not silent
                    continue
                acked.append(tid)

        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(writer, n)
            await wait_for(lambda: len(acked) >= 30, timeout=20, message="writes before the crash")
            await trio.to_thread.run_sync(server.kill)
            await wait_for(
                lambda: st.state == "unavailable", timeout=20, message="store unavailable"
            )
            states.append(st.state)
            assert st.last_error is not None
            assert "MySQL server on '127.0.0.1:" in st.last_error.message
            at_crash = len(acked)
            await trio.to_thread.run_sync(server.start)
            await wait_for(lambda: st.state == "ready", timeout=30, message="store ready again")
            await wait_for(
                lambda: len(acked) >= at_crash + 30, timeout=20, message="writes after the restart"
            )
            stop.set()
        stored = {t.id for t in await st.tasks.list()}
    missing = set(acked) - stored
    assert not missing, f"acknowledged writes lost: {sorted(missing)[:5]}"
    assert st.reconnects >= 1
    assert refused == [], (
        "with write_retry_secs=60 every write should have waited for the reconnect"
    )


async def test_write_while_down_fails_loudly_after_retry_window(
    mariadb_private: MariaDB, tmp_path: Path
) -> None:
    server = mariadb_private
    config = store_config(write_retry_secs=0.5, health_check_secs=0.1, backoff_base_secs=0.1)
    async with open_store(
        config, TundraPaths(tmp_path), url=server.url("loud"), env={PW_ENV: server.password}
    ) as st:
        await st.tasks.insert(_task("before"))
        await trio.to_thread.run_sync(server.kill)
        with pytest.raises(StoreUnavailable, match="MySQL server on '127.0.0.1:"):
            await st.tasks.insert(_task("during"))
        await trio.to_thread.run_sync(server.start)
        await st.wait_ready(timeout=30)
        assert await st.tasks.get("during") is None
        assert await st.tasks.get("before") is not None


async def test_unreachable_server_gives_seed_message_and_hint(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(StoreConnectError) as ei:
        async with open_store(
            store_config(), TundraPaths(tmp_path), url=f"mysql://root@127.0.0.1:{port}/x", env={}
        ):
            pass
    assert str(ei.value).startswith(f"Can't connect to MySQL server on '127.0.0.1:{port}'")
    assert ei.value.hint is not None and "is dolt sql-server running?" in ei.value.hint


async def test_wrong_password_is_access_denied(mariadb: MariaDB, tmp_path: Path) -> None:
    with pytest.raises(StoreAccessDenied, match=r"^Access denied for user 'tundra'@'127\.0\.0\.1'"):
        async with open_store(
            store_config(), TundraPaths(tmp_path), url=mariadb.url("x"), env={PW_ENV: "wrong"}
        ):
            pass


def test_mysql_engine_without_url_is_missing_database_url(tmp_path: Path) -> None:
    with pytest.raises(MissingDatabaseUrl, match="ConfigError::MissingDatabaseUrl"):
        build_engine(Config(store=StoreConfig(engine="mysql")), TundraPaths(tmp_path))


def test_cli_reports_missing_database_url(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[store]\nengine = "mysql"\n')
    proc = _tundra(tmp_path, "db", "status")
    assert proc.returncode == 2
    assert "ConfigError::MissingDatabaseUrl" in proc.stderr


def test_port_in_use_names_the_holder(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        found = find_port_holder(port)
        assert found is not None and found.pid == os.getpid()
        with pytest.raises(PortInUse) as ei:
            check_port_free("127.0.0.1", port)
    msg = str(ei.value)
    assert msg.startswith(
        f"Address already in use: port {port} is held by {_comm()} (pid {os.getpid()}); set [dolt] port = "
    )
    assert msg.endswith(" in config.toml")


async def test_daemon_starts_while_store_unreachable_and_reports_it() -> None:
    port = free_port()
    config = f'[store]\nurl = "mysql://root@127.0.0.1:{port}/db"\nbackoff_base_secs = 0.1\nbackoff_max_secs = 0.2\n'
    async with start_daemon(config=config) as d:
        assert (await d.call("ping"))["pid"] == d.pid
        st = await wait_for(
            lambda: _store_status_with_error(d), timeout=15, message="store error reported"
        )
        assert st["state"] in ("connecting", "unavailable")
        assert st["last_error"]["message"].startswith(
            f"Can't connect to MySQL server on '127.0.0.1:{port}'"
        )
        status = await d.call("status")
        assert status["services"]["store"]["state"] in ("connecting", "unavailable")


async def test_daemon_reports_unavailable_when_server_dies_and_recovers(
    mariadb_private: MariaDB,
) -> None:
    server = mariadb_private
    config = (
        f'[store]\nurl = "{server.url("daemon_db")}"\npassword_env = "{PW_ENV}"\n'
        "health_check_secs = 0.1\nbackoff_base_secs = 0.1\nbackoff_max_secs = 0.3\n"
    )
    async with start_daemon(config=config, env={PW_ENV: server.password}) as d:
        await wait_for(lambda: _store_state(d, "ready"), timeout=20, message="store ready")
        await trio.to_thread.run_sync(server.kill)
        st = await wait_for(
            lambda: _store_state(d, "unavailable"), timeout=20, message="store unavailable"
        )
        assert "MySQL server on '127.0.0.1:" in st["last_error"]["message"]
        assert (await d.call("ping"))["pid"] == d.pid, "daemon must keep serving IPC"
        await trio.to_thread.run_sync(server.start)
        st = await wait_for(
            lambda: _store_state(d, "ready"), timeout=30, message="store ready again"
        )
        assert st["reconnects"] >= 1


async def test_managed_dolt_port_in_use_is_reported_by_daemon() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = f"[dolt]\nmanage = true\nport = {port}\n[store]\nbackoff_base_secs = 0.1\n"
        async with start_daemon(config=config) as d:
            st = await wait_for(
                lambda: _store_status_with_error(d), timeout=15, message="port error reported"
            )
    assert st["state"] != "ready"
    assert st["last_error"]["code"] == "store.port_in_use"
    assert st["last_error"]["message"].startswith(
        f"Address already in use: port {port} is held by {_comm()} (pid {os.getpid()}); set [dolt] port = "
    )


def test_data_dir_not_writable_names_path_owner_and_mode(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    (tmp_path / "config.toml").write_text(f'[store]\nsqlite_path = "{ro}/sub/t.sqlite3"\n')
    wrapper: list[str] = []
    if os.geteuid() == 0:
        # root ignores mode bits; drop the capabilities that let it.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a directory unwritable")
        wrapper = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    try:
        proc = _tundra(tmp_path, "db", "migrate", wrapper=wrapper)
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert (
        f"error: Permission denied (os error 13): data dir {ro} is not writable (owner "
        in proc.stderr
    )
    assert "mode 0555)" in proc.stderr
    assert "hint: " in proc.stderr


async def test_managed_dolt_server_runs_and_migrates(tmp_path: Path) -> None:
    if shutil.which("dolt") is None:
        pytest.skip(
            "dolt is not on PATH (not packaged in Debian); the managed Dolt path is untested here"
        )
    port = free_port()
    config = (
        f'[dolt]\nmanage = true\nport = {port}\ndir = "{tmp_path / "dolt"}"\n'
        "[store]\nbackoff_base_secs = 0.2\n"
    )
    async with start_daemon(config=config, env={"HOME": str(tmp_path)}) as d:
        st = await wait_for(
            lambda: _store_state(d, "ready"), timeout=60, message="dolt store ready"
        )
        assert st["engine"] == "dolt" and st["dolt_server"]["running"]
        log = _tundra(d.home, "db", "log", "--json")
        assert "migration v1" in log.stdout
    assert (tmp_path / "dolt" / ".dolt").exists()


# -- helpers -----------------------------------------------------------------------------


async def _store_status(d: object) -> dict[str, object]:
    return await d.call("store.status")  # type: ignore[attr-defined, no-any-return]


async def _store_state(d: object, state: str) -> dict[str, object] | None:
    st = await _store_status(d)
    return st if st["state"] == state else None


async def _store_status_with_error(d: object) -> dict[str, object] | None:
    st = await _store_status(d)
    return st if st.get("last_error") else None


def _tundra(
    home: Path, *args: str, wrapper: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNDRA_")}
    env.update(TUNDRA_HOME=str(home), TUNDRA_SOCKET=str(home / "none.sock"), PYTHONPATH=str(REPO))
    return subprocess.run(
        [*(wrapper or []), sys.executable, "-m", "tundra", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_unix_socket_url_connects_and_missing_socket_fails_cleanly(
    mariadb: MariaDB, tmp_path: Path
) -> None:
    url = f"mysql://tundra@localhost/viasock?unix_socket={mariadb.socket}"
    async with open_store(
        store_config(), TundraPaths(tmp_path), url=url, env={PW_ENV: mariadb.password}
    ) as st:
        await st.settings.set("via", "socket")
        assert await st.settings.get("via") == "socket"
    missing = tmp_path / "nope.sock"
    with pytest.raises(StoreConnectError, match="nope.sock"):
        async with open_store(
            store_config(),
            TundraPaths(tmp_path),
            url=f"mysql://root@localhost/x?unix_socket={missing}",
            env={},
        ):
            pass
