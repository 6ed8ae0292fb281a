"""An unchanged ccxt.pro bot following the market and its own orders here, over the ws
service's Binance streams (docs/binance-api.md, "WebSocket streams").

    BASE=http://127.0.0.1:8080 WS=ws://127.0.0.1:8081 KEY=ak_... SECRET=... \
        python examples/ccxt_pro_watch.py [ETH/USDT]

Needs only ccxt (``pip install ccxt==4.5.90``) and an API key with the ``read`` and ``trade``
scopes. It watches the book and the ticker, subscribes to its account's user data stream, places
a post-only bid well under the market over REST, sees it open on the stream, cancels it and sees
it cancelled: nothing is traded.
"""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import ROUND_CEILING, Decimal
from typing import Any

import ccxt.pro


def exchange(base: str, ws: str, key: str, secret: str) -> Any:
    """ccxt.pro's binance pointed at ``base`` (REST) and ``ws`` (the ws service)."""
    return ccxt.pro.binance(
        {
            "apiKey": key,
            "secret": secret,
            "urls": {
                "api": {
                    "public": base + "/api/v3",
                    "private": base + "/api/v3",
                    "v1": base + "/api/v1",
                    "sapi": base + "/sapi/v1",
                    # market streams, and the account's signed user data stream
                    "ws": {"spot": ws + "/ws", "ws-api": {"spot": ws + "/ws-api/v3"}},
                }
            },
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
            "fees": {"trading": {"maker": 0.001, "taker": 0.002}},
        }
    )


async def order_status(ex: Any, symbol: str, order_id: str, status: str) -> None:
    """Wait until the stream has shown ``order_id`` with ``status``."""
    while not any(o["id"] == order_id and o["status"] == status for o in ex.orders or []):
        await asyncio.wait_for(ex.watch_orders(symbol), 30)


async def run(symbol: str) -> int:
    ex = exchange(
        os.environ.get("BASE", "http://127.0.0.1:8080"),
        os.environ.get("WS", "ws://127.0.0.1:8081"),
        os.environ["KEY"],
        os.environ["SECRET"],
    )
    try:
        market = (await ex.load_markets())[symbol]
        book = await ex.watch_order_book(symbol)
        print(f"{symbol}: best bid {book['bids'][:1]}, best ask {book['asks'][:1]}")
        ticker = await ex.watch_ticker(symbol)
        print(f"last {ticker['last']}, 24 h volume {ticker['baseVolume']} {market['base']}")
        seen = [p for p in (ticker["last"], *(lv[0] for lv in book["bids"][:1])) if p]
        if not seen:
            print("no price yet: nothing to do")
            return 0
        # Watching the orders subscribes the account's user data stream; ccxt keeps its
        # events once that watch has set up its caches (its balance among them).
        watching = asyncio.ensure_future(ex.watch_orders(symbol))
        for _ in range(3000):
            if "spot" in ex.balance or watching.done():
                break
            await asyncio.sleep(0.01)
        if watching.done():
            watching.result()  # a refused subscription (key, signature, clock) says why here
        price = Decimal(ex.price_to_precision(symbol, min(seen) / 2))
        step = Decimal(str(market["precision"]["amount"]))
        least = max(
            Decimal(str(market["limits"]["amount"]["min"])),
            Decimal(str(market["limits"]["cost"]["min"] or 0)) / price,
        )
        amount = (least / step).to_integral_value(rounding=ROUND_CEILING) * step
        order = await ex.create_order(
            symbol, "limit", "buy", float(amount), float(price), {"postOnly": True}
        )
        await order_status(ex, symbol, order["id"], "open")
        print(f"stream: {order['id']} open, {order['amount']} at {order['price']}")
        await ex.cancel_order(order["id"], symbol)
        await order_status(ex, symbol, order["id"], "canceled")
        print(f"stream: {order['id']} canceled")
        return 0
    finally:
        await ex.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(run(*sys.argv[1:])))
