"""Binance's request signature: ``signature`` is the lowercase hex HMAC-SHA256, keyed with the
API key's secret, of the query string followed by the body, exactly as sent (still
percent-encoded), without the ``signature`` parameter itself. ``timestamp`` (ms) must lie
within ``recvWindow`` ms before the server's clock and less than a second after it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

DEFAULT_RECV_WINDOW_MS: Final = 5000
MAX_RECV_WINDOW_MS: Final = 60000
FUTURE_LEEWAY_MS: Final = 1000
_NAME: Final = b"signature="


def sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Signed:
    """What was signed (the query then the body, the ``signature`` parameter taken out) and
    the signature the request carries (None when it has none)."""

    payload: bytes
    signature: str | None


def _without_signature(raw: bytes) -> tuple[bytes, list[bytes]]:
    kept: list[bytes] = []
    found: list[bytes] = []
    for part in raw.split(b"&") if raw else []:
        (found if part.startswith(_NAME) else kept).append(part)
    return b"&".join(kept), [p[len(_NAME) :] for p in found]


def signed_part(query: bytes, body: bytes) -> Signed:
    """The signed payload and the signature of a request (a signature given twice, or empty:
    none)."""
    q, in_query = _without_signature(query)
    b, in_body = _without_signature(body)
    found = in_query + in_body
    signature = found[0].decode("latin-1") if len(found) == 1 and found[0] else None
    return Signed(q + b, signature)


def verify(secret: str, signed: Signed) -> bool:
    """Whether ``signed`` carries the right signature for ``secret``."""
    if signed.signature is None:
        return False
    return hmac.compare_digest(sign(secret, signed.payload), signed.signature.lower())


def timestamp_fits(timestamp_ms: int, recv_window_ms: int, now_ms: int) -> bool:
    """Binance's rule: not from the future (a second of leeway) nor older than the window."""
    return timestamp_ms < now_ms + FUTURE_LEEWAY_MS and now_ms - timestamp_ms <= recv_window_ms
