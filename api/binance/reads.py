"""What the Binance dialect reads: the listed markets and the market data the matcher wrote
in Redis (docs/marketdata.md), the caller's balances, orders and fills in Postgres, in the
native API's form (api.history) for api.binance to translate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis

from api.binance.objects import Precisions
from api.binance.symbols import symbol_map
from api.history import ORDER_COLUMNS, Catalog, fill_json, order_json
from shared.db import SharedConnection
from shared.money import parse_units

OPEN: Final = ("open", "partially_filled")


@dataclass(frozen=True, slots=True)
class Listed:
    """The catalog and the symbol of each listed market."""

    catalog: Catalog
    symbols: dict[str, str]

    @staticmethod
    def load(client: redis.Redis, postgres: SharedConnection | None = None) -> Listed:
        catalog = Catalog.load(client, postgres)
        return Listed(catalog, symbol_map(sorted(catalog.markets)))

    def market(self, symbol: str) -> str | None:
        return self.symbols.get(symbol)

    def precisions(self, market: str) -> Precisions:
        u = self.catalog.units(market)
        return Precisions(u.base_precision, u.quote_precision)


def orders(
    db: SharedConnection, catalog: Catalog, where: str, order: str, **args: Any
) -> list[dict[str, Any]]:
    """The caller's orders matching ``where`` (constant SQL; values as ``args``)."""
    rows = db.run(f"SELECT {ORDER_COLUMNS} FROM orders WHERE {where} {order}", **args)
    return [order_json(row, catalog) for row in rows]


def order_by_id(
    db: SharedConnection, catalog: Catalog, user: str, order_id: int
) -> dict[str, Any] | None:
    found = orders(db, catalog, "order_id = :o AND user_id = :u", "", o=order_id, u=user)
    return found[0] if found else None


def order_by_client_id(
    db: SharedConnection, catalog: Catalog, user: str, client_order_id: str
) -> dict[str, Any] | None:
    """The newest of the caller's orders with this client id (unique among open ones)."""
    found = orders(
        db, catalog, "user_id = :u AND client_order_id = :c", "ORDER BY order_id DESC LIMIT 1",
        u=user, c=client_order_id,
    )  # fmt: skip
    return found[0] if found else None


def _fills_sql(role: str, extra: str) -> str:
    return (
        f"SELECT trade_id, market, price, amount, quote, taker_side, ts, '{role}' AS role,"
        f" {role}_order_id AS order_id, {role}_fee AS fee FROM trades"
        f" WHERE {role}_user = :u AND market = :m {extra}"
    )


def fills(
    db: SharedConnection, catalog: Catalog, user: str, market: str, extra: str, tail: str,
    **args: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """The caller's fills in ``market`` (as maker and as taker) with ``extra`` conditions."""
    rows = db.run(
        f"({_fills_sql('maker', extra)}) UNION ALL ({_fills_sql('taker', extra)}) {tail}",
        u=user, m=market, **args,
    )  # fmt: skip
    return [fill_json(row, catalog) for row in rows]


def balances(db: SharedConnection, user: str) -> dict[str, tuple[int, int]]:
    rows = db.run("SELECT asset, available, frozen FROM balances WHERE user_id = :u", u=user)
    return {asset: (int(available), int(frozen)) for asset, available, frozen in rows}


def json_or(raw: bytes | str | None, default: Any) -> Any:
    return default if raw is None else orjson.loads(raw)


def units(value: str, precision: int) -> int:
    return parse_units(value, precision)
