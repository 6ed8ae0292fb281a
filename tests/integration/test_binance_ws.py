"""The Binance WebSocket dialect of the ws service (ws_service/binance.py, docs/binance-api.md)
against a real local exchange: the matcher, the gateway (with the Binance REST dialect) and
``python -m ws_service`` as processes; orders through the native HTTP API.

- ccxt.pro's ``binance`` (4.5.90), configured only by URLs, key and secret, watches the book
  (gap-free: ccxt checks every ``U``/``u`` against its REST snapshot, and ends equal to
  ``GET /api/v3/depth`` after the trades), trades, the ticker, candles, and the account's own
  orders, trades and balances (the WebSocket API's signed user data stream); the example
  bot (examples/ccxt_pro_watch.py) runs;
- raw clients: combined streams continue each other exactly (``U`` = previous ``u`` + 1),
  partial books and ``bookTicker`` show the REST book, ``SUBSCRIBE`` errors, and the
  listen-key user data stream ends with ``listenKeyExpired`` once the key is closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.pro
import orjson
import pytest
from google.cloud import firestore
from websockets.exceptions import InvalidStatus

from infra.processes import REPO_ROOT
from shared.config import MatcherConfig
from tests.integration.matcher_helpers import wait_for
from tests.integration.ws_helpers import Exchange, Feed, User, exchange

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SYMBOL = "ETH/USDT"
CLIENT_PACE = {"WS_PING_INTERVAL_S": "20", "WS_PING_TIMEOUT_S": "20", "WS_IDLE_TIMEOUT_S": "60"}
"""The service's defaults, not ws_helpers' second-long ones: ccxt.pro answers pings from its
own loop, which a busy test machine may hold up for seconds."""


def ccxt_pro(ex: Exchange, ws_port: int, key: dict[str, Any]) -> Any:
    """ccxt.pro's binance pointed at this exchange, as docs/binance-api.md shows."""
    base = ex.http.base
    ws = f"ws://127.0.0.1:{ws_port}"
    return ccxt.pro.binance(
        {
            "apiKey": key["id"],
            "secret": key["secret"],
            "urls": {
                "api": {
                    "public": base + "/api/v3",
                    "private": base + "/api/v3",
                    "v1": base + "/api/v1",
                    "sapi": base + "/sapi/v1",
                    "ws": {"spot": ws + "/ws", "ws-api": {"spot": ws + "/ws-api/v3"}},
                }
            },
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
    )


def rest_depth(ex: Exchange) -> dict[str, Any]:
    doc: dict[str, Any] = ex.http.get("/api/v3/depth?symbol=ETHUSDT&limit=100")
    return doc


def levels(rows: list[list[Any]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(str(p)), Decimal(str(q))) for p, q in rows]


async def within(awaitable: Awaitable[Any]) -> Any:
    """What ``awaitable`` gives, or a failure saying it never came (not a timing check)."""
    return await asyncio.wait_for(awaitable, 30)


async def until(task: asyncio.Future[Any], act: Callable[[], Awaitable[Any]]) -> Any:
    """``task``'s result, acting again (another trade) until it comes: a stream answers only
    with the changes after it is live."""
    for _ in range(20):
        if task.done():
            return task.result()
        await act()
        done, _ = await asyncio.wait({task}, timeout=3)
        if done:
            return task.result()
    raise AssertionError("the stream never delivered")


@pytest.mark.usefixtures("firestore_db")
def test_ccxt_pro_watches_market_and_account(
    firestore_db: firestore.Client, matcher_cfg: MatcherConfig, tmp_path: Path
) -> None:
    with exchange(matcher_cfg, firestore_db, tmp_path) as ex:
        ex.list_market()
        maker, taker = ex.user("maker"), ex.user("taker")
        ws = ex.start_ws(**CLIENT_PACE)
        key = ex.http.ok("POST", "/v1/api-keys", {"label": "bot", "scopes": ["read", "trade"]},
                         taker.token, 201)  # fmt: skip
        for i in range(5):  # a book to start from
            ex.order(maker, side="sell", price=str(2000 + i), amount="2")
            ex.order(maker, side="buy", price=str(1990 - i), amount="2")
        asyncio.run(_watch(ex, ws.port, key, maker, taker))

        # examples/ccxt_pro_watch.py, as docs/binance-api.md tells a user to run it.
        env = {**os.environ, "BASE": ex.http.base, "WS": f"ws://127.0.0.1:{ws.port}",
               "KEY": key["id"], "SECRET": key["secret"]}  # fmt: skip
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "examples" / "ccxt_pro_watch.py"), SYMBOL],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert " open, " in done.stdout and " canceled" in done.stdout, done.stdout


