"""Benchmark the bridge: flood throughput and keystroke echo through bridge -> daemon -> PTY.

Side by side with terminado (Jupyter's terminal backend, `pip install terminado` into the
benchmark environment only) serving the same command, and a direct PTY read in this process
as the ceiling. Also samples the bridge's RSS while a stalled client (never reads) is
attached to a `yes` flood.

    .venv/bin/python tests/benchmarks/bench_bridge.py [--mb 64] [--runs 3] [--echo 300] [--stall 30]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import trio  # noqa: E402
import trio_websocket  # noqa: E402

from tests.bridge.bridgeproc import BridgeHandle, start_bridge, ws_connect, ws_handshake  # noqa: E402
from tests.support import short_tempdir, start_daemon  # noqa: E402


def flood_cmd(nbytes: int) -> list[str]:
    # Wait for one line of input so the clock starts when the client is attached. Printable
    # bytes (terminado sends JSON text, where NUL would cost 6x as \\u0000), written in
    # 64 KiB blocks by one process so the producer is not the bottleneck.
    writer = f"import os; b = b'a' * 65536; [os.write(1, b) for _ in range({nbytes // 65536})]"
    return ["sh", "-c", f'read go; stty raw -echo; {sys.executable} -c "{writer}"; sleep 60']


ECHO_CMD = ["sh", "-c", "stty raw -echo; exec cat"]


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# --------------------------------------------------------------------------- direct PTY


async def direct_flood(nbytes: int) -> float:
    import ptyprocess

    proc = await trio.to_thread.run_sync(lambda: ptyprocess.PtyProcess.spawn(flood_cmd(nbytes)))
    stream = trio.lowlevel.FdStream(os.dup(proc.fd))
    try:
        await stream.send_all(b"go\r")
        got = 0
        t0 = None
        while got < nbytes:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            if t0 is None:
                t0 = time.perf_counter()
            got += len(chunk)
        return nbytes / (time.perf_counter() - (t0 or time.perf_counter())) / 1e6
    finally:
        await stream.aclose()
        proc.terminate(force=True)


async def direct_echo(n: int) -> list[float]:
    import ptyprocess

    proc = await trio.to_thread.run_sync(lambda: ptyprocess.PtyProcess.spawn(ECHO_CMD))
    stream = trio.lowlevel.FdStream(os.dup(proc.fd))
    try:
        await trio.sleep(0.2)
        with trio.move_on_after(0.2):
            while True:
                await stream.receive_some(65536)  # discard anything printed before raw mode
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await stream.send_all(b"x")
            got = b""
            while b"x" not in got:
                got += await stream.receive_some(65536)
            out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        await stream.aclose()
        proc.terminate(force=True)


# ------------------------------------------------------------------------------ bridge


async def create(bridge: BridgeHandle, command: list[str]) -> str:
    async with bridge.http() as http:
        r = await http.post("/api/terminals", json={"command": command})
        r.raise_for_status()
        return str(r.json()["id"])


async def bridge_flood(bridge: BridgeHandle, nbytes: int) -> float:
    """MB/s delivered; a client dropped as too slow (1013) resumes by offset, as the page does."""
    tid = await create(bridge, flood_cmd(nbytes))
    next_offset: int | None = None
    t0: float | None = None
    start_offset = 0
    delivered = 0
    first = True
    while True:
        since = "" if next_offset is None else f"?since={next_offset}"
        try:
            async with ws_connect(bridge, f"/ws/terminal/{tid}{since or '?since=0'}") as ws:
                if first:
                    await ws.send_message(b"go\r")
                    first = False
                while True:
                    msg = await ws.get_message()
                    if isinstance(msg, bytes):
                        assert next_offset is not None
                        if t0 is None and len(msg) > 16:
                            t0, start_offset = time.perf_counter(), next_offset
                        next_offset += len(msg)
                        delivered += len(msg)
                        if next_offset >= nbytes:
                            break
                    else:
                        ctl = json.loads(msg)
                        if ctl["type"] == "offset":
                            next_offset = ctl["offset"]
            break
        except trio_websocket.ConnectionClosed as exc:
            if exc.reason is None or exc.reason.code != 1013:
                raise
            STATS["resumes"] = STATS.get("resumes", 0) + 1
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    async with bridge.http() as http:
        await http.delete(f"/api/terminals/{tid}")
    assert next_offset is not None
    return (next_offset - start_offset) / elapsed / 1e6


STATS: dict[str, int] = {}


async def bridge_echo(bridge: BridgeHandle, n: int) -> list[float]:
    tid = await create(bridge, ECHO_CMD)
    out = []
    async with ws_connect(bridge, f"/ws/terminal/{tid}") as ws:
        await trio.sleep(0.3)
        with trio.move_on_after(0.3):
            while True:
                await ws.get_message()
        for _ in range(n):
            t0 = time.perf_counter()
            await ws.send_message(b"x")
            while True:
                msg = await ws.get_message()
                if isinstance(msg, bytes) and b"x" in msg:
                    break
            out.append((time.perf_counter() - t0) * 1000)
    async with bridge.http() as http:
        await http.delete(f"/api/terminals/{tid}")
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def stalled_client_rss(bridge: BridgeHandle, seconds: float) -> list[tuple[float, int]]:
    tid = await create(bridge, ["yes"])
    status, _, _, stream = await ws_handshake(bridge, f"/ws/terminal/{tid}")
    assert status == 101
    samples = [(0.0, rss_kib(bridge.proc.pid))]
    t0 = trio.current_time()
    step = max(1.0, seconds / 6)
    while trio.current_time() - t0 < seconds:
        await trio.sleep(step)
        samples.append((round(trio.current_time() - t0, 1), rss_kib(bridge.proc.pid)))
    await stream.aclose()
    async with bridge.http() as http:
        await http.delete(f"/api/terminals/{tid}")
    return samples


# ---------------------------------------------------------------------------- terminado

TERMINADO_SERVER = textwrap.dedent(
    """
    import sys, json, tornado.web, tornado.ioloop
    from terminado import TermSocket, UniqueTermManager
    cmd = json.loads(sys.argv[2])
    mgr = UniqueTermManager(shell_command=cmd)
    app = tornado.web.Application([(r"/websocket", TermSocket, {"term_manager": mgr})])
    app.listen(int(sys.argv[1]), "127.0.0.1")
    print("ready", flush=True)
    tornado.ioloop.IOLoop.current().start()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Terminado:
    def __init__(self, command: list[str]) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TERMINADO_SERVER, str(self.port), json.dumps(command)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError("terminado server did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def terminado_flood(nbytes: int) -> float:
    server = await trio.to_thread.run_sync(Terminado, flood_cmd(nbytes))
    try:
        async with trio_websocket.open_websocket_url(
            f"ws://127.0.0.1:{server.port}/websocket", max_message_size=64 * 1024 * 1024,
            message_queue_size=64,
        ) as ws:
            await trio.sleep(0.3)
            await ws.send_message(json.dumps(["stdin", "go\r"]))
            got = 0
            t0 = None
            while got < nbytes:
                msg = json.loads(await ws.get_message())
                if msg[0] == "stdout":
                    if t0 is None and len(msg[1]) > 16:
                        t0 = time.perf_counter()
                        got = 0
                    got += len(msg[1].encode())
            return nbytes / (time.perf_counter() - (t0 or time.perf_counter())) / 1e6
    finally:
        server.close()


async def terminado_echo(n: int) -> list[float]:
    server = await trio.to_thread.run_sync(Terminado, ECHO_CMD)
    out = []
    try:
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{server.port}/websocket",
                                                     message_queue_size=64) as ws:
            await trio.sleep(0.3)
            with trio.move_on_after(0.3):
                while True:
                    await ws.get_message()
            for _ in range(n):
                t0 = time.perf_counter()
                await ws.send_message(json.dumps(["stdin", "x"]))
                while True:
                    msg = json.loads(await ws.get_message())
                    if msg[0] == "stdout" and "x" in msg[1]:
                        break
                out.append((time.perf_counter() - t0) * 1000)
    finally:
        server.close()
    return out


