"""Snapshots of the whole engine state, restore, and the state hash.

The encoding is canonical (every collection sorted or in book order, zero balances left
out), so two engines in the same state give byte-identical snapshots and equal hashes.
"""

from __future__ import annotations

import hashlib

import msgspec

from matcher_service.engine.book import Book, Order
from matcher_service.engine.engine import Engine, Withdrawal
from matcher_service.engine.markets import Market
from matcher_service.engine.stops import OcoList, Stop
from shared.messages import MarketStatus, OrderType, SelfTrade, Side, StopKind, TimeInForce

FORMAT = 1


class OrderRec(msgspec.Struct, array_like=True, gc=False):
    id: int
    user: str
    is_buy: bool
    price: int
    amount: int
    remaining: int
    filled_quote: int
    fee: int
    client_order_id: str | None


class MarketRec(msgspec.Struct, array_like=True, gc=False):
    name: str
    base: str
    quote: str
    base_precision: int
    quote_precision: int
    tick: int
    step: int
    min_amount: int
    min_notional: int
    maker_fee: int
    taker_fee: int
    status: MarketStatus
    bids: list[OrderRec]
    asks: list[OrderRec]
    """Best price first, FIFO within a price: the queue order is part of the state."""


class StopRec(msgspec.Struct, array_like=True, gc=False):
    id: int
    user: str
    market: str
    is_buy: bool
    kind: StopKind
    stop_price: int
    order_type: OrderType
    price: int | None
    amount: int | None
    quote_amount: int | None
    time_in_force: TimeInForce
    stp: SelfTrade
    client_order_id: str | None
    hold: int
    list_id: int


class Pending(msgspec.Struct, array_like=True):
    """The state of stop orders, OCO lists and good-till-date orders."""

    next_list_id: int
    last_prices: list[tuple[str, int]]
    stops: list[StopRec]
    """By order id; their release order follows from their fields."""
    lists: list[tuple[int, str, str, int, int]]
    """(list id, user, market, limit order id, stop order id)."""
    expiries: list[tuple[int, int]]
    """(order id, expires_at) of the open good-till-date orders."""


