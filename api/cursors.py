"""Page cursors: opaque, tamper-proof strings saying where a listing's next page starts.

A cursor is ``base64url(payload) "." base64url(tag)``: the payload a JSON array of the last
row's position (ids, a time in microseconds, a key), the tag the first 16 bytes of
HMAC-SHA256 under the cursor key (``CURSOR_KEY*``, shared.config.CursorConfig) over a version,
the listing and the caller's user id as well as the payload. So a caller cannot make or alter
one, and a cursor of one listing or one user is refused by another. After the tag checks, every
value is still checked for type and range (a leaked key must not reach the database with
values it cannot take): the decoded position is what a query may bind as it is.

Anything wrong answers 400 ``invalid_cursor``, never a 5xx. A new key (rotation) makes the
cursors in flight invalid: clients start again from the first page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

from api.http import ApiError, bad_request
from shared.config import CursorConfig
from shared.instance import per_instance

MAX_ID: Final = 2**63 - 1
"""The largest BIGINT: order, trade and ledger ids."""
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9999, 1, 1, tzinfo=UTC)
"""Times a cursor may carry: far from the ends of what Python and pg8000 can convert."""
_EPOCH: Final = EARLIEST
_MAX_RAW: Final = 512
_MAX_KEY: Final = 200
_KEY_RE: Final = re.compile(r"[\x21-\x7e]{1,200}")
"""A row's text key (a withdrawal id, a deposit ref): printable ASCII, no space."""
_RAW_RE: Final = re.compile(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]{22}")
_TAG_BYTES: Final = 16
_VERSION: Final = b"exchange cursor v1"

Position = list[int | str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def invalid_cursor() -> ApiError:
    return bad_request("cursor is not one this API returned", "invalid_cursor")


class Cursors:
    """Makes and opens the cursors of every listing under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < CursorConfig.MIN_KEY_BYTES:
            raise ValueError(f"a cursor key has at least {CursorConfig.MIN_KEY_BYTES} bytes")
        self._key = key

    def _tag(self, listing: str, user: str, payload: bytes) -> bytes:
        message = b"\0".join((_VERSION, listing.encode(), user.encode(), payload))
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    def make(self, listing: str, user: str, position: Position) -> str:
        return self.sign(listing, user, orjson.dumps(position))

    def sign(self, listing: str, user: str, payload: bytes) -> str:
        """The cursor carrying ``payload`` (JSON) for ``listing`` and ``user``."""
        return f"{_b64(payload)}.{_b64(self._tag(listing, user, payload))}"

    def open(self, listing: str, user: str, raw: str) -> Position:
        """The position in ``raw``, made by ``make`` for this listing and user; else 400."""
        if len(raw) > _MAX_RAW or not _RAW_RE.fullmatch(raw):
            raise invalid_cursor()
        body, _, tag = raw.partition(".")
        try:
            payload, given = _unb64(body), _unb64(tag)
        except (binascii.Error, ValueError):
            raise invalid_cursor() from None
        if _b64(payload) != body or _b64(given) != tag:  # one spelling per cursor
            raise invalid_cursor()
        if not hmac.compare_digest(given, self._tag(listing, user, payload)):
            raise invalid_cursor()
        try:
            position = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise invalid_cursor() from None
        if not isinstance(position, list):
            raise invalid_cursor()
        return position

    # -- the positions the listings use, each value checked --------------------------------

    def make_id(self, listing: str, user: str, row_id: int) -> str:
        return self.make(listing, user, [row_id])

    def open_id(self, listing: str, user: str, raw: str) -> int:
        """A row id from 1 to ``MAX_ID``."""
        match self.open(listing, user, raw):
            case [int() as row_id] if not isinstance(row_id, bool) and 1 <= row_id <= MAX_ID:
                return row_id
        raise invalid_cursor()

    def make_time_key(self, listing: str, user: str, at: datetime, key: str) -> str:
        micros = (at - _EPOCH) // timedelta(microseconds=1)
        return self.make(listing, user, [micros, key])

    def open_time_key(self, listing: str, user: str, raw: str) -> tuple[datetime, str]:
        """A UTC time from ``EARLIEST`` to ``LATEST`` and a printable key."""
        match self.open(listing, user, raw):
            case [int() as micros, str() as key] if (
                not isinstance(micros, bool)
                and 0 <= micros <= (LATEST - _EPOCH) // timedelta(microseconds=1)
                and len(key) <= _MAX_KEY
                and _KEY_RE.fullmatch(key)
            ):
                return _EPOCH + timedelta(microseconds=micros), key
        raise invalid_cursor()


@per_instance
def default_cursors() -> Cursors:
    """The environment's cursor key (``CursorConfig``), read once per instance."""
    return Cursors(CursorConfig.load().read_key())
