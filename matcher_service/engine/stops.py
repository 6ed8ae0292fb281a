"""Pending stop orders and OCO lists, as the engine holds them (docs/engine.md, "Stop orders").

A stop order is out of the book until the market's last trade price reaches its stop price.
Each market keeps two sorted indexes of its pending stops: those that trigger when the price
rises to them (lowest stop price first) and those that trigger when it falls to them (highest
first, keyed by the negated price), ties by order id: the order they are released in.
"""

from __future__ import annotations

from sortedcontainers import SortedList

from matcher_service.engine.markets import Market
from shared.messages import OrderType, SelfTrade, Side, StopKind, TimeInForce


class Stop:
    """A pending stop order. ``hold`` is what it has frozen itself: the whole of what it may
    pay, or, as the stop order of an OCO list, only what it needs beyond the limit order's
    hold (the list holds its funds once)."""

    __slots__ = (
        "amount",
        "client_order_id",
        "hold",
        "id",
        "is_buy",
        "kind",
        "list_id",
        "market",
        "order_type",
        "price",
        "quote_amount",
        "rising",
        "stop_price",
        "stp",
        "time_in_force",
        "user",
    )

    def __init__(
        self,
        oid: int,
        user: str,
        market: Market,
        is_buy: bool,
        kind: StopKind,
        stop_price: int,
        order_type: OrderType,
        price: int | None,
        amount: int | None,
        quote_amount: int | None,
        time_in_force: TimeInForce,
        stp: SelfTrade,
        client_order_id: str | None,
        hold: int,
        list_id: int = 0,
    ) -> None:
        self.id = oid
        self.user = user
        self.market = market
        self.is_buy = is_buy
        self.kind = kind
        self.stop_price = stop_price
        self.order_type = order_type
        self.price = price
        self.amount = amount
        self.quote_amount = quote_amount
        self.time_in_force = time_in_force
        self.stp = stp
        self.client_order_id = client_order_id
        self.hold = hold
        self.list_id = list_id
        self.rising = rises(kind, is_buy)

    @property
    def key(self) -> tuple[int, int]:
        """Its place in its market's index: lowest stop first for rising, highest for
        falling, then order id."""
        return (self.stop_price if self.rising else -self.stop_price, self.id)

    def triggered_at(self, last: int) -> bool:
        return last >= self.stop_price if self.rising else last <= self.stop_price


def rises(kind: StopKind, is_buy: bool) -> bool:
    """Whether a stop triggers when the price rises to it: a stop-loss buy, a take-profit
    sell. A stop-loss sell and a take-profit buy trigger when it falls to it."""
    return (kind == "stop_loss") == is_buy


class Triggers:
    """One market's pending stops, in release order per direction."""

    __slots__ = ("falling", "rising")

    def __init__(self) -> None:
        self.rising: SortedList = SortedList()
        self.falling: SortedList = SortedList()

    def add(self, s: Stop) -> None:
        (self.rising if s.rising else self.falling).add(s.key)

    def discard(self, s: Stop) -> None:
        (self.rising if s.rising else self.falling).discard(s.key)

    def take(self, last: int) -> list[int]:
        """Remove and return the ids of the stops ``last`` triggers, in release order."""
        out: list[int] = []
        rising, falling = self.rising, self.falling
        while rising and rising[0][0] <= last:
            out.append(rising.pop(0)[1])
        while falling and falling[0][0] <= -last:
            out.append(falling.pop(0)[1])
        return out


class OcoList:
    __slots__ = ("limit_id", "list_id", "market_name", "side", "stop_id", "user")

    def __init__(
        self, list_id: int, user: str, market_name: str, side: Side, limit_id: int, stop_id: int
    ) -> None:
        self.list_id = list_id
        self.user = user
        self.market_name = market_name
        self.side: Side = side
        self.limit_id = limit_id
        self.stop_id = stop_id
