"""Store errors: connection, access, permissions, migrations, the managed Dolt server.

Messages follow the troubleshooting guide's "Dolt Database Configuration" section so the
guide stays true (``Can't connect to MySQL server on '127.0.0.1:3306'``, ``Schema version
mismatch: expected v5, found v7``...).
"""

from __future__ import annotations

from tundra.config.errors import MissingDatabaseUrl
from tundra.errors import TundraError

__all__ = [
    "StoreError",
    "StoreUnavailable",
    "StoreConnectError",
    "StoreAccessDenied",
    "StorePermissionDenied",
    "StoreNotFound",
    "StoreConflict",
    "MissingDatabaseUrl",
    "MigrationFailed",
    "SchemaVersionMismatch",
    "MigrationChecksumMismatch",
    "MigrationNotReversible",
    "PortInUse",
    "DoltNotFound",
    "DoltServerFailed",
    "NotADoltDatabase",
]


class StoreError(TundraError):
    """Root of the store's errors."""

    code = "store.error"
    http_status = 500


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; the daemon keeps reconnecting."""

    code = "store.unavailable"
    http_status = 503
    default_hint = "run `tundra db status` for the last connection error"


class StoreConnectError(StoreUnavailable):
    """The seed's ``Can't connect to MySQL server on 'HOST:PORT'``."""

    code = "store.connect_failed"
    default_hint = (
        "is dolt sql-server running? start it with `dolt sql-server --port <port>` in the "
        "[dolt] dir, set [dolt] manage = true to let the daemon run it, or check [dolt] host/port"
    )

    @classmethod
    def for_address(cls, host: str, port: int, reason: str = "") -> StoreConnectError:
        msg = f"Can't connect to MySQL server on '{host}:{port}'"
        if reason:
            msg += f" ({reason})"
        return cls(msg, details={"host": host, "port": port})


class StoreAccessDenied(StoreError):
    """The seed's ``Access denied for user 'root'@'localhost'``."""

    code = "store.access_denied"
    http_status = 500
    default_hint = (
        "check the user in [store] url / [dolt] user and the password in [store] password_env "
        "or password_file (a 0600 file)"
    )


class StorePermissionDenied(StoreError):
    """The seed's ``Permission denied (os error 13)`` on the data directory or database file."""

    code = "store.permission_denied"
    default_hint = (
        "fix the owner/mode (e.g. `chown -R $USER <dir>; chmod 700 <dir>`) or move the store"
    )


class StoreNotFound(StoreError):
    code = "store.not_found"
    http_status = 404


class StoreConflict(StoreError):
    code = "store.conflict"
    http_status = 409


class MigrationFailed(StoreError):
    """The seed's ``Migration failed: <sql error>``; the schema stays at the previous version."""

    code = "store.migration_failed"
    default_hint = "the schema was left at the previous version; `tundra db status` shows it"


class SchemaVersionMismatch(StoreError):
    """The seed's ``Schema version mismatch: expected v5, found v7`` (database newer than code)."""

    code = "store.schema_mismatch"
    default_hint = "upgrade tundra, or roll the database back with a matching tundra (`tundra db rollback --to N`)"


class MigrationChecksumMismatch(StoreError):
    code = "store.checksum_mismatch"
    default_hint = "an applied migration file was edited; restore it -- add a new migration instead"


class MigrationNotReversible(StoreError):
    code = "store.not_reversible"


class PortInUse(StoreError):
    """``Address already in use: port 3306 is held by mysqld (pid N); set [dolt] port = 3307...``"""

    code = "store.port_in_use"
    default_hint = "stop the other server, or pick a free port in [dolt] port"


class DoltNotFound(StoreError):
    code = "store.dolt_not_found"
    default_hint = (
        "install Dolt (https://docs.dolthub.com/introduction/installation; macOS: `brew install dolt`) "
        "and make sure `dolt` is on the daemon's PATH, or use the default SQLite store (remove [dolt])"
    )


class DoltServerFailed(StoreError):
    """``failed to start Dolt SQL server: <reason>``."""

    code = "store.dolt_server_failed"
    default_hint = "see logs/dolt-sql-server.log in TUNDRA_HOME"


class NotADoltDatabase(StoreError):
    code = "store.not_dolt"
    http_status = 400
