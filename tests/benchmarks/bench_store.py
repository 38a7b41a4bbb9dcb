"""Store benchmark: task inserts/updates through the repository API, SQLite vs MariaDB,
one writer and 8 concurrent writers.

Run: .venv/bin/python tests/benchmarks/bench_store.py [--ops 1000] [--writers 8]

Baseline, measured in the same run for each engine: the same INSERT/UPDATE statements issued
directly on one driver connection (``sqlite3`` / ``pymysql``) in a plain loop, one
transaction per statement -- the floor the repository API (trio worker threads, limiter,
record conversion, retry bookkeeping) adds to. MariaDB runs as a private ``mariadbd``
(Debian's package) with ``innodb_flush_log_at_trx_commit=1``, so every commit is durable, as
SQLite's WAL commits are across a process crash.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.store.mariadb import MariaDB, install_template, mariadb_binaries  # noqa: E402
from tundra.config.schema import Config, StoreConfig  # noqa: E402
from tundra.paths import TundraPaths  # noqa: E402
from tundra.store.api import TaskRecord  # noqa: E402
from tundra.store.engine import Session  # noqa: E402
from tundra.store.store import Store, open_store  # noqa: E402

PW_ENV = "BENCH_DB_PASSWORD"


class Result:
    def __init__(self, label: str, ops: int, seconds: float, lat: list[float]) -> None:
        self.label = label
        self.rate = ops / seconds if seconds > 0 else 0.0
        lat = sorted(lat)
        self.p50 = statistics.median(lat) * 1000 if lat else 0.0
        self.p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0


def _task(i: int) -> TaskRecord:
    return TaskRecord(
        id=uuid.uuid4().hex, title=f"task {i}", prompt="implement the thing " * 10, repo="/src/repo",
        preset="claude", lane=1, priority=i % 5, extra={"n": i},
    )


async def bench_api(store: Store, ops: int, writers: int) -> tuple[Result, Result]:
    """``ops`` inserts then ``ops`` updates, split over ``writers`` concurrent tasks."""
    ids: list[str] = []

    async def run(kind: str, op: Callable[[int], Awaitable[Any]]) -> Result:
        lat: list[float] = []
        per = ops // writers

        async def worker(w: int) -> None:
            for k in range(per):
                t0 = time.perf_counter()
                await op(w * per + k)
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for w in range(writers):
                nursery.start_soon(worker, w)
        return Result(kind, per * writers, time.perf_counter() - t0, lat)

    async def insert(i: int) -> None:
        rec = await store.tasks.insert(_task(i))
        ids.append(rec.id)

    async def update(i: int) -> None:
        await store.tasks.update(ids[i % len(ids)], state="running", attempts=1, started_at=time.time())

    return await run("insert", insert), await run("update", update)


def bench_raw(store: Store, ops: int) -> tuple[Result, Result]:
    """The same statements on one driver connection, no trio, no threads (the baseline)."""
    from tundra.store.repositories import _TASK_COLS, _task_value

    sql = f"INSERT INTO tasks ({', '.join(_TASK_COLS)}) VALUES ({', '.join('?' for _ in _TASK_COLS)})"
    ids: list[str] = []

    def go(s: Session) -> tuple[Result, Result]:
        lat: list[float] = []
        t0 = time.perf_counter()
        for i in range(ops):
            t = _task(i)
            t1 = time.perf_counter()
            s.begin()
            s.execute(sql, [_task_value(n, getattr(t, n)) for n in _TASK_COLS])
            s.commit()
            lat.append(time.perf_counter() - t1)
            ids.append(t.id)
        ins = Result("insert", ops, time.perf_counter() - t0, lat)
        lat = []
        t0 = time.perf_counter()
        for i in range(ops):
            t1 = time.perf_counter()
            s.begin()
            s.execute("UPDATE tasks SET state = ?, attempts = ?, started_at = ? WHERE id = ?", ("running", 1, time.time(), ids[i]))
            s.commit()
            lat.append(time.perf_counter() - t1)
        return ins, Result("update", ops, time.perf_counter() - t0, lat)

    return store.engine.exclusive(go)


async def bench_engine(name: str, store_kwargs: dict[str, Any], ops: int, writers: int, tmp: Path) -> list[tuple[str, Result, Result, Result]]:
    """Rows: (path, result, baseline) for inserts and updates."""
    rows: list[tuple[str, Result, Result, Result]] = []
    config = Config(store=StoreConfig(password_env=PW_ENV, pool_size=max(4, writers)))
    async with open_store(config, TundraPaths(tmp / "home"), **store_kwargs) as store:
        raw_ins, raw_upd = await trio.to_thread.run_sync(bench_raw, store, ops)
        rows.append((f"{name} raw driver (baseline)", raw_ins, raw_upd, raw_ins))
        for w in (1, writers):
            ins, upd = await bench_api(store, ops, w)
            rows.append((f"{name} API, {w} writer{'s' if w > 1 else ''}", ins, upd, raw_ins))
    return rows


def fmt_table(rows: list[tuple[str, Result, Result, Result]], baselines: dict[str, tuple[Result, Result]]) -> str:
    head = (
        f"| {'path':<32} | {'insert/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'update/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'ins ratio':>9} | {'upd ratio':>9} |"
    )
    sep = "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"
    out = [head, sep]
    for label, ins, upd, _ in rows:
        engine = label.split()[0]
        b_ins, b_upd = baselines[engine]
        out.append(
            f"| {label:<32} | {ins.rate:>9.0f} | {ins.p50:>7.3f} | {ins.p99:>7.3f} | {upd.rate:>9.0f} | {upd.p50:>7.3f} | {upd.p99:>7.3f} "
            f"| {ins.rate / b_ins.rate:>9.2f} | {upd.rate / b_upd.rate:>9.2f} |"
        )
    return "\n".join(out)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--ops", type=int, default=1000, help="inserts (and updates) per measurement")
    ap.add_argument("--writers", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bst", dir="/tmp"))
    rows = await bench_engine("sqlite", {"sqlite_path": tmp / "bench.sqlite3"}, args.ops, args.writers, tmp / "s")
    server: MariaDB | None = None
    if mariadb_binaries() is None:
        print("MariaDB not installed (apt-get install mariadb-server): MySQL rows skipped", file=sys.stderr)
    else:
        template = await trio.to_thread.run_sync(install_template, tmp / "mdb")
        server = MariaDB(template)
        await trio.to_thread.run_sync(server.start)
        try:
            rows += await bench_engine(
                "mariadb", {"url": server.url("bench"), "env": {PW_ENV: server.password}}, args.ops, args.writers, tmp / "m"
            )
        finally:
            await trio.to_thread.run_sync(server.cleanup)
    baselines = {label.split()[0]: (ins, upd) for label, ins, upd, _ in rows if "baseline" in label}
    print(f"ops per measurement: {args.ops}; ratio = rate / raw-driver rate of the same engine")
    print(fmt_table(rows, baselines))


if __name__ == "__main__":
    trio.run(main)
