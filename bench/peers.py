"""Adapters that drive peer order-book libraries over one op stream (see ``bench.streams``).

Every adapter has the same shape, ``run_<peer>(setup_ops, ops) -> PeerResult``:

* ``setup_ops`` are applied first, untimed; fills and no-op cancels during setup are not counted;
* ``ops`` are timed with :func:`now` (after a ``gc.collect()``), through the same
  dispatch loop (:func:`_apply`) for every peer, so the loop overhead is identical;
* a fill is one maker/taker match (one trade); ``filled_qty`` sums the traded quantity;
* a cancel of an order that does not rest (filled, already cancelled, unknown) is a no-op,
  counted in ``cancel_noops``, never an error.

Each peer is imported inside its function: a missing peer raises ``ImportError`` so that the
caller can report "not installed". :func:`available_peers` lists those that import.

:func:`run_floor` is a bare price-time book in pure Python (a ``SortedDict`` of price -> FIFO
dict of order id -> qty, nothing else). It is the CPython floor and the correctness reference:
on the same stream every correct price-time engine gives the same ``fills``, ``filled_qty``
and ``cancel_noops`` as ``run_floor``.
"""

from __future__ import annotations

import gc
import importlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

PlaceFn = Callable[[int, bool, int, int], object]
CancelFn = Callable[[int], object]
Runner = Callable[[Sequence[tuple[Any, ...]], Sequence[tuple[Any, ...]]], "PeerResult"]

SYMBOL = "X"

_clock: Callable[[], float] = time.perf_counter


def now() -> float:
    """The clock every runner times its ops with: the wall clock unless :func:`use_cpu_time`."""
    return _clock()


def use_cpu_time() -> None:
    """Time ops by this process's CPU time: on a machine shared with other work the wall
    clock measures the load as much as the code (docs/benchmarks.md, "Engine, round 2")."""
    global _clock
    _clock = time.process_time


