"""`tundra doctor`: the seed's Quick Health Check as one command.

Each check answers ✓ (ok), ! (warn), ✗ (fail) or - (skipped) with the fix on the same line.
Checks run in the CLI process (synchronous, each bounded by a timeout); they never print or
return a secret -- API keys are reported by variable *name* only.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import resource
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec

from tundra import __version__
from tundra.errors import TundraError
from tundra.paths import TundraPaths, socket_path

__all__ = [
    "Check",
    "DoctorOptions",
    "DoctorReport",
    "run_doctor",
    "format_report",
    "MIN_FREE_BYTES",
    "MIN_FREE_ENV",
    "port_holder",
    "daemon_descendants",
]

Status = Literal["ok", "warn", "fail", "skip"]
MARKS: dict[str, str] = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}
MIN_FREE_BYTES = 1 << 30
MIN_FREE_ENV = "TUNDRA_DOCTOR_MIN_FREE_BYTES"
"""Override of the free-space threshold (bytes), e.g. to simulate a full disk in tests."""
IPC_TIMEOUT_SECS = 5.0
HTTP_TIMEOUT_SECS = 3.0
FDS_PER_PTY = 3
"""The seed's formula: a PTY costs its master fd plus the reader/writer plumbing."""


class Check(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    status: Status
    summary: str
    fix: str = ""
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class DoctorOptions(msgspec.Struct, frozen=True, kw_only=True):
    offline: bool = False
    """Skip provider reachability (no request leaves the machine)."""
    min_free_bytes: int = MIN_FREE_BYTES


class DoctorReport(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    home: str
    socket: str
    checks: list[Check]
    counts: dict[str, int]

    def exit_code(self, strict: bool = False) -> int:
        if self.counts.get("fail", 0):
            return 1
        if strict and self.counts.get("warn", 0):
            return 1
        return 0


class _State:
    """What earlier checks learned and later ones use (config, daemon status, pid)."""

    def __init__(self, paths: TundraPaths, env: Mapping[str, str], options: DoctorOptions) -> None:
        self.paths = paths
        self.env = env
        self.options = options
        self.config: Any = None
        self.socket: Path | None = None
        self.socket_error: str = ""
        self.status: dict[str, Any] | None = None
        self.daemon_error: TundraError | None = None
        self.daemon_pid: int = 0


def _ok(name: str, summary: str, **details: Any) -> Check:
    return Check(name=name, status="ok", summary=summary, details=details)


def _warn(name: str, summary: str, fix: str, **details: Any) -> Check:
    return Check(name=name, status="warn", summary=summary, fix=fix, details=details)


def _fail(name: str, summary: str, fix: str, **details: Any) -> Check:
    return Check(name=name, status="fail", summary=summary, fix=fix, details=details)


def _skip(name: str, summary: str, **details: Any) -> Check:
    return Check(name=name, status="skip", summary=summary, details=details)


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


# --- checks --------------------------------------------------------------------------------


def check_config(s: _State) -> list[Check]:
    from tundra.config import load_config

    out: list[Check] = []
    try:
        s.config = load_config(s.paths.config_file)
        where = s.paths.config_file if s.paths.config_file.exists() else "defaults (no config.toml)"
        out.append(_ok("config", f"config.toml valid ({where})"))
    except TundraError as exc:
        out.append(
            _fail("config", exc.message, exc.hint or "fix the file, then `tundra config validate`")
        )
    loaders: list[tuple[str, Path, Callable[[Path], object]]] = []
    try:
        from tundra.harness.config import load_harness

        loaders.append(("harness.toml", s.paths.harness_file, load_harness))
    except ImportError:
        pass
    try:
        from tundra.intelligence.profiles import load_profiles

        loaders.append(("api_profiles.json", s.paths.api_profiles_file, load_profiles))
    except ImportError:
        pass
    for label, path, load in loaders:
        try:
            load(path)
        except TundraError as exc:
            out.append(_fail("config", exc.message, exc.hint or f"fix {path}"))
            continue
        if path.exists():
            out.append(_ok("config", f"{label} valid"))
    try:
        s.socket = socket_path(s.config.daemon.socket_path if s.config else None, env=dict(s.env))
    except TundraError as exc:
        s.socket_error = exc.message
        out.append(_fail("socket", exc.message, exc.hint or "set TUNDRA_SOCKET to a shorter path"))
    return out


def check_daemon(s: _State) -> list[Check]:
    from tundra.ipc.client import BlockingClient

    if s.socket is None:
        return [_fail("daemon", "cannot resolve the socket path", "see the socket check above")]
    try:
        with BlockingClient(s.socket, timeout=IPC_TIMEOUT_SECS) as client:
            s.status = client.call("status", result_type=dict[str, Any])
    except TundraError as exc:
        s.daemon_error = exc
        fix = "start it: `tundra service start` if installed as a service, else `tundra daemon`"
        if "permission denied" in exc.message:
            fix = f"the socket belongs to another user; run as its owner or fix `ls -l {s.socket}`"
        return [_fail("daemon", exc.message, fix)]
    st: dict[str, Any] = s.status or {}
    s.daemon_pid = int(st.get("pid") or 0)
    summary = (
        f"running (pid {st.get('pid')}, version {st.get('version')}, "
        f"up {int(st.get('uptime_secs') or 0)}s, {st.get('environment')})"
    )
    if st.get("version") != __version__:
        return [
            _warn(
                "daemon",
                summary + f"; this CLI is {__version__}",
                "restart the daemon after upgrading: `tundra service restart`",
            )
        ]
    return [_ok("daemon", summary, pid=st.get("pid"), version=st.get("version"))]


def check_socket(s: _State) -> list[Check]:
    if s.socket is None:
        return []
    path = s.socket
    try:
        st = path.lstat()
    except FileNotFoundError:
        if s.status is None:
            return [_skip("socket", f"no socket at {path} (daemon not running)")]
        return [_warn("socket", f"daemon answers but {path} is missing", "restart the daemon")]
    out: list[Check] = []
    if not stat.S_ISSOCK(st.st_mode):
        return [_fail("socket", f"{path} is not a socket", f"remove it: rm {path}")]
    problems: list[str] = []
    if st.st_uid != os.getuid():
        problems.append(f"owned by uid {st.st_uid}, not {os.getuid()}")
    if stat.S_IMODE(st.st_mode) & 0o077:
        problems.append(f"mode {_mode(st)} (expected 0600)")
    try:
        dst = path.parent.stat()
        if stat.S_IMODE(dst.st_mode) & 0o022:
            problems.append(
                f"directory {path.parent} is {_mode(dst)} (others may replace the socket)"
            )
    except OSError:
        pass
    if problems:
        out.append(
            _fail(
                "socket",
                f"{path}: " + "; ".join(problems),
                f"chmod 600 {path} && chmod 700 {path.parent} -- or restart the daemon, which recreates it",
                path=str(path),
            )
        )
    elif s.status is None:
        out.append(
            _warn(
                "socket",
                f"stale socket {path}: nobody answers",
                f"harmless (the daemon replaces it); to tidy up: rm {path}",
                path=str(path),
            )
        )
    else:
        out.append(_ok("socket", f"{path} (owner {st.st_uid}, mode {_mode(st)})", path=str(path)))
    return out


def check_lock(s: _State) -> list[Check]:
    from tundra.daemon.lock import DaemonLock, read_lock_info

    path = s.paths.lock_file
    if not path.exists():
        return []
    info = read_lock_info(path)
    if DaemonLock(path).held_by_another():
        return [_ok("lock", f"{path.name} held by pid {info.get('pid', '?')}")]
    pid = info.get("pid")
    if pid and s.status is None:
        return [
            _warn(
                "lock",
                f"{path.name} names pid {pid} but nobody holds it (a daemon died)",
                "harmless: the next daemon takes it over; check `tundra logs -n 50` for the crash",
            )
        ]
    return []


def check_store(s: _State) -> list[Check]:
    if s.status is None:
        return [_skip("store", "daemon not running")]
    store: dict[str, Any] = s.status.get("store") or {}
    state = store.get("state", "?")
    engine = store.get("engine") or "?"
    err = store.get("last_error") or store.get("error") or ""
    version = store.get("schema_version", store.get("version"))
    latest = store.get("latest_version")
    pending = store.get("pending") or 0
    if isinstance(pending, list):
        pending = len(pending)
    if not pending and isinstance(version, int) and isinstance(latest, int):
        pending = max(0, latest - version)
    desc = f"{engine} {state}" + (f", schema v{version}" if version is not None else "")
    if state == "ready":
        if pending:
            return [_warn("store", desc + f", {pending} migration(s) pending", "tundra db migrate")]
        return [_ok("store", desc)]
    if state == "not running" and "store" not in (s.status.get("services") or {}):
        return [_skip("store", "no store service in this daemon")]
    fix = "check `tundra db status` and `tundra logs -p warning`"
    port = _store_port(s, store)
    if port and ("in use" in str(err).lower() or "conflict" in str(err).lower()):
        holder = port_holder(port)
        if holder:
            fix = f"port {port} is held by {holder[1]} (pid {holder[0]}); stop it or change [dolt] port"
    check = _warn if state == "connecting" else _fail
    return [check("store", desc + (f": {err}" if err else ""), fix)]


def _store_port(s: _State, store: dict[str, Any]) -> int:
    port = store.get("port")
    if isinstance(port, int):
        return port
    dolt = getattr(s.config, "dolt", None) if s.config is not None else None
    return int(dolt.port) if dolt is not None else 0


def check_bridge(s: _State) -> list[Check]:
    if s.config is None:
        return [_skip("bridge", "config invalid")]
    bridge = s.config.bridge
    token_file = s.paths.bridge_token_file
    out: list[Check] = []
    token = ""
    if token_file.exists():
        st = token_file.stat()
        if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != os.getuid():
            out.append(
                _fail(
                    "bridge",
                    f"{token_file} is mode {_mode(st)} owned by uid {st.st_uid}",
                    f"chmod 600 {token_file} (and rotate the token: others could read it)",
                )
            )
        try:
            token = token_file.read_text().strip()
        except OSError:
            token = ""
    host = bridge.host
    url_host = f"[{host}]" if ":" in host else host
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    url = f"http://{'[::1]' if connect_host == '::1' else connect_host}:{bridge.port}/api/health"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.get(url, headers=headers, timeout=HTTP_TIMEOUT_SECS)
    except httpx.HTTPError as exc:
        if not token_file.exists():
            out.append(
                _skip(
                    "bridge",
                    f"not running at {url_host}:{bridge.port} (never started: no bridge.token)",
                )
            )
        else:
            out.append(
                _warn(
                    "bridge",
                    f"not reachable at {url_host}:{bridge.port} ({type(exc).__name__})",
                    "start it: `tundra service start` or `tundra bridge`",
                )
            )
        return out
    loopback = host in ("127.0.0.1", "::1", "localhost")
    where = f"http://{url_host}:{bridge.port}"
    if resp.status_code != 200:
        out.append(
            _warn("bridge", f"{where} answered {resp.status_code}", "see `tundra logs --bridge`")
        )
    elif not loopback:
        out.append(
            _warn(
                "bridge",
                f"reachable at {where} -- bound beyond loopback",
                "make sure TLS ([bridge] tls_cert/tls_key) and the token protect it",
            )
        )
    else:
        daemon_state = ""
        try:
            body = resp.json()
            daemon_state = (
                str((body.get("daemon") or {}).get("state", "")) if isinstance(body, dict) else ""
            )
        except ValueError:
            pass
        out.append(
            _ok(
                "bridge",
                f"reachable at {where}" + (f" (daemon {daemon_state})" if daemon_state else ""),
            )
        )
    return out


def check_disk(s: _State) -> list[Check]:
    target = s.paths.home
    while not target.exists() and target != target.parent:
        target = target.parent
    usage = shutil.disk_usage(target)
    need = s.options.min_free_bytes
    free_gb = usage.free / (1 << 30)
    summary = f"{free_gb:.1f} GiB free in {target}"
    if usage.free < need:
        return [
            _fail(
                "disk",
                summary + f" (need >= {need / (1 << 30):.1f} GiB)",
                f"free space: `du -sh {s.paths.logs_dir} {s.paths.data_dir}`, drop old logs and worktrees",
                free_bytes=usage.free,
            )
        ]
    return [_ok("disk", summary, free_bytes=usage.free)]


def check_dirs(s: _State) -> list[Check]:
    p = s.paths
    out: list[Check] = []
    bad: list[str] = []
    loose: list[str] = []
    missing: list[str] = []
    for d in (p.home, p.config_dir, p.data_dir, p.logs_dir):
        try:
            st = d.stat()
        except FileNotFoundError:
            missing.append(str(d))
            continue
        if not stat.S_ISDIR(st.st_mode):
            bad.append(f"{d} is not a directory")
        elif st.st_uid != os.getuid():
            bad.append(f"{d} owned by uid {st.st_uid}")
        elif not os.access(d, os.W_OK | os.X_OK):
            bad.append(f"{d} not writable")
        elif stat.S_IMODE(st.st_mode) & 0o022:
            loose.append(f"{d} is {_mode(st)}")
    if bad:
        out.append(
            _fail(
                "dirs",
                "; ".join(bad),
                f"sudo chown -R {os.getuid()}:{os.getgid()} {p.home} && chmod 700 {p.home}",
            )
        )
    elif loose:
        out.append(
            _warn(
                "dirs",
                "; ".join(loose) + " (writable by others)",
                f"chmod 700 {' '.join(x.split()[0] for x in loose)}",
            )
        )
    elif missing and p.home.exists():
        out.append(
            _ok(
                "dirs",
                f"{p.home} owned and writable ({len(missing)} subdirs created on first start)",
            )
        )
    elif missing:
        out.append(
            _warn(
                "dirs",
                f"{p.home} does not exist yet",
                "start the daemon once, or `tundra config init`",
            )
        )
    else:
        out.append(_ok("dirs", f"{p.home} and its subdirs owned by you and writable"))
    return out


def _daemon_env(s: _State) -> tuple[Mapping[str, str], str]:
    """The daemon's own environment when readable (it, not this shell, calls providers)."""
    if s.daemon_pid:
        try:
            raw = Path(f"/proc/{s.daemon_pid}/environ").read_bytes()
        except OSError:
            raw = b""
        if raw:
            env: dict[str, str] = {}
            for item in raw.split(b"\0"):
                key, sep, value = item.partition(b"=")
                if sep:
                    env[key.decode(errors="replace")] = value.decode(errors="replace")
            return env, "the daemon's environment"
    return s.env, "this shell's environment"


def _profiles(s: _State) -> list[Any] | None:
    try:
        from tundra.intelligence.profiles import load_profiles
    except ImportError:
        return None
    try:
        return list(load_profiles(s.paths.api_profiles_file))
    except TundraError:
        return None  # reported by check_config


def check_api_keys(s: _State) -> list[Check]:
    profiles = _profiles(s)
    if profiles is None:
        return [_skip("api-keys", "no usable profile list")]
    enabled = [p for p in profiles if p.enabled]
    if not enabled:
        return [_skip("api-keys", "no enabled LLM profile")]
    env, where = _daemon_env(s)
    present: list[str] = []
    missing: list[str] = []
    for p in enabled:
        var = p.key_env
        if var is None or p.provider == "local":
            present.append(f"{p.name} (no key needed)")
        elif env.get(var):
            present.append(f"{p.name}: {var}")
        else:
            missing.append(f"{p.name}: {var}")
    if missing:
        return [
            _warn(
                "api-keys",
                f"missing in {where}: "
                + ", ".join(missing)
                + (f"; set: {', '.join(present)}" if present else ""),
                "export the variable for the daemon (systemd: `systemctl --user edit tundra-daemon` -> "
                'Environment=/EnvironmentFile=) or set "enabled": false in api_profiles.json',
                missing=[m.split(": ")[1] for m in missing],
            )
        ]
    return [_ok("api-keys", f"set in {where}: " + ", ".join(present))]


def check_providers(s: _State) -> list[Check]:
    if s.options.offline:
        return [_skip("providers", "skipped (--offline)")]
    profiles = _profiles(s)
    if not profiles:
        return [_skip("providers", "no profiles")]
    urls = sorted({p.url for p in profiles if p.enabled})

    def probe(url: str) -> tuple[str, str]:
        # Any HTTP answer (even 401/404) proves DNS, TCP, TLS and proxies work; no key is sent.
        try:
            r = httpx.get(url, timeout=HTTP_TIMEOUT_SECS)
            return url, f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            return url, f"error: {type(exc).__name__}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(urls)))) as pool:
        results = list(pool.map(probe, urls))
    bad = [f"{u} ({r})" for u, r in results if r.startswith("error")]
    good = [f"{u} ({r})" for u, r in results if not r.startswith("error")]
    if bad:
        return [
            _warn(
                "providers",
                "unreachable: " + ", ".join(bad),
                "check network/proxy (`env | grep -i proxy`), or disable the profile",
            )
        ]
    return [_ok("providers", "reachable: " + ", ".join(good))]


def check_pty(s: _State) -> list[Check]:
    try:
        master, slave = os.openpty()
    except OSError as exc:
        return [
            _fail(
                "pty",
                f"cannot open a PTY: {exc.strerror}",
                "mount devpts on /dev/pts (containers: give the container a /dev/pts)",
            )
        ]
    try:
        name = os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)
    return [_ok("pty", f"openpty works ({name})")]


def _proc_limit(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft)
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fds(s: _State) -> list[Check]:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    where = "this shell"
    limit = soft
    if s.daemon_pid:
        daemon_limit = _proc_limit(s.daemon_pid)
        if daemon_limit:
            limit, where = daemon_limit, f"daemon pid {s.daemon_pid}"
    nproc, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    candidates = [limit // FDS_PER_PTY]
    if nproc != resource.RLIM_INFINITY and nproc > 0:
        candidates.append(nproc // 2)
    safe = min(candidates)
    configured = s.config.daemon.max_ptys if s.config is not None else 10
    in_use = ""
    if s.daemon_pid:
        try:
            in_use = f", {len(os.listdir(f'/proc/{s.daemon_pid}/fd'))} open"
        except OSError:
            in_use = ""
    summary = (
        f"ulimit -n {limit} ({where}{in_use}); safe max_ptys <= {safe}, configured {configured}"
    )
    if configured > safe:
        return [
            _fail(
                "fds",
                summary,
                f"raise the limit (`ulimit -n {configured * FDS_PER_PTY}`, systemd LimitNOFILE=) "
                f"or set [daemon] max_ptys <= {safe}",
                safe_max_ptys=safe,
            )
        ]
    return [_ok("fds", summary, safe_max_ptys=safe)]


def _proc_stat(pid: int) -> tuple[str, int, str] | None:
    """(state, ppid, comm) from /proc/PID/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    lpar, rpar = raw.find("("), raw.rfind(")")
    comm = raw[lpar + 1 : rpar]
    fields = raw[rpar + 2 :].split()
    return fields[0], int(fields[1]), comm


def daemon_descendants(root: int) -> list[tuple[int, str, str]]:
    """(pid, state, comm) of every process below ``root`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        parsed = _proc_stat(int(entry))
        if parsed is None:
            continue
        state, ppid, comm = parsed
        children.setdefault(ppid, []).append(int(entry))
        info[int(entry)] = (state, comm)
    out: list[tuple[int, str, str]] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in info:
            out.append((pid, *info[pid]))
        todo.extend(children.get(pid, []))
    return sorted(out)


def check_zombies(s: _State) -> list[Check]:
    if not s.daemon_pid:
        return [_skip("zombies", "daemon not running")]
    if not Path("/proc").is_dir():
        return [_skip("zombies", "no /proc on this system")]
    procs = daemon_descendants(s.daemon_pid)
    zombies = [(pid, comm) for pid, state, comm in procs if state == "Z"]
    if zombies:
        listed = ", ".join(f"{comm}[{pid}]" for pid, comm in zombies[:10])
        return [
            _warn(
                "zombies",
                f"{len(zombies)} defunct under daemon pid {s.daemon_pid}: {listed}",
                "restart the daemon (`tundra service restart`): zombies go when their parent reaps or exits",
            )
        ]
    return [_ok("zombies", f"none ({len(procs)} processes under daemon pid {s.daemon_pid})")]


def check_circuits(s: _State) -> list[Check]:
    if s.status is None or s.socket is None:
        return [_skip("circuits", "daemon not running")]
    from tundra.ipc.client import BlockingClient

    try:
        with BlockingClient(s.socket, timeout=IPC_TIMEOUT_SECS) as client:
            result: Any = client.call("llm.circuits")
    except TundraError as exc:
        if exc.code == "ipc.unknown_method":
            return [_skip("circuits", "LLM service not in this daemon")]
        return [
            _warn(
                "circuits", f"cannot read circuits: {exc.message}", "see `tundra logs -p warning`"
            )
        ]
    circuits = result.get("circuits", []) if isinstance(result, dict) else []
    now = time.time()
    stuck = []
    for c in circuits:
        if c.get("state") == "open" or c.get("disabled"):
            why = "disabled: " + str(c["disabled"]) if c.get("disabled") else "open"
            until = c.get("until")
            if until:
                why += f", retries in {max(0, until - now):.0f}s"
            stuck.append(f"{c.get('profile')} ({why})")
    if stuck:
        return [
            _warn(
                "circuits",
                "not accepting calls: " + ", ".join(stuck),
                "wait for the half-open probe, or `tundra llm reset PROFILE` once the provider is fixed",
            )
        ]
    return [_ok("circuits", f"all {len(circuits)} closed" if circuits else "no circuits yet")]


RECENT_ERRORS_WINDOW_SECS = 3600.0


def _epoch(timestamp: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def check_logs(s: _State) -> list[Check]:
    """The seed's "recent errors": ERROR records of the last hour in the daemon's log."""
    from tundra.service.logs import log_files, tail_records

    files = [f for f in log_files(s.paths) if f.exists()]
    if not files:
        return [_skip("logs", "no log file (under systemd: `tundra logs -p error`)")]
    since = time.time() - RECENT_ERRORS_WINDOW_SECS
    errors = [
        r
        for r in tail_records(files, n=200, priority="error")
        if (_epoch(r.timestamp) or 0.0) >= since
    ]
    if errors:
        latest = errors[-1].message.splitlines()[0][:160]
        return [
            _warn(
                "logs",
                f"{len(errors)} error(s) in the last hour, latest: {errors[-1].target}: {latest}",
                "`tundra logs -p error` for the details",
            )
        ]
    return [_ok("logs", f"no errors in the last hour ({files[0]})")]


CHECKS: tuple[Callable[[_State], list[Check]], ...] = (
    check_config,
    check_daemon,
    check_socket,
    check_lock,
    check_store,
    check_bridge,
    check_disk,
    check_dirs,
    check_api_keys,
    check_providers,
    check_pty,
    check_fds,
    check_zombies,
    check_circuits,
    check_logs,
)


def run_doctor(
    paths: TundraPaths | None = None,
    *,
    env: Mapping[str, str] | None = None,
    options: DoctorOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> DoctorReport:
    """Run every check in order; a crashing check becomes a ✗ line, never a traceback."""
    env = dict(os.environ) if env is None else env
    paths = paths or TundraPaths.from_env(dict(env))
    if options is None:
        raw = env.get(MIN_FREE_ENV, "")
        options = DoctorOptions(min_free_bytes=int(raw) if raw.isdigit() else MIN_FREE_BYTES)
    s = _State(paths, env, options)
    checks: list[Check] = []
    for fn in CHECKS:
        name = fn.__name__.removeprefix("check_")
        if progress:
            progress(name)
        try:
            checks.extend(fn(s))
        except Exception as exc:  # a broken check must not hide the others
            checks.append(
                _fail(name, f"check crashed: {type(exc).__name__}: {exc}", "report this as a bug")
            )
    counts = {k: sum(1 for c in checks if c.status == k) for k in MARKS}
    return DoctorReport(
        version=__version__,
        home=str(paths.home),
        socket=str(s.socket or s.socket_error),
        checks=checks,
        counts=counts,
    )


def format_report(report: DoctorReport) -> str:
    width = max((len(c.name) for c in report.checks), default=8) + 2
    lines = []
    for c in report.checks:
        line = f"{MARKS[c.status]} {c.name:<{width}}{c.summary}"
        if c.fix and c.status in ("fail", "warn"):
            line += f"  -> fix: {c.fix}"
        lines.append(line)
    n = report.counts
    lines.append(f"{n['ok']} ok, {n['warn']} warnings, {n['fail']} failures, {n['skip']} skipped")
    return "\n".join(lines)


def port_holder(port: int) -> tuple[int, str] | None:
    """(pid, command) of the process listening on TCP ``port`` (Linux /proc; same user only)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in targets:
                    comm = Path(f"/proc/{entry}/comm").read_text().strip()
                    return int(entry), comm
            except OSError:
                continue
    return None
