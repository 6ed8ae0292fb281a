"""The exchange's orders, fills, trades, candles and tickers (in the native API's form: decimal
strings, ``api.history``, docs/marketdata.md) as Binance's objects, numbers padded to the
asset's precision (prices and quote values in the quote asset's, quantities in the base
asset's, a commission in the asset it is paid in).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from api.binance.numbers import fixed, fixed_text, ratio
from api.binance.symbols import symbol_of

_EXPIRED: Final = {"ioc_expired": "EXPIRED", "no_liquidity": "EXPIRED"}
_STATUS: Final = {"open": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED"}
STP_MODE: Final = {
    "cancel_taker": "EXPIRE_TAKER",
    "cancel_maker": "EXPIRE_MAKER",
    "cancel_both": "EXPIRE_BOTH",
}


@dataclass(frozen=True, slots=True)
class Precisions:
    base: int
    quote: int


def order_status(status: str, reason: str | None) -> str:
    """A native status (and why a cancelled order ended) as Binance's: an IOC or market
    remainder that found no liquidity is ``EXPIRED``, one cancelled by self-trade prevention
    ``EXPIRED_IN_MATCH``, one the user cancelled ``CANCELED``."""
    if status in _STATUS:
        return _STATUS[status]
    if reason in _EXPIRED:
        return _EXPIRED[reason]
    if reason == "self_trade_prevented":
        return "EXPIRED_IN_MATCH"
    return "CANCELED"


def order_type(native_type: str, post_only: bool) -> str:
    if native_type == "market":
        return "MARKET"
    return "LIMIT_MAKER" if post_only else "LIMIT"


def order_object(order: dict[str, Any], p: Precisions) -> dict[str, Any]:
    """An order (``api.history.order_json``) as Binance's order object (GET /api/v3/order)."""
    kind = order_type(order["type"], order["post_only"])
    status = order_status(order["status"], order.get("reason"))
    updated = int(order.get("updated_ts") or order["ts"])
    return {
        "symbol": symbol_of(order["market"]),
        "orderId": int(order["order_id"]),
        "orderListId": -1,
        "clientOrderId": order.get("client_order_id") or "",
        "price": fixed_text(order.get("price"), p.quote),
        "origQty": fixed_text(order.get("amount"), p.base),
        "executedQty": fixed_text(order.get("filled"), p.base),
        "cummulativeQuoteQty": fixed_text(order.get("filled_quote"), p.quote),
        "status": status,
        "timeInForce": "GTC" if kind != "LIMIT" else order["time_in_force"],
        "type": kind,
        "side": order["side"].upper(),
        "stopPrice": fixed_text(None, p.quote),
        "icebergQty": fixed_text(None, p.base),
        "time": int(order["ts"]),
        "updateTime": updated,
        "isWorking": status in ("NEW", "PARTIALLY_FILLED"),
        "workingTime": int(order["ts"]),
        "origQuoteOrderQty": fixed_text(order.get("quote_amount"), p.quote),
        "selfTradePreventionMode": STP_MODE.get(str(order.get("stp")), "EXPIRE_TAKER"),
    }


def placed_object(
    order: dict[str, Any], fills: list[dict[str, Any]], p: Precisions, resp_type: str
) -> dict[str, Any]:
    """The answer to POST /api/v3/order: ``ACK``, ``RESULT`` or ``FULL`` (with the fills)."""
    full = order_object(order, p)
    ack = {
        "symbol": full["symbol"],
        "orderId": full["orderId"],
        "orderListId": -1,
        "clientOrderId": full["clientOrderId"],
        "transactTime": full["time"],
    }
    if resp_type == "ACK":
        return ack
    result = {
        **ack,
        **{k: full[k] for k in ("price", "origQty", "executedQty", "cummulativeQuoteQty")},
        **{k: full[k] for k in ("status", "timeInForce", "type", "side", "workingTime")},
        "origQuoteOrderQty": full["origQuoteOrderQty"],
        "selfTradePreventionMode": full["selfTradePreventionMode"],
    }
    if resp_type == "RESULT":
        return result
    return {**result, "fills": [fill_object(f, p) for f in fills]}


def fill_object(fill: dict[str, Any], p: Precisions) -> dict[str, Any]:
    """One of an order's fills (``api.history.fill_json``) as in a FULL answer."""
    commission_precision = p.base if fill["side"] == "buy" else p.quote
    return {
        "price": fixed_text(fill["price"], p.quote),
        "qty": fixed_text(fill["amount"], p.base),
        "commission": fixed_text(fill["fee"], commission_precision),
        "commissionAsset": fill["fee_asset"],
        "tradeId": int(fill["trade_id"]),
    }


