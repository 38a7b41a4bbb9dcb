"""Clients of the daemon's IPC socket: :func:`open_client` (trio) and :class:`BlockingClient`.

Connection failures become :class:`~tundra.ipc.errors.IpcError` subclasses whose messages
say what to do (``IPC error: daemon not running (no socket at PATH)``); errors the daemon
sends back are rebuilt as the same typed :class:`~tundra.errors.TundraError` subclass.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket as stdsocket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import msgspec
import trio

from tundra import __version__
from tundra.errors import TundraError
from tundra.ipc.errors import (
    ConnectionLost,
    DaemonNotResponding,
    DaemonNotRunning,
    DaemonPermissionDenied,
    IpcError,
    ProtocolMismatch,
)
from tundra.ipc.framing import FrameDecoder, frame
from tundra.ipc.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ErrorReply,
    Hello,
    Request,
    Response,
    ServerFrame,
    StreamItem,
)

__all__ = ["Client", "ClientStream", "open_client", "BlockingClient", "default_socket_path"]

T = TypeVar("T")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ServerFrame)
_RECV = 65536
_STREAM_BUFFER = 1024


def default_socket_path() -> Path:
    """The socket the daemon would use, from the environment and config.toml."""
    from tundra.config import load_config
    from tundra.paths import TundraPaths, socket_path

    configured = ""
    try:
        configured = load_config(TundraPaths.from_env().config_file).daemon.socket_path
    except TundraError:
        configured = ""  # a broken config must not stop `tundra status` from reporting
    return socket_path(configured or None)


_NO_PARAMS = msgspec.Raw(b"\x80")  # msgpack {}


def _encode_params(params: Any) -> msgspec.Raw:
    return _NO_PARAMS if params is None else msgspec.Raw(_encoder.encode(params))


def _connect_error(exc: OSError, path: Path) -> IpcError:
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return DaemonNotRunning(f"daemon not running (no socket at {path})")
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return DaemonNotRunning(f"daemon not running (stale socket at {path}: nobody is listening)")
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return DaemonPermissionDenied(f"permission denied on {path}")
    return IpcError(f"cannot connect to {path}: {exc.strerror or exc}")


def _error_from_reply(reply: ErrorReply) -> TundraError:
    return TundraError.from_wire(reply.code, reply.message, reply.hint, reply.details)


class _Unary:
    """Where one unary call's reply lands (an Event is much cheaper than a channel)."""

    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: ServerFrame | BaseException | None = None

    async def deliver(self, msg: ServerFrame | BaseException) -> None:
        self.fail(msg)

    def fail(self, msg: ServerFrame | BaseException) -> None:
        if self.value is None:
            self.value = msg
            self.event.set()


class _Pending:
    """A stream's items, bounded: a slow consumer applies backpressure to the connection."""

    __slots__ = ("send", "recv")

    def __init__(self, buffer: int) -> None:
        self.send, self.recv = trio.open_memory_channel[ServerFrame | BaseException](buffer)

    async def deliver(self, msg: ServerFrame | BaseException) -> None:
        await self.send.send(msg)

    def fail(self, msg: ServerFrame | BaseException) -> None:
        try:
            self.send.send_nowait(msg)
        except trio.WouldBlock:
            self.send.close()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass


class ClientStream:
    """Items pushed by a stream method; iterate it, then read :attr:`result`."""

    def __init__(self, client: Client, rid: int, pending: _Pending, item_type: Any, result_type: Any) -> None:
        self._client = client
        self._rid = rid
        self._pending = pending
        self._item_type = item_type
        self._result_type = result_type
        self._done = False
        self.result: Any = None

    def __aiter__(self) -> ClientStream:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        msg = await self._pending.recv.receive()
        if isinstance(msg, StreamItem):
            return msgspec.msgpack.decode(msg.data, type=self._item_type)
        self._done = True
        if isinstance(msg, Response):
            self.result = msgspec.msgpack.decode(msg.result, type=self._result_type)
            raise StopAsyncIteration
        if isinstance(msg, ErrorReply):
            raise _error_from_reply(msg)
        if isinstance(msg, BaseException):
            raise msg
        raise IpcError(f"unexpected frame in stream: {type(msg).__name__}")


