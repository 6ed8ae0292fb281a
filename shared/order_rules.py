"""The rules an order must keep whatever the state of the exchange: one source for the engine,
which applies them to every ``place_order`` (docs/engine.md, "Orders", checks 1 to 3), and for
the API functions, which check an order with them before publishing it.

Pure: no I/O, no clock, only the order's fields and the market's settings in integer units. What
needs the engine's state (a client order id in use, funds, the book for ``post_only`` and
``FOK``) stays in the engine. The limits on identifiers live here too, so every place that
checks one (request bodies, paths, the OpenAPI document, the engine) uses the same number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from shared.messages import OrderType, Reason, Side, StopKind, TimeInForce
from shared.money import format_units

MAX_CLIENT_ORDER_ID: Final = 64
"""A client order id is 1 to 64 characters."""
MAX_USER_ID: Final = 128
"""A user id is 1 to 128 characters and does not start with ``@`` (the fee account's mark)."""


class MarketRules(Protocol):
    """What the rules read of a market, in integer units: the engine's ``Market`` and the API
    functions' ``MarketSpec`` both have it. ``base_scale`` is ``10**base_precision``: an
    order's quote value is ``price * amount // base_scale``."""

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def base_precision(self) -> int: ...
    @property
    def quote_precision(self) -> int: ...
    @property
    def base_scale(self) -> int: ...
    @property
    def tick(self) -> int: ...
    @property
    def step(self) -> int: ...
    @property
    def min_amount(self) -> int: ...
    @property
    def min_notional(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Violation:
    """The first rule an order breaks."""

    reason: str
    """Its ``Reason`` code: what the engine rejects the order with."""
    message: str
    """What an API client is told."""
    field: str | None = None
    """The number whose value breaks it (``price``, ``amount``, ``quote_amount``), if any."""


def order_violation(
    m: MarketRules,
    user: str,
    side: Side,
    order_type: OrderType,
    price: int | None,
    amount: int | None,
    quote_amount: int | None,
    time_in_force: TimeInForce,
    post_only: bool,
    client_order_id: str | None,
    stop: StopKind | None = None,
    stop_price: int | None = None,
    expires_at: int | None = None,
) -> Violation | None:
    """The first rule an order (the fields of a ``PlaceOrder``) breaks on market ``m``, in the
    engine's order of checks, or None.

    Runs for every order the engine applies, so it takes the fields the engine has already
    read rather than the command, the common case (nothing broken) is a straight run of
    comparisons, and a message is only made for a broken rule.
    """
    if m.status != "open":
        return Violation(Reason.MARKET_HALTED, f"market {m.name} is halted")
    if not user or user[0] == "@" or len(user) > MAX_USER_ID:
        return Violation(Reason.INVALID, "bad user id")
    # Shape: which fields an order of this type gives.
    if order_type == "limit":
        if price is None:
            return Violation(Reason.BAD_PRICE, "a limit order needs a price")
        if price <= 0:
            return Violation(Reason.BAD_PRICE, "price must be positive", "price")
        if price % m.tick:
            tick = format_units(m.tick, m.quote_precision)
            return Violation(
                Reason.BAD_TICK, f"price must be a multiple of the tick {tick}", "price"
            )
        if amount is None:
            return Violation(Reason.INVALID, "a limit order needs an amount")
        if quote_amount is not None:
            return Violation(Reason.INVALID, "quote_amount is only for market buys")
        if post_only and time_in_force != "GTC":
            return Violation(Reason.INVALID, "post_only needs time_in_force GTC")
    else:
        if price is not None:
            return Violation(Reason.INVALID, "a market order has no price")
        if post_only:
            return Violation(Reason.INVALID, "a market order cannot be post_only")
        if time_in_force == "FOK":
            return Violation(
                Reason.INVALID, "a market order is GTC or IOC (both: immediate or cancel)"
            )
        if side == "sell":
            if amount is None or quote_amount is not None:
                return Violation(Reason.INVALID, "a market sell gives amount (no quote_amount)")
        elif (amount is None) == (quote_amount is None):
            return Violation(
                Reason.INVALID, "a market buy gives exactly one of amount and quote_amount"
            )
    if stop is not None or stop_price is not None:
        broken = _stop_violation(m, side, order_type, stop, stop_price, quote_amount, time_in_force)
        if broken is not None:
            return broken
        if post_only:
            return Violation(Reason.INVALID, "a stop order cannot be post_only")
    if expires_at is not None:
        if time_in_force != "GTC" or (order_type == "market" and stop is None):
            return Violation(
                Reason.INVALID, "expires_at is for GTC limit orders and for stop orders"
            )
        if expires_at <= 0:
            return Violation(Reason.BAD_EXPIRY, "expires_at must be positive", "expires_at")
    if client_order_id is not None and not 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID:
        return Violation(
            Reason.INVALID, f"client_order_id must be 1 to {MAX_CLIENT_ORDER_ID} characters"
        )
    # Sizes: an amount on the step and at least the minimum, a quote value at least the
    # minimum notional.
    if amount is not None:
        if amount <= 0:
            return Violation(Reason.BAD_AMOUNT, "amount must be positive", "amount")
        if amount % m.step:
            step = format_units(m.step, m.base_precision)
            return Violation(
                Reason.BAD_STEP, f"amount must be a multiple of the step {step}", "amount"
            )
        if amount < m.min_amount:
            least = format_units(m.min_amount, m.base_precision)
            return Violation(
                Reason.BELOW_MIN_AMOUNT, f"amount is below the minimum {least}", "amount"
            )
        if price is not None and price * amount // m.base_scale < m.min_notional:
            least = format_units(m.min_notional, m.quote_precision)
            return Violation(
                Reason.BELOW_MIN_NOTIONAL,
                f"price times amount is below the minimum notional {least}",
            )
    elif quote_amount is not None:
        if quote_amount <= 0:
            return Violation(Reason.BAD_AMOUNT, "quote_amount must be positive", "quote_amount")
        if quote_amount < m.min_notional:
            least = format_units(m.min_notional, m.quote_precision)
            return Violation(
                Reason.BELOW_MIN_NOTIONAL,
                f"quote_amount is below the minimum notional {least}",
                "quote_amount",
            )
    return None


def _stop_violation(
    m: MarketRules,
    side: Side,
    order_type: OrderType,
    stop: StopKind | None,
    stop_price: int | None,
    quote_amount: int | None,
    time_in_force: TimeInForce,
) -> Violation | None:
    """The shape of a stop order (docs/engine.md, "Stop orders"): both ``stop`` and
    ``stop_price`` (the caller saw one of them), a stop price on the tick, no fill-or-kill, and
    a market buy by ``quote_amount`` (its hold must be known when it is placed)."""
    if stop is None or stop_price is None:
        return Violation(Reason.INVALID, "a stop order gives both stop and stop_price")
    broken = stop_price_violation(m, stop_price)
    if broken is not None:
        return broken
    if time_in_force == "FOK":
        return Violation(Reason.INVALID, "a stop order is GTC or IOC")
    if order_type == "market" and side == "buy" and quote_amount is None:
        return Violation(Reason.INVALID, "a stop market buy gives quote_amount")
    return None


def stop_price_violation(m: MarketRules, stop_price: int) -> Violation | None:
    """A stop price is positive and on the tick, as a limit price is."""
    if stop_price <= 0:
        return Violation(Reason.BAD_PRICE, "stop_price must be positive", "stop_price")
    if stop_price % m.tick:
        tick = format_units(m.tick, m.quote_precision)
        return Violation(
            Reason.BAD_TICK, f"stop_price must be a multiple of the tick {tick}", "stop_price"
        )
    return None


def oco_violation(
    m: MarketRules,
    user: str,
    side: Side,
    amount: int,
    price: int,
    stop_price: int,
    stop_limit_price: int | None,
) -> Violation | None:
    """The first rule an OCO list (the fields of a ``PlaceOco``) breaks: its limit order is a
    post-only GTC limit, its stop order a stop (limit, or market for a sell) of the same side
    and amount; the stop price lies on the other side of the limit price (a sell's below it,
    a buy's above it)."""
    kind: StopKind = "stop_loss"
    broken = order_violation(m, user, side, "limit", price, amount, None, "GTC", True, None)
    if broken is not None:
        return broken
    stop_type: OrderType = "market" if stop_limit_price is None else "limit"
    if stop_type == "market" and side == "buy":
        return Violation(Reason.INVALID, "the stop order of a buy list needs stop_limit_price")
    broken = order_violation(
        m, user, side, stop_type, stop_limit_price, amount, None, "GTC", False, None,
        kind, stop_price,
    )  # fmt: skip
    if broken is not None:
        if broken.field == "price":
            return Violation(
                broken.reason, broken.message.replace("price", "stop_limit_price"),
                "stop_limit_price",
            )  # fmt: skip
        return broken
    if stop_price >= price if side == "sell" else stop_price <= price:
        where = "below" if side == "sell" else "above"
        return Violation(
            Reason.BAD_PRICE, f"the stop price of a {side} list is {where} its limit price",
            "stop_price",
        )  # fmt: skip
    return None
