"""End to end over real HTTP: the gateway as a real server (``python -m infra.gateway`` on
gunicorn, on a free port), a real matcher process, the Pub/Sub and Firestore emulators,
Postgres and Redis of the session's local stack (this test's own database, topics, Firestore
project and an empty Redis).

Two users sign up and log in, the admin lists ETH, USDT and ETH-USDT and credits them through
the admin routes, and they trade against each other: a partial fill with Alice as maker, then
a partial fill with Alice as taker, then Bob cancels the rest of his bid. Balances, fees (maker
0.1 %, taker 0.2 % of what each receives, rounded up to the asset's precision), orders, trades
(role, fee), depth, ticker and klines must be exactly as computed here, and the audit ok.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from functions.admin.bootstrap import make_admin
from shared.config import MatcherConfig
from tests.integration.http_client import HttpClient
from tests.integration.matcher_helpers import gateway_and_matcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PASSWORD = "a long test password"
ADMIN_EMAIL = "admin@example.com"
MARKET = "ETH-USDT"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def fee(received: str, rate: str, precision: int) -> str:
    """What the exchange charges: ``rate`` of what the order receives, rounded up."""
    exact = Decimal(received) * Decimal(rate)
    charged = exact.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_CEILING)
    return format(charged.normalize(), "f")


class Api(HttpClient):
    def user(self, email: str) -> tuple[str, str]:
        """(user id, access token) of a new user."""
        created = self.ok(
            "POST", "/v1/auth/signup", {"email": email, "password": PASSWORD}, None, 201
        )
        return created["user_id"], self.login(email)

    def login(self, email: str) -> str:
        tokens = self.ok("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
        assert tokens["token_type"] == "Bearer"
        token: str = tokens["access_token"]
        return token


@contextmanager
def served(
    matcher_cfg: MatcherConfig, tmp_path: Path, **extra_env: str
) -> Iterator[tuple[Api, dict[str, str]]]:
    """The matcher and the gateway as processes, on ``matcher_cfg``'s database, topics and
    Redis and the current Firestore project; the client and the gateway's environment."""
    with gateway_and_matcher(matcher_cfg, tmp_path, **extra_env) as (url, env):
        yield Api(url), env


@pytest.fixture
def api(
    firestore_db: firestore.Client, matcher_cfg: MatcherConfig, tmp_path: Path
) -> Iterator[Api]:
    """The matcher and the gateway as processes, on this test's database, topics, Redis and
    Firestore project (firestore_db comes first: the Pub/Sub names live in its project)."""
    with served(matcher_cfg, tmp_path) as (client, _):
        yield client


def order(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    placed: dict[str, Any] = api.ok(
        "POST", "/v1/orders", {"market": MARKET, "type": "limit", **fields}, token, 201
    )
    return placed


def without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in keys}


