"""Who is on a socket: the HTTP API's own checks (``api.auth.verify_credentials``), reused.

Two ways, the same credentials as HTTP:

- in the opening handshake: ``Authorization: Bearer <jwt>``, or ``X-API-Key``,
  ``X-API-Timestamp``, ``X-API-Signature`` signing the request ``GET /v1/ws`` (with its query,
  if any) exactly as for any HTTP request;
- on the open socket: ``{"op": "auth", "token": "<jwt>"}`` or ``{"op": "auth", "api_key":
  "ak_...", "timestamp": 1718000000000, "signature": "<hex>"}`` where the signature is the
  HTTP one of ``GET /v1/ws`` with no query and no body: lowercase hex HMAC-SHA256, keyed with
  the key's secret, of ``f"{timestamp}GET/v1/ws"`` (``api.auth.sign_request(secret,
  timestamp, "GET", "/v1/ws")``). Timestamp window and replay refusal as for HTTP.

An API key needs the ``read`` scope. The checks are synchronous (Firestore for API keys, Redis
for replays), so they run in a worker thread.

Header names are case-insensitive, as in HTTP (HTTP/2 proxies send them in lower case): the
handshake's headers become ``api.credentials.Headers`` (any case; a repeated name joined
with ", " as a WSGI server joins it), and nothing here looks a header up by its exact spelling.
The checks take transport-neutral ``Credentials``; no HTTP request is made up for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Final

from api.auth import AuthContext, Principal, require_scope, verify_credentials
from api.credentials import Credentials, Headers
from api.http import ApiError
from ws_service.protocol import ProtocolError

WS_PATH: Final = "/v1/ws"


HeaderPairs = Iterable[tuple[str, str]]
"""(name, value) pairs as received: any case, repeats kept."""


def credentials(path: str, query: str, headers: HeaderPairs, peer: str) -> Credentials:
    """The credentials of a handshake (``GET path?query``, no body) or an ``auth`` message."""
    return Credentials(
        method="GET", path=path, query=query.encode(), headers=Headers(headers), client_ip=peer
    )


class SocketAuth:
    def __init__(self, ctx: AuthContext) -> None:
        self.ctx = ctx

    def verify(
        self, headers: HeaderPairs, peer: str, path: str = WS_PATH, query: str = ""
    ) -> tuple[Principal, float | None]:
        """The principal of these credentials and when its access ends, or ``ApiError``."""
        principal = verify_credentials(credentials(path, query, headers, peer), self.ctx)
        require_scope(principal, "read")
        return principal, principal.expires_at

    async def verify_op(
        self, fields: Mapping[str, Any], peer: str
    ) -> tuple[Principal, float | None]:
        """The ``auth`` message's credentials, checked; ``ProtocolError`` otherwise."""
        headers = op_headers(fields)
        try:
            return await asyncio.to_thread(self.verify, headers.items(), peer)
        except ApiError as exc:
            raise ProtocolError(exc.code, exc.message) from None


def op_headers(fields: Mapping[str, Any]) -> dict[str, str]:
    """The HTTP headers an ``auth`` message stands for."""
    token, key = fields.get("token"), fields.get("api_key")
    if (token is None) == (key is None):
        raise ProtocolError(
            "invalid_request",
            'auth needs either "token" or "api_key" with "timestamp" and "signature"',
        )
    if token is not None:
        if not isinstance(token, str) or not token:
            raise ProtocolError("invalid_token", "token must be a non-empty string")
        return {"Authorization": f"Bearer {token}"}
    timestamp, signature = fields.get("timestamp"), fields.get("signature")
    if not isinstance(key, str) or not isinstance(signature, str):
        raise ProtocolError("invalid_api_key", "api_key and signature must be strings")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | str):
        raise ProtocolError("invalid_timestamp", "timestamp must be milliseconds since the epoch")
    return {"X-API-Key": key, "X-API-Timestamp": str(timestamp), "X-API-Signature": signature}


def has_credentials(names: Iterable[str]) -> bool:
    """Whether a request with these header names carries credentials (in any case)."""
    return any(name.lower() in _CREDENTIAL_HEADERS for name in names)


_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "x-api-key"})
