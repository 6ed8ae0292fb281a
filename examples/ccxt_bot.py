"""An unchanged ccxt bot trading here through the Binance dialect (docs/binance-api.md).

    BASE=http://127.0.0.1:8080 KEY=ak_... SECRET=... python examples/ccxt_bot.py [ETH/USDT]

Needs only ccxt (``pip install ccxt==4.5.90``) and an API key of the exchange with the
``read`` and ``trade`` scopes (``POST /v1/api-keys``). It loads the markets, shows the book,
the ticker and its balances, places a post-only bid well under the market, finds it among its
open orders, and cancels it: nothing is traded.
"""

from __future__ import annotations

import os
import sys
from decimal import ROUND_CEILING, Decimal
from typing import Any

import ccxt


def exchange(base: str, key: str, secret: str) -> Any:
    """ccxt's binance pointed at ``base``: the only configuration a bot needs."""
    return ccxt.binance(
        {
            "apiKey": key,
            "secret": secret,
            "urls": {
                "api": {
                    "public": base + "/api/v3",
                    "private": base + "/api/v3",
                    # Binance-only sections (margin, savings, futures) go nowhere real.
                    "v1": base + "/api/v1",
                    "sapi": base + "/sapi/v1",
                }
            },
            "options": {
                "fetchMarkets": {"types": ["spot"]},  # no futures markets
                "fetchCurrencies": False,  # no sapi capital/config
                "fetchMargins": False,  # no sapi margin pairs
            },
            "fees": {"trading": {"maker": 0.001, "taker": 0.002}},  # this exchange's fees
        }
    )


def main(symbol: str = "ETH/USDT") -> int:
    ex = exchange(
        os.environ.get("BASE", "http://127.0.0.1:8080"), os.environ["KEY"], os.environ["SECRET"]
    )
    market = ex.load_markets()[symbol]
    book = ex.fetch_order_book(symbol, 5)
    ticker = ex.fetch_ticker(symbol)
    print(f"{symbol}: best bid {book['bids'][:1]}, best ask {book['asks'][:1]}")
    print(f"last {ticker['last']}, 24 h volume {ticker['baseVolume']} {market['base']}")
    balance = ex.fetch_balance()
    for asset in (market["base"], market["quote"]):
        print(f"{asset}: free {balance[asset]['free']}, in orders {balance[asset]['used']}")

    # A bid at half the best price seen, big enough for the market's minimum value.
    seen = [p for p in (ticker["last"], ticker["bid"], ticker["ask"]) if p]
    if not seen:
        print("no price yet: nothing to do")
        return 0
    price = Decimal(ex.price_to_precision(symbol, min(seen) / 2))
    step = Decimal(str(market["precision"]["amount"]))
    least = max(
        Decimal(str(market["limits"]["amount"]["min"])),
        Decimal(str(market["limits"]["cost"]["min"] or 0)) / price,
    )
    amount = (least / step).to_integral_value(rounding=ROUND_CEILING) * step
    order = ex.create_order(symbol, "limit", "buy", float(amount), float(price), {"postOnly": True})
    print(f"placed {order['id']}: {order['side']} {order['amount']} at {order['price']}")
    open_ids = [o["id"] for o in ex.fetch_open_orders(symbol)]
    assert order["id"] in open_ids, open_ids
    cancelled = ex.cancel_order(order["id"], symbol)
    print(f"cancelled {cancelled['id']}: {cancelled['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
