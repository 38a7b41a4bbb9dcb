"""The terminals IPC contract: TerminalInfo, method params and attach stream items.

Shared by the daemon (``terminals`` service), the CLI, the bridge and the tasks service.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "TerminalStatus",
    "TerminalInfo",
    "NewParams",
    "IdParams",
    "InputParams",
    "ResizeParams",
    "OutputParams",
    "OutputResult",
    "AttachParams",
    "OutputItem",
    "GapItem",
    "StatusItem",
    "ExitItem",
    "AttachItem",
]

TerminalStatus = Literal["active", "disconnected", "dead"]


class TerminalInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A terminal as clients see it."""

    id: str
    name: str
    argv: list[str]
    cwd: str
    pid: int
    pgid: int
    created_at: float
    last_activity: float
    rows: int
    cols: int
    persistent: bool
    status: TerminalStatus
    """``active``: a client is attached; ``disconnected``: none is; ``dead``: exited/killed."""
    disconnected_since: float | None
    exit_code: int | None
    exit_signal: int | None
    clients: int
    offset: int
    """Absolute end offset: total bytes the terminal has produced."""
    start_offset: int
    """Absolute offset of the oldest byte still in the scrollback."""
    exit_reason: str | None = None
    """Why a dead terminal died: ``exited``, ``killed``, ``reconnect grace expired``,
    ``idle timeout``, ``max lifetime reached``, ``shutdown`` (None while alive)."""


class _Params(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    pass


class NewParams(_Params):
    argv: list[str] | None = None
    """Default: the user's login shell."""
    cwd: str | None = None
    env: dict[str, str] | None = None
    name: str | None = None
    rows: int | None = None
    cols: int | None = None
    persistent: bool = True


class IdParams(_Params):
    id: str
    """Full uuid, unique prefix, or name."""


class InputParams(_Params):
    id: str
    data: bytes


class ResizeParams(_Params):
    id: str
    rows: int
    cols: int


class OutputParams(_Params):
    id: str
    since: int | None = None
    """Absolute offset; None = the oldest retained byte."""
    max_bytes: int = 1024 * 1024


class OutputResult(msgspec.Struct, frozen=True, kw_only=True):
    start: int
    data: bytes
    end: int
    lost: int
    """Bytes between ``since`` and ``start`` that have left the scrollback."""


class AttachParams(_Params):
    id: str
    since: int | None = None
    """Resume after this absolute offset; None = replay the whole retained scrollback."""


class _Item(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class OutputItem(_Item, frozen=True, tag="output"):
    offset: int
    """Absolute offset of ``data[0]``."""
    data: bytes


class GapItem(_Item, frozen=True, tag="gap"):
    lost_bytes: int
    offset: int
    """Where the following output resumes."""


class StatusItem(_Item, frozen=True, tag="status"):
    status: TerminalStatus
    clients: int
    rows: int
    cols: int


class ExitItem(_Item, frozen=True, tag="exit"):
    exit_code: int | None
    exit_signal: int | None
    offset: int


AttachItem = OutputItem | GapItem | StatusItem | ExitItem
