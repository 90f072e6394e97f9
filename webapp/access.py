"""With ADMIN_TOKEN set, the web UI asks for it: it shows users' histories, which the recommendations service
keeps behind that token, and it calls the backends with the token itself.

A browser asks for credentials natively on a Basic challenge: any user name, the token as the password. Scripts
may send ``Authorization: Bearer <token>`` instead. The health check and the metrics stay open, as on every
service (the launcher's liveness probe and Prometheus need no token).
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthcheck", "/metrics"})
CHALLENGE = b'Basic realm="recsys debug UI", charset="UTF-8"'


def supplied_secret(authorization: bytes) -> bytes:
    """The secret in an Authorization header: a Bearer token, or a Basic password (the user name is ignored)."""
    scheme, _, value = authorization.strip().partition(b" ")
    if scheme.lower() == b"bearer":
        return value.strip()
    if scheme.lower() == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return b""
        return decoded.partition(b":")[2]
    return b""


class AdminTokenGate:
    """Pure ASGI middleware: every HTTP request but the open paths needs the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        if hmac.compare_digest(supplied_secret(authorization), self.token):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"detail": "the web UI needs the deployment's ADMIN_TOKEN (as the password, or Authorization: Bearer)"},
            status_code=401,
            headers={"WWW-Authenticate": CHALLENGE.decode()},
        )
        await response(scope, receive, send)
