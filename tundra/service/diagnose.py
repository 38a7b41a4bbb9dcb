"""`tundra diagnose`: one ``.tar.gz`` a user can attach to a bug report, with secrets removed.

Contents: versions, environment (``TUNDRA_*``/``RUST_LOG`` values; API key and token variables
by *name* only), the effective config and the config files (secret values redacted), the last
megabytes of each log (and the journal under systemd), tundra processes, ``doctor --json``,
``status`` and the service manager's view. Every text goes through the telemetry
:class:`~tundra.telemetry.logging_setup.Redactor`, primed with every secret value this machine
knows (key variables, the bridge token, store passwords), before it is written.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec

from tundra import __version__
from tundra.errors import TundraError
from tundra.paths import TundraPaths
from tundra.service.doctor import DoctorOptions, daemon_descendants, run_doctor
from tundra.service.logs import journalctl_command, log_files
from tundra.service.manager import status as service_status
from tundra.service.platform import probe_manager
from tundra.telemetry.logging_setup import Redactor

__all__ = ["BundleResult", "build_bundle", "LOG_BYTES_DEFAULT", "REDACTED"]

REDACTED = "[REDACTED]"
LOG_BYTES_DEFAULT = 5 * 1024 * 1024
"""Per log file: the last this-many bytes go into the bundle."""
_SECRET_NAME = re.compile(r"(?i)(api_?key|token|secret|passw|credential|auth|cookie|private)")
_PUBLIC_ENV = re.compile(
    r"^(TUNDRA_|RUST_LOG$|XDG_RUNTIME_DIR$|INVOCATION_ID$|JOURNAL_STREAM$|LANG$|TERM$|SHELL$)"
)
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(@)")
_CONFIG_SECRET_KEY = re.compile(
    r"(?im)^(\s*[\"']?[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api_?key)[\"']?\s*[=:]\s*)(?![\"']?\s*$).+$"
)
# Keys whose values *name* where a secret lives (password_env, api_key_env): not secrets.
_NAMING_KEYS = re.compile(r"(?i)_(env|file)\s*[\"']?\s*[=:]")


class BundleResult(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    files: list[str]
    redactions: dict[str, int]
    """Archive member -> number of values replaced with [REDACTED]."""
    omitted_env: list[str]
    """Secret variables present in the environment, listed by name only."""
    bytes: int


class _Collector:
    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.members: dict[str, bytes] = {}
        self.redactions: dict[str, int] = {}

    def add_text(self, name: str, text: str, *, config_like: bool = False) -> None:
        before = text.count(REDACTED)
        clean = self.redactor(text)
        clean = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(2), clean)
        if config_like:
            clean = "\n".join(_redact_config_line(line) for line in clean.split("\n"))
        n = clean.count(REDACTED) - before
        if n:
            self.redactions[name] = n
        self.members[name] = clean.encode()

    def add_json(self, name: str, data: Any) -> None:
        self.add_text(name, json.dumps(data, indent=2, default=str) + "\n")


def _redact_config_line(line: str) -> str:
    if _NAMING_KEYS.search(line.split("=", 1)[0] + "=") or REDACTED in line:
        return line
    return _CONFIG_SECRET_KEY.sub(lambda m: m.group(1) + f'"{REDACTED}"', line)


def _redact_structure(data: Any) -> Any:
    """Config as builtins with values under secret-looking keys replaced."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            naming = str(k).endswith(("_env", "_file"))
            if _SECRET_NAME.search(str(k)) and not naming and isinstance(v, str) and v:
                out[k] = REDACTED
            else:
                out[k] = _redact_structure(v)
        return out
    if isinstance(data, list):
        return [_redact_structure(v) for v in data]
    return data


