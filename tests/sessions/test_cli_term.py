"""`tundra term ...` and `tundra attach` against a real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import trio

from tests.support import DaemonHandle, start_daemon, wait_for
from tundra.cli.attach import DetachDetector, parse_detach_keys
from tundra.cli.term import parse_size
from tundra.errors import UsageError


async def tundra(
    d: DaemonHandle, *args: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "tundra", *args],
        env=d.env,
        capture_stdout=True,
        capture_stderr=True,
        check=check,
    )


def test_parse_size_and_detach_keys() -> None:
    assert parse_size("120x40") == (40, 120)
    with pytest.raises(UsageError):
        parse_size("12040")
    assert parse_detach_keys("ctrl-\\,d") == b"\x1cd"
    assert parse_detach_keys("ctrl-a") == b"\x01"
    det = DetachDetector(b"\x1cd")
    assert det.feed(b"ab\x1c") == (b"ab", False)
    assert det.feed(b"x") == (b"\x1cx", False)
    assert det.feed(b"\x1c") == (b"", False)
    assert det.feed(b"dzz") == (b"", True)


async def test_term_commands_round_trip() -> None:
    async with start_daemon() as d:
        r = await tundra(d, "term", "new", "--name", "w1", "--size", "100x30", "--json", "--", "sh")
        info = json.loads(r.stdout)
        assert info["name"] == "w1" and (info["cols"], info["rows"]) == (100, 30)
        await tundra(d, "term", "send", "w1", "stty size; echo done-$((1+1))", "--enter")

        async def has_output() -> bool:
            out = (await tundra(d, "term", "output", info["id"][:6])).stdout
            return b"30 100" in out and b"done-2" in out

        await wait_for(has_output, 15, interval=0.05, message="command output")
        ls = json.loads((await tundra(d, "term", "ls", "--json")).stdout)
        assert [t["id"] for t in ls["terminals"]] == [info["id"]]
        human = (await tundra(d, "term", "ls")).stdout.decode()
        assert "w1" in human and "disconnected" in human
        r = await tundra(d, "term", "resize", "w1", "120x40", "--json")
        assert json.loads(r.stdout)["rows"] == 40
        r = await tundra(d, "term", "kill", "w1", "--json")
        assert json.loads(r.stdout)["status"] == "dead"
        await tundra(d, "term", "rm", "w1")
        r = await tundra(d, "term", "show", "w1", check=False)
        assert r.returncode == 1
        assert b"error: terminal not found: w1" in r.stderr


async def test_attach_raw_mode_detach_and_resume() -> None:
    async with start_daemon() as d:
        r = await tundra(d, "term", "new", "--name", "a1", "--json", "--", "sh")
        tid = json.loads(r.stdout)["id"]
        master, slave = os.openpty()
        os.set_blocking(master, False)
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tundra", "attach", "a1"],
            env=d.env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        seen = bytearray()

        async def read_until(needle: bytes) -> None:
            with trio.fail_after(15):
                while needle not in seen:
                    await trio.lowlevel.wait_readable(master)
                    try:
                        seen.extend(os.read(master, 65536))
                    except OSError:
                        return

        try:
            # Wait until attached (clients == 1), then type through the attach client.
            async def attached() -> bool:
                try:
                    seen.extend(os.read(master, 65536))
                except OSError:
                    pass
                assert proc.returncode is None, bytes(seen)
                return bool((await d.call("term.get", {"id": tid}))["clients"] == 1)

            await wait_for(attached, 15, interval=0.05, message="attached")
            os.write(master, b"echo hi-$((40+2))\r")
            await read_until(b"hi-42")
            os.write(master, b"\x1cd")
            await read_until(b"detached")
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            os.close(master)
        info = await d.call("term.get", {"id": tid})
        assert info["status"] == "disconnected"  # still running after the detach
        offsets = json.loads((d.home / "run" / "attach-offsets.json").read_text())
        assert 0 < offsets[tid] <= info["offset"]
