"""Edge cases of docs/engine.md, on the fast engine and (where cheap) the reference model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from matcher_service.engine import Engine
from matcher_service.engine.audit import audit
from matcher_service.engine.snapshot import restore, snapshot, state_hash
from shared.messages import (
    FEE_ACCOUNT,
    AnyCommand,
    Applied,
    BalanceChanged,
    CreateAsset,
    CreateMarket,
    DepositCredited,
    OrderAccepted,
    OrderRejected,
    OrderUpdated,
    PlaceOrder,
    Reason,
    Trade,
    WithdrawalChanged,
)
from shared.money import fee_for
from tests.engine.helpers import (
    ETH,
    MARKET,
    STEP,
    TICK,
    cancel,
    cancel_all,
    deposit,
    eth,
    final_update,
    limit,
    market_order,
    next_id,
    order_id_of,
    price,
    refund,
    request_withdrawal,
    run,
    settle,
    setup_commands,
    trades,
    update_market,
    usdt,
)
from tests.engine.reference import ReferenceEngine

AnyEngine = Any  # Engine or ReferenceEngine: the same duck-typed API


@pytest.fixture(params=["fast", "reference"])
def eng(request: pytest.FixtureRequest) -> AnyEngine:
    e: AnyEngine = Engine() if request.param == "fast" else ReferenceEngine()
    run(e, setup_commands())
    for user in ("alice", "bob", "carol"):
        run(e, [deposit(user, "ETH", eth(10)), deposit(user, "USDT", usdt(100_000))])
    return e


@pytest.fixture
def fast() -> Engine:
    e = Engine()
    run(e, setup_commands())
    for user in ("alice", "bob", "carol"):
        run(e, [deposit(user, "ETH", eth(10)), deposit(user, "USDT", usdt(100_000))])
    return e


def ok(e: AnyEngine, cmd: AnyCommand) -> Applied:
    res: Applied = e.apply(cmd)
    assert res.ok, res
    assert res.reason is None
    return res


def rejected(e: AnyEngine, cmd: AnyCommand, reason: str) -> Applied:
    res: Applied = e.apply(cmd)
    assert not res.ok, res
    assert res.reason == reason, res
    return res


def quote_of(p: int, amount: int) -> int:
    return p * amount // ETH


def check_invariants(e: AnyEngine) -> None:
    if isinstance(e, Engine):
        assert audit(e) == []
        assert state_hash(restore(snapshot(e))) == state_hash(e)


def same_as_null_command(before: bytes, after: Engine) -> None:
    """``after`` equals the ``before`` snapshot plus one rejected command that changes
    nothing but the sequence number (settling a withdrawal that never existed)."""
    null = restore(before)
    rejected(null, settle("never-requested"), Reason.UNKNOWN_WITHDRAWAL)
    assert state_hash(null) == state_hash(after)


def unchanged_after(e: AnyEngine, cmd: AnyCommand, reason: str) -> Applied:
    """Apply a command that must be rejected with ``reason`` and change nothing."""
    before_book = e.book(MARKET)
    before_bal = e.balances()
    before = snapshot(e) if isinstance(e, Engine) else None
    res = rejected(e, cmd, reason)
    assert e.book(MARKET) == before_book
    assert e.balances() == before_bal
    if before is not None:
        same_as_null_command(before, e)
        assert audit(e) == []
    return res


# ---------------------------------------------------------------- matching


def test_partial_fills_across_many_levels(eng: AnyEngine) -> None:
    levels = [price(2000) + k * TICK for k in range(5)]
    maker_ids = [order_id_of(ok(eng, limit("bob", "sell", p, eth(0.01)))) for p in levels]
    a_eth, a_usdt = eng.balance("alice", "ETH")[0], eng.balance("alice", "USDT")[0]
    # Takes all of the first four levels and half of the fifth; limit at the fifth.
    res = ok(eng, limit("alice", "buy", levels[4], eth(0.045)))
    ts = trades(res)
    assert [t.price for t in ts] == levels
    assert [t.amount for t in ts] == [eth(0.01)] * 4 + [eth(0.005)]
    assert [t.maker_order_id for t in ts] == maker_ids
    assert [t.trade_id for t in ts] == [1, 2, 3, 4, 5]
    for t in ts:
        assert t.quote == quote_of(t.price, t.amount)
        assert t.taker_fee == fee_for(t.amount, 2000)  # buyer pays in base, taker rate
        assert t.maker_fee == fee_for(t.quote, 1000)  # seller pays in quote, maker rate
        assert t.taker_side == "buy" and t.taker_user == "alice" and t.maker_user == "bob"
    spent = sum(t.quote for t in ts)
    got = sum(t.amount - t.taker_fee for t in ts)
    assert eng.balance("alice", "USDT") == (a_usdt - spent, 0)
    assert eng.balance("alice", "ETH") == (a_eth + got, 0)
    assert eng.fees("ETH") == sum(t.taker_fee for t in ts)
    assert eng.fees("USDT") == sum(t.maker_fee for t in ts)
    end = final_update(res)
    assert (end.status, end.reason, end.filled, end.filled_quote) == (
        "filled",
        None,
        eth(0.045),
        spent,
    )
    bids, asks = eng.book(MARKET)
    assert bids == []
    assert asks == [(levels[4], [(maker_ids[4], "bob", eth(0.005))])]
    view = eng.order(maker_ids[4])
    assert view is not None and view.status == "partially_filled"
    assert eng.order(maker_ids[0]) is None
    assert eng.balance("bob", "ETH")[1] == eth(0.005)
    check_invariants(eng)


def test_gtc_remainder_rests_partially_filled_with_hold_at_limit(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(1999), eth(0.01)))
    before = eng.balance("alice", "USDT")[0]
    res = ok(eng, limit("alice", "buy", price(2000), eth(0.03)))
    (t,) = trades(res)
    assert t.price == price(1999)
    end = final_update(res)
    hold = quote_of(price(2000), eth(0.02))
    assert (end.status, end.frozen, end.filled) == ("partially_filled", hold, eth(0.01))
    assert eng.balance("alice", "USDT") == (before - t.quote - hold, hold)
    assert eng.book(MARKET)[0] == [(price(2000), [(end.order_id, "alice", eth(0.02))])]
    check_invariants(eng)


def test_event_order_of_one_fill(eng: AnyEngine) -> None:
    maker = order_id_of(ok(eng, limit("bob", "sell", price(2000), eth(0.01))))
    res = ok(eng, limit("alice", "buy", price(2000), eth(0.01)))
    kinds = [
        (type(e).__name__, getattr(e, "user", None), getattr(e, "asset", None)) for e in res.events
    ]
    assert kinds == [
        ("OrderAccepted", "alice", None),
        ("Trade", None, None),
        ("BalanceChanged", "alice", "USDT"),  # taker pays
        ("BalanceChanged", "alice", "ETH"),  # taker receives
        ("BalanceChanged", "bob", "ETH"),  # maker pays (from frozen)
        ("BalanceChanged", "bob", "USDT"),  # maker receives
        ("BalanceChanged", FEE_ACCOUNT, "ETH"),
        ("BalanceChanged", FEE_ACCOUNT, "USDT"),
        ("OrderUpdated", "bob", None),
        ("OrderUpdated", "alice", None),
    ]
    bob_pays = res.events[4]
    assert isinstance(bob_pays, BalanceChanged)
    assert (bob_pays.delta_available, bob_pays.delta_frozen) == (0, -eth(0.01))
    maker_end = res.events[8]
    assert isinstance(maker_end, OrderUpdated) and maker_end.order_id == maker
    assert (maker_end.status, maker_end.frozen) == ("filled", 0)


def test_event_order_of_one_fill_with_a_selling_taker(eng: AnyEngine) -> None:
    """docs/engine.md, Events: "@fees (base, quote; only a non-zero fee)" -- base first
    whichever side takes."""
    ok(eng, limit("bob", "buy", price(2000), eth(0.01)))
    res = ok(eng, limit("alice", "sell", price(2000), eth(0.01)))
    fee_changes = [
        (e.asset, e.reason)
        for e in res.events
        if isinstance(e, BalanceChanged) and e.user == FEE_ACCOUNT
    ]
    assert fee_changes == [("ETH", "trade_fee"), ("USDT", "trade_fee")]


def test_ioc_remainder_expires(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    res = ok(eng, limit("alice", "buy", price(2000), eth(0.02), time_in_force="IOC"))
    end = final_update(res)
    assert (end.status, end.reason, end.filled, end.frozen) == (
        "cancelled",
        Reason.IOC_EXPIRED,
        eth(0.01),
        0,
    )
    assert eng.book(MARKET) == ([], [])
    assert eng.balance("alice", "USDT")[1] == 0


def test_market_sell_exhausting_book_is_no_liquidity(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "buy", price(2000), eth(0.01)))
    res = ok(eng, market_order("alice", "sell", amount=eth(0.03)))
    end = final_update(res)
    assert (end.status, end.reason, end.filled) == ("cancelled", Reason.NO_LIQUIDITY, eth(0.01))
    assert eng.balance("alice", "ETH") == (eth(10) - eth(0.01), 0)


def test_market_buy_by_amount_runs_out_of_quote(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    ok(eng, deposit("dave", "USDT", usdt(5)))
    res = ok(eng, market_order("dave", "buy", amount=eth(0.01)))
    (t,) = trades(res)
    assert t.amount == eth(0.0025) and t.quote == usdt(5)
    end = final_update(res)
    assert (end.status, end.reason) == ("cancelled", Reason.INSUFFICIENT_FUNDS)
    assert eng.balance("dave", "USDT") == (0, 0)


def test_market_buy_by_amount_spending_its_last_quote_on_the_last_ask(eng: AnyEngine) -> None:
    """Out of quote *and* out of asks at once: the book is exhausted, so the table's
    "market order with a remainder, book exhausted" (no_liquidity) applies, not "ran out of
    quote while the book still had asks" (insufficient_funds). With 0.1 USDT left over the
    fast engine already answers no_liquidity."""
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    ok(eng, deposit("dave", "USDT", usdt(20)))
    res = ok(eng, market_order("dave", "buy", amount=eth(0.02)))
    (t,) = trades(res)
    assert t.quote == usdt(20)
    assert eng.book(MARKET) == ([], [])
    end = final_update(res)
    assert (end.status, end.reason, end.filled) == ("cancelled", Reason.NO_LIQUIDITY, eth(0.01))


# ---------------------------------------------------------------- FOK


def test_fok_that_cannot_fill_changes_nothing(fast: Engine) -> None:
    ok(fast, limit("bob", "sell", price(2000), eth(0.01)))
    ok(fast, limit("bob", "sell", price(2001), eth(0.01)))
    ok(fast, limit("bob", "sell", price(2003), eth(0.05)))  # beyond the limit
    before = snapshot(fast)
    book = fast.book(MARKET)
    bals = fast.balances()
    res = rejected(
        fast,
        limit("alice", "buy", price(2002), eth(0.03), time_in_force="FOK"),
        Reason.FOK_NOT_FILLED,
    )
    assert len(res.events) == 1 and isinstance(res.events[0], OrderRejected)
    assert res.events[0].reason == Reason.FOK_NOT_FILLED
    assert fast.book(MARKET) == book and fast.balances() == bals
    same_as_null_command(before, fast)  # nothing but the sequence number moved ...
    # ... which the next accepted order shows: the rejected FOK took no order id.
    nxt = ok(fast, limit("carol", "buy", price(1000), eth(0.01)))
    assert order_id_of(nxt) == 4


def test_fok_that_fills(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    ok(eng, limit("carol", "sell", price(2001), eth(0.02)))
    res = ok(eng, limit("alice", "buy", price(2001), eth(0.03), time_in_force="FOK"))
    assert [t.amount for t in trades(res)] == [eth(0.01), eth(0.02)]
    assert final_update(res).status == "filled"
    assert eng.book(MARKET) == ([], [])


@pytest.mark.parametrize(
    ("stp", "accepted"),
    [("cancel_taker", False), ("cancel_both", False), ("cancel_maker", True)],
)
def test_fok_walk_and_own_orders(eng: AnyEngine, stp: str, accepted: bool) -> None:
    own = order_id_of(ok(eng, limit("alice", "sell", price(2000), eth(0.01))))
    ok(eng, limit("bob", "sell", price(2001), eth(0.02)))
    cmd = limit("alice", "buy", price(2001), eth(0.02), time_in_force="FOK", stp=stp)
    if not accepted:
        rejected(eng, cmd, Reason.FOK_NOT_FILLED)
        assert eng.order(own) is not None
        return
    res = ok(eng, cmd)
    assert [t.maker_user for t in trades(res)] == ["bob"]
    assert final_update(res).status == "filled"
    assert eng.order(own) is None
    assert eng.balance("alice", "ETH")[1] == 0


# ---------------------------------------------------------------- market buy by quote


def test_market_buy_by_quote_exhausting_the_book(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    ok(eng, limit("bob", "sell", price(2001), eth(0.01)))
    before = eng.balance("alice", "USDT")[0]
    res = ok(eng, market_order("alice", "buy", quote_amount=usdt(100)))
    ts = trades(res)
    assert [t.amount for t in ts] == [eth(0.01), eth(0.01)]
    spent = sum(t.quote for t in ts)
    assert spent == usdt(40.01)
    end = final_update(res)
    # Budget left over and no more asks: "a market order with a remainder, book exhausted".
    assert (end.status, end.reason, end.frozen) == ("cancelled", Reason.NO_LIQUIDITY, 0)
    assert eng.balance("alice", "USDT") == (before - spent, 0)
    assert eng.book(MARKET) == ([], [])
    check_invariants(eng)


def test_market_buy_by_quote_stops_on_budget_filled(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    res = ok(eng, market_order("alice", "buy", quote_amount=usdt(10.1)))
    (t,) = trades(res)
    # Whole steps only: 10.1 USDT buys 0.005 ETH at 2000; 0.1 USDT cannot buy a step.
    assert (t.amount, t.quote) == (eth(0.005), usdt(10))
    end = final_update(res)
    assert (end.status, end.reason) == ("filled", None)
    assert eng.balance("alice", "USDT")[1] == 0


def test_market_buy_by_quote_that_cannot_buy_one_step(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(20_000), eth(0.01)))  # one step costs 2 USDT
    before = eng.balance("alice", "USDT")
    res = ok(eng, market_order("alice", "buy", quote_amount=usdt(1.5)))
    assert trades(res) == []
    end = final_update(res)
    assert (end.status, end.reason, end.filled) == ("cancelled", Reason.INSUFFICIENT_FUNDS, 0)
    assert eng.balance("alice", "USDT") == before


# ---------------------------------------------------------------- fees


def tiny_market(e: AnyEngine) -> None:
    """BTC-USDT where one step at one tick is worth one quote unit and any notional goes."""
    run(
        e,
        [
            CreateAsset(id=next_id(), asset="BTC", precision=8),
            CreateMarket(
                id=next_id(),
                market="BTC-USDT",
                base="BTC",
                quote="USDT",
                tick="0.01",
                step="0.0001",
                min_amount="0.0001",
                min_notional="0",
                maker_fee="0.001",
                taker_fee="0.002",
            ),
            deposit("bob", "BTC", 10**8),
        ],
    )


def test_fee_rounding_on_a_tiny_fill(eng: AnyEngine) -> None:
    tiny_market(eng)
    ok(eng, limit("bob", "sell", TICK, STEP, market="BTC-USDT"))
    res = ok(eng, limit("alice", "buy", TICK, STEP, market="BTC-USDT"))
    (t,) = trades(res)
    assert t.quote == 1  # 0.0001 BTC at 0.01 USDT is one micro-USDT
    assert t.maker_fee == 1  # 0.001 of one unit, rounded up, but never above the unit
    assert t.taker_fee == fee_for(STEP, 2000) == 20
    assert eng.balance("bob", "USDT")[0] == usdt(100_000) + 1 - 1
    assert eng.balance("alice", "BTC") == (STEP - 20, 0)
    assert eng.fees("USDT") == 1 and eng.fees("BTC") == 20
    check_invariants(eng)


def test_fee_rounding_with_odd_rates(eng: AnyEngine) -> None:
    ok(eng, update_market(maker_fee="0.000001", taker_fee="0.099999"))
    ok(eng, limit("bob", "sell", price(2000.01), eth(0.0007)))
    res = ok(eng, limit("alice", "buy", price(2000.01), eth(0.0007)))
    (t,) = trades(res)
    assert t.quote == quote_of(price(2000.01), eth(0.0007)) == 1_400_007
    assert t.maker_fee == 2  # 1.400007 rounded up
    assert t.taker_fee == fee_for(eth(0.0007), 99_999) == 7_000  # 6999.93 up
    assert t.taker_fee < t.amount and t.maker_fee < t.quote


# ---------------------------------------------------------------- self-trade prevention


def test_stp_cancel_taker(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    own = order_id_of(ok(eng, limit("alice", "sell", price(2001), eth(0.01))))
    ok(eng, limit("bob", "sell", price(2002), eth(0.01)))
    res = ok(eng, limit("alice", "buy", price(2002), eth(0.03), stp="cancel_taker"))
    assert [t.maker_user for t in trades(res)] == ["bob"]
    end = final_update(res)
    assert (end.status, end.reason, end.filled, end.frozen) == (
        "cancelled",
        Reason.SELF_TRADE,
        eth(0.01),
        0,
    )
    assert eng.order(own) is not None  # the maker stays
    assert eng.book(MARKET)[0] == []  # the taker does not rest
    assert eng.balance("alice", "USDT")[1] == 0


def test_stp_cancel_maker(eng: AnyEngine) -> None:
    own = order_id_of(ok(eng, limit("alice", "sell", price(2000), eth(0.01))))
    ok(eng, limit("bob", "sell", price(2001), eth(0.01)))
    res = ok(eng, limit("alice", "buy", price(2001), eth(0.02), stp="cancel_maker"))
    assert [t.maker_user for t in trades(res)] == ["bob"]
    cancelled = [e for e in res.events if isinstance(e, OrderUpdated) and e.order_id == own]
    assert [(e.status, e.reason) for e in cancelled] == [("cancelled", Reason.SELF_TRADE)]
    assert eng.order(own) is None
    assert eng.balance("alice", "ETH")[1] == 0  # hold released
    end = final_update(res)
    assert (end.status, end.filled) == ("partially_filled", eth(0.01))  # rests the rest
    check_invariants(eng)


def test_stp_cancel_both(eng: AnyEngine) -> None:
    own = order_id_of(ok(eng, limit("alice", "sell", price(2000), eth(0.01))))
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    res = ok(eng, limit("alice", "buy", price(2000), eth(0.02), stp="cancel_both"))
    assert trades(res) == []
    assert eng.order(own) is None
    end = final_update(res)
    assert (end.status, end.reason, end.filled) == ("cancelled", Reason.SELF_TRADE, 0)
    assert eng.book(MARKET)[0] == []
    assert [lvl[0] for lvl in eng.book(MARKET)[1]] == [price(2000)]  # bob's order stays
    assert eng.balance("alice", "ETH")[1] == 0 and eng.balance("alice", "USDT")[1] == 0


STPS = ["cancel_taker", "cancel_maker", "cancel_both"]


def untouched(e: AnyEngine, res: Applied, order_id: int, remaining: int) -> None:
    """A resting order that the command neither traded with, cancelled nor released."""
    assert not any(
        (isinstance(ev, OrderUpdated) and ev.order_id == order_id)
        or (isinstance(ev, BalanceChanged) and ev.ref == str(order_id))
        or (isinstance(ev, Trade) and ev.maker_order_id == order_id)
        for ev in res.events
    ), res.events
    o = e.order(order_id)
    assert o is not None and o.remaining == remaining


@pytest.mark.parametrize("stp", STPS)
@pytest.mark.parametrize("budget", [usdt(20), usdt(20.19)])
def test_spent_quote_budget_stops_before_self_trade_prevention(
    eng: AnyEngine, stp: str, budget: int
) -> None:
    """Issue #19: a budget spent (exactly, or down to less than one step at the next
    price) on another user's ask ends the buy ``filled``; the buyer's own ask next in line,
    which it could not have traded with, is left alone in every mode."""
    bob = order_id_of(ok(eng, limit("bob", "sell", price(2000), eth(0.01))))
    own = order_id_of(ok(eng, limit("alice", "sell", price(2000), eth(0.01))))
    carol = order_id_of(ok(eng, limit("carol", "sell", price(2000), eth(0.01))))
    res = ok(eng, market_order("alice", "buy", quote_amount=budget, stp=stp))
    assert [(t.maker_order_id, t.amount, t.quote) for t in trades(res)] == [
        (bob, eth(0.01), usdt(20))
    ]
    end = final_update(res)
    assert (end.status, end.reason, end.filled) == ("filled", None, eth(0.01))
    untouched(eng, res, own, eth(0.01))
    untouched(eng, res, carol, eth(0.01))
    assert eng.balance("alice", "ETH")[1] == eth(0.01)  # the own ask's hold stays
    assert eng.book(MARKET)[1] == [
        (price(2000), [(own, "alice", eth(0.01)), (carol, "carol", eth(0.01))])
    ]
    check_invariants(eng)


@pytest.mark.parametrize("stp", STPS)
@pytest.mark.parametrize("partly_filled", [False, True])
def test_quote_budget_below_one_step_at_own_best_ask(
    eng: AnyEngine, stp: str, partly_filled: bool
) -> None:
    """Issue #19, the small form: a budget too small for one step at the best ask is
    ``insufficient_funds`` even when that ask is the buyer's own, and the ask (partly filled
    or not) stays."""
    own = order_id_of(ok(eng, limit("alice", "sell", price(20_000), eth(0.01))))
    left = eth(0.01)
    if partly_filled:
        ok(eng, limit("bob", "buy", price(20_000), eth(0.004)))
        left = eth(0.006)
    before = eng.balances()
    res = ok(eng, market_order("alice", "buy", quote_amount=usdt(1.5), stp=stp))  # a step: 2
    assert trades(res) == []
    end = final_update(res)
    assert (end.status, end.reason, end.filled) == ("cancelled", Reason.INSUFFICIENT_FUNDS, 0)
    untouched(eng, res, own, left)
    assert eng.balances() == before
    check_invariants(eng)


@pytest.mark.parametrize("stp", STPS)
def test_spent_budget_of_a_market_buy_by_amount_stops_before_own_ask(
    eng: AnyEngine, stp: str
) -> None:
    """The same rule for a buy by ``amount``, whose budget is all its available quote: it
    ran out of quote while the book still had asks (``insufficient_funds``)."""
    run(eng, [deposit("dave", "USDT", usdt(20.1)), deposit("dave", "ETH", eth(1))])
    bob = order_id_of(ok(eng, limit("bob", "sell", price(2000), eth(0.01))))
    own = order_id_of(ok(eng, limit("dave", "sell", price(2001), eth(0.01))))
    res = ok(eng, market_order("dave", "buy", amount=eth(0.02), stp=stp))
    assert [t.maker_order_id for t in trades(res)] == [bob]
    end = final_update(res)
    assert (end.status, end.reason, end.filled) == (
        "cancelled", Reason.INSUFFICIENT_FUNDS, eth(0.01),
    )  # fmt: skip
    untouched(eng, res, own, eth(0.01))
    assert eng.balance("dave", "USDT") == (usdt(0.1), 0)
    check_invariants(eng)


@pytest.mark.parametrize("stp", STPS)
def test_quote_budget_that_can_still_buy_a_step_meets_stp(eng: AnyEngine, stp: str) -> None:
    """The other side of the rule: 0.2 USDT left buys one step at 2000, so the own ask is
    one the taker could trade with and self-trade prevention applies as documented."""
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    own = order_id_of(ok(eng, limit("alice", "sell", price(2000), eth(0.01))))
    carol = order_id_of(ok(eng, limit("carol", "sell", price(2000), eth(0.01))))
    res = ok(eng, market_order("alice", "buy", quote_amount=usdt(20.2), stp=stp))
    end = final_update(res)
    cancelled = [
        e.order_id
        for e in res.events
        if isinstance(e, OrderUpdated)
        and e.reason == Reason.SELF_TRADE
        and e.order_id != end.order_id
    ]
    if stp == "cancel_taker":
        assert (end.status, end.reason, end.filled) == (
            "cancelled", Reason.SELF_TRADE, eth(0.01),
        )  # fmt: skip
        untouched(eng, res, own, eth(0.01))
    elif stp == "cancel_maker":
        assert cancelled == [own]
        assert [(t.maker_order_id, t.amount) for t in trades(res)][-1] == (carol, STEP)
        assert (end.status, end.reason, end.filled) == ("filled", None, eth(0.0101))
    else:
        assert cancelled == [own]
        assert (end.status, end.reason, end.filled) == (
            "cancelled", Reason.SELF_TRADE, eth(0.01),
        )  # fmt: skip
        untouched(eng, res, carol, eth(0.01))
    check_invariants(eng)


@pytest.mark.parametrize("stp", STPS)
def test_market_sell_with_nothing_left_leaves_own_bid(eng: AnyEngine, stp: str) -> None:
    """A market sell by amount stops at remaining 0, before the seller's own bid."""
    bob = order_id_of(ok(eng, limit("bob", "buy", price(2000), eth(0.01))))
    own = order_id_of(ok(eng, limit("alice", "buy", price(2000), eth(0.01))))
    res = ok(eng, market_order("alice", "sell", amount=eth(0.01), stp=stp))
    assert [t.maker_order_id for t in trades(res)] == [bob]
    end = final_update(res)
    assert (end.status, end.reason, end.filled) == ("filled", None, eth(0.01))
    untouched(eng, res, own, eth(0.01))


