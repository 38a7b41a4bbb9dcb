"""`tundra doctor` against a real daemon: healthy, stopped, loose socket, bad config, full disk."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

from tests.support import REPO, start_daemon, wait_for
from tundra.paths import TundraPaths
from tundra.service.doctor import (
    DoctorOptions,
    _State,
    check_logs,
    check_store,
    check_zombies,
    daemon_descendants,
    port_holder,
    run_doctor,
)

# A profile that needs no key: "all ✓" must not depend on the developer's API keys.
LOCAL_PROFILES = json.dumps(
    {
        "profiles": [
            {
                "name": "local",
                "provider": "local",
                "base_url": "http://127.0.0.1:9",
                "api_key_env": None,
            }
        ]
    }
)


def _env(home: Path, sock: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TUNDRA_", "NOTIFY_", "LISTEN_", "WATCHDOG_"))
    }
    env.update(TUNDRA_HOME=str(home), TUNDRA_SOCKET=str(sock), PYTHONPATH=str(REPO))
    env.update(extra)
    return env


async def _doctor(
    env: dict[str, str], *args: str, preexec: Any = None
) -> tuple[int, dict[str, Any]]:
    proc = await trio.run_process(
        [sys.executable, "-m", "tundra", "doctor", "--json", "--offline", *args],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        preexec_fn=preexec,
    )
    return proc.returncode, json.loads(proc.stdout)


def _by_name(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in report["checks"]:
        out.setdefault(c["name"], []).append(c)
    return out


def _status(report: dict[str, Any], name: str) -> set[str]:
    return {c["status"] for c in _by_name(report)[name]}


def _prepare_home(home: Path) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "api_profiles.json").write_text(LOCAL_PROFILES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_doctor_reports_all_green_against_a_healthy_daemon_and_bridge(
    short_dir: Path,
) -> None:
    base = short_dir
    home = base / "home"
    _prepare_home(home)
    port = _free_port()
    (home / "config.toml").write_text(f"[bridge]\nport = {port}\n")
    async with start_daemon(home) as d:
        env = _env(d.home, d.socket)
        bridge = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tundra", "bridge"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:

            async def bridge_up() -> bool:
                try:
                    async with httpx.AsyncClient() as c:
                        r = await c.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
                    return r.status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(bridge_up, timeout=20, message="bridge health")
            code, report = await _doctor(env, "--strict")
        finally:
            bridge.terminate()
            await bridge.wait()
    checks = _by_name(report)
    bad = [c for c in report["checks"] if c["status"] in ("warn", "fail")]
    assert bad == [], bad
    assert code == 0
    for name in (
        "config",
        "daemon",
        "socket",
        "lock",
        "store",
        "bridge",
        "disk",
        "dirs",
        "api-keys",
        "pty",
        "fds",
        "zombies",
        "circuits",
    ):
        assert _status(report, name) == {"ok"}, (name, checks[name])
    assert f"pid {d.pid}" in checks["daemon"][0]["summary"]
    assert f"http://127.0.0.1:{port}" in checks["bridge"][0]["summary"]
    assert checks["providers"][0]["status"] == "skip"  # --offline


async def test_doctor_fails_when_the_daemon_is_stopped(short_dir: Path) -> None:
    base = short_dir
    _prepare_home(base / "home")
    async with start_daemon(base / "home") as d:
        env = _env(d.home, d.socket)
        assert await d.stop() == 0
        code, report = await _doctor(env)
    assert code == 1
    daemon = _by_name(report)["daemon"][0]
    assert daemon["status"] == "fail"
    assert "daemon not running" in daemon["summary"]
    assert "tundra daemon" in daemon["fix"]


async def test_doctor_flags_a_0644_socket_with_the_chmod_fix(short_dir: Path) -> None:
    base = short_dir
    _prepare_home(base / "home")
    async with start_daemon(base / "home") as d:
        d.socket.chmod(0o644)
        code, report = await _doctor(_env(d.home, d.socket))
    assert code == 1
    sock = _by_name(report)["socket"][0]
    assert sock["status"] == "fail"
    assert "mode 0644 (expected 0600)" in sock["summary"]
    assert f"chmod 600 {d.socket}" in sock["fix"]


async def test_doctor_names_the_invalid_config_field(short_dir: Path) -> None:
    home = short_dir
    _prepare_home(home)
    (home / "config.toml").write_text('[dolt]\nport = "3306"\n')
    code, report = await _doctor(_env(home, home / "d.sock"))
    assert code == 1
    config = [c for c in _by_name(report)["config"] if c["status"] == "fail"]
    assert config and 'config.toml: dolt.port: expected int, got str "3306"' in config[0]["summary"]
    # An invalid config is also reported by the human output with its fix on the same line.
    proc = await trio.run_process(
        [sys.executable, "-m", "tundra", "doctor", "--offline"],
        env=_env(home, home / "d.sock"),
        capture_stdout=True,
        check=False,
    )
    line = next(x for x in proc.stdout.decode().splitlines() if x.startswith("✗ config"))
    assert "dolt.port" in line and "fix:" in line


async def test_doctor_reports_a_full_disk_below_the_threshold(short_dir: Path) -> None:
    home = short_dir
    _prepare_home(home)
    env = _env(home, home / "d.sock", TUNDRA_DOCTOR_MIN_FREE_BYTES=str(1 << 60))
    code, report = await _doctor(env)
    assert code == 1
    disk = _by_name(report)["disk"][0]
    assert disk["status"] == "fail" and "need >=" in disk["summary"]
    # The flag overrides the environment: a tiny threshold passes.
    _, report = await _doctor(env, "--min-free-gb", "0.001")
    assert _by_name(report)["disk"][0]["status"] == "ok"


async def test_doctor_computes_safe_max_ptys_from_the_fd_limit(short_dir: Path) -> None:
    home = short_dir
    _prepare_home(home)
    (home / "config.toml").write_text("[daemon]\nmax_ptys = 500\n")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    code, report = await _doctor(_env(home, home / "d.sock"), preexec=low_limit)
    fds = _by_name(report)["fds"][0]
    assert fds["status"] == "fail"
    assert "safe max_ptys <= 100, configured 500" in fds["summary"]
    assert "max_ptys <= 100" in fds["fix"]
    assert code == 1


def test_doctor_strict_turns_warnings_into_failure(tmp_path: Path, short_dir: Path) -> None:
    home = short_dir
    # Default profiles need keys that this environment does not have -> a warning.
    env = {"TUNDRA_HOME": str(home), "TUNDRA_SOCKET": str(home / "d.sock")}
    report = run_doctor(TundraPaths(home), env=env, options=DoctorOptions(offline=True))
    keys = [c for c in report.checks if c.name == "api-keys"][0]
    assert keys.status == "warn" and "ANTHROPIC_API_KEY" in keys.summary
    assert report.exit_code(strict=True) == 1
    assert report.counts["fail"] >= 1  # daemon not running


async def test_zombie_check_finds_defunct_children_of_the_daemon_pid() -> None:
    # `sh` forks a short child then execs into sleep, which never reaps it: a real zombie.
    proc = await trio.lowlevel.open_process(["sh", "-c", "true & exec sleep 30"])
    try:
        await wait_for(
            lambda: any(state == "Z" for _pid, state, _comm in daemon_descendants(proc.pid)),
            message="zombie child",
        )
        state = _State(TundraPaths(Path("/nonexistent")), {}, DoctorOptions())
        state.daemon_pid = proc.pid
        [check] = check_zombies(state)
        assert check.status == "warn"
        assert f"1 defunct under daemon pid {proc.pid}" in check.summary
        assert "restart" in check.fix
    finally:
        proc.kill()
        await proc.wait()


def test_port_holder_names_the_listening_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        holder = port_holder(port)
    assert holder is not None and holder[0] == os.getpid()


def test_doctor_never_prints_key_values(tmp_path: Path, short_dir: Path) -> None:
    home = short_dir
    secret = "sk-ant-doctor-must-not-print-this-0123456789"
    env = {"TUNDRA_HOME": str(home), "ANTHROPIC_API_KEY": secret}
    proc = subprocess.run(
        [sys.executable, "-m", "tundra", "doctor", "--offline", "--json"],
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert secret not in proc.stdout + proc.stderr
    assert "ANTHROPIC_API_KEY" in proc.stdout


def test_doctor_reports_stale_socket_lock_and_a_readable_bridge_token(short_dir: Path) -> None:
    home = short_dir
    _prepare_home(home)
    sock = home / "d.sock"
    # A socket file nobody listens on (a daemon killed with -9 leaves one).
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()
    sock.chmod(0o600)
    # A lock naming a process that is gone; nobody holds the flock.
    (home / "daemon.lock").write_text(json.dumps({"pid": 999999, "socket": str(sock)}))
    token = home / "bridge.token"
    token.write_text("t" * 32)
    token.chmod(0o644)
    env = {"TUNDRA_HOME": str(home), "TUNDRA_SOCKET": str(sock)}
    report = run_doctor(TundraPaths(home), env=env, options=DoctorOptions(offline=True))
    by = {c.name: c for c in report.checks}
    assert by["socket"].status == "warn" and "stale socket" in by["socket"].summary
    assert f"rm {sock}" in by["socket"].fix
    assert by["lock"].status == "warn" and "pid 999999" in by["lock"].summary
    [token_check] = [c for c in report.checks if c.name == "bridge" and c.status == "fail"]
    assert "mode 0644" in token_check.summary and "chmod 600" in token_check.fix
    assert "t" * 32 not in json.dumps(msgspec.to_builtins(report))


def test_store_check_reports_pending_migrations_and_the_port_holder() -> None:
    state = _State(TundraPaths(Path("/nonexistent")), {}, DoctorOptions())
    state.status = {
        "store": {"state": "ready", "engine": "sqlite", "schema_version": 1, "latest_version": 3},
        "services": {"store": {}},
    }
    [check] = check_store(state)
    assert check.status == "warn" and "2 migration(s) pending" in check.summary
    assert check.fix == "tundra db migrate"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        state.status = {
            "store": {
                "state": "unavailable",
                "engine": "dolt",
                "port": port,
                "last_error": f"Address already in use: port {port}",
            },
            "services": {"store": {}},
        }
        [check] = check_store(state)
    assert check.status == "fail" and "Address already in use" in check.summary
    assert f"(pid {os.getpid()})" in check.fix and f"port {port} is held by" in check.fix


def test_doctor_counts_recent_errors_in_the_log(short_dir: Path) -> None:
    import time as _time

    logs = short_dir / "logs"
    logs.mkdir()
    now = _time.strftime("%Y-%m-%dT%H:%M:%S.000Z", _time.gmtime())
    (logs / "daemon.log").write_text(
        "2020-01-01T00:00:00.000Z ERROR tundra.old: long ago\n"
        f"{now}  INFO tundra.daemon: fine\n"
        f"{now} ERROR tundra.store: store unavailable: connection refused\n"
        "Traceback (most recent call last):\n  ...\n"
    )
    state = _State(TundraPaths(short_dir), {}, DoctorOptions())
    [check] = check_logs(state)
    assert check.status == "warn"
    assert (
        check.summary
        == "1 error(s) in the last hour, latest: tundra.store: store unavailable: connection refused"
    )
    (logs / "daemon.log").write_text(f"{now}  INFO tundra.daemon: fine\n")
    assert check_logs(state)[0].status == "ok"
