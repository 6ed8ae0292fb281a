"""Binance's spot WebSocket dialect, beside the native protocol on the same port
(docs/binance-api.md): what a Binance client (ccxt.pro's ``binance``) connects to.

- ``/ws``, ``/ws/<anything>``: raw streams, events bare; ``/stream`` (``?streams=a/b``):
  combined streams, each event as ``{"stream": name, "data": event}``. Streams named in the
  path or query start at once; others come with ``SUBSCRIBE`` / ``UNSUBSCRIBE`` /
  ``LIST_SUBSCRIPTIONS`` messages. ccxt.pro connects to ``<urls.api.ws.spot>/<n>``.
- ``/ws/<listenKey>``: the user data stream of the key's user (``POST /api/v3/userDataStream``,
  ``shared.listen_keys``); it ends with ``listenKeyExpired`` when the key is closed or expires.
- ``/ws-api/v3``: the WebSocket API's ``userDataStream.subscribe.signature`` (how ccxt 4.5
  follows a spot account: an HMAC-signed request with the API key), ``ping`` and ``time``.

Every stream is one more client channel of the live feed's topics (``ws_service.topics``),
so it is fed by the same Redis channels, loaded and continued the same way; its frames are
made by ``ws_service.binance_streams``. A ``SUBSCRIBE`` is answered once every stream it
names is live: a client that then reads a REST ``depth`` snapshot misses no ``depthUpdate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from api.auth import AuthContext, Principal, first_use, is_api_key_id, load_api_key
from api.binance.signature import MAX_RECV_WINDOW_MS, sign, timestamp_fits
from api.binance.symbols import symbol_map
from shared import listen_keys
from shared.redis_keys import ASSETS_KEY, MARKETS_KEY
from shared.redis_values import text
from ws_service import binance_streams as bs
from ws_service.protocol import Channel, Ident, parse_channel, text_frame
from ws_service.session import FeedConnection, Session
from ws_service.topics import DepthTopic, KlineTopic, TickerTopic, Topic

if TYPE_CHECKING:
    from shared.config import WsConfig
    from ws_service.auth import SocketAuth
    from ws_service.hub import Hub

log = logging.getLogger("ws.binance")

Mode = Literal["raw", "combined", "api"]
WS_API_PATH: Final = "/ws-api/v3"
LISTEN_KEY_CHECK_S: Final = 2.0
"""How often a listen-key stream checks its key is still live (closed or expired: it ends)."""
CATALOG_REFRESH_S: Final = 1.0
"""Least time between two reads of the markets and assets (an unknown symbol asks again)."""
DEFAULT_RECV_WINDOW_MS: Final = 5000
# Binance's stream-message error codes (its WebSocket streams documentation).
ERR_INVALID_VALUE: Final = 1
ERR_INVALID_REQUEST: Final = 2
ERR_INVALID_JSON: Final = 3


@dataclass(frozen=True, slots=True)
class Route:
    """What a Binance path asks for."""

    mode: Mode
    streams: tuple[str, ...] = ()
    listen_key: str | None = None
    user_id: str | None = field(default=None, compare=False)


def route(path: str, query: str) -> Route | None:
    """The Binance route of a request path, or None when it is not one."""
    if path == WS_API_PATH:
        return Route("api")
    if path == "/stream" or path == "/stream/":
        streams = urllib.parse.parse_qs(query).get("streams", [""])[0]
        return Route("combined", tuple(s for s in streams.split("/") if s))
    if path == "/ws" or path.startswith("/ws/"):
        rest = path[len("/ws/") :] if path.startswith("/ws/") else ""
        if listen_keys.well_formed(rest):
            return Route("raw", listen_key=rest)
        # /ws/<stream>[/<stream>...]; anything else (ccxt's /ws/0) is a plain connection
        names = tuple(s for s in rest.split("/") if _is_stream(s))
        return Route("raw", names)
    return None


def _is_stream(name: str) -> bool:
    try:
        bs.parse_stream(name)
    except bs.StreamError:
        return False
    return True


# ---------------------------------------------------------------- markets and assets


class Catalog:
    """The listed markets and assets (``md:markets``, ``md:assets``), read again at most
    every ``CATALOG_REFRESH_S`` when a symbol is not known."""

    def __init__(self, ctx: AuthContext) -> None:
        self.ctx = ctx
        self.markets: dict[str, bs.MarketInfo] = {}
        self.symbols: dict[str, str] = {}
        self.precisions: dict[str, int] = {}
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    def market(self, name: str) -> bs.MarketInfo:
        info = self.markets.get(name)
        if info is None:
            base, _, quote = name.partition("-")
            return bs.MarketInfo(name, base, quote, None, None)
        return info

    def precision(self, asset: str) -> int | None:
        return self.precisions.get(asset)

    async def market_of(self, symbol: str) -> str | None:
        """The market a symbol names, reading the listings again when it is not known."""
        if symbol not in self.symbols:
            await self.refresh()
        return self.symbols.get(symbol)

    async def refresh(self, force: bool = False) -> None:
        async with self._lock:
            if not force and time.monotonic() - self._read_at < CATALOG_REFRESH_S:
                return
            markets, assets = await asyncio.to_thread(self._read)
            self._read_at = time.monotonic()
        precisions = {a: int(orjson.loads(v)["precision"]) for a, v in assets.items()}
        infos = {}
        for name, raw in markets.items():
            doc = orjson.loads(raw)
            base, quote = doc["base"], doc["quote"]
            infos[name] = bs.MarketInfo(
                name, base, quote, precisions.get(base), precisions.get(quote)
            )
        self.markets, self.precisions = infos, precisions
        self.symbols = symbol_map(infos)

    def _read(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        pipe = self.ctx.redis.pipeline(transaction=False)
        pipe.hgetall(MARKETS_KEY)
        pipe.hgetall(ASSETS_KEY)
        markets, assets = pipe.execute()
        return (
            {text(k): v for k, v in markets.items()},
            {text(k): v for k, v in assets.items()},
        )


# ---------------------------------------------------------------- frames of a stream


def _price(level: tuple[str, str]) -> Decimal:
    return Decimal(level[0])


def _now_ms() -> int:
    return int(time.time() * 1000)


class MarketStream:
    """One Binance market stream of one topic: its frames (a ``topics.Dialect``)."""

    def __init__(self, stream: bs.Stream, market: bs.MarketInfo, mode: Mode) -> None:
        self.stream = stream
        self.market = market
        self.mode = mode
        self._best: tuple[list[str] | None, list[str] | None] | None = None

    def _frame(self, event: dict[str, Any]) -> bytes:
        if self.mode == "combined":
            return text_frame(orjson.dumps({"stream": self.stream.name, "data": event}))
        return text_frame(orjson.dumps(event))

    def frames(self, topic: Topic) -> list[bytes]:
        s, m, now = self.stream, self.market, _now_ms()
        latest = topic.latest
        if s.kind == "diff":
            return [self._frame(bs.depth_update(m, latest, now))]
        if s.kind in ("partial", "bookTicker"):
            assert isinstance(topic, DepthTopic)
            if topic.seq != latest["seq"]:
                return []  # a gap: the book reloads; its next change is sent
            if s.kind == "bookTicker" and self._top(topic) == self._best:
                return []  # the top of the book did not change
            return self.initial(topic)
        if s.kind == "trade":
            return [self._frame(bs.trade_event(m, t, now)) for t in latest]
        if s.kind == "aggTrade":
            return [self._frame(bs.agg_trade_event(m, t, now)) for t in latest]
        if s.kind in ("ticker", "miniTicker"):
            return [self._frame(self._ticker(latest, now))]
        assert s.interval is not None
        return [self._frame(bs.kline_event(m, s.interval, c, now)) for c in latest]

    def _ticker(self, ticker: dict[str, Any], now: int) -> dict[str, Any]:
        if self.stream.kind == "miniTicker":
            return bs.mini_ticker_event(self.market, ticker, now)
        return bs.ticker_event(self.market, ticker, now)

    @staticmethod
    def _top(topic: DepthTopic) -> tuple[list[str] | None, list[str] | None]:
        bid = max(topic.bids.items(), key=_price, default=None)
        ask = min(topic.asks.items(), key=_price, default=None)
        return (list(bid) if bid else None, list(ask) if ask else None)

    def initial(self, topic: Topic) -> list[bytes]:
        """What a stream shows when joined: the book's top, the ticker, the current candle
        (the diff and trade streams start with the next change)."""
        s, m, now = self.stream, self.market, _now_ms()
        if s.kind == "partial":
            assert isinstance(topic, DepthTopic)
            book = topic.book()
            return [
                self._frame(bs.partial_depth(m, book["bids"], book["asks"], topic.seq, s.levels))
            ]
        if s.kind == "bookTicker":
            assert isinstance(topic, DepthTopic)
            self._best = best = self._top(topic)
            return [self._frame(bs.book_ticker(m, topic.seq, *best))]
        if s.kind in ("ticker", "miniTicker"):
            assert isinstance(topic, TickerTopic)
            return [self._frame(self._ticker(orjson.loads(topic.current), now))]
        if s.kind == "kline":
            assert isinstance(topic, KlineTopic) and s.interval is not None
            if not topic.candles:
                return []
            newest = topic.candles[max(topic.candles)]
            return [self._frame(bs.kline_event(m, s.interval, newest, now))]
        return []


class UserEvents:
    """A user's ``live:user`` topic as Binance user data events (a ``topics.Dialect``)."""

    def __init__(self, catalog: Catalog, mode: Mode) -> None:
        self.stream = bs.UserStream(catalog)
        self.mode = mode

    def frames(self, topic: Topic) -> list[bytes]:
        return [self.frame(e) for e in self.stream.events(topic.latest, _now_ms())]

    def initial(self, topic: Topic) -> list[bytes]:
        return []

    def frame(self, event: dict[str, Any]) -> bytes:
        if self.mode == "api":
            return text_frame(orjson.dumps({"subscriptionId": 0, "event": event}))
        return text_frame(orjson.dumps(event))


