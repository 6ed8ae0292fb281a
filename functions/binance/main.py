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
    agg_trade,
    kline_row,
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
from api.dispatch import Services, services
from api.http import Api, ApiRequest, api_config, json_response
from api.openapi import query
from shared import listen_keys, logs
from shared.instance import per_instance
from shared.messages import SelfTrade
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
_RESP_TYPES: Final = ("ACK", "RESULT", "FULL")
_TIMEOUT_MSG: Final = (
    "Timeout waiting for response from backend server. Send status unknown; "
    "execution status unknown."
)


def binance(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return api(request)


@per_instance
def market_redis() -> redis.Redis:
    return redis.Redis.from_url(
        api_config().redis_url, socket_timeout=5.0, socket_connect_timeout=5.0
    )


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
        raw = self.text(name)
        return None if raw is None else plain(raw)

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

_SYMBOL: Final = query("symbol", {"type": "string", "example": "ETHUSDT"}, "e.g. ETHUSDT")
_LIMIT: Final = query("limit", {"type": "integer", "minimum": 1})
_START: Final = query("startTime", {"type": "integer"}, "ms since the epoch")
_END: Final = query("endTime", {"type": "integer"}, "ms since the epoch")
_SIGNED: Final = (
    query("timestamp", {"type": "integer"}, "ms since the epoch", required=True),
    query("recvWindow", {"type": "integer", "maximum": MAX_RECV_WINDOW_MS}),
    query("signature", {"type": "string"}, "HMAC-SHA256 of query + body", required=True),
)
_ANY: Final = {"description": "Binance's answer", "content": {"application/json": {}}}


def _route(
    method: str,
    path: str,
    summary: str,
    operation_id: str,
    auth: str = "none",
    params: tuple[dict[str, Any], ...] = (),
) -> Callable[[Callable[[ApiRequest], flask.Response]], Callable[[ApiRequest], flask.Response]]:
    signed = auth == "binance_signed"
    return api.route(
        method, path, summary=summary, operation_id=operation_id, tag="binance", auth=auth,
        params=(*params, *(_SIGNED if signed else ())), responses={200: _ANY},
        errors=(400, 401, 429, 503) if auth != "none" else (400, 429, 503),
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
    params=(_SYMBOL, query("symbols", {"type": "string"}, 'JSON array: ["ETHUSDT"]')),
)  # fmt: skip
def exchange_info(req: ApiRequest) -> flask.Response:
    params = Params(req)
    listed = _listed()
    markets = _symbols(listed, params)
    cat = listed.catalog
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
            "rateLimits": [],
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


_TICKER_PARAMS: Final = (_SYMBOL, query("symbols", {"type": "string"}, "JSON array"))


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
