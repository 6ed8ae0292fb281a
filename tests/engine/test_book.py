"""A book side's ``best`` key, which the order path reads instead of asking the sorted dict,
follows every change the engine makes to a side; a book's depth is its best levels with the
open amount at each."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from matcher_service.engine import Engine
from matcher_service.engine.book import Level, Side
from tests.engine.helpers import (
    MARKET,
    TICK,
    cancel,
    deposit,
    eth,
    price,
    run,
    setup_commands,
    usdt,
)
from tests.engine.helpers import limit as limit_order

# ("add", key): a level at key (replacing one there); ("del", i): delete the i-th key (mod
# the count); ("pop", 0) / ("pop", -1): pop the best / the worst level.
change = st.one_of(
    st.tuples(st.just("add"), st.integers(-50, 50)),
    st.tuples(st.just("del"), st.integers(0, 100)),
    st.tuples(st.just("pop"), st.sampled_from([0, -1])),
)


@given(st.lists(change, max_size=60))
def test_best_is_the_first_key_after_every_change(changes: list[tuple[str, int]]) -> None:
    side = Side()
    for kind, arg in changes:
        if kind == "add":
            side[arg] = Level(abs(arg))
        elif kind == "del" and side:
            del side[list(side)[arg % len(side)]]
        elif kind == "pop" and side:
            side.popitem(arg)
        assert side.best == (min(side) if side else None)


def test_a_popped_or_deleted_best_hands_over_to_the_next_key() -> None:
    side = Side()
    for key in (5, -3, 7):
        side[key] = Level(abs(key))
    assert side.best == -3
    assert side.popitem(0)[0] == -3
    assert side.best == 5
    del side[5]
    assert side.best == 7
    side.popitem(0)
    assert side.best is None


# ("place", user, is_buy, tick above 100 USDT, hundredths of an ETH) or ("cancel", i): cancel
# the i-th open order (mod the count).
book_op = st.one_of(
    st.tuples(
        st.just("place"), st.sampled_from("abc"), st.booleans(), st.integers(0, 12),
        st.integers(1, 4),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 100)),
)  # fmt: skip


@given(st.lists(book_op, max_size=40), st.integers(1, 6))
def test_depth_is_the_best_levels_with_their_open_amounts(
    ops: list[tuple[Any, ...]], limit: int
) -> None:
    engine = Engine()
    run(engine, setup_commands())
    for user in "abc":
        run(engine, [deposit(user, "ETH", eth(1000)), deposit(user, "USDT", usdt(10**6))])
    for op in ops:
        if op[0] == "place":
            _, user, is_buy, ticks, lots = op
            p = price(100) + ticks * TICK
            placed = engine.apply(
                limit_order(user, "buy" if is_buy else "sell", p, eth(lots / 100))
            )
            assert placed.ok
        elif engine.orders:
            o = list(engine.orders.values())[op[1] % len(engine.orders)]
            assert engine.apply(cancel(o.user, o.id)).ok
    # The reference: every open order's remaining amount, summed per side and price.
    open_amounts: dict[tuple[bool, int], int] = {}
    for o in engine.orders.values():
        key = (o.is_buy, o.price)
        open_amounts[key] = open_amounts.get(key, 0) + o.remaining
    want_bids = sorted(((p, a) for (b, p), a in open_amounts.items() if b), reverse=True)
    want_asks = sorted((p, a) for (b, p), a in open_amounts.items() if not b)
    bids, asks = engine.books[MARKET].depth(limit)
    assert bids == want_bids[:limit]
    assert asks == want_asks[:limit]
    assert engine.books[MARKET].depth(1000) == (want_bids, want_asks)
