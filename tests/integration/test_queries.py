"""The queries function through the local gateway, against a real matcher, Postgres, Redis and
Firestore: two users trade, then every public and private read is checked to the exact
decimal string, with filters and cursor pagination, ownership, scopes and bad parameters.

The matcher's clock is pinned (``Matcher._now``), so every command, trade and candle has a
known time, and each command is published alone and waited for, so each is one batch (the
depth ``seq`` counts batches that changed the book)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis
from flask.testing import FlaskClient
from google.cloud import firestore
from werkzeug.test import TestResponse

from api.auth import new_secrets_document, sign_request
from infra.gateway import ROUTES, create_app
from infra.ports import free_port
from matcher_service.service import Matcher
from shared.config import MatcherConfig
from shared.db import connect
from shared.instance import reset_instance
from shared.messages import AnyCommand, CancelOrder, PlaceOco, PlaceOrder, Side
from shared.money import parse_units
from shared.pubsub import CommandPublisher
from tests.integration.function_env import FOREIGN
from tests.integration.matcher_helpers import ETH, funded, key_of, market_setup, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

M = "ETH-USDT"
T0 = 1_704_067_200_000
"""2024-01-01T00:00:00Z, a UTC midnight: every interval's candle opens there."""
SEC, MIN, HOUR = 1000, 60_000, 3_600_000
PASSWORD = "correct horse battery"
OUR_ROUTES = [r for r in ROUTES if r[1].startswith(("functions.auth.", "functions.queries."))]
"""The gateway's rows for the functions these tests need (auth for users and API keys)."""


def eth(text: str) -> int:
    return parse_units(text, 8)


def usdt(text: str) -> int:
    return parse_units(text, 6)


# ---------------------------------------------------------------------------- the scenario


@dataclass
class Exchange:
    client: FlaskClient
    redis: redis.Redis
    cfg: MatcherConfig
    publisher: CommandPublisher
    clock: list[int]
    alice: str = ""
    bob: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    def apply(self, at: int, *commands: AnyCommand) -> list[dict[str, Any]]:
        """Each command alone, at matcher time ``at``; waits for its reply (the matcher
        writes replies after the batch's Postgres commit and market data)."""
        self.clock[0] = at
        replies = []
        for cmd in commands:
            self.publisher.publish(cmd, key_of(cmd))
            got = self.redis.blpop([f"reply:{cmd.id}"], timeout=30)
            assert got is not None, f"no reply for {cmd.id}"
            reply = orjson.loads(got[1])
            assert reply["ok"], reply
            replies.append(reply)
        return replies

    def get(self, path: str, user: str | None = None, **headers: str) -> TestResponse:
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return self.client.get(path, headers=headers)

    def ok(self, path: str, user: str | None = None) -> Any:
        resp = self.get(path, user)
        assert resp.status_code == 200, (path, resp.status_code, resp.get_json())
        return resp.get_json()


def _signup(client: FlaskClient, email: str) -> tuple[str, str]:
    resp = client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.get_json()
    user_id: str = resp.get_json()["user_id"]
    resp = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.get_json()
    token: str = resp.get_json()["access_token"]
    return user_id, token


def order(
    cid: str, user: str, side: Side, amount: str, price: int, coid: str, **kw: Any
) -> PlaceOrder:
    return PlaceOrder(
        id=cid, user=user, market=M, side=side, price=usdt(str(price)), amount=eth(amount),
        client_order_id=coid, **kw,
    )  # fmt: skip


