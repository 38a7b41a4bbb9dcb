"""Bridge authentication: the long-lived token file, one-time login codes and session cookies.

* ``$TUNDRA_HOME/bridge.token`` (0600) holds a random token created on first run. API
  clients send it as ``Authorization: Bearer <token>``.
* ``tundra bridge url`` mints a **login code** (``nonce.expiry.signature``, HMAC-SHA256 keyed
  by the token) that works once and for :data:`LOGIN_CODE_TTL` seconds. It is signed offline,
  so the CLI does not need the bridge to be up; the bridge remembers spent nonces.
* Opening ``/login?code=...`` exchanges the code for a **session cookie** (HttpOnly,
  SameSite=Strict) -- also HMAC-signed, so it survives a bridge restart and dies when the token
  is rotated. The long-lived token never appears in a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from pathlib import Path

from tundra.bridge.errors import LoginCodeInvalid, TokenFileInvalid

__all__ = [
    "LOGIN_CODE_TTL",
    "SESSION_TTL",
    "load_or_create_token",
    "make_login_code",
    "BridgeAuth",
]

log = logging.getLogger("tundra.bridge.auth")

LOGIN_CODE_TTL = 300
"""Seconds a login code printed by `tundra bridge url` stays valid (it works once)."""
SESSION_TTL = 7 * 24 * 3600
"""Seconds a browser session cookie stays valid."""


def load_or_create_token(path: Path) -> str:
    """Read the bridge token, creating it (0600) on first run; tightens loose permissions.

    Blocking file I/O: call it from a worker thread inside trio.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        st = path.stat()
        if st.st_mode & 0o077:
            log.warning(
                "bridge token file had loose permissions; set to 0600",
                extra={"fields": {"path": str(path), "mode": oct(st.st_mode & 0o777)}},
            )
            path.chmod(0o600)
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise TokenFileInvalid(f"bridge token in {path} is too short") from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    log.info("created bridge token", extra={"fields": {"path": str(path)}})
    return token


def _sign(token: str, purpose: str, payload: str) -> str:
    mac = hmac.new(token.encode(), f"{purpose}:{payload}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode().rstrip("=")


def make_login_code(token: str, *, now: float | None = None, ttl: int = LOGIN_CODE_TTL) -> str:
    """A one-time login code for the page (safe to show; not the token)."""
    nonce = secrets.token_urlsafe(12)
    exp = int((time.time() if now is None else now) + ttl)
    payload = f"{nonce}.{exp}"
    return f"{payload}.{_sign(token, 'login', payload)}"


class BridgeAuth:
    """Checks bearer tokens, login codes and session cookies for one bridge process."""

    def __init__(self, token: str, *, cookie_name: str) -> None:
        self._token = token
        self.cookie_name = cookie_name
        self._spent: dict[str, float] = {}

    def check_bearer(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self._token.encode())

    def redeem_login_code(self, code: str, *, now: float | None = None) -> None:
        """Accept a login code once; raises :class:`LoginCodeInvalid` otherwise."""
        now = time.time() if now is None else now
        for nonce, exp in list(self._spent.items()):
            if exp < now:
                del self._spent[nonce]
        parts = code.split(".")
        if len(parts) != 3:
            raise LoginCodeInvalid("login code is malformed")
        nonce, exp_s, sig = parts
        if not hmac.compare_digest(sig.encode(), _sign(self._token, "login", f"{nonce}.{exp_s}").encode()):
            raise LoginCodeInvalid("login code is not valid for this bridge")
        try:
            exp = float(exp_s)
        except ValueError:
            raise LoginCodeInvalid("login code is malformed") from None
        if exp < now:
            raise LoginCodeInvalid("login code has expired")
        if nonce in self._spent:
            raise LoginCodeInvalid("login code was already used")
        self._spent[nonce] = exp

    def issue_session(self, *, now: float | None = None) -> str:
        exp = int((time.time() if now is None else now) + SESSION_TTL)
        payload = f"{secrets.token_urlsafe(12)}.{exp}"
        return f"{payload}.{_sign(self._token, 'session', payload)}"

    def check_session(self, value: str | None, *, now: float | None = None) -> bool:
        if not value:
            return False
        parts = value.split(".")
        if len(parts) != 3:
            return False
        nonce, exp_s, sig = parts
        expected = _sign(self._token, "session", f"{nonce}.{exp_s}")
        if not hmac.compare_digest(sig.encode(), expected.encode()):
            return False
        try:
            return float(exp_s) >= (time.time() if now is None else now)
        except ValueError:
            return False

    def session_cookie(self, value: str, *, secure: bool) -> str:
        """The Set-Cookie value for a new session."""
        attrs = f"{self.cookie_name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_TTL}"
        return attrs + ("; Secure" if secure else "")
