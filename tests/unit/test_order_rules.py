"""The order rules have one source (shared/order_rules.py): the API functions' check of an
order (api.listings.order_command) and the engine agree on every order.

For any order on any market: the API accepts it exactly when the engine does not reject it for
a rule that needs no state, and when both refuse, the API's code is the engine's reason
(``invalid_order`` for ``invalid_command``; 409 for a halted market, else 400).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from api.http import ApiError
from api.listings import MarketSpec, order_command
from infra.api_spec import document
from matcher_service.engine import Engine
from shared.messages import (
    CreateAsset,
    CreateMarket,
    Deposit,
    PlaceOrder,
    Reason,
    UpdateMarket,
)
from shared.money import format_units
from shared.order_rules import MAX_CLIENT_ORDER_ID, MAX_USER_ID

STATIC_REASONS = {
    Reason.MARKET_HALTED,
    Reason.INVALID,
    Reason.BAD_PRICE,
    Reason.BAD_TICK,
    Reason.BAD_AMOUNT,
    Reason.BAD_STEP,
    Reason.BELOW_MIN_AMOUNT,
    Reason.BELOW_MIN_NOTIONAL,
}
"""What the engine rejects an order with before it looks at its state (docs/engine.md,
"Orders", checks 1 to 3); the rest (funds, a client id in use, the book) only it can know."""

USER = "alice"


class Market(msgspec.Struct, frozen=True):
    """A market definition the engine accepts, in units: tick * step fits the quote
    precision (a multiple of 10**base_precision)."""

    base_precision: int
    quote_precision: int
    tick: int
    step: int
    min_amount: int
    min_notional: int
    halted: bool


@st.composite
def markets(draw: st.DrawFn) -> Market:
    bp = draw(st.integers(0, 18))
    qp = draw(st.integers(0, 18))
    split = draw(st.integers(0, bp))  # step = s * 10**split, tick = t * 10**(bp - split)
    step = draw(st.integers(1, 9)) * 10**split
    tick = draw(st.integers(1, 9)) * 10 ** (bp - split)
    return Market(
        bp, qp, tick, step,
        min_amount=draw(st.sampled_from([0, step, 3 * step, 10**bp])),
        min_notional=draw(st.sampled_from([0, 1, tick, 10**qp, 50 * 10**qp])),
        halted=draw(st.sampled_from([False] * 9 + [True])),
    )  # fmt: skip


def numbers(unit: int) -> st.SearchStrategy[int | None]:
    """Absent, small (zero and negative included), or near a multiple of ``unit``: on it or
    one unit off. Below 10**32: the wire format takes at most 40 digits."""
    near = st.builds(
        lambda k, off: k * unit + off,
        st.one_of(st.integers(0, 200), st.integers(0, 10**32 // unit)),
        st.sampled_from([0, 0, 0, 1, -1]),
    )
    return st.one_of(st.none(), st.integers(-3, 3), near)


@st.composite
def orders(draw: st.DrawFn, m: Market) -> dict[str, Any]:
    """Mostly orders of a fitting shape, on the tick and step, then with one field or two
    drawn from anything (so that each rule is broken alone, and some together)."""
    order_type = draw(st.sampled_from(["limit", "market"]))
    side = draw(st.sampled_from(["buy", "sell"]))
    by_quote = order_type == "market" and side == "buy" and draw(st.booleans())
    lots = st.integers(1, 10**6)
    order: dict[str, Any] = {
        "user": USER,
        "side": side,
        "type": order_type,
        "price": draw(lots) * m.tick if order_type == "limit" else None,
        "amount": None if by_quote else draw(lots) * m.step,
        "quote_amount": draw(lots) * 10**m.quote_precision if by_quote else None,
        "time_in_force": draw(
            st.sampled_from(["GTC", "IOC", "FOK"] if order_type == "limit" else ["GTC", "IOC"])
        ),
        "post_only": False,
        "client_order_id": draw(st.sampled_from([None, "a", "b"])),
    }
    anything: dict[str, st.SearchStrategy[Any]] = {
        "user": st.sampled_from(["", "@fees", "u" * MAX_USER_ID, "u" * (MAX_USER_ID + 1)]),
        "side": st.sampled_from(["buy", "sell"]),
        "type": st.sampled_from(["limit", "market"]),
        "price": numbers(m.tick),
        "amount": numbers(m.step),
        "quote_amount": numbers(10**m.quote_precision),
        "time_in_force": st.sampled_from(["GTC", "IOC", "FOK"]),
        "post_only": st.booleans(),
        "client_order_id": st.one_of(
            st.sampled_from([MAX_CLIENT_ORDER_ID, MAX_CLIENT_ORDER_ID + 1]).map("c".__mul__),
            st.text("ab", max_size=3),
        ),
    }
    for field in draw(st.lists(st.sampled_from(sorted(anything)), max_size=2)):
        order[field] = draw(anything[field])
    return order


def engine_with(m: Market) -> Engine:
    bp, qp = m.base_precision, m.quote_precision
    engine = Engine()
    commands: list[Any] = [
        CreateAsset(id="a1", asset="BASE", precision=bp),
        CreateAsset(id="a2", asset="QUOTE", precision=qp),
        CreateMarket(
            id="m1", market="BASE-QUOTE", base="BASE", quote="QUOTE",
            tick=format_units(m.tick, qp), step=format_units(m.step, bp),
            min_amount=format_units(m.min_amount, bp),
            min_notional=format_units(m.min_notional, qp), maker_fee="0.001", taker_fee="0.002",
        ),
        Deposit(id="d1", user=USER, asset="BASE", amount=10**40, ref="b"),
        Deposit(id="d2", user=USER, asset="QUOTE", amount=10**40, ref="q"),
    ]  # fmt: skip
    if m.halted:
        commands.append(UpdateMarket(id="h", market="BASE-QUOTE", status="halted"))
    for cmd in commands:
        assert engine.apply(cmd).ok, cmd
    return engine


def spec_of(engine: Engine) -> MarketSpec:
    """The market as the API functions read it: the matcher's ``md:markets`` entry."""
    data = msgspec.structs.asdict(engine.markets["BASE-QUOTE"].event())
    return MarketSpec.from_json(data, engine.assets)


