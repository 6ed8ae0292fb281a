"""Commands for engine tests: the standard ETH-USDT setup and builders with unique ids."""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from shared.messages import (
    AnyCommand,
    Applied,
    CancelAll,
    CancelOrder,
    CreateAsset,
    CreateMarket,
    Deposit,
    OrderAccepted,
    OrderUpdated,
    PlaceOrder,
    RefundWithdrawal,
    RequestWithdrawal,
    SettleWithdrawal,
    Trade,
    UpdateMarket,
)

MARKET = "ETH-USDT"
ETH = 10**8
"""One whole ETH in units (precision 8)."""
USDT = 10**6
"""One whole USDT in units (precision 6)."""
TICK = USDT // 100
"""0.01 USDT."""
STEP = ETH // 10_000
"""0.0001 ETH."""

_ids = itertools.count(1)


def next_id(prefix: str = "c") -> str:
    """A command id never used before in this process."""
    return f"{prefix}{next(_ids)}"


def usdt(value: float | int) -> int:
    return round(value * USDT)


def eth(value: float | int) -> int:
    return round(value * ETH)


def price(value: float | int) -> int:
    """A price in USDT per ETH, in quote units."""
    return round(value * USDT)


def setup_commands() -> list[AnyCommand]:
    """ETH (8), USDT (6) and the ETH-USDT market used by every engine test."""
    return [
        CreateAsset(id=next_id("setup"), asset="ETH", precision=8),
        CreateAsset(id=next_id("setup"), asset="USDT", precision=6),
        CreateMarket(
            id=next_id("setup"),
            market=MARKET,
            base="ETH",
            quote="USDT",
            tick="0.01",
            step="0.0001",
            min_amount="0.0001",
            min_notional="1",
            maker_fee="0.001",
            taker_fee="0.002",
        ),
    ]


def deposit(user: str, asset: str, amount: int, ref: str | None = None) -> Deposit:
    return Deposit(id=next_id(), user=user, asset=asset, amount=amount, ref=ref or next_id("ref"))


def request_withdrawal(
    user: str, asset: str, amount: int, fee: int = 0, withdrawal_id: str | None = None
) -> RequestWithdrawal:
    return RequestWithdrawal(
        id=next_id(),
        user=user,
        asset=asset,
        amount=amount,
        fee=fee,
        withdrawal_id=withdrawal_id or next_id("w"),
    )


def settle(withdrawal_id: str) -> SettleWithdrawal:
    return SettleWithdrawal(id=next_id(), withdrawal_id=withdrawal_id)


def refund(withdrawal_id: str) -> RefundWithdrawal:
    return RefundWithdrawal(id=next_id(), withdrawal_id=withdrawal_id)


def limit(user: str, side: str, price_units: int, amount: int, **kw: Any) -> PlaceOrder:
    return PlaceOrder(
        id=next_id(),
        user=user,
        market=kw.pop("market", MARKET),
        side=side,  # type: ignore[arg-type]
        type="limit",
        price=price_units,
        amount=amount,
        **kw,
    )


def market_order(user: str, side: str, **kw: Any) -> PlaceOrder:
    return PlaceOrder(
        id=next_id(),
        user=user,
        market=kw.pop("market", MARKET),
        side=side,  # type: ignore[arg-type]
        type="market",
        **kw,
    )


def cancel(
    user: str, order_id: int | None = None, client_order_id: str | None = None
) -> CancelOrder:
    return CancelOrder(id=next_id(), user=user, order_id=order_id, client_order_id=client_order_id)


def cancel_all(user: str, market: str | None = None) -> CancelAll:
    return CancelAll(id=next_id(), user=user, market=market)


def update_market(market: str = MARKET, **kw: Any) -> UpdateMarket:
    return UpdateMarket(id=next_id(), market=market, **kw)


class EngineLike(Protocol):
    """What the tests need of both the fast engine and the reference model."""

    def apply(self, cmd: AnyCommand, /) -> Applied: ...

    def balance(self, user: str, asset: str, /) -> tuple[int, int]: ...

    def fees(self, asset: str, /) -> int: ...


def run(engine: EngineLike, commands: list[AnyCommand]) -> list[Applied]:
    """Apply commands, asserting each is accepted."""
    out = []
    for cmd in commands:
        res = engine.apply(cmd)
        assert res.ok, (cmd, res)
        out.append(res)
    return out


def trades(applied: Applied) -> list[Trade]:
    return [e for e in applied.events if isinstance(e, Trade)]


def final_update(applied: Applied) -> OrderUpdated:
    """The taker's last ``OrderUpdated`` of an accepted order."""
    last = applied.events[-1]
    assert isinstance(last, OrderUpdated), applied.events
    return last


def order_id_of(applied: Applied) -> int:
    first = applied.events[0]
    assert isinstance(first, OrderAccepted), applied.events
    return first.order_id