class Client:
    """One IPC connection. Safe to use from many tasks at once."""

    def __init__(self, stream: trio.SocketStream, path: Path) -> None:
        self.path = path
        self._stream = stream
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending | _Unary] = {}
        self._send_lock = trio.Lock()
        self._closed: BaseException | None = None
        self.server_hello: Hello | None = None

    async def _send(self, msg: Any) -> None:
        if self._closed is not None:
            raise self._closed
        data = frame(_encoder.encode(msg))
        try:
            async with self._send_lock:
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionLost("daemon closed the connection") from None

    async def _handshake(self, timeout: float) -> FrameDecoder:
        decoder = FrameDecoder()
        await self._send(Hello(protocol_version=PROTOCOL_VERSION, agent=f"tundra-client/{__version__}", pid=os.getpid()))
        with trio.move_on_after(timeout) as cs:
            while True:
                data = await self._stream.receive_some(_RECV)
                if not data:
                    raise ConnectionLost("daemon closed the connection during the handshake")
                decoder.feed(data)
                for body in decoder.frames():
                    msg = _decoder.decode(body)
                    if isinstance(msg, ErrorReply):
                        raise _error_from_reply(msg)
                    if not isinstance(msg, Hello):
                        raise IpcError("daemon did not start with Hello")
                    if msg.protocol_version != PROTOCOL_VERSION:
                        raise ProtocolMismatch(
                            f"protocol version mismatch: daemon speaks v{msg.protocol_version}, "
                            f"client speaks v{PROTOCOL_VERSION}"
                        )
                    self.server_hello = msg
                    return decoder
        assert cs.cancelled_caught
        raise DaemonNotResponding(f"daemon not responding (no reply within {timeout:g}s on {self.path})")

    async def _reader(self, decoder: FrameDecoder) -> None:
        err: BaseException = ConnectionLost("daemon closed the connection")
        try:
            # Frames that arrived with the Hello.
            for body in decoder.frames():
                await self._dispatch(_decoder.decode(body))
            while True:
                data = await self._stream.receive_some(_RECV)
                if not data:
                    break
                decoder.feed(data)
                for body in decoder.frames():
                    await self._dispatch(_decoder.decode(body))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except (msgspec.DecodeError, TundraError) as exc:
            err = IpcError(f"bad frame from daemon: {exc}")
        finally:
            self._closed = err
            for p in list(self._pending.values()):
                p.fail(err)
            self._pending.clear()

    async def _dispatch(self, msg: ServerFrame) -> None:
        if isinstance(msg, ErrorReply) and msg.id == 0:
            # Connection-level error: fail everything in flight with it.
            self._closed = _error_from_reply(msg)
            for p in list(self._pending.values()):
                p.fail(msg)
            self._pending.clear()
            return
        rid = getattr(msg, "id", None)
        if rid is None:
            return
        pending = self._pending.get(rid)
        if pending is None:
            return
        if not isinstance(msg, StreamItem):
            self._pending.pop(rid, None)
        try:
            await pending.deliver(msg)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._pending.pop(rid, None)

    async def call(
        self,
        method: str,
        params: Any = None,
        *,
        result_type: type[T] | Any = Any,
        timeout: float | None = None,
    ) -> T:
        """Send one request and wait for its result (raises the daemon's typed error)."""
        rid = next(self._ids)
        pending = _Unary()
        self._pending[rid] = pending
        try:
            await self._send(Request(id=rid, method=method, params=_encode_params(params)))
            if timeout is None:
                await pending.event.wait()
            else:
                with trio.move_on_after(timeout) as cs:
                    await pending.event.wait()
                if cs.cancelled_caught:
                    raise DaemonNotResponding(
                        f"daemon not responding (`{method}` got no reply within {timeout:g}s)"
                    )
        finally:
            self._pending.pop(rid, None)
        msg = pending.value
        if isinstance(msg, Response):
            return cast(T, msgspec.msgpack.decode(msg.result, type=result_type))
        if isinstance(msg, ErrorReply):
            raise _error_from_reply(msg)
        if isinstance(msg, BaseException):
            raise msg
        raise IpcError(f"unexpected reply to `{method}`: {type(msg).__name__}")

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        params: Any = None,
        *,
        item_type: Any = Any,
        result_type: Any = Any,
        buffer: int = _STREAM_BUFFER,
    ) -> AsyncIterator[ClientStream]:
        """Start a stream method; leaving the block early cancels it on the daemon.

        At most ``buffer`` items wait for the consumer; beyond that the connection's reader
        waits too (backpressure reaches the daemon, which drops a subscriber that lags).
        A consumer that may stall should use its own connection or a small ``buffer``.
        """
        rid = next(self._ids)
        pending = _Pending(buffer)
        self._pending[rid] = pending
        s = ClientStream(self, rid, pending, item_type, result_type)
        try:
            await self._send(Request(id=rid, method=method, params=_encode_params(params)))
            yield s
        finally:
            if not s._done and self._closed is None and rid in self._pending:
                self._pending.pop(rid, None)
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    try:
                        await self._send(Cancel(id=rid))
                    except IpcError:
                        pass
            self._pending.pop(rid, None)

    async def aclose(self) -> None:
        await self._stream.aclose()


@asynccontextmanager
async def open_client(
    socket_path: str | Path | None = None, *, connect_timeout: float = 5.0
) -> AsyncIterator[Client]:
    """Connect to the daemon; the connection closes when the block exits."""
    path = Path(socket_path) if socket_path is not None else default_socket_path()
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        with trio.fail_after(connect_timeout):
            await sock.connect(str(path))
    except trio.TooSlowError:
        sock.close()
        raise DaemonNotResponding(f"daemon not responding (connect to {path} timed out)") from None
    except OSError as exc:
        sock.close()
        raise _connect_error(exc, path) from None
    stream = trio.SocketStream(sock)
    client = Client(stream, path)
    try:
        decoder = await client._handshake(connect_timeout)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._reader, decoder)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


class BlockingClient:
    """A synchronous client for scripts and the CLI (one request at a time)."""

    def __init__(self, socket_path: str | Path | None = None, *, timeout: float = 30.0) -> None:
        self.path = Path(socket_path) if socket_path is not None else default_socket_path()
        self.timeout = timeout
        self._sock: stdsocket.socket | None = None
        self._decoder = FrameDecoder()
        self._ids = itertools.count(1)
        self.server_hello: Hello | None = None

    def __enter__(self) -> BlockingClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        if self._sock is not None:
            return
        sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        sock.settimeout(min(self.timeout, 5.0))
        try:
            sock.connect(str(self.path))
        except TimeoutError:
            sock.close()
            raise DaemonNotResponding(f"daemon not responding (connect to {self.path} timed out)") from None
        except OSError as exc:
            sock.close()
            raise _connect_error(exc, self.path) from None
        self._sock = sock
        self._send(Hello(protocol_version=PROTOCOL_VERSION, agent=f"tundra-cli/{__version__}", pid=os.getpid()))
        msg = self._recv()
        if isinstance(msg, ErrorReply):
            raise _error_from_reply(msg)
        if not isinstance(msg, Hello):
            raise IpcError("daemon did not start with Hello")
        if msg.protocol_version != PROTOCOL_VERSION:
            raise ProtocolMismatch(
                f"protocol version mismatch: daemon speaks v{msg.protocol_version}, client speaks v{PROTOCOL_VERSION}"
            )
        self.server_hello = msg
        sock.settimeout(self.timeout)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, msg: Any) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(frame(_encoder.encode(msg)))
        except OSError:
            raise ConnectionLost("daemon closed the connection") from None

    def _recv(self, timeout: float | None = -1.0) -> ServerFrame:
        assert self._sock is not None
        if timeout != -1.0:
            self._sock.settimeout(timeout)
        while True:
            for body in self._decoder.frames():
                return _decoder.decode(body)
            try:
                data = self._sock.recv(_RECV)
            except TimeoutError:
                raise DaemonNotResponding(
                    f"daemon not responding (no reply within {self._sock.gettimeout():g}s)"
                ) from None
            except OSError:
                raise ConnectionLost("daemon closed the connection") from None
            if not data:
                raise ConnectionLost("daemon closed the connection")
            self._decoder.feed(data)

    def call(self, method: str, params: Any = None, *, result_type: type[T] | Any = Any) -> T:
        self.connect()
        rid = next(self._ids)
        self._send(Request(id=rid, method=method, params=_encode_params(params)))
        while True:
            msg = self._recv()
            if isinstance(msg, ErrorReply) and msg.id in (0, rid):
                raise _error_from_reply(msg)
            if isinstance(msg, Response) and msg.id == rid:
                return cast(T, msgspec.msgpack.decode(msg.result, type=result_type))

    @contextmanager
    def stream(
        self, method: str, params: Any = None, *, item_type: Any = Any, timeout: float | None = None
    ) -> Iterator[Iterator[Any]]:
        """Yields an iterator of stream items (``timeout=None`` waits forever)."""
        self.connect()
        rid = next(self._ids)
        self._send(Request(id=rid, method=method, params=_encode_params(params)))
        done = False

        def items() -> Iterator[Any]:
            nonlocal done
            while True:
                msg = self._recv(timeout)
                if isinstance(msg, StreamItem) and msg.id == rid:
                    yield msgspec.msgpack.decode(msg.data, type=item_type)
                elif isinstance(msg, Response) and msg.id == rid:
                    done = True
                    return
                elif isinstance(msg, ErrorReply) and msg.id in (0, rid):
                    done = True
                    raise _error_from_reply(msg)

        try:
            yield items()
        finally:
            if not done and self._sock is not None:
                try:
                    self._send(Cancel(id=rid))
                except IpcError:
                    pass
