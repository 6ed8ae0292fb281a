"""What a caller presents to be authenticated, whatever carried it (an HTTP request, a
WebSocket handshake, an ``auth`` message on an open socket), and who it turns out to be.

``api.auth.verify_credentials`` takes a ``Credentials`` and answers with the ``Principal``;
the HTTP layer builds one from its request (``api.http.ApiRequest.credentials``), the ws
service from its handshake or ``auth`` message. This module imports nothing of the project,
so every transport can depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

Role = Literal["user", "admin"]
Scope = Literal["read", "trade", "withdraw"]
"""What an API key may do; a token (a person signed in) may do all of it."""
Via = Literal["jwt", "oidc", "api_key"]
ROLES: Final[frozenset[str]] = frozenset(get_args(Role))
ALL_SCOPES: Final[frozenset[str]] = frozenset(get_args(Scope))


class Headers(Mapping[str, str]):
    """Read-only header fields, looked up in any case (``headers["x-api-key"]`` finds
    ``X-API-Key``), as HTTP wants and HTTP/2 proxies need (they send names in lower case).
    A name given several times reads as its values joined with ``", "``, as WSGI servers join
    them. Iteration gives each name once, as first spelled."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = fields.items() if isinstance(fields, Mapping) else fields
        joined: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in joined:
                first, values = joined[key]
                joined[key] = (first, f"{values}, {value}")
            else:
                joined[key] = (name, value)
        self._fields = joined

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._fields.values())

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({sorted(self)!r})"  # names only: values may be secrets


@dataclass(frozen=True, slots=True)
class Credentials:
    """One request to authenticate. An API-key signature covers ``method``, ``path``
    (without percent-encoding), ``query`` (the bytes exactly as sent, without the ``?``) and
    ``body``; the credentials themselves are in ``headers``."""

    method: str
    path: str
    query: bytes = b""
    body: bytes = b""
    headers: Headers = field(default_factory=Headers)
    client_ip: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller. ``scopes`` are all of them for a token (a person signed in)
    and the key's for an API key; ``key_id`` names the API key when ``via == "api_key"``."""

    user_id: str
    role: Role
    scopes: frozenset[str]
    via: Via
    key_id: str | None = None
    expires_at: float | None = None
    """When a token's access ends (its ``exp``, seconds since the epoch); None for an API key."""
    session_id: str | None = None
    """Our token's session (claim ``sid``: its refresh family)."""
    epoch: int = 0
    """The user's session epoch when our token was issued (``api.sessions``)."""
    auth_time: int | None = None
    """When the person last proved who they are (password; seconds since the epoch)."""
