"""The single-instance lock: exclusive, informative, never stale after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tundra.daemon.errors import DaemonAlreadyRunning
from tundra.daemon.lock import DaemonLock


def test_second_holder_is_refused_with_pid_and_socket(tmp_path: Path) -> None:
    a = DaemonLock(tmp_path / "daemon.lock")
    a.acquire("/run/x.sock")
    try:
        info = json.loads((tmp_path / "daemon.lock").read_text())
        assert info["pid"] == os.getpid() and info["socket"] == "/run/x.sock"
        with pytest.raises(DaemonAlreadyRunning) as e:
            DaemonLock(tmp_path / "daemon.lock").acquire("/other.sock")
        assert e.value.message == f"daemon already running (pid {os.getpid()}, socket /run/x.sock)"
        assert DaemonLock(tmp_path / "daemon.lock").held_by_another()
    finally:
        a.release()
    b = DaemonLock(tmp_path / "daemon.lock")
    b.acquire("/b.sock")
    b.release()


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    lock = tmp_path / "daemon.lock"
    code = (
        f"import sys,time; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from tundra.daemon.lock import DaemonLock\n"
        f"DaemonLock(__import__('pathlib').Path({str(lock)!r})).acquire('s'); print('held', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        with pytest.raises(DaemonAlreadyRunning):
            DaemonLock(lock).acquire("x")
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert lock.exists()  # the file stays, but nobody holds it
        DaemonLock(lock).acquire("x")
    finally:
        p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()
