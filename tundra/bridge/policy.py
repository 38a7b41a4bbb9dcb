"""Which Host and Origin headers the bridge accepts (DNS-rebinding and cross-site defence).

Checking ``Origin == Host`` is not enough: a rebinding attack makes both name the attacker's
domain. So the ``Host`` must be on an allowlist (loopback names on the bridge port by
default) and the ``Origin`` on another.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

__all__ = ["OriginPolicy", "is_loopback_host"]

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _split_host(value: str) -> tuple[str, int | None]:
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        host, rest = value[: end + 1], value[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = value.partition(":")
    if port:
        try:
            return host, int(port)
        except ValueError:
            return host, -1
    return host, None


class OriginPolicy:
    """Allowlists of ``Host`` names and ``Origin`` values for one bridge listener."""

    def __init__(
        self,
        *,
        bind_host: str,
        port: int,
        tls: bool,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.port = port
        self.scheme = "https" if tls else "http"
        names = list(_LOOPBACK_NAMES)
        bh = bind_host.strip().lower()
        if bh in ("0.0.0.0", "::", ""):
            names.append(socket.gethostname().lower())
        elif _bracket(bh) not in names:
            names.append(_bracket(bh))
        # host -> allowed ports (None = any port, for names given without one)
        self._hosts: dict[str, set[int | None]] = {n: {port} for n in names}
        for entry in allowed_hosts:
            h, p = _split_host(entry)
            self._hosts.setdefault(h, set()).add(p)
        self._origins = {f"{self.scheme}://{n}:{port}" for n in names}
        self._origins.update(o.strip().lower().rstrip("/") for o in allowed_origins)

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(self._origins)

    def host_allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        host, port = _split_host(host_header)
        ports = self._hosts.get(host)
        if ports is None:
            return False
        if None in ports:
            return True
        if port is None:
            port = 443 if self.scheme == "https" else 80
        return port in ports

    def origin_allowed(self, origin: str) -> bool:
        o = origin.strip().lower().rstrip("/")
        if o in self._origins:
            return True
        # An explicit default port is the same origin as none ("http://h:80" == "http://h").
        for default in (":80", ":443"):
            if o.endswith(default) and o[: -len(default)] in self._origins:
                return True
        return False
