"""The daemon side of the IPC socket: accept, authenticate, decode, dispatch, reply.

One task per connection reads frames; each request runs in its own task (so many may be
in flight on one connection) under a per-request cancel scope that a ``Cancel`` frame or
the client's disconnect cancels. Replies share one send lock per connection.

Bad input never reaches a handler: a garbage, truncated, oversized or unknown frame gets
an :class:`~tundra.ipc.protocol.ErrorReply` with id 0 and the connection is closed; the
daemon keeps serving everyone else.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import socket as stdsocket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from tundra import __version__
from tundra.errors import InternalError, TundraError
from tundra.ipc.errors import (
    InvalidRequest,
    IpcError,
    PeerRejected,
    ProtocolMismatch,
    UnknownMessage,
    UnknownMethod,
)
from tundra.ipc.framing import FrameDecoder, frame
from tundra.ipc.peercred import peer_credentials
from tundra.ipc.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ClientFrame,
    ErrorReply,
    Hello,
    Request,
    Response,
    StreamItem,
)
from tundra.ipc.registry import CallContext, MethodRegistry

if TYPE_CHECKING:
    from tundra.daemon.app import Daemon

__all__ = ["IpcServer", "bind_unix_socket", "prepare_socket_path"]

log = logging.getLogger("tundra.ipc.server")

_RECV = 65536
_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(ClientFrame)
_any_decoder = msgspec.msgpack.Decoder()


def prepare_socket_path(path: Path) -> None:
    """Make the socket's directory (0700) and remove a *stale* socket file.

    A socket file is stale only when a connect proves nobody serves it; a live one means
    another daemon owns the path, which is an error (never steal a live socket).
    """
    from tundra.config.errors import ConfigError

    parent = path.parent
    if not parent.exists():
        # A directory we create is ours alone. An existing one (say /tmp, when TUNDRA_SOCKET
        # points there) is never changed: the socket itself is 0600 and peers are uid-checked.
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        st = parent.stat()
        if stat.S_IMODE(st.st_mode) & 0o022 and not st.st_mode & stat.S_ISVTX:
            log.warning("socket directory %s is writable by others (mode %o); prefer a private directory",
                        parent, stat.S_IMODE(st.st_mode))
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(
            f"socket path exists and is not a socket: {path}",
            hint="remove the file or choose another path with TUNDRA_SOCKET",
        )
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale socket %s (nobody is listening)", path)
        path.unlink(missing_ok=True)
        return
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink(missing_ok=True)
            return
        raise
    finally:
        probe.close()
    from tundra.daemon.errors import DaemonAlreadyRunning

    raise DaemonAlreadyRunning(f"daemon already running (socket {path} is live)")


def bind_unix_socket(path: Path, backlog: int = 512) -> stdsocket.socket:
    """Create the listening socket at ``path`` with mode 0600 (created under a 0177 umask,
    so there is no moment when it is reachable with looser permissions)."""
    prepare_socket_path(path)
    sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM | stdsocket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return sock


class _Connection:
    """State of one accepted client."""

    def __init__(self, server: IpcServer, stream: trio.SocketStream, cid: int) -> None:
        self.server = server
        self.stream = stream
        self.cid = cid
        self.send_lock = trio.Lock()
        self.inflight: dict[int, trio.CancelScope] = {}
        self.peer_pid = 0
        self.peer_uid = -1
        self.closed = False

    async def send_body(self, body: bytes) -> None:
        data = frame(body)
        async with self.send_lock:
            await self.stream.send_all(data)

    async def send_error(self, rid: int, err: TundraError) -> None:
        reply = ErrorReply(
            id=rid, code=err.code, message=err.message, hint=err.hint, details=err.details or None
        )
        try:
            await self.send_body(_encoder.encode(reply))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class IpcServer:
    """Serves the daemon's :class:`MethodRegistry` on a listening Unix socket."""

    def __init__(
        self,
        daemon: Daemon,
        listener: stdsocket.socket,
        *,
        registry: MethodRegistry | None = None,
        max_connections: int = 1024,
        handshake_timeout: float = 5.0,
        allowed_uids: frozenset[int] | None = None,
    ) -> None:
        self.daemon = daemon
        self.registry = registry if registry is not None else daemon.registry
        listener.setblocking(False)
        self.listener = trio.SocketListener(trio.socket.from_stdlib_socket(listener))
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.allowed_uids = allowed_uids if allowed_uids is not None else frozenset({os.getuid(), 0})
        self.connections: set[_Connection] = set()
        self._ids = itertools.count(1)
        self.requests_served = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept until cancelled; cancelling closes every connection."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            try:
                while True:
                    try:
                        stream = await self.listener.accept()
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            # Out of fds: back off instead of spinning; clients retry.
                            log.warning("accept failed: %s (file descriptor limit?)", exc.strerror)
                            await trio.sleep(0.1)
                            continue
                        raise
                    nursery.start_soon(self._handle, stream)
            finally:
                with trio.CancelScope(shield=True):
                    await self.listener.aclose()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = _Connection(self, stream, next(self._ids))
        try:
            if len(self.connections) >= self.max_connections:
                await conn.send_error(
                    0, IpcError(f"too many connections (limit {self.max_connections})")
                )
                return
            self.connections.add(conn)
            try:
                conn.peer_pid, conn.peer_uid = peer_credentials(stream.socket._sock)  # type: ignore[attr-defined]
            except OSError as exc:
                log.warning("cannot read peer credentials: %s", exc)
                conn.peer_uid = -1
            if conn.peer_uid not in self.allowed_uids:
                log.warning(
                    "rejected IPC peer uid=%s pid=%s (allowed: %s)",
                    conn.peer_uid,
                    conn.peer_pid,
                    sorted(self.allowed_uids),
                )
                await conn.send_error(
                    0, PeerRejected(f"peer uid {conn.peer_uid} may not use this daemon")
                )
                return
            await self._serve_connection(conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            # One connection must never take the server down with it.
            log.exception("IPC connection %d failed", conn.cid)
        finally:
            self.connections.discard(conn)
            conn.closed = True
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _serve_connection(self, conn: _Connection) -> None:
        await conn.send_body(
            _encoder.encode(
                Hello(protocol_version=PROTOCOL_VERSION, agent=f"tundra-daemon/{__version__}", pid=os.getpid())
            )
        )
        decoder = FrameDecoder()
        hello_seen = False
        async with trio.open_nursery() as nursery:
            try:
                while True:
                    if hello_seen:
                        data = await conn.stream.receive_some(_RECV)
                    else:
                        with trio.move_on_after(self.handshake_timeout) as cs:
                            data = await conn.stream.receive_some(_RECV)
                        if cs.cancelled_caught:
                            raise IpcError(
                                f"no Hello within {self.handshake_timeout:g}s; closing connection"
                            )
                    if not data:
                        if decoder.in_frame:
                            raise InvalidRequest(
                                f"truncated frame: connection closed with {decoder.buffered} bytes of an unfinished frame"
                            )
                        return
                    decoder.feed(data)
                    for body in decoder.frames():
                        msg = self._decode(body)
                        if not hello_seen:
                            if not isinstance(msg, Hello):
                                raise InvalidRequest("the first frame must be Hello")
                            if msg.protocol_version != PROTOCOL_VERSION:
                                raise ProtocolMismatch(
                                    f"protocol version mismatch: client speaks v{msg.protocol_version}, "
                                    f"daemon speaks v{PROTOCOL_VERSION}"
                                )
                            hello_seen = True
                            continue
                        if isinstance(msg, Request):
                            if msg.id in conn.inflight:
                                await conn.send_error(msg.id, InvalidRequest(f"request id {msg.id} is already in flight"))
                                continue
                            scope = trio.CancelScope()
                            conn.inflight[msg.id] = scope
                            spec = self.registry.get(msg.method)
                            if spec is not None and spec.inline:
                                # Declared instant (no I/O, no waiting): skip the task spawn.
                                await self._run_request(conn, msg, scope)
                            else:
                                nursery.start_soon(self._run_request, conn, msg, scope)
                        elif isinstance(msg, Cancel):
                            running = conn.inflight.get(msg.id)
                            if running is not None:
                                running.cancel()
                        else:
                            raise InvalidRequest("Hello sent twice")
            except IpcError as err:
                log.info("closing IPC connection %d: %s", conn.cid, err.message)
                await conn.send_error(0, err)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away (reset): nothing to answer
            finally:
                # Connection over: cancel whatever it still had running.
                nursery.cancel_scope.cancel()

    @staticmethod
    def _decode(body: bytes) -> Hello | Request | Cancel:
        try:
            return _frame_decoder.decode(body)
        except msgspec.ValidationError as exc:
            text = str(exc)
            if "Invalid value" in text and "`$.t`" in text:
                raise UnknownMessage(f"unknown message type: {text}") from None
            if "missing required field `t`" in text or "Expected `object`" in text:
                raise UnknownMessage(f"unknown message: {text}") from None
            raise InvalidRequest(f"invalid frame: {text}") from None
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"malformed frame (not msgpack): {exc}") from None

    async def _run_request(self, conn: _Connection, req: Request, scope: trio.CancelScope) -> None:
        try:
            with scope:
                spec = self.registry.get(req.method)
                if spec is None:
                    raise UnknownMethod(f"unknown method `{req.method}`")
                try:
                    params = self.registry.decode_params(req.method, req.params)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    raise InvalidRequest(f"invalid params for `{req.method}`: {exc}") from None
                ctx = CallContext(
                    daemon=self.daemon,
                    peer_pid=conn.peer_pid,
                    peer_uid=conn.peer_uid,
                    connection_id=conn.cid,
                    request_id=req.id,
                )
                if spec.streaming:
                    rid = req.id

                    async def send(item: Any) -> None:
                        body = _encoder.encode(StreamItem(id=rid, data=msgspec.Raw(_encoder.encode(item))))
                        await conn.send_body(body)

                    result = await spec.handler(ctx, params, send)
                else:
                    result = await spec.handler(ctx, params)
                body = _encoder.encode(Response(id=req.id, result=msgspec.Raw(_encoder.encode(result))))
                await conn.send_body(body)
                self.requests_served += 1
            if scope.cancelled_caught and not conn.closed:
                await conn.send_error(req.id, IpcError("request cancelled", details={"cancelled": True}))
        except TundraError as err:
            await conn.send_error(req.id, err)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as exc:
            leaf = _tundra_leaf(exc)
            if leaf is not None:
                await conn.send_error(req.id, leaf)
                return
            log.exception("IPC method %s failed", req.method)
            await conn.send_error(req.id, InternalError(f"internal error in `{req.method}` (see daemon log)"))
        finally:
            conn.inflight.pop(req.id, None)

    def status(self) -> dict[str, Any]:
        return {"connections": len(self.connections), "requests_served": self.requests_served}


def _tundra_leaf(exc: BaseException) -> TundraError | None:
    """The TundraError inside an exception group raised through a handler's nursery."""
    if isinstance(exc, TundraError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _tundra_leaf(sub)
            if found is not None:
                return found
    return None


def decode_any(raw: bytes) -> Any:
    return _any_decoder.decode(raw)
