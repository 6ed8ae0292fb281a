"""The listed assets and markets as the API functions see them: read from Redis
(``md:markets``, ``md:assets``, written by the matcher; see docs/marketdata.md) and turned into
integer units, so a function can check an order against the market's rules before it
publishes anything (the rules themselves: shared/order_rules.py, which the engine applies
too), and an admin's new market against what the engine would accept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis

from api.http import ApiError, bad_request
from shared.messages import (
    OrderType,
    PlaceOco,
    PlaceOrder,
    Reason,
    SelfTrade,
    Side,
    StopKind,
    TimeInForce,
)
from shared.money import MoneyError, parse_decimal, parse_fee_rate, parse_units, to_units
from shared.order_rules import Violation, oco_violation, order_violation
from shared.redis_keys import ASSETS_KEY, MARKETS_KEY
from shared.redis_values import text

MARKET_RE: Final = re.compile(r"[A-Z0-9]{2,12}-[A-Z0-9]{2,12}")


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market, its settings in integer units (see shared/money.py)."""

    name: str
    base: str
    quote: str
    base_precision: int
    quote_precision: int
    base_scale: int
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
            quote_precision=qp, base_scale=10**bp, tick=parse_units(data["tick"], qp),
            step=parse_units(data["step"], bp), min_amount=parse_units(data["min_amount"], bp),
            min_notional=parse_units(data["min_notional"], qp), status=data["status"], data=data,
        )  # fmt: skip


def load_market(client: redis.Redis, name: str) -> MarketSpec | None:
    """The market ``name``, or None when the matcher has not published it (one round trip)."""
    if not MARKET_RE.fullmatch(name):
        return None
    pipe = client.pipeline(transaction=False)
    queue_market(pipe, name)
    raw, assets = pipe.execute()
    return market_of(raw, assets)


def queue_market(pipe: Any, name: str) -> None:
    """Queue the reads of ``load_market`` on a pipeline (two results, for ``market_of``)."""
    pipe.hget(MARKETS_KEY, name)
    pipe.hgetall(ASSETS_KEY)


def market_of(raw: bytes | None, assets: dict[bytes, bytes]) -> MarketSpec | None:
    """The market from the two results ``queue_market`` queued."""
    if raw is None:
        return None
    precisions = {text(k): int(orjson.loads(v)["precision"]) for k, v in assets.items()}
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


def order_command(
    m: MarketSpec,
    *,
    command_id: str,
    user: str,
    side: Side,
    order_type: OrderType,
    price: str | None,
    amount: str | None,
    quote_amount: str | None,
    time_in_force: TimeInForce,
    post_only: bool,
    client_order_id: str | None,
    stp: SelfTrade,
    stop: StopKind | None = None,
    stop_price: str | None = None,
    expires_at: int | None = None,
) -> PlaceOrder:
    """The ``place_order`` command for an order given in decimal strings, or the first rule it
    breaks (shared/order_rules.py) as an error: 409 ``market_halted``, else 400 with the
    engine's reason as the code (``bad_tick``, ``below_min_notional``, ...) and
    ``invalid_order`` for fields that do not fit together.

    A number that is not a plain decimal string, or has more decimals than its asset, breaks
    the first rule that reads it, where the engine would read it: the price's (``bad_price``;
    ``bad_tick`` for too many decimals), the amount's (``bad_amount``; ``bad_step``) or the
    quote amount's (``bad_amount``). So the rules see it as 0, which every such first rule
    refuses, and the answer names what is wrong with it.
    """
    unreadable: dict[str, ApiError] = {}

    def units(
        value: str | None, precision: int, field: str, malformed: str, too_fine: str
    ) -> int | None:
        if value is None:
            return None
        try:
            return _units(value, precision, field, malformed, too_fine)
        except ApiError as exc:
            unreadable[field] = exc
            return 0

    bp, qp = m.base_precision, m.quote_precision
    price_u = units(price, qp, "price", Reason.BAD_PRICE, Reason.BAD_TICK)
    amount_u = units(amount, bp, "amount", Reason.BAD_AMOUNT, Reason.BAD_STEP)
    quote_u = units(quote_amount, qp, "quote_amount", Reason.BAD_AMOUNT, Reason.BAD_AMOUNT)
    stop_u = units(stop_price, qp, "stop_price", Reason.BAD_PRICE, Reason.BAD_TICK)
    broken = order_violation(
        m, user, side, order_type, price_u, amount_u, quote_u, time_in_force, post_only,
        client_order_id, stop, stop_u, expires_at,
    )  # fmt: skip
    if broken is None:
        if unreadable:  # cannot happen: a given number is read or refused for being there
            raise next(iter(unreadable.values()))
        return PlaceOrder(
            id=command_id, user=user, market=m.name, side=side, type=order_type, price=price_u,
            amount=amount_u, quote_amount=quote_u, time_in_force=time_in_force,
            post_only=post_only, client_order_id=client_order_id, stp=stp, stop=stop,
            stop_price=stop_u, expires_at=expires_at,
        )  # fmt: skip
    if broken.field in unreadable:
        raise unreadable[broken.field]
    if broken.reason == Reason.MARKET_HALTED:
        raise ApiError(409, broken.reason, broken.message)
    code = "invalid_order" if broken.reason == Reason.INVALID else broken.reason
    raise bad_request(broken.message, code)


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