def decimal(units: int | None, precision: int) -> str | None:
    return None if units is None else format_units(units, precision)


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_the_api_accepts_an_order_exactly_when_the_engine_keeps_its_rules(
    data: st.DataObject,
) -> None:
    m = data.draw(markets(), "market")
    order = data.draw(orders(m), "order")
    engine = engine_with(m)
    bp, qp = m.base_precision, m.quote_precision
    try:
        cmd = order_command(
            spec_of(engine), command_id="c1", user=order["user"], side=order["side"],
            order_type=order["type"], price=decimal(order["price"], qp),
            amount=decimal(order["amount"], bp),
            quote_amount=decimal(order["quote_amount"], qp),
            time_in_force=order["time_in_force"], post_only=order["post_only"],
            client_order_id=order["client_order_id"], stp="cancel_taker",
        )  # fmt: skip
    except ApiError as refused:
        event(f"refused: {refused.code}")
        applied = engine.apply(PlaceOrder(id="c1", market="BASE-QUOTE", **order))
        assert not applied.ok and applied.reason in STATIC_REASONS, (refused, applied)
        code = "invalid_order" if applied.reason == Reason.INVALID else applied.reason
        status = 409 if applied.reason == Reason.MARKET_HALTED else 400
        assert (refused.status, refused.code) == (status, code), refused
        return
    # Accepted: the command the API publishes is the order in units, and the engine finds no
    # broken rule in it (it may still refuse it for funds or the book).
    assert cmd == PlaceOrder(id="c1", market="BASE-QUOTE", **order)
    applied = engine.apply(cmd)
    event(f"accepted; the engine: {applied.reason or 'accepted'}")
    assert applied.ok or applied.reason not in STATIC_REASONS, applied


LIMIT: dict[str, Any] = {
    "side": "buy", "order_type": "limit", "time_in_force": "GTC", "post_only": False
}  # fmt: skip


def api_answer(halted: bool = False, **fields: Any) -> tuple[int, str] | None:
    """(status, code) of the API's refusal of an order on ETH-USDT-like settings, or None."""
    m = Market(8, 6, tick=10_000, step=10_000, min_amount=10_000, min_notional=10**6, halted=halted)
    given: dict[str, Any] = {**LIMIT, "price": None, "amount": None, "quote_amount": None}
    given.update(fields)
    try:
        order_command(
            spec_of(engine_with(m)), command_id="c1", user=USER, client_order_id=None,
            stp="cancel_taker", **given,
        )  # fmt: skip
    except ApiError as refused:
        return refused.status, refused.code
    return None


@pytest.mark.parametrize(
    ("fields", "answer"),
    [
        # A number that does not parse answers where the engine would first read it ...
        ({"price": "2e3", "amount": "1"}, (400, "bad_price")),
        ({"price": "2000.0000001", "amount": "1"}, (400, "bad_tick")),
        ({"price": "2000", "amount": "1.000000001"}, (400, "bad_step")),
        ({"price": "2000", "amount": "9" * 45}, (400, "bad_amount")),
        ({"order_type": "market", "quote_amount": "1.0000001"}, (400, "bad_amount")),
        # ... so an earlier broken rule comes first, as before the rules were shared.
        ({"halted": True, "price": "abc", "amount": "1"}, (409, "market_halted")),
        ({"order_type": "market", "price": "abc", "amount": "1"}, (400, "invalid_order")),
        ({"price": "2000", "amount": "abc", "quote_amount": "x"}, (400, "invalid_order")),
        ({"price": "0", "amount": "abc"}, (400, "bad_price")),
        ({"price": "2000", "amount": "1", "post_only": True, "time_in_force": "IOC"},
         (400, "invalid_order")),
        ({"price": "2000", "amount": "1"}, None),
    ],
)  # fmt: skip
def test_a_malformed_number_is_reported_where_the_engine_would_read_it(
    fields: dict[str, Any], answer: tuple[int, str] | None
) -> None:
    assert api_answer(**fields) == answer


def test_the_identifier_limits_have_one_source() -> None:
    schemas = document()["components"]["schemas"]
    client_order_id = schemas["PlaceOrder"]["properties"]["client_order_id"]["anyOf"][0]
    assert client_order_id["maxLength"] == MAX_CLIENT_ORDER_ID
    assert schemas["NewDeposit"]["properties"]["user_id"]["maxLength"] == MAX_USER_ID


def test_the_engine_and_the_rules_load_nothing_of_the_services() -> None:
    """The rules are pure and the engine stays I/O-free: importing them loads no client of a
    service and nothing of the HTTP layer."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import matcher_service.engine, shared.order_rules\n"
        "print(' '.join(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in"
        " {'redis', 'flask', 'pg8000', 'google', 'requests', 'urllib3', 'socket'}"
        " or m in {'api.http', 'api.listings', 'api.dispatch'})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert loaded == []
