"""The MySQL-protocol engine (Dolt, MariaDB, MySQL) over pymysql.

pymysql is blocking, so every call runs in a trio worker thread behind a CapacityLimiter as
large as the connection pool. ``connect_timeout``, ``read_timeout`` and ``write_timeout`` are
always set (pymysql's read/write defaults are "wait forever"). A connection that breaks is
thrown away together with the idle ones (they point at the same dead server) and the error is
raised as :class:`~tundra.store.engine.ConnectionLost` so the store can reconnect and retry.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import pymysql
import pymysql.err
import trio

from tundra.store.dialect import MYSQL
from tundra.store.engine import ConnectionLost, Engine, Row, Session
from tundra.store.errors import StoreAccessDenied, StoreConnectError, StoreError

__all__ = ["MysqlEngine", "MysqlTarget", "CONNECTION_LOST_CODES"]

log = logging.getLogger("tundra.store.mysql")
T = TypeVar("T")

# Client/server error codes that mean "the connection is gone" (not "your SQL is wrong").
CONNECTION_LOST_CODES = frozenset(
    {
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query
        2014,  # commands out of sync (after a broken read)
        2055,  # lost connection (system error)
        1053,  # server shutdown in progress
        1152,  # aborted connection
        1927,  # MariaDB: connection was killed
        4031,  # MySQL 8: disconnected by the server (inactivity)
    }
)
ACCESS_DENIED_CODES = frozenset({1044, 1045, 1698})
_RETRY_CODES = frozenset({1205, 1213})  # lock wait timeout, deadlock
_DEADLOCK_ATTEMPTS = 3


@dataclass(frozen=True)
class MysqlTarget:
    host: str
    port: int
    user: str
    password: str
    database: str
    unix_socket: str = ""
    kind: str = "mysql"
    """``mysql`` or ``dolt`` (Dolt adds version-control calls)."""
    auto_commit: bool = False
    """Dolt only: a Dolt commit after every write transaction."""

    def url(self) -> str:
        """The URL with the password left out (safe for logs and status)."""
        base = f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"
        return base + (f"?unix_socket={self.unix_socket}" if self.unix_socket else "")


def _code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return 0


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    if isinstance(exc, pymysql.err.OperationalError):
        return _code(exc) in CONNECTION_LOST_CODES
    return isinstance(exc, (ConnectionError, TimeoutError, BrokenPipeError))


def _args(sql: str, params: Sequence[Any]) -> tuple[str, tuple[Any, ...] | None]:
    # pymysql only %-formats when given args: SQL without params is sent as written.
    if not params:
        return sql, None
    return MYSQL.sql(sql), tuple(params)


class _MysqlSession(Session):
    dialect = MYSQL

    def __init__(self, conn: pymysql.connections.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.conn.cursor() as cur:
            return int(cur.execute(*_args(sql, params)))

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.conn.cursor() as cur:
            cur.execute(*_args(sql, params))
            return int(cur.lastrowid or 0)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.conn.cursor() as cur:
            cur.execute(*_args(sql, params))
            return list(cur.fetchall())

    def query_raw(self, sql: str) -> list[Row]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(MYSQL.sql(sql), [tuple(r) for r in rows])

    def begin(self) -> None:
        self.conn.begin()

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def is_duplicate_key(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.IntegrityError) and _code(exc) == 1062

    def is_foreign_key_error(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.IntegrityError) and _code(exc) in (1216, 1452)


class MysqlEngine(Engine):
    dialect = MYSQL

    def __init__(
        self,
        target: MysqlTarget,
        *,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        write_timeout: float = 30.0,
    ) -> None:
        self.target = target
        self.kind = target.kind
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.limiter = trio.CapacityLimiter(pool_size)
        self._lock = threading.Lock()
        self._idle: list[_MysqlSession] = []
        self._generation = 0
        """Bumped when the pool is dropped, so sessions of a dead server are not reused."""

    # -- connections -------------------------------------------------------------------
    def _raw_connect(self, *, with_db: bool) -> pymysql.connections.Connection[Any]:
        t = self.target
        kwargs: dict[str, Any] = dict(
            user=t.user,
            password=t.password,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            write_timeout=self.write_timeout,
            autocommit=False,
            charset="utf8mb4",
        )
        if t.unix_socket:
            kwargs["unix_socket"] = t.unix_socket
        else:
            kwargs["host"] = t.host
            kwargs["port"] = t.port
        if with_db:
            kwargs["database"] = t.database
        sock: socket.socket | None = None
        if t.unix_socket:
            # pymysql leaks the socket of a failed unix-socket connect; dial it ourselves.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect(t.unix_socket)
            except OSError as e:
                sock.close()
                raise StoreConnectError.for_address(
                    t.host, t.port, f"{t.unix_socket}: {e.strerror or e}"
                ) from None
        try:
            conn = pymysql.connect(**kwargs, defer_connect=True)
            conn.connect(sock)
            return conn
        except pymysql.err.MySQLError as e:
            raise self._translate(e) from None
        except OSError as e:
            raise StoreConnectError.for_address(t.host, t.port, e.strerror or str(e)) from None

    def _translate(self, e: BaseException) -> StoreError:
        code = _code(e)
        t = self.target
        if code in ACCESS_DENIED_CODES:
            # The server's text already is "Access denied for user 'root'@'localhost' (...)".
            text = e.args[1] if len(e.args) > 1 else str(e)
            return StoreAccessDenied(
                str(text).split(" (using password")[0], details={"user": t.user}
            )
        if code in CONNECTION_LOST_CODES or isinstance(e, pymysql.err.InterfaceError):
            reason = str(e.args[1]) if len(e.args) > 1 else str(e)
            if "Can't connect" in reason or code in (2002, 2003):
                return StoreConnectError.for_address(t.host, t.port, _short_reason(reason))
            return StoreConnectError(
                f"Lost connection to MySQL server on '{t.host}:{t.port}' ({_short_reason(reason)})",
                details={"host": t.host, "port": t.port, "code": code},
            )
        return StoreError(f"database error: {e}")

    def connect(self) -> None:
        # Create the database on first connect (Dolt: a new database in the server's dir).
        conn = self._raw_connect(with_db=False)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.target.database}`")
            conn.commit()
        except pymysql.err.MySQLError as e:
            raise self._translate(e) from None
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 -- closing a broken socket
                pass
        session = _MysqlSession(self._raw_connect(with_db=True))
        with self._lock:
            self._idle.append(session)

    def _take(self) -> tuple[_MysqlSession, int]:
        with self._lock:
            gen = self._generation
            if self._idle:
                return self._idle.pop(), gen
        try:
            return _MysqlSession(self._raw_connect(with_db=True)), gen
        except StoreConnectError as e:
            raise ConnectionLost(e) from None

    def _give(self, s: _MysqlSession, gen: int) -> None:
        with self._lock:
            if gen == self._generation and len(self._idle) < self.pool_size:
                self._idle.append(s)
                return
        _close_quietly(s)

    def drop_pool(self) -> None:
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for s in idle:
            _close_quietly(s)

    def _lost(self, s: _MysqlSession, exc: BaseException) -> ConnectionLost:
        _close_quietly(s)
        self.drop_pool()
        return ConnectionLost(self._translate(exc))

    # -- calls ---------------------------------------------------------------------------
    def call(self, fn: Callable[[Session], T], *, write: bool) -> T:
        for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
            try:
                return self._call_once(fn, write=write)
            except pymysql.err.OperationalError as e:
                # InnoDB picked this transaction as a deadlock victim / lock wait timed out:
                # it was rolled back whole, so running it again is safe.
                if _code(e) not in _RETRY_CODES or attempt == _DEADLOCK_ATTEMPTS:
                    raise StoreError(
                        f"database error: {e.args[1] if len(e.args) > 1 else e}"
                    ) from e
                log.debug("retrying transaction after %s (attempt %d)", e, attempt)
            except pymysql.err.MySQLError as e:
                raise StoreError(f"database error: {e.args[1] if len(e.args) > 1 else e}") from e
        raise AssertionError("unreachable")

    def _call_once(self, fn: Callable[[Session], T], *, write: bool) -> T:
        s, gen = self._take()
        try:
            s.begin()
            out = fn(s)
            s.commit()
            if write and self.target.kind == "dolt" and self.target.auto_commit:
                dolt_commit(s, "tundra: write batch", allow_empty=False)
                s.commit()  # close the SQL transaction the CALL ran in
        except BaseException as e:
            if is_connection_error(e):
                raise self._lost(s, e) from None
            try:
                s.rollback()
            except Exception as e2:  # noqa: BLE001 -- the rollback itself can find the link dead
                if is_connection_error(e2):
                    raise self._lost(s, e2) from e
                _close_quietly(s)
                raise
            self._give(s, gen)
            raise
        self._give(s, gen)
        return out

    def exclusive(self, fn: Callable[[Session], T]) -> T:
        s, gen = self._take()
        try:
            s.conn.autocommit(True)
            out = fn(s)
        except BaseException as e:
            if is_connection_error(e):
                raise self._lost(s, e) from None
            _close_quietly(s)
            raise
        try:
            s.conn.autocommit(False)
        except Exception as e:  # noqa: BLE001
            if is_connection_error(e):
                raise self._lost(s, e) from None
            raise
        self._give(s, gen)
        return out

    def close(self) -> None:
        self.drop_pool()

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.kind,
            "url": self.target.url(),
            "host": self.target.host,
            "port": self.target.port,
        }

    # -- backup --------------------------------------------------------------------------
    def dump_sql(self, out: IO[str]) -> int:
        """Write a mysqldump-compatible SQL dump (schema + data) of our database; returns
        the number of rows written."""

        def dump(sess: Session) -> int:
            assert isinstance(sess, _MysqlSession)
            conn = sess.conn
            rows_written = 0
            out.write(f"-- tundra db backup of `{self.target.database}` ({self.kind})\n")
            out.write("SET NAMES utf8mb4;\nSET FOREIGN_KEY_CHECKS=0;\n\n")
            tables = [
                r[0] for r in sess.query_raw("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'")
            ]
            for table in tables:
                create = sess.query_raw(f"SHOW CREATE TABLE `{table}`")[0][1]
                out.write(f"DROP TABLE IF EXISTS `{table}`;\n{create};\n")
                with conn.cursor() as cur:
                    cur.execute(f"SELECT * FROM `{table}`")
                    cols = ", ".join(f"`{d[0]}`" for d in cur.description or ())
                    for row in cur.fetchall():
                        values = ", ".join(conn.escape(v) for v in row)
                        out.write(f"INSERT INTO `{table}` ({cols}) VALUES ({values});\n")
                        rows_written += 1
                out.write("\n")
            out.write("SET FOREIGN_KEY_CHECKS=1;\n")
            return rows_written

        return self.exclusive(dump)


def dolt_commit(s: Session, message: str, *, allow_empty: bool) -> str | None:
    """``CALL DOLT_COMMIT`` of the working set; returns the hash (None if nothing to commit)."""
    args = ["-Am", message] + (["--allow-empty"] if allow_empty else [])
    try:
        row = s.query_one(f"CALL DOLT_COMMIT({', '.join('?' for _ in args)})", args)
    except pymysql.err.MySQLError as e:
        if "nothing to commit" in str(e).lower():
            return None
        raise
    return str(row[0]) if row else None


def _short_reason(reason: str) -> str:
    # "Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)"
    if "(" in reason and reason.endswith(")"):
        return reason[reason.rfind("(") + 1 : -1]
    return reason


def _close_quietly(s: _MysqlSession) -> None:
    try:
        s.conn.close()
    except Exception:  # noqa: BLE001 -- already broken
        pass
