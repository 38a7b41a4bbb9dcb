"""Numbered, checksummed schema migrations recorded in ``schema_migrations``.

Files live in ``tundra/store/migrations/NNNN_name.sql`` with a ``-- migrate:up`` and an
optional ``-- migrate:down`` section; statements end with ``;`` at the end of a line. The
checksum is the SHA-256 of the file's bytes, so an edited applied migration is detected.

Atomicity: on SQLite each migration (DDL + its ``schema_migrations`` row) is one transaction,
so a crash leaves the previous version. MySQL/MariaDB commit DDL implicitly, so a row in
``schema_migrations_pending`` marks a migration in flight; if the process dies, the next run
undoes the partial migration (its down statements, best effort) before anything else. On Dolt
the migration is bracketed by Dolt commits ``pre-migration vN`` / ``migration vN`` and an
interrupted or failed one is undone with ``DOLT_RESET --hard``.

Everything here is blocking and runs in a worker thread (see :class:`tundra.store.store.Store`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tundra.store.engine import ConnectionLost, Engine, Session
from tundra.store.errors import (
    MigrationChecksumMismatch,
    MigrationFailed,
    MigrationNotReversible,
    NotADoltDatabase,
    SchemaVersionMismatch,
    StoreError,
)

__all__ = [
    "Migration",
    "MigrationStatus",
    "Migrator",
    "load_migrations",
    "MIGRATIONS_DIR",
]

log = logging.getLogger("tundra.store.migrations")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SECTION = re.compile(r"^--\s*migrate:(up|down)\s*$", re.MULTILINE)

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, "
    "checksum VARCHAR(64) NOT NULL, applied_at DOUBLE NOT NULL)"
)
_CREATE_PENDING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations_pending ("
    "version INTEGER NOT NULL PRIMARY KEY, started_at DOUBLE NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    checksum: str
    up: tuple[str, ...]
    down: tuple[str, ...] | None
    """None when the file has no down section (not reversible)."""

    @property
    def label(self) -> str:
        return f"v{self.version} ({self.name})"


@dataclass
class MigrationStatus:
    version: int
    """Highest applied version (0 = empty database)."""
    latest: int
    """Highest version this code knows."""
    pending: list[int] = field(default_factory=list)
    interrupted: list[int] = field(default_factory=list)
    """Versions a crashed run left half-applied (MySQL); undone by the next migrate."""
    applied: list[dict[str, Any]] = field(default_factory=list)
    problem: str = ""
    """Checksum or version mismatch text (migrate would refuse)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "latest": self.latest,
            "pending": self.pending,
            "interrupted": self.interrupted,
            "applied": self.applied,
            "problem": self.problem,
        }


def _split(sql: str) -> tuple[str, ...]:
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    text = "\n".join(lines)
    parts = re.split(r";[ \t]*$", text, flags=re.MULTILINE)
    return tuple(p.strip() for p in parts if p.strip())