def my_trade_object(fill: dict[str, Any], p: Precisions) -> dict[str, Any]:
    """One of the caller's fills as a row of GET /api/v3/myTrades (no ``isBuyerMaker``: ccxt
    would take the side from it, the taker's, instead of the caller's)."""
    commission_precision = p.base if fill["side"] == "buy" else p.quote
    return {
        "symbol": symbol_of(fill["market"]),
        "id": int(fill["trade_id"]),
        "orderId": int(fill["order_id"]),
        "orderListId": -1,
        "price": fixed_text(fill["price"], p.quote),
        "qty": fixed_text(fill["amount"], p.base),
        "quoteQty": fixed_text(fill["quote"], p.quote),
        "commission": fixed_text(fill["fee"], commission_precision),
        "commissionAsset": fill["fee_asset"],
        "time": int(fill["ts"]),
        "isBuyer": fill["side"] == "buy",
        "isMaker": fill["role"] == "maker",
        "isBestMatch": True,
    }


def public_trade(trade: dict[str, Any], p: Precisions) -> dict[str, Any]:
    """A trade of ``md:trades`` as a row of GET /api/v3/trades."""
    return {
        "id": int(trade["trade_id"]),
        "price": fixed_text(trade["price"], p.quote),
        "qty": fixed_text(trade["amount"], p.base),
        "quoteQty": fixed_text(trade["quote"], p.quote),
        "time": int(trade["ts"]),
        "isBuyerMaker": trade["taker_side"] == "sell",
        "isBestMatch": True,
    }


def agg_trade(trade: dict[str, Any], p: Precisions) -> dict[str, Any]:
    """A trade as a row of GET /api/v3/aggTrades: each trade is its own aggregate (the
    aggregate id is the trade id)."""
    trade_id = int(trade["trade_id"])
    return {
        "a": trade_id,
        "p": fixed_text(trade["price"], p.quote),
        "q": fixed_text(trade["amount"], p.base),
        "f": trade_id,
        "l": trade_id,
        "T": int(trade["ts"]),
        "m": trade["taker_side"] == "sell",
        "M": True,
    }


def kline_row(candle: list[Any], interval_ms: int, p: Precisions) -> list[Any]:
    """A candle of ``md:kline`` (``[open_time, o, h, l, c, volume, quote_volume, trades]``)
    as Binance's kline row. The taker-buy volumes are not kept: written as zero."""
    open_time, o, h, low, c, volume, quote_volume, trades = candle
    return [
        int(open_time),
        fixed_text(o, p.quote),
        fixed_text(h, p.quote),
        fixed_text(low, p.quote),
        fixed_text(c, p.quote),
        fixed_text(volume, p.base),
        int(open_time) + interval_ms - 1,
        fixed_text(quote_volume, p.quote),
        int(trades),
        fixed_text(None, p.base),
        fixed_text(None, p.quote),
        "0",
    ]


def ticker_24hr(
    ticker: dict[str, Any],
    book: tuple[list[str] | None, list[str] | None],
    p: Precisions,
    now_ms: int,
) -> dict[str, Any]:
    """``md:ticker`` (the native 24 h ticker) and the best bid and ask as Binance's 24 h
    ticker. A market that never traded has zero prices."""
    bid, ask = book
    last, open_ = ticker.get("last"), ticker.get("open")
    volume = Decimal(ticker.get("volume") or "0")
    quote_volume = Decimal(ticker.get("quote_volume") or "0")
    change = Decimal(last) - Decimal(open_) if last and open_ else Decimal(0)
    percent = ratio(change * 100, Decimal(open_), 3) if open_ else "0.000"
    close_time = int(ticker.get("ts") or now_ms)
    return {
        "symbol": symbol_of(ticker["market"]),
        "priceChange": fixed(int(change.scaleb(p.quote)), p.quote),
        "priceChangePercent": percent,
        "weightedAvgPrice": ratio(quote_volume, volume, p.quote) if volume else "0",
        "prevClosePrice": fixed_text(open_, p.quote),
        "lastPrice": fixed_text(last, p.quote),
        "lastQty": fixed_text(None, p.base),
        "bidPrice": fixed_text(bid[0] if bid else None, p.quote),
        "bidQty": fixed_text(bid[1] if bid else None, p.base),
        "askPrice": fixed_text(ask[0] if ask else None, p.quote),
        "askQty": fixed_text(ask[1] if ask else None, p.base),
        "openPrice": fixed_text(open_, p.quote),
        "highPrice": fixed_text(ticker.get("high"), p.quote),
        "lowPrice": fixed_text(ticker.get("low"), p.quote),
        "volume": fixed_text(ticker.get("volume") or "0", p.base),
        "quoteVolume": fixed_text(ticker.get("quote_volume") or "0", p.quote),
        "openTime": close_time - 24 * 3600 * 1000,
        "closeTime": close_time,
        "firstId": -1,
        "lastId": -1,
        "count": int(ticker.get("trades") or 0),
    }
