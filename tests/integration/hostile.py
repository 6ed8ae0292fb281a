"""Hostile query values for the routes that take a cursor or a time, and the check that must
hold after them: each user still sees exactly their own rows, and the audit answers ok.

Used by test_hostile_params.py (hypothesis, in-process gateway) and test_attack.py (over real
HTTP). ``Get`` is how a test asks: ``get(path, token) -> (status, JSON body)``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

import orjson
from hypothesis import strategies as st

from api.cursors import Cursors

Get = Callable[[str, str | None], tuple[int, Any]]

MARKET: Final = "ETH-USDT"
KLINES: Final = f"/v1/markets/{MARKET}/klines?interval=1m"
LISTINGS: Final = {
    # path: (the list's key in the answer, a row's id field)
    "/v1/orders": ("orders", "order_id"),
    "/v1/trades": ("trades", "trade_id"),
    "/v1/ledger": ("ledger", "id"),
    "/v1/deposits": ("deposits", "id"),
    "/v1/withdrawals": ("withdrawals", "id"),
}
TARGETS: Final = [*((path, "cursor") for path in LISTINGS), (KLINES, "start"), (KLINES, "end")]
"""Every route that takes a cursor or a time, with the parameter."""
WRONG_KEY: Final = b"this is not the key the exchange signs with"


def legacy_cursor(stamp: str, key: str = "wd_0") -> str:
    """The unsigned form cursors once had: base64url of ``"{iso time}|{key}"``."""
    return base64.urlsafe_b64encode(f"{stamp}|{key}".encode()).decode().rstrip("=")


POISON: Final = legacy_cursor("0001-01-01T00:00:00+14:00")
"""The cursor that once desynchronised the wallet's Postgres connection."""

# Positions a signed cursor may carry that no listing accepts: ids and times out of range,
# wrong types, wrong shapes.
BAD_POSITIONS: Final[list[Any]] = [
    [], [0], [-1], [2**63], [2**80], [1.5], [True], ["1"], [None], [[1]], [{"a": 1}], [1, 2],
    [-1, "k"], [2**62, "k"], [0, ""], [0, " "], [0, "a\nb"], [0, "x" * 201], [0, 1], ["0", "k"],
    {"id": 1}, "1", 1, None,
]  # fmt: skip

TEXT_CHARS: Final = st.characters(exclude_categories=["Cs"])
"""Any character a URL can carry (lone surrogates cannot be encoded)."""

HOSTILE_TEXT: Final = [
    POISON,
    legacy_cursor("9999-12-31T23:59:59-14:00"),
    legacy_cursor("2024-01-01T00:00:00"),
    "0", "-1", "1", "9" * 40, "1e9", "0x10", "1;DROP TABLE orders", "' OR '1'='1", "%00",
    "\x00", "a.b", ".", "..", "a" * 1000, "é", "\u202e", "null", "[]", "{}",
]  # fmt: skip


def signed(key: bytes, listing: str, user: str, position: Any) -> str:
    """A cursor signed with ``key`` around any value as JSON (integers of any size, NaN...):
    forged unless ``key`` is the exchange's."""
    return Cursors(key).sign(listing, user, json.dumps(position).encode())


def hostile_cursors(key: bytes, listing: str, user: str) -> list[str]:
    """The fixed hostile cursors for ``listing`` and ``user``: signed with the exchange's key
    (a leaked key must not reach the database with values it cannot take) and without."""
    out = list(HOSTILE_TEXT)
    for position in BAD_POSITIONS:
        out.append(signed(key, listing, user, position))
        out.append(signed(WRONG_KEY, listing, user, position))
    return out


def cursor_values(key: bytes, listing: str, user: str) -> st.SearchStrategy[str]:
    """Cursors for ``listing`` asked by ``user``: text of any kind, the old unsigned form with
    any time and offset, and any JSON signed with the real key or a wrong one, for this
    listing and user or another (only the real key, this listing and this user get past the
    signature: then the position's type and range are what is checked)."""
    stamps = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(
        max_size=40
    )
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300),
        lambda inner: st.lists(inner, max_size=3),
        max_leaves=6,
    )
    positions = st.one_of(
        json_values,
        st.sampled_from(BAD_POSITIONS),
        st.tuples(st.integers(), st.text(max_size=250)).map(list),
        st.integers().map(lambda n: [n]),
    )
    forged = st.builds(
        signed,
        st.sampled_from([key, key, key, WRONG_KEY]),
        st.sampled_from([listing, listing, listing, "orders", "withdrawals"]),
        st.sampled_from([user, user, user, "someone-else"]),
        positions,
    )
    return st.one_of(
        st.text(TEXT_CHARS, max_size=600),
        st.builds(legacy_cursor, stamps, st.text(max_size=20)),
        forged,
        st.sampled_from(HOSTILE_TEXT),
    )


def time_values() -> st.SearchStrategy[str]:
    """Times in milliseconds and things that are not: huge, negative, fractional, text."""
    return st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(TEXT_CHARS, max_size=40),
        st.sampled_from(["0", "253402300799999", "253402300800000", "9" * 30, "-0", "1e12"]),
    )


def query(path: str, name: str, value: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{name}={quote(value, safe='')}"


def assert_bad_request(status: int, body: Any, what: str) -> None:
    """A clear 400 in the API's error shape."""
    assert status == 400, (what, status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, (what, body)
    assert set(body["error"]) == {"code", "message"}, (what, body)
    assert body["error"]["code"] and body["error"]["message"], (what, body)


def own_rows(get: Get, token: str, page: int | None = None) -> dict[str, list[Any]]:
    """Every row id of every listing the user has, in order; with ``page``, following
    ``next_cursor`` through pages of that size (the cursors a user is given must work)."""
    out: dict[str, list[Any]] = {}
    for path, (key, id_field) in LISTINGS.items():
        ids: list[Any] = []
        cursor: str | None = None
        while True:
            url = path if page is None else query(path, "limit", str(page))
            if cursor is not None:
                url = query(url, "cursor", cursor)
            status, body = get(url, token)
            assert status == 200, (url, status, body)
            ids += [row[id_field] for row in body[key]]
            cursor = body["next_cursor"]
            if cursor is None or page is None:
                break
        out[path] = ids
    return out


def assert_isolated(
    get: Get, tokens: dict[str, str], expected: dict[str, dict[str, list[Any]]], admin: str
) -> None:
    """Each user sees exactly the rows they had (never another's, never none), and the
    audit answers, ok."""
    for name, token in tokens.items():
        assert own_rows(get, token) == expected[name], name
    status, report = get("/v1/admin/audit", admin)
    assert status == 200, (status, report)
    assert report["ok"] is True, orjson.dumps(report).decode()
