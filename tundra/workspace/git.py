"""Run the git CLI from trio with a deadline; failures become :class:`GitReadError`."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import trio

from tundra.workspace.errors import GitReadError

__all__ = ["GitResult", "run_git", "DEFAULT_GIT_TIMEOUT"]

log = logging.getLogger("tundra.workspace.git")

DEFAULT_GIT_TIMEOUT = 60.0

# GIT_TERMINAL_PROMPT=0 makes git fail instead of waiting for a password on a TTY we lack;
# LC_ALL=C keeps messages parseable (conflict detection reads them).
_BASE_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


class GitResult(msgspec.Struct, frozen=True):
    returncode: int
    stdout: str
    stderr: str


async def run_git(
    args: Sequence[str],
    *,
    cwd: str | Path,
    timeout: float = DEFAULT_GIT_TIMEOUT,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> GitResult:
    """Run ``git <args>`` in ``cwd``; raise :class:`GitReadError` on timeout or (with
    ``check``) a non-zero exit."""
    full_env = dict(os.environ)
    full_env.update(_BASE_ENV)
    if env:
        full_env.update(env)
    argv = ["git", *args]
    log.debug("git %s", " ".join(args), extra={"fields": {"cwd": str(cwd)}})
    try:
        with trio.fail_after(timeout):
            proc = await trio.run_process(
                argv,
                cwd=str(cwd),
                env=full_env,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    except trio.TooSlowError:
        raise GitReadError(
            f"git {args[0] if args else ''} timed out after {timeout:g}s in {cwd}",
            details={"argv": argv, "cwd": str(cwd)},
        ) from None
    except FileNotFoundError as exc:
        if not await trio.Path(cwd).exists():
            raise GitReadError(f"directory does not exist: {cwd}") from exc
        raise GitReadError("git is not installed (not found on PATH)") from exc
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise GitReadError(
            f"git {' '.join(args[:2])} failed ({proc.returncode}): {err.strip() or out.strip()}",
            details={"argv": argv, "cwd": str(cwd), "returncode": proc.returncode},
        )
    return GitResult(proc.returncode, out, err)
