"""The fast engine against the reference model, driven by random command sequences.

After every command both must agree on the result (seq, ok, reason, every event -- trades
field by field -- and the taker's end), on every balance, fee, total, the book and each open
order; the fast engine must pass its audit, survive a snapshot round trip, and reproduce
both its results and its state hash when the commands since the last snapshot (taken every
10 commands) are replayed on the restored snapshot. Independently of both engines, no order
may be cancelled by self-trade prevention against a taker that could not have traded with it
(:func:`check_self_trade_prevention`).

Profiles (``HYPOTHESIS_PROFILE``): ``default`` (about 50k commands, 60-90 s on 2 cores),
``quick`` (a few seconds), ``long`` (about 400k commands, 15-20 min, no timeout).
``pytest -s`` prints what a run covered.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from matcher_service.engine import Engine
from matcher_service.engine.audit import audit
from matcher_service.engine.snapshot import restore, snapshot, state_hash
from shared.messages import (
    AmendOrder,
    AnyCommand,
    Applied,
    BalanceChanged,
    CancelAll,
    CancelOrder,
    Deposit,
    ExpireOrders,
    OrderAccepted,
    OrderTriggered,
    OrderUpdated,
    PlaceOco,
    PlaceOrder,
    Reason,
    RefundWithdrawal,
    RequestWithdrawal,
    SelfTrade,
    SettleWithdrawal,
    Side,
    TimeInForce,
    Trade,
    UpdateMarket,
)
from tests.engine.helpers import ETH, MARKET, STEP, TICK, next_id, price, setup_commands
from tests.engine.reference import ReferenceEngine

settings.register_profile(
    "default",
    max_examples=250,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "quick",
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=2000,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
pytestmark = pytest.mark.timeout(0 if PROFILE == "long" else 600)

# Compare every event, not only trades and the taker's end (docs/engine.md fixes their order);
# ENGINE_STRICT_EVENTS=0 compares only seq/ok/reason, trades and the taker's end.
STRICT_EVENTS = os.environ.get("ENGINE_STRICT_EVENTS", "1") == "1"

USERS = ["alice", "bob", "carol", "dave"]
ASSETS = ["ETH", "USDT"]
# Seven ticks around 2000 so that orders cross often.
PRICES = [price(2000) + k * TICK for k in range(-3, 4)]
FEES = ["0", "0.001", "0.002", "0.000001", "0.000123", "0.0025", "0.099999"]
CLIENT_IDS: list[str | None] = [None, None, None, None, None, "a", "b"]
SNAPSHOT_EVERY = 10
MAX_OPEN_ORDERS = 8
"""Small enough that the open-order limit refuses orders now and then."""
STOP_PRICES = [price(2000) + k * TICK for k in range(-5, 6)]
STATS: Counter[str] = Counter()
"""What the run covered (printed with ``pytest -s``): steps, trades, reasons, order ends."""

users = st.sampled_from(USERS)
sides: st.SearchStrategy[Side] = st.sampled_from(["buy", "sell"])
stps: st.SearchStrategy[SelfTrade] = st.sampled_from(
    ["cancel_taker", "cancel_maker", "cancel_both"]
)
prices = st.sampled_from(PRICES)
# Steps: at or above the 1 USDT minimum notional (5 steps at 2000); smaller ones are among
# the malformed orders (Hypothesis would otherwise pick them far too often).
amounts = st.one_of(st.integers(6, 120), st.integers(100, 400)).map(lambda n: n * STEP)
withdrawal_ids = st.sampled_from([f"w{i}" for i in range(6)])
deposit_refs = st.one_of(st.sampled_from([f"r{i}" for i in range(5)]), st.none())


@st.composite
def limit_orders(draw: st.DrawFn) -> PlaceOrder:
    tif = draw(st.sampled_from(["GTC", "GTC", "GTC", "IOC", "FOK"]))
    return PlaceOrder(
        id=next_id(),
        user=draw(users),
        market=MARKET,
        side=draw(sides),
        type="limit",
        price=draw(prices),
        amount=draw(amounts),
        time_in_force=tif,  # type: ignore[arg-type]
        post_only=tif == "GTC" and draw(st.sampled_from([False, False, False, True])),
        client_order_id=draw(st.sampled_from(CLIENT_IDS)),
        stp=draw(stps),
    )


@st.composite
def market_orders(draw: st.DrawFn) -> PlaceOrder:
    side = draw(sides)
    by_quote = side == "buy" and draw(st.booleans())
    quote = st.one_of(st.integers(10**6, 20 * 10**6), st.integers(10**6, 200 * 10**6))
    return PlaceOrder(
        id=next_id(),
        user=draw(users),
        market=MARKET,
        side=side,
        type="market",
        amount=None if by_quote else draw(st.integers(1, 80)) * STEP,
        quote_amount=draw(quote) if by_quote else None,
        time_in_force=draw(st.sampled_from(["GTC", "IOC"])),
        client_order_id=draw(st.sampled_from(CLIENT_IDS)),
        stp=draw(stps),
    )


@st.composite
def malformed_orders(draw: st.DrawFn) -> PlaceOrder:
    """One fault at a time (the order among faults of one check is not pinned down)."""
    price, amount = draw(prices), draw(amounts)
    kw: dict[str, Any] = {
        "id": next_id(),
        "user": draw(users),
        "market": MARKET,
        "side": draw(sides),
        "type": "limit",
        "price": price,
        "amount": amount,
    }
    market = {"type": "market", "price": None}
    faults: list[dict[str, Any]] = [
        {"market": "BTC-USDT"},
        {"user": "@fees"},
        {"user": ""},
        {"price": 0},
        {"price": -TICK},
        {"price": price + 1},
        {"amount": amount + 1},
        {"amount": 0},
        {"quote_amount": 10**6},
        {"post_only": True, "time_in_force": "IOC"},
        {"post_only": True, "time_in_force": "FOK"},
        {**market, "time_in_force": "FOK"},
        {**market, "post_only": True},
        {"type": "market"},  # with a price
        {"client_order_id": "x" * 65},
        {"client_order_id": ""},
        {**market, "side": "buy", "quote_amount": 10**6},  # both amount and quote
        {**market, "side": "sell", "quote_amount": 10**6, "amount": None},
        {**market, "side": "buy", "quote_amount": 0, "amount": None},
        {**market, "side": "buy", "quote_amount": 10**6 - 1, "amount": None},
        {**market, "side": "buy", "quote_amount": 10**12, "amount": None},
        {"amount": amount * 1000},  # likely insufficient funds
        {"amount": STEP},  # below min_notional
        {"amount": 5 * STEP},  # at or below min_notional by the price
    ]
    kw.update(draw(st.sampled_from(faults)))
    return PlaceOrder(**kw)


@st.composite
def deposits(draw: st.DrawFn) -> Deposit:
    amount = draw(
        st.one_of(
            st.integers(1, 10**8),
            st.integers(1, 3000 * 10**6),
            st.sampled_from([0, -5, 10**9]),
        )
    )
    return Deposit(
        id=next_id(),
        user=draw(users),
        asset=draw(st.sampled_from([*ASSETS, "DOGE"])),
        amount=amount,
        ref=draw(deposit_refs) or next_id("r"),
    )


@st.composite
def withdrawal_requests(draw: st.DrawFn) -> RequestWithdrawal:
    amount = draw(st.one_of(st.integers(1, 10**8), st.integers(1, 2000 * 10**6), st.just(0)))
    return RequestWithdrawal(
        id=next_id(),
        user=draw(users),
        asset=draw(st.sampled_from(ASSETS)),
        amount=amount,
        fee=draw(st.sampled_from([0, 0, 1, 1000, -1])),
        withdrawal_id=draw(withdrawal_ids),
    )


@st.composite
def withdrawal_ends(draw: st.DrawFn) -> SettleWithdrawal | RefundWithdrawal:
    withdrawal_id = draw(withdrawal_ids)
    if draw(st.booleans()):
        return SettleWithdrawal(id=next_id(), withdrawal_id=withdrawal_id)
    return RefundWithdrawal(id=next_id(), withdrawal_id=withdrawal_id)


@st.composite
def client_id_cancels(draw: st.DrawFn) -> CancelOrder:
    return CancelOrder(
        id=next_id(),
        user=draw(users),
        client_order_id=draw(st.sampled_from(["a", "b", "c"])),
        order_id=draw(st.sampled_from([None, None, None, 1])),  # both given: invalid
    )


@st.composite
def cancel_alls(draw: st.DrawFn) -> CancelAll:
    market = draw(st.sampled_from([None, MARKET, "BTC-USDT"]))
    return CancelAll(id=next_id(), user=draw(users), market=market)


@st.composite
def market_updates(draw: st.DrawFn) -> UpdateMarket:
    fee = st.sampled_from([None, *FEES])
    return UpdateMarket(
        id=next_id(),
        market=draw(st.sampled_from([MARKET, MARKET, MARKET, "BTC-USDT"])),
        maker_fee=draw(fee),
        taker_fee=draw(fee),
        status=draw(st.sampled_from([None, None, None, None, "open", "open", "halted"])),
    )


@st.composite
def stop_orders(draw: st.DrawFn) -> PlaceOrder:
    """Stop-loss and take-profit orders, limit or market, some good till a date."""
    side = draw(sides)
    order_type = draw(st.sampled_from(["limit", "limit", "market"]))
    quote = None
    amount: int | None = draw(amounts)
    if order_type == "market" and side == "buy":
        amount, quote = None, draw(st.integers(1, 300)) * 10**6
    tif = draw(st.sampled_from(["GTC", "GTC", "IOC"])) if order_type == "limit" else "GTC"
    return PlaceOrder(
        id=next_id(), user=draw(users), market=MARKET, side=side, type=order_type,  # type: ignore[arg-type]
        price=draw(prices) if order_type == "limit" else None, amount=amount,
        quote_amount=quote, time_in_force=tif,  # type: ignore[arg-type]
        client_order_id=draw(st.sampled_from(CLIENT_IDS)), stp=draw(stps),
        stop=draw(st.sampled_from(["stop_loss", "take_profit"])),
        stop_price=draw(st.sampled_from(STOP_PRICES)),
        expires_at=draw(st.sampled_from([None, None, None, 1, 3, 8])) if tif == "GTC" else None,
    )  # fmt: skip


@st.composite
def malformed_stops(draw: st.DrawFn) -> PlaceOrder:
    """A stop order with one fault."""
    kw: dict[str, Any] = {
        "id": next_id(), "user": draw(users), "market": MARKET, "side": draw(sides),
        "type": "limit", "price": draw(prices), "amount": draw(amounts), "stop": "stop_loss",
        "stop_price": draw(st.sampled_from(STOP_PRICES)),
    }  # fmt: skip
    faults: list[dict[str, Any]] = [
        {"stop": None},
        {"stop_price": None},
        {"stop_price": 0},
        {"stop_price": price(2000) + 1},
        {"time_in_force": "FOK"},
        {"post_only": True},
        {"type": "market", "price": None, "side": "buy"},  # a market buy by amount
        {"expires_at": 0},
        {"expires_at": 5, "time_in_force": "IOC"},
        {"stop": None, "stop_price": None, "type": "market", "price": None, "expires_at": 9},
    ]
    kw.update(draw(st.sampled_from(faults)))
    return PlaceOrder(**kw)


@st.composite
def oco_lists(draw: st.DrawFn) -> PlaceOco:
    side = draw(sides)
    limit_price = draw(prices)
    stop_price = draw(st.sampled_from(STOP_PRICES))
    stop_limit = draw(st.sampled_from([None, *PRICES]))
    if side == "buy" and draw(st.sampled_from([True, True, True, False])):
        stop_limit = stop_limit or PRICES[-1]
    return PlaceOco(
        id=next_id(), user=draw(users), market=MARKET, side=side, amount=draw(amounts),
        price=limit_price, stop_price=stop_price, stop_limit_price=stop_limit, stp=draw(stps),
    )  # fmt: skip


def limit_sell(user: str, at: int, amount: int) -> PlaceOrder:
    return PlaceOrder(
        id=next_id(), user=user, market=MARKET, side="sell", type="limit", price=at, amount=amount
    )


def limit_buy(user: str, at: int, amount: int, tif: TimeInForce) -> PlaceOrder:
    return PlaceOrder(
        id=next_id(), user=user, market=MARKET, side="buy", type="limit", price=at,
        amount=amount, time_in_force=tif,
    )  # fmt: skip


def market_buy(
    user: str,
    tif: TimeInForce,
    stp: SelfTrade,
    amount: int | None = None,
    quote_amount: int | None = None,
) -> PlaceOrder:
    return PlaceOrder(
        id=next_id(), user=user, market=MARKET, side="buy", type="market", amount=amount,
        quote_amount=quote_amount, time_in_force=tif, stp=stp,
    )  # fmt: skip


other_commands: st.SearchStrategy[AnyCommand] = st.one_of(
    deposits(),
    withdrawal_requests(),
    withdrawal_ends(),
    malformed_orders(),
    malformed_stops(),
    client_id_cancels(),
    cancel_alls(),
    market_updates(),
)


def strip(applied: Applied) -> tuple[int, str, bool, str | None]:
    return applied.seq, applied.command_id, applied.ok, applied.reason


def open_orders_view(engine: Any, ids: list[int]) -> list[tuple[Any, ...]]:
    out = []
    for order_id in ids:
        o = engine.order(order_id)
        assert o is not None, order_id
        out.append(
            (
                o.order_id,
                o.user,
                o.market,
                o.side,
                o.price,
                o.amount,
                o.remaining,
                o.filled_quote,
                o.fee,
                o.client_order_id,
                o.status,
            )
        )
    return out


Makers = dict[int, tuple[int, str]]
"""Resting orders of one side before a command: order id -> (price, user)."""


def resting_side(ref: ReferenceEngine, side: Side) -> Makers:
    return {o.order_id: (o.price or 0, o.user) for o in ref.side_orders(MARKET, side)}


def check_self_trade_prevention(
    cmd: PlaceOrder, applied: Applied, makers: Makers, quote_available: int, after: Makers
) -> None:
    """No order is cancelled by self-trade prevention against a taker that could not have
    traded with it (docs/engine.md, the tests before each fill): at that point the taker
    still had an amount to fill, the maker's price crossed its limit, and a budget could buy
    one step at that price. ``makers`` is the opposite side before the command, ``after``
    that side after it, ``quote_available`` the taker's available quote before it.

    Independent of both engines: it reads only the command, its events and the books."""
    if not applied.ok or any(isinstance(e, OrderTriggered) for e in applied.events):
        return  # (what triggered orders did is left to the comparison with the reference)
    accepted = applied.events[0]
    assert isinstance(accepted, OrderAccepted)
    taker_id, user, is_buy = accepted.order_id, cmd.user, cmd.side == "buy"
    remaining = cmd.amount  # None: a market buy by quote, only its budget ends it
    budget: int | None = None
    if cmd.type == "market" and is_buy:
        budget = quote_available if cmd.quote_amount is None else cmd.quote_amount

    def could_trade(maker_price: int) -> bool:
        if remaining is not None and remaining <= 0:
            return False
        limit = cmd.price
        if limit is not None and (maker_price > limit if is_buy else maker_price < limit):
            return False
        return budget is None or budget * ETH // maker_price >= STEP

    taker_end = None
    makers_cancelled = 0
    for e in applied.events:
        if isinstance(e, Trade):
            if remaining is not None:
                remaining -= e.amount
            if budget is not None:
                budget -= e.quote
        elif isinstance(e, OrderUpdated) and e.reason == Reason.SELF_TRADE:
            if e.order_id == taker_id:
                taker_end = e
                continue
            maker_price, maker_user = makers[e.order_id]
            assert maker_user == user, (cmd, e)
            assert could_trade(maker_price), (cmd, e, remaining, budget, applied.events)
            makers_cancelled += 1
            STATS["stp: maker cancelled"] += 1
    head = next(iter(after.values()), None)
    if taker_end is not None:
        STATS[f"stp: taker cancelled ({cmd.stp})"] += 1
        assert cmd.stp != "cancel_maker", (cmd, applied)
        if cmd.stp == "cancel_both":
            assert makers_cancelled, (cmd, applied)
        else:  # cancel_taker: the maker that stopped it stays first in line
            assert head is not None and head[1] == user and could_trade(head[0]), (cmd, applied)
    own_next = head is not None and head[1] == user
    spent = budget is not None and remaining != 0 and head is not None and not could_trade(head[0])
    if own_next and spent:
        # Coverage of issue #19: a budget spent before the user's own ask.
        how = "by quote" if cmd.quote_amount is not None else "by amount"
        bought = "" if any(isinstance(e, Trade) for e in applied.events) else ", none bought"
        STATS[f"market buy {how}: budget spent before own ask{bought}"] += 1


class EngineVsReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fast = Engine(MAX_OPEN_ORDERS)
        self.ref = ReferenceEngine(MAX_OPEN_ORDERS)
        self.clock = 0
        """The matcher's batch time stamped on every command (moves forward in ``expire``)."""
        self.snap = snapshot(self.fast)
        self.log: list[tuple[AnyCommand, Applied]] = []
        self.steps = 0

    # ------------------------------------------------------------ one command

    def apply(self, cmd: AnyCommand) -> None:
        """Apply to both engines and check everything (rules may apply several commands,
        so the checks run here, after each one, rather than as ``@invariant``s)."""
        cmd.ts = self.clock
        order = isinstance(cmd, PlaceOrder) and cmd.market == MARKET and MARKET in self.ref.markets
        if order:
            assert isinstance(cmd, PlaceOrder)
            opposite: Side = "sell" if cmd.side == "buy" else "buy"
            makers = resting_side(self.ref, opposite)
            quote_available = self.ref.balance(cmd.user, "USDT")[0]
        expected = self.ref.apply(cmd)
        got = self.fast.apply(cmd)
        self.compare_results(cmd, got, expected)
        if order:
            assert isinstance(cmd, PlaceOrder)
            after = resting_side(self.ref, opposite)
            check_self_trade_prevention(cmd, got, makers, quote_available, after)
        self.record(cmd, got)
        self.compare_state()
        assert audit(self.fast) == []
        assert state_hash(restore(snapshot(self.fast))) == state_hash(self.fast)
        self.replay_from_last_snapshot()

    def compare_results(self, cmd: AnyCommand, got: Applied, expected: Applied) -> None:
        assert strip(got) == strip(expected), (cmd, got, expected)
        got_trades = [e for e in got.events if isinstance(e, Trade)]
        want_trades = [e for e in expected.events if isinstance(e, Trade)]
        assert got_trades == want_trades, (cmd, got_trades, want_trades)
        if (
            isinstance(cmd, PlaceOrder)
            and expected.ok
            and not any(isinstance(e, OrderTriggered) for e in expected.events)
        ):
            # The taker's end is its last OrderUpdated; an order resting untraded has none,
            # its freeze is its last event.
            want_end = expected.events[-1]
            got_end = got.events[-1]
            assert got_end == want_end, (cmd, got.events, want_end)
            assert isinstance(want_end, OrderUpdated) or (
                isinstance(want_end, BalanceChanged) and want_end.reason == "order_freeze"
            ), want_end
        if STRICT_EVENTS:
            assert got.events == expected.events, (cmd, got.events, expected.events)

    def compare_state(self) -> None:
        assert self.fast.balances() == self.ref.balances()
        for asset in ASSETS:
            assert self.fast.fees(asset) == self.ref.fees(asset), asset
            assert self.fast.totals(asset) == self.ref.totals(asset), asset
        for user in USERS:
            for asset in ASSETS:
                assert self.fast.balance(user, asset) == self.ref.balance(user, asset)
        if MARKET in self.ref.markets:
            assert self.fast.book(MARKET) == self.ref.book(MARKET)
            assert self.fast.last_price(MARKET) == self.ref.last_price.get(MARKET, 0)
        assert self.fast.pending_stops() == self.ref.pending_stops()
        ids = sorted(o.order_id for o in self.ref.resting)
        assert open_orders_view(self.fast, ids) == open_orders_view(self.ref, ids)
        assert self.fast.order(self.ref.next_order_id) is None

    def replay_from_last_snapshot(self) -> None:
        replica = restore(self.snap, MAX_OPEN_ORDERS)
        for cmd, applied in self.log:
            again = replica.apply(cmd)
            assert msgspec.json.encode(again) == msgspec.json.encode(applied), cmd
        assert state_hash(replica) == state_hash(self.fast)

    def record(self, cmd: AnyCommand, got: Applied) -> None:
        self.log.append((cmd, got))
        self.steps += 1
        if self.steps % SNAPSHOT_EVERY == 0:
            self.snap = snapshot(self.fast)
            self.log = []
        STATS["commands"] += 1
        kind = type(cmd).__name__ + (f"/{cmd.type}" if isinstance(cmd, PlaceOrder) else "")
        if isinstance(cmd, PlaceOrder) and cmd.stop is not None:
            kind += f"/{cmd.stop}"
        STATS[f"{kind}: {got.reason or 'ok'}"] += 1
        for e in got.events:
            if isinstance(e, Trade):
                STATS["trades"] += 1
            elif isinstance(e, OrderUpdated) and e.status == "cancelled":
                STATS[f"order cancelled: {e.reason}"] += 1
            elif isinstance(e, OrderTriggered):
                STATS["stop triggered"] += 1

    # ------------------------------------------------------------ rules

    @initialize()
    def setup(self) -> None:
        for cmd in setup_commands():
            self.apply(cmd)
        for user in USERS:
            self.apply(Deposit(id=next_id(), user=user, asset="ETH", amount=10**8, ref=next_id()))
            self.apply(
                Deposit(id=next_id(), user=user, asset="USDT", amount=5_000 * 10**6, ref=next_id())
            )

    @rule(orders=st.lists(limit_orders(), min_size=1, max_size=10))
    def place_limit_orders(self, orders: list[PlaceOrder]) -> None:
        for cmd in orders:
            self.apply(cmd)

    @rule(cmd=market_orders())
    def place_market_order(self, cmd: PlaceOrder) -> None:
        self.apply(cmd)

    @rule(orders=st.lists(st.one_of(stop_orders(), oco_lists()), min_size=1, max_size=4))
    def place_stops(self, orders: list[AnyCommand]) -> None:
        for cmd in orders:
            self.apply(cmd)

    @rule(data=st.data(), gtd=st.sampled_from([1, 2, 5]))
    def place_good_till_date(self, data: st.DataObject, gtd: int) -> None:
        cmd = data.draw(limit_orders())
        if cmd.time_in_force == "GTC":
            cmd.expires_at = self.clock + gtd
        self.apply(cmd)

    @rule(ahead=st.sampled_from([0, 1, 1, 2, 4]))
    def expire(self, ahead: int) -> None:
        """The matcher's time moves on; a batch heads with ``expire_orders``."""
        self.clock += ahead
        self.apply(ExpireOrders(id=next_id()))

    @precondition(lambda self: bool(self.ref.resting))
    @rule(
        data=st.data(),
        kind=st.sampled_from(["own", "own", "own", "anyone's", "by client id"]),
        new_price=st.sampled_from([None, None, *PRICES]),
        change=st.sampled_from([None, -2, -1, 0, 1, 3, -1000]),
    )
    def amend(
        self, data: st.DataObject, kind: str, new_price: int | None, change: int | None
    ) -> None:
        """Mostly a resting order by its owner: a new price, a smaller or larger amount."""
        order = data.draw(st.sampled_from(self.ref.resting))
        assert order.amount is not None
        amount = None if change is None else max(order.amount + change * 10 * STEP, 0)
        user = order.user if kind != "anyone's" else data.draw(users)
        if kind == "by client id":
            cmd = AmendOrder(
                id=next_id(), user=user, client_order_id=data.draw(st.sampled_from(["a", "b"])),
                price=new_price, amount=amount,
            )  # fmt: skip
        else:
            cmd = AmendOrder(
                id=next_id(), user=user, order_id=order.order_id, price=new_price, amount=amount
            )
        self.apply(cmd)

    @precondition(lambda self: bool(self.ref.stops))
    @rule(data=st.data())
    def cancel_stop(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from(self.ref.stops))
        self.apply(CancelOrder(id=next_id(), user=order.user, order_id=order.order_id))

    @precondition(lambda self: bool(self.ref.resting))
    @rule(data=st.data(), kind=st.sampled_from(["own", "own", "own", "anyone's", "unknown"]))
    def cancel_by_id(self, data: st.DataObject, kind: str) -> None:
        """Mostly a resting order by its owner; else by anyone (not_your_order), or an id
        that is filled, cancelled, never was, or is yet to come (order_not_found)."""
        order = data.draw(st.sampled_from(self.ref.resting))
        user = order.user if kind == "own" else data.draw(users)
        order_id = order.order_id
        if kind == "unknown":
            order_id = data.draw(st.integers(0, self.ref.next_order_id + 1))
        self.apply(CancelOrder(id=next_id(), user=user, order_id=order_id))

    @rule(cmds=st.lists(other_commands, min_size=1, max_size=3))
    def other(self, cmds: list[AnyCommand]) -> None:
        """Money movements, malformed orders, cancels by client id, cancel_all, admin."""
        for cmd in cmds:
            self.apply(cmd)

    @rule(
        data=st.data(),
        user=users,
        stp=stps,
        by_quote=st.sampled_from([True, True, False]),
        small=st.sampled_from([False, False, True]),
    )
    def buy_up_to_own_ask(
        self, data: st.DataObject, user: str, stp: SelfTrade, by_quote: bool, small: bool
    ) -> None:
        """A market buy whose budget ends at, or just around, the buyer's own ask (random
        streams almost never line this up). The budget pays for every ask ahead of the own
        one plus a slack of up to one step at the own price. ``small``: the asks are cancelled
        by their owners and the own ask, alone at a price where one step costs more than the
        minimum notional, is the best; the budget is below one step there. A buy by amount
        gets the budget as its available quote: the rest is held by a withdrawal, refunded
        after."""
        others = [u for u in USERS if u != user]
        if small:
            for o in self.ref.side_orders(MARKET, "sell"):
                self.apply(CancelOrder(id=next_id(), user=o.user, order_id=o.order_id))
            own_price = data.draw(
                st.sampled_from([price(10_000.01), price(12_345.67), price(25_000)])
            )
            self.apply(limit_sell(user, own_price, data.draw(amounts)))
            if data.draw(st.booleans()):  # partly filled
                buyer = data.draw(st.sampled_from(others))
                part = data.draw(st.integers(1, 5)) * STEP
                self.apply(limit_buy(buyer, own_price, part, "IOC"))
        else:
            ahead_price = data.draw(prices)
            self.apply(
                limit_sell(data.draw(st.sampled_from(others)), ahead_price, data.draw(amounts))
            )
            own_price = data.draw(st.sampled_from([p for p in PRICES if p >= ahead_price]))
            self.apply(limit_sell(user, own_price, data.draw(amounts)))
        # What the asks ahead of the user's first one cost, in book order.
        ahead_quote = ahead_amount = 0
        for o in self.ref.side_orders(MARKET, "sell"):
            assert o.price is not None
            if o.user == user:
                own_price = o.price
                break
            ahead_quote += o.price * o.remaining // ETH
            ahead_amount += o.remaining
        step_cost = own_price * STEP // ETH
        slack = data.draw(
            st.one_of(st.sampled_from([0, step_cost - 1, step_cost]), st.integers(0, step_cost))
        )
        budget = max(ahead_quote + slack, 10**6)  # the minimum notional
        tif: TimeInForce = data.draw(st.sampled_from(["GTC", "IOC"]))
        if by_quote:
            self.apply(market_buy(user, tif, stp, quote_amount=budget))
            return
        available = self.ref.balance(user, "USDT")[0]
        if available < budget:
            self.apply(
                Deposit(
                    id=next_id(),
                    user=user,
                    asset="USDT",
                    amount=budget - available,
                    ref=next_id("r"),
                )
            )
        hold = next_id("w")
        if available > budget:
            self.apply(
                RequestWithdrawal(
                    id=next_id(),
                    user=user,
                    asset="USDT",
                    amount=available - budget,
                    fee=0,
                    withdrawal_id=hold,
                )
            )
        amount = ahead_amount + data.draw(st.integers(1, 40)) * STEP
        self.apply(market_buy(user, tif, stp, amount=amount))
        if available > budget:
            self.apply(RefundWithdrawal(id=next_id(), withdrawal_id=hold))

    @precondition(lambda self: self.steps % 4 == 0)  # keeps this rule from crowding out others
    @rule(
        orders=st.lists(st.one_of(limit_orders(), market_orders()), max_size=1),
        user=users,
        client_order_id=st.sampled_from(["a", "b"]),
    )
    def halt_and_resume(self, orders: list[PlaceOrder], user: str, client_order_id: str) -> None:
        self.apply(UpdateMarket(id=next_id(), market=MARKET, status="halted"))
        for cmd in orders:
            self.apply(cmd)
        self.apply(CancelOrder(id=next_id(), user=user, client_order_id=client_order_id))
        mine = [o.order_id for o in self.ref.resting if o.user == user]
        if mine:
            self.apply(CancelOrder(id=next_id(), user=user, order_id=mine[-1]))
        self.apply(UpdateMarket(id=next_id(), market=MARKET, status="open"))


@pytest.fixture(scope="module", autouse=True)
def report_coverage() -> Iterator[None]:
    yield
    print(f"\nengine vs reference ({PROFILE}):")
    for key, n in sorted(STATS.items()):
        print(f"  {key:45} {n}")


EngineVsReference.TestCase.settings = settings.get_profile(PROFILE)
TestEngineVsReference = EngineVsReference.TestCase
