"""Every route that takes a cursor or a time, driven with hostile values (hypothesis) through
the local gateway in-process, against a real matcher (in a thread), Postgres, Redis and the
emulators: each answer is 200 with the caller's own rows or a clear 400, never a 5xx; after
each, two users still see exactly their own rows and the admin's audit still answers, ok.

A value once got through to pg8000, which failed after sending part of a query and left the
shared connection one answer behind: users were answered each other's rows, the audit 503.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from google.cloud import firestore
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.gateway import ROUTES, create_app
from shared.config import MatcherConfig
from tests.integration.function_env import point_functions_at, reset_functions
from tests.integration.hostile import (
    KLINES,
    LISTINGS,
    POISON,
    TARGETS,
    Get,
    assert_bad_request,
    assert_isolated,
    cursor_values,
    own_rows,
    query,
    time_values,
)
from tests.integration.matcher_helpers import running
from tests.integration.test_orders_admin import (
    Exchange,
    as_admin,
    bearer,
    list_market,
    order,
    trader,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHAIN_ID = 31337
TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@dataclass
class World:
    ex: Exchange
    get: Get
    key: bytes
    users: dict[str, str]
    """name -> user id"""
    tokens: dict[str, str]
    admin: str
    expected: dict[str, dict[str, list[Any]]]


def seed(ex: Exchange) -> tuple[dict[str, str], dict[str, str]]:
    """Alice and Bob, each with ledger rows, orders, trades (with each other), deposits seen
    on the chain and withdrawals: several pages of everything with a page size of 2."""
    list_market(ex)
    resp = ex.client.patch(
        "/v1/admin/assets/ETH/chain",
        json={"withdrawal_fee": "0.001", "min_withdrawal": "0.01"},
        headers=bearer(as_admin(ex)),
    )
    assert resp.status_code == 200, resp.get_json()
    users, tokens = {}, {}
    for name in ("alice", "bob"):
        users[name], tokens[name] = trader(ex, name)
    for i in range(3):
        resp = order(ex, tokens["alice"], side="sell", price=str(2000 + i), amount="0.5")
        assert resp.status_code == 201, resp.get_json()
        resp = order(ex, tokens["bob"], side="buy", price=str(2000 + i), amount="0.2")
        assert resp.status_code == 201, resp.get_json()
        resp = order(ex, tokens["bob"], side="buy", price="1000", amount="0.1")
        assert resp.status_code == 201, resp.get_json()
    for token in tokens.values():
        for amount in ("0.01", "0.02", "0.03"):
            resp = ex.client.post(
                "/v1/withdrawals",
                json={"asset": "ETH", "amount": amount, "address": TO},
                headers=bearer(token),
            )
            assert resp.status_code == 201, resp.get_json()
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    for n, name in enumerate(("alice", "bob")):
        for i in range(3):
            tx = f"0x{n}{i}"
            ex.sql(
                "INSERT INTO chain_deposits (chain_id, tx_hash, log_index, ref, user_id, asset,"
                " address, sender, token_amount, amount, dust, block_number, block_hash,"
                " confirmations_required, status, seen_at) VALUES (:c, :tx, -1, :ref, :u,"
                " 'ETH', :addr, '0xsender', 1000000000000000000, 100000000, 0, 10,"
                " '0xblock', 3, 'pending', :seen)",
                c=CHAIN_ID, tx=tx, ref=f"{CHAIN_ID}:{tx}:-1", u=users[name], addr=TO,
                seen=t0 + timedelta(minutes=i),
            )  # fmt: skip
    return users, tokens


@pytest.fixture
def world(
    firestore_db: firestore.Client,
    matcher_cfg: MatcherConfig,
    redis_db: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    point_functions_at(monkeypatch, matcher_cfg, CHAIN_ID=str(CHAIN_ID))
    client = create_app(list(ROUTES)).test_client()
    ex = Exchange(client, matcher_cfg, firestore_db, redis_db, lambda **env: None)

    def get(path: str, token: str | None) -> tuple[int, Any]:
        resp = client.get(path, headers=bearer(token) if token else {})
        return resp.status_code, resp.get_json(silent=True)

    with running(matcher_cfg):
        users, tokens = seed(ex)
        expected = {name: own_rows(get, token) for name, token in tokens.items()}
        for name, token in tokens.items():  # the cursors the exchange hands out work
            assert own_rows(get, token, page=2) == expected[name]
        assert all(len(ids) >= 3 for rows in expected.values() for ids in rows.values())
        assert not set(expected["alice"]["/v1/withdrawals"]) & set(
            expected["bob"]["/v1/withdrawals"]
        )
        key = os.environ["CURSOR_KEY"].encode()
        yield World(ex, get, key, users, tokens, as_admin(ex), expected)
    reset_functions()


@settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
@example(data=None)  # the cursor seen in the incident, on the listing that took it
def test_hostile_cursors_and_times_never_mix_users(world: World, data: Any) -> None:
    if data is None:
        cases = [
            ("/v1/withdrawals", "cursor", "bob", POISON),
            ("/v1/deposits", "cursor", "alice", POISON),
        ]
    else:
        path, name = data.draw(st.sampled_from(TARGETS), "target")
        who = data.draw(st.sampled_from(sorted(world.tokens)), "who")
        if name == "cursor":
            listing = LISTINGS[path][0]
            value = data.draw(cursor_values(world.key, listing, world.users[who]), "cursor")
        else:
            value = data.draw(time_values(), name)
        cases = [(path, name, who, value)]
    for path, name, who, value in cases:
        url = query(path, name, value)
        status, body = world.get(url, world.tokens[who])
        if status == 200:
            if path == KLINES:
                assert isinstance(body["klines"], list)
            else:  # a cursor signed with the real key for this listing and user: own rows
                key, id_field = LISTINGS[path]
                got = [row[id_field] for row in body[key]]
                assert set(got) <= set(world.expected[who][path]), (url, got)
        else:
            assert_bad_request(status, body, url)
        assert_isolated(world.get, world.tokens, world.expected, world.admin)
