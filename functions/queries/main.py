"""The queries function: public market data from Redis, the caller's own history from Postgres.

Its routes, with their parameters, bodies and answers, are declared below with ``api.route``;
the OpenAPI document made from them (``GET /v1/openapi.json``, functions/docs/openapi.json) is
where to read them.

Read-only: it never talks to the matcher, only to what the matcher wrote (docs/marketdata.md
for the Redis keys, infra/migrations for the tables).

Public market data (anyone; ``Cache-Control: public`` with a short ``max-age``) and the
caller's own history (a token, or an API key with the ``read`` scope; only the caller's own
rows; ``Cache-Control: no-store``).

Query parameters are strict: an unknown or repeated parameter, an empty value, a limit that
is not a plain integer in range, a bad interval, a time (``start``, ``end``: milliseconds since
the epoch, up to the end of year 9999) out of range or a bad cursor answer 400; an unknown
market in a path answers 404, in a query 400. Cursors are opaque, signed strings
(api.cursors), valid for the listing and the user they were made for; ``next_cursor`` is
null on the last page.

Money is formatted with the precision of its asset (``md:assets``): prices and quote values
in the quote asset's, amounts in the base asset's, a fee in the asset it is paid in (the
buyer pays in base, the seller in quote), a ledger row in its own asset's. Should Redis lack
an asset or market that Postgres knows (Redis flushed, rebuild pending), the definitions
come from the ``assets`` and ``markets`` tables instead.

``GET /v1/assets`` adds chain details from the optional Redis hash ``md:asset_chains``
(asset -> JSON ``{"kind": "native"|"erc20", "contract": "0x..." (erc20), "decimals": 18}``),
written by whoever lists the asset on the chain (the local stack's seeding, the admin
function); ``chain`` is null for an asset without an entry.

Postgres: one connection per instance, made on first use and kept across invocations
(requests of one instance take turns on it; shared.db.SharedConnection): a connection error
reconnects once, then 503; any failure other than a clean SQL error discards the connection.
A Redis error answers 503 as well.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

import flask
import msgspec
import orjson
import redis

from api.auth import AuthContext, authenticate, default_context
from api.cursors import Cursors, default_cursors
from api.history import ORDER_COLUMNS as _ORDER_COLUMNS
from api.history import Catalog
from api.history import decode_hash as _decode_hash
from api.history import fill_json as _fill_json
from api.history import fills_sql as _fills_sql
from api.history import money as _money
from api.history import order_json as _order_json
from api.http import (
    Api,
    ApiRequest,
    api_config,
    bad_request,
    json_response,
    not_found,
)
from api.openapi import (
    CLIENT_ORDER_ID,
    CURSOR,
    LIMIT,
    MARKET_PARAM,
    STR,
    TIME_MS,
    ok,
    path_param,
    query,
)
from api.params import QueryParams
from api.redis_client import batch_of, connect
from shared import logs
from shared.config import PostgresConfig, env, from_env
from shared.db import SharedConnection
from shared.instance import close_members, lazy, per_instance
from shared.order_rules import MAX_CLIENT_ORDER_ID
from shared.redis_keys import (
    ASSET_CHAINS_KEY,
    ASSETS_KEY,
    KLINE_INTERVAL_NAMES,
    MARKETS_KEY,
    depth_key,
    kline_key,
    ticker_key,
    trades_key,
)
from shared.redis_values import text

logs.setup()
log = logging.getLogger("queries")

api = Api("queries", authenticate=authenticate, scope="read")

DEPTH_DEFAULT: Final = 20
PUBLIC_TRADES_DEFAULT, PUBLIC_TRADES_MAX = 50, 1000
"""``md:trades:{m}`` keeps 1000."""
KLINES_DEFAULT, KLINES_MAX = 500, 1500
"""``md:kline:{m}:{iv}`` keeps 1500 per interval."""
PAGE_DEFAULT, PAGE_MAX = 50, 500
LISTS_DEFAULT: Final = 100
"""The OCO lists' page size when none is asked for: what the listing answered before it had
pages."""
OPEN_STATUSES: Final = ("open", "partially_filled")
CLOSED_STATUSES: Final = ("filled", "cancelled")

CACHE_LIVE: Final = "public, max-age=1"
"""Depth, tickers, trades, klines: change with every batch."""
CACHE_DEFINITIONS: Final = "public, max-age=5"
"""Assets and markets: change on admin action only (halting a market shows within 5 s)."""

_ID_RE: Final = re.compile(r"[1-9][0-9]{0,17}")
"""Order ids in paths: positive BIGINTs (18 digits stay below 2**63)."""


def queries(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return api(request)


# --------------------------------------------------------------------------------------------
# configuration and clients
# --------------------------------------------------------------------------------------------


class QueriesConfig(msgspec.Struct, frozen=True, kw_only=True):
    depth_levels: Annotated[int, env("DEPTH_LEVELS", gt=0)] = 50
    """The most depth levels per side a caller may ask for: what the matcher keeps in
    ``md:depth:{m}`` (the matcher's ``DEPTH_LEVELS``, default 50)."""

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> QueriesConfig:
        return from_env(QueriesConfig, environ)


class Services:
    """What the queries function holds for its instance's life (shared.instance), each member
    built on its first use: public market data opens no database and reads no auth keys."""

    @lazy
    def config(self) -> QueriesConfig:
        return QueriesConfig.load()

    @lazy
    def redis(self) -> redis.Redis:
        """Market data; a Redis that does not answer within 5 s answers 503."""
        return connect(api_config().redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)

    @lazy
    def db(self) -> SharedConnection:
        """Postgres: one connection per instance (shared.db.SharedConnection)."""
        return SharedConnection(PostgresConfig.load(), "queries")

    @property
    def auth(self) -> AuthContext:
        """The API layer's own per-instance context (api.auth)."""
        return default_context()

    @property
    def cursors(self) -> Cursors:
        """The API layer's own per-instance cursor key (api.cursors)."""
        return default_cursors()

    def close(self) -> None:
        close_members(self)


@per_instance
def services() -> Services:
    return Services()


# --------------------------------------------------------------------------------------------
# query parameters
# --------------------------------------------------------------------------------------------


class Params(QueryParams):
    """The query string, checked (api.params), with this function's cursors."""

    def cursor(self, listing: str, user: str) -> int | None:
        """The id a page of ``listing`` starts after (api.cursors); 400 unless this API
        made the cursor for this listing and user."""
        raw = self.text("cursor")
        return None if raw is None else services().cursors.open_id(listing, user, raw)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A page of one of the caller's listings as asked for, checked: the query string, the
    page's size, the caller, the row id it starts after (its cursor) and the catalog."""

    listing: str
    params: Params
    limit: int
    user: str
    after: int | None
    catalog: Catalog

    @staticmethod
    def of(req: ApiRequest, listing: str, *filters: str, default: int = PAGE_DEFAULT) -> PageQuery:
        params = Params(req, *filters, "limit", "cursor")
        limit = params.limit(default, PAGE_MAX)
        user = _caller(req)
        after = params.cursor(listing, user)
        return PageQuery(listing, params, limit, user, after, _private_catalog())

    def rows(self, select: str, id_column: str, *conditions: str, **equal: Any) -> list[Any]:
        """The page's rows of ``select`` (``SELECT ... FROM table``), newest (highest
        ``id_column``) first: the caller's, meeting ``conditions`` (constants, never caller
        text), whose columns equal the values given (None: any), after the cursor; ``limit +
        1`` of them (``answer``)."""
        where = ["user_id = :u", *conditions]
        args: dict[str, Any] = {"u": self.user, "n": self.limit + 1}
        for i, (column, value) in enumerate(equal.items()):
            if value is not None:
                where.append(f"{column} = :f{i}")
                args[f"f{i}"] = value
        if self.after is not None:
            where.append(f"{id_column} < :c")
            args["c"] = self.after
        found: list[Any] = services().db.run(
            f"{select} WHERE {' AND '.join(where)} ORDER BY {id_column} DESC LIMIT :n", **args
        )
        return found

    def answer(self, items: list[dict[str, Any]], id_field: str) -> flask.Response:
        """``limit + 1`` rows were read: the extra one only says that another page exists."""
        more = len(items) > self.limit
        items = items[: self.limit]
        cursors = services().cursors
        cursor = cursors.make_id(self.listing, self.user, items[-1][id_field]) if more else None
        return json_response({self.listing: items, "next_cursor": cursor})


# --------------------------------------------------------------------------------------------
# assets and markets
# --------------------------------------------------------------------------------------------


def _known_market(client: redis.Redis, market: str) -> None:
    if not client.hexists(MARKETS_KEY, market):
        raise not_found(f"unknown market {market!r}", "unknown_market")


def _cached(body: Any, cache_control: str) -> flask.Response:
    return json_response(body, headers={"Cache-Control": cache_control})


def _raw_json(body: bytes | str, cache_control: str) -> flask.Response:
    """JSON already encoded (Redis values passed through as they are, answers cut ahead)."""
    # content_type, not mimetype: the same header without werkzeug working it out per answer
    return flask.Response(
        body, content_type="application/json", headers={"Cache-Control": cache_control}
    )


# --------------------------------------------------------------------------------------------
# public: time, assets, markets
# --------------------------------------------------------------------------------------------


@api.route(
    "GET",
    "/v1/time",
    summary="The server's clock",
    operation_id="serverTime",
    tag="market data",
    auth="none",
    responses={200: ok("Now", "ServerTime")},
    errors=(400,),
)
def server_time(req: ApiRequest) -> flask.Response:
    Params(req)
    return json_response({"server_time": time.time_ns() // 1_000_000})


def _chain(raw: bytes | str | None) -> dict[str, Any] | None:
    """The public part of an ``md:asset_chains`` entry; None when absent or malformed."""
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("kind") not in ("native", "erc20"):
        return None
    decimals = doc.get("decimals")
    chain: dict[str, Any] = {"kind": doc["kind"]}
    if doc["kind"] == "erc20":
        chain["contract"] = doc.get("contract")
    chain["decimals"] = decimals if isinstance(decimals, int) else None
    # The wallet's rules, when set (decimal strings in the asset's precision).
    if isinstance(doc.get("confirmations"), int):
        chain["confirmations"] = doc["confirmations"]
    for rule in _CHAIN_RULES:
        if isinstance(doc.get(rule), str):
            chain[rule] = doc[rule]
    return chain


_CHAIN_RULES: Final = (
    "min_deposit",
    "withdrawal_fee",
    "min_withdrawal",
    "withdrawal_daily_limit",
)


@api.route(
    "GET",
    "/v1/assets",
    summary="Assets, with their chain details",
    operation_id="listAssets",
    tag="market data",
    auth="none",
    responses={200: ok("Assets", "AssetList")},
    errors=(400,),
)
def list_assets(req: ApiRequest) -> flask.Response:
    Params(req)
    pipe = services().redis.pipeline(transaction=False)
    pipe.hgetall(ASSETS_KEY)
    pipe.hgetall(ASSET_CHAINS_KEY)
    raw_assets, raw_chains = pipe.execute()
    chains = {text(k): v for k, v in raw_chains.items()}
    assets = [
        {"asset": a["asset"], "precision": a["precision"], "chain": _chain(chains.get(name))}
        for name, a in sorted(_decode_hash(raw_assets).items())
    ]
    return _cached({"assets": assets}, CACHE_DEFINITIONS)


@api.route(
    "GET",
    "/v1/markets",
    summary="Markets",
    operation_id="listMarkets",
    tag="market data",
    auth="none",
    responses={200: ok("Markets", "MarketList")},
    errors=(400,),
)
def list_markets(req: ApiRequest) -> flask.Response:
    Params(req)
    markets = _decode_hash(services().redis.hgetall(MARKETS_KEY))
    return _cached({"markets": [markets[m] for m in sorted(markets)]}, CACHE_DEFINITIONS)


@api.route(
    "GET",
    "/v1/markets/{market}",
    summary="One market",
    operation_id="getMarket",
    tag="market data",
    auth="none",
    params=(MARKET_PARAM,),
    responses={200: ok("The market", "Market")},
    errors=(400, 404),
)
def get_market(req: ApiRequest) -> flask.Response:
    Params(req)
    market = req.params["market"]
    raw = services().redis.hget(MARKETS_KEY, market)
    if raw is None:
        raise not_found(f"unknown market {market!r}", "unknown_market")
    return _raw_json(raw, CACHE_DEFINITIONS)


# --------------------------------------------------------------------------------------------
# public: depth, tickers, trades, klines
# --------------------------------------------------------------------------------------------


@api.route(
    "GET",
    "/v1/markets/{market}/depth",
    summary="The order book's top levels",
    operation_id="getDepth",
    tag="market data",
    auth="none",
    params=(MARKET_PARAM, LIMIT),
    responses={200: ok("Depth", "Depth")},
    errors=(400, 404),
)
def depth(req: ApiRequest) -> flask.Response:
    params = Params(req, "limit")
    levels = services().config.depth_levels
    limit = params.limit(min(DEPTH_DEFAULT, levels), levels)
    market = req.params["market"]
    pipe = batch_of(services().redis)
    pipe.hexists(MARKETS_KEY, market)
    pipe.get(depth_key(market))
    exists, raw = pipe.execute()
    if not exists:
        raise not_found(f"unknown market {market!r}", "unknown_market")
    return _raw_json(DEPTH_ANSWERS.body(market, raw, limit), CACHE_LIVE)


class DepthAnswers:
    """The depth route's answers, cut and encoded once per snapshot and limit.

    Between two batches of the matcher every read of a market gets the same snapshot from
    ``md:depth:{m}``: parsing it, cutting it to the limit and encoding the cut again for each
    read is most of the route's own work. The snapshot's bytes, as Redis gave them, are the
    key (an answer is only ever served for the very bytes it was cut from); each market keeps
    the answers of the last snapshot read, one per limit asked for. Threads share it: a race
    only makes two of them cut the same answer."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[bytes | None, dict[int, bytes]]] = {}

    def body(self, market: str, raw: bytes | None, limit: int) -> bytes:
        """The answer to ``limit`` levels of the snapshot ``raw`` (None: none written yet)."""
        last = self._last.get(market)
        if last is None or last[0] != raw:
            last = (raw, {})
            self._last[market] = last
        body = last[1].get(limit)
        if body is None:
            snapshot: dict[str, Any] = (
                orjson.loads(raw) if raw is not None else {"bids": [], "asks": [], "seq": 0}
            )
            body = orjson.dumps(
                {
                    "bids": snapshot["bids"][:limit],
                    "asks": snapshot["asks"][:limit],
                    "seq": snapshot["seq"],
                }
            )
            last[1][limit] = body
        return body


DEPTH_ANSWERS: Final = DepthAnswers()


def _empty_ticker(market: str) -> dict[str, Any]:
    """A market the matcher has not written a ticker for yet: one that never traded."""
    return {
        "market": market, "last": None, "open": None, "high": None, "low": None,
        "volume": "0", "quote_volume": "0", "change": None, "trades": 0, "ts": None,
    }  # fmt: skip


@api.route(
    "GET",
    "/v1/markets/{market}/ticker",
    summary="The 24 h ticker",
    operation_id="getTicker",
    tag="market data",
    auth="none",
    params=(MARKET_PARAM,),
    responses={200: ok("Ticker", "Ticker")},
    errors=(400, 404),
)
def ticker(req: ApiRequest) -> flask.Response:
    Params(req)
    market = req.params["market"]
    pipe = services().redis.pipeline(transaction=False)
    pipe.hexists(MARKETS_KEY, market)
    pipe.get(ticker_key(market))
    exists, raw = pipe.execute()
    if not exists:
        raise not_found(f"unknown market {market!r}", "unknown_market")
    if raw is None:
        return _cached(_empty_ticker(market), CACHE_LIVE)
    return _raw_json(raw, CACHE_LIVE)


@api.route(
    "GET",
    "/v1/tickers",
    summary="Every market's 24 h ticker",
    operation_id="listTickers",
    tag="market data",
    auth="none",
    responses={200: ok("Tickers", "TickerList")},
    errors=(400,),
)
def tickers(req: ApiRequest) -> flask.Response:
    Params(req)
    client = services().redis
    names = sorted(text(name) for name in client.hkeys(MARKETS_KEY))
    raws = client.mget([ticker_key(m) for m in names]) if names else []
    out = [
        orjson.loads(raw) if raw is not None else _empty_ticker(m)
        for m, raw in zip(names, raws, strict=True)
    ]
    return _cached({"tickers": out}, CACHE_LIVE)


@api.route(
    "GET",
    "/v1/markets/{market}/trades",
    summary="Recent trades, newest first",
    operation_id="listPublicTrades",
    tag="market data",
    auth="none",
    params=(MARKET_PARAM, LIMIT),
    responses={200: ok("Trades", "PublicTradeList")},
    errors=(400, 404),
)
def public_trades(req: ApiRequest) -> flask.Response:
    limit = Params(req, "limit").limit(PUBLIC_TRADES_DEFAULT, PUBLIC_TRADES_MAX)
    market = req.params["market"]
    pipe = services().redis.pipeline(transaction=False)
    pipe.hexists(MARKETS_KEY, market)
    pipe.lrange(trades_key(market), 0, limit - 1)
    exists, items = pipe.execute()
    if not exists:
        raise not_found(f"unknown market {market!r}", "unknown_market")
    return _raw_json(b'{"trades":[' + b",".join(items) + b"]}", CACHE_LIVE)


_KLINE_FIELDS: Final = (
    "open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades",
)  # fmt: skip


@api.route(
    "GET",
    "/v1/markets/{market}/klines",
    summary="OHLCV candles, oldest first",
    operation_id="listKlines",
    tag="market data",
    auth="none",
    params=(
        MARKET_PARAM,
        query(
            "interval",
            {"type": "string", "enum": list(KLINE_INTERVAL_NAMES)},
            required=True,
        ),
        query("start", TIME_MS, "open time, ms"),
        query("end", TIME_MS, "open time, ms"),
        LIMIT,
    ),
    responses={200: ok("Candles", "KlineList")},
    errors=(400, 404),
)
def klines(req: ApiRequest) -> flask.Response:
    params = Params(req, "interval", "start", "end", "limit")
    interval = params.text("interval")
    if interval not in KLINE_INTERVAL_NAMES:
        raise bad_request(
            f"interval must be one of {', '.join(KLINE_INTERVAL_NAMES)}", "invalid_interval"
        )
    start = params.time_ms("start")
    end = params.time_ms("end")
    if start is not None and end is not None and start > end:
        raise bad_request("start must not be after end", "invalid_range")
    limit = params.limit(KLINES_DEFAULT, KLINES_MAX)
    market = req.params["market"]
    key = kline_key(market, interval)
    pipe = services().redis.pipeline(transaction=False)
    pipe.hexists(MARKETS_KEY, market)
    if start is not None:  # the first `limit` candles from start (to end)
        pipe.zrangebyscore(key, start, "+inf" if end is None else end, start=0, num=limit)
    elif end is not None:  # the last `limit` candles up to end
        pipe.zrevrangebyscore(key, end, "-inf", start=0, num=limit)
    else:  # the newest `limit` candles
        pipe.zrange(key, -limit, -1)
    exists, members = pipe.execute()
    if not exists:
        raise not_found(f"unknown market {market!r}", "unknown_market")
    if start is None and end is not None:
        members.reverse()
    candles = [dict(zip(_KLINE_FIELDS, orjson.loads(m), strict=True)) for m in members]
    return _cached({"klines": candles}, CACHE_LIVE)


# --------------------------------------------------------------------------------------------
# private: the caller's own balances, orders, trades, ledger
# --------------------------------------------------------------------------------------------


def _caller(req: ApiRequest) -> str:
    """The caller's user id (the route's scope is checked before the handler: api.http)."""
    return authenticate(req, services().auth).user_id


def _private_catalog() -> Catalog:
    return Catalog.load(services().redis, services().db)


@api.route(
    "GET",
    "/v1/balances",
    summary="The caller's balances",
    operation_id="getBalances",
    tag="account",
    scope="read",
    responses={200: ok("Balances", "Balances")},
    errors=(400, 429),
)
def balances(req: ApiRequest) -> flask.Response:
    Params(req)
    user_id = _caller(req)
    catalog = _private_catalog()
    rows = services().db.run(
        "SELECT asset, available, frozen FROM balances WHERE user_id = :u", u=user_id
    )
    held = {asset: (int(available), int(frozen)) for asset, available, frozen in rows}
    out: dict[str, dict[str, str]] = {}
    for asset in sorted(set(catalog.assets) | set(held)):
        precision = catalog.precision(asset)
        available, frozen = held.get(asset, (0, 0))
        out[asset] = {
            "available": _money(available, precision),
            "frozen": _money(frozen, precision),
        }
    return json_response(out)


def _market_param(params: Params, catalog: Catalog) -> str | None:
    market = params.text("market")
    if market is not None and not catalog.has_market(market):
        raise bad_request(f"unknown market {market!r}", "unknown_market")
    return market


@api.route(
    "GET",
    "/v1/orders",
    summary="The caller's orders, newest first",
    operation_id="listOrders",
    tag="orders",
    scope="read",
    params=(
        query("market", STR),
        query("status", {"type": "string", "enum": ["open", "closed"]}),
        LIMIT,
        CURSOR,
    ),
    responses={200: ok("A page", "OrderList")},
    errors=(400, 429),
)
def list_orders(req: ApiRequest) -> flask.Response:
    page = PageQuery.of(req, "orders", "market", "status")
    status = page.params.text("status")
    if status not in (None, "open", "closed"):
        raise bad_request("status must be open or closed", "invalid_status")
    market = _market_param(page.params, page.catalog)
    conditions = []
    if status is not None:  # constants, never caller text
        statuses = OPEN_STATUSES if status == "open" else CLOSED_STATUSES
        conditions.append("status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")")
    rows = page.rows(f"SELECT {_ORDER_COLUMNS} FROM orders", "order_id", *conditions, market=market)
    return page.answer([_order_json(row, page.catalog) for row in rows], "order_id")


@api.route(
    "GET",
    "/v1/orders/{order_id}",
    summary="One of the caller's orders",
    operation_id="getOrder",
    tag="orders",
    scope="read",
    params=(path_param("order_id", example="1"),),
    responses={200: ok("The order", "Order")},
    errors=(400, 404, 429),
)
def get_order(req: ApiRequest) -> flask.Response:
    Params(req)
    user_id = _caller(req)
    raw_id = req.params["order_id"]
    if not _ID_RE.fullmatch(raw_id):
        raise not_found("no such order", "order_not_found")
    rows = services().db.run(
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE order_id = :o AND user_id = :u",
        o=int(raw_id),
        u=user_id,
    )
    if not rows:
        raise not_found("no such order", "order_not_found")
    return json_response(_order_json(rows[0], _private_catalog()))


@api.route(
    "GET",
    "/v1/orders/by-client-id/{client_order_id}",
    summary="The caller's newest order with a client id",
    operation_id="getOrderByClientId",
    tag="orders",
    scope="read",
    params=(CLIENT_ORDER_ID,),
    responses={200: ok("The order", "Order")},
    errors=(400, 404, 429),
)
def get_order_by_client_id(req: ApiRequest) -> flask.Response:
    Params(req)
    user_id = _caller(req)
    client_order_id = req.params["client_order_id"]
    if len(client_order_id) > MAX_CLIENT_ORDER_ID:  # no order has a longer one
        raise not_found("no such order", "order_not_found")
    # A client id is unique among a user's open orders and may be used again once the order
    # is closed: the newest order with it is the open one, if any.
    rows = services().db.run(
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE user_id = :u AND client_order_id = :c"
        " ORDER BY order_id DESC LIMIT 1",
        u=user_id,
        c=client_order_id,
    )
    if not rows:
        raise not_found("no such order", "order_not_found")
    return json_response(_order_json(rows[0], _private_catalog()))


@api.route(
    "GET",
    "/v1/order-lists",
    summary="The caller's OCO lists, newest first",
    operation_id="listOrderLists",
    tag="orders",
    scope="read",
    params=(LIMIT, CURSOR),
    responses={200: ok("A page", "OcoLists")},
    errors=(400, 429),
    description=f"A page of {LISTS_DEFAULT} lists unless limit says otherwise.",
)
def list_order_lists(req: ApiRequest) -> flask.Response:
    page = PageQuery.of(req, "lists", default=LISTS_DEFAULT)
    rows = page.rows(f"SELECT {_LIST_COLUMNS} FROM order_lists", "list_id")
    return page.answer([_list_json(row) for row in rows], "list_id")


_LIST_COLUMNS: Final = "list_id, market, side, status, limit_order_id, stop_order_id, reason"


def _list_json(row: Sequence[Any]) -> dict[str, Any]:
    list_id, market, side, status, limit_id, stop_id, reason = row
    return {
        "list_id": int(list_id), "market": market, "side": side, "status": status,
        "limit_order_id": int(limit_id), "stop_order_id": int(stop_id), "reason": reason,
    }  # fmt: skip


@api.route(
    "GET",
    "/v1/order-lists/{list_id}",
    summary="One of the caller's OCO lists",
    operation_id="getOrderList",
    tag="orders",
    scope="read",
    params=(path_param("list_id", example="1"),),
    responses={200: ok("The list", "OcoList")},
    errors=(400, 404, 429),
)
def get_order_list(req: ApiRequest) -> flask.Response:
    Params(req)
    user_id = _caller(req)
    raw_id = req.params["list_id"]
    if not _ID_RE.fullmatch(raw_id):
        raise not_found("no such list", "list_not_found")
    rows = services().db.run(
        f"SELECT {_LIST_COLUMNS} FROM order_lists WHERE list_id = :l AND user_id = :u",
        l=int(raw_id),
        u=user_id,
    )
    if not rows:
        raise not_found("no such list", "list_not_found")
    return json_response(_list_json(rows[0]))


@api.route(
    "GET",
    "/v1/trades",
    summary="The caller's fills, newest first",
    operation_id="listOwnTrades",
    tag="account",
    scope="read",
    params=(
        query("market", STR),
        LIMIT,
        CURSOR,
    ),
    responses={200: ok("A page", "OwnTradeList")},
    errors=(400, 429),
)
def own_trades(req: ApiRequest) -> flask.Response:
    page = PageQuery.of(req, "trades", "market")
    market = _market_param(page.params, page.catalog)
    args: dict[str, Any] = {"u": page.user, "n": page.limit + 1}
    if market is not None:
        args["m"] = market
    if page.after is not None:
        args["c"] = page.after
    has_m, has_c = market is not None, page.after is not None
    # Self-trades are prevented, so a trade is the caller's as maker or as taker, never both.
    rows = services().db.run(
        f"({_fills_sql('maker', has_m, has_c)}) UNION ALL ({_fills_sql('taker', has_m, has_c)})"
        " ORDER BY trade_id DESC LIMIT :n",
        **args,
    )
    return page.answer([_fill_json(row, page.catalog) for row in rows], "trade_id")


@api.route(
    "GET",
    "/v1/ledger",
    summary="The caller's balance history, newest first",
    operation_id="getLedger",
    tag="account",
    scope="read",
    params=(
        query("asset", STR),
        LIMIT,
        CURSOR,
    ),
    responses={200: ok("A page", "Ledger")},
    errors=(400, 429),
)
def ledger(req: ApiRequest) -> flask.Response:
    page = PageQuery.of(req, "ledger", "asset")
    asset = page.params.text("asset")
    if asset is not None and not page.catalog.has_asset(asset):
        raise bad_request(f"unknown asset {asset!r}", "unknown_asset")
    rows = page.rows(
        "SELECT id, seq, ts, asset, delta_available, delta_frozen, available, frozen, reason,"
        " ref FROM ledger",
        "id",
        asset=asset,
    )
    return page.answer([_ledger_json(row, page.catalog) for row in rows], "id")


def _ledger_json(row: Sequence[Any], catalog: Catalog) -> dict[str, Any]:
    entry_id, seq, ts, asset, d_available, d_frozen, available, frozen, reason, ref = row
    p = catalog.precision(asset)
    return {
        "id": int(entry_id),
        "asset": asset,
        "delta_available": _money(d_available, p),
        "delta_frozen": _money(d_frozen, p),
        "available": _money(available, p),
        "frozen": _money(frozen, p),
        "reason": reason,
        "ref": ref,
        "seq": int(seq),
        "ts": int(ts),
    }