@dataclass(frozen=True)
class PeerResult:
    """What one run of one peer over one measured stream produced."""

    name: str
    ops: int
    seconds: float
    fills: int
    filled_qty: int
    cancel_noops: int = 0
    """Cancels of orders that did not rest (an extra cross-check; not required by callers)."""

    @property
    def ops_per_sec(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("inf")


class _Tally:
    """Counters the adapters' callbacks bump while ops run."""

    __slots__ = ("cancel_noops", "filled_qty", "fills")

    def __init__(self) -> None:
        self.fills = 0
        self.filled_qty = 0
        self.cancel_noops = 0


def _apply(ops: Sequence[tuple[Any, ...]], place: PlaceFn, cancel: CancelFn) -> None:
    """The one dispatch loop shared by every adapter."""
    for op in ops:
        if op[0] == "place":
            place(op[1], op[2], op[3], op[4])
        else:
            cancel(op[1])


def _drive(
    name: str,
    setup_ops: Sequence[tuple[Any, ...]],
    ops: Sequence[tuple[Any, ...]],
    place: PlaceFn,
    cancel: CancelFn,
    tally: _Tally,
) -> PeerResult:
    """Apply setup untimed, reset the counters, then time ``ops``."""
    _apply(setup_ops, place, cancel)
    tally.fills = tally.filled_qty = tally.cancel_noops = 0
    gc.collect()
    start = now()
    _apply(ops, place, cancel)
    seconds = now() - start
    return PeerResult(name, len(ops), seconds, tally.fills, tally.filled_qty, tally.cancel_noops)


# ---------------------------------------------------------------------------
# floor: bare pure-Python price-time book
# ---------------------------------------------------------------------------


def run_floor(setup_ops: Sequence[tuple[Any, ...]], ops: Sequence[tuple[Any, ...]]) -> PeerResult:
    """Bare reference book: price-time priority, maker's price, nothing else.

    Each side is a ``SortedDict`` of price -> level; a level is a dict of order id -> open qty
    whose insertion order is the time priority. ``where`` maps a resting id to its side, price
    and level, so a cancel is two dict deletes (plus a ``SortedDict`` delete when the level
    empties). Empty levels are always removed, so ``peekitem`` sees the true best price.
    """
    from sortedcontainers import SortedDict  # type: ignore[import-untyped, unused-ignore]

    tally = _Tally()
    bids: Any = SortedDict()  # best = highest = peekitem(-1)
    asks: Any = SortedDict()  # best = lowest = peekitem(0)
    where: dict[int, tuple[Any, int, dict[int, int]]] = {}

    def place(order_id: int, is_buy: bool, price: int, qty: int) -> None:
        if is_buy:
            opposite, best_index, own = asks, 0, bids
        else:
            opposite, best_index, own = bids, -1, asks
        while qty and opposite:
            best, level = opposite.peekitem(best_index)
            if (best > price) if is_buy else (best < price):
                break
            while qty and level:
                maker_id = next(iter(level))
                maker_qty = level[maker_id]
                tally.fills += 1
                if maker_qty <= qty:
                    qty -= maker_qty
                    tally.filled_qty += maker_qty
                    del level[maker_id]
                    del where[maker_id]
                else:
                    level[maker_id] = maker_qty - qty
                    tally.filled_qty += qty
                    qty = 0
            if not level:
                del opposite[best]
        if qty:
            level = own.get(price)
            if level is None:
                level = own[price] = {}
            level[order_id] = qty
            where[order_id] = (own, price, level)

    def cancel(order_id: int) -> None:
        entry = where.pop(order_id, None)
        if entry is None:
            tally.cancel_noops += 1
            return
        side, price, level = entry
        del level[order_id]
        if not level:
            del side[price]

    return _drive("floor", setup_ops, ops, place, cancel, tally)


# ---------------------------------------------------------------------------
# pyorderbook (pure Python, Decimal prices, uuid4 order ids)
# ---------------------------------------------------------------------------


def _import_pyorderbook() -> Any:
    """Import pyorderbook without keeping its import-time ``logging.basicConfig(level=INFO)``.

    pyorderbook.book calls ``logging.basicConfig`` when imported, which installs a stderr
    handler on the root logger and sets it to INFO if the root had no handler. Undo that, and
    pin its own logger at INFO so its per-order ``logger.debug`` calls stay disabled.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    module = importlib.import_module("pyorderbook")
    if root.handlers != handlers or root.level != level:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    logging.getLogger("pyorderbook.book").setLevel(logging.INFO)
    return module


def run_pyorderbook(
    setup_ops: Sequence[tuple[Any, ...]], ops: Sequence[tuple[Any, ...]]
) -> PeerResult:
    """pyorderbook 0.4.9: ``Book().match(bid/ask(symbol, price, qty))``.

    Prices are passed as int ticks (it stores ``Decimal(str(price))``, exact for ints); the
    trade price it reports is the maker's. Its orders carry uuid4 ids, so we keep our id ->
    ``Order``; ``Book.cancel`` raises ``KeyError`` (and logs an error) for an order that does not
    rest, so a cancel first checks ``order.id in book.order_map``.
    """
    pyorderbook = _import_pyorderbook()
    book = pyorderbook.Book()
    bid, ask = pyorderbook.bid, pyorderbook.ask
    order_map: dict[Any, Any] = book.order_map
    orders: dict[int, Any] = {}
    tally = _Tally()

    def place(order_id: int, is_buy: bool, price: int, qty: int) -> None:
        order = bid(SYMBOL, price, qty) if is_buy else ask(SYMBOL, price, qty)
        trades = book.match(order).trades
        if trades:
            tally.fills += len(trades)
            tally.filled_qty += sum(trade.fill_quantity for trade in trades)
        if order.quantity:
            orders[order_id] = order

    def cancel(order_id: int) -> None:
        order = orders.pop(order_id, None)
        if order is None or order.id not in order_map:
            tally.cancel_noops += 1
            return
        book.cancel(order)

    return _drive("pyorderbook", setup_ops, ops, place, cancel, tally)


# ---------------------------------------------------------------------------
# liquibook (C++ via SWIG directors)
# ---------------------------------------------------------------------------


def run_liquibook(
    setup_ops: Sequence[tuple[Any, ...]], ops: Sequence[tuple[Any, ...]]
) -> PeerResult:
    """liquibook 2.0.1: ``DepthOrderBook`` + a Python ``OrderListener`` (SWIG director).

    Orders are ``SimpleOrder(is_buy, price, qty)``; the book holds raw pointers to them, so we
    keep every ``SimpleOrder`` alive in ``orders`` (dropping it would leave a dangling pointer)
    until it is cancelled. A cancel of a filled order is passed to the book, which answers with
    ``on_cancel_reject`` ("not found"): that is the counted no-op. ``on_fill`` is called once
    per trade with the maker's price; as liquibook's own examples do, it calls ``fill()`` on
    both ``SimpleOrder`` objects to keep their state. ``book.cancel`` scans the price level
    linearly for the order pointer.
    """
    import liquibook  # type: ignore[import-untyped, unused-ignore]

    tally = _Tally()

    class Listener(liquibook.OrderListener):  # type: ignore[misc]
        def on_accept(self, order: Any) -> None:
            pass

        def on_reject(self, order: Any, reason: str) -> None:
            raise RuntimeError(f"liquibook rejected an order: {reason}")

        def on_fill(self, order: Any, matched_order: Any, fill_qty: int, fill_price: int) -> None:
            tally.fills += 1
            tally.filled_qty += fill_qty
            cost = fill_qty * fill_price
            order.fill(fill_qty, cost, 0)
            matched_order.fill(fill_qty, cost, 0)

        def on_cancel(self, order: Any) -> None:
            pass

        def on_cancel_reject(self, order: Any, reason: str) -> None:
            tally.cancel_noops += 1

        def on_replace(self, order: Any, size_delta: int, new_price: int) -> None:
            pass

        def on_replace_reject(self, order: Any, reason: str) -> None:
            pass

    book = liquibook.DepthOrderBook()
    book.set_symbol(SYMBOL)
    listener = Listener()
    book.set_order_listener(listener)
    simple_order = liquibook.SimpleOrder
    add, book_cancel = book.add, book.cancel
    orders: dict[int, Any] = {}

    def place(order_id: int, is_buy: bool, price: int, qty: int) -> None:
        order = simple_order(is_buy, price, qty)
        orders[order_id] = order
        add(order)

    def cancel(order_id: int) -> None:
        order = orders.pop(order_id, None)
        if order is None:
            tally.cancel_noops += 1
            return
        book_cancel(order)

    return _drive("liquibook", setup_ops, ops, place, cancel, tally)


# ---------------------------------------------------------------------------
# orderly-chaos (C++ via a C ABI, loaded with ctypes)
# ---------------------------------------------------------------------------


def run_orderly_chaos(
    setup_ops: Sequence[tuple[Any, ...]], ops: Sequence[tuple[Any, ...]]
) -> PeerResult:
    """orderly-chaos 0.2.0: ``LimitOrderBook(on_trade=cb)``, caller-chosen int order ids.

    ``book.limit(side, order_id, quantity, price)`` (note: quantity before price) with int
    ticks; ``on_trade`` gets one ``Trade`` per maker match at the maker's price;
    ``book.cancel`` raises ``UnknownOrderIdError`` (a ``KeyError``) for an order that does not
    rest, which is the counted no-op.
    """
    import orderly_chaos

    tally = _Tally()

    def on_trade(trade: Any) -> None:
        tally.fills += 1
        tally.filled_qty += trade.quantity

    book = orderly_chaos.LimitOrderBook(on_trade=on_trade)
    buy, sell = orderly_chaos.Side.BUY, orderly_chaos.Side.SELL
    unknown = orderly_chaos.UnknownOrderIdError
    limit, book_cancel = book.limit, book.cancel

    def place(order_id: int, is_buy: bool, price: int, qty: int) -> None:
        limit(buy if is_buy else sell, order_id, qty, price)

    def cancel(order_id: int) -> None:
        try:
            book_cancel(order_id)
        except unknown:
            tally.cancel_noops += 1

    try:
        return _drive("orderly-chaos", setup_ops, ops, place, cancel, tally)
    finally:
        book.close()


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------

PEERS: dict[str, tuple[str, Runner]] = {
    "floor": ("sortedcontainers", run_floor),
    "pyorderbook": ("pyorderbook", run_pyorderbook),
    "liquibook": ("liquibook", run_liquibook),
    "orderly-chaos": ("orderly_chaos", run_orderly_chaos),
}
"""Peer name -> (module it needs, adapter)."""


def available_peers() -> dict[str, Runner]:
    """The peers whose module imports here (``floor`` first), name -> adapter."""
    found: dict[str, Runner] = {}
    for name, (module, runner) in PEERS.items():
        try:
            if module == "pyorderbook":
                _import_pyorderbook()
            else:
                importlib.import_module(module)
        except (ImportError, OSError):  # OSError: a native library that fails to load
            continue
        found[name] = runner
    return found