async def _watch(ex: Exchange, port: int, key: dict[str, Any], maker: User, taker: User) -> None:
    pro = ccxt_pro(ex, port, key)
    try:
        await within(pro.load_markets())

        async def trade(amount: str = "0.1") -> None:
            await asyncio.to_thread(ex.order, taker, side="buy", price="2010", amount=amount)

        # The book: ccxt takes the REST snapshot after the SUBSCRIBE's answer and checks each
        # depthUpdate continues it (a gap raises); it follows the trades to the REST book.
        book = await within(pro.watch_order_book(SYMBOL))
        assert levels(book["asks"])[0] == (Decimal(2000), Decimal(2))
        ticker = await within(pro.watch_ticker(SYMBOL))  # the ticker as it stands comes at once
        assert ticker["symbol"] == SYMBOL

        # The account, on the WebSocket API (signed subscription), then a trade of its own.
        await within(pro.authenticate())
        orders = asyncio.ensure_future(pro.watch_orders(SYMBOL))
        my_trades = asyncio.ensure_future(pro.watch_my_trades(SYMBOL))
        balance = asyncio.ensure_future(pro.watch_balance())
        trades = asyncio.ensure_future(pro.watch_trades(SYMBOL))
        candles = asyncio.ensure_future(pro.watch_ohlcv(SYMBOL, "1m"))
        got_trades = await until(trades, trade)
        assert got_trades[-1]["symbol"] == SYMBOL and got_trades[-1]["side"] == "buy"
        assert 2000 <= got_trades[-1]["price"] <= 2004
        got_candles = await until(candles, trade)
        assert 2000 <= got_candles[-1][4] <= 2004  # the close

        # A watch started before its subscription was live misses what came before: trade
        # again until each has something (a busy machine may take a while to subscribe).
        own = await until(orders, trade)
        assert own[0]["symbol"] == SYMBOL and own[0]["side"] == "buy"
        assert own[0]["price"] == 2010 and own[0]["amount"] == 0.1
        fills = await until(my_trades, trade)
        assert fills[0]["side"] == "buy" and fills[0]["takerOrMaker"] == "taker"
        assert fills[0]["fee"]["currency"] == "ETH"

        def agrees(b: Any) -> bool:
            return all(
                Decimal(str(b[a]["free"])) == Decimal(native[a]["available"])
                and Decimal(str(b[a]["used"])) == Decimal(native[a]["frozen"])
                for a in ("ETH", "USDT")
            )

        await until(balance, trade)
        native = ex.http.get("/v1/balances", taker.token)  # after the last trade
        # a watch waits for the next change: what ccxt holds already is checked first
        while not agrees(pro.balance["spot"]):  # the balance after the last trade
            await within(pro.watch_balance())

        # Every order of the account reaches it, in its final state.
        placed = await asyncio.to_thread(
            ex.order, taker, side="buy", price="2003", amount="3", client_order_id="bot-1"
        )
        while not (
            (mine := [o for o in pro.orders or [] if o["id"] == str(placed["order_id"])])
            and mine[-1]["status"] == "closed"
        ):
            await within(pro.watch_orders(SYMBOL))
        assert mine[-1]["clientOrderId"] == "bot-1"
        assert mine[-1]["filled"] == 3 and mine[-1]["amount"] == 3

        # The book after the trades: the REST depth, exactly.
        want = rest_depth(ex)
        book = pro.orderbooks[SYMBOL]  # as ccxt holds it now (a watch waits for the next)
        while book["nonce"] < want["lastUpdateId"]:
            book = await within(pro.watch_order_book(SYMBOL))
        assert book["nonce"] == want["lastUpdateId"]
        assert levels(book["asks"]) == levels(want["asks"])
        assert levels(book["bids"]) == levels(want["bids"])
    finally:
        await pro.close()


