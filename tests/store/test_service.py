"""The daemon's ``store`` service in-process: starts at once whatever the database does,
reports state and errors, publishes ``store.state``, exposes the repository API."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import msgspec
import pytest
import trio

from tests.store.conftest import PW_ENV
from tests.store.mariadb import MariaDB, free_port
from tests.support import wait_for
from tundra.config.schema import Config, DoltConfig, StoreConfig
from tundra.daemon.app import Daemon
from tundra.paths import TundraPaths
from tundra.store.api import StoreAPI, TaskRecord
from tundra.store.errors import StoreUnavailable
from tundra.store.service import StoreService


def _comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


def _daemon(tmp_path: Path, config: Config) -> Daemon:
    paths = TundraPaths(tmp_path / "home")
    paths.ensure()
    return Daemon(config, paths)


async def test_sqlite_service_is_ready_when_started_and_serves_the_api(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path, Config())
    svc = StoreService(daemon)
    api: StoreAPI = svc
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run, daemon)
        assert api.state == "ready"
        await api.tasks.insert(TaskRecord(id="t", title="t", prompt="p"))
        assert (await api.tasks.get("t")) is not None
        st = svc.status()
        assert (st["state"], st["engine"], st["schema_version"]) == ("ready", "sqlite", 1)
        assert daemon.paths.sqlite_file.exists()
        nursery.cancel_scope.cancel()


async def test_service_starts_at_once_with_unreachable_server_and_reports(tmp_path: Path) -> None:
    port = free_port()
    config = Config(
        store=StoreConfig(
            url=f"mysql://root@127.0.0.1:{port}/x",
            backoff_base_secs=0.05,
            backoff_max_secs=0.1,
            write_retry_secs=0.2,
        )
    )
    daemon = _daemon(tmp_path, config)
    svc = StoreService(daemon)
    async with daemon.events.subscribe(("store.",)) as events, trio.open_nursery() as nursery:
        with trio.fail_after(2):
            await nursery.start(svc.run, daemon)
        ev = await events.receive()
        assert ev.topic == "store.state" and ev.data["state"] == "unavailable"
        assert ev.data["error"]["code"] == "store.connect_failed"
        st = await wait_for(lambda: svc.status()["last_error"], message="last error")
        assert st["message"].startswith(f"Can't connect to MySQL server on '127.0.0.1:{port}'")
        assert "is dolt sql-server running?" in st["hint"]
        with pytest.raises(StoreUnavailable, match="Can't connect to MySQL server"):
            await svc.tasks.insert(TaskRecord(id="x"))
        nursery.cancel_scope.cancel()


async def test_service_connects_when_the_server_appears(
    mariadb_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = MariaDB(mariadb_template)
    try:
        config = Config(
            store=StoreConfig(
                url=server.url("late"),
                password_env=PW_ENV,
                backoff_base_secs=0.05,
                backoff_max_secs=0.2,
            )
        )
        monkeypatch.setenv(PW_ENV, server.password)
        daemon = _daemon(tmp_path, config)
        svc = StoreService(daemon)
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.run, daemon)
            await wait_for(
                lambda: svc.state == "unavailable", message="unavailable before the server runs"
            )
            await trio.to_thread.run_sync(server.start)
            await wait_for(
                lambda: svc.state == "ready", timeout=30, message="ready once the server runs"
            )
            await svc.settings.set("k", 1)
            assert await svc.settings.get("k") == 1
            nursery.cancel_scope.cancel()
    finally:
        server.cleanup()


async def test_config_error_leaves_service_running_and_unavailable(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path, Config(store=StoreConfig(engine="mysql")))
    svc = StoreService(daemon)
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run, daemon)
        st = svc.status()
        assert st["state"] == "unavailable"
        assert st["last_error"]["code"] == "config.missing_database_url"
        with pytest.raises(StoreUnavailable, match="MissingDatabaseUrl"):
            svc.tasks  # noqa: B018 -- the property raises
        nursery.cancel_scope.cancel()


async def test_managed_dolt_with_port_held_reports_holder(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = Config(
            dolt=DoltConfig(manage=True, port=port, dir=str(tmp_path / "dolt")),
            store=StoreConfig(backoff_base_secs=0.05),
        )
        daemon = _daemon(tmp_path, config)
        svc = StoreService(daemon)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(2):
                await nursery.start(svc.run, daemon)
            err = await wait_for(lambda: svc.status()["last_error"], message="port error")
            nursery.cancel_scope.cancel()
    comm = _comm()
    assert err["code"] == "store.port_in_use"
    assert err["message"].startswith(
        f"Address already in use: port {port} is held by {comm} (pid {os.getpid()})"
    )
    assert svc.state != "ready"
    assert msgspec.json.encode(svc.status())  # status is JSON-able