class Snapshot(msgspec.Struct, array_like=True):
    format: int
    seq: int
    next_order_id: int
    next_trade_id: int
    assets: list[tuple[str, int]]
    markets: list[MarketRec]
    balances: list[tuple[str, str, int, int]]
    fees: list[tuple[str, int]]
    deposits: list[tuple[str, int]]
    withdrawals: list[tuple[str, int]]
    deposit_refs: list[str]
    withdrawal_ids: list[str]
    pending: list[tuple[str, str, str, int, int]]
    user_seqs: list[tuple[str, int, int, list[tuple[int, int]]]] = []
    """Per user: epoch, last applied n, skipped ranges. Left out when empty (``snapshot``):
    the encoding, and so the hash, of a state without it is what it was before it existed."""
    stop_state: Pending | None = None
    """Left out, as ``user_seqs``, in a state that never saw a trade or a list."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


def _orders(book: Book, is_buy: bool) -> list[OrderRec]:
    return [
        OrderRec(
            o.id,
            o.user,
            o.is_buy,
            o.price,
            o.amount,
            o.remaining,
            o.filled_quote,
            o.fee,
            o.client_order_id,
        )
        for level in book.levels(is_buy)
        for o in level.live()
    ]


def _nonzero(d: dict[str, int]) -> list[tuple[str, int]]:
    return sorted((k, v) for k, v in d.items() if v)


def take(engine: Engine) -> Snapshot:
    acc = engine.accounts
    markets = []
    for name in sorted(engine.markets):
        m = engine.markets[name]
        book = engine.books[name]
        markets.append(
            MarketRec(
                m.name, m.base, m.quote, m.base_precision, m.quote_precision, m.tick, m.step,
                m.min_amount, m.min_notional, m.maker_fee, m.taker_fee, m.status,
                _orders(book, True), _orders(book, False),
            )
        )  # fmt: skip
    balances = sorted(
        (user, asset, bal[0], bal[1])
        for user, assets in acc.users.items()
        for asset, bal in assets.items()
        if bal[0] or bal[1]
    )
    pending = sorted((wid, w.user, w.asset, w.amount, w.fee) for wid, w in engine.pending.items())
    user_seqs = [
        (user, epoch, last, [(lo, hi) for lo, hi in skipped])
        for user, (epoch, last, skipped) in sorted(engine.user_seqs.items())
    ]
    return Snapshot(
        FORMAT, engine.seq, engine.next_order_id, engine.next_trade_id,
        sorted(engine.assets.items()), markets, balances, _nonzero(acc.fees),
        _nonzero(acc.deposits), _nonzero(acc.withdrawals), sorted(engine.deposit_refs),
        sorted(engine.withdrawal_ids), pending, user_seqs, _pending(engine),
    )  # fmt: skip


def _pending(engine: Engine) -> Pending | None:
    last_prices = sorted((name, m.last_price) for name, m in engine.markets.items() if m.last_price)
    # Only the open orders' expiries: an order that ended otherwise leaves its entry behind.
    expiries = sorted(
        (oid, at)
        for oid, at in engine.expiries.items()
        if oid in engine.orders or oid in engine.stops
    )
    if not last_prices and engine.next_list_id == 1 and not engine.stops and not expiries:
        return None
    stops = [
        StopRec(
            s.id, s.user, s.market.name, s.is_buy, s.kind, s.stop_price, s.order_type, s.price,
            s.amount, s.quote_amount, s.time_in_force, s.stp, s.client_order_id, s.hold,
            s.list_id,
        )
        for _, s in sorted(engine.stops.items())
    ]  # fmt: skip
    lists = sorted(
        (lst.list_id, lst.user, lst.market_name, lst.limit_id, lst.stop_id)
        for lst in engine.lists.values()
    )
    return Pending(engine.next_list_id, last_prices, stops, lists, expiries)


def snapshot(engine: Engine) -> bytes:
    """The whole state as canonical MessagePack bytes."""
    snap = take(engine)
    if snap.stop_state is not None:
        return _encoder.encode(snap)
    if snap.user_seqs:
        return _encoder.encode(msgspec.structs.astuple(snap)[:-1])
    return _encoder.encode(msgspec.structs.astuple(snap)[:-2])


def state_hash(engine: Engine) -> str:
    return hashlib.sha256(snapshot(engine)).hexdigest()


def restore(data: bytes, max_open_orders: int | None = None) -> Engine:
    """The engine a snapshot holds; ``max_open_orders`` is a setting, not state (see
    ``Engine``)."""
    snap = _decoder.decode(data)
    if snap.format != FORMAT:
        raise ValueError(f"snapshot format {snap.format} is not {FORMAT}")
    engine = Engine(max_open_orders)
    engine.seq, engine.next_order_id, engine.next_trade_id = (
        snap.seq, snap.next_order_id, snap.next_trade_id,
    )  # fmt: skip
    engine.assets = dict(snap.assets)
    acc = engine.accounts
    for user, asset, avail, frozen in snap.balances:
        acc.get(user, asset)[:] = [avail, frozen]
    acc.fees, acc.deposits, acc.withdrawals = (
        dict(snap.fees), dict(snap.deposits), dict(snap.withdrawals),
    )  # fmt: skip
    engine.deposit_refs = set(snap.deposit_refs)
    engine.withdrawal_ids = set(snap.withdrawal_ids)
    engine.pending = {wid: Withdrawal(u, a, amt, fee) for wid, u, a, amt, fee in snap.pending}
    engine.user_seqs = {
        user: (epoch, last, tuple((lo, hi) for lo, hi in skipped))
        for user, epoch, last, skipped in snap.user_seqs
    }
    for r in snap.markets:
        m = Market(
            r.name, r.base, r.quote, 10**r.base_precision, r.base_precision, r.quote_precision,
            r.tick, r.step, r.min_amount, r.min_notional, r.maker_fee, r.taker_fee, r.status,
        )  # fmt: skip
        book = engine.books[m.name] = Book(m)
        engine.markets[m.name] = m
        for rec in (*r.bids, *r.asks):
            o = Order(
                rec.id, rec.user, m, rec.is_buy, rec.price, rec.amount, rec.remaining,
                rec.client_order_id, rec.filled_quote, rec.fee,
            )  # fmt: skip
            book.add(o)
            engine.orders[o.id] = o
            engine.user_orders.setdefault(o.user, {})[o.id] = o
            if o.client_order_id is not None:
                engine.client_ids[(o.user, o.client_order_id)] = o
    if snap.stop_state is not None:
        _restore_pending(engine, snap.stop_state)
    return engine


def _restore_pending(engine: Engine, p: Pending) -> None:
    engine.next_list_id = p.next_list_id
    for name, last in p.last_prices:
        engine.markets[name].last_price = last
    for r in p.stops:
        engine._list_stop(
            Stop(
                r.id, r.user, engine.markets[r.market], r.is_buy, r.kind, r.stop_price,
                r.order_type, r.price, r.amount, r.quote_amount, r.time_in_force, r.stp,
                r.client_order_id, r.hold, r.list_id,
            )
        )  # fmt: skip
    for list_id, user, market, limit_id, stop_id in p.lists:
        limit = engine.orders[limit_id]
        side: Side = "buy" if limit.is_buy else "sell"
        engine.lists[list_id] = OcoList(list_id, user, market, side, limit_id, stop_id)
        limit.list_id = list_id
    for oid, at in p.expiries:
        engine._add_expiry(oid, at)