def oco_command(
    m: MarketSpec,
    *,
    command_id: str,
    user: str,
    side: Side,
    amount: str,
    price: str,
    stop_price: str,
    stop_limit_price: str | None,
    stp: SelfTrade,
) -> PlaceOco:
    """The ``place_oco`` command for an OCO list in decimal strings, or the first rule it
    breaks (``oco_violation``), answered as ``order_command`` answers."""
    bp, qp = m.base_precision, m.quote_precision
    amount_u = _units(amount, bp, "amount", Reason.BAD_AMOUNT, Reason.BAD_STEP)
    price_u = _units(price, qp, "price", Reason.BAD_PRICE, Reason.BAD_TICK)
    stop_u = _units(stop_price, qp, "stop_price", Reason.BAD_PRICE, Reason.BAD_TICK)
    limit_u = None
    if stop_limit_price is not None:
        limit_u = _units(
            stop_limit_price, qp, "stop_limit_price", Reason.BAD_PRICE, Reason.BAD_TICK
        )
    broken = oco_violation(m, user, side, amount_u, price_u, stop_u, limit_u)
    if broken is not None:
        raise _refusal(broken)
    return PlaceOco(
        id=command_id, user=user, market=m.name, side=side, amount=amount_u, price=price_u,
        stop_price=stop_u, stop_limit_price=limit_u, stp=stp,
    )  # fmt: skip


def amend_units(
    m: MarketSpec, price: str | None, amount: str | None
) -> tuple[int | None, int | None]:
    """An amend's new price and amount in units, each on the market's tick or step (the rest
    of its rules need the order: the engine checks them)."""
    bp, qp = m.base_precision, m.quote_precision
    price_u = (
        None if price is None else _units(price, qp, "price", Reason.BAD_PRICE, Reason.BAD_TICK)
    )
    amount_u = (
        None if amount is None else _units(amount, bp, "amount", Reason.BAD_AMOUNT, Reason.BAD_STEP)
    )
    if price_u is not None and (price_u <= 0 or price_u % m.tick):
        raise bad_request("price must be a positive multiple of the tick", Reason.BAD_TICK)
    if amount_u is not None and (amount_u <= 0 or amount_u % m.step):
        raise bad_request("amount must be a positive multiple of the step", Reason.BAD_STEP)
    return price_u, amount_u


def _refusal(broken: Violation) -> ApiError:
    if broken.reason == Reason.MARKET_HALTED:
        return ApiError(409, broken.reason, broken.message)
    code = "invalid_order" if broken.reason == Reason.INVALID else broken.reason
    return bad_request(broken.message, code)
