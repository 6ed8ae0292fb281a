"""Binance's errors: ``{"code": -NNNN, "msg": "..."}`` with Binance's HTTP status, so a
Binance client (ccxt) raises the matching exception. A ``BinanceError`` carries its code; the
native errors the shared code raises (the order rules, rate limits, an unavailable service)
are translated by ``binance_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import flask
import orjson

from api.http import ApiError

UNKNOWN: Final = -1000
DISCONNECTED: Final = -1001
UNAUTHORIZED: Final = -1002
TOO_MANY_REQUESTS: Final = -1003
TIMEOUT: Final = -1007
INVALID_TIMESTAMP: Final = -1021
INVALID_SIGNATURE: Final = -1022
ILLEGAL_CHARS: Final = -1100
TOO_MANY_PARAMETERS: Final = -1101
MANDATORY_PARAM: Final = -1102
UNREAD_PARAMETERS: Final = -1104
INVALID_TIF: Final = -1115
INVALID_ORDER_TYPE: Final = -1116
INVALID_SIDE: Final = -1117
BAD_INTERVAL: Final = -1120
BAD_SYMBOL: Final = -1121
INVALID_LISTEN_KEY: Final = -1125
FILTER_FAILURE: Final = -1013
NEW_ORDER_REJECTED: Final = -2010
CANCEL_REJECTED: Final = -2011
NO_SUCH_ORDER: Final = -2013
BAD_API_KEY_FMT: Final = -2014
REJECTED_MBX_KEY: Final = -2015

INSUFFICIENT_BALANCE: Final = "Account has insufficient balance for requested action."
WOULD_TAKE: Final = "Order would immediately match and take."
UNKNOWN_ORDER: Final = "Unknown order sent."
ORDER_DOES_NOT_EXIST: Final = "Order does not exist."
INVALID_KEY: Final = "Invalid API-key, IP, or permissions for action."


class BinanceError(ApiError):
    """An answer in Binance's shape: raise it anywhere below a Binance handler."""

    def __init__(
        self, status: int, code: int, msg: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, str(code), msg, headers)
        self.binance_code = code


def bad(code: int, msg: str) -> BinanceError:
    return BinanceError(400, code, msg)


def bad_symbol() -> BinanceError:
    return bad(BAD_SYMBOL, "Invalid symbol.")


def rejected_key() -> BinanceError:
    return BinanceError(401, REJECTED_MBX_KEY, INVALID_KEY)


# The native codes (api.http, api.listings, api.dispatch.rejection) as Binance's.
_FILTER: Final = {
    "bad_tick": "PRICE_FILTER",
    "bad_price": "PRICE_FILTER",
    "bad_step": "LOT_SIZE",
    "bad_amount": "LOT_SIZE",
    "below_min_amount": "LOT_SIZE",
    "below_min_notional": "NOTIONAL",
}
_REJECTED: Final = {
    "insufficient_funds": INSUFFICIENT_BALANCE,
    "would_take": WOULD_TAKE,
    "fok_not_filled": "Order would not be filled completely (FOK): nothing was done.",
    "duplicate_client_order_id": "Duplicate order sent.",
    "market_halted": "Market is closed.",
}


def binance_error(status: int, code: str, message: str) -> tuple[int, int, str]:
    """(HTTP status, Binance code, message) for a native error."""
    if code.lstrip("-").isdigit():  # a BinanceError's own code
        return status, int(code), message
    if code in _FILTER:
        return 400, FILTER_FAILURE, f"Filter failure: {_FILTER[code]}"
    if code in _REJECTED:
        return 400, NEW_ORDER_REJECTED, _REJECTED[code]
    if code == "unknown_market":
        return 400, BAD_SYMBOL, "Invalid symbol."
    if code in ("order_not_found", "not_your_order"):
        return 400, NO_SUCH_ORDER, ORDER_DOES_NOT_EXIST
    if status == 429:
        return 429, TOO_MANY_REQUESTS, f"Too many requests; {message}."
    if status in (401, 403):
        return 401, REJECTED_MBX_KEY, INVALID_KEY
    if status == 503:
        return 503, DISCONNECTED, "Internal error; unable to process your request. Try again."
    if status >= 500:
        return 500, UNKNOWN, message
    if status == 400:
        return 400, MANDATORY_PARAM, message
    return status, UNKNOWN, message


def error_answer(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> flask.Response:
    """``api.http.Api``'s error format for the Binance function."""
    status, binance_code, msg = binance_error(status, code, message)
    return flask.Response(
        orjson.dumps({"code": binance_code, "msg": msg}),
        status=status,
        headers=dict(headers or {}),
        mimetype="application/json",
    )
