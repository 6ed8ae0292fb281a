"""The examples of docs/engine.md for stop orders, OCO lists, amends, good-till-date orders and
the open-order limit, on the fast engine and on the reference model alike."""

from __future__ import annotations

from typing import Any

import pytest

from matcher_service.engine import Engine
from matcher_service.engine.audit import audit
from shared.messages import (
    AmendOrder,
    Applied,
    ExpireOrders,
    OrderAmended,
    OrderListChanged,
    OrderTriggered,
    OrderUpdated,
    PlaceOco,
    Reason,
)
from tests.engine.helpers import (
    ETH,
    MARKET,
    EngineLike,
    deposit,
    limit,
    market_order,
    next_id,
    order_id_of,
    price,
    run,
    setup_commands,
    trades,
)
from tests.engine.reference import ReferenceEngine


@pytest.fixture(params=["fast", "reference"])
def engine(request: pytest.FixtureRequest) -> Any:
    e: Any = Engine(max_open_orders=4) if request.param == "fast" else ReferenceEngine(4)
    run(e, [*setup_commands(), deposit("alice", "ETH", 10 * ETH),
            deposit("alice", "USDT", 100_000 * 10**6), deposit("bob", "ETH", 10 * ETH),
            deposit("bob", "USDT", 100_000 * 10**6)])  # fmt: skip
    # A last trade price of 2000.
    run(
        e,
        [
            limit("bob", "sell", price(2000), ETH // 10),
            limit("alice", "buy", price(2000), ETH // 10),
        ],
    )
    return e


def stop(user: str, side: str, at: float, limit_at: float | None, amount: int, **kw: Any) -> Any:
    if limit_at is None:
        return market_order(user, side, amount=amount, stop="stop_loss", stop_price=price(at), **kw)
    return limit(user, side, price(limit_at), amount, stop="stop_loss", stop_price=price(at), **kw)


def kinds(applied: Applied) -> list[str]:
    return [type(e).__name__ for e in applied.events]


def test_a_stop_holds_its_funds_and_waits_out_of_the_book(engine: EngineLike) -> None:
    [placed] = run(engine, [stop("alice", "sell", 1990, 1989, ETH)])
    assert kinds(placed) == ["OrderAccepted", "BalanceChanged"]
    assert engine.balance("alice", "ETH")[1] == ETH  # frozen, not in the book
    refused = engine.apply(stop("alice", "sell", 2000, None, ETH))
    assert (refused.ok, refused.reason) == (False, Reason.WOULD_TRIGGER)
    assert engine.apply(stop("alice", "buy", 2010, None, ETH)).reason == Reason.INVALID  # by amount


def test_stops_are_released_in_the_command_that_reached_them_nearest_first(
    engine: EngineLike,
) -> None:
    far, near = run(engine, [stop("alice", "sell", 1990, None, ETH // 10),
                             stop("alice", "sell", 1995, None, ETH // 10)])  # fmt: skip
    bids = [limit("bob", "buy", price(1995), ETH // 10), limit("bob", "buy", price(1985), ETH)]
    run(engine, [*bids, deposit("carol", "ETH", ETH)])
    [hit] = run(engine, [limit("carol", "sell", price(1995), ETH // 10)])
    released = [e.order_id for e in hit.events if isinstance(e, OrderTriggered)]
    # 1995 reached the 1995 stop only: it sells into bob's 1985 bid, which reaches the 1990
    # stop next, in the same command.
    assert released == [order_id_of(near), order_id_of(far)]
    assert [t.price for t in trades(hit)] == [price(1995), price(1985), price(1985)]
    if isinstance(engine, Engine):
        assert audit(engine) == []


def test_an_oco_list_holds_once_and_one_cancels_the_other(engine: EngineLike) -> None:
    before = engine.balance("alice", "USDT")
    [listed] = run(engine, [PlaceOco(id=next_id(), user="alice", market=MARKET, side="buy",
                                     amount=ETH, price=price(1900), stop_price=price(2050),
                                     stop_limit_price=price(2060))])  # fmt: skip
    assert kinds(listed)[-1] == "OrderListChanged"
    assert engine.balance("alice", "USDT")[1] - before[1] == price(2060)  # the larger hold
    [sold] = run(engine, [market_order("bob", "sell", amount=ETH // 10)])
    ends = [e for e in sold.events if isinstance(e, OrderListChanged | OrderUpdated)]
    assert any(isinstance(e, OrderUpdated) and e.reason == Reason.OCO for e in ends)
    assert any(isinstance(e, OrderListChanged) and e.reason == Reason.TRADED for e in ends)
    # The limit order keeps its own hold, the stop's extra is back.
    assert engine.balance("alice", "USDT")[1] - before[1] == price(1900) * 9 // 10


def test_amend_keeps_priority_only_when_it_shrinks_at_the_same_price(engine: EngineLike) -> None:
    first, second = run(engine, [limit("alice", "buy", price(1980), ETH),
                                 limit("alice", "buy", price(1980), ETH)])  # fmt: skip
    [smaller] = run(engine, [AmendOrder(id=next_id(), user="alice", order_id=order_id_of(first),
                                        amount=ETH // 2)])  # fmt: skip
    assert isinstance(smaller.events[-1], OrderAmended) and smaller.events[-1].kept_priority
    [larger] = run(engine, [AmendOrder(id=next_id(), user="alice", order_id=order_id_of(first),
                                       amount=ETH)])  # fmt: skip
    assert isinstance(larger.events[-1], OrderAmended) and not larger.events[-1].kept_priority
    [filled] = run(engine, [market_order("bob", "sell", amount=ETH // 10)])
    assert trades(filled)[0].maker_order_id == order_id_of(second)  # now first in line
    run(engine, [limit("bob", "sell", price(2050), ETH)])
    crossing = engine.apply(AmendOrder(id=next_id(), user="alice", order_id=order_id_of(second),
                                       price=price(2100)))  # fmt: skip
    assert crossing.reason == Reason.WOULD_TAKE  # an amend never takes


def test_good_till_date_ends_with_the_first_batch_at_or_after_it(engine: EngineLike) -> None:
    gtd = limit("alice", "buy", price(1800), ETH, expires_at=5_000)
    gtd.ts = 1_000
    [placed] = run(engine, [gtd])
    early = ExpireOrders(id=next_id(), ts=4_999)
    assert engine.apply(early).events == []
    [due] = run(engine, [ExpireOrders(id=next_id(), ts=5_000)])
    [end] = [e for e in due.events if isinstance(e, OrderUpdated)]
    assert (end.order_id, end.reason) == (order_id_of(placed), Reason.EXPIRED)
    stale = limit("alice", "buy", price(1800), ETH, expires_at=900)
    stale.ts = 1_000
    assert engine.apply(stale).reason == Reason.BAD_EXPIRY


def test_the_open_order_limit_counts_pending_stops(engine: EngineLike) -> None:
    tenth = ETH // 10
    for k in range(2):
        run(engine, [limit("alice", "buy", price(1900 + k), tenth)])
        run(engine, [stop("alice", "sell", 1950 + k, None, tenth)])
    refused = engine.apply(limit("alice", "buy", price(1902), tenth))
    assert refused.reason == Reason.TOO_MANY_ORDERS
