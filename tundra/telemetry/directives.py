"""Log filter directives in RUST_LOG syntax: ``info,tundra.daemon=debug,tundra.sessions.pty=trace``.

``TUNDRA_LOG`` takes our logger names; ``RUST_LOG`` (used when ``TUNDRA_LOG`` is unset)
takes the seed's crate names (``at_daemon::spawn``) and maps them onto ``tundra.*``.
Environments set the defaults from the seed's table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tundra.telemetry import TRACE

__all__ = [
    "Directives",
    "parse_directives",
    "ENVIRONMENT_DEFAULTS",
    "DEFAULT_DIRECTIVES",
    "resolve_directives",
    "DirectiveError",
]

LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}

# The seed's crates -> our packages.
CRATE_ALIASES: dict[str, str] = {
    "at_daemon": "tundra.daemon",
    "at_core": "tundra.core",
    "at_intelligence": "tundra.intelligence",
    "at_agents": "tundra.agents",
    "at_harness": "tundra.harness",
    "at_sessions": "tundra.sessions",
    "at_telemetry": "tundra.telemetry",
    "at_bridge": "tundra.bridge",
    "at_store": "tundra.store",
    "at_tasks": "tundra.tasks",
    "sqlx": "tundra.store",
}

ENVIRONMENT_DEFAULTS: dict[str, str] = {
    "development": "info,tundra.daemon=debug,tundra.core=debug",
    "staging": "info,tundra.daemon=debug",
    "production": "info,tundra.daemon=warn",
}
DEFAULT_DIRECTIVES = "info,tundra.daemon=debug"


class DirectiveError(ValueError):
    pass


@dataclass(frozen=True)
class Directives:
    default: int
    targets: tuple[tuple[str, int], ...]
    source: str

    def level_for(self, name: str) -> int:
        """The effective level for a logger name (longest matching target wins)."""
        best, best_len = self.default, -1
        for target, level in self.targets:
            if (name == target or name.startswith(target + ".")) and len(target) > best_len:
                best, best_len = level, len(target)
        return best

    def apply(self, root: logging.Logger | None = None) -> None:
        """Set logger levels so Python's hierarchy does the filtering cheaply."""
        root = root or logging.getLogger()
        root.setLevel(self.default)
        manager = logging.Logger.manager
        for _name, obj in list(manager.loggerDict.items()):
            if isinstance(obj, logging.Logger):
                obj.setLevel(logging.NOTSET)
        for target, level in self.targets:
            logging.getLogger(target).setLevel(level)


def _level(text: str, directive: str) -> int:
    try:
        return LEVELS[text.strip().lower()]
    except KeyError:
        raise DirectiveError(
            f"invalid log level `{text}` in directive `{directive}` "
            f"(expected one of trace, debug, info, warn, error, off)"
        ) from None


def _target(name: str, aliases: bool) -> str:
    name = name.strip().replace("::", ".")
    if aliases:
        head, _, rest = name.partition(".")
        if head in CRATE_ALIASES:
            name = CRATE_ALIASES[head] + (f".{rest}" if rest else "")
    return name


def parse_directives(spec: str, *, aliases: bool = True, default: int = logging.INFO) -> Directives:
    """Parse ``level,target=level,...``. Crate names of the seed are mapped when ``aliases``."""
    out_default = default
    targets: list[tuple[str, int]] = []
    for raw in spec.split(","):
        d = raw.strip()
        if not d:
            continue
        if "=" in d:
            name, _, lvl = d.partition("=")
            if not name.strip():
                raise DirectiveError(f"empty target in directive `{d}`")
            targets.append((_target(name, aliases), _level(lvl, d)))
        elif d.lower() in LEVELS:
            out_default = LEVELS[d.lower()]
        else:
            # A bare target means "everything for it" (trace), as in RUST_LOG.
            targets.append((_target(d, aliases), TRACE))
    return Directives(out_default, tuple(targets), spec)


def resolve_directives(environ: dict[str, str], environment: str, log_level: str = "info") -> Directives:
    """TUNDRA_LOG, else RUST_LOG (seed names), else the environment's defaults."""
    if environ.get("TUNDRA_LOG"):
        return parse_directives(environ["TUNDRA_LOG"])
    if environ.get("RUST_LOG"):
        return parse_directives(environ["RUST_LOG"])
    base = ENVIRONMENT_DEFAULTS.get(environment, DEFAULT_DIRECTIVES)
    if log_level and log_level != "info":
        # [general] log_level replaces the global default level of the environment's set.
        parts = [p for p in base.split(",") if "=" in p]
        base = ",".join([log_level, *parts])
    return parse_directives(base)
