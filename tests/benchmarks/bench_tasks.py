"""Tasks benchmark: dispatch latency and throughput of trivial `shell` tasks in the real daemon.

Run: .venv/bin/python tests/benchmarks/bench_tasks.py [--n 100] [--seq 20] [--concurrency 8]

* latency: ``--seq`` tasks added one at a time; queued -> running from the task history
  (time between the two state events), and add -> done seen by the client.
* throughput: ``--n`` tasks added at once, ``[agents] max_concurrent`` = ``--concurrency``;
  tasks/s from the first add until all are done.
* memory: the daemon's RSS idle (before) and peak during the throughput run.

Baseline, measured in the same run: what one task costs without Tundra -- ``git worktree
add -b`` + ``bash -lc true`` + ``git worktree remove`` + ``git branch -D`` run directly,
sequentially and ``--concurrency`` at a time. Ratios = Tundra / baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support import short_tempdir, start_daemon  # noqa: E402
from tests.workspace.gitrepo import make_repo  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def baseline_one(repo: Path, wt_root: Path, i: int) -> None:
    path = wt_root / f"b{i}"
    branch = f"bench/b{i}"
    await trio.run_process(
        ["git", "worktree", "add", "-q", "-b", branch, str(path), "main"],
        cwd=repo,
        capture_stdout=True,
        capture_stderr=True,
    )
    await trio.run_process(["bash", "-lc", "true"], cwd=path)
    await trio.run_process(["git", "worktree", "remove", str(path)], cwd=repo)
    await trio.run_process(["git", "branch", "-q", "-D", branch], cwd=repo)


async def baseline(repo: Path, wt_root: Path, n: int, concurrency: int) -> tuple[float, float]:
    """(seconds per task sequentially, tasks/s at ``concurrency``)."""
    t0 = time.perf_counter()
    for i in range(n):
        await baseline_one(repo, wt_root, i)
    seq = (time.perf_counter() - t0) / n
    limiter = trio.CapacityLimiter(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            await baseline_one(repo, wt_root, 10_000 + i)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return seq, n / (time.perf_counter() - t0)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def main(args: argparse.Namespace) -> None:
    base = short_tempdir("bt")
    repo = make_repo(base / "proj")
    seq_base, tput_base = await baseline(repo, base / "bwt", args.seq, args.concurrency)
    config = f'[agents]\ndefault_preset = "shell"\nmax_concurrent = {args.concurrency}\n[daemon]\nmax_ptys = {max(10, args.concurrency)}\n'
    async with start_daemon(config=config) as d, d.client() as c:
        idle_rss = rss_kib(d.pid)

        async def wait_done(tid: str) -> dict[str, Any]:
            while True:
                t = await c.call("task.get", {"id": tid})
                if t["state"] in ("done", "failed", "review"):
                    return dict(t)
                await trio.sleep(0.002)

        # Sequential: pure dispatch latency.
        lat: list[float] = []
        e2e: list[float] = []
        for _ in range(args.seq):
            t0 = time.perf_counter()
            t = await c.call(
                "task.add",
                {"title": "noop", "prompt": "true", "repo": str(repo), "requires_approval": False},
            )
            got = await wait_done(t["id"])
            e2e.append(time.perf_counter() - t0)
            assert got["state"] == "done", got
            hist = (await c.call("task.history", {"id": t["id"]}))["events"]
            ts = {e["to_state"]: e["ts"] for e in hist if e["kind"] == "state"}
            lat.append(ts["running"] - ts["queued"])

        # Throughput with RSS sampling.
        peak = idle_rss
        done = trio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_kib(d.pid))
                with trio.move_on_after(0.05):
                    await done.wait()

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            ids = []
            for i in range(args.n):
                t = await c.call(
                    "task.add",
                    {
                        "title": f"n{i}",
                        "prompt": "true",
                        "repo": str(repo),
                        "requires_approval": False,
                    },
                )
                ids.append(t["id"])
            while True:
                tasks = (await c.call("task.list", {}))["tasks"]
                mine = [x for x in tasks if x["id"] in set(ids)]
                if all(x["state"] in ("done", "failed") for x in mine):
                    break
                await trio.sleep(0.02)
            elapsed = time.perf_counter() - t0
            done.set()
        failed = sum(1 for x in mine if x["state"] != "done")
        max_running_hist = 0
        # Check the concurrency bound from the recorded histories.
        intervals = []
        for tid in ids:
            hist = (await c.call("task.history", {"id": tid}))["events"]
            ts = {e["to_state"]: e["ts"] for e in hist if e["kind"] == "state"}
            intervals.append((ts["running"], ts.get("done", ts.get("failed", 0.0))))
        events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
        cur = 0
        for _, delta in events:
            cur += delta
            max_running_hist = max(max_running_hist, cur)

    tput = args.n / elapsed
    seq_task = statistics.median(e2e)
    rows = [
        ("queued->running p50 (ms)", f"{statistics.median(lat) * 1000:.1f}", "", ""),
        ("queued->running p95 (ms)", f"{pct(lat, 95) * 1000:.1f}", "", ""),
        (
            "one task add->done p50 (ms)",
            f"{seq_task * 1000:.1f}",
            f"{seq_base * 1000:.1f}",
            f"{seq_task / seq_base:.2f}x",
        ),
        (
            f"throughput {args.n} tasks @{args.concurrency} (tasks/s)",
            f"{tput:.1f}",
            f"{tput_base:.1f}",
            f"{tput / tput_base:.2f}x",
        ),
        ("max running at once (from history)", str(max_running_hist), str(args.concurrency), ""),
        ("failed tasks", str(failed), "0", ""),
        ("daemon RSS idle (MiB)", f"{idle_rss / 1024:.1f}", "", ""),
        (
            "daemon RSS peak during run (MiB)",
            f"{peak / 1024:.1f}",
            f"{idle_rss / 1024:.1f}",
            f"{peak / max(1, idle_rss):.2f}x",
        ),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'metric':<{w}}  {'tundra':>10}  {'baseline':>10}  {'ratio':>7}")
    for name, val, b, r in rows:
        print(f"{name:<{w}}  {val:>10}  {b:>10}  {r:>7}")
    print("baseline: git worktree add + bash -lc true + worktree remove + branch -D, run directly")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seq", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=8)
    trio.run(main, ap.parse_args())
