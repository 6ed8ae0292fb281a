"""The caller's history and the listed definitions as the read-only functions read them:
the asset and market catalog (Redis, completed from Postgres), and the ``orders`` and
``trades`` rows in the API's form. The queries function serves them natively; the Binance
dialect (functions/binance) translates the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import orjson
import redis

from shared.db import SharedConnection
from shared.money import format_units
from shared.redis_keys import ASSETS_KEY, MARKETS_KEY
from shared.redis_values import text


@dataclass(frozen=True, slots=True)
class MarketUnits:
    base: str
    quote: str
    base_precision: int
    quote_precision: int


class Catalog:
    """Asset and market definitions from Redis; with ``postgres``, anything Redis lacks is
    looked up (once per request) in the ``assets`` and ``markets`` tables."""

    def __init__(
        self,
        assets: dict[str, dict[str, Any]],
        markets: dict[str, dict[str, Any]],
        postgres: SharedConnection | None = None,
    ) -> None:
        self.assets = assets
        self.markets = markets
        self._postgres = postgres

    @staticmethod
    def load(client: redis.Redis, postgres: SharedConnection | None = None) -> Catalog:
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(ASSETS_KEY)
        pipe.hgetall(MARKETS_KEY)
        raw_assets, raw_markets = pipe.execute()
        return Catalog(decode_hash(raw_assets), decode_hash(raw_markets), postgres)

    def _complete(self) -> None:
        postgres, self._postgres = self._postgres, None
        if postgres is None:
            return
        for asset, precision in postgres.run("SELECT asset, precision FROM assets"):
            self.assets.setdefault(asset, {"asset": asset, "precision": int(precision)})
        for row in postgres.run(f"SELECT {', '.join(MARKET_FIELDS)} FROM markets"):
            self.markets.setdefault(row[0], dict(zip(MARKET_FIELDS, row, strict=True)))

    def has_asset(self, asset: str) -> bool:
        if asset not in self.assets:
            self._complete()
        return asset in self.assets

    def has_market(self, market: str) -> bool:
        if market not in self.markets:
            self._complete()
        return market in self.markets

    def precision(self, asset: str) -> int:
        if not self.has_asset(asset):
            raise LookupError(f"no definition of asset {asset!r}")
        return int(self.assets[asset]["precision"])

    def units(self, market: str) -> MarketUnits:
        if not self.has_market(market):
            raise LookupError(f"no definition of market {market!r}")
        m = self.markets[market]
        base, quote = str(m["base"]), str(m["quote"])
        return MarketUnits(base, quote, self.precision(base), self.precision(quote))


MARKET_FIELDS: Final = (
    "market", "base", "quote", "tick", "step", "min_amount", "min_notional", "maker_fee",
    "taker_fee", "status",
)  # fmt: skip
"""The fields of a market in ``md:markets`` and in the ``markets`` table."""


def decode_hash(raw: Mapping[Any, Any]) -> dict[str, dict[str, Any]]:
    return {text(key): orjson.loads(value) for key, value in raw.items()}


def fmt(units: Decimal | int | None, precision: int) -> str | None:
    return None if units is None else format_units(int(units), precision)


def money(units: Decimal | int, precision: int) -> str:
    return format_units(int(units), precision)


ORDER_COLUMNS: Final = (
    "order_id, market, side, order_type, price, amount, quote_amount, time_in_force,"
    " post_only, client_order_id, status, filled, filled_quote, fee, frozen, reason,"
    " created_ts, updated_ts, stop, stop_price, expires_at, list_id, triggered_ts"
)


def order_json(row: Sequence[Any], catalog: Catalog) -> dict[str, Any]:
    (order_id, market, side, order_type, price, amount, quote_amount, time_in_force,
     post_only, client_order_id, status, filled, filled_quote, fee, frozen, reason,
     created_ts, updated_ts, stop, stop_price, expires_at, list_id, triggered_ts) = row  # fmt: skip
    u = catalog.units(market)
    bp, qp = u.base_precision, u.quote_precision
    is_buy = side == "buy"
    return {
        "order_id": int(order_id),
        "market": market,
        "side": side,
        "type": order_type,
        "price": fmt(price, qp),
        "amount": fmt(amount, bp),
        "quote_amount": fmt(quote_amount, qp),
        "time_in_force": time_in_force,
        "post_only": post_only,
        "client_order_id": client_order_id,
        "status": status,
        "filled": money(filled, bp),
        "filled_quote": money(filled_quote, qp),
        "fee": money(fee, bp if is_buy else qp),
        "fee_asset": u.base if is_buy else u.quote,
        "frozen": money(frozen, qp if is_buy else bp),
        "reason": reason,
        "ts": int(created_ts),
        "updated_ts": int(updated_ts),
        # Only what the order has: a plain order reads as it always did.
        **({"stop": stop, "stop_price": fmt(stop_price, qp)} if stop is not None else {}),
        **({"triggered_ts": int(triggered_ts)} if triggered_ts is not None else {}),
        **({"expires_at": int(expires_at)} if expires_at is not None else {}),
        **({"list_id": int(list_id)} if list_id is not None else {}),
    }


def fill_json(row: Sequence[Any], catalog: Catalog) -> dict[str, Any]:
    trade_id, market, price, amount, quote, taker_side, ts, role, order_id, fee = row
    u = catalog.units(market)
    bp, qp = u.base_precision, u.quote_precision
    side = taker_side if role == "taker" else ("sell" if taker_side == "buy" else "buy")
    is_buy = side == "buy"
    return {
        "trade_id": int(trade_id),
        "market": market,
        "order_id": int(order_id),
        "side": side,
        "role": role,
        "price": money(price, qp),
        "amount": money(amount, bp),
        "quote": money(quote, qp),
        "fee": money(fee, bp if is_buy else qp),
        "fee_asset": u.base if is_buy else u.quote,
        "ts": int(ts),
    }


def fills_sql(role: str, market: bool, cursor: bool) -> str:
    """One role's side of the caller's fills: the index on (``role``_user, trade_id DESC)
    serves it, newest first, at most :n rows."""
    where = [f"{role}_user = :u"]
    if market:
        where.append("market = :m")
    if cursor:
        where.append("trade_id < :c")
    return (
        f"SELECT trade_id, market, price, amount, quote, taker_side, ts, '{role}' AS role,"
        f" {role}_order_id AS order_id, {role}_fee AS fee FROM trades"
        f" WHERE {' AND '.join(where)} ORDER BY trade_id DESC LIMIT :n"
    )