def parse_migration(path: Path) -> Migration:
    m = _FILE.match(path.name)
    if not m:
        raise ValueError(f"bad migration file name: {path.name} (want NNNN_name.sql)")
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    sections = _SECTION.split(text)
    # sections = [preamble, "up", body, "down", body]
    up: tuple[str, ...] | None = None
    down: tuple[str, ...] | None = None
    for kind, body in zip(sections[1::2], sections[2::2], strict=True):
        if kind == "up":
            up = _split(body)
        else:
            down = _split(body)
    if not up:
        raise ValueError(f"migration {path.name} has no `-- migrate:up` statements")
    return Migration(
        version=int(m.group(1)),
        name=m.group(2),
        checksum=hashlib.sha256(raw).hexdigest(),
        up=up,
        down=down,
    )


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Every migration in ``directory`` (default: the package's), ordered, numbered 1..N."""
    directory = directory or MIGRATIONS_DIR
    found = sorted(
        (parse_migration(p) for p in directory.iterdir() if _FILE.match(p.name)),
        key=lambda m: m.version,
    )
    for i, mig in enumerate(found, start=1):
        if mig.version != i:
            raise ValueError(
                f"migrations must be numbered 1..N without gaps; found v{mig.version} at position {i}"
            )
    return found


class Migrator:
    """Applies and reverts migrations on one engine. Blocking; call from a worker thread."""

    def __init__(self, engine: Engine, migrations: list[Migration] | None = None) -> None:
        self.engine = engine
        self.migrations = migrations if migrations is not None else load_migrations()
        self.by_version = {m.version: m for m in self.migrations}
        self.latest = self.migrations[-1].version if self.migrations else 0
        self._mysql = engine.dialect.name == "mysql"

    # -- reading -------------------------------------------------------------------------
    def _ensure_tables(self, s: Session) -> None:
        s.execute(_CREATE_TABLE)
        if self._mysql:
            s.execute(_CREATE_PENDING)

    def _applied(self, s: Session) -> list[tuple[int, str, str, float]]:
        rows = s.query(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
        )
        return [(int(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]

    def _pending_marks(self, s: Session) -> list[int]:
        if not self._mysql:
            return []
        return [
            int(r[0])
            for r in s.query("SELECT version FROM schema_migrations_pending ORDER BY version")
        ]

    def _problem(self, applied: list[tuple[int, str, str, float]]) -> StoreError | None:
        found = max((a[0] for a in applied), default=0)
        if found > self.latest:
            return SchemaVersionMismatch(
                f"Schema version mismatch: expected v{self.latest}, found v{found}",
                details={"expected": self.latest, "found": found},
            )
        for version, name, checksum, _ in applied:
            mig = self.by_version.get(version)
            if mig is None:
                return SchemaVersionMismatch(
                    f"Schema version mismatch: expected v{self.latest}, found v{found}"
                )
            if mig.checksum != checksum:
                return MigrationChecksumMismatch(
                    f"Migration checksum mismatch: v{version} ({name}) was applied with "
                    f"{checksum[:12]} but the file now has {mig.checksum[:12]}",
                    details={"version": version, "applied": checksum, "file": mig.checksum},
                )
        return None

    def status(self) -> MigrationStatus:
        def read(s: Session) -> MigrationStatus:
            self._ensure_tables(s)
            applied = self._applied(s)
            version = max((a[0] for a in applied), default=0)
            done = {a[0] for a in applied}
            problem = self._problem(applied)
            return MigrationStatus(
                version=version,
                latest=self.latest,
                pending=[m.version for m in self.migrations if m.version not in done],
                interrupted=self._pending_marks(s),
                applied=[
                    {"version": v, "name": n, "checksum": c, "applied_at": t}
                    for v, n, c, t in applied
                ],
                problem=str(problem) if problem else "",
            )

        return self.engine.exclusive(read)

    def plan_sql(self) -> str:
        """The SQL ``migrate`` would run now (for ``--dry-run``)."""
        st = self.status()
        chunks: list[str] = []
        for v in st.pending:
            mig = self.by_version[v]
            chunks.append(f"-- {mig.label}")
            chunks.extend(self.engine.dialect.fill(stmt) + ";" for stmt in mig.up)
        return "\n".join(chunks)

    # -- applying ------------------------------------------------------------------------
    def migrate(self, target: int | None = None) -> list[int]:
        """Apply pending migrations up to ``target`` (default: latest); returns the versions
        applied. Raises SchemaVersionMismatch / MigrationChecksumMismatch without touching the
        database, MigrationFailed when a statement fails (schema left at the previous version)."""
        target = self.latest if target is None else target
        return self.engine.exclusive(lambda s: self._migrate(s, target))

    def _migrate(self, s: Session, target: int) -> list[int]:
        self._ensure_tables(s)
        problem = self._problem(self._applied(s))
        if problem is not None:
            raise problem
        self._recover(s)
        done = {a[0] for a in self._applied(s)}
        applied: list[int] = []
        for mig in self.migrations:
            if mig.version in done or mig.version > target:
                continue
            self._apply(s, mig)
            applied.append(mig.version)
        return applied

    def _apply(self, s: Session, mig: Migration) -> None:
        fill = self.engine.dialect.fill
        started = time.monotonic()
        log.info("applying migration %s", mig.label, extra={"fields": {"version": mig.version}})
        if not self._mysql:
            s.execute("BEGIN IMMEDIATE")
            try:
                for stmt in mig.up:
                    s.execute(fill(stmt))
                self._record(s, mig)
                s.execute("COMMIT")
            except ConnectionLost:
                raise
            except Exception as e:
                s.rollback()
                raise MigrationFailed(
                    f"Migration failed: {mig.label}: {e}", details={"version": mig.version}
                ) from e
        else:
            if self.engine.is_dolt:
                self._dolt_commit(s, f"pre-migration v{mig.version}")
            s.execute(
                "INSERT INTO schema_migrations_pending (version, started_at) VALUES (?, ?)",
                (mig.version, time.time()),
            )
            try:
                for stmt in mig.up:
                    s.execute(fill(stmt))
                s.begin()
                self._record(s, mig)
                s.execute("DELETE FROM schema_migrations_pending WHERE version = ?", (mig.version,))
                s.commit()
            except ConnectionLost:
                raise
            except Exception as e:
                err = MigrationFailed(
                    f"Migration failed: {mig.label}: {e}", details={"version": mig.version}
                )
                try:
                    s.rollback()
                except Exception:  # noqa: BLE001 -- undo below is what matters
                    pass
                self._undo_partial(s, mig.version)
                raise err from e
            if self.engine.is_dolt:
                self._dolt_commit(s, f"migration v{mig.version}")
        log.info(
            "migration %s applied in %.3fs",
            mig.label,
            time.monotonic() - started,
            extra={"fields": {"version": mig.version}},
        )

    def _record(self, s: Session, mig: Migration) -> None:
        s.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
            (mig.version, mig.name, mig.checksum, time.time()),
        )

    def _recover(self, s: Session) -> None:
        for version in reversed(self._pending_marks(s)):
            log.warning(
                "undoing migration v%d left half-applied by an interrupted run",
                version,
                extra={"fields": {"version": version}},
            )
            self._undo_partial(s, version)

    def _undo_partial(self, s: Session, version: int) -> None:
        if self.engine.is_dolt:
            # HEAD is the `pre-migration vN` commit: drop everything the migration did.
            s.execute("CALL DOLT_RESET('--hard')")
        else:
            mig = self.by_version.get(version)
            for stmt in reversed_down(mig):
                try:
                    s.execute(self.engine.dialect.fill(stmt))
                except ConnectionLost:
                    raise
                except Exception as e:  # noqa: BLE001 -- best effort: the object may not exist
                    log.debug("undo v%d: %s: %s", version, stmt.split("\n")[0], e)
        s.execute("DELETE FROM schema_migrations_pending WHERE version = ?", (version,))

    # -- rollback ------------------------------------------------------------------------
    def rollback(self, to: int) -> list[int]:
        """Revert applied migrations above ``to``; returns the versions reverted (newest
        first). On Dolt: reset to the ``pre-migration v(to+1)`` commit."""
        return self.engine.exclusive(lambda s: self._rollback(s, to))

    def _rollback(self, s: Session, to: int) -> list[int]:
        if to < 0:
            raise ValueError("--to must be >= 0")
        self._ensure_tables(s)
        applied = self._applied(s)
        problem = self._problem(applied)
        if isinstance(problem, SchemaVersionMismatch):
            raise problem
        versions = sorted((a[0] for a in applied if a[0] > to), reverse=True)
        if not versions:
            return []
        if self.engine.is_dolt:
            row = s.query_one(
                "SELECT commit_hash FROM dolt_log WHERE message = ? ORDER BY date DESC LIMIT 1",
                (f"pre-migration v{to + 1}",),
            )
            if row is None:
                raise MigrationNotReversible(
                    f"no Dolt commit 'pre-migration v{to + 1}' to reset to"
                )
            s.execute("CALL DOLT_RESET('--hard', ?)", (str(row[0]),))
            return versions
        for v in versions:
            mig = self.by_version.get(v)
            if mig is None or mig.down is None:
                raise MigrationNotReversible(
                    f"migration v{v} has no down section; cannot roll back past it"
                )
        fill = self.engine.dialect.fill
        for v in versions:
            mig = self.by_version[v]
            assert mig.down is not None
            log.info("reverting migration %s", mig.label)
            if not self._mysql:
                s.execute("BEGIN IMMEDIATE")
            try:
                for stmt in mig.down:
                    s.execute(fill(stmt))
                if self._mysql:
                    s.begin()
                s.execute("DELETE FROM schema_migrations WHERE version = ?", (v,))
                s.commit()
            except ConnectionLost:
                raise
            except Exception as e:
                s.rollback()
                raise MigrationFailed(f"Migration failed: rollback of {mig.label}: {e}") from e
        return versions

    # -- Dolt ----------------------------------------------------------------------------
    def _dolt_commit(self, s: Session, message: str) -> None:
        s.query("CALL DOLT_COMMIT('-Am', ?, '--allow-empty')", (message,))

    def dolt_log(self, limit: int = 50) -> list[dict[str, Any]]:
        def read(s: Session) -> list[dict[str, Any]]:
            try:
                rows = s.query(
                    "SELECT commit_hash, committer, date, message FROM dolt_log ORDER BY date DESC LIMIT ?",
                    (limit,),
                )
            except ConnectionLost:
                raise
            except Exception:
                raise NotADoltDatabase(
                    f"not a Dolt database: {self.engine.describe()['url']}",
                    hint='`tundra db log` shows Dolt history; use [store] engine = "dolt" with a Dolt server',
                ) from None
            return [
                {
                    "commit": str(r[0]),
                    "committer": str(r[1]),
                    "date": str(r[2]),
                    "message": str(r[3]),
                }
                for r in rows
            ]

        if self.engine.dialect.name == "sqlite":
            raise NotADoltDatabase(
                f"not a Dolt database: {self.engine.describe()['url']}",
                hint="`tundra db log` shows Dolt history; the SQLite store has none (use `tundra db backup`)",
            )
        return self.engine.exclusive(read)


def reversed_down(mig: Migration | None) -> tuple[str, ...]:
    """Down statements to undo a partial migration (none known -> nothing)."""
    if mig is None or mig.down is None:
        return ()
    return mig.down
