"""Who is on the other end of a Unix socket: SO_PEERCRED (Linux), LOCAL_PEERCRED (macOS)."""

from __future__ import annotations

import socket
import struct
import sys

__all__ = ["peer_credentials"]


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """``(pid, uid)`` of the connected peer; pid is 0 where the OS does not say."""
    if sys.platform.startswith("linux"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", raw)
        return pid, uid
    if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        SOL_LOCAL, LOCAL_PEERCRED, LOCAL_PEERPID = 0, 1, 2
        raw = sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, struct.calcsize("IIh16I"))
        _version, uid = struct.unpack_from("II", raw)
        try:
            (pid,) = struct.unpack("i", sock.getsockopt(SOL_LOCAL, LOCAL_PEERPID, 4))
        except OSError:
            pid = 0
        return pid, uid
    raise OSError("peer credentials are not supported on this platform")  # pragma: no cover
