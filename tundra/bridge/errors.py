"""Errors raised by the bridge at its HTTP/WebSocket boundary (auth, routing, limits)."""

from __future__ import annotations

from tundra.errors import TundraError

__all__ = [
    "BridgeError",
    "Unauthorized",
    "OriginForbidden",
    "HostForbidden",
    "RouteNotFound",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "BadRequest",
    "RequestTimeout",
    "HeadersTooLarge",
    "LoginCodeInvalid",
    "RemoteBindRefused",
    "TokenFileInvalid",
]


class BridgeError(TundraError):
    """Root of the bridge's own errors."""

    code = "bridge.error"
    http_status = 500


class Unauthorized(BridgeError):
    code = "auth.unauthorized"
    http_status = 401
    default_hint = "send `Authorization: Bearer <token from $TUNDRA_HOME/bridge.token>` or open `tundra bridge url`"


class OriginForbidden(BridgeError):
    code = "auth.origin_forbidden"
    http_status = 403
    default_hint = "add the page's origin to [bridge] allowed_origins"


class HostForbidden(BridgeError):
    code = "auth.host_forbidden"
    http_status = 403
    default_hint = "add the host name to [bridge] allowed_hosts (DNS-rebinding defence)"


class RouteNotFound(BridgeError):
    code = "http.not_found"
    http_status = 404


class MethodNotAllowed(BridgeError):
    code = "http.method_not_allowed"
    http_status = 405


class PayloadTooLarge(BridgeError):
    code = "http.payload_too_large"
    http_status = 413


class BadRequest(BridgeError):
    code = "http.bad_request"
    http_status = 400


class RequestTimeout(BridgeError):
    code = "http.request_timeout"
    http_status = 408


class HeadersTooLarge(BridgeError):
    code = "http.headers_too_large"
    http_status = 431


class LoginCodeInvalid(BridgeError):
    code = "auth.login_code_invalid"
    http_status = 401
    default_hint = "run `tundra bridge url` again: a login code works once and expires after 5 minutes"


class RemoteBindRefused(BridgeError):
    code = "bridge.remote_bind_refused"
    http_status = 500
    default_hint = "pass --allow-remote (or set [bridge] allow_remote = true) and prefer TLS via [bridge] tls_cert/tls_key"


class TokenFileInvalid(BridgeError):
    code = "bridge.token_invalid"
    http_status = 500
    default_hint = "delete $TUNDRA_HOME/bridge.token; the bridge creates a new one (log in again afterwards)"
