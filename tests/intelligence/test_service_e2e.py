"""The llm service inside a real daemon: IPC methods, the CLI, and usage surviving a restart."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import trio

from tests.fakes.fake_llm import FakeLLM
from tests.support import short_tempdir, start_daemon, tundra_cmd
from tundra.intelligence.api import AskResult

SECRET_A = "sk-ant-secret-aaaa-1234"
SECRET_B = "sk-openai-secret-bbbb-5678"


def _home(fake: FakeLLM) -> Path:
    home = short_tempdir("llm")
    (home / "config").mkdir()
    (home / "config" / "api_profiles.json").write_text(json.dumps({"profiles": [
        {"name": "primary", "provider": "anthropic", "base_url": fake.url, "api_key_env": "T_KEY_A",
         "priority": 0, "timeout_secs": 5},
        {"name": "secondary", "provider": "openai", "base_url": fake.url, "api_key_env": "T_KEY_B",
         "default_model": "gpt-4o-mini", "priority": 1, "timeout_secs": 5},
        {"name": "nokey", "provider": "openrouter", "base_url": fake.url, "api_key_env": "T_KEY_MISSING",
         "priority": 5},
    ]}))
    (home / "config" / "harness.toml").write_text("[retry]\nmax_retries = 0\n[router]\ndeadline_secs = 20\n")
    return home


async def test_llm_service_end_to_end(fake: FakeLLM) -> None:
    home = _home(fake)
    env = {"T_KEY_A": SECRET_A, "T_KEY_B": SECRET_B}
    try:
        async with start_daemon(home, env=env) as d:
            fake.push({"match": {"api": "anthropic"}, "status": 429, "headers": {"retry-after": "7"}})
            res = await d.call("llm.ask", {"prompt": "hello", "max_tokens": 50}, result_type=AskResult)
            assert res.profile == "secondary" and res.model == "gpt-4o-mini"
            assert res.attempts == ["primary: rate limited: retry after 7s"]
            assert res.usage.output_tokens > 0

            circuits = {c["profile"]: c for c in (await d.call("llm.circuits"))["circuits"]}
            assert circuits["primary"]["cooldown_reason"] == "rate limited: retry after 7s"
            assert circuits["primary"]["until"] > circuits["primary"]["cooldown_until"] - 1

            profiles = {p["name"]: p for p in (await d.call("llm.profiles"))["profiles"]}
            assert profiles["nokey"]["problem"] == "API key not set (environment variable T_KEY_MISSING is empty)"
            assert profiles["secondary"]["key_present"] is True

            fake.push({"match": {"api": "openai"}, "text": "one two three"})
            async with d.client() as c, c.stream("llm.stream", {"prompt": "s", "profile": "secondary"},
                                                 result_type=AskResult) as s:
                deltas = [item["text"] async for item in s]
                final = s.result
            assert deltas == ["one", " two", " three"] and final.text == "one two three"

            # The CLI, as a user would run it.
            fake.push({"match": {"api": "anthropic"}, "text": "from the cli"})
            assert (await d.call("llm.reset", {"profile": "primary"}))["reset"] == ["primary"]
            out = await trio.run_process(tundra_cmd("llm", "ask", "hi there", "--json"), env=d.env,
                                         capture_stdout=True, capture_stderr=True)
            cli = json.loads(out.stdout)
            assert (cli["profile"], cli["text"]) == ("primary", "from the cli")
            bad = await trio.run_process(tundra_cmd("llm", "ask", "x", "--profile", "nope"), env=d.env,
                                         capture_stdout=True, capture_stderr=True, check=False)
            assert bad.returncode == 1
            assert b"error: LLM profile not found: nope" in bad.stderr
            human = await trio.run_process(tundra_cmd("llm", "circuits"), env=d.env, capture_stdout=True)
            assert b"primary" in human.stdout and b"closed" in human.stdout

            usage = {u["profile_id"]: u for u in (await d.call("llm.usage"))["usage"]}
            assert usage["primary"]["total_rate_limits"] == 1
            assert usage["secondary"]["successes"] == 2
            assert d.log_text().count(SECRET_A) == 0 and d.log_text().count(SECRET_B) == 0
        saved = json.loads((home / "data" / "profile_usage.json").read_text())
        by_name = {u["profile_id"]: u for u in saved}
        assert by_name["secondary"]["total_requests"] == 2
        assert by_name["primary"]["last_error"] == "rate limited: retry after 7s"
        # A restarted daemon reports the same totals.
        async with start_daemon(home, env=env) as d2:
            usage2 = {u["profile_id"]: u for u in (await d2.call("llm.usage"))["usage"]}
            assert usage2["secondary"]["total_requests"] == 2
            assert usage2["primary"]["total_rate_limits"] == 1
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def test_cli_stream_and_reload_of_profiles(fake: FakeLLM) -> None:
    home = _home(fake)
    env = {"T_KEY_A": SECRET_A, "T_KEY_B": SECRET_B}
    try:
        async with start_daemon(home, env=env) as d:
            fake.push({"match": {"api": "anthropic"}, "text": "streamed to the terminal"})
            out = await trio.run_process(tundra_cmd("llm", "ask", "go", "--stream"), env=d.env,
                                         capture_stdout=True, capture_stderr=True)
            assert out.stdout.decode().strip() == "streamed to the terminal"
            assert b"[primary" in out.stderr
            (home / "config" / "api_profiles.json").write_text(json.dumps({"profiles": [
                {"name": "only-local", "provider": "local", "base_url": fake.url}]}))
            d.send_signal(signal.SIGHUP)

            async def names() -> list[str]:
                return [p["name"] for p in (await d.call("llm.profiles"))["profiles"]]

            with trio.fail_after(10):
                while await names() != ["only-local"]:
                    await trio.sleep(0.05)
            res = await d.call("llm.ask", {"prompt": "hi"}, result_type=AskResult)
            assert res.profile == "only-local"
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def test_bad_profiles_file_is_reported_not_fatal(fake: FakeLLM) -> None:
    home = _home(fake)
    (home / "config" / "api_profiles.json").write_text('{"profiles": [{"name": "a", "provider": "anthropc"}]}')
    try:
        async with start_daemon(home) as d:
            out = await trio.run_process(tundra_cmd("llm", "profiles"), env=d.env, capture_stdout=True,
                                         capture_stderr=True, check=False)
            assert out.returncode == 2
            assert b"api_profiles.json: profiles.0.provider: invalid value 'anthropc'" in out.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_cli_help_lists_llm_commands() -> None:
    out = subprocess.run(tundra_cmd("llm", "ask", "--help"), capture_output=True, text=True, check=True)
    for flag in ("--profile", "--model", "--stream", "--system", "--max-tokens", "--json"):
        assert flag in out.stdout
