"""The bridge's counters, gauges and latency histogram, rendered as Prometheus text."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

__all__ = ["BridgeMetrics", "LATENCY_BUCKETS"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"'
        for k, v in pairs.items()
    )
    return "{" + inner + "}"


class _Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
        self.total += value
        self.count += 1


class BridgeMetrics:
    """Process-local metrics; the daemon-side figures are fetched when /metrics is scraped."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, _Histogram] = {}
        self.ws_clients: dict[str, int] = {"terminal": 0, "events": 0}
        self.ws_closed: dict[str, int] = {}
        self.ipc_reconnects = 0
        self.daemon_up = 0
        self.ws_bytes_out = 0
        self.ws_bytes_in = 0

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency.setdefault(route, _Histogram()).observe(seconds)

    def ws_closed_with(self, kind: str, code: int) -> None:
        key = f"{kind}:{code}"
        self.ws_closed[key] = self.ws_closed.get(key, 0) + 1

    def render(
        self,
        *,
        pool: Mapping[str, float] | None = None,
        terminals_by_status: Mapping[str, int] | None = None,
    ) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                v = int(value) if float(value).is_integer() else value
                out.append(f"{name}{_labels(labels)} {v}")

        family("tundra_bridge_daemon_up", "gauge", "1 while the bridge holds a live IPC connection to the daemon.",
               [({}, self.daemon_up)])
        family("tundra_bridge_ipc_reconnects_total", "counter", "IPC reconnect attempts after losing the daemon.",
               [({}, self.ipc_reconnects)])
        family("tundra_bridge_http_requests_total", "counter", "HTTP requests by method, route and status.",
               [({"method": m, "route": r, "status": str(s)}, n) for (m, r, s), n in sorted(self.requests.items())])
        out.append("# HELP tundra_bridge_http_request_duration_seconds HTTP request latency by route.")
        out.append("# TYPE tundra_bridge_http_request_duration_seconds histogram")
        for route, h in sorted(self.latency.items()):
            cum = 0
            for bound, c in zip(LATENCY_BUCKETS, h.counts, strict=False):
                cum += c
                out.append(f'tundra_bridge_http_request_duration_seconds_bucket{_labels({"route": route, "le": repr(bound)})} {cum}')
            out.append(f'tundra_bridge_http_request_duration_seconds_bucket{_labels({"route": route, "le": "+Inf"})} {h.count}')
            out.append(f"tundra_bridge_http_request_duration_seconds_sum{_labels({'route': route})} {h.total:.6f}")
            out.append(f"tundra_bridge_http_request_duration_seconds_count{_labels({'route': route})} {h.count}")
        family("tundra_bridge_ws_clients", "gauge", "Open WebSocket connections by kind.",
               [({"kind": k}, v) for k, v in sorted(self.ws_clients.items())])
        family("tundra_bridge_ws_closed_total", "counter", "WebSocket closes by kind and close code.",
               [({"kind": k.split(":")[0], "code": k.split(":")[1]}, v) for k, v in sorted(self.ws_closed.items())])
        family("tundra_bridge_ws_bytes_total", "counter", "Terminal bytes relayed over WebSockets.",
               [({"direction": "out"}, self.ws_bytes_out), ({"direction": "in"}, self.ws_bytes_in)])
        if pool is not None:
            family("tundra_pty_pool_active", "gauge", "PTYs in use in the daemon's pool.",
                   [({}, pool.get("active", 0))])
            family("tundra_pty_pool_max", "gauge", "The daemon's PTY pool capacity (max_ptys).",
                   [({}, pool.get("max", 0))])
            family("tundra_pty_spawned_total", "counter", "PTYs the daemon has spawned.",
                   [({}, pool.get("spawned", 0))])
            family("tundra_pty_spawn_failed_total", "counter", "PTY spawns that failed (including at capacity).",
                   [({}, pool.get("failed", 0))])
        if terminals_by_status is not None:
            family("tundra_terminals", "gauge", "Terminals known to the daemon by status.",
                   [({"status": s}, n) for s, n in sorted(terminals_by_status.items())])
        return "\n".join(out) + "\n"