# -------------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    nbytes = args.mb * 1024 * 1024
    results: dict[str, Any] = {}
    try:
        import terminado  # noqa: F401

        have_terminado = True
    except ImportError:
        have_terminado = False
        print("terminado not installed (.venv/bin/pip install terminado): skipping its column")
    # A subscriber queue deep enough for a flood (terminado buffers without any bound).
    config = "[terminals]\nscrollback_bytes = 8388608\nsubscriber_queue_bytes = 67108864\n"
    async with start_daemon(short_tempdir("bb") / "home", config=config) as daemon, start_bridge(daemon) as bridge:
        try:
            await _measure(args, nbytes, bridge, have_terminado, results)
        except BaseException:
            print("bridge log tail:\n" + bridge.log_text()[-3000:])
            print("daemon log tail:\n" + daemon.log_text()[-3000:])
            raise
        rss = await stalled_client_rss(bridge, args.stall) if args.stall > 0 else []
    _report(args, results, rss)


async def _measure(
    args: argparse.Namespace, nbytes: int, bridge: BridgeHandle, have_terminado: bool, results: dict[str, Any]
) -> None:
    if True:
        for name, fn in (
            ("direct PTY", lambda: direct_flood(nbytes)),
            ("tundra bridge", lambda: bridge_flood(bridge, nbytes)),
            *((("terminado", lambda: terminado_flood(nbytes)),) if have_terminado else ()),
        ):
            runs = [await fn() for _ in range(args.runs)]
            results.setdefault(name, {})["flood_mbps"] = statistics.median(runs)
        for name, efn in (
            ("direct PTY", lambda: direct_echo(args.echo)),
            ("tundra bridge", lambda: bridge_echo(bridge, args.echo)),
            *((("terminado", lambda: terminado_echo(args.echo)),) if have_terminado else ()),
        ):
            lat = await efn()
            results[name]["echo_p50_ms"] = pct(lat, 50)
            results[name]["echo_p99_ms"] = pct(lat, 99)


