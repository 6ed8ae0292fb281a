"""The Binance dialect driven by ccxt 4.5.90's ``binance`` class itself, over real HTTP: the
gateway (python -m infra.gateway), a real matcher process, the emulators, Postgres and Redis of
the session's local stack.

The admin lists ETH (8), USDT (6) and ETH-USDT (tick 0.01, step 0.0001, min 0.0001, min
notional 1, maker 0.1 %, taker 0.2 %); two users get API keys and deposits; their bots, each an
unchanged ccxt configured as docs/binance-api.md shows, trade against each other with every
order type and time in force. What ccxt reports (markets, book, ticker, trades, candles,
orders, fills, fees, balances) must agree to the unit with the native API.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest
from google.cloud import firestore

from api.binance.signature import sign
from functions.admin.bootstrap import make_admin
from shared.config import MatcherConfig
from tests.integration.http_client import HttpClient
from tests.integration.matcher_helpers import gateway_and_matcher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PASSWORD = "a long test password"
MARKET = "ETH-USDT"
D = Decimal
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Key:
    id: str
    secret: str


@dataclass
class Exchange:
    url: str
    api: HttpClient
    tokens: dict[str, str]
    keys: dict[str, Key]

    def bot(self, name: str, **options: Any) -> Any:
        """ccxt's binance as docs/binance-api.md configures it."""
        key = self.keys[name]
        return ccxt.binance(
            {
                "apiKey": key.id,
                "secret": key.secret,
                "urls": {
                    "api": {
                        "public": self.url + "/api/v3",
                        "private": self.url + "/api/v3",
                        "v1": self.url + "/api/v1",
                        "sapi": self.url + "/sapi/v1",
                    }
                },
                "options": {
                    "fetchMarkets": {"types": ["spot"]},
                    "fetchCurrencies": False,
                    "fetchMargins": False,
                    **options,
                },
                "fees": {"trading": {"maker": 0.001, "taker": 0.002}},
            }
        )

    def native(self, path: str, user: str | None = None) -> Any:
        return self.api.get(path, self.tokens[user] if user else None)


def _auth(api: HttpClient, path: str, body: Any, token: str | None = None) -> Any:
    return api.ok("POST", path, body, token, 201 if path != "/v1/auth/login" else 200)


@pytest.fixture
def exchange(
    firestore_db: firestore.Client,
    matcher_cfg: MatcherConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Exchange]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with gateway_and_matcher(matcher_cfg, tmp_path, TRADE_RATE_PER_USER="30") as (url, _):
        api = HttpClient(url)
        make_admin(firestore_db, "admin@example.com", PASSWORD)
        login = {"email": "admin@example.com", "password": PASSWORD}
        admin = api.ok("POST", "/v1/auth/login", login)["access_token"]
        for asset, precision in (("ETH", 8), ("USDT", 6)):
            _auth(api, "/v1/admin/assets", {"asset": asset, "precision": precision}, admin)
        definition = {
            "base": "ETH", "quote": "USDT", "tick": "0.01", "step": "0.0001",
            "min_amount": "0.0001", "min_notional": "1", "maker_fee": "0.001",
            "taker_fee": "0.002",
        }  # fmt: skip
        _auth(api, "/v1/admin/markets", definition, admin)
        tokens: dict[str, str] = {}
        keys: dict[str, Key] = {}
        for name in ("alice", "bob"):
            email = f"{name}@example.com"
            user_id = _auth(api, "/v1/auth/signup", {"email": email, "password": PASSWORD})[
                "user_id"
            ]
            tokens[name] = api.ok("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})[
                "access_token"
            ]
            made = _auth(api, "/v1/api-keys", {"label": "bot", "scopes": ["read", "trade"]},
                         tokens[name])  # fmt: skip
            keys[name] = Key(made["id"], made["secret"])
            for asset, amount in (("ETH", "10"), ("USDT", "50000")):
                deposit = {"user_id": user_id, "asset": asset, "amount": amount,
                           "ref": f"{name}-{asset}"}  # fmt: skip
                _auth(api, "/v1/admin/deposits", deposit, admin)
        made = _auth(api, "/v1/api-keys", {"label": "ro", "scopes": ["read"]}, tokens["alice"])
        keys["alice-read"] = Key(made["id"], made["secret"])
        yield Exchange(url, api, tokens, keys)


def _dec(value: Any) -> Decimal:
    return D(str(value))


