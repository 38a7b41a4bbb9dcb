"""Terminals benchmark: PTY output throughput, spawn rate + RSS per idle terminal, echo latency.

Run: .venv/bin/python tests/benchmarks/bench_terminals.py [--mb 200] [--runs 3] [--counts 100,500]
     [--echo 500] [--queue-mb 64]

Baselines, measured in the same run:
(a) throughput -- the same command (`head -c N /dev/zero | tr '\\0' a`) on a PTY read directly
    by one trio process (64 KiB reads on the master fd); Tundra: the bytes delivered to an IPC
    client attached with `term.attach` to a daemon-owned terminal.
(b) spawn rate and daemon RSS per idle terminal (`cat`) at each count -- no baseline; target
    <= 150 KiB per idle terminal beyond its scrollback (rings are allocated on demand).
(c) keystroke echo round trip -- one byte written to a raw-mode `cat` and read back, directly
    on the PTY vs `term.input` + the `term.attach` stream through the daemon.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support import start_daemon  # noqa: E402
from tundra.ipc.client import Client  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def flood_cmd(nbytes: int) -> list[str]:
    return ["sh", "-c", f"stty raw -echo; read go; head -c {nbytes} /dev/zero | tr '\\0' a; read x"]


# -- (a) throughput ------------------------------------------------------------------
def _spawn_on_pty(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    os.set_blocking(master, False)
    return proc, master


async def direct_throughput(nbytes: int) -> float:
    proc, master = await trio.to_thread.run_sync(_spawn_on_pty, flood_cmd(nbytes))
    got = 0
    os.write(master, b"go\n")
    t0 = time.perf_counter()
    try:
        while got < nbytes:
            await trio.lowlevel.wait_readable(master)
            # Drain everything ready before waiting again (the best a direct reader can do).
            while True:
                try:
                    data = os.read(master, 65536)
                except (BlockingIOError, OSError):
                    break
                got += data.count(b"a")
    finally:
        dt = time.perf_counter() - t0
        os.close(master)
        proc.kill()
        proc.wait()
    return got / dt / 1e6


async def ipc_throughput(c: Client, nbytes: int) -> float:
    info = await c.call("term.new", {"argv": flood_cmd(nbytes)})
    tid = info["id"]
    got = 0
    frames = 0
    async with c.stream("term.attach", {"id": tid}) as s:
        await c.call("term.input", {"id": tid, "data": b"go\n"})
        t0 = time.perf_counter()
        async for item in s:
            if item["type"] == "output":
                got += item["data"].count(b"a")
                frames += 1
                if got >= nbytes:
                    break
        dt = time.perf_counter() - t0
    await c.call("term.remove", {"id": tid})
    print(f"    ipc: {frames} frames, avg {nbytes / max(frames, 1) / 1024:.0f} KiB/frame")
    return got / dt / 1e6


# -- (b) spawn rate + RSS --------------------------------------------------------------
async def spawn_many(c: Client, n: int, concurrency: int = 8) -> tuple[float, list[str]]:
    ids: list[str] = []
    t0 = time.perf_counter()

    async def worker(k: int) -> None:
        for _ in range(k):
            info = await c.call("term.new", {"argv": ["cat"]})
            ids.append(info["id"])

    async with trio.open_nursery() as nursery:
        per = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        for k in per:
            nursery.start_soon(worker, k)
    return n / (time.perf_counter() - t0), ids


# -- (c) echo --------------------------------------------------------------------------
async def direct_echo(n: int) -> list[float]:
    proc, master = await trio.to_thread.run_sync(
        _spawn_on_pty, ["sh", "-c", "stty raw -echo; echo ready; exec cat"]
    )
    buf = b""
    while b"ready" not in buf:
        await trio.lowlevel.wait_readable(master)
        buf += os.read(master, 4096)
    lat: list[float] = []
    for i in range(n):
        ch = bytes([97 + i % 26])
        t0 = time.perf_counter()
        os.write(master, ch)
        got = b""
        while ch not in got:
            await trio.lowlevel.wait_readable(master)
            got += os.read(master, 4096)
        lat.append((time.perf_counter() - t0) * 1000)
    os.close(master)
    proc.kill()
    proc.wait()
    return lat


async def ipc_echo(c: Client, n: int) -> list[float]:
    info = await c.call("term.new", {"argv": ["sh", "-c", "stty raw -echo; echo ready; exec cat"]})
    tid = info["id"]
    lat: list[float] = []
    async with c.stream("term.attach", {"id": tid, "since": 0}) as s:
        it = s.__aiter__()
        buf = b""
        while b"ready" not in buf:
            item = await it.__anext__()
            if item["type"] == "output":
                buf += item["data"]
        for i in range(n):
            ch = bytes([97 + i % 26])
            t0 = time.perf_counter()
            await c.call("term.input", {"id": tid, "data": ch})
            got = b""
            while ch not in got:
                item = await it.__anext__()
                if item["type"] == "output":
                    got += item["data"]
            lat.append((time.perf_counter() - t0) * 1000)
    await c.call("term.remove", {"id": tid})
    return lat


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def main(args: argparse.Namespace) -> None:
    nbytes = args.mb * 1_000_000
    counts = [int(x) for x in args.counts.split(",") if x]
    # A client slower than the producer is dropped (`ipc.lagged`) once its queue is full -- by
    # design the PTY is never slowed. The benchmark measures delivery, so the queue is large.
    cfg = (
        f"[daemon]\nmax_ptys = {max(counts) + 10}\nkill_grace_secs = 0.5\n"
        f"[terminals]\nsubscriber_queue_bytes = {args.queue_mb * 1024 * 1024}\n"
    )
    rows: list[tuple[str, str, str, str]] = []
    async with start_daemon(config=cfg) as d, d.client() as c:
        print(f"(a) throughput, {args.mb} MB of output ...")
        direct = statistics.median([await direct_throughput(nbytes) for _ in range(args.runs)])
        ipc = statistics.median([await ipc_throughput(c, nbytes) for _ in range(args.runs)])
        rows.append(
            ("output throughput (MB/s)", f"{ipc:.1f}", f"{direct:.1f}", f"{ipc / direct:.2f}")
        )

        print("(c) echo round trips ...")
        de = await direct_echo(args.echo)
        ie = await ipc_echo(c, args.echo)
        rows.append(
            (
                "echo p50 (ms)",
                f"{pct(ie, 50):.3f}",
                f"{pct(de, 50):.3f}",
                f"{pct(ie, 50) / pct(de, 50):.1f}x",
            )
        )
        rows.append(
            (
                "echo p99 (ms)",
                f"{pct(ie, 99):.3f}",
                f"{pct(de, 99):.3f}",
                f"{pct(ie, 99) / pct(de, 99):.1f}x",
            )
        )

        print("(b) spawn rate and RSS per idle terminal ...")
        base_rss = rss_kib(d.pid)
        rows.append(("daemon RSS, no terminals (MiB)", f"{base_rss / 1024:.1f}", "", ""))
        made: list[str] = []
        for n in counts:
            rate, ids = await spawn_many(c, n - len(made))
            made += ids
            rss = rss_kib(d.pid)
            rows.append((f"spawn rate up to {n} (terminals/s)", f"{rate:.0f}", "", ""))
            rows.append(
                (f"RSS per idle terminal at {n} (KiB)", f"{(rss - base_rss) / n:.0f}", "", "")
            )
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for tid in made:
                nursery.start_soon(c.call, "term.remove", {"id": tid})
        rows.append(
            (f"remove {len(made)} terminals (s)", f"{time.perf_counter() - t0:.2f}", "", "")
        )

    w = max(len(r[0]) for r in rows)
    print()
    print(f"| {'metric':<{w}} |   tundra | baseline |  ratio |")
    print(f"|{'-' * (w + 2)}|----------|----------|--------|")
    for name, a, b, r in rows:
        print(f"| {name:<{w}} | {a:>8} | {b:>8} | {r:>6} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--counts", default="100,500")
    ap.add_argument("--echo", type=int, default=500)
    ap.add_argument("--queue-mb", type=int, default=64, help="[terminals] subscriber_queue_bytes")
    trio.run(main, ap.parse_args())
