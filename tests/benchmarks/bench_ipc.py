"""IPC benchmark: ping round trips through the real daemon vs a raw trio echo server.

Run: .venv/bin/python tests/benchmarks/bench_ipc.py [--n 5000] [--clients 16]

Baseline, measured in the same run: a trio echo server on a Unix socket that answers each
4-byte-prefixed frame with the same bytes -- the floor for a request/response on this
machine. Figures: sequential round trips/s, p50/p99 latency, and 16 concurrent clients.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support import short_tempdir, start_daemon  # noqa: E402
from tundra.ipc.client import open_client  # noqa: E402
from tundra.ipc.framing import FrameDecoder, frame  # noqa: E402


async def echo_server(path: Path, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    listeners = [trio.SocketListener(await _bind(path))]

    async def handle(stream: trio.SocketStream) -> None:
        dec = FrameDecoder()
        async with stream:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
                dec.feed(data)
                for body in dec.frames():
                    await stream.send_all(frame(body))

    task_status.started()
    await trio.serve_listeners(handle, listeners)


async def _bind(path: Path) -> trio.socket.SocketType:
    import socket

    s = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await s.bind(str(path))
    s.listen(128)
    return s


class RawClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.dec = FrameDecoder()

    async def roundtrip(self, body: bytes) -> bytes:
        await self.stream.send_all(frame(body))
        while True:
            for b in self.dec.frames():
                return b
            self.dec.feed(await self.stream.receive_some(65536))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


async def measure_seq(call, n: int) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    for _ in range(200):
        await call()
    lat: list[float] = []
    t0 = time.perf_counter()
    for _ in range(n):
        a = time.perf_counter()
        await call()
        lat.append(time.perf_counter() - a)
    return n / (time.perf_counter() - t0), lat


async def measure_concurrent(make_calls, clients: int, n: int) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for call in make_calls:
            async def run(call=call) -> None:  # type: ignore[no-untyped-def]
                for _ in range(n):
                    await call()
            nursery.start_soon(run)
    return clients * n / (time.perf_counter() - t0)


async def main(n: int, clients: int) -> None:
    base = short_tempdir("bench")
    echo_path = base / "echo.sock"
    ping_body = b"\x83\xa1t\xa7request\xa2id\x01\xa6method\xa4ping"  # same size as a real ping
    rows: list[tuple[str, float, float, float, float]] = []
    # The echo server runs in its own process, as the daemon does, so both paths pay the
    # same cross-process wake-ups.
    echo = await trio.lowlevel.open_process([sys.executable, __file__, "--echo-server", str(echo_path)])
    async with trio.open_nursery() as nursery:
        while not echo_path.exists():
            await trio.sleep(0.01)
        async with start_daemon(env={"TUNDRA_LOG": "warn"}) as d:
            # Raw echo baseline.
            raw = RawClient(await trio.open_unix_socket(str(echo_path)))
            raw_rate, raw_lat = await measure_seq(lambda: raw.roundtrip(ping_body), n)
            raws = [RawClient(await trio.open_unix_socket(str(echo_path))) for _ in range(clients)]
            raw_conc = await measure_concurrent([(lambda r=r: r.roundtrip(ping_body)) for r in raws], clients, n // clients * 4)
            # Tundra ping through the daemon.
            async with open_client(d.socket) as c:
                t_rate, t_lat = await measure_seq(lambda: c.call("ping"), n)
            async with contextlib.AsyncExitStack() as stack:
                cs = [await stack.enter_async_context(open_client(d.socket)) for _ in range(clients)]
                t_conc = await measure_concurrent([(lambda c=c: c.call("ping")) for c in cs], clients, n // clients * 4)
            for r in [raw, *raws]:
                await r.stream.aclose()
        nursery.cancel_scope.cancel()
    echo.kill()
    await echo.wait()
    rows.append(("raw trio echo (baseline)", raw_rate, pct(raw_lat, .5) * 1e3, pct(raw_lat, .99) * 1e3, raw_conc))
    rows.append(("tundra ping via daemon", t_rate, pct(t_lat, .5) * 1e3, pct(t_lat, .99) * 1e3, t_conc))
    print(f"IPC benchmark: {n} sequential round trips, {clients} concurrent clients ({os.cpu_count()} cores)\n")
    print(f"| {'path':<26} | {'seq req/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} | {f'{clients} clients req/s':>18} |")
    print(f"|{'-'*28}|{'-'*12}|{'-'*9}|{'-'*9}|{'-'*20}|")
    for name, rate, p50, p99, conc in rows:
        print(f"| {name:<26} | {rate:>10.0f} | {p50:>7.3f} | {p99:>7.3f} | {conc:>18.0f} |")
    print(f"\nratio tundra/raw: sequential {t_rate / raw_rate:.2f}, concurrent {t_conc / raw_conc:.2f} "
          f"(target >= 0.5); tundra p99 {pct(t_lat, .99) * 1e3:.3f} ms (target < 1 ms)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--echo-server", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.echo_server:
        trio.run(echo_server, Path(a.echo_server))
    else:
        trio.run(main, a.n, a.clients)
