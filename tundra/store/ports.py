"""Who holds a TCP port: a bind probe, then /proc (Linux) or lsof (elsewhere) for the holder.

Used before starting a managed ``dolt sql-server`` so the error names the process in the
way (``Address already in use: port 3306 is held by mysqld (pid 812)...``) instead of a
bind failure buried in the child's log.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tundra.store.errors import PortInUse

__all__ = ["PortHolder", "port_is_free", "find_port_holder", "check_port_free"]


@dataclass(frozen=True)
class PortHolder:
    pid: int
    name: str


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as a real server would set it: TIME_WAIT leftovers do not count as taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10:
                continue
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _holder_from_proc(port: int, proc: Path = Path("/proc")) -> PortHolder | None:
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue  # another user's process, or it exited
        for fd in fds:
            try:
                if os.readlink(entry / "fd" / fd) in targets:
                    name = (entry / "comm").read_text().strip()
                    return PortHolder(int(entry.name), name)
            except OSError:
                continue
    return None


def _holder_from_lsof(port: int) -> PortHolder | None:
    lsof = shutil.which("lsof")
    if lsof is None:
        return None
    try:
        out = subprocess.run(
            [lsof, "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fpc"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    pid, name = None, "?"
    for line in out.splitlines():
        if line.startswith("p"):
            pid = int(line[1:])
        elif line.startswith("c") and pid is not None:
            name = line[1:]
            return PortHolder(pid, name)
    return PortHolder(pid, name) if pid is not None else None


def find_port_holder(port: int) -> PortHolder | None:
    """The process listening on ``port`` if we may see it (/proc, else lsof)."""
    if Path("/proc/net/tcp").exists():
        holder = _holder_from_proc(port)
        if holder is not None:
            return holder
    return _holder_from_lsof(port)


def check_port_free(host: str, port: int, *, section: str = "dolt") -> None:
    """Raise the seed's PortInUse message (with the holder) when ``port`` is taken."""
    if port_is_free(host, port):
        return
    holder = find_port_holder(port)
    who = f"{holder.name} (pid {holder.pid})" if holder else "another process"
    suggestion = next(
        (p for p in range(port + 1, min(port + 50, 65536)) if port_is_free(host, p)), port + 1
    )
    raise PortInUse(
        f"Address already in use: port {port} is held by {who}; "
        f"set [{section}] port = {suggestion} in config.toml",
        details={
            "port": port,
            "pid": holder.pid if holder else None,
            "process": holder.name if holder else None,
        },
    )
