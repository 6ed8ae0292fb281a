"""Order books: price levels in a SortedDict, a FIFO queue of orders per level.

Cancelling an order in the middle of a queue marks it dead (``remaining = 0``) instead of
searching the deque; matching drops dead orders when they reach the head, and a queue is
compacted when dead entries outnumber live ones. This keeps cancel O(1) and the per-order
memory small.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from itertools import islice

import msgspec
from sortedcontainers import SortedDict

from matcher_service.engine.markets import Market


class Order(msgspec.Struct, gc=False):
    """A resting (or matching) order. ``remaining == 0`` means it left the book.

    A ``gc=False`` struct: it references no container that could form a cycle, and keeping
    a million resting orders out of the cyclic collector's sight keeps collections short.
    """

    id: int
    user: str
    market: Market
    is_buy: bool
    price: int
    amount: int
    remaining: int
    client_order_id: str | None
    filled_quote: int = 0
    fee: int = 0
    list_id: int = 0
    """The OCO list whose limit order this is (0: none)."""

    def hold(self) -> int:
        """What the order still has frozen: quote for a buy, base for a sell."""
        if self.is_buy:
            return self.price * self.remaining // self.market.base_scale
        return self.remaining

    @property
    def status(self) -> str:
        return "partially_filled" if self.remaining < self.amount else "open"


class Level:
    __slots__ = ("count", "orders", "price", "qty")

    def __init__(self, price: int) -> None:
        self.price = price
        self.qty = 0
        self.count = 0
        self.orders: deque[Order] = deque()

    def live(self) -> Iterator[Order]:
        return (o for o in self.orders if o.remaining)

    def compact(self) -> None:
        self.orders = deque(self.live())


class Side(SortedDict):  # type: ignore[misc]  # sortedcontainers has no type hints
    """One side of a book: price key -> ``Level``, best first, and ``best``, its first key
    (None while it is empty).

    ``best`` is kept by the three ways the engine changes a side (a level added, deleted,
    popped), so the order path reads the best price with one attribute load: the public
    ``peekitem(0)`` makes two Python-level calls and cost 9 % more instructions per placed
    order (docs/benchmarks.md, "Engine, round 2"). Other ``SortedDict`` mutators (``pop``,
    ``setdefault``, ``update``, ``clear``) would not keep it: the engine does not use them.
    """

    def __init__(self) -> None:
        self.best: int | None = None
        super().__init__()

    def __setitem__(self, key: int, level: Level) -> None:
        SortedDict.__setitem__(self, key, level)
        best = self.best
        if best is None or key < best:
            self.best = key

    def __delitem__(self, key: int) -> None:
        SortedDict.__delitem__(self, key)
        if key == self.best:
            self.best = self.peekitem(0)[0] if self else None

    def popitem(self, index: int = -1) -> tuple[int, Level]:
        item: tuple[int, Level] = SortedDict.popitem(self, index)
        if item[0] == self.best:
            self.best = self.peekitem(0)[0] if self else None
        return item


class Book:
    """Both sides of one market. Bids are keyed by negated price so that, on both sides,
    the first key is the best price."""

    __slots__ = ("asks", "bids", "market")

    def __init__(self, market: Market) -> None:
        self.market = market
        self.bids = Side()
        self.asks = Side()

    def add(self, order: Order) -> None:
        if order.is_buy:
            side, key = self.bids, -order.price
        else:
            side, key = self.asks, order.price
        level = side.get(key)
        if level is None:
            level = side[key] = Level(order.price)
        level.orders.append(order)
        level.qty += order.remaining
        level.count += 1

    def best_bid(self) -> int | None:
        best = self.bids.best
        return None if best is None else -best

    def best_ask(self) -> int | None:
        best: int | None = self.asks.best
        return best

    def levels(self, is_buy: bool) -> Iterator[Level]:
        """Levels of one side, best price first."""
        return iter((self.bids if is_buy else self.asks).values())

    def depth(self, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top ``limit`` levels of each side as (price, total amount)."""
        return _top(self.bids, limit), _top(self.asks, limit)


def _top(side: Side, limit: int) -> list[tuple[int, int]]:
    """The first ``limit`` levels of ``side`` as (price, total amount), walking its keys once.

    Runs for every market a batch touches (the market data build). Slicing ``values()``
    instead goes through two Python-level views and a positional slice of the key list: 43 %
    more time for the 50 levels the matcher publishes (docs/benchmarks.md, "Engine, round 3").
    """
    return [(lv.price, lv.qty) for lv in map(side.__getitem__, islice(side, limit))]