@pytest.fixture
def configure(
    firestore_db: firestore.Client,
    redis_db: redis.Redis,
    matcher_cfg: MatcherConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """The functions' environment: auth secrets, this test's database; fresh clients."""
    for name in (*FOREIGN, "DEPTH_LEVELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTH_KEYS_JSON", orjson.dumps(new_secrets_document()).decode())
    monkeypatch.setenv("CURSOR_KEY", secrets.token_urlsafe(32))
    monkeypatch.setenv("PGDATABASE", matcher_cfg.postgres.database)
    reset_instance()
    reset_instance()
    yield
    reset_instance()
    reset_instance()


@pytest.fixture
def exchange(
    configure: None,
    matcher_cfg: MatcherConfig,
    redis_db: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Exchange]:
    """Alice sells, Bob buys; the book, balances and history described in the tests."""
    clock = [T0]
    monkeypatch.setattr(Matcher, "_now", lambda self: clock[0])
    client = create_app(OUR_ROUTES).test_client()
    ex = Exchange(client, redis_db, matcher_cfg, CommandPublisher(matcher_cfg.pubsub), clock)
    ex.alice, ex.tokens["alice"] = _signup(client, "alice@example.com")
    ex.bob, ex.tokens["bob"] = _signup(client, "bob@example.com")
    a, b = ex.alice, ex.bob
    with running(matcher_cfg):
        ex.apply(T0, *market_setup(), *funded([a, b], eth=10 * ETH, usdt=usdt("100000")))
        ex.apply(T0 + 1 * SEC, order("a-1", a, "sell", "1", 2000, "a-1"))  # order 1
        ex.apply(T0 + 2 * SEC, order("a-2", a, "sell", "0.5", 2010, "a-2"))  # order 2
        # order 3 takes 0.4 of order 1: trade 1
        ex.apply(T0 + 61 * SEC, order("b-1", b, "buy", "0.4", 2000, "b-1"))
        # order 4 takes the rest of order 1 (trade 2) and 0.2 of order 2 (trade 3)
        ex.apply(T0 + 361 * SEC, order("b-2", b, "buy", "0.8", 2010, "b-2"))
        ex.apply(T0 + HOUR + 1 * SEC, order("b-3", b, "buy", "0.3", 1990, "b-3"))  # order 5
        # order 6, an IOC sell, takes 0.1 of order 5: trade 4
        ex.apply(
            T0 + HOUR + 2 * SEC,
            order("a-3", a, "sell", "0.1", 1990, "a-3", time_in_force="IOC"),
        )
        # orders 7 to 11 rest; order 8 is cancelled
        for i in range(5):
            ex.apply(T0 + 2 * HOUR + i * SEC, order(f"p-{i}", b, "buy", "0.01", 1900 + i, f"p-{i}"))
        ex.apply(T0 + 2 * HOUR + 10 * SEC, CancelOrder(id="c-1", user=b, client_order_id="p-1"))
        yield ex


# ---------------------------------------------------------------------------- public


def test_public_market_data(exchange: Exchange) -> None:
    ex = exchange
    before = time.time_ns() // 1_000_000
    server_time = ex.ok("/v1/time")["server_time"]
    assert before <= server_time <= time.time_ns() // 1_000_000

    assert ex.ok("/v1/assets") == {
        "assets": [
            {"asset": "ETH", "precision": 8, "chain": None},
            {"asset": "USDT", "precision": 6, "chain": None},
        ]
    }
    contract = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    ex.redis.hset("md:asset_chains", "ETH", orjson.dumps({"kind": "native", "decimals": 18}))
    ex.redis.hset(
        "md:asset_chains",
        "USDT",
        orjson.dumps({"kind": "erc20", "contract": contract, "decimals": 6}),
    )
    resp = ex.get("/v1/assets")
    assert resp.headers["Cache-Control"] == "public, max-age=5"
    assert resp.get_json()["assets"] == [
        {"asset": "ETH", "precision": 8, "chain": {"kind": "native", "decimals": 18}},
        {
            "asset": "USDT",
            "precision": 6,
            "chain": {"kind": "erc20", "contract": contract, "decimals": 6},
        },
    ]

    market = {
        "market": M, "base": "ETH", "quote": "USDT", "tick": "0.01", "step": "0.0001",
        "min_amount": "0.0001", "min_notional": "1", "maker_fee": "0.001", "taker_fee": "0.002",
        "status": "open",
    }  # fmt: skip
    assert ex.ok("/v1/markets") == {"markets": [market]}
    assert ex.ok(f"/v1/markets/{M}") == market

    # The book: Bob's bids (order 5's rest and orders 7, 9, 10, 11), Alice's order 2's rest.
    # seq: 1 when the market was made, then +1 per batch that changed the book (12 of them).
    resp = ex.get(f"/v1/markets/{M}/depth")
    assert resp.headers["Cache-Control"] == "public, max-age=1"
    assert resp.get_json() == {
        "bids": [["1990", "0.2"], ["1904", "0.01"], ["1903", "0.01"], ["1902", "0.01"],
                 ["1900", "0.01"]],
        "asks": [["2010", "0.3"]],
        "seq": 13,
    }  # fmt: skip
    assert ex.ok(f"/v1/markets/{M}/depth?limit=2") == {
        "bids": [["1990", "0.2"], ["1904", "0.01"]],
        "asks": [["2010", "0.3"]],
        "seq": 13,
    }
    assert ex.ok(f"/v1/markets/{M}/depth?limit=50")["bids"][-1] == ["1900", "0.01"]

    ticker = {
        "market": M, "last": "1990", "open": "2000", "high": "2010", "low": "1990",
        "volume": "1.3", "quote_volume": "2601", "change": "-10", "trades": 4,
        "ts": T0 + HOUR + 2 * SEC,
    }  # fmt: skip
    assert ex.ok(f"/v1/markets/{M}/ticker") == ticker
    assert ex.ok("/v1/tickers") == {"tickers": [ticker]}

    trades = [
        {"trade_id": 4, "market": M, "price": "1990", "amount": "0.1", "quote": "199",
         "taker_side": "sell", "ts": T0 + HOUR + 2 * SEC},
        {"trade_id": 3, "market": M, "price": "2010", "amount": "0.2", "quote": "402",
         "taker_side": "buy", "ts": T0 + 361 * SEC},
        {"trade_id": 2, "market": M, "price": "2000", "amount": "0.6", "quote": "1200",
         "taker_side": "buy", "ts": T0 + 361 * SEC},
        {"trade_id": 1, "market": M, "price": "2000", "amount": "0.4", "quote": "800",
         "taker_side": "buy", "ts": T0 + 61 * SEC},
    ]  # fmt: skip
    assert ex.ok(f"/v1/markets/{M}/trades") == {"trades": trades}
    assert ex.ok(f"/v1/markets/{M}/trades?limit=2") == {"trades": trades[:2]}
    assert ex.ok(f"/v1/markets/{M}/trades?limit=1000") == {"trades": trades}

    def candle(t: int, o: str, h: str, lo: str, c: str, v: str, qv: str, n: int) -> Any:
        return {"open_time": t, "open": o, "high": h, "low": lo, "close": c, "volume": v,
                "quote_volume": qv, "trades": n}  # fmt: skip

    m1 = candle(T0 + MIN, "2000", "2000", "2000", "2000", "0.4", "800", 1)
    m6 = candle(T0 + 6 * MIN, "2000", "2010", "2000", "2010", "0.8", "1602", 2)
    m60 = candle(T0 + HOUR, "1990", "1990", "1990", "1990", "0.1", "199", 1)
    kl = f"/v1/markets/{M}/klines"
    assert ex.ok(f"{kl}?interval=1m") == {"klines": [m1, m6, m60]}
    assert ex.ok(f"{kl}?interval=1m&start={T0 + MIN}&end={T0 + 6 * MIN}")["klines"] == [m1, m6]
    assert ex.ok(f"{kl}?interval=1m&start={T0 + MIN + 1}")["klines"] == [m6, m60]
    assert ex.ok(f"{kl}?interval=1m&start={T0}&limit=1")["klines"] == [m1]
    assert ex.ok(f"{kl}?interval=1m&end={T0 + 6 * MIN}&limit=1")["klines"] == [m6]
    assert ex.ok(f"{kl}?interval=1m&end={T0 + HOUR - 1}")["klines"] == [m1, m6]
    assert ex.ok(f"{kl}?interval=1m&limit=2")["klines"] == [m6, m60]
    assert ex.ok(f"{kl}?interval=1m&start={T0 + HOUR + 1}")["klines"] == []
    assert ex.ok(f"{kl}?interval=5m")["klines"] == [
        candle(T0, "2000", "2000", "2000", "2000", "0.4", "800", 1),
        candle(T0 + 5 * MIN, "2000", "2010", "2000", "2010", "0.8", "1602", 2),
        m60,
    ]
    assert ex.ok(f"{kl}?interval=1h")["klines"] == [
        candle(T0, "2000", "2010", "2000", "2010", "1.2", "2402", 3),
        m60,
    ]
    whole = candle(T0, "2000", "2010", "1990", "1990", "1.3", "2601", 4)
    assert ex.ok(f"{kl}?interval=4h")["klines"] == [whole]
    assert ex.ok(f"{kl}?interval=1d&start={T0}&end={T0}")["klines"] == [whole]
    assert ex.get(f"{kl}?interval=15m").headers["Cache-Control"] == "public, max-age=1"


# ---------------------------------------------------------------------------- private


def _order(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "market": M, "type": "limit", "quote_amount": None, "time_in_force": "GTC",
        "post_only": False, "reason": None,
    }  # fmt: skip
    return {**base, **fields}


def test_private_reads(exchange: Exchange) -> None:
    ex = exchange
    # Fees: maker 0.1 %, taker 0.2 %; a buyer pays in ETH, a seller in USDT.
    # Alice sold 1.3 ETH for 2601 USDT and paid 0.8 + 1.2 + 0.402 (maker) + 0.398 (taker)
    # USDT; 0.3 ETH is still offered (order 2). Bob bought 1.3 ETH, paid 0.0008 + 0.0012 +
    # 0.0004 (taker) + 0.0001 (maker) ETH; he holds 0.2 x 1990 + 0.01 x (1900 + 1902 + 1903 +
    # 1904) = 474.09 USDT for his resting bids.
    assert ex.ok("/v1/balances", "alice") == {
        "ETH": {"available": "8.4", "frozen": "0.3"},
        "USDT": {"available": "102598.2", "frozen": "0"},
    }
    assert ex.ok("/v1/balances", "bob") == {
        "ETH": {"available": "11.2975", "frozen": "0"},
        "USDT": {"available": "96924.91", "frozen": "474.09"},
    }
    resp = ex.get("/v1/balances", "bob")
    assert resp.headers["Cache-Control"] == "no-store"

    # Bob's orders, newest first.
    t11 = T0 + 2 * HOUR + 4 * SEC
    o11 = _order(order_id=11, side="buy", price="1904", amount="0.01", client_order_id="p-4",
                 status="open", filled="0", filled_quote="0", fee="0", fee_asset="ETH",
                 frozen="19.04", ts=t11, updated_ts=t11)  # fmt: skip
    o8 = _order(order_id=8, side="buy", price="1901", amount="0.01", client_order_id="p-1",
                status="cancelled", filled="0", filled_quote="0", fee="0", fee_asset="ETH",
                frozen="0", reason="cancelled_by_user", ts=T0 + 2 * HOUR + 1 * SEC,
                updated_ts=T0 + 2 * HOUR + 10 * SEC)  # fmt: skip
    o5 = _order(order_id=5, side="buy", price="1990", amount="0.3", client_order_id="b-3",
                status="partially_filled", filled="0.1", filled_quote="199", fee="0.0001",
                fee_asset="ETH", frozen="398", ts=T0 + HOUR + 1 * SEC,
                updated_ts=T0 + HOUR + 2 * SEC)  # fmt: skip
    o4 = _order(order_id=4, side="buy", price="2010", amount="0.8", client_order_id="b-2",
                status="filled", filled="0.8", filled_quote="1602", fee="0.0016",
                fee_asset="ETH", frozen="0", ts=T0 + 361 * SEC,
                updated_ts=T0 + 361 * SEC)  # fmt: skip
    everything = ex.ok("/v1/orders", "bob")
    assert [o["order_id"] for o in everything["orders"]] == [11, 10, 9, 8, 7, 5, 4, 3]
    assert everything["next_cursor"] is None
    by_id = {o["order_id"]: o for o in everything["orders"]}
    assert (by_id[11], by_id[8], by_id[5], by_id[4]) == (o11, o8, o5, o4)

    # Cursor pagination: the pages add up to the whole list.
    page1 = ex.ok("/v1/orders?limit=3", "bob")
    assert [o["order_id"] for o in page1["orders"]] == [11, 10, 9]
    page2 = ex.ok(f"/v1/orders?limit=3&cursor={page1['next_cursor']}", "bob")
    assert [o["order_id"] for o in page2["orders"]] == [8, 7, 5]
    page3 = ex.ok(f"/v1/orders?limit=3&cursor={page2['next_cursor']}", "bob")
    assert [o["order_id"] for o in page3["orders"]] == [4, 3]
    assert page3["next_cursor"] is None
    assert page1["orders"] + page2["orders"] + page3["orders"] == everything["orders"]

    def ids(path: str, user: str = "bob") -> list[int]:
        return [o["order_id"] for o in ex.ok(path, user)["orders"]]

    assert ids("/v1/orders?status=open") == [11, 10, 9, 7, 5]
    assert ids("/v1/orders?status=closed") == [8, 4, 3]
    assert ids(f"/v1/orders?status=closed&market={M}") == [8, 4, 3]
    open_page = ex.ok("/v1/orders?status=open&limit=3", "bob")
    after_9 = open_page["next_cursor"]
    assert ids(f"/v1/orders?status=open&limit=3&cursor={after_9}") == [7, 5]
    assert ids(f"/v1/orders?status=open&limit=1&cursor={after_9}") == [7]
    # A cursor is opaque and signed: made for bob's orders, it is refused to alice, on
    # another listing, and altered by one character.
    for user, path in [
        ("alice", f"/v1/orders?cursor={after_9}"),
        ("bob", f"/v1/trades?cursor={after_9}"),
        ("bob", f"/v1/ledger?cursor={after_9}"),
        ("bob", f"/v1/orders?cursor={after_9[:-1]}{'A' if after_9[-1] != 'A' else 'B'}"),
        ("bob", "/v1/orders?cursor=9"),
    ]:
        resp = ex.get(path, user)
        assert resp.status_code == 400, (user, path, resp.get_json())
        assert resp.get_json()["error"]["code"] == "invalid_cursor"
    assert ids("/v1/orders") == ids(f"/v1/orders?market={M}&limit=500")
    assert ids("/v1/orders", "alice") == [6, 2, 1]

    # One order, by id and by client id; someone else's is not found.
    assert ex.ok("/v1/orders/5", "bob") == o5
    assert ex.ok("/v1/orders/by-client-id/b-3", "bob") == o5
    assert ex.ok("/v1/orders/2", "alice") == _order(
        order_id=2, side="sell", price="2010", amount="0.5", client_order_id="a-2",
        status="partially_filled", filled="0.2", filled_quote="402", fee="0.402",
        fee_asset="USDT", frozen="0.3", ts=T0 + 2 * SEC, updated_ts=T0 + 361 * SEC,
    )  # fmt: skip
    assert ex.ok("/v1/orders/by-client-id/a-3", "alice") == _order(
        order_id=6, side="sell", price="1990", amount="0.1", client_order_id="a-3",
        time_in_force="IOC", status="filled", filled="0.1", filled_quote="199", fee="0.398",
        fee_asset="USDT", frozen="0", ts=T0 + HOUR + 2 * SEC, updated_ts=T0 + HOUR + 2 * SEC,
    )  # fmt: skip
    for path in ("/v1/orders/5", "/v1/orders/by-client-id/b-3", "/v1/orders/by-client-id/p-1"):
        resp = ex.get(path, "alice")
        assert resp.status_code == 404
        assert resp.get_json()["error"]["code"] == "order_not_found"
    assert ex.get("/v1/orders/2", "bob").status_code == 404

    # Own trades: role, side, fee and fee asset from the caller's point of view.
    alice_trades = [
        {"trade_id": 4, "market": M, "order_id": 6, "side": "sell", "role": "taker",
         "price": "1990", "amount": "0.1", "quote": "199", "fee": "0.398", "fee_asset": "USDT",
         "ts": T0 + HOUR + 2 * SEC},
        {"trade_id": 3, "market": M, "order_id": 2, "side": "sell", "role": "maker",
         "price": "2010", "amount": "0.2", "quote": "402", "fee": "0.402", "fee_asset": "USDT",
         "ts": T0 + 361 * SEC},
        {"trade_id": 2, "market": M, "order_id": 1, "side": "sell", "role": "maker",
         "price": "2000", "amount": "0.6", "quote": "1200", "fee": "1.2", "fee_asset": "USDT",
         "ts": T0 + 361 * SEC},
        {"trade_id": 1, "market": M, "order_id": 1, "side": "sell", "role": "maker",
         "price": "2000", "amount": "0.4", "quote": "800", "fee": "0.8", "fee_asset": "USDT",
         "ts": T0 + 61 * SEC},
    ]  # fmt: skip
    assert ex.ok("/v1/trades", "alice") == {"trades": alice_trades, "next_cursor": None}
    first_three = ex.ok(f"/v1/trades?market={M}&limit=3", "alice")
    assert first_three["trades"] == alice_trades[:3]
    assert ex.ok(f"/v1/trades?limit=3&cursor={first_three['next_cursor']}", "alice") == {
        "trades": alice_trades[3:],
        "next_cursor": None,
    }
    bob_trades = ex.ok("/v1/trades", "bob")["trades"]
    assert [(t["trade_id"], t["order_id"], t["side"], t["role"], t["fee"], t["fee_asset"])
            for t in bob_trades] == [
        (4, 5, "buy", "maker", "0.0001", "ETH"),
        (3, 4, "buy", "taker", "0.0004", "ETH"),
        (2, 4, "buy", "taker", "0.0012", "ETH"),
        (1, 3, "buy", "taker", "0.0008", "ETH"),
    ]  # fmt: skip

    # The ledger: every change of a balance's total, newest first.
    usdt_rows = ex.ok("/v1/ledger?asset=USDT", "alice")
    assert usdt_rows["next_cursor"] is None
    assert [
        {k: v for k, v in row.items() if k not in ("id", "seq")} for row in usdt_rows["ledger"]
    ] == [
        {"asset": "USDT", "delta_available": "198.602", "delta_frozen": "0",
         "available": "102598.2", "frozen": "0", "reason": "trade", "ref": "4",
         "ts": T0 + HOUR + 2 * SEC},
        {"asset": "USDT", "delta_available": "401.598", "delta_frozen": "0",
         "available": "102399.598", "frozen": "0", "reason": "trade", "ref": "3",
         "ts": T0 + 361 * SEC},
        {"asset": "USDT", "delta_available": "1198.8", "delta_frozen": "0",
         "available": "101998", "frozen": "0", "reason": "trade", "ref": "2",
         "ts": T0 + 361 * SEC},
        {"asset": "USDT", "delta_available": "799.2", "delta_frozen": "0",
         "available": "100799.2", "frozen": "0", "reason": "trade", "ref": "1",
         "ts": T0 + 61 * SEC},
        {"asset": "USDT", "delta_available": "100000", "delta_frozen": "0",
         "available": "100000", "frozen": "0", "reason": "deposit", "ref": f"usdt-{ex.alice}",
         "ts": T0},
    ]  # fmt: skip
    # ETH: the deposit, then the maker sales out of what her resting orders held, and the
    # IOC sale (a taker that never rests) straight out of what was available.
    eth_rows = ex.ok("/v1/ledger?asset=ETH", "alice")["ledger"]
    assert [(r["delta_available"], r["delta_frozen"], r["available"], r["frozen"], r["ref"])
            for r in eth_rows] == [
        ("-0.1", "0", "8.4", "0.3", "4"),
        ("0", "-0.2", "8.5", "0.3", "3"),
        ("0", "-0.6", "8.5", "0.5", "2"),
        ("0", "-0.4", "8.5", "1.1", "1"),
        ("10", "0", "10", "0", f"eth-{ex.alice}"),
    ]  # fmt: skip
    whole = ex.ok("/v1/ledger", "alice")["ledger"]
    assert len(whole) == 10
    assert sorted(whole, key=lambda r: -r["id"]) == whole
    assert sorted(r["id"] for r in whole) == sorted(r["id"] for r in usdt_rows["ledger"] + eth_rows)
    pages, cursor = [], ""
    while True:
        page = ex.ok(f"/v1/ledger?limit=4{cursor}", "alice")
        pages.append(page["ledger"])
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert [len(p) for p in pages] == [4, 4, 2]
    assert [r for p in pages for r in p] == whole
    assert ex.ok("/v1/ledger?asset=USDT&limit=2", "bob")["next_cursor"] is not None

    # A client order id used again once its order closed: the newest order has it.
    ex.apply(
        T0 + 3 * HOUR,
        PlaceOrder(id="p-1-again", user=ex.bob, market=M, side="buy", price=usdt("1800"),
                   amount=eth("0.01"), client_order_id="p-1"),
    )  # fmt: skip
    again = ex.ok("/v1/orders/by-client-id/p-1", "bob")
    assert (again["order_id"], again["status"], again["price"]) == (12, "open", "1800")

    # Redis lost the asset definitions (flushed, rebuild pending): Postgres has them.
    ex.redis.delete("md:assets", "md:markets")
    assert ex.ok("/v1/balances", "bob") == {
        "ETH": {"available": "11.2975", "frozen": "0"},
        "USDT": {"available": "96906.91", "frozen": "492.09"},
    }
    assert ex.ok("/v1/orders/12", "bob")["frozen"] == "18"
    assert ex.ok("/v1/ledger?asset=ETH&limit=1", "alice")["ledger"][0]["available"] == "8.4"


def test_order_lists_come_in_pages(exchange: Exchange) -> None:
    """The caller's OCO lists, newest first, a page at a time with a cursor of their own, as
    the other listings."""
    ex = exchange
    for i in range(3):  # lists 1 to 3: a bid below the asks at 2010, a stop above the last 1990
        ex.apply(
            T0 + 3 * HOUR + i * SEC,
            PlaceOco(id=f"oco-{i}", user=ex.bob, market=M, side="buy", amount=eth("0.01"),
                     price=usdt(str(1950 + i)), stop_price=usdt("2100"),
                     stop_limit_price=usdt("2110")),
        )  # fmt: skip
    everything = ex.ok("/v1/order-lists", "bob")
    assert [x["list_id"] for x in everything["lists"]] == [3, 2, 1]
    assert everything["next_cursor"] is None
    assert everything["lists"][0] == {
        "list_id": 3, "market": M, "side": "buy", "status": "open", "limit_order_id": 16,
        "stop_order_id": 17, "reason": None,
    }  # fmt: skip
    page1 = ex.ok("/v1/order-lists?limit=2", "bob")
    assert [x["list_id"] for x in page1["lists"]] == [3, 2]
    page2 = ex.ok(f"/v1/order-lists?limit=2&cursor={page1['next_cursor']}", "bob")
    assert page2 == {"lists": [everything["lists"][2]], "next_cursor": None}
    assert ex.ok("/v1/order-lists", "alice") == {"lists": [], "next_cursor": None}
    # Made for bob's lists, the cursor is refused to alice and on his orders.
    for user, path in (
        ("alice", f"/v1/order-lists?cursor={page1['next_cursor']}"),
        ("bob", f"/v1/orders?cursor={page1['next_cursor']}"),
    ):
        resp = ex.get(path, user)
        assert resp.status_code == 400, (user, path)
        assert resp.get_json()["error"]["code"] == "invalid_cursor"


# ---------------------------------------------------------------------------- auth, scopes


def _api_key(ex: Exchange, user: str, scopes: list[str]) -> tuple[str, str]:
    resp = ex.client.post(
        "/v1/api-keys", json={"label": "bot", "scopes": scopes},
        headers={"Authorization": f"Bearer {ex.tokens[user]}"},
    )  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    return body["id"], body["secret"]


def _signed_get(ex: Exchange, key: tuple[str, str], path: str) -> TestResponse:
    key_id, secret = key
    bare, _, query = path.partition("?")
    ts = str(time.time_ns() // 1_000_000)
    signature = sign_request(secret, ts, "GET", bare, query)
    return ex.client.get(
        path, headers={"X-API-Key": key_id, "X-API-Timestamp": ts, "X-API-Signature": signature}
    )


PRIVATE = [
    "/v1/balances",
    "/v1/orders",
    "/v1/orders?status=open",
    "/v1/orders/5",
    "/v1/orders/by-client-id/b-3",
    "/v1/trades",
    "/v1/ledger?asset=ETH",
]


def test_authentication_and_scopes(exchange: Exchange) -> None:
    ex = exchange
    for path in PRIVATE:
        resp = ex.get(path)
        assert resp.status_code == 401, path
        assert resp.get_json()["error"]["code"] == "unauthenticated"
        resp = ex.get(path, Authorization="Bearer not-a-token")
        assert resp.status_code == 401, path

    trade_only = _api_key(ex, "bob", ["trade"])
    for path in PRIVATE:
        resp = _signed_get(ex, trade_only, path)
        assert resp.status_code == 403, path
        assert resp.get_json()["error"]["code"] == "insufficient_scope"

    reader = _api_key(ex, "bob", ["read"])
    for path in PRIVATE:
        resp = _signed_get(ex, reader, path)
        assert resp.status_code == 200, (path, resp.get_json())
        assert resp.get_json() == ex.ok(path, "bob"), path

    # Public routes need nothing, and ignore credentials.
    assert ex.get(f"/v1/markets/{M}/depth?limit=1").status_code == 200


# ---------------------------------------------------------------------------- bad parameters


BAD_PUBLIC = [
    ("/v1/time?x=1", 400, "unknown_parameter"),
    ("/v1/markets?limit=1", 400, "unknown_parameter"),
    ("/v1/markets/BTC-USDT", 404, "unknown_market"),
    ("/v1/markets/eth-usdt", 404, "unknown_market"),
    ("/v1/markets/BTC-USDT/depth", 404, "unknown_market"),
    ("/v1/markets/BTC-USDT/ticker", 404, "unknown_market"),
    ("/v1/markets/BTC-USDT/trades", 404, "unknown_market"),
    ("/v1/markets/BTC-USDT/klines?interval=1m", 404, "unknown_market"),
    ("/v1/markets/ETH-USDT/nope", 404, "not_found"),
    (f"/v1/markets/{M}/depth?limit=0", 400, "invalid_limit"),
    (f"/v1/markets/{M}/depth?limit=51", 400, "invalid_limit"),
    (f"/v1/markets/{M}/depth?limit=-1", 400, "invalid_limit"),
    (f"/v1/markets/{M}/depth?limit=abc", 400, "invalid_limit"),
    (f"/v1/markets/{M}/depth?limit=1.5", 400, "invalid_limit"),
    (f"/v1/markets/{M}/depth?limit=01", 400, "invalid_limit"),
    (f"/v1/markets/{M}/depth?limit=%201", 400, "invalid_limit"),
    (f"/v1/markets/{M}/depth?limit=99999999999999999999999", 400, "invalid_limit"),
    (f"/v1/markets/{M}/depth?limit=", 400, "invalid_request"),
    (f"/v1/markets/{M}/depth?limit=1&limit=2", 400, "invalid_request"),
    (f"/v1/markets/{M}/depth?depth=1", 400, "unknown_parameter"),
    (f"/v1/markets/{M}/ticker?limit=1", 400, "unknown_parameter"),
    (f"/v1/markets/{M}/trades?limit=1001", 400, "invalid_limit"),
    (f"/v1/markets/{M}/trades?limit=0", 400, "invalid_limit"),
    (f"/v1/markets/{M}/trades?cursor=1", 400, "unknown_parameter"),
    (f"/v1/markets/{M}/klines", 400, "invalid_interval"),
    (f"/v1/markets/{M}/klines?interval=2m", 400, "invalid_interval"),
    (f"/v1/markets/{M}/klines?interval=1M", 400, "invalid_interval"),
    (f"/v1/markets/{M}/klines?interval=1m&start=abc", 400, "invalid_start"),
    (f"/v1/markets/{M}/klines?interval=1m&start=-5", 400, "invalid_start"),
    (f"/v1/markets/{M}/klines?interval=1m&end=1e12", 400, "invalid_end"),
    (f"/v1/markets/{M}/klines?interval=1m&start=10&end=5", 400, "invalid_range"),
    (f"/v1/markets/{M}/klines?interval=1m&limit=1501", 400, "invalid_limit"),
    (f"/v1/markets/{M}/klines?interval=1m&limit=0", 400, "invalid_limit"),
    (f"/v1/markets/{M}/klines?interval=1m&from=1", 400, "unknown_parameter"),
]

BAD_PRIVATE = [
    ("/v1/balances?asset=ETH", 400, "unknown_parameter"),
    ("/v1/orders?status=pending", 400, "invalid_status"),
    ("/v1/orders?status=OPEN", 400, "invalid_status"),
    ("/v1/orders?limit=0", 400, "invalid_limit"),
    ("/v1/orders?limit=501", 400, "invalid_limit"),
    ("/v1/orders?limit=ten", 400, "invalid_limit"),
    ("/v1/orders?cursor=abc", 400, "invalid_cursor"),
    ("/v1/orders?cursor=0", 400, "invalid_cursor"),
    ("/v1/orders?cursor=-3", 400, "invalid_cursor"),
    ("/v1/orders?cursor=99999999999999999999", 400, "invalid_cursor"),
    ("/v1/orders?market=BTC-USDT", 400, "unknown_market"),
    ("/v1/orders?market=", 400, "invalid_request"),
    ("/v1/orders?side=buy", 400, "unknown_parameter"),
    ("/v1/orders/abc", 404, "order_not_found"),
    ("/v1/orders/0", 404, "order_not_found"),
    ("/v1/orders/-1", 404, "order_not_found"),
    ("/v1/orders/999", 404, "order_not_found"),
    ("/v1/orders/99999999999999999999999", 404, "order_not_found"),
    ("/v1/orders/5?x=1", 400, "unknown_parameter"),
    ("/v1/orders/by-client-id/nope", 404, "order_not_found"),
    ("/v1/orders/by-client-id/" + "x" * 200, 404, "order_not_found"),
    ("/v1/orders/5/fills", 404, "not_found"),
    ("/v1/trades?market=BTC-USDT", 400, "unknown_market"),
    ("/v1/trades?cursor=x", 400, "invalid_cursor"),
    ("/v1/trades?limit=501", 400, "invalid_limit"),
    ("/v1/trades?status=open", 400, "unknown_parameter"),
    ("/v1/ledger?asset=BTC", 400, "unknown_asset"),
    ("/v1/ledger?asset=eth", 400, "unknown_asset"),
    ("/v1/ledger?limit=1.0", 400, "invalid_limit"),
    ("/v1/ledger?cursor=1;DROP", 400, "invalid_cursor"),
    ("/v1/ledger?market=ETH-USDT", 400, "unknown_parameter"),
]


def test_bad_parameters_are_400_or_404_never_500(exchange: Exchange) -> None:
    ex = exchange
    for path, status, code in BAD_PUBLIC:
        resp = ex.get(path)
        body = resp.get_json()
        assert (resp.status_code, body["error"]["code"]) == (status, code), (path, body)
        assert set(body["error"]) == {"code", "message"}
    for path, status, code in BAD_PRIVATE:
        resp = ex.get(path, "bob")
        body = resp.get_json()
        assert (resp.status_code, body["error"]["code"]) == (status, code), (path, body)
    # Only GET is served; other methods of these paths belong to other functions or none.
    assert ex.client.post("/v1/balances").status_code == 405
    assert ex.client.delete(f"/v1/markets/{M}").status_code == 405


# ---------------------------------------------------------------------------- outages


def test_postgres_reconnects_and_outages_are_503(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = exchange
    expected = ex.ok("/v1/balances", "bob")
    # The server ends the function's connection (a restart, an idle timeout): one retry.
    admin = connect(ex.cfg.postgres)
    try:
        killed = admin.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'queries' AND datname = :d",
            d=ex.cfg.postgres.database,
        )
        assert killed == [[True]]
    finally:
        admin.close()
    assert ex.ok("/v1/balances", "bob") == expected
    assert ex.ok("/v1/orders?limit=1", "bob")["orders"][0]["order_id"] == 11

    # Nothing listens: 503 in the error format, not 500.
    monkeypatch.setenv("PGPORT", str(free_port()))
    reset_instance()
    resp = ex.get("/v1/balances", "bob")
    assert resp.status_code == 503, resp.get_json()
    assert resp.get_json()["error"]["code"] == "unavailable"

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_instance()
    reset_instance()
    resp = ex.get(f"/v1/markets/{M}/depth")
    assert resp.status_code == 503, resp.get_json()
    assert resp.get_json()["error"]["code"] == "unavailable"
