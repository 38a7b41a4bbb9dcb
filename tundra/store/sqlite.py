"""The embedded SQLite engine: one file in ``data/``, WAL, foreign keys on, one writer.

Writes go through a single writer connection behind a CapacityLimiter(1) (SQLite allows one
writer at a time; queueing in trio is cheaper than spinning on the file lock). Reads use a few
reader connections, which WAL lets run next to the writer. Connections are used from trio's
worker threads (``check_same_thread=False``) but only ever by one thread at a time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from tundra.store.dialect import SQLITE
from tundra.store.engine import Engine, Row, Session
from tundra.store.errors import StoreError, StorePermissionDenied

__all__ = ["SqliteEngine", "permission_error_for"]

log = logging.getLogger("tundra.store.sqlite")
T = TypeVar("T")


def _owner_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def permission_error_for(path: Path, what: str = "data dir") -> StorePermissionDenied:
    """The seed's ``Permission denied (os error 13)`` naming the path, owner and mode."""
    try:
        st = path.stat()
        owner = (
            f"owner {_owner_name(st.st_uid)} (uid {st.st_uid}), mode {stat.S_IMODE(st.st_mode):04o}"
        )
    except OSError as e:
        owner = f"cannot stat: {e.strerror}"
    return StorePermissionDenied(
        f"Permission denied (os error 13): {what} {path} is not writable ({owner})",
        hint=(
            f"fix it with `chown -R {_owner_name(os.getuid())} {path} && chmod 700 {path}`, "
            "or point [store] sqlite_path somewhere writable"
        ),
        details={"path": str(path)},
    )


def _check_writable_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except PermissionError:
        parent = directory.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        raise permission_error_for(parent) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise permission_error_for(directory)


class _SqliteSession(Session):
    dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, tuple(params)).rowcount

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self.conn.execute(sql, tuple(params))
        return int(cur.lastrowid or 0)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, [tuple(r) for r in rows])

    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def begin_immediate(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def is_duplicate_key(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def is_foreign_key_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "FOREIGN KEY" in str(exc)


class SqliteEngine(Engine):
    kind = "sqlite"
    dialect = SQLITE

    def __init__(self, path: Path, *, busy_timeout: float = 5.0, readers: int = 2) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(readers)
        self._readers_n = readers
        self._lock = threading.Lock()
        self._writer: _SqliteSession | None = None
        self._readers: list[_SqliteSession] = []

    def limiter_for(self, write: bool) -> trio.CapacityLimiter:
        return self.limiter if write else self._read_limiter

    def _open(self) -> _SqliteSession:
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
            )
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a commit survives a process crash; only a power loss may
            # roll back the last transactions.
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError as e:
            text = str(e)
            if "unable to open" in text or "readonly" in text:
                raise permission_error_for(self.path.parent) from None
            raise StoreError(f"cannot open SQLite database {self.path}: {text}") from None
        return _SqliteSession(conn)

    def connect(self) -> None:
        _check_writable_dir(self.path.parent)
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise permission_error_for(self.path, "database file")
        with self._lock:
            if self._writer is None:
                self._writer = self._open()
                # A read-only file system or a file we cannot write shows up on first write.
                try:
                    self._writer.conn.execute("BEGIN IMMEDIATE")
                    self._writer.conn.execute("COMMIT")
                except sqlite3.OperationalError as e:
                    if "readonly" in str(e) or "unable to open" in str(e):
                        raise permission_error_for(self.path.parent) from None
                    raise StoreError(f"cannot write SQLite database {self.path}: {e}") from None

    def _take_reader(self) -> _SqliteSession:
        with self._lock:
            if self._readers:
                return self._readers.pop()
        return self._open()

    def _give_reader(self, s: _SqliteSession) -> None:
        with self._lock:
            if len(self._readers) < self._readers_n:
                self._readers.append(s)
                return
        s.conn.close()

    def call(self, fn: Callable[[Session], T], *, write: bool) -> T:
        try:
            return self._call(fn, write=write)
        except sqlite3.Error as e:
            # "database is locked" after busy_timeout, disk full, corrupt file...
            raise StoreError(f"database error: {e}") from e

    def _call(self, fn: Callable[[Session], T], *, write: bool) -> T:
        if write:
            if self._writer is None:
                self.connect()
            assert self._writer is not None
            s = self._writer
            s.begin_immediate()
            try:
                out = fn(s)
                s.commit()
                return out
            except BaseException:
                s.rollback()
                raise
        s = self._take_reader()
        try:
            s.begin()
            try:
                return fn(s)
            finally:
                s.rollback()
        finally:
            self._give_reader(s)

    def exclusive(self, fn: Callable[[Session], T]) -> T:
        if self._writer is None:
            self.connect()
        assert self._writer is not None
        return fn(self._writer)

    def close(self) -> None:
        with self._lock:
            sessions = ([self._writer] if self._writer else []) + self._readers
            self._writer = None
            self._readers = []
        for s in sessions:
            try:
                s.conn.close()
            except sqlite3.Error:
                pass

    def backup_to(self, target: Path) -> None:
        """Online backup (SQLite backup API) into a new file."""
        if self._writer is None:
            self.connect()
        assert self._writer is not None
        dst = sqlite3.connect(str(target))
        try:
            self._writer.conn.backup(dst)
        finally:
            dst.close()

    def describe(self) -> dict[str, Any]:
        return {"engine": "sqlite", "url": f"sqlite:///{self.path}", "path": str(self.path)}
