"""Markets and assets as the API functions see them: read from Redis (``md:markets``,
``md:assets``, written by the matcher; see docs/marketdata.md) and turned into integer units,
so a function can check an order against the market's rules before it publishes anything.

The rules mirror the engine's (docs/engine.md, "Orders", steps 1 to 3); the engine checks
them again, so a market changed in between is still caught, only later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis

from shared.http import ApiError, bad_request
from shared.money import MoneyError, parse_decimal, parse_fee_rate, parse_units, to_units
from shared.schema import OrderType, Reason, Side, TimeInForce

MARKETS_KEY: Final = "md:markets"
ASSETS_KEY: Final = "md:assets"
ASSET_CHAINS_KEY: Final = "md:asset_chains"
"""Hash: asset -> JSON ``{kind, contract, decimals}``; written by the admin function."""

MARKET_RE: Final = re.compile(r"[A-Z0-9]{2,12}-[A-Z0-9]{2,12}")
MAX_CLIENT_ORDER_ID: Final = 64


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market, its settings in integer units (see shared/money.py)."""

    name: str
    base: str
    quote: str
    base_precision: int
    quote_precision: int
    tick: int
    step: int
    min_amount: int
    min_notional: int
    status: str
    data: dict[str, Any]
    """The market as ``md:markets`` holds it (decimal strings), for answers."""

    @staticmethod
    def from_json(data: dict[str, Any], precisions: dict[str, int]) -> MarketSpec:
        bp, qp = precisions[data["base"]], precisions[data["quote"]]
        return MarketSpec(
            name=data["market"], base=data["base"], quote=data["quote"], base_precision=bp,
            quote_precision=qp, tick=parse_units(data["tick"], qp),
            step=parse_units(data["step"], bp), min_amount=parse_units(data["min_amount"], bp),
            min_notional=parse_units(data["min_notional"], qp), status=data["status"], data=data,
        )  # fmt: skip