def test_markets_and_market_data_match_the_native_api(exchange: Exchange) -> None:
    alice, bob = exchange.bot("alice"), exchange.bot("bob")
    markets = alice.load_markets()
    m = markets["ETH/USDT"]
    assert (m["id"], m["base"], m["quote"], m["type"], m["active"]) == (
        "ETHUSDT", "ETH", "USDT", "spot", True,
    )  # fmt: skip
    assert (m["precision"]["price"], m["precision"]["amount"]) == (0.01, 0.0001)
    assert m["limits"]["amount"]["min"] == 0.0001
    assert m["limits"]["cost"]["min"] == 1

    # Some trades: Alice offers, Bob takes part of it twice, a bid rests.
    alice.create_order("ETH/USDT", "limit", "sell", 1, 2000.5)
    alice.create_order("ETH/USDT", "limit", "sell", 2, 2001)
    bob.create_order("ETH/USDT", "limit", "buy", 0.25, 2000.5)
    bob.create_order("ETH/USDT", "limit", "buy", 0.5, 2001)
    bob.create_order("ETH/USDT", "limit", "buy", 0.3, 1999.99)

    native_depth = exchange.native(f"/v1/markets/{MARKET}/depth")
    book = alice.fetch_order_book("ETH/USDT")
    assert book["nonce"] == native_depth["seq"]
    assert [[_dec(p), _dec(a)] for p, a in book["bids"]] == [
        [D(p), D(a)] for p, a in native_depth["bids"]
    ]
    assert [[_dec(p), _dec(a)] for p, a in book["asks"]] == [
        [D(p), D(a)] for p, a in native_depth["asks"]
    ]

    native_ticker = exchange.native(f"/v1/markets/{MARKET}/ticker")
    ticker = alice.fetch_ticker("ETH/USDT")
    assert _dec(ticker["last"]) == D(native_ticker["last"])
    assert _dec(ticker["baseVolume"]) == D(native_ticker["volume"])
    assert _dec(ticker["quoteVolume"]) == D(native_ticker["quote_volume"])
    assert _dec(ticker["bid"]) == D("1999.99")
    assert list(alice.fetch_tickers(["ETH/USDT"])) == ["ETH/USDT"]
    assert list(alice.fetch_tickers()) == ["ETH/USDT"]

    native_trades = exchange.native(f"/v1/markets/{MARKET}/trades")["trades"]
    trades = alice.fetch_trades("ETH/USDT")
    assert [(int(t["id"]), _dec(t["price"]), _dec(t["amount"]), t["side"]) for t in trades] == [
        (t["trade_id"], D(t["price"]), D(t["amount"]), t["taker_side"])
        for t in reversed(native_trades)
    ]
    since = trades[1]["timestamp"]
    assert [t["id"] for t in alice.fetch_trades("ETH/USDT", since)] == [
        t["id"] for t in trades if t["timestamp"] >= since
    ]
    via_trades = exchange.bot("alice", fetchTradesMethod="publicGetTrades")
    assert [t["id"] for t in via_trades.fetch_trades("ETH/USDT")] == [t["id"] for t in trades]

    native_klines = exchange.native(f"/v1/markets/{MARKET}/klines?interval=1m")["klines"]
    candles = alice.fetch_ohlcv("ETH/USDT", "1m")
    assert [[c[0], *(_dec(v) for v in c[1:])] for c in candles] == [
        [k["open_time"], *(D(k[f]) for f in ("open", "high", "low", "close", "volume"))]
        for k in native_klines
    ]
    assert alice.fetch_ohlcv("ETH/USDT", "1m", since=candles[0][0]) == candles
    assert alice.fetch_ohlcv("ETH/USDT", "1h", limit=1)[0][5] == sum(c[5] for c in candles)
    with pytest.raises(ccxt.BadRequest):
        alice.fetch_ohlcv("ETH/USDT", "3m")  # not kept here: refused, not invented

    assert alice.fetch_time() <= int(time.time() * 1000) + 1000
    status, body, _ = exchange.api.raw("GET", "/api/v3/ping")
    assert (status, body) == (200, {})
    status, body, _ = exchange.api.raw("GET", "/api/v3/avgPrice?symbol=ETHUSDT")
    assert status == 200 and D(body["price"]) > 0
    status, body, _ = exchange.api.raw("GET", "/api/v3/ticker/bookTicker?symbol=ETHUSDT")
    assert (body["bidPrice"], body["askPrice"]) == ("1999.990000", "2000.500000")
    status, body, _ = exchange.api.raw("GET", "/api/v3/exchangeInfo")
    assert body["rateLimits"] == [  # TRADE_RATE_PER_USER=30 in this test, per 10 s
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 30}
    ]
    filters = {f["filterType"]: f for f in body["symbols"][0]["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00010000"


def _fee(received: Decimal, rate: str, precision: int) -> Decimal:
    """What the exchange charges: ``rate`` of what the order receives, rounded up."""
    from decimal import ROUND_CEILING

    return (received * D(rate)).quantize(D(1).scaleb(-precision), rounding=ROUND_CEILING)


def _ccxt_status(status: str, reason: str | None) -> str:
    """What ccxt must report for a native order's state."""
    if status in ("open", "partially_filled"):
        return "open"
    if status == "filled":
        return "closed"
    return "canceled" if reason == "cancelled_by_user" else "expired"


def test_two_bots_trade_with_every_order_type(exchange: Exchange) -> None:
    alice, bob = exchange.bot("alice"), exchange.bot("bob")
    s = "ETH/USDT"

    # GTC limit with a client id: rests.
    a1 = alice.create_order(s, "limit", "sell", 1, 2000, {"clientOrderId": "a-1"})
    assert (a1["status"], a1["clientOrderId"], a1["filled"], a1["type"]) == (
        "open", "a-1", 0.0, "limit",
    )  # fmt: skip
    assert isinstance(int(a1["id"]), int)
    # IOC that fills: Bob is the taker, pays 0.2 % of the ETH he receives.
    b1 = bob.create_order(s, "limit", "buy", 0.3, 2000, {"timeInForce": "IOC"})
    assert (b1["status"], b1["filled"], b1["cost"]) == ("closed", 0.3, 600.0)
    assert b1["fee"] == {"cost": 0.0006, "currency": "ETH"}
    assert [(t["price"], t["amount"]) for t in b1["trades"]] == [(2000.0, 0.3)]
    # IOC that fills partly: the rest expires.
    b2 = bob.create_order(s, "limit", "buy", 5, 2000, {"timeInForce": "IOC"})
    assert (b2["status"], b2["filled"], b2["remaining"]) == ("expired", 0.7, 4.3)
    # FOK that cannot fill completely is refused, nothing done; one that can, fills.
    with pytest.raises(ccxt.InvalidOrder):
        bob.create_order(s, "limit", "buy", 1, 2010, {"timeInForce": "FOK"})
    a2 = alice.create_order(s, "limit", "sell", 1, 2010)
    b3 = bob.create_order(s, "limit", "buy", 0.5, 2010, {"timeInForce": "FOK"})
    assert (b3["status"], b3["filled"]) == ("closed", 0.5)
    # Post-only (LIMIT_MAKER): refused when it would take, rests otherwise.
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        bob.create_order(s, "limit", "buy", 0.1, 2010, {"postOnly": True})
    b4 = bob.create_order(s, "limit", "buy", 0.2, 1995, {"postOnly": True})
    assert (b4["status"], b4["postOnly"]) == ("open", True)
    # Market sell by quantity into Bob's bid; market buys by cost and by quantity.
    a3 = alice.create_order(s, "market", "sell", 0.1)
    assert (a3["status"], a3["filled"], a3["average"]) == ("closed", 0.1, 1995.0)
    b5 = bob.create_market_buy_order_with_cost(s, 100)
    assert b5["status"] == "closed" and b5["filled"] == 0.0497  # 100 / 2010, on the step
    b6 = bob.create_order(s, "market", "buy", 0.01)
    assert (b6["status"], b6["filled"], b6["cost"]) == ("closed", 0.01, 20.1)

    # Queries: one order, open orders, cancels by id and by client id.
    got = bob.fetch_order(b4["id"], s)
    assert (got["status"], got["amount"], got["price"]) == ("open", 0.2, 1995.0)
    b7 = bob.create_order(s, "limit", "buy", 0.1, 1990, {"clientOrderId": "b-7"})
    assert {o["id"] for o in bob.fetch_open_orders(s)} == {b4["id"], b7["id"]}
    cancelled = bob.cancel_order(b4["id"], s)
    assert (cancelled["status"], cancelled["id"]) == ("canceled", b4["id"])
    by_client = bob.cancel_order(None, s, {"clientOrderId": "b-7"})
    assert (by_client["status"], by_client["clientOrderId"]) == ("canceled", "b-7")
    assert bob.fetch_open_orders(s) == []
    with pytest.raises(ccxt.OrderNotFound):
        bob.cancel_all_orders(s)  # nothing open: Binance's -2011
    a4 = alice.create_order(s, "limit", "sell", 0.2, 2100)
    cancelled_all = alice.cancel_all_orders(s)
    assert [(o["id"], o["status"]) for o in cancelled_all] == [
        (a2["id"], "canceled"), (a4["id"], "canceled"),
    ]  # fmt: skip
    assert alice.fetch_order(a1["id"], s)["status"] == "closed"

    everywhere = exchange.bot("alice", fetchOpenOrders={"warnWithoutSymbol": False})
    assert [o["id"] for o in everywhere.fetch_open_orders()] == []
    assert {o["id"] for o in alice.fetch_canceled_orders(s)} == {a2["id"], a4["id"]}
    assert {o["id"] for o in alice.fetch_closed_orders(s)} == {a1["id"], a3["id"]}
    first = bob.fetch_my_trades(s)[2]
    assert bob.fetch_my_trades(s, since=first["timestamp"])[0]["timestamp"] >= first["timestamp"]

    # Everything agrees with the native API, to the unit.
    for name, bot in (("alice", alice), ("bob", bob)):
        native_orders = {o["order_id"]: o for o in exchange.native("/v1/orders", name)["orders"]}
        orders = bot.fetch_orders(s)
        assert {int(o["id"]) for o in orders} == set(native_orders)
        for o in orders:
            n = native_orders[int(o["id"])]
            assert _dec(o["filled"]) == D(n["filled"])
            assert _dec(o["cost"]) == D(n["filled_quote"])
            assert o["side"] == n["side"]
            assert o["status"] == _ccxt_status(n["status"], n["reason"])
        native_fills = exchange.native("/v1/trades", name)["trades"]
        fills = bot.fetch_my_trades(s)
        assert [int(f["id"]) for f in fills] == [f["trade_id"] for f in reversed(native_fills)]
        for f, n in zip(fills, reversed(native_fills), strict=True):
            assert (f["side"], f["takerOrMaker"], int(f["order"])) == (
                n["side"], n["role"], n["order_id"],
            )  # fmt: skip
            assert (_dec(f["price"]), _dec(f["amount"])) == (D(n["price"]), D(n["amount"]))
            assert (_dec(f["fee"]["cost"]), f["fee"]["currency"]) == (D(n["fee"]), n["fee_asset"])
        native_balances = exchange.native("/v1/balances", name)
        balance = bot.fetch_balance()
        for asset, b in native_balances.items():
            assert _dec(balance[asset]["free"]) == D(b["available"])
            assert _dec(balance[asset]["used"]) == D(b["frozen"])

    # Bob's fills as taker and maker, fees rounded up to the unit as the engine does.
    bob_fills = bob.fetch_my_trades(s)
    by_id = {f["order"]: f for f in bob_fills}
    assert _dec(by_id[b1["id"]]["fee"]["cost"]) == _fee(D("0.3"), "0.002", 8)
    maker = [f for f in bob_fills if f["takerOrMaker"] == "maker"]
    assert [(_dec(f["amount"]), _dec(f["fee"]["cost"])) for f in maker] == [
        (D("0.1"), _fee(D("0.1"), "0.001", 8))
    ]


def _signed(exchange: Exchange, name: str, method: str, path: str, params: str) -> Any:
    """A signed request as Binance documents it (POST: the parameters in the body)."""
    key = exchange.keys[name]
    query = f"{params}&timestamp={int(time.time() * 1000)}"
    signed = f"{query}&signature={sign(key.secret, query.encode())}"
    headers = {"X-MBX-APIKEY": key.id}
    if method == "POST":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return exchange.api.raw(method, path, signed.encode(), headers)
    return exchange.api.raw(method, f"{path}?{signed}", None, headers)


def test_refusals_raise_ccxts_matching_exceptions(exchange: Exchange) -> None:
    alice = exchange.bot("alice")
    s = "ETH/USDT"
    with pytest.raises(ccxt.InsufficientFunds):
        alice.create_order(s, "limit", "buy", 100, 2000)
    with pytest.raises(ccxt.OrderNotFound):
        alice.fetch_order("999999", s)
    with pytest.raises(ccxt.OrderNotFound):
        alice.cancel_order("999999", s)
    # Someone else's order is as unknown as no order.
    mine = exchange.bot("bob").create_order(s, "limit", "buy", 0.1, 1000)
    with pytest.raises(ccxt.OrderNotFound):
        alice.cancel_order(mine["id"], s)
    with pytest.raises(ccxt.BadRequest):  # ccxt's class for Binance's NOTIONAL failure
        alice.create_order(s, "limit", "buy", 0.1, 1, {"clientOrderId": "x"})  # notional 0.1

    forged = exchange.bot("alice")
    forged.secret = "not the secret"
    with pytest.raises(ccxt.AuthenticationError):
        forged.fetch_balance()
    late = exchange.bot("alice")
    late.options["timeDifference"] = 120_000  # its clock two minutes behind
    with pytest.raises(ccxt.InvalidNonce):
        late.fetch_balance()
    read_only = exchange.bot("alice-read")
    assert read_only.fetch_balance()["ETH"]["free"] == 10.0
    # Binance's -2015 for a key without the trade scope: ccxt raises AuthenticationError, or
    # DDoSProtection once that instance has made a successful private call (its own quirk).
    with pytest.raises(ccxt.DDoSProtection):
        read_only.create_order(s, "limit", "sell", 0.1, 3000)
    with pytest.raises(ccxt.AuthenticationError):
        exchange.bot("alice-read").create_order(s, "limit", "sell", 0.1, 3000)

    # Over-precise numbers are refused with the filter they break, never truncated.
    base = "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
    status, body, _ = _signed(
        exchange, "alice", "POST", "/api/v3/order", f"{base}&quantity=0.00001&price=2000"
    )
    assert (status, body) == (400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"})
    status, body, _ = _signed(
        exchange, "alice", "POST", "/api/v3/order", f"{base}&quantity=0.1&price=2000.001"
    )
    assert (status, body) == (400, {"code": -1013, "msg": "Filter failure: PRICE_FILTER"})
    status, body, _ = _signed(
        exchange, "alice", "POST", "/api/v3/order", f"{base}&quantity=1e-1&price=2000"
    )
    assert (status, body["code"]) == (400, -1100)
    # Trailing zeros change nothing.
    status, body, _ = _signed(
        exchange, "alice", "POST", "/api/v3/order/test",
        f"{base}&quantity=0.10000000&price=2000.00000000",
    )  # fmt: skip
    assert (status, body) == (200, {})
    status, body, _ = _signed(
        exchange, "alice", "POST", "/api/v3/order",
        "symbol=ETHUSDT&side=SELL&type=STOP_LOSS&quantity=0.1&stopPrice=1000",
    )  # fmt: skip
    assert (status, body["code"]) == (400, -1116)
    status, body, _ = _signed(exchange, "alice", "GET", "/api/v3/openOrders", "symbol=XYZ")
    assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
    with pytest.raises(ccxt.BadSymbol):
        alice.public_get_depth({"symbol": "NOPE"})

    # The user data stream's listen keys: the API key alone, as on Binance.
    headers = {"X-MBX-APIKEY": exchange.keys["alice"].id}
    status, body, _ = exchange.api.raw("POST", "/api/v3/userDataStream", None, headers)
    assert status == 200 and len(body["listenKey"]) == 64
    key = body["listenKey"]
    for method in ("PUT", "DELETE"):
        got = exchange.api.raw(method, f"/api/v3/userDataStream?listenKey={key}", None, headers)
        assert got[:2] == (200, {})
    got = exchange.api.raw("PUT", f"/api/v3/userDataStream?listenKey={key}", None, headers)
    assert got[:2] == (400, {"code": -1125, "msg": "This listenKey does not exist."})
    got = exchange.api.raw("POST", "/api/v3/userDataStream")
    assert got[:2] == (401, {"code": -2014, "msg": "API-key format invalid."})

    # Past the trading limit (TRADE_RATE_PER_USER, here 30 per window): 429 with Retry-After.
    for _ in range(31):
        status, body, headers = _signed(
            exchange, "bob", "POST", "/api/v3/order/test", f"{base}&quantity=0.1&price=2000"
        )
        if status == 429:
            break
    assert (status, body["code"]) == (429, -1003)
    assert int(headers["Retry-After"]) >= 1
    with pytest.raises(ccxt.DDoSProtection):
        exchange.bot("bob").create_order(s, "limit", "buy", 0.1, 1000)


def test_the_example_bot_runs(exchange: Exchange) -> None:
    """examples/ccxt_bot.py, as docs/binance-api.md tells a user to run it."""
    exchange.bot("alice").create_order("ETH/USDT", "limit", "sell", 1, 2000)
    env = {
        **os.environ, "BASE": exchange.url, "KEY": exchange.keys["bob"].id,
        "SECRET": exchange.keys["bob"].secret,
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ccxt_bot.py"), "ETH/USDT"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "placed " in done.stdout and ": canceled" in done.stdout
    assert exchange.bot("bob").fetch_open_orders("ETH/USDT") == []
