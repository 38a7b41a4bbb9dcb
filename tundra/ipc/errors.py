"""IpcError and its family: failures of the socket protocol itself."""

from __future__ import annotations

from tundra.errors import TundraError

__all__ = [
    "IpcError",
    "DaemonNotRunning",
    "DaemonPermissionDenied",
    "DaemonNotResponding",
    "ConnectionLost",
    "UnknownMessage",
    "InvalidRequest",
    "UnknownMethod",
    "FrameTooLarge",
    "ProtocolMismatch",
    "PeerRejected",
    "Lagged",
]


class IpcError(TundraError):
    """The seed's ``IPC error: <details>``."""

    code = "ipc.error"
    http_status = 502

    def __init__(
        self, message: str, *, hint: str | None = None, details: dict[str, object] | None = None
    ) -> None:
        msg = message if message.startswith("IPC error:") else f"IPC error: {message}"
        super().__init__(msg, hint=hint, details=details)


class DaemonNotRunning(IpcError):
    code = "daemon.unavailable"
    http_status = 503
    default_hint = "start it with `tundra daemon` (or `tundra up`); `tundra doctor` checks the setup"


class DaemonPermissionDenied(IpcError):
    code = "ipc.permission_denied"
    http_status = 503
    default_hint = "the socket belongs to another user; run as that user or set TUNDRA_SOCKET"


class DaemonNotResponding(IpcError):
    code = "daemon.not_responding"
    http_status = 503
    default_hint = "check `tundra logs`; restart the daemon if it is hung"


class ConnectionLost(IpcError):
    code = "ipc.connection_lost"
    http_status = 503
    default_hint = "the daemon closed the connection (restarted or stopped); retry"


class UnknownMessage(IpcError):
    code = "ipc.unknown_message"
    http_status = 400


class InvalidRequest(IpcError):
    code = "ipc.invalid_request"
    http_status = 400


class UnknownMethod(IpcError):
    code = "ipc.unknown_method"
    http_status = 404


class FrameTooLarge(IpcError):
    code = "ipc.frame_too_large"
    http_status = 413


class ProtocolMismatch(IpcError):
    code = "ipc.protocol_mismatch"
    http_status = 502
    default_hint = "the CLI and the daemon are different versions; restart the daemon after upgrading"


class PeerRejected(IpcError):
    code = "ipc.peer_rejected"
    http_status = 403


class Lagged(IpcError):
    """A stream subscriber fell too far behind and was dropped; it can resume by offset."""

    code = "ipc.lagged"
    http_status = 503