def test_two_users_trade_over_http(api: Api, firestore_db: firestore.Client) -> None:
    # The admin lists the assets and the market.
    make_admin(firestore_db, ADMIN_EMAIL, PASSWORD)
    admin = api.login(ADMIN_EMAIL)
    native = {"kind": "native", "decimals": 18}
    token = {"kind": "erc20", "contract": CONTRACT, "decimals": 6}
    api.ok("POST", "/v1/admin/assets", {"asset": "ETH", "precision": 8, "chain": native},
           admin, 201)  # fmt: skip
    api.ok("POST", "/v1/admin/assets", {"asset": "USDT", "precision": 6, "chain": token},
           admin, 201)  # fmt: skip
    definition = {
        "base": "ETH", "quote": "USDT", "tick": "0.01", "step": "0.0001",
        "min_amount": "0.0001", "min_notional": "1", "maker_fee": "0.001", "taker_fee": "0.002",
    }  # fmt: skip
    listed = api.ok("POST", "/v1/admin/markets", definition, admin, 201)
    assert listed == {"market": MARKET, **definition, "status": "open"}
    assert api.get("/v1/assets")["assets"] == [
        {"asset": "ETH", "precision": 8, "chain": native},
        {"asset": "USDT", "precision": 6, "chain": {**token, "contract": CONTRACT.lower()}},
    ]

    # Two users sign up, log in, and are credited through the admin's deposit route.
    alice_id, alice = api.user("alice@example.com")
    bob_id, bob = api.user("bob@example.com")
    me = api.get("/v1/auth/me", alice)
    assert (me["user_id"], me["email"], me["role"]) == (alice_id, "alice@example.com", "user")
    for user_id, asset, amount in ((alice_id, "ETH", "3"), (bob_id, "USDT", "10000")):
        credited = api.ok("POST", "/v1/admin/deposits", {"user_id": user_id, "asset": asset,
                          "amount": amount, "ref": f"e2e-{asset}"}, admin, 201)  # fmt: skip
        assert (credited["user_id"], credited["asset"], credited["amount"]) == (
            user_id, asset, amount,
        )  # fmt: skip

    # Alice offers 2 ETH at 2000.01; Bob takes 0.3333 of it: Alice is the maker.
    a1 = order(api, alice, side="sell", price="2000.01", amount="2", client_order_id="a-1")
    assert (a1["status"], a1["filled"]) == ("open", "0")
    b1 = order(api, bob, side="buy", price="2100", amount="0.3333")
    quote1 = "666.603333"  # 2000.01 x 0.3333, exact
    assert without(b1, "order_id", "ts") == {
        "market": MARKET, "side": "buy", "type": "limit", "price": "2100", "amount": "0.3333",
        "quote_amount": None, "time_in_force": "GTC", "post_only": False,
        "client_order_id": None, "status": "filled", "filled": "0.3333",
        "filled_quote": quote1, "fee": "0.0006666", "reason": None,
    }  # fmt: skip
    # Bob bids 1 ETH at 1999.99, below Alice's offer: it rests. Alice sells 0.7777 at 1999
    # into it: now she is the taker, and the trade is at Bob's price.
    b2 = order(api, bob, side="buy", price="1999.99", amount="1", client_order_id="b-2")
    assert b2["status"] == "open"
    a2 = order(api, alice, side="sell", price="1999", amount="0.7777")
    quote2 = "1555.392223"  # 1999.99 x 0.7777
    assert (a2["status"], a2["filled"], a2["filled_quote"]) == ("filled", "0.7777", quote2)
    # The fees, rounded up to the unit: 0.666603333 -> 0.666604, 3.110784446 -> 3.110785.
    maker_fee_alice, taker_fee_alice = fee(quote1, "0.001", 6), fee(quote2, "0.002", 6)
    taker_fee_bob, maker_fee_bob = fee("0.3333", "0.002", 8), fee("0.7777", "0.001", 8)
    assert (maker_fee_alice, taker_fee_alice) == ("0.666604", "3.110785")
    assert (taker_fee_bob, maker_fee_bob) == ("0.0006666", "0.0007777")
    assert a2["fee"] == taker_fee_alice

    # Someone else's order is not found; Bob cancels the rest of his own bid.
    status, body = api.call("DELETE", f"/v1/orders/{b2['order_id']}", token=alice)
    assert (status, body["error"]["code"]) == (404, "order_not_found")
    cancelled = api.ok("DELETE", f"/v1/orders/{b2['order_id']}", token=bob)
    assert cancelled == {
        "order_id": b2["order_id"], "market": MARKET, "side": "buy", "status": "cancelled",
        "filled": "0.7777", "filled_quote": quote2, "fee": maker_fee_bob,
        "reason": "cancelled_by_user",
    }  # fmt: skip

    # Balances, to the unit.
    d = Decimal
    assert d(quote1) - d(maker_fee_alice) + d(quote2) - d(taker_fee_alice) == d("2218.218167")
    assert d("0.3333") - d(taker_fee_bob) + d("0.7777") - d(maker_fee_bob) == d("1.1095557")
    assert d(10000) - d(quote1) - d(quote2) == d("7778.004444")
    assert api.get("/v1/balances", alice) == {
        "ETH": {"available": "0.2223", "frozen": "1.6667"},  # 3 - 2 - 0.7777; 2 - 0.3333
        "USDT": {"available": "2218.218167", "frozen": "0"},
    }
    assert api.get("/v1/balances", bob) == {
        "ETH": {"available": "1.1095557", "frozen": "0"},
        "USDT": {"available": "7778.004444", "frozen": "0"},  # the cancel released the rest
    }

    # Orders, newest first, with what each still holds.
    common = {"market": MARKET, "type": "limit", "quote_amount": None, "time_in_force": "GTC",
              "post_only": False}  # fmt: skip
    alice_orders = api.get("/v1/orders", alice)
    assert alice_orders["next_cursor"] is None
    assert [without(o, "ts", "updated_ts") for o in alice_orders["orders"]] == [
        {"order_id": a2["order_id"], **common, "side": "sell", "price": "1999",
         "amount": "0.7777", "client_order_id": None, "status": "filled", "filled": "0.7777",
         "filled_quote": quote2, "fee": taker_fee_alice, "fee_asset": "USDT", "frozen": "0",
         "reason": None},
        {"order_id": a1["order_id"], **common, "side": "sell", "price": "2000.01",
         "amount": "2", "client_order_id": "a-1", "status": "partially_filled",
         "filled": "0.3333", "filled_quote": quote1, "fee": maker_fee_alice,
         "fee_asset": "USDT", "frozen": "1.6667", "reason": None},
    ]  # fmt: skip
    assert [o["order_id"] for o in api.get("/v1/orders?status=open", alice)["orders"]] == [
        a1["order_id"]
    ]
    assert [without(o, "ts", "updated_ts") for o in api.get("/v1/orders", bob)["orders"]] == [
        {"order_id": b2["order_id"], **common, "side": "buy", "price": "1999.99",
         "amount": "1", "client_order_id": "b-2", "status": "cancelled", "filled": "0.7777",
         "filled_quote": quote2, "fee": maker_fee_bob, "fee_asset": "ETH", "frozen": "0",
         "reason": "cancelled_by_user"},
        {"order_id": b1["order_id"], **common, "side": "buy", "price": "2100",
         "amount": "0.3333", "client_order_id": None, "status": "filled", "filled": "0.3333",
         "filled_quote": quote1, "fee": taker_fee_bob, "fee_asset": "ETH", "frozen": "0",
         "reason": None},
    ]  # fmt: skip

    # Each one's fills: role and fee.
    alice_fills = api.get("/v1/trades", alice)["trades"]
    ts1, ts2 = alice_fills[1]["ts"], alice_fills[0]["ts"]
    fill = {"market": MARKET}
    assert alice_fills == [
        {"trade_id": 2, **fill, "order_id": a2["order_id"], "side": "sell", "role": "taker",
         "price": "1999.99", "amount": "0.7777", "quote": quote2, "fee": taker_fee_alice,
         "fee_asset": "USDT", "ts": ts2},
        {"trade_id": 1, **fill, "order_id": a1["order_id"], "side": "sell", "role": "maker",
         "price": "2000.01", "amount": "0.3333", "quote": quote1, "fee": maker_fee_alice,
         "fee_asset": "USDT", "ts": ts1},
    ]  # fmt: skip
    assert api.get("/v1/trades", bob)["trades"] == [
        {"trade_id": 2, **fill, "order_id": b2["order_id"], "side": "buy", "role": "maker",
         "price": "1999.99", "amount": "0.7777", "quote": quote2, "fee": maker_fee_bob,
         "fee_asset": "ETH", "ts": ts2},
        {"trade_id": 1, **fill, "order_id": b1["order_id"], "side": "buy", "role": "taker",
         "price": "2000.01", "amount": "0.3333", "quote": quote1, "fee": taker_fee_bob,
         "fee_asset": "ETH", "ts": ts1},
    ]  # fmt: skip

    # Public market data.
    depth = api.get(f"/v1/markets/{MARKET}/depth")
    assert without(depth, "seq") == {"bids": [], "asks": [["2000.01", "1.6667"]]}
    assert api.get(f"/v1/markets/{MARKET}/trades") == {
        "trades": [
            {"trade_id": 2, **fill, "price": "1999.99", "amount": "0.7777", "quote": quote2,
             "taker_side": "sell", "ts": ts2},
            {"trade_id": 1, **fill, "price": "2000.01", "amount": "0.3333", "quote": quote1,
             "taker_side": "buy", "ts": ts1},
        ]
    }  # fmt: skip
    ticker = api.get(f"/v1/markets/{MARKET}/ticker")
    assert without(ticker, "ts") == {
        "market": MARKET, "last": "1999.99", "open": "2000.01", "high": "2000.01",
        "low": "1999.99", "volume": "1.111", "quote_volume": "2221.995556", "change": "-0.02",
        "trades": 2,
    }  # fmt: skip
    assert ticker["ts"] >= ts2
    assert api.get("/v1/tickers")["tickers"] == [ticker]
    for interval, ms in (("1m", 60_000), ("1h", 3_600_000)):
        candles = api.get(f"/v1/markets/{MARKET}/klines?interval={interval}")["klines"]
        if ts1 // ms == ts2 // ms:  # both trades in one candle
            assert candles == [
                {"open_time": ts1 - ts1 % ms, "open": "2000.01", "high": "2000.01",
                 "low": "1999.99", "close": "1999.99", "volume": "1.111",
                 "quote_volume": "2221.995556", "trades": 2},
            ], interval  # fmt: skip
        else:  # the trades fell on either side of a candle's boundary
            assert candles == [
                {"open_time": ts1 - ts1 % ms, "open": "2000.01", "high": "2000.01",
                 "low": "2000.01", "close": "2000.01", "volume": "0.3333",
                 "quote_volume": quote1, "trades": 1},
                {"open_time": ts2 - ts2 % ms, "open": "1999.99", "high": "1999.99",
                 "low": "1999.99", "close": "1999.99", "volume": "0.7777",
                 "quote_volume": quote2, "trades": 1},
            ], interval  # fmt: skip

    # Every unit accounted for: the fee account holds exactly the four fees.
    audit = api.get("/v1/admin/audit", admin)
    assert audit["ok"] is True and audit["mismatches"] == [], audit
    assert audit["assets"] == {
        "ETH": {"balances": "3", "fees": "0.0014443", "deposits": "3", "withdrawals": "0",
                "ok": True},
        "USDT": {"balances": "10000", "fees": "3.777389", "deposits": "10000",
                 "withdrawals": "0", "ok": True},
    }  # fmt: skip
    assert Decimal(taker_fee_bob) + Decimal(maker_fee_bob) == Decimal("0.0014443")
    assert Decimal(maker_fee_alice) + Decimal(taker_fee_alice) == Decimal("3.777389")
