"""A listed market as an entry of Binance's ``exchangeInfo``: status, assets, precisions, and
the filters made from the market's tick, step and minimums (``PRICE_FILTER``, ``LOT_SIZE``,
``MARKET_LOT_SIZE``, ``NOTIONAL``), with the order types the exchange has.
"""

from __future__ import annotations

from typing import Any, Final

from api.binance.numbers import fixed, step_text
from api.binance.symbols import symbol_of
from shared.money import parse_units

ORDER_TYPES: Final = ("LIMIT", "LIMIT_MAKER", "MARKET")
"""The stop, take-profit and OCO types come with their own work: refused until then."""
MAX_QTY_WHOLE: Final = 9_000_000_000
"""No maximum of the exchange's own; Binance's filters need one (its usual 9e9)."""
MAX_PRICE_WHOLE: Final = 1_000_000_000


def status_of(market_status: str) -> str:
    return "TRADING" if market_status == "open" else "HALT"


def symbol_info(
    market: dict[str, Any], base_precision: int, quote_precision: int
) -> dict[str, Any]:
    """The ``exchangeInfo`` entry of ``market`` (as ``md:markets`` holds it)."""
    bp, qp = base_precision, quote_precision
    tick = parse_units(market["tick"], qp)
    step = parse_units(market["step"], bp)
    min_amount = parse_units(market["min_amount"], bp)
    min_notional = parse_units(market["min_notional"], qp)
    max_qty = (MAX_QTY_WHOLE * 10**bp) // step * step
    max_price = (MAX_PRICE_WHOLE * 10**qp) // tick * tick
    return {
        "symbol": symbol_of(market["market"]),
        "status": status_of(market["status"]),
        "baseAsset": market["base"],
        "baseAssetPrecision": bp,
        "quoteAsset": market["quote"],
        "quotePrecision": qp,
        "quoteAssetPrecision": qp,
        "baseCommissionPrecision": bp,
        "quoteCommissionPrecision": qp,
        "orderTypes": list(ORDER_TYPES),
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": step_text(tick, qp),
                "maxPrice": step_text(max_price, qp),
                "tickSize": step_text(tick, qp),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": step_text(min_amount, bp),
                "maxQty": step_text(max_qty, bp),
                "stepSize": step_text(step, bp),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": step_text(min_amount, bp),
                "maxQty": step_text(max_qty, bp),
                "stepSize": step_text(step, bp),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": step_text(min_notional, qp),
                "applyMinToMarket": True,
                "maxNotional": fixed(9_000_000_000_000 * 10**qp, qp),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_TAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }
