"""IpcServer in-process: peer uid check, streams, cancellation, typed errors, concurrency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from tests.support import short_tempdir
from tundra.config import Config
from tundra.daemon.app import Daemon
from tundra.errors import TundraError
from tundra.ipc.client import open_client
from tundra.ipc.errors import InvalidRequest, PeerRejected
from tundra.ipc.registry import CallContext, NoParams, StreamSend
from tundra.ipc.server import IpcServer, bind_unix_socket
from tundra.paths import TundraPaths


class Boom(TundraError):
    code = "test.boom"
    http_status = 418


class EchoParams(msgspec.Struct, kw_only=True):
    text: str
    delay: float = 0.0


@asynccontextmanager
async def serve(**kw: Any) -> AsyncIterator[tuple[Path, Daemon, dict[str, Any]]]:
    base = short_tempdir()
    daemon = Daemon(Config(), TundraPaths(base / "home"), socket_path=str(base / "s.sock"))
    state: dict[str, Any] = {"cancelled": trio.Event(), "started": trio.Event()}

    async def echo(ctx: CallContext, p: EchoParams) -> dict[str, Any]:
        await trio.sleep(p.delay)
        return {"text": p.text, "peer_pid": ctx.peer_pid}

    async def boom(ctx: CallContext, p: NoParams) -> None:
        raise Boom("it broke", hint="do not do that", details={"n": 1})

    async def nested(ctx: CallContext, p: NoParams) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(boom, ctx, p)

    async def counter(ctx: CallContext, p: NoParams, send: StreamSend) -> str:
        try:
            for i in range(1_000_000):
                await send({"i": i})
                if i == 2:
                    state["started"].set()
        except trio.Cancelled:
            state["cancelled"].set()
            raise
        return "done"

    async def finite(ctx: CallContext, p: NoParams, send: StreamSend) -> str:
        for i in range(3):
            await send(i)
        return "end"

    daemon.registry.unary("echo", EchoParams, echo)
    daemon.registry.unary("boom", NoParams, boom)
    daemon.registry.unary("nested", NoParams, nested)
    daemon.registry.stream("counter", NoParams, counter)
    daemon.registry.stream("finite", NoParams, finite)
    server = IpcServer(daemon, bind_unix_socket(base / "s.sock"), **kw)
    async with trio.open_nursery() as n:
        await n.start(server.serve)
        yield base / "s.sock", daemon, state
        n.cancel_scope.cancel()


async def test_peer_with_another_uid_is_rejected_before_any_frame() -> None:
    async with serve(allowed_uids=frozenset({123456})) as (path, _, _):
        with pytest.raises(PeerRejected, match="peer uid"):
            async with open_client(path):
                pass


async def test_typed_errors_cross_the_socket_with_code_hint_details() -> None:
    async with serve() as (path, _, _), open_client(path) as c:
        with pytest.raises(Boom) as e:
            await c.call("boom")
        assert (e.value.message, e.value.hint, e.value.details) == ("it broke", "do not do that", {"n": 1})
        with pytest.raises(Boom):
            await c.call("nested")  # unwrapped from the handler's exception group
        with pytest.raises(InvalidRequest, match="invalid params for `echo`"):
            await c.call("echo", {"text": 5})
        assert (await c.call("echo", {"text": "hi"}))["text"] == "hi"


async def test_many_requests_in_flight_on_one_connection_complete_out_of_order() -> None:
    async with serve() as (path, _, _), open_client(path) as c:
        order: list[str] = []

        async def call(text: str, delay: float) -> None:
            r = await c.call("echo", {"text": text, "delay": delay})
            order.append(r["text"])

        async with trio.open_nursery() as n:
            n.start_soon(call, "slow", 0.3)
            n.start_soon(call, "fast", 0.0)
        assert order == ["fast", "slow"]


async def test_leaving_a_stream_early_cancels_the_handler() -> None:
    async with serve() as (path, _, state), open_client(path) as c:
        async with c.stream("counter") as s:
            async for item in s:
                if item["i"] == 5:
                    break
        with trio.fail_after(5):
            await state["cancelled"].wait()
        # The connection is still usable afterwards.
        async with c.stream("finite") as s:
            assert [i async for i in s] == [0, 1, 2]
        assert s.result == "end"


async def test_server_survives_client_vanishing_mid_stream() -> None:
    async with serve() as (path, _, state):
        async with open_client(path) as c:
            async with c.stream("counter") as s:
                async for item in s:
                    if item["i"] == 3:
                        break
        async with open_client(path) as c2:
            assert (await c2.call("echo", {"text": "still here"}))["text"] == "still here"


def test_an_existing_shared_directory_is_never_chmodded() -> None:
    base = short_tempdir()
    shared = base / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    sock = bind_unix_socket(shared / "d.sock")
    try:
        assert shared.stat().st_mode & 0o7777 == 0o1777
        assert (shared / "d.sock").stat().st_mode & 0o777 == 0o600
    finally:
        sock.close()
    fresh = base / "new" / "dir"
    bind_unix_socket(fresh / "d.sock").close()
    assert fresh.stat().st_mode & 0o777 == 0o700
