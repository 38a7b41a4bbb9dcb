"""Benchmark: per-call overhead of Tundra's LLM router vs a direct httpx call (the floor) and
vs LiteLLM's Router, all against the same fake Anthropic server, sequential and 50 concurrent.

    .venv/bin/python tests/benchmarks/bench_router.py [--calls N] [--concurrent-calls N]

The fake provider runs in a separate process so the server's work does not share the
client's GIL. Tundra runs under trio, LiteLLM under asyncio; each is compared with a direct
httpx call under its own event loop, so "overhead" is what the router adds to the same wire
call. LiteLLM is optional: ``.venv/bin/pip install litellm==1.110.2`` (never 1.82.7/1.82.8).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tundra.harness.config import parse_harness  # noqa: E402
from tundra.intelligence.api import AskParams  # noqa: E402
from tundra.intelligence.profiles import ApiProfile  # noqa: E402
from tundra.intelligence.providers import make_http_client  # noqa: E402
from tundra.intelligence.router import Router  # noqa: E402
from tundra.intelligence.usage import UsageTracker  # noqa: E402

MODEL = "claude-sonnet-4-20250514"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Say hi"}]}
HEADERS = {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01", "content-type": "application/json"}
CONCURRENCY = 50
CPU = [0.0]
"""Client-process CPU seconds per call of the last run (the server is another process)."""


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/fakes/fake_llm.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


def stats(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50": statistics.median(s) * 1000, "p95": s[int(0.95 * (len(s) - 1))] * 1000,
            "mean": statistics.fmean(s) * 1000}


# -- trio side -----------------------------------------------------------------------------------
async def trio_run_calls(fn: Callable[[], Awaitable[Any]], n: int, conc: int) -> tuple[list[float], float]:
    lat: list[float] = []
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t = time.perf_counter()
            await fn()
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    c0 = time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(conc):
            nursery.start_soon(worker)
    CPU[0] = (time.process_time() - c0) / n
    return lat, time.perf_counter() - t0


async def trio_bench(url: str, n: int, nc: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with make_http_client() as client:
        body = msgspec.json.encode(BODY)

        async def direct() -> None:
            r = await client.post(f"{url}/v1/messages", content=body, headers=HEADERS)
            r.raise_for_status()
            msgspec.json.decode(r.content)

        h = parse_harness({"rate_limit": {n: {"tokens_per_second": 1e9, "max_burst": 1e9}
                                          for n in ("global", "per_user", "per_endpoint")}})
        router = Router([ApiProfile(name="bench", provider="anthropic", base_url=url, api_key_env="BENCH_KEY")],
                        h, client, UsageTracker(None), env={"BENCH_KEY": "sk-bench"})
        params = AskParams(prompt="Say hi", max_tokens=64)

        async def routed() -> None:
            await router.ask(params, user="1000")

        for name, fn in (("httpx direct (trio)", direct), ("tundra router", routed)):
            await trio_run_calls(fn, 50, 1)  # warm-up: connections, caches
            seq, _ = await trio_run_calls(fn, n, 1)
            cpu_seq = CPU[0]
            par, wall = await trio_run_calls(fn, nc, CONCURRENCY)
            out[name] = {"seq": stats(seq), "par": stats(par), "rps": nc / wall,
                         "cpu_seq_us": cpu_seq * 1e6, "cpu_par_us": CPU[0] * 1e6}
    return out


# -- asyncio side --------------------------------------------------------------------------------
async def aio_run_calls(fn: Callable[[], Awaitable[Any]], n: int, conc: int) -> tuple[list[float], float]:
    lat: list[float] = []
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t = time.perf_counter()
            await fn()
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    c0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(conc)))
    CPU[0] = (time.process_time() - c0) / n
    return lat, time.perf_counter() - t0


async def aio_bench(url: str, n: int, nc: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=32)) as client:
        body = msgspec.json.encode(BODY)

        async def direct() -> None:
            r = await client.post(f"{url}/v1/messages", content=body, headers=HEADERS)
            r.raise_for_status()
            msgspec.json.decode(r.content)

        fns: list[tuple[str, Callable[[], Awaitable[Any]]]] = [("httpx direct (asyncio)", direct)]
        try:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            t_imp = time.perf_counter()
            import litellm  # type: ignore[import-not-found]

            out["_litellm_import_s"] = time.perf_counter() - t_imp
            litellm.telemetry = False
            litellm.suppress_debug_info = True
            lrouter = litellm.Router(model_list=[{"model_name": "claude", "litellm_params": {
                "model": f"anthropic/{MODEL}", "api_base": url, "api_key": "sk-bench"}}], num_retries=0)

            async def via_litellm() -> None:
                await lrouter.acompletion(model="claude", messages=BODY["messages"], max_tokens=64)

            fns.append(("litellm Router", via_litellm))
        except ImportError:
            out["_litellm_missing"] = True
        for name, fn in fns:
            await aio_run_calls(fn, 50, 1)
            seq, _ = await aio_run_calls(fn, n, 1)
            cpu_seq = CPU[0]
            par, wall = await aio_run_calls(fn, nc, CONCURRENCY)
            out[name] = {"seq": stats(seq), "par": stats(par), "rps": nc / wall,
                         "cpu_seq_us": cpu_seq * 1e6, "cpu_par_us": CPU[0] * 1e6}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=500, help="sequential calls per contestant")
    ap.add_argument("--concurrent-calls", type=int, default=1000, help="calls at 50 concurrent")
    args = ap.parse_args()
    proc, url = start_fake()
    try:
        t = trio.run(trio_bench, url, args.calls, args.concurrent_calls)
        a = asyncio.run(aio_bench(url, args.calls, args.concurrent_calls))
    finally:
        proc.terminate()
        proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
    rows = {**t, **{k: v for k, v in a.items() if not k.startswith("_")}}
    print(f"fake provider: {url} (separate process); {args.calls} sequential calls, "
          f"{args.concurrent_calls} calls at {CONCURRENCY} concurrent\n")
    print(f"{'contestant':<24} {'seq p50 ms':>10} {'seq p95 ms':>10} {'c50 p50 ms':>10} {'c50 p95 ms':>10} "
          f"{'c50 req/s':>10} {'cpu us/call':>11} {'c50 cpu us':>10}")
    for name, r in rows.items():
        print(f"{name:<24} {r['seq']['p50']:>10.3f} {r['seq']['p95']:>10.3f} {r['par']['p50']:>10.3f} "
              f"{r['par']['p95']:>10.3f} {r['rps']:>10.0f} {r['cpu_seq_us']:>11.0f} {r['cpu_par_us']:>10.0f}")
    floor_t = t["httpx direct (trio)"]
    tun = t["tundra router"]
    floor_a = a["httpx direct (asyncio)"]
    ov_t_seq = tun["seq"]["p50"] - floor_t["seq"]["p50"]
    ov_t_par = tun["par"]["p50"] - floor_t["par"]["p50"]
    print("\nadded p50 over the direct httpx call on the same event loop:")
    print(f"  tundra router   sequential {ov_t_seq:+.3f} ms   50 concurrent {ov_t_par:+.3f} ms"
          f"   (target < 0.5 ms sequential: {'met' if ov_t_seq < 0.5 else 'NOT met'})")
    if "litellm Router" in a:
        ll = a["litellm Router"]
        ov_l_seq = ll["seq"]["p50"] - floor_a["seq"]["p50"]
        ov_l_par = ll["par"]["p50"] - floor_a["par"]["p50"]
        print(f"  litellm Router  sequential {ov_l_seq:+.3f} ms   50 concurrent {ov_l_par:+.3f} ms"
              f"   (import {a['_litellm_import_s']:.1f} s)")
        for label, x, y in (("sequential", ov_l_seq, ov_t_seq), ("50 concurrent", ov_l_par, ov_t_par)):
            ratio = x / y if y > 0.001 else float("inf")
            print(f"  overhead ratio litellm/tundra, {label}: {ratio:.1f}x (target >= 5x: "
                  f"{'met' if ratio >= 5 else 'NOT met'})")
        print(f"  throughput at 50 concurrent: tundra {tun['rps']:.0f} req/s vs litellm {ll['rps']:.0f} req/s "
              f"({tun['rps'] / ll['rps']:.1f}x)")
        cpu_t = tun["cpu_seq_us"] - floor_t["cpu_seq_us"]
        cpu_l = ll["cpu_seq_us"] - floor_a["cpu_seq_us"]
        cpu_tp = tun["cpu_par_us"] - floor_t["cpu_par_us"]
        cpu_lp = ll["cpu_par_us"] - floor_a["cpu_par_us"]
        print(f"  client CPU added per call: tundra {cpu_t:+.0f} us (c50 {cpu_tp:+.0f} us), "
              f"litellm {cpu_l:+.0f} us (c50 {cpu_lp:+.0f} us) -> "
              f"{cpu_l / max(cpu_t, 1):.1f}x / {cpu_lp / max(cpu_tp, 1):.1f}x less for tundra")
    else:
        print("  litellm: not installed -- skipped (.venv/bin/pip install litellm==1.110.2 to compare)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