def _report(args: argparse.Namespace, results: dict[str, Any], rss: list[tuple[float, int]]) -> None:
    base = results["direct PTY"]["flood_mbps"]
    tdo = results.get("terminado", {}).get("flood_mbps")
    print(f"\nflood: {args.mb} MiB of PTY output, median of {args.runs}; echo: {args.echo} keystrokes")
    print(f"{'path':<16}{'MB/s':>9}{'vs direct':>11}{'vs terminado':>14}{'echo p50 ms':>13}{'echo p99 ms':>13}")
    for name, r in results.items():
        vs_t = f"{r['flood_mbps'] / tdo:.2f}" if tdo else "-"
        print(f"{name:<16}{r['flood_mbps']:>9.1f}{r['flood_mbps'] / base:>11.2f}{vs_t:>14}"
              f"{r['echo_p50_ms']:>13.3f}{r['echo_p99_ms']:>13.3f}")
    if STATS.get("resumes"):
        print(f"(the bridge client was dropped as too slow and resumed by offset {STATS['resumes']} times)")
    if rss:
        print(f"\nbridge RSS with a stalled client attached to `yes` ({args.stall:g} s):")
        print("  " + ", ".join(f"t={t:g}s {kib / 1024:.1f} MiB" for t, kib in rss))
        growth = (rss[-1][1] - rss[1][1]) / 1024 if len(rss) > 1 else 0.0
        print(f"  growth after the first sample: {growth:+.1f} MiB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--echo", type=int, default=300)
    ap.add_argument("--stall", type=float, default=30.0)
    trio.run(main, ap.parse_args())
