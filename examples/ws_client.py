"""A tiny client of the live feed (docs/ws.md): follows the ETH-USDT book and its trades,
and, given an access token, the user's own orders and balances.

    python examples/ws_client.py                        # ws://127.0.0.1:8081/v1/ws
    TOKEN=$ALICE python examples/ws_client.py ETH-USDT  # also orders and balances

Needs only ``websockets`` (``pip install websockets``). Reconnects when the service closes
the connection (a restart, a lost feed), and resubscribes to depth when it sees a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

URL = os.environ.get("WS", "ws://127.0.0.1:8081/v1/ws")


class Book:
    """The top of the book, kept from a snapshot and the updates that continue it."""

    def __init__(self) -> None:
        self.seq = -1
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def snapshot(self, data: dict[str, Any]) -> None:
        self.seq = data["seq"]
        self.bids = dict(data["bids"])
        self.asks = dict(data["asks"])

    def update(self, data: dict[str, Any]) -> bool:
        """Apply one update; False on a gap (then subscribe again for a new snapshot)."""
        if data["seq"] <= self.seq:
            return True  # already in the snapshot
        if data["prev_seq"] != self.seq:
            return False
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for price, amount in levels:
                if amount == "0":
                    side.pop(price, None)
                else:
                    side[price] = amount
        self.seq = data["seq"]
        return True

    def top(self) -> str:
        bid = max(self.bids, key=Decimal, default="-")
        ask = min(self.asks, key=Decimal, default="-")
        return f"bid {bid} ({self.bids.get(bid, 0)})  ask {ask} ({self.asks.get(ask, 0)})"


async def follow(market: str, token: str | None) -> None:
    book = Book()
    async with connect(URL) as ws:
        if token:
            await ws.send(json.dumps({"op": "auth", "token": token}))
        for channel in (f"depth:{market}", f"trades:{market}"):
            await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
        async for raw in ws:
            msg = json.loads(raw)
            kind, channel = msg["type"], msg.get("channel", "")
            if kind == "authenticated":
                for private in ("orders", "balances"):
                    await ws.send(json.dumps({"op": "subscribe", "channel": private}))
            elif kind == "error":
                print("error:", msg["code"], msg["message"])
            elif kind not in ("snapshot", "update"):
                continue  # subscribed, unsubscribed, pong
            elif channel.startswith("depth:"):
                if kind == "snapshot":
                    book.snapshot(msg["data"])
                elif not book.update(msg["data"]):
                    print("gap in depth: resubscribing")
                    await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
                    continue
                print(f"depth seq {book.seq}: {book.top()}")
            elif channel.startswith("trades:") and kind == "update":
                for t in msg["data"]:
                    print(f"trade {t['trade_id']}: {t['taker_side']} {t['amount']} @ {t['price']}")
            elif channel in ("orders", "balances"):
                for item in msg["data"]:
                    print(f"{channel}: {item}")


async def main() -> None:
    market = sys.argv[1] if len(sys.argv) > 1 else "ETH-USDT"
    while True:
        try:
            await follow(market, os.environ.get("TOKEN"))
        except (ConnectionClosed, OSError) as exc:
            print(f"disconnected ({exc}); reconnecting in 2 s")
            await asyncio.sleep(2)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
