"""A private MariaDB server for tests: Debian's ``mariadbd`` in a temp datadir, on a private
port and socket, torn down after. No system service is touched.

``mariadb-install-db`` runs once per test session into a template datadir; each server
starts from a copy of it (a copy takes milliseconds, an install seconds).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql

__all__ = ["MariaDB", "mariadb_binaries", "free_port", "install_template"]

ROOT_PASSWORD = "tundra-test"


def mariadb_binaries() -> tuple[str, str] | None:
    """(mariadbd, mariadb-install-db) paths, or None when the server is not installed."""
    daemon = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if daemon and install:
        return daemon, install
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _user_args() -> list[str]:
    # mariadbd refuses to run as root unless told which user to be.
    return ["--user=root"] if os.geteuid() == 0 else []


def install_template(base: Path) -> Path:
    bins = mariadb_binaries()
    assert bins is not None
    _, install = bins
    datadir = base / "template"
    datadir.mkdir(parents=True)
    proc = subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *_user_args(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"mariadb-install-db failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return datadir


class MariaDB:
    """One mariadbd process. ``start()`` waits until it accepts connections."""

    def __init__(self, template: Path, *, port: int | None = None) -> None:
        bins = mariadb_binaries()
        assert bins is not None
        self.daemon = bins[0]
        self.base = Path(tempfile.mkdtemp(prefix="mdb", dir="/tmp"))
        self.datadir = self.base / "data"
        shutil.copytree(template, self.datadir, symlinks=True)
        self.socket = self.base / "s.sock"
        self.port = port or free_port()
        self.log = self.base / "err.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._provisioned = False

    def url(self, database: str, user: str = "tundra") -> str:
        return f"mysql://{user}@127.0.0.1:{self.port}/{database}"

    @property
    def password(self) -> str:
        return ROOT_PASSWORD

    def start(self, timeout: float = 60.0) -> None:
        args = [
            self.daemon,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.base / 'mdb.pid'}",
            f"--log-error={self.log}",
            f"--tmpdir={self.base}",
            "--skip-log-bin",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=1",
            "--max-connections=200",
            *_user_args(),
        ]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mariadbd exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}"
                )
            if self._socket_answers():
                conn = pymysql.connect(
                    unix_socket=str(self.socket),
                    user="root",
                    password=self._root_pw(),
                    connect_timeout=5,
                )
                break
            else:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mariadbd did not accept connections in {timeout}s:\n{self.log_text()[-3000:]}"
                    ) from None
                time.sleep(
                    0.05
                )  # polling a starting server process; not synchronisation between tests
        try:
            if not self._provisioned:
                with conn.cursor() as cur:
                    cur.execute(
                        "CREATE USER IF NOT EXISTS 'tundra'@'%%' IDENTIFIED BY %s", (ROOT_PASSWORD,)
                    )
                    cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'tundra'@'%'")
                    cur.execute("FLUSH PRIVILEGES")
                conn.commit()
                self._provisioned = True
        finally:
            conn.close()

    def _socket_answers(self) -> bool:
        # A raw probe (closed every time): pymysql leaks the socket of a failed connect.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(str(self.socket))
                return True
            except OSError:
                return False

    def _root_pw(self) -> str:
        return ""

    def kill(self) -> None:
        """SIGKILL the server (a crash) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def admin(self, sql: str) -> list[tuple[object, ...]]:
        conn = pymysql.connect(
            unix_socket=str(self.socket), user="root", password=self._root_pw(), connect_timeout=5
        )
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = list(cur.fetchall())
            conn.commit()
            return rows
        finally:
            conn.close()
