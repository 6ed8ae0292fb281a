"""Page cursors (api.cursors): made and opened under one key, bound to a listing and a
user, refused when altered in any way, and every value range-checked even under the key."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.cursors import EARLIEST, LATEST, MAX_ID, Cursors
from api.http import ApiError
from shared.config import ConfigError, CursorConfig

KEY = secrets.token_bytes(32)
CURSORS = Cursors(KEY)


def refused(fn: Callable[..., object], *args: object) -> None:
    with pytest.raises(ApiError) as caught:
        fn(*args)
    assert (caught.value.status, caught.value.code) == (400, "invalid_cursor")


def test_round_trips() -> None:
    assert CURSORS.open_id("orders", "u1", CURSORS.make_id("orders", "u1", 42)) == 42
    assert CURSORS.open_id("orders", "u1", CURSORS.make_id("orders", "u1", MAX_ID)) == MAX_ID
    at = datetime(2024, 5, 1, 12, 30, 1, 123456, tzinfo=UTC)
    raw = CURSORS.make_time_key("withdrawals", "u1", at, "wd_00ff")
    assert CURSORS.open_time_key("withdrawals", "u1", raw) == (at, "wd_00ff")
    # Another zone is the same instant; it comes back in UTC.
    east = at.astimezone(timezone(timedelta(hours=14)))
    assert CURSORS.open_time_key(
        "withdrawals", "u1", CURSORS.make_time_key("withdrawals", "u1", east, "k")
    ) == (at, "k")


def test_bound_to_its_listing_user_and_key() -> None:
    raw = CURSORS.make_id("orders", "alice", 7)
    refused(CURSORS.open_id, "orders", "bob", raw)
    refused(CURSORS.open_id, "trades", "alice", raw)
    refused(Cursors(secrets.token_bytes(32)).open_id, "orders", "alice", raw)


def test_any_change_of_one_character_is_refused() -> None:
    raw = CURSORS.make_id("ledger", "alice", 123456)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for i, c in enumerate(raw):
        for other in alphabet:
            if other != c:
                refused(CURSORS.open_id, "ledger", "alice", raw[:i] + other + raw[i + 1 :])


@pytest.mark.parametrize(
    "position",
    [[], [0], [-1], [MAX_ID + 1], [True], [1.0], ["1"], [None], [[1]], [1, 2], {"id": 1}, 1, "1"],
)
def test_ids_out_of_range_or_of_the_wrong_shape_are_refused_even_under_the_key(
    position: object,
) -> None:
    raw = CURSORS.sign("orders", "u", json.dumps(position).encode())
    refused(CURSORS.open_id, "orders", "u", raw)


def micros(at: datetime) -> int:
    return (at - EARLIEST) // timedelta(microseconds=1)


@pytest.mark.parametrize(
    "position",
    [
        [-1, "k"], [micros(LATEST) + 1, "k"], [2**64, "k"], [0, ""], [0, "a b"], [0, "a\nb"],
        [0, "é"], [0, "x" * 201], [0, 1], ["0", "k"], [True, "k"], [0.5, "k"], [0], [0, "k", 1],
    ],
)  # fmt: skip
def test_times_and_keys_out_of_range_are_refused_even_under_the_key(position: object) -> None:
    raw = CURSORS.sign("deposits", "u", json.dumps(position).encode())
    refused(CURSORS.open_time_key, "deposits", "u", raw)


def test_not_json_or_too_long_is_refused() -> None:
    for payload in (b"", b"[1", b"NaN", b"\xff\xfe", b"[1]" + b" " * 600):
        refused(CURSORS.open_id, "orders", "u", CURSORS.sign("orders", "u", payload))


@given(st.text(max_size=700))
def test_anything_else_is_a_400(raw: str) -> None:
    for open_ in (CURSORS.open_id, CURSORS.open_time_key):
        refused(open_, "orders", "u", raw)


def test_the_key_comes_from_config_and_is_long_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CURSOR_KEY", "CURSOR_KEY_FILE", "CURSOR_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="CURSOR_KEY"):
        CursorConfig.load()
    monkeypatch.setenv("CURSOR_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32"):
        CursorConfig.load().read_key()
    monkeypatch.setenv("CURSOR_KEY_FILE", "/nonexistent")
    with pytest.raises(ConfigError, match="at most one"):
        CursorConfig.load()
    monkeypatch.delenv("CURSOR_KEY_FILE")
    monkeypatch.setenv("CURSOR_KEY", "k" * 32)
    assert CursorConfig.load().read_key() == b"k" * 32
    with pytest.raises(ValueError):
        Cursors(b"short")
