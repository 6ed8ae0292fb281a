"""The Binance dialect: the exchange under Binance's spot REST paths (``/api/v3/...``), so a
Binance client (ccxt's ``binance``) trades here unchanged. docs/binance-api.md says how to
point a bot here and what differs from Binance.

A thin translation over the native API's code: symbols, numbers, filters, errors and
signatures come from api/binance (pure), orders go through the same rules
(api.listings.order_command, shared/order_rules.py) and the same command path
(api.dispatch) to the matcher, and reads come from the same Redis market data and Postgres
rows as the queries function (api.history). Errors are Binance's ``{"code", "msg"}`` with
Binance's statuses (api.binance.errors).

Signed routes take the exchange's own API keys: ``X-MBX-APIKEY`` names the key, and
``signature`` is the HMAC-SHA256 with the key's secret of the query string and body as sent
(api.binance.signature); ``timestamp`` must lie within ``recvWindow`` (default 5000 ms, at
most 60000). Reads need the ``read`` scope, orders the ``trade`` scope; a key without it is
refused as Binance refuses it (401, -2015). A signature is accepted once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final, cast
from urllib.parse import parse_qsl

import flask
import orjson
import redis

from api.auth import Principal, first_use, load_api_key
from api.binance import errors as E  # noqa: N812 - Binance's codes read as E.BAD_SYMBOL
from api.binance import reads
from api.binance.markets import symbol_info
from api.binance.numbers import fixed, fixed_text, plain
from api.binance.objects import (
    Precisions,
    agg_trade,
    kline_row,
    my_trade_object,
    order_object,
    placed_object,
    public_trade,
    ticker_24hr,
)
from api.binance.signature import (
    DEFAULT_RECV_WINDOW_MS,
    MAX_RECV_WINDOW_MS,
    signed_part,
    timestamp_fits,
    verify,
)
from api.binance.symbols import symbol_of
from api.dispatch import Services, new_command_id, services
from api.http import Api, ApiRequest, api_config, json_response
from api.listings import load_market, order_command
from api.openapi import query
from shared import listen_keys, logs
from shared.instance import close_members, lazy, per_instance
from shared.messages import CancelAll, CancelOrder, SelfTrade, TimeInForce
from shared.money import MoneyError, parse_decimal
from shared.order_rules import MAX_CLIENT_ORDER_ID
from shared.redis_keys import KLINE_INTERVALS, depth_key, kline_key, ticker_key, trades_key

logs.setup()
log = logging.getLogger("api.binance")

api = Api("binance", errors=E.error_answer)

KLINE_MS: Final = dict(KLINE_INTERVALS)
"""The intervals the exchange keeps candles for; Binance's others are refused (-1120)."""
KLINES_DEFAULT, KLINES_MAX = 500, 1000
TRADES_DEFAULT, TRADES_MAX = 500, 1000
HISTORY_DEFAULT, HISTORY_MAX = 500, 1000
DEPTH_DEFAULT, DEPTH_MAX = 100, 5000
_NOT_YET: Final = frozenset(
    {"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT", "OCO"}
)
_STP: Final[dict[str, SelfTrade]] = {
    "EXPIRE_TAKER": "cancel_taker",
    "EXPIRE_MAKER": "cancel_maker",
    "EXPIRE_BOTH": "cancel_both",
}
_TIF: Final[dict[str, TimeInForce]] = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK"}
_TIMEOUT_MSG: Final = (
    "Timeout waiting for response from backend server. Send status unknown; "
    "execution status unknown."
)