@pytest.mark.parametrize("stp", STPS)
def test_filled_limit_order_leaves_own_maker(eng: AnyEngine, stp: str) -> None:
    bob = order_id_of(ok(eng, limit("bob", "sell", price(2000), eth(0.01))))
    own = order_id_of(ok(eng, limit("alice", "sell", price(2000), eth(0.01))))
    res = ok(eng, limit("alice", "buy", price(2000), eth(0.01), stp=stp))
    assert [t.maker_order_id for t in trades(res)] == [bob]
    assert (final_update(res).status, final_update(res).reason) == ("filled", None)
    untouched(eng, res, own, eth(0.01))


@pytest.mark.parametrize("stp", STPS)
@pytest.mark.parametrize("tif", ["GTC", "IOC"])
def test_limit_order_not_crossing_own_maker(eng: AnyEngine, stp: str, tif: str) -> None:
    """The own ask is beyond the buy's limit: the buy stops on its price, never on
    self-trade prevention; a GTC remainder rests, an IOC one expires."""
    bob = order_id_of(ok(eng, limit("bob", "sell", price(2000), eth(0.01))))
    own = order_id_of(ok(eng, limit("alice", "sell", price(2000.01), eth(0.01))))
    res = ok(eng, limit("alice", "buy", price(2000), eth(0.02), time_in_force=tif, stp=stp))
    assert [t.maker_order_id for t in trades(res)] == [bob]
    end = final_update(res)
    if tif == "GTC":
        assert (end.status, end.reason, end.filled) == ("partially_filled", None, eth(0.01))
        assert eng.book(MARKET)[0] == [(price(2000), [(end.order_id, "alice", eth(0.01))])]
    else:
        assert (end.status, end.reason, end.filled) == (
            "cancelled", Reason.IOC_EXPIRED, eth(0.01),
        )  # fmt: skip
    untouched(eng, res, own, eth(0.01))