def _known_secrets(paths: TundraPaths, env: Mapping[str, str]) -> list[str]:
    """Values that must never appear: named key variables, bridge token, store passwords."""
    values: list[str] = []
    try:
        values.append(paths.bridge_token_file.read_text().strip())
    except OSError:
        pass
    names: set[str] = set()
    try:
        from tundra.intelligence.profiles import load_profiles

        for p in load_profiles(paths.api_profiles_file):
            if p.key_env:
                names.add(p.key_env)
    except (ImportError, TundraError):
        pass
    try:
        from tundra.config import load_config

        cfg = load_config(paths.config_file)
        for name in (cfg.store.password_env, cfg.dolt.password_env if cfg.dolt else ""):
            if name:
                names.add(name)
        if cfg.store.password_file:
            try:
                values.append(Path(cfg.store.password_file).expanduser().read_text().strip())
            except OSError:
                pass
    except TundraError:
        pass
    for k, v in env.items():
        if k in names or _SECRET_NAME.search(k):
            values.append(v)
    return [v for v in values if len(v) >= 6]


def _env_report(env: Mapping[str, str]) -> tuple[str, list[str]]:
    lines: list[str] = []
    omitted: list[str] = []
    for k in sorted(env):
        if _SECRET_NAME.search(k) or k.endswith("_PROXY") or k.endswith("_proxy"):
            lines.append(f"{k} (set; value omitted)")
            omitted.append(k)
        elif _PUBLIC_ENV.match(k):
            lines.append(f"{k}={env[k]}")
    return "\n".join(lines) + "\n", omitted


def _tail_bytes(path: Path, limit: int) -> str:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text = f"[... first {size - limit} bytes omitted ...]\n" + text.split("\n", 1)[-1]
    return text