def binance(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return api(request)


class BinanceServices:
    """What the dialect holds for its instance's life beside the command-sending functions'
    services (api.dispatch), each member built on its first use (shared.instance): the public
    market routes read only this Redis, so they build no auth context (no keys read, no
    Pub/Sub, no database), as in the queries function."""

    @lazy
    def market_redis(self) -> redis.Redis:
        """Market data; a Redis that does not answer within 5 s answers 503 (the auth
        context's client has no timeout: it waits on the matcher's replies)."""
        return redis.Redis.from_url(
            api_config().redis_url, socket_timeout=5.0, socket_connect_timeout=5.0
        )

    def close(self) -> None:
        close_members(self)


@per_instance
def binance_services() -> BinanceServices:
    return BinanceServices()


def market_redis() -> redis.Redis:
    return binance_services().market_redis


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------


class Params:
    """The query string and a form body, decoded, as Binance reads them: every name once."""

    def __init__(self, req: ApiRequest) -> None:
        self.values: dict[str, str] = {}
        try:
            pairs = parse_qsl(req.query_string.decode(), keep_blank_values=True)
            if req.body:
                pairs += parse_qsl(req.body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise E.bad(E.ILLEGAL_CHARS, "Illegal characters found in a parameter.") from None
        for name, value in pairs:
            if name in self.values:
                raise E.bad(E.TOO_MANY_PARAMETERS, "Duplicate values for a parameter detected.")
            self.values[name] = value

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value == "":
            raise E.bad(
                E.MANDATORY_PARAM,
                f"Parameter '{name}' was empty.",
            )
        return value

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise E.bad(
                E.MANDATORY_PARAM,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return value

    def integer(self, name: str, low: int = 0, high: int = 2**63 - 1) -> int | None:
        raw = self.text(name)
        if raw is None:
            return None
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            raise E.bad(
                E.ILLEGAL_CHARS,
                f"Illegal characters found in parameter '{name}'; legal range is {low}..{high}.",
            )
        return int(raw)

    def limit(self, default: int, maximum: int) -> int:
        value = self.integer("limit", 1, maximum)
        return default if value is None else value

    def decimal(self, name: str) -> str | None:
        """A decimal parameter as the native rules read it (``plain``), or -1100 when it is
        not a plain decimal number at all (a sign, an exponent, letters)."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            parse_decimal(plain(raw), name)
        except MoneyError:
            raise E.bad(
                E.ILLEGAL_CHARS,
                f"Illegal characters found in parameter '{name}'; legal range is "
                "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            ) from None
        return plain(raw)

    def unsupported(self, *names: str) -> None:
        for name in names:
            if name in self.values:
                raise E.bad(-1106, f"Parameter '{name}' sent when not required.")


def _listed(postgres: bool = False) -> reads.Listed:
    return reads.Listed.load(market_redis(), services().db if postgres else None)


def _market(listed: reads.Listed, params: Params) -> str:
    market = listed.market(params.required("symbol"))
    if market is None:
        raise E.bad_symbol()
    return market


def _symbols(listed: reads.Listed, params: Params) -> list[str]:
    """``symbol=X``, ``symbols=["X","Y"]``, or every listed market."""
    one, many = params.text("symbol"), params.text("symbols")
    if one is not None and many is not None:
        raise E.bad(-1128, "Combination of optional parameters invalid.")
    if one is not None:
        return [_market(listed, params)]
    if many is None:
        return sorted(listed.symbols.values())
    try:
        names = orjson.loads(many)
    except orjson.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise E.bad(E.ILLEGAL_CHARS, "Illegal characters found in parameter 'symbols'.")
    out = []
    for name in names:
        market = listed.market(name)
        if market is None:
            raise E.bad_symbol()
        out.append(market)
    return out


# --------------------------------------------------------------------------------------------
# signed requests
# --------------------------------------------------------------------------------------------


def _api_key(req: ApiRequest, svc: Services, scope: str) -> tuple[Principal, str]:
    key_id = req.header("X-MBX-APIKEY")
    if not key_id:
        raise E.BinanceError(401, E.BAD_API_KEY_FMT, "API-key format invalid.")
    key = load_api_key(svc.auth, key_id)
    if key is None:
        raise E.rejected_key()
    if scope not in key.scopes:
        raise E.rejected_key()
    req.user_id = key.user_id
    return key.principal(), key.secret


def _signed(req: ApiRequest, params: Params, scope: str) -> tuple[Services, Principal]:
    """The caller of a signed request, or Binance's refusal."""
    svc = services()
    principal, secret = _api_key(req, svc, scope)
    signed = signed_part(req.query_string, req.body)
    if signed.signature is None:
        params.required("signature")
    timestamp = params.integer("timestamp")
    if timestamp is None:
        params.required("timestamp")
        raise AssertionError  # pragma: no cover - required() raised
    window = params.integer("recvWindow", 1, MAX_RECV_WINDOW_MS)
    if not verify(secret, signed):
        raise E.bad(E.INVALID_SIGNATURE, "Signature for this request is not valid.")
    if not timestamp_fits(timestamp, window or DEFAULT_RECV_WINDOW_MS, _now_ms()):
        raise E.bad(E.INVALID_TIMESTAMP, "Timestamp for this request is outside of the recvWindow.")
    assert signed.signature is not None
    if not first_use(
        svc.auth, principal.key_id or "", signed.signature.lower(), 2 * MAX_RECV_WINDOW_MS
    ):
        raise E.bad(E.INVALID_SIGNATURE, "This signed request was already used.")
    return svc, principal


def _trading(req: ApiRequest, params: Params) -> tuple[Services, Principal]:
    svc, principal = _signed(req, params, "trade")
    cfg, limiter = svc.config, svc.auth.limiter
    limiter.hit("trade:user", principal.user_id, cfg.trade_rate_per_user, cfg.trade_rate_window_s)
    limiter.hit("trade:ip", req.client_ip, cfg.trade_rate_per_ip, cfg.trade_rate_window_s)
    return svc, principal


# --------------------------------------------------------------------------------------------
# route documentation
# --------------------------------------------------------------------------------------------

_SYMBOL_OPTIONAL: Final = query("symbol", {"type": "string", "example": "ETHUSDT"}, "ETHUSDT")
_SYMBOL: Final = {**_SYMBOL_OPTIONAL, "required": True}
_LIMIT: Final = query("limit", {"type": "integer", "minimum": 1})
_START: Final = query("startTime", {"type": "integer"}, "ms since the epoch")
_END: Final = query("endTime", {"type": "integer"}, "ms since the epoch")
_SIGNED: Final = (
    query("timestamp", {"type": "integer"}, "ms since the epoch", required=True),
    query("recvWindow", {"type": "integer", "maximum": MAX_RECV_WINDOW_MS}),
    query("signature", {"type": "string"}, "HMAC-SHA256 of query + body", required=True),
)
_ANY: Final = {"description": "Binance's answer", "content": {"application/json": {}}}
_ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {"code": {"type": "integer"}, "msg": {"type": "string"}},
    "required": ["code", "msg"],
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    }
    if headers:
        out["headers"] = headers
    return out


_ERRORS: Final = {
    400: _error("Refused: Binance's code and message (docs/binance-api.md, Errors)"),
    401: _error("No, an unknown, or an insufficient API key (-2014, -2015)"),
    413: _error("The body is over the size limit"),
    429: _error(
        "Over the rate limit (-1003)",
        {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    ),
    503: _error("A backing service is unavailable or the matcher did not answer in time"),
}


def _route(
    method: str,
    path: str,
    summary: str,
    operation_id: str,
    auth: str = "none",
    params: tuple[dict[str, Any], ...] = (),
) -> Callable[[Callable[[ApiRequest], flask.Response]], Callable[[ApiRequest], flask.Response]]:
    signed = auth == "binance_signed"
    statuses = (400, 401, 413, 429, 503) if auth != "none" else (400, 413, 429, 503)
    return api.route(
        method, path, summary=summary, operation_id=operation_id, tag="binance", auth=auth,
        params=(*params, *(_SIGNED if signed else ())),
        responses={200: _ANY, **{s: _ERRORS[s] for s in statuses}},
        description="Binance's spot API (docs/binance-api.md); errors are {code, msg}.",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------------


@_route("GET", "/api/v3/ping", "Binance: connectivity", "binancePing")
def ping(req: ApiRequest) -> flask.Response:
    return json_response({})


@_route("GET", "/api/v3/time", "Binance: the server's clock", "binanceTime")
def server_time(req: ApiRequest) -> flask.Response:
    return json_response({"serverTime": _now_ms()})


@_route(
    "GET", "/api/v3/exchangeInfo", "Binance: symbols and their filters", "binanceExchangeInfo",
    params=(_SYMBOL_OPTIONAL, query("symbols", {"type": "string"}, 'JSON array: ["ETHUSDT"]')),
)  # fmt: skip
def exchange_info(req: ApiRequest) -> flask.Response:
    params = Params(req)
    listed = _listed()
    markets = _symbols(listed, params)
    cat = listed.catalog
    cfg = api_config()
    symbols = [
        symbol_info(
            cat.markets[m], cat.precision(cat.markets[m]["base"]),
            cat.precision(cat.markets[m]["quote"]),
        )
        for m in markets
    ]  # fmt: skip
    return json_response(
        {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": cfg.trade_rate_window_s,
                    "limit": cfg.trade_rate_per_user,
                }
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }
    )


def _depth(market: str) -> dict[str, Any]:
    return dict(
        reads.json_or(market_redis().get(depth_key(market)), {"bids": [], "asks": [], "seq": 0})
    )


@_route("GET", "/api/v3/depth", "Binance: the order book", "binanceDepth", params=(_SYMBOL, _LIMIT))
def depth(req: ApiRequest) -> flask.Response:
    params = Params(req)
    listed = _listed()
    market = _market(listed, params)
    limit = params.limit(DEPTH_DEFAULT, DEPTH_MAX)
    p = listed.precisions(market)
    book = _depth(market)

    def side(levels: list[list[str]]) -> list[list[str]]:
        return [[fixed_text(px, p.quote), fixed_text(qty, p.base)] for px, qty in levels[:limit]]

    return json_response(
        {"lastUpdateId": int(book["seq"]), "bids": side(book["bids"]), "asks": side(book["asks"])}
    )


def _recent_trades(market: str) -> list[dict[str, Any]]:
    """The trades ``md:trades`` keeps (the newest 1000), oldest first."""
    raw = market_redis().lrange(trades_key(market), 0, -1)
    return [orjson.loads(t) for t in reversed(raw)]


@_route(
    "GET", "/api/v3/trades", "Binance: recent trades", "binanceTrades", params=(_SYMBOL, _LIMIT)
)
def trades(req: ApiRequest) -> flask.Response:
    params = Params(req)
    listed = _listed()
    market = _market(listed, params)
    limit = params.limit(TRADES_DEFAULT, TRADES_MAX)
    p = listed.precisions(market)
    return json_response([public_trade(t, p) for t in _recent_trades(market)[-limit:]])


@_route(
    "GET", "/api/v3/aggTrades", "Binance: trades (each its own aggregate)", "binanceAggTrades",
    params=(_SYMBOL, query("fromId", {"type": "integer"}), _START, _END, _LIMIT),
)  # fmt: skip
def agg_trades(req: ApiRequest) -> flask.Response:
    params = Params(req)
    listed = _listed()
    market = _market(listed, params)
    limit = params.limit(TRADES_DEFAULT, TRADES_MAX)
    from_id, start, end = (params.integer(n) for n in ("fromId", "startTime", "endTime"))
    p = listed.precisions(market)
    rows = _recent_trades(market)
    if from_id is not None:
        rows = [t for t in rows if int(t["trade_id"]) >= from_id][:limit]
    elif start is not None or end is not None:
        lo, hi = start or 0, end if end is not None else 2**63
        rows = [t for t in rows if lo <= int(t["ts"]) <= hi][:limit]
    else:
        rows = rows[-limit:]
    return json_response([agg_trade(t, p) for t in rows])


@_route(
    "GET", "/api/v3/klines", "Binance: candles", "binanceKlines",
    params=(
        _SYMBOL, query("interval", {"type": "string", "enum": list(KLINE_MS)}, required=True),
        _START, _END, _LIMIT,
    ),
)  # fmt: skip
def klines(req: ApiRequest) -> flask.Response:
    params = Params(req)
    listed = _listed()
    market = _market(listed, params)
    interval = params.required("interval")
    if interval not in KLINE_MS:
        raise E.bad(E.BAD_INTERVAL, f"Invalid interval: this exchange has {', '.join(KLINE_MS)}.")
    start, end = params.integer("startTime"), params.integer("endTime")
    limit = params.limit(KLINES_DEFAULT, KLINES_MAX)
    key = kline_key(market, interval)
    client = market_redis()
    members: list[Any]
    if start is not None:
        members = client.zrangebyscore(
            key, start, "+inf" if end is None else end, start=0, num=limit
        )
    elif end is not None:
        members = client.zrevrangebyscore(key, end, "-inf", start=0, num=limit)[::-1]
    else:
        members = client.zrange(key, -limit, -1)
    p = listed.precisions(market)
    rows = cast(list[bytes], members)
    return json_response([kline_row(orjson.loads(m), KLINE_MS[interval], p) for m in rows])


def _tickers(listed: reads.Listed, markets: list[str]) -> list[dict[str, Any]]:
    client = market_redis()
    pipe = client.pipeline(transaction=False)
    for m in markets:
        pipe.get(ticker_key(m))
        pipe.get(depth_key(m))
    got = pipe.execute()
    out = []
    now = _now_ms()
    for i, m in enumerate(markets):
        ticker = reads.json_or(got[2 * i], {"market": m})
        book = reads.json_or(got[2 * i + 1], {"bids": [], "asks": []})
        best = (
            book["bids"][0] if book["bids"] else None,
            book["asks"][0] if book["asks"] else None,
        )
        out.append(ticker_24hr(ticker, best, listed.precisions(m), now))
    return out


def _one_or_many(params: Params, rows: list[dict[str, Any]]) -> flask.Response:
    return json_response(rows[0] if params.text("symbol") is not None else rows)


_TICKER_PARAMS: Final = (_SYMBOL_OPTIONAL, query("symbols", {"type": "string"}, "JSON array"))


@_route(
    "GET", "/api/v3/ticker/24hr", "Binance: 24 h tickers", "binanceTicker24hr",
    params=_TICKER_PARAMS,
)  # fmt: skip
def ticker_24h(req: ApiRequest) -> flask.Response:
    params = Params(req)
    listed = _listed()
    return _one_or_many(params, _tickers(listed, _symbols(listed, params)))


@_route(
    "GET", "/api/v3/ticker/price", "Binance: last prices", "binanceTickerPrice",
    params=_TICKER_PARAMS,
)  # fmt: skip
def ticker_price(req: ApiRequest) -> flask.Response:
    params = Params(req)
    listed = _listed()
    rows = _tickers(listed, _symbols(listed, params))
    return _one_or_many(params, [{"symbol": t["symbol"], "price": t["lastPrice"]} for t in rows])


@_route(
    "GET", "/api/v3/ticker/bookTicker", "Binance: best bid and ask", "binanceBookTicker",
    params=_TICKER_PARAMS,
)  # fmt: skip
def book_ticker(req: ApiRequest) -> flask.Response:
    params = Params(req)
    listed = _listed()
    rows = _tickers(listed, _symbols(listed, params))
    keys = ("symbol", "bidPrice", "bidQty", "askPrice", "askQty")
    return _one_or_many(params, [{k: t[k] for k in keys} for t in rows])


@_route(
    "GET", "/api/v3/avgPrice", "Binance: average price of 5 minutes", "binanceAvgPrice",
    params=(_SYMBOL,),
)  # fmt: skip
def avg_price(req: ApiRequest) -> flask.Response:
    """The volume-weighted price of the trades of the last five minutes (the last trade's
    price when there were none)."""
    params = Params(req)
    listed = _listed()
    market = _market(listed, params)
    p = listed.precisions(market)
    now = _now_ms()
    since = now - 5 * 60_000
    candles: list[Any] = market_redis().zrangebyscore(
        kline_key(market, "1m"), since - 60_000, "+inf"
    )
    base = quote = 0
    close_time = now
    for member in candles:
        c = orjson.loads(member)
        if int(c[0]) + 60_000 > since:
            base += reads.units(c[5], p.base)
            quote += reads.units(c[6], p.quote)
            close_time = int(c[0]) + 59_999
    if base:
        price = fixed(quote * 10**p.base // base, p.quote)
    else:
        ticker = reads.json_or(market_redis().get(ticker_key(market)), {})
        price = fixed_text(ticker.get("last"), p.quote)
    return json_response({"mins": 5, "price": price, "closeTime": close_time})


# --------------------------------------------------------------------------------------------
# the user data stream's listen keys (X-MBX-APIKEY only, as on Binance)
# --------------------------------------------------------------------------------------------

_LISTEN_KEY: Final = query("listenKey", {"type": "string"}, required=True)


def _listen_key(req: ApiRequest) -> tuple[Services, Principal, str]:
    params = Params(req)
    svc = services()
    principal, _ = _api_key(req, svc, "read")
    key = params.required("listenKey")
    return svc, principal, key


@_route(
    "POST", "/api/v3/userDataStream", "Binance: a listen key for the user data stream",
    "binanceNewListenKey", auth="binance_key",
)  # fmt: skip
def new_listen_key(req: ApiRequest) -> flask.Response:
    svc = services()
    principal, _ = _api_key(req, svc, "read")
    try:
        key = listen_keys.create(svc.redis, principal.user_id)
    except listen_keys.TooManyListenKeysError:
        raise E.bad(
            E.UNKNOWN, f"Too many listen keys: at most {listen_keys.MAX_PER_USER} at once."
        ) from None
    return json_response({"listenKey": key})


@_route(
    "PUT", "/api/v3/userDataStream", "Binance: keep a listen key alive", "binanceKeepListenKey",
    auth="binance_key", params=(_LISTEN_KEY,),
)  # fmt: skip
def keep_listen_key(req: ApiRequest) -> flask.Response:
    svc, principal, key = _listen_key(req)
    if not listen_keys.keep_alive(svc.redis, principal.user_id, key):
        raise E.bad(E.INVALID_LISTEN_KEY, "This listenKey does not exist.")
    return json_response({})


@_route(
    "DELETE", "/api/v3/userDataStream", "Binance: close a listen key", "binanceCloseListenKey",
    auth="binance_key", params=(_LISTEN_KEY,),
)  # fmt: skip
def close_listen_key(req: ApiRequest) -> flask.Response:
    svc, principal, key = _listen_key(req)
    if not listen_keys.close(svc.redis, principal.user_id, key):
        raise E.bad(E.INVALID_LISTEN_KEY, "This listenKey does not exist.")
    return json_response({})


# --------------------------------------------------------------------------------------------
# signed: the account
# --------------------------------------------------------------------------------------------


@_route("GET", "/api/v3/account", "Binance: balances", "binanceAccount", auth="binance_signed")
def account(req: ApiRequest) -> flask.Response:
    params = Params(req)
    svc, principal = _signed(req, params, "read")
    listed = _listed(postgres=True)
    held = reads.balances(svc.db, principal.user_id)
    rows = []
    for asset in sorted(set(listed.catalog.assets) | set(held)):
        precision = listed.catalog.precision(asset)
        free, locked = held.get(asset, (0, 0))
        if params.text("omitZeroBalances") == "true" and not (free or locked):
            continue
        rows.append(
            {"asset": asset, "free": fixed(free, precision), "locked": fixed(locked, precision)}
        )
    return json_response(
        {
            "makerCommission": 0, "takerCommission": 0, "buyerCommission": 0,
            "sellerCommission": 0, "canTrade": "trade" in principal.scopes,
            "canWithdraw": False, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": _now_ms(),
            "accountType": "SPOT", "balances": rows, "permissions": ["SPOT"],
            "uid": 0,
        }
    )  # fmt: skip


@_route(
    "GET", "/api/v3/account/commission", "Binance: a symbol's fee rates",
    "binanceAccountCommission", auth="binance_signed", params=(_SYMBOL,),
)  # fmt: skip
def commission(req: ApiRequest) -> flask.Response:
    params = Params(req)
    _signed(req, params, "read")
    listed = _listed()
    market = _market(listed, params)
    m = listed.catalog.markets[market]
    zero = fixed(0, 8)

    def rate(value: str) -> str:
        return fixed_text(value, 8)

    return json_response(
        {
            "symbol": symbol_of(market),
            "standardCommission": {
                "maker": rate(m["maker_fee"]), "taker": rate(m["taker_fee"]),
                "buyer": zero, "seller": zero,
            },
            "specialCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
            "taxCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
            "discount": {
                "enabledForAccount": False, "enabledForSymbol": False,
                "discountAsset": None, "discount": zero,
            },
        }
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# signed: orders
# --------------------------------------------------------------------------------------------

_ORDER_PARAMS: Final = (
    _SYMBOL,
    query("side", {"type": "string", "enum": ["BUY", "SELL"]}, required=True),
    query("type", {"type": "string", "enum": ["LIMIT", "LIMIT_MAKER", "MARKET"]}, required=True),
    query("timeInForce", {"type": "string", "enum": ["GTC", "IOC", "FOK"]}),
    query("quantity", {"type": "string"}),
    query("quoteOrderQty", {"type": "string"}),
    query("price", {"type": "string"}),
    query("newClientOrderId", {"type": "string", "maxLength": MAX_CLIENT_ORDER_ID}),
    query("newOrderRespType", {"type": "string", "enum": ["ACK", "RESULT", "FULL"]}),
    query("selfTradePreventionMode", {"type": "string"}),
)


def _order_command(req: ApiRequest, params: Params, user: str) -> tuple[Any, str]:
    """The native ``place_order`` command of a Binance order, checked by the same rules
    (api.listings.order_command), and the answer type asked for."""
    market_name = _market(_listed(), params)
    market = load_market(market_redis(), market_name)
    if market is None:
        raise E.bad_symbol()
    side = params.required("side")
    if side not in ("BUY", "SELL"):
        raise E.bad(E.INVALID_SIDE, "Invalid side.")
    kind = params.required("type")
    if kind in _NOT_YET:
        raise E.bad(
            E.INVALID_ORDER_TYPE,
            f"Unsupported order combination: {kind} orders are not offered here yet.",
        )
    if kind not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
        raise E.bad(E.INVALID_ORDER_TYPE, "Invalid orderType.")
    params.unsupported("stopPrice", "icebergQty", "trailingDelta", "strategyType")
    tif = params.text("timeInForce")
    if kind == "LIMIT":
        tif = tif or params.required("timeInForce")
        if tif not in _TIF:
            raise E.bad(E.INVALID_TIF, "Invalid timeInForce.")
    elif tif is not None:
        params.unsupported("timeInForce")
    resp_type = params.text("newOrderRespType") or "FULL"
    if resp_type not in ("ACK", "RESULT", "FULL"):
        raise E.bad(E.ILLEGAL_CHARS, "Illegal characters found in parameter 'newOrderRespType'.")
    stp_mode = params.text("selfTradePreventionMode") or "EXPIRE_TAKER"
    if stp_mode not in _STP:
        raise E.bad(
            E.ILLEGAL_CHARS, "Illegal characters found in parameter 'selfTradePreventionMode'."
        )
    client_order_id = params.text("newClientOrderId")
    if client_order_id is not None and len(client_order_id) > MAX_CLIENT_ORDER_ID:
        raise E.bad(
            E.ILLEGAL_CHARS,
            f"newClientOrderId is longer than {MAX_CLIENT_ORDER_ID} characters.",
        )
    quantity, quote_qty, price = (params.decimal(n) for n in ("quantity", "quoteOrderQty", "price"))
    if kind == "MARKET":
        if (quantity is None) == (quote_qty is None):
            raise E.bad(-1106, "Send exactly one of 'quantity' and 'quoteOrderQty'.")
        if quote_qty is not None and side == "SELL":
            raise E.bad(-1106, "Parameter 'quoteOrderQty' is for market buys only here.")
        params.unsupported("price")
    else:
        params.required("quantity")
        params.required("price")
        params.unsupported("quoteOrderQty")
    cmd = order_command(
        market, command_id=new_command_id(), user=user,
        side="buy" if side == "BUY" else "sell",
        order_type="market" if kind == "MARKET" else "limit",
        price=price, amount=quantity, quote_amount=quote_qty,
        time_in_force=_TIF["IOC" if kind == "MARKET" else (tif or "GTC")],
        post_only=kind == "LIMIT_MAKER", client_order_id=client_order_id, stp=_STP[stp_mode],
    )  # fmt: skip
    return cmd, resp_type


def _send(svc: Services, cmd: Any, user: str) -> dict[str, Any]:
    reply = svc.commands.send(cmd, ordering_key=user, owner=user)
    if reply is None:
        raise E.BinanceError(503, E.TIMEOUT, _TIMEOUT_MSG)
    return reply


@_route(
    "POST", "/api/v3/order", "Binance: place an order", "binanceNewOrder",
    auth="binance_signed", params=_ORDER_PARAMS,
)  # fmt: skip
def new_order(req: ApiRequest) -> flask.Response:
    params = Params(req)
    svc, principal = _trading(req, params)
    user = principal.user_id
    cmd, resp_type = _order_command(req, params, user)
    reply = _send(svc, cmd, user)
    if not reply["ok"]:
        status, code, msg = E.binance_error(400, str(reply.get("reason")), "")
        raise E.BinanceError(status, code, msg or "The order was rejected.")
    order_id = int(reply["order"]["order_id"])
    listed = _listed(postgres=True)
    order = reads.order_by_id(svc.db, listed.catalog, user, order_id)
    if order is None:  # the matcher commits before it answers: cannot happen
        raise E.BinanceError(503, E.TIMEOUT, _TIMEOUT_MSG)
    p = listed.precisions(order["market"])
    fills = (
        reads.fills(
            svc.db, listed.catalog, user, order["market"], "AND taker_order_id = :o",
            "ORDER BY trade_id", o=order_id,
        )
        if resp_type == "FULL"
        else []
    )  # fmt: skip
    return json_response(placed_object(order, fills, p, resp_type))


@_route(
    "POST", "/api/v3/order/test", "Binance: check an order without placing it",
    "binanceTestOrder", auth="binance_signed", params=_ORDER_PARAMS,
)  # fmt: skip
def test_order(req: ApiRequest) -> flask.Response:
    params = Params(req)
    _, principal = _trading(req, params)
    _order_command(req, params, principal.user_id)
    return json_response({})


_ORDER_REF: Final = (
    _SYMBOL,
    query("orderId", {"type": "integer"}),
    query("origClientOrderId", {"type": "string"}),
)


def _find_order(
    svc: Services, listed: reads.Listed, params: Params, user: str, missing: E.BinanceError
) -> dict[str, Any]:
    """The caller's order named by ``orderId`` or ``origClientOrderId`` in ``symbol``."""
    market = _market(listed, params)
    order_id = params.integer("orderId")
    client_order_id = params.text("origClientOrderId")
    if order_id is None and client_order_id is None:
        raise E.bad(
            E.MANDATORY_PARAM, "Param 'origClientOrderId' or 'orderId' must be sent, but both "
            "were empty/null!",
        )  # fmt: skip
    if order_id is not None:
        order = reads.order_by_id(svc.db, listed.catalog, user, order_id)
    else:
        assert client_order_id is not None
        if len(client_order_id) > MAX_CLIENT_ORDER_ID or "\x00" in client_order_id:
            raise missing  # no order has such an id; Postgres would refuse the NUL
        order = reads.order_by_client_id(svc.db, listed.catalog, user, client_order_id)
    if order is None or order["market"] != market:
        raise missing
    if client_order_id is not None and order.get("client_order_id") != client_order_id:
        raise missing
    return order


@_route(
    "GET", "/api/v3/order", "Binance: one of the caller's orders", "binanceGetOrder",
    auth="binance_signed", params=_ORDER_REF,
)  # fmt: skip
def get_order(req: ApiRequest) -> flask.Response:
    params = Params(req)
    svc, principal = _signed(req, params, "read")
    listed = _listed(postgres=True)
    order = _find_order(
        svc, listed, params, principal.user_id, E.bad(E.NO_SUCH_ORDER, E.ORDER_DOES_NOT_EXIST)
    )
    return json_response(order_object(order, listed.precisions(order["market"])))


def _cancelled(order: dict[str, Any], p: Precisions) -> dict[str, Any]:
    full = order_object(order, p)
    keys = (
        "symbol", "orderId", "orderListId", "clientOrderId", "price", "origQty", "executedQty",
        "cummulativeQuoteQty", "status", "timeInForce", "type", "side", "origQuoteOrderQty",
        "selfTradePreventionMode",
    )  # fmt: skip
    return {
        "origClientOrderId": full["clientOrderId"],
        "transactTime": full["updateTime"],
        **{k: full[k] for k in keys},
    }


@_route(
    "DELETE", "/api/v3/order", "Binance: cancel an order", "binanceCancelOrder",
    auth="binance_signed", params=_ORDER_REF,
)  # fmt: skip
def cancel_order(req: ApiRequest) -> flask.Response:
    params = Params(req)
    svc, principal = _trading(req, params)
    user = principal.user_id
    listed = _listed(postgres=True)
    unknown = E.bad(E.CANCEL_REJECTED, E.UNKNOWN_ORDER)
    order = _find_order(svc, listed, params, user, unknown)
    if order["status"] not in reads.OPEN:
        raise unknown
    reply = _send(
        svc, CancelOrder(id=new_command_id(), user=user, order_id=order["order_id"]), user
    )
    if not reply["ok"]:
        raise unknown
    now = reads.order_by_id(svc.db, listed.catalog, user, int(order["order_id"])) or order
    return json_response(_cancelled(now, listed.precisions(now["market"])))


@_route(
    "GET", "/api/v3/openOrders", "Binance: the caller's open orders", "binanceOpenOrders",
    auth="binance_signed", params=(_SYMBOL_OPTIONAL,),
)  # fmt: skip
def open_orders(req: ApiRequest) -> flask.Response:
    params = Params(req)
    svc, principal = _signed(req, params, "read")
    listed = _listed(postgres=True)
    where = "user_id = :u AND status IN ('open', 'partially_filled')"
    args: dict[str, Any] = {"u": principal.user_id}
    if params.text("symbol") is not None:
        where += " AND market = :m"
        args["m"] = _market(listed, params)
    found = reads.orders(svc.db, listed.catalog, where, "ORDER BY order_id", **args)
    return json_response([order_object(o, listed.precisions(o["market"])) for o in found])


@_route(
    "DELETE", "/api/v3/openOrders", "Binance: cancel the caller's open orders in a symbol",
    "binanceCancelOpenOrders", auth="binance_signed", params=(_SYMBOL,),
)  # fmt: skip
def cancel_open_orders(req: ApiRequest) -> flask.Response:
    params = Params(req)
    svc, principal = _trading(req, params)
    user = principal.user_id
    listed = _listed(postgres=True)
    market = _market(listed, params)
    reply = _send(svc, CancelAll(id=new_command_id(), user=user, market=market), user)
    ids = [int(o["order_id"]) for o in reply.get("orders") or []] if reply["ok"] else []
    if not ids:
        raise E.bad(E.CANCEL_REJECTED, E.UNKNOWN_ORDER)
    found = reads.orders(
        svc.db, listed.catalog, "user_id = :u AND order_id = ANY(:ids)", "ORDER BY order_id",
        u=user, ids=ids,
    )  # fmt: skip
    p = listed.precisions(market)
    return json_response([_cancelled(o, p) for o in found])


@_route(
    "GET", "/api/v3/allOrders", "Binance: the caller's orders in a symbol", "binanceAllOrders",
    auth="binance_signed", params=(_SYMBOL, query("orderId", {"type": "integer"}), _START, _END,
                                   _LIMIT),
)  # fmt: skip
def all_orders(req: ApiRequest) -> flask.Response:
    params = Params(req)
    svc, principal = _signed(req, params, "read")
    listed = _listed(postgres=True)
    market = _market(listed, params)
    limit = params.limit(HISTORY_DEFAULT, HISTORY_MAX)
    from_id, start, end = (params.integer(n) for n in ("orderId", "startTime", "endTime"))
    where = "user_id = :u AND market = :m"
    args: dict[str, Any] = {"u": principal.user_id, "m": market, "n": limit}
    if from_id is not None:
        where += " AND order_id >= :o"
        args["o"] = from_id
    if start is not None:
        where += " AND created_ts >= :s"
        args["s"] = start
    if end is not None:
        where += " AND created_ts <= :e"
        args["e"] = end
    newest = from_id is None and start is None
    order = "ORDER BY order_id DESC LIMIT :n" if newest else "ORDER BY order_id LIMIT :n"
    found = reads.orders(svc.db, listed.catalog, where, order, **args)
    if newest:
        found.reverse()
    p = listed.precisions(market)
    return json_response([order_object(o, p) for o in found])


@_route(
    "GET", "/api/v3/myTrades", "Binance: the caller's fills in a symbol", "binanceMyTrades",
    auth="binance_signed",
    params=(_SYMBOL, query("orderId", {"type": "integer"}), _START, _END,
            query("fromId", {"type": "integer"}), _LIMIT),
)  # fmt: skip
def my_trades(req: ApiRequest) -> flask.Response:
    params = Params(req)
    svc, principal = _signed(req, params, "read")
    listed = _listed(postgres=True)
    market = _market(listed, params)
    limit = params.limit(HISTORY_DEFAULT, HISTORY_MAX)
    order_id, start, end, from_id = (
        params.integer(n) for n in ("orderId", "startTime", "endTime", "fromId")
    )
    extra = ""
    args: dict[str, Any] = {"n": limit}
    if start is not None:
        extra += " AND ts >= :s"
        args["s"] = start
    if end is not None:
        extra += " AND ts <= :e"
        args["e"] = end
    if from_id is not None:
        extra += " AND trade_id >= :f"
        args["f"] = from_id
    newest = start is None and from_id is None
    tail = "ORDER BY trade_id DESC LIMIT :n" if newest else "ORDER BY trade_id LIMIT :n"
    rows = reads.fills(svc.db, listed.catalog, principal.user_id, market, extra, tail, **args)
    if newest:
        rows.reverse()
    if order_id is not None:
        rows = [r for r in rows if r["order_id"] == order_id]
    p = listed.precisions(market)
    return json_response([my_trade_object(r, p) for r in rows])
