"""`tundra llm ask|profiles|usage|circuits|reset`: talk to the daemon's LLM router."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import trio

from tundra.cli.output import emit
from tundra.errors import UsageError
from tundra.intelligence.api import AskParams, AskResult, CircuitInfo, ProfileInfo, ProfileUsage
from tundra.ipc.client import BlockingClient, open_client

__all__ = ["register"]

# llm.ask may legitimately take the router's whole deadline (120 s by default).
_CALL_TIMEOUT = 600.0


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register(sub: Any) -> None:
    llm = sub.add_parser("llm", help="LLM providers: ask, profiles, usage, circuits, reset")
    s = llm.add_subparsers(dest="llm_cmd", metavar="COMMAND")
    s.required = True

    ask = s.add_parser("ask", help="send a prompt through the failover router")
    ask.add_argument("prompt", help='the prompt ("-" reads stdin)')
    ask.add_argument("--profile", help="use only this profile (no failover)")
    ask.add_argument("--model", help="override the profile's default model")
    ask.add_argument("--system", help="system prompt")
    ask.add_argument("--max-tokens", type=int, default=1024, metavar="N")
    ask.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    _json_flag(ask)
    ask.set_defaults(func=cmd_ask)

    for name, helptext, fn in (
        ("profiles", "configured profiles, keys present, problems", cmd_profiles),
        ("usage", "requests, errors, rate limits, tokens, latency and spend per profile", cmd_usage),
        ("circuits", "why a profile is refusing calls right now (breaker, cooldown, buckets)", cmd_circuits),
    ):
        p = s.add_parser(name, help=helptext)
        _json_flag(p)
        p.set_defaults(func=fn)

    reset = s.add_parser("reset", help="close circuits, end cooldowns, re-enable disabled profiles")
    reset.add_argument("profile", nargs="?", help="only this profile (default: all)")
    _json_flag(reset)
    reset.set_defaults(func=cmd_reset)


def _params(args: argparse.Namespace) -> AskParams:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    if args.max_tokens < 1:
        raise UsageError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    return AskParams(prompt=prompt, system=args.system, profile=args.profile, model=args.model,
                     max_tokens=args.max_tokens, stream=args.stream)


def _human_result(r: AskResult, *, with_text: bool = True) -> str:
    lines = [r.text] if with_text else []
    note = (f"[{r.profile} · {r.model} · {r.usage.input_tokens} in / {r.usage.output_tokens} out · "
            f"{r.latency_ms:.0f} ms]")
    if r.attempts:
        note += "  failed over: " + "; ".join(r.attempts)
    sys.stderr.write(note + "\n")
    return "\n".join(lines)


def cmd_ask(args: argparse.Namespace) -> int:
    params = _params(args)
    if not args.stream:
        with BlockingClient(timeout=_CALL_TIMEOUT) as c:
            res: AskResult = c.call("llm.ask", params, result_type=AskResult)
        return emit(args, res, _human_result)
    result = trio.run(_stream, params, not args.json)
    if args.json:
        return emit(args, result)
    sys.stdout.write("\n")
    _human_result(result, with_text=False)
    return 0


async def _stream(params: AskParams, echo: bool) -> AskResult:
    async with open_client() as c, c.stream("llm.stream", params, result_type=AskResult) as s:
        async for item in s:
            if echo and isinstance(item, dict):
                sys.stdout.write(str(item.get("text", "")))
                sys.stdout.flush()
        result: AskResult = s.result
    return result


def _call(method: str, params: Any = None) -> Any:
    with BlockingClient() as c:
        return c.call(method, params or {})


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    d = time.time() - ts
    return f"{d:.0f}s ago" if d < 120 else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _in(ts: float | None) -> str:
    if not ts:
        return "-"
    return f"in {max(0.0, ts - time.time()):.1f}s"


def cmd_profiles(args: argparse.Namespace) -> int:
    data = _call("llm.profiles")

    def human(d: dict[str, Any]) -> str:
        rows = [ProfileInfo(**p) for p in d["profiles"]]
        if not rows:
            return "no profiles configured (config/api_profiles.json)"
        out = [f"{'PRI':>3}  {'NAME':<22} {'PROVIDER':<10} {'MODEL':<36} {'KEY':<4} STATUS"]
        for p in rows:
            key = "-" if p.api_key_env is None else ("yes" if p.key_present else "NO")
            out.append(f"{p.priority:>3}  {p.name:<22} {p.provider:<10} {p.default_model:<36} "
                       f"{key:<4} {p.problem or 'ok'}")
        return "\n".join(out)

    return emit(args, data, human)


def cmd_usage(args: argparse.Namespace) -> int:
    data = _call("llm.usage")

    def human(d: dict[str, Any]) -> str:
        rows = [ProfileUsage(**u) for u in d["usage"]]
        if not rows:
            return "no LLM calls recorded yet"
        out = [f"{'PROFILE':<22} {'REQS':>6} {'OK':>6} {'ERR':>5} {'429':>5} {'TOK IN':>9} {'TOK OUT':>9} "
               f"{'P50 ms':>8} {'P95 ms':>8} {'SPEND $':>9}  LAST USED / LAST ERROR"]
        for u in rows:
            p50 = f"{u.latency_p50_ms:.0f}" if u.latency_p50_ms is not None else "-"
            p95 = f"{u.latency_p95_ms:.0f}" if u.latency_p95_ms is not None else "-"
            out.append(f"{u.profile_id:<22} {u.total_requests:>6} {u.successes:>6} {u.total_errors:>5} "
                       f"{u.total_rate_limits:>5} {u.total_tokens_in:>9} {u.total_tokens_out:>9} "
                       f"{p50:>8} {p95:>8} {u.estimated_spend_usd:>9.4f}  {_ago(u.last_used)}"
                       + (f" / {u.last_error}" if u.last_error else ""))
        return "\n".join(out)

    return emit(args, data, human)


def cmd_circuits(args: argparse.Namespace) -> int:
    data = _call("llm.circuits")

    def human(d: dict[str, Any]) -> str:
        rows = [CircuitInfo(**c) for c in d["circuits"]]
        if not rows:
            return "no profiles configured"
        out = [f"{'PROFILE':<22} {'STATE':<10} {'FAIL':>4} {'OK':>3} {'OPENED':<12} {'UNTIL':<10} "
               f"{'RPM left':>12} {'TPM left':>16}  WHY"]
        for c in rows:
            rpm = f"{c.rpm_available:.1f}/{c.rpm_capacity:.0f}" if c.rpm_capacity else "-"
            tpm = f"{c.tpm_available:.0f}/{c.tpm_capacity:.0f}" if c.tpm_capacity else "-"
            why = c.disabled or c.cooldown_reason or ("circuit open" if c.state == "open" else "")
            out.append(f"{c.profile:<22} {c.state:<10} {c.failure_count:>4} {c.success_count:>3} "
                       f"{_ago(c.opened_at):<12} {_in(c.until):<10} {rpm:>12} {tpm:>16}  {why}")
        return "\n".join(out)

    return emit(args, data, human)


def cmd_reset(args: argparse.Namespace) -> int:
    data = _call("llm.reset", {"profile": args.profile})
    return emit(args, data, lambda d: "reset: " + (", ".join(d["reset"]) or "nothing"))