# ---------------------------------------------------------------- post-only


def test_post_only(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    rejected(eng, limit("alice", "buy", price(2000), eth(0.01), post_only=True), Reason.WOULD_TAKE)
    # Own orders count too.
    rejected(eng, limit("bob", "buy", price(2001), eth(0.01), post_only=True), Reason.WOULD_TAKE)
    rejected(
        eng,
        limit("alice", "buy", price(1999), eth(0.01), post_only=True, time_in_force="IOC"),
        Reason.INVALID,
    )
    res = ok(eng, limit("alice", "buy", price(1999.99), eth(0.01), post_only=True))
    assert trades(res) == []
    assert eng.book(MARKET)[0] == [(price(1999.99), [(order_id_of(res), "alice", eth(0.01))])]


def test_resting_order_without_fills_ends_with_its_freeze(eng: AnyEngine) -> None:
    """docs/engine.md, Events: an order that rests without having traded has no final
    OrderUpdated -- its OrderAccepted already says it is open; the freeze shows its hold."""
    res = ok(eng, limit("alice", "buy", price(1000), eth(0.01)))
    assert [type(e).__name__ for e in res.events] == ["OrderAccepted", "BalanceChanged"]
    freeze = res.events[1]
    assert isinstance(freeze, BalanceChanged)
    hold = quote_of(price(1000), eth(0.01))
    assert (freeze.reason, freeze.delta_frozen, freeze.delta_available) == (
        "order_freeze", hold, -hold,
    )  # fmt: skip


# ---------------------------------------------------------------- cancels


def test_cancel_someone_elses_and_closed_orders(eng: AnyEngine) -> None:
    resting = order_id_of(ok(eng, limit("bob", "sell", price(2000), eth(0.01))))
    rejected(eng, cancel("alice", resting), Reason.NOT_YOUR_ORDER)
    ok(eng, limit("alice", "buy", price(2000), eth(0.01)))  # fills bob's order
    rejected(eng, cancel("bob", resting), Reason.ORDER_NOT_FOUND)
    rejected(eng, cancel("bob", 999), Reason.ORDER_NOT_FOUND)
    rejected(eng, cancel("bob"), Reason.INVALID)
    rejected(eng, cancel("bob", resting, "x"), Reason.INVALID)
    other = order_id_of(ok(eng, limit("bob", "sell", price(2000), eth(0.01))))
    res = ok(eng, cancel("bob", other))
    end = res.events[-1]
    assert isinstance(end, OrderUpdated)
    assert (end.status, end.reason) == ("cancelled", Reason.CANCELLED_BY_USER)
    assert isinstance(res.events[0], BalanceChanged) and res.events[0].reason == "order_release"
    rejected(eng, cancel("bob", other), Reason.ORDER_NOT_FOUND)


def test_duplicate_client_order_id(eng: AnyEngine) -> None:
    first = order_id_of(ok(eng, limit("alice", "buy", price(1000), eth(0.01), client_order_id="x")))
    rejected(
        eng,
        limit("alice", "buy", price(1001), eth(0.01), client_order_id="x"),
        Reason.DUPLICATE_CLIENT_ORDER_ID,
    )
    ok(eng, limit("bob", "buy", price(1000), eth(0.01), client_order_id="x"))  # per user
    rejected(eng, cancel("carol", client_order_id="x"), Reason.ORDER_NOT_FOUND)
    res = ok(eng, cancel("alice", client_order_id="x"))
    assert final_update(res).order_id == first
    ok(eng, limit("alice", "sell", price(3000), eth(0.01), client_order_id="x"))
    # A filled order frees its client id as well.
    ok(eng, limit("carol", "buy", price(3000), eth(0.01)))
    ok(eng, limit("alice", "sell", price(3000), eth(0.01), client_order_id="x"))
    rejected(eng, limit("alice", "buy", price(1), eth(1), client_order_id=""), Reason.INVALID)
    rejected(
        eng, limit("alice", "buy", price(10), eth(1), client_order_id="y" * 65), Reason.INVALID
    )


def test_a_limit_order_without_a_price_is_bad_price(eng: AnyEngine) -> None:
    """docs/engine.md, check 2: a limit order's price is given and positive (bad_price)."""
    priceless = PlaceOrder(
        id=next_id(), user="alice", market=MARKET, side="buy", type="limit", amount=eth(0.01)
    )
    unchanged_after(eng, priceless, Reason.BAD_PRICE)
    unchanged_after(eng, limit("alice", "buy", 0, eth(0.01)), Reason.BAD_PRICE)


def test_halted_market_refuses_orders_but_cancels(eng: AnyEngine) -> None:
    a = order_id_of(ok(eng, limit("alice", "buy", price(1000), eth(0.01))))
    ok(eng, limit("alice", "buy", price(1001), eth(0.01)))
    b = order_id_of(ok(eng, limit("bob", "buy", price(1000), eth(0.01))))
    ok(eng, update_market(status="halted"))
    rejected(eng, limit("bob", "sell", price(1000), eth(0.01)), Reason.MARKET_HALTED)
    rejected(eng, market_order("bob", "sell", amount=eth(0.01)), Reason.MARKET_HALTED)
    ok(eng, cancel("alice", a))
    res = ok(eng, cancel_all("alice", MARKET))
    assert [e.order_id for e in res.events if isinstance(e, OrderUpdated)] == [a + 1]
    ok(eng, cancel_all("bob"))
    assert eng.order(b) is None
    assert eng.balance("alice", "USDT") == (usdt(100_000), 0)
    rejected(eng, cancel_all("bob", "NOPE-USDT"), Reason.UNKNOWN_MARKET)
    ok(eng, update_market(status="open"))
    ok(eng, limit("bob", "sell", price(1000), eth(0.01)))


def test_cancel_all_in_order_id_order(eng: AnyEngine) -> None:
    ids = [
        order_id_of(ok(eng, limit("alice", "buy", price(p), eth(0.01))))
        for p in (1000, 1002, 1001, 1002)
    ]
    ok(eng, limit("bob", "buy", price(1000), eth(0.01)))
    res = ok(eng, cancel_all("alice"))
    updates = [e for e in res.events if isinstance(e, OrderUpdated)]
    assert [e.order_id for e in updates] == ids
    assert eng.balance("alice", "USDT") == (usdt(100_000), 0)
    assert len(eng.book(MARKET)[0]) == 1


# ---------------------------------------------------------------- money movements


def test_duplicate_deposit_refused_with_no_change(fast: Engine) -> None:
    res = ok(fast, deposit("dave", "ETH", eth(1), ref="tx-1"))
    assert [type(e) for e in res.events] == [BalanceChanged, DepositCredited]
    before = snapshot(fast)
    res = rejected(fast, deposit("dave", "ETH", eth(2), ref="tx-1"), Reason.DUPLICATE_DEPOSIT)
    assert res.events == []
    assert fast.balance("dave", "ETH") == (eth(1), 0)
    assert fast.totals("ETH") == (eth(31), 0)
    # Nothing but the sequence number moved: replaying the same command on the old state
    # gives the same state.
    again = restore(before)
    rejected(again, deposit("dave", "ETH", eth(2), ref="tx-1"), Reason.DUPLICATE_DEPOSIT)
    assert state_hash(again) == state_hash(fast)
    rejected(fast, deposit("dave", "DOGE", 1), Reason.UNKNOWN_ASSET)
    rejected(fast, deposit("dave", "ETH", 0), Reason.BAD_AMOUNT)


def test_withdrawal_hold_settle_refund(eng: AnyEngine) -> None:
    ok(eng, deposit("dave", "USDT", usdt(100)))
    res = ok(eng, request_withdrawal("dave", "USDT", usdt(60), usdt(1), "w1"))
    assert eng.balance("dave", "USDT") == (usdt(39), usdt(61))
    assert isinstance(res.events[-1], WithdrawalChanged) and res.events[-1].state == "held"
    rejected(
        eng,
        request_withdrawal("dave", "USDT", usdt(39), 1, "w2"),
        Reason.INSUFFICIENT_FUNDS,
    )
    rejected(eng, request_withdrawal("dave", "USDT", usdt(1), 0, "w1"), Reason.DUPLICATE_WITHDRAWAL)
    rejected(eng, request_withdrawal("dave", "USDT", 0, 0, "w3"), Reason.BAD_AMOUNT)
    rejected(eng, request_withdrawal("dave", "USDT", 1, -1, "w3"), Reason.BAD_AMOUNT)
    rejected(eng, request_withdrawal("dave", "DOGE", 1, 0, "w3"), Reason.UNKNOWN_ASSET)
    fees_before = eng.fees("USDT")
    ok(eng, settle("w1"))
    assert eng.balance("dave", "USDT") == (usdt(39), 0)
    assert eng.fees("USDT") == fees_before + usdt(1)
    assert eng.totals("USDT") == (usdt(300_100), usdt(60))
    rejected(eng, settle("w1"), Reason.UNKNOWN_WITHDRAWAL)
    rejected(eng, refund("w1"), Reason.UNKNOWN_WITHDRAWAL)
    rejected(eng, request_withdrawal("dave", "USDT", 1, 0, "w1"), Reason.DUPLICATE_WITHDRAWAL)
    ok(eng, request_withdrawal("dave", "USDT", usdt(39), 0, "w4"))
    assert eng.balance("dave", "USDT") == (0, usdt(39))
    ok(eng, refund("w4"))
    assert eng.balance("dave", "USDT") == (usdt(39), 0)
    assert eng.totals("USDT") == (usdt(300_100), usdt(60))
    rejected(eng, settle("w4"), Reason.UNKNOWN_WITHDRAWAL)
    rejected(eng, settle("nope"), Reason.UNKNOWN_WITHDRAWAL)
    check_invariants(eng)


def test_withdrawal_hold_blocks_orders(eng: AnyEngine) -> None:
    ok(eng, deposit("dave", "ETH", eth(0.01)))
    ok(eng, request_withdrawal("dave", "ETH", eth(0.005), 0, "w9"))
    rejected(eng, limit("dave", "sell", price(2000), eth(0.01)), Reason.INSUFFICIENT_FUNDS)
    ok(eng, limit("dave", "sell", price(2000), eth(0.005)))
    assert eng.balance("dave", "ETH") == (0, eth(0.01))


# ---------------------------------------------------------------- admin and validation


def test_market_creation_refuses_tick_step_not_fitting(eng: AnyEngine) -> None:
    ok(eng, CreateAsset(id=next_id(), asset="BTC", precision=8))

    def make(tick: str, step: str) -> CreateMarket:
        return CreateMarket(
            id=next_id(),
            market="BTC-USDT",
            base="BTC",
            quote="USDT",
            tick=tick,
            step=step,
            min_amount=step,
            min_notional="1",
            maker_fee="0.001",
            taker_fee="0.002",
        )

    # 0.01 USDT * 0.00000001 BTC = 0.0000000001 USDT: below one micro-USDT.
    res = eng.apply(make("0.01", "0.00000001"))
    assert not res.ok and res.events == []
    res = eng.apply(make("0.000001", "0.0001"))  # 1e-10 USDT again
    assert not res.ok
    res = eng.apply(make("0.001", "0.00001"))  # 1e-8 USDT
    assert not res.ok
    rejected(eng, limit("alice", "buy", price(1), eth(1), market="BTC-USDT"), Reason.UNKNOWN_MARKET)
    ok(eng, make("0.01", "0.0001"))  # 1e-6 USDT: fits
    assert not eng.apply(make("0.01", "0.0001")).ok  # duplicate_market
    assert not eng.apply(
        CreateMarket(
            id=next_id(),
            market="USDT-USDT",
            base="USDT",
            quote="USDT",
            tick="0.01",
            step="0.01",
            min_amount="0.01",
            min_notional="1",
            maker_fee="0",
            taker_fee="0",
        )
    ).ok


ORDER_REJECTS: list[tuple[Callable[[], AnyCommand], str]] = [
    (
        lambda: limit("alice", "buy", price(2000), eth(0.01), market="NOPE-USDT"),
        Reason.UNKNOWN_MARKET,
    ),
    (lambda: limit("@fees", "buy", price(2000), eth(0.01)), Reason.INVALID),
    (lambda: limit("", "buy", price(2000), eth(0.01)), Reason.INVALID),
    (lambda: limit("x" * 129, "buy", price(2000), eth(0.01)), Reason.INVALID),
    (lambda: limit("alice", "buy", 0, eth(0.01)), Reason.BAD_PRICE),
    (lambda: limit("alice", "buy", -TICK, eth(0.01)), Reason.BAD_PRICE),
    (lambda: limit("alice", "buy", price(2000) + 1, eth(0.01)), Reason.BAD_TICK),
    (lambda: limit("alice", "buy", price(2000) + 1, 0), Reason.BAD_TICK),  # shape first
    (lambda: limit("alice", "buy", price(2000), eth(0.01), quote_amount=usdt(5)), Reason.INVALID),
    (lambda: market_order("alice", "buy", amount=eth(0.01), price=price(2000)), Reason.INVALID),
    (lambda: market_order("alice", "buy", amount=eth(0.01), post_only=True), Reason.INVALID),
    (lambda: market_order("alice", "buy", amount=eth(0.01), time_in_force="FOK"), Reason.INVALID),
    (lambda: market_order("alice", "buy"), Reason.INVALID),
    (lambda: market_order("alice", "buy", amount=eth(0.01), quote_amount=usdt(5)), Reason.INVALID),
    (lambda: market_order("alice", "sell", quote_amount=usdt(5)), Reason.INVALID),
    (lambda: limit("alice", "buy", price(2000), 0), Reason.BAD_AMOUNT),
    (lambda: limit("alice", "buy", price(2000), -STEP), Reason.BAD_AMOUNT),
    (lambda: limit("alice", "buy", price(2000), STEP + 1), Reason.BAD_STEP),
    (lambda: limit("alice", "buy", price(2000), STEP * 4), Reason.BELOW_MIN_NOTIONAL),
    (lambda: market_order("alice", "buy", quote_amount=0), Reason.BAD_AMOUNT),
    (lambda: market_order("alice", "buy", quote_amount=usdt(0.99)), Reason.BELOW_MIN_NOTIONAL),
    (lambda: market_order("alice", "sell", amount=STEP + 1), Reason.BAD_STEP),
    (lambda: limit("alice", "buy", price(2000), eth(100)), Reason.INSUFFICIENT_FUNDS),
    (lambda: limit("alice", "sell", price(2000), eth(11)), Reason.INSUFFICIENT_FUNDS),
    (lambda: market_order("alice", "sell", amount=eth(11)), Reason.INSUFFICIENT_FUNDS),
    (lambda: market_order("alice", "buy", quote_amount=usdt(100_001)), Reason.INSUFFICIENT_FUNDS),
    (lambda: market_order("dave", "buy", amount=eth(0.01)), Reason.INSUFFICIENT_FUNDS),
]


@pytest.mark.parametrize(("make", "reason"), ORDER_REJECTS)
def test_order_rejections(eng: AnyEngine, make: Callable[[], AnyCommand], reason: str) -> None:
    ok(eng, limit("bob", "sell", price(2500), eth(0.01)))
    res = unchanged_after(eng, make(), reason)
    assert len(res.events) == 1 and isinstance(res.events[0], OrderRejected)
    assert res.events[0].reason == reason


def test_below_min_amount() -> None:
    e = Engine()
    run(
        e,
        [
            CreateAsset(id=next_id(), asset="ETH", precision=8),
            CreateAsset(id=next_id(), asset="USDT", precision=6),
            CreateMarket(
                id=next_id(),
                market=MARKET,
                base="ETH",
                quote="USDT",
                tick="0.01",
                step="0.0001",
                min_amount="0.001",
                min_notional="1",
                maker_fee="0.001",
                taker_fee="0.002",
            ),
            deposit("alice", "ETH", eth(1)),
        ],
    )
    rejected(e, limit("alice", "sell", price(20_000), eth(0.0009)), Reason.BELOW_MIN_AMOUNT)
    ok(e, limit("alice", "sell", price(20_000), eth(0.001)))


def test_rejected_command_changes_nothing_but_takes_a_seq(fast: Engine) -> None:
    ok(fast, limit("bob", "sell", price(2000), eth(0.01)))
    ok(fast, request_withdrawal("carol", "ETH", eth(1), 5, "w1"))
    cases: list[tuple[AnyCommand, str]] = [
        (limit("alice", "buy", price(2000) + 1, eth(0.01)), Reason.BAD_TICK),
        (limit("alice", "buy", price(2000), eth(0.01), post_only=True), Reason.WOULD_TAKE),
        (limit("alice", "buy", price(2000), eth(1), time_in_force="FOK"), Reason.FOK_NOT_FILLED),
        (deposit("alice", "DOGE", 5), Reason.UNKNOWN_ASSET),
        (request_withdrawal("carol", "ETH", eth(100), 0), Reason.INSUFFICIENT_FUNDS),
        (request_withdrawal("carol", "ETH", 1, 0, "w1"), Reason.DUPLICATE_WITHDRAWAL),
        (cancel("alice", 1), Reason.NOT_YOUR_ORDER),
        (cancel_all("alice", "NOPE-USDT"), Reason.UNKNOWN_MARKET),
        (update_market("NOPE-USDT", status="halted"), Reason.UNKNOWN_MARKET),
    ]
    for cmd, reason in cases:
        before = snapshot(fast)
        res = rejected(fast, cmd, reason)
        same_as_null_command(before, fast)
        nxt = fast.apply(deposit("carol", "ETH", 1))
        assert nxt.seq == res.seq + 1
    assert audit(fast) == []


def test_seq_counts_every_command(eng: AnyEngine) -> None:
    first = eng.apply(deposit("x", "ETH", 1))
    second = eng.apply(deposit("x", "ETH", 0))
    third = eng.apply(limit("x", "buy", price(2000), eth(1)))
    assert [first.seq + 1, first.seq + 2] == [second.seq, third.seq]
    assert [first.ok, second.ok, third.ok] == [True, False, False]
    assert third.command_id != second.command_id
    assert isinstance(third.events[0], OrderRejected)


def test_order_accepted_and_trade_carry_ts(eng: AnyEngine) -> None:
    ok(eng, limit("bob", "sell", price(2000), eth(0.01)))
    cmd = limit("alice", "buy", price(2000), eth(0.01))
    cmd.ts = 1_700_000_000_123
    res = ok(eng, cmd)
    acc = res.events[0]
    assert isinstance(acc, OrderAccepted) and acc.ts == cmd.ts
    (t,) = trades(res)
    assert isinstance(t, Trade) and t.ts == cmd.ts