# ---------------------------------------------------------------- the WebSocket API's checks


class WsApiError(Exception):
    """A WebSocket API request refused: Binance's HTTP-like status, code and message."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def verify_signature(ctx: AuthContext, params: dict[str, Any], now_ms: int) -> Principal:
    """The API key's principal of a signed WebSocket API request, or ``WsApiError`` (as
    Binance answers: -2014/-2015 for the key, -1021 the timestamp, -1022 the signature)."""
    key_id, signature = params.get("apiKey"), params.get("signature")
    if not isinstance(key_id, str) or not isinstance(signature, str):
        raise WsApiError(400, -1102, "Mandatory parameters 'apiKey', 'signature' were not sent.")
    if not is_api_key_id(key_id):
        raise WsApiError(401, -2014, "API-key format invalid.")
    try:
        timestamp = int(params.get("timestamp"))  # type: ignore[arg-type]
        window = int(params.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
    except (TypeError, ValueError):
        raise WsApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent.") from None
    if not 0 < window <= MAX_RECV_WINDOW_MS:
        raise WsApiError(400, -1131, "recvWindow must be less than 60000")
    if not timestamp_fits(timestamp, window, now_ms):
        raise WsApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    key = load_api_key(ctx, key_id)
    if key is None or "read" not in key.scopes:
        raise WsApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    if sign(key.secret, bs.ws_api_payload(params)) != signature.lower():
        raise WsApiError(400, -1022, "Signature for this request is not valid.")
    # A captured request cannot be replayed while its timestamp is acceptable.
    if not first_use(ctx, key_id, signature.lower(), 2 * window + 1000):
        raise WsApiError(400, -1022, "Signature for this request was already used.")
    return key.principal()


# ---------------------------------------------------------------- one Binance connection


class BinanceSession(Session):
    """A Binance client's connection: its streams on the hub's topics, its request answers.
    The writing, limits, idle and slow-consumer rules are the native session's."""

    def __init__(
        self,
        conn: FeedConnection,
        hub: Hub,
        auth: SocketAuth,
        cfg: WsConfig,
        peer: str,
        route: Route,
        catalog: Catalog,
    ) -> None:
        super().__init__(conn, hub, auth, cfg, peer)
        self.route = route
        self.mode = route.mode
        self.catalog = catalog
        self.streams: dict[str, str] = {}
        """Stream name -> the client channel that holds it."""
        self._requests: dict[int, tuple[Ident, int, bytes]] = {}
        """Internal token -> (the client's id, streams not yet live, the answer)."""
        self._tokens_issued = 0
        self._checker: asyncio.Task[None] | None = None
        self._user_channel: str | None = None

    async def start(self) -> None:
        """What the path asked for: its streams, or its listen key's user data."""
        if self.route.listen_key is not None and self.route.user_id is not None:
            await self._attach_user(self.route.user_id, None, b"")
            self._checker = self._loop.create_task(self._watch_listen_key())
        elif self.route.streams:
            await self._subscribe_streams(list(self.route.streams), None, answer=False)

    # -- requests ------------------------------------------------------------------------------

    async def handle(self, raw: str | bytes) -> None:
        if not self._take_token():
            self.close(1008, "too many messages")
            return
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        try:
            if self.mode == "api":
                await self._api(doc)
            else:
                await self._stream_request(doc)
        except Exception:
            log.exception("failed to handle a Binance message", extra={"peer": self.peer})
            ident = doc.get("id") if isinstance(doc, dict) else None
            if self.mode == "api":
                self._answer(
                    {"id": ident, "status": 500, "error": {"code": -1000, "msg": "internal"}}
                )
            else:
                self._stream_error(ERR_INVALID_REQUEST, "Invalid request: internal error", ident)

    def _answer(self, doc: dict[str, Any]) -> None:
        self.push(text_frame(orjson.dumps(doc)))

    def _stream_error(self, code: int, msg: str, ident: Ident) -> None:
        self._answer({"error": {"code": code, "msg": msg}, "id": ident})

    async def _stream_request(self, doc: Any) -> None:
        if not isinstance(doc, dict):
            self._stream_error(ERR_INVALID_JSON, "Invalid JSON: expected an object", None)
            return
        ident = doc.get("id")
        if ident is not None and not isinstance(ident, int | str):
            self._stream_error(ERR_INVALID_VALUE, "Invalid value type: id", None)
            return
        method, params = doc.get("method"), doc.get("params", [])
        if method == "SUBSCRIBE" or method == "UNSUBSCRIBE":
            if not isinstance(params, list) or not params:
                self._stream_error(
                    ERR_INVALID_REQUEST, "Invalid request: params must list streams", ident
                )
                return
            if method == "SUBSCRIBE":
                await self._subscribe_streams(params, ident, answer=True)
            else:
                await self._unsubscribe_streams(params, ident)
        elif method == "LIST_SUBSCRIPTIONS":
            self._answer({"result": list(self.streams), "id": ident})
        elif method == "SET_PROPERTY":
            self._answer({"result": None, "id": ident})
        elif method == "GET_PROPERTY":
            self._answer({"result": self.mode == "combined", "id": ident})
        else:
            self._stream_error(
                ERR_INVALID_REQUEST, f"Invalid request: unknown method {str(method)[:40]!r}", ident
            )

    async def _subscribe_streams(self, names: list[Any], ident: Ident, *, answer: bool) -> None:
        try:
            streams = list({s.name: s for s in map(bs.parse_stream, names)}.values())
        except bs.StreamError as exc:
            self._stream_error(ERR_INVALID_REQUEST, str(exc), ident)
            return
        new = [s for s in streams if s.name not in self.streams]
        if len(self.channels) + len(new) > self.cfg.max_subscriptions:
            self._stream_error(
                ERR_INVALID_REQUEST,
                f"Invalid request: at most {self.cfg.max_subscriptions} streams per connection",
                ident,
            )
            return
        markets: dict[str, str] = {}
        try:
            for s in streams:
                market = await self.catalog.market_of(s.symbol)
                if market is None:
                    self._stream_error(
                        ERR_INVALID_REQUEST, f"Invalid request: unknown symbol {s.symbol}", ident
                    )
                    return
                markets[s.name] = market
        except Exception as exc:
            log.warning("market lookup failed: %s", exc)
            self._stream_error(
                ERR_INVALID_REQUEST, "Invalid request: market data unavailable, retry", ident
            )
            return
        token = self._token(
            ident, len(streams), orjson.dumps({"result": None, "id": ident}) if answer else b""
        )
        self._disarm_idle()
        for s in streams:
            native = _native_channel(s, markets[s.name])
            name = f"bn:{self.mode}:{s.name}"
            rc = native.redis_channel()
            self.streams[s.name] = name
            self.channels[name] = rc
            dialect = MarketStream(s, self.catalog.market(markets[s.name]), self.mode)
            try:
                await self.hub.attach(self, native, rc, token, dialect, name)
            except Exception as exc:
                log.warning("subscribe %s failed: %s", s.name, exc)
                self.streams.pop(s.name, None)
                self.channels.pop(name, None)
                self._requests.pop(token, None)
                self._stream_error(
                    ERR_INVALID_REQUEST, "Invalid request: market data unavailable, retry", ident
                )
                return

    async def _unsubscribe_streams(self, names: list[Any], ident: Ident) -> None:
        for n in names:
            name = self.streams.pop(n, None) if isinstance(n, str) else None
            rc = self.channels.pop(name, None) if name is not None else None
            if name is not None and rc is not None:
                await self._detach(name, rc)
        self._answer({"result": None, "id": ident})
        if not self.channels:
            self._arm_idle()

    def _token(self, ident: Ident, count: int, answer: bytes) -> int:
        self._tokens_issued += 1
        self._requests[self._tokens_issued] = (ident, count, answer)
        return self._tokens_issued

    def joined(self, channel: str, ident: Ident, frames: list[bytes]) -> None:
        """A stream of a request is live: answer the request once all of them are (then
        its first frames, so an answer comes before any event of its streams)."""
        request = self._requests.get(ident) if isinstance(ident, int) else None
        if request is not None:
            client_id, left, answer = request
            if left <= 1:
                del self._requests[ident]  # type: ignore[arg-type]
                if answer:
                    self.push(text_frame(answer))
            else:
                self._requests[ident] = (client_id, left - 1, answer)  # type: ignore[index]
        super().joined(channel, ident, frames)

    # -- the WebSocket API ---------------------------------------------------------------------

    async def _api(self, doc: Any) -> None:
        if not isinstance(doc, dict):
            self._answer(
                {"id": None, "status": 400, "error": {"code": -1100, "msg": "Malformed request."}}
            )
            return
        ident, method = doc.get("id"), doc.get("method")
        params = doc.get("params") or {}
        if method == "ping":
            self._answer({"id": ident, "status": 200, "result": {}})
        elif method == "time":
            self._answer({"id": ident, "status": 200, "result": {"serverTime": _now_ms()}})
        elif method == "userDataStream.subscribe.signature" and isinstance(params, dict):
            try:
                principal = await asyncio.to_thread(
                    verify_signature, self.auth.ctx, params, _now_ms()
                )
                if self.hub.revoked(principal):
                    raise WsApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
            except WsApiError as exc:
                self._answer(
                    {"id": ident, "status": exc.status, "error": {"code": exc.code, "msg": exc.msg}}
                )
                return
            self.principal = principal
            answer = {"id": ident, "status": 200, "result": {"subscriptionId": 0}}
            await self._attach_user(principal.user_id, ident, orjson.dumps(answer))
        elif method == "userDataStream.unsubscribe":
            await self._detach_user()
            self._answer({"id": ident, "status": 200, "result": {}})
        else:
            msg = f"Unsupported method {str(method)[:40]!r}."
            self._answer({"id": ident, "status": 400, "error": {"code": -1100, "msg": msg}})

    async def _attach_user(self, user_id: str, ident: Ident, answer: bytes) -> None:
        native = parse_channel("orders")
        name = f"bn:{self.mode}:user"
        rc = native.redis_channel(user_id)
        await self.catalog.refresh()
        token = self._token(ident, 1, answer)
        self._user_channel = name
        self.channels[name] = rc
        self._disarm_idle()
        await self.hub.attach(self, native, rc, token, UserEvents(self.catalog, self.mode), name)

    async def _detach_user(self) -> None:
        name, self._user_channel = self._user_channel, None
        rc = self.channels.pop(name, None) if name is not None else None
        if name is not None and rc is not None:
            await self._detach(name, rc)
        if not self.channels:
            self._arm_idle()

    def revoked(self) -> None:
        """The API key that opened the user data stream was deleted: the stream ends."""
        self.principal = None
        if self._user_channel is not None:
            event = {"e": "eventStreamTerminated", "E": _now_ms()}
            self.push(UserEvents(self.catalog, self.mode).frame(event))
            self._loop.create_task(self._detach_user())

    # -- listen keys ---------------------------------------------------------------------------

    async def _watch_listen_key(self) -> None:
        key, user = self.route.listen_key, self.route.user_id
        assert key is not None
        while not self.closing:
            await asyncio.sleep(LISTEN_KEY_CHECK_S)
            try:
                owner = await asyncio.to_thread(listen_keys.owner, self.auth.ctx.redis, key)
            except Exception as exc:  # Redis unreachable: the hub closes everyone anyway
                log.debug("listen key check failed: %s", exc)
                continue
            if owner != user:
                event = {"e": "listenKeyExpired", "E": _now_ms(), "listenKey": key}
                self.push(text_frame(orjson.dumps(event)))
                self.write_pending()
                self.close(1000, "listenKey expired")
                return

    async def drop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._checker
        await super().drop()


def _native_channel(stream: bs.Stream, market: str) -> Channel:
    """The live feed channel a stream is made from."""
    if stream.native == "kline":
        return parse_channel(f"kline:{market}:{stream.interval}")
    return parse_channel(f"{stream.native}:{market}")


async def resolve_listen_key(ctx: AuthContext, route: Route) -> Route | None:
    """``route`` with its listen key's user, or None when the key is unknown or ended."""
    assert route.listen_key is not None
    user = await asyncio.to_thread(listen_keys.owner, ctx.redis, route.listen_key)
    if user is None:
        return None
    return Route(route.mode, route.streams, route.listen_key, user)
