"""The engine contract: sync sessions run in worker threads, connection-loss classification.

An :class:`Engine` owns the database connections. Its methods are *blocking* and are only
called from worker threads (``trio.to_thread.run_sync`` with :attr:`Engine.limiter`) by
:class:`tundra.store.store.Store`, which adds the async surface, the state machine and the
reconnect loop. A :class:`Session` is one connection in use by one thread.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import trio

from tundra.store.dialect import Dialect

__all__ = ["Engine", "Session", "ConnectionLost", "Row"]

T = TypeVar("T")
Row = tuple[Any, ...]


class ConnectionLost(Exception):
    """The connection broke (or could not be made); the operation may be retried after a
    reconnect. ``error`` is the user-facing StoreError describing why."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Session(abc.ABC):
    """One connection used by one worker thread at a time. SQL uses ``?`` placeholders."""

    dialect: Dialect

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the affected row count."""

    @abc.abstractmethod
    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT; returns the new row's auto-increment id."""

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def begin(self) -> None: ...

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...

    @abc.abstractmethod
    def is_duplicate_key(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a unique/primary-key violation."""

    @abc.abstractmethod
    def is_foreign_key_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a foreign-key violation (a parent row is missing)."""

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None


class Engine(abc.ABC):
    """A database: sessions, a worker-thread limiter, and a description for status output."""

    kind: str
    """``sqlite`` | ``mysql`` | ``dolt``."""
    dialect: Dialect
    limiter: trio.CapacityLimiter

    def limiter_for(self, write: bool) -> trio.CapacityLimiter:
        """The worker-thread limiter for reads or writes (one shared limiter by default)."""
        return self.limiter

    @abc.abstractmethod
    def connect(self) -> None:
        """(Re)open connections and check the database answers. Raises a StoreError
        (connect/access/permission) -- never a driver exception."""

    @abc.abstractmethod
    def call(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction on a pooled session (commit on return, rollback on
        error). Raises :class:`ConnectionLost` when the connection broke."""

    @abc.abstractmethod
    def exclusive(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` on a session with no transaction opened (migrations manage their own).
        Raises :class:`ConnectionLost` when the connection broke."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """``{"engine": ..., "url": <without password>, ...}``."""

    @property
    def is_dolt(self) -> bool:
        return self.kind == "dolt"