def _versions() -> dict[str, Any]:
    out: dict[str, Any] = {
        "tundra": __version__,
        "python": sys.version,
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    for dist in ("trio", "msgspec", "httpx", "trio-websocket", "pymysql", "ptyprocess", "h11"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        out["os_release"] = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
    except OSError:
        pass
    for cmd in (["systemctl", "--version"], ["sw_vers"]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
            if proc.returncode == 0:
                out[cmd[0]] = proc.stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return out


def _processes(daemon_pid: int) -> str:
    """Every process whose command line mentions tundra, plus everything under the daemon."""
    if not Path("/proc").is_dir():
        try:
            proc = subprocess.run(
                ["ps", "-axo", "pid,ppid,stat,rss,command"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            return "\n".join(
                line for line in proc.stdout.splitlines() if "tundra" in line or "PID" in line
            )
        except (OSError, subprocess.TimeoutExpired):
            return "ps unavailable\n"
    under = {pid for pid, _state, _comm in daemon_descendants(daemon_pid)} if daemon_pid else set()
    rows = ["PID PPID STATE RSS_KB COMMAND"]
    for entry in sorted((e for e in os.listdir("/proc") if e.isdigit()), key=int):
        pid = int(entry)
        try:
            cmd = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
                .strip()
            )
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if pid not in under and pid != daemon_pid and "tundra" not in cmd:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rows.append(
            f"{pid} {fields.get('PPid', '?').strip()} {fields.get('State', '?').strip().split()[0]} "
            f"{fields.get('VmRSS', '0 kB').strip().split()[0]} {cmd or '[' + fields.get('Name', '').strip() + ']'}"
        )
    return "\n".join(rows) + "\n"


def build_bundle(
    output: Path,
    *,
    paths: TundraPaths | None = None,
    env: Mapping[str, str] | None = None,
    log_bytes: int = LOG_BYTES_DEFAULT,
    progress: Callable[[int, int, str], None] | None = None,
) -> BundleResult:
    """Collect everything, redact, and write ``output`` (a .tar.gz, mode 0600)."""
    env = dict(os.environ) if env is None else dict(env)
    paths = paths or TundraPaths.from_env(env)
    redactor = Redactor(dict(env), extra_secrets=_known_secrets(paths, env))
    c = _Collector(redactor)
    steps: list[tuple[str, Callable[[], None]]] = []
    state: dict[str, Any] = {"daemon_pid": 0}
    omitted: list[str] = []

    def versions() -> None:
        c.add_json("versions.json", _versions())

    def environment() -> None:
        text, names = _env_report(env)
        omitted.extend(names)
        c.add_text("env.txt", text)

    def config() -> None:
        from tundra.config import load_config

        try:
            effective = msgspec.to_builtins(load_config(paths.config_file))
            c.add_json("config/effective.json", _redact_structure(effective))
        except TundraError as exc:
            c.add_text("config/effective.error.txt", exc.message + "\n")
        for f in (
            paths.config_file,
            paths.harness_file,
            paths.api_profiles_file,
            paths.agents_file,
        ):
            try:
                text = f.read_text(errors="replace")
            except OSError:
                continue
            c.add_text(f"config/{f.name}", text, config_like=True)

    def doctor() -> None:
        report = run_doctor(paths, env=env, options=DoctorOptions(offline=True))
        for check in report.checks:
            if check.name == "daemon" and check.details.get("pid"):
                state["daemon_pid"] = int(check.details["pid"])
        c.add_json("doctor.json", msgspec.to_builtins(report))

    def status() -> None:
        from tundra.ipc.client import BlockingClient

        try:
            with BlockingClient(timeout=5.0) as client:
                c.add_json("status.json", client.call("status"))
        except TundraError as exc:
            c.add_json("status.json", {"error": exc.to_dict()})

    def logs() -> None:
        for bridge in (False, True):
            for f in log_files(paths, bridge=bridge):
                for candidate in (f, f.with_name(f.name + ".1")):
                    if candidate.exists():
                        c.add_text(f"logs/{candidate.name}", _tail_bytes(candidate, log_bytes))
        manager = probe_manager("user").manager
        if manager == "systemd":
            for scope in ("user", "system"):
                for bridge in (False, True):
                    cmd = journalctl_command(scope, bridge=bridge, lines=5000)  # type: ignore[arg-type]
                    try:
                        proc = subprocess.run(
                            cmd, capture_output=True, text=True, timeout=30, check=False
                        )
                    except (OSError, subprocess.TimeoutExpired):
                        continue
                    if proc.stdout.strip() and "-- No entries --" not in proc.stdout:
                        name = f"logs/journal-{scope}-{'bridge' if bridge else 'daemon'}.txt"
                        c.add_text(name, proc.stdout[-log_bytes:])

    def processes() -> None:
        c.add_text("processes.txt", _processes(state["daemon_pid"]))

    def service() -> None:
        out: dict[str, Any] = {}
        for scope in ("user", "system"):
            probe = probe_manager(scope)  # type: ignore[arg-type]
            entry: dict[str, Any] = {"manager": probe.manager, "reason": probe.reason}
            if probe.manager != "none":
                try:
                    entry["units"] = msgspec.to_builtins(service_status(probe.manager, scope))  # type: ignore[arg-type]
                except TundraError as exc:
                    entry["error"] = exc.message
            out[scope] = entry
        c.add_json("service.json", out)

    steps = [
        ("versions", versions),
        ("environment", environment),
        ("config", config),
        ("doctor", doctor),
        ("status", status),
        ("logs", logs),
        ("processes", processes),
        ("service manager", service),
    ]
    for i, (label, fn) in enumerate(steps, 1):
        if progress:
            progress(i, len(steps), label)
        try:
            fn()
        except Exception as exc:  # one failing collector must not lose the rest
            c.add_text(f"errors/{label.replace(' ', '_')}.txt", f"{type(exc).__name__}: {exc}\n")
    c.add_text(
        "README.txt",
        f"tundra diagnostics bundle, created {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
        f"home: {paths.home}\n"
        "Secret values were replaced with [REDACTED]; key variables appear by name only.\n"
        "Review before sharing.\n",
    )
    root = output.name.removesuffix(".tar.gz").removesuffix(".tgz")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in sorted(c.members.items()):
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return BundleResult(
        path=str(output),
        files=sorted(c.members),
        redactions=dict(sorted(c.redactions.items())),
        omitted_env=sorted(set(omitted)),
        bytes=output.stat().st_size,
    )
