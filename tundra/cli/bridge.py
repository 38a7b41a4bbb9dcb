"""`tundra bridge` (HTTP + WebSocket server), `tundra bridge url` and `tundra up`."""

from __future__ import annotations

import argparse
from typing import Any

from tundra.cli.output import emit

__all__ = ["register"]


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {n}")
    return n


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (default [bridge] host, 127.0.0.1)")
    p.add_argument("--port", type=_port, help="TCP port (default [bridge] port, 3000; 0 = any free port)")
    p.add_argument("--allow-remote", action="store_true", default=None,
                   help="allow listening on a non-loopback address (use TLS: [bridge] tls_cert/tls_key)")
    p.add_argument("--log-format", choices=["auto", "human", "json"], help="log output format")


def register(sub: Any) -> None:
    b = sub.add_parser("bridge", help="run the HTTP/WebSocket bridge (web page + REST API) in the foreground")
    b.add_argument("action", nargs="?", choices=["run", "url"], default="run",
                   help="run (default): serve; url: print a one-time login link for the web page")
    _serve_args(b)
    b.add_argument("--json", action="store_true", help="print JSON (for `url`)")
    b.set_defaults(func=cmd_bridge)
    u = sub.add_parser("up", help="run the daemon and the bridge together in the foreground (Ctrl-C stops both)")
    _serve_args(u)
    u.set_defaults(func=cmd_up)


def cmd_bridge(args: argparse.Namespace) -> int:
    if args.action == "url":
        return cmd_url(args)
    from tundra.bridge.main import run_bridge

    return run_bridge(host=args.host, port=args.port, allow_remote=args.allow_remote, log_format=args.log_format)


def cmd_url(args: argparse.Namespace) -> int:
    from tundra.bridge.auth import LOGIN_CODE_TTL
    from tundra.bridge.main import _effective_config, bridge_base_url, login_url
    from tundra.paths import TundraPaths

    paths = TundraPaths.from_env()
    config = _effective_config(paths, args.host, args.port, args.allow_remote)
    base = bridge_base_url(paths, config) if args.host is None and args.port is None else _explicit(config)
    url = login_url(paths, base)
    return emit(args, {"url": url, "base_url": base, "expires_in_secs": LOGIN_CODE_TTL}, lambda d: d["url"])


def _explicit(config: Any) -> str:
    host = config.bridge.host
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.bridge.tls_cert and config.bridge.tls_key else "http"
    return f"{scheme}://{host}:{config.bridge.port}"


def cmd_up(args: argparse.Namespace) -> int:
    from tundra.bridge.main import run_up

    return run_up(host=args.host, port=args.port, allow_remote=args.allow_remote, log_format=args.log_format)