def asset_precisions(client: redis.Redis) -> dict[str, int]:
    """Every listed asset and its precision."""
    raw = client.hgetall(ASSETS_KEY)
    return {_text(k): int(orjson.loads(v)["precision"]) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def load_market(client: redis.Redis, name: str) -> MarketSpec | None:
    """The market ``name``, or None when the matcher has not published it (one round trip)."""
    if not MARKET_RE.fullmatch(name):
        return None
    pipe = client.pipeline(transaction=False)
    pipe.hget(MARKETS_KEY, name)
    pipe.hgetall(ASSETS_KEY)
    raw, assets = pipe.execute()
    if raw is None:
        return None
    precisions = {_text(k): int(orjson.loads(v)["precision"]) for k, v in assets.items()}
    data = orjson.loads(raw)
    if data["base"] not in precisions or data["quote"] not in precisions:
        return None
    return MarketSpec.from_json(data, precisions)


def market_json(client: redis.Redis, name: str) -> dict[str, Any] | None:
    raw = client.hget(MARKETS_KEY, name)
    return None if raw is None else dict(orjson.loads(raw))


# --------------------------------------------------------------------------------------------
# Orders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderUnits:
    price: int | None
    amount: int | None
    quote_amount: int | None


def _units(value: str, precision: int, field: str, malformed: str, too_fine: str) -> int:
    """A decimal string in units of ``precision``; 400 ``malformed`` when it is not a plain
    decimal string, ``too_fine`` when it has more decimals than ``precision``."""
    try:
        number = parse_decimal(value, field)
    except MoneyError as exc:
        raise bad_request(str(exc), malformed) from None
    try:
        return to_units(number, precision, field)
    except MoneyError:
        raise bad_request(
            f"{field} {value} has more decimals than the market allows ({precision})", too_fine
        ) from None


def invalid_order(message: str) -> ApiError:
    return bad_request(message, "invalid_order")


def check_order(
    m: MarketSpec,
    *,
    side: Side,
    order_type: OrderType,
    price: str | None,
    amount: str | None,
    quote_amount: str | None,
    time_in_force: TimeInForce,
    post_only: bool,
    client_order_id: str | None,
) -> OrderUnits:
    """The order's numbers in units, or the first rule it breaks as a 400 (409 when the
    market is halted), in the engine's order of checks; the codes are the engine's reasons
    (``bad_tick``, ``below_min_notional``, ...) and ``invalid_order`` for fields that do not
    fit together."""
    if m.status != "open":
        raise ApiError(409, Reason.MARKET_HALTED, f"market {m.name} is halted")
    bp, qp = m.base_precision, m.quote_precision
    price_u: int | None = None
    if order_type == "limit":
        if price is None:
            raise bad_request("a limit order needs a price", Reason.BAD_PRICE)
        price_u = _units(price, qp, "price", Reason.BAD_PRICE, Reason.BAD_TICK)
        if price_u <= 0:
            raise bad_request("price must be positive", Reason.BAD_PRICE)
        if price_u % m.tick:
            raise bad_request(
                f"price must be a multiple of the tick {m.data['tick']}", Reason.BAD_TICK
            )
        if amount is None:
            raise invalid_order("a limit order needs an amount")
        if quote_amount is not None:
            raise invalid_order("quote_amount is only for market buys")
        if post_only and time_in_force != "GTC":
            raise invalid_order("post_only needs time_in_force GTC")
    else:
        if price is not None:
            raise invalid_order("a market order has no price")
        if post_only:
            raise invalid_order("a market order cannot be post_only")
        if time_in_force == "FOK":
            raise invalid_order("a market order is GTC or IOC (both: immediate or cancel)")
        if side == "sell" and (amount is None or quote_amount is not None):
            raise invalid_order("a market sell gives amount (no quote_amount)")
        if side == "buy" and (amount is None) == (quote_amount is None):
            raise invalid_order("a market buy gives exactly one of amount and quote_amount")
    if client_order_id is not None and not 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID:
        raise invalid_order(f"client_order_id must be 1 to {MAX_CLIENT_ORDER_ID} characters")
    amount_u = quote_u = None
    if amount is not None:
        amount_u = _units(amount, bp, "amount", Reason.BAD_AMOUNT, Reason.BAD_STEP)
        if amount_u <= 0:
            raise bad_request("amount must be positive", Reason.BAD_AMOUNT)
        if amount_u % m.step:
            raise bad_request(
                f"amount must be a multiple of the step {m.data['step']}", Reason.BAD_STEP
            )
        if amount_u < m.min_amount:
            raise bad_request(
                f"amount is below the minimum {m.data['min_amount']}", Reason.BELOW_MIN_AMOUNT
            )
    elif quote_amount is not None:
        quote_u = _units(quote_amount, qp, "quote_amount", Reason.BAD_AMOUNT, Reason.BAD_AMOUNT)
        if quote_u <= 0:
            raise bad_request("quote_amount must be positive", Reason.BAD_AMOUNT)
        if quote_u < m.min_notional:
            raise bad_request(
                f"quote_amount is below the minimum notional {m.data['min_notional']}",
                Reason.BELOW_MIN_NOTIONAL,
            )
    if (
        price_u is not None
        and amount_u is not None
        and price_u * amount_u // 10**bp < m.min_notional
    ):
        raise bad_request(
            f"price times amount is below the minimum notional {m.data['min_notional']}",
            Reason.BELOW_MIN_NOTIONAL,
        )
    return OrderUnits(price_u, amount_u, quote_u)


# --------------------------------------------------------------------------------------------
# Market definitions (admin)
# --------------------------------------------------------------------------------------------


def check_market_definition(
    *,
    base: str,
    quote: str,
    precisions: dict[str, int],
    tick: str,
    step: str,
    min_amount: str,
    min_notional: str,
    maker_fee: str,
    taker_fee: str,
) -> None:
    """400 unless the engine would accept this market (docs/engine.md, "Markets")."""
    if base == quote:
        raise bad_request("base and quote must differ", "invalid_market")
    for asset in (base, quote):
        if asset not in precisions:
            raise bad_request(f"unknown asset {asset}", Reason.UNKNOWN_ASSET)
    bp, qp = precisions[base], precisions[quote]
    try:
        tick_u = parse_units(tick, qp, "tick")
        step_u = parse_units(step, bp, "step")
        parse_units(min_amount, bp, "min_amount")
        parse_units(min_notional, qp, "min_notional")
        parse_fee_rate(maker_fee, "maker_fee")
        parse_fee_rate(taker_fee, "taker_fee")
    except MoneyError as exc:
        raise bad_request(str(exc), "invalid_market") from None
    if tick_u <= 0 or step_u <= 0:
        raise bad_request("tick and step must be positive", "invalid_market")
    if (tick_u * step_u) % 10**bp:
        raise bad_request(
            f"tick times step must fit the quote precision (tick * step a multiple of 10^-{qp})",
            "invalid_market",
        )


def check_fee(value: str, field: str) -> None:
    try:
        parse_fee_rate(value, field)
    except MoneyError as exc:
        raise bad_request(str(exc), "invalid_fee") from None