def test_raw_streams_and_listen_key(
    firestore_db: firestore.Client, matcher_cfg: MatcherConfig, tmp_path: Path
) -> None:
    with exchange(matcher_cfg, firestore_db, tmp_path) as ex:
        ex.list_market()
        maker, taker = ex.user("maker"), ex.user("taker")
        ws = ex.start_ws(**CLIENT_PACE)
        base = f"ws://127.0.0.1:{ws.port}"
        ex.order(maker, side="sell", price="2000", amount="5")

        # Combined streams named in the URL: each event wrapped with its stream's name.
        combined = Feed(f"{base}/stream?streams=ethusdt@depth@100ms/ethusdt@trade")
        raw = Feed(f"{base}/ws/0")
        raw.send(method="SUBSCRIBE", params=["ethusdt@bookTicker", "ethusdt@depth5"], id=7)
        assert raw.next(lambda d: d.get("id") == 7) == {"result": None, "id": 7}
        first = raw.next(lambda d: "lastUpdateId" in d)  # the partial book as it stands
        assert first["asks"] == [["2000.000000", "5.00000000"]] and first["bids"] == []
        top = raw.next(lambda d: d.get("s") == "ETHUSDT" and "A" in d)
        assert (top["a"], top["A"], top["b"]) == ("2000.000000", "5.00000000", "0.000000")
        raw.send(method="LIST_SUBSCRIPTIONS", id=8)
        listed = raw.next(lambda d: d.get("id") == 8)["result"]
        assert sorted(listed) == ["ethusdt@bookTicker", "ethusdt@depth5"]
        raw.send(method="SUBSCRIBE", params=["btcusdt@trade"], id=9)
        refused = raw.next(lambda d: d.get("id") == 9)
        assert refused["error"]["code"] == 2 and "BTCUSDT" in refused["error"]["msg"]
        raw.send(method="SUBSCRIBE", params=["ethusdt@kline_7m"], id=10)
        assert raw.next(lambda d: d.get("id") == 10)["error"]["code"] == 2

        # A user data stream on a listen key: the key's user's own order events.
        headers = {"X-MBX-APIKEY": _key(ex, taker)["id"]}
        status, doc, _ = ex.http.raw("POST", "/api/v3/userDataStream", b"", headers)
        assert status == 200, doc
        listen_key = doc["listenKey"]
        user = Feed(f"{base}/ws/{listen_key}")
        # a listen-key stream has no answer: it is live once the service holds the topic
        wait_for(lambda: ws.stats()["topics"] >= 3, what="the user data stream topic")

        # A trade: depthUpdates continue each other; the trade; the book ticker moves.
        ex.order(taker, side="buy", price="2000", amount="1.5", client_order_id="lk-1")
        trade = combined.next(lambda d: d["stream"] == "ethusdt@trade")["data"]
        assert (trade["e"], trade["p"], trade["q"], trade["m"]) == (
            "trade", "2000.000000", "1.50000000", False,
        )  # fmt: skip
        want = rest_depth(ex)
        u = None
        while u != want["lastUpdateId"]:
            update = combined.next(lambda d: d["stream"] == "ethusdt@depth@100ms")["data"]
            assert update["e"] == "depthUpdate" and update["s"] == "ETHUSDT"
            if u is not None:
                assert update["U"] == u + 1, (u, update)  # no gap, no overlap
            u = update["u"]
        top = raw.next(lambda d: "A" in d and d["A"] == "3.50000000")
        assert top["u"] == want["lastUpdateId"]

        reports: list[dict[str, Any]] = []
        while not reports or reports[-1]["X"] != "FILLED":
            event = user.next(lambda d: d.get("e") == "executionReport")
            reports.append(event)
        assert [(r["x"], r["X"]) for r in reports] == [("NEW", "NEW"), ("TRADE", "FILLED")]
        assert reports[-1]["c"] == "lk-1" and reports[-1]["z"] == "1.50000000"
        assert reports[-1]["Z"] == "3000.000000" and reports[-1]["N"] == "ETH"
        position = user.next(lambda d: d.get("e") == "outboundAccountPosition")
        balances = {b["a"]: b for b in position["B"]}
        native = ex.http.get("/v1/balances", taker.token)
        for asset, b in balances.items():
            assert Decimal(b["f"]) == Decimal(native[asset]["available"])

        # Closing the key ends the stream.
        status, _, _ = ex.http.raw(
            "DELETE", f"/api/v3/userDataStream?listenKey={listen_key}", b"", headers
        )
        assert status == 200
        expired = user.next(lambda d: d.get("e") == "listenKeyExpired", timeout=30)
        assert expired["listenKey"] == listen_key
        user.closed()
        with pytest.raises(InvalidStatus) as refused_key:
            Feed(f"{base}/ws/{listen_key}")
        assert refused_key.value.response.status_code == 400

        # The WebSocket API: a bad signature is refused as Binance refuses it.
        api = Feed(f"{base}/ws-api/v3")
        k = _key(ex, taker)
        params = {"apiKey": k["id"], "timestamp": int(time.time() * 1000)}
        payload = "&".join(f"{n}={v}" for n, v in sorted(params.items()))
        bad = hmac.new(b"not the secret", payload.encode(), hashlib.sha256).hexdigest()
        api.ws.send(orjson.dumps({"id": "s1", "method": "userDataStream.subscribe.signature",
                                  "params": {**params, "signature": bad}}).decode())  # fmt: skip
        answer = api.next(lambda d: d.get("id") == "s1")
        assert (answer["status"], answer["error"]["code"]) == (400, -1022)
        # Signed with the key's secret: subscribed; deleting the key ends the stream.
        params = {"apiKey": k["id"], "timestamp": int(time.time() * 1000), "recvWindow": 5000}
        payload = "&".join(f"{n}={v}" for n, v in sorted(params.items()))
        good = hmac.new(k["secret"].encode(), payload.encode(), hashlib.sha256).hexdigest()
        api.ws.send(orjson.dumps({"id": "s2", "method": "userDataStream.subscribe.signature",
                                  "params": {**params, "signature": good}}).decode())  # fmt: skip
        answer = api.next(lambda d: d.get("id") == "s2")
        assert answer == {"id": "s2", "status": 200, "result": {"subscriptionId": 0}}
        ex.http.ok("DELETE", f"/v1/api-keys/{k['id']}", None, taker.token, 204)
        ended = api.next(lambda d: d.get("event", {}).get("e") == "eventStreamTerminated")
        assert ended["subscriptionId"] == 0
        for feed in (combined, raw, api):
            feed.close()


_KEYS: dict[str, dict[str, Any]] = {}


def _key(ex: Exchange, user: User) -> dict[str, Any]:
    if user.user_id not in _KEYS:
        _KEYS[user.user_id] = ex.http.ok(
            "POST", "/v1/api-keys", {"label": "bot", "scopes": ["read", "trade"]}, user.token, 201
        )
    return _KEYS[user.user_id]
