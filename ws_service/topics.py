"""What this process holds of each Redis channel it listens to, and who listens locally.

A topic is one ``live:*`` channel of the matcher (docs/marketdata.md). It keeps just enough
state to hand a new subscriber a snapshot that the following updates continue exactly: it
is loaded from Redis *after* the SUBSCRIBE is confirmed, with the messages that arrive
meanwhile buffered and replayed on top (the procedure of docs/marketdata.md). From then on,
every message is applied to the state and the frame for subscribers is made once.

Everything runs on the event loop's one thread: a snapshot is written to a subscriber and
the subscriber joined to the fan-out set in one step, so no update can fall between them.
"""

from __future__ import annotations

import logging
from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from shared.redis_keys import depth_key, kline_key, ticker_key, trades_key
from ws_service.protocol import Channel, Ident, envelope, message

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ws_service.session import Session

log = logging.getLogger("ws.topics")

TRADES_SNAPSHOT: Final = 50
"""Most recent public trades in a ``trades:{m}`` snapshot (as ``GET .../trades``)."""
KLINES_SNAPSHOT: Final = 100
"""Newest candles in a ``kline:{m}:{iv}`` snapshot."""
KLINE_FIELDS: Final = (
    "open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades",
)  # fmt: skip
"""A candle as the HTTP API shows it (the matcher's arrays in Redis, named)."""

Frames = list[tuple[str, bytes]]
"""(client channel, frame) pairs to fan out."""

WAITING, LOADING, LIVE = "waiting", "loading", "live"


class Dialect(Protocol):
    """Another wire format of a topic's messages (the Binance streams, ws_service/binance.py):
    its subscribers hold a client channel of their own, whose frames it makes from the topic
    after each message is applied (``Topic.latest``) and from its state when one joins."""

    def frames(self, topic: Topic) -> list[bytes]: ...

    def initial(self, topic: Topic) -> list[bytes]: ...


class Topic:
    """One Redis channel: its state, its local subscribers (by client channel name) and those
    waiting for their snapshot while the state loads."""

    has_snapshot = True

    def __init__(self, redis_channel: str) -> None:
        self.redis_channel = redis_channel
        self.status = WAITING
        """waiting (SUBSCRIBE not confirmed: messages dropped, they predate the load),
        loading (messages buffered), live."""
        self.buffer: list[bytes] = []
        self.subscribers: dict[str, dict[Session, None]] = {}
        self.waiters: dict[str, dict[Session, Ident]] = {}
        self.needs_reload = False
        self.dialects: dict[str, Dialect] = {}
        """Client channels of other wire formats, and what makes their frames."""
        self.latest: Any = None
        """What the last message applied brought (parsed), for the dialects; None: nothing."""

    # -- subscribers -------------------------------------------------------------------------

    def add(
        self, session: Session, channel: str, ident: Ident, dialect: Dialect | None = None
    ) -> None:
        """Subscribe ``session``: ``subscribed`` and the snapshot now (then updates), or as
        soon as the state is live. Subscribing again is a resync: a fresh snapshot."""
        if dialect is not None:
            self.dialects.setdefault(channel, dialect)
        self.subscribers.get(channel, {}).pop(session, None)
        if self.status == LIVE:
            self._serve(session, channel, ident)
        else:
            self.waiters.setdefault(channel, {})[session] = ident

    def remove(self, session: Session, channel: str) -> None:
        self.subscribers.get(channel, {}).pop(session, None)
        self.waiters.get(channel, {}).pop(session, None)
        if not self.subscribers.get(channel) and not self.waiters.get(channel):
            self.dialects.pop(channel, None)  # its per-channel memory goes with the last one

    def empty(self) -> bool:
        return not any(self.subscribers.values()) and not any(self.waiters.values())

    def _serve(self, session: Session, channel: str, ident: Ident) -> None:
        dialect = self.dialects.get(channel)
        if dialect is not None:
            try:
                first = dialect.initial(self)
            except Exception:  # a bug there costs its own subscribers only
                log.exception("dialect frames failed", extra={"channel": channel})
                first = []
            session.joined(channel, ident, first)
        else:
            session.push(message("subscribed", channel=channel, id=ident))
            if self.has_snapshot:
                session.push(envelope("snapshot", channel, self.snapshot_json(channel)))
        self.subscribers.setdefault(channel, {})[session] = None

    def go_live(self) -> None:
        """The state is loaded: serve every waiter its snapshot, in one step."""
        self.status = LIVE
        waiters, self.waiters = self.waiters, {}
        for channel, sessions in waiters.items():
            for session, ident in sessions.items():
                if not session.closing:
                    self._serve(session, channel, ident)

    def fan_out(self, frames: Frames) -> None:
        for channel, frame in frames:
            subs = self.subscribers.get(channel)
            if subs:
                for session in tuple(subs):
                    session.push(frame)

    # -- state ---------------------------------------------------------------------------------

    def start_loading(self) -> None:
        self.status = LOADING
        self.buffer = []
        self.needs_reload = False

    def on_message(self, raw: bytes) -> None:
        """A message from Redis: dropped, buffered, or applied and fanned out."""
        if self.status == LIVE:
            self.latest = None
            frames = self.apply(raw)
            if self.dialects and self.latest is not None:
                for channel, dialect in self.dialects.items():
                    if self.subscribers.get(channel):
                        try:
                            frames.extend((channel, frame) for frame in dialect.frames(self))
                        except Exception:  # a bug there costs its own subscribers only
                            log.exception("dialect frames failed", extra={"channel": channel})
            self.fan_out(frames)
        elif self.status == LOADING:
            self.buffer.append(raw)

    def replay(self) -> None:
        """Apply the messages buffered while loading (no fan-out: nobody holds a snapshot
        older than the state just loaded that these would continue)."""
        buffered, self.buffer = self.buffer, []
        for raw in buffered:
            self.apply(raw)

    async def load(self, client: aioredis.Redis) -> None:
        """Read the state from Redis (after the SUBSCRIBE is confirmed)."""

    def apply(self, raw: bytes) -> Frames:
        """Fold one message into the state; the frames for subscribers."""
        raise NotImplementedError

    def snapshot_json(self, channel: str) -> bytes:
        raise NotImplementedError


# ---------------------------------------------------------------- depth


class DepthTopic(Topic):
    """The top-N book, kept from the snapshot in ``md:depth:{m}`` and the deltas of
    ``live:depth:{m}``. A delta is forwarded as published (``seq``, ``prev_seq``); one that
    does not continue this state (a lost message upstream) is forwarded too, so subscribers
    see the gap, and the state reloads."""

    def __init__(self, redis_channel: str, channel: Channel) -> None:
        super().__init__(redis_channel)
        assert channel.market is not None
        self.channel = channel.name
        self.market = channel.market
        self.seq = 0
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self._snapshot: bytes | None = None

    async def load(self, client: aioredis.Redis) -> None:
        raw = await client.get(depth_key(self.market))
        doc: dict[str, Any] = orjson.loads(raw) if raw else {"bids": [], "asks": [], "seq": 0}
        self.seq = int(doc["seq"])
        self.bids = dict(doc["bids"])
        self.asks = dict(doc["asks"])
        self._snapshot = None

    def apply(self, raw: bytes) -> Frames:
        delta = orjson.loads(raw)
        seq, prev = delta["seq"], delta["prev_seq"]
        if seq <= self.seq:
            return []  # already in the state (the snapshot was newer)
        self.latest = delta
        if prev != self.seq:
            self.needs_reload = True
            return [(self.channel, envelope("update", self.channel, raw))]
        for side, levels in ((self.bids, delta["bids"]), (self.asks, delta["asks"])):
            for price, amount in levels:
                if amount == "0":
                    side.pop(price, None)
                else:
                    side[price] = amount
        self.seq = seq
        self._snapshot = None
        return [(self.channel, envelope("update", self.channel, raw))]

    def snapshot_json(self, channel: str) -> bytes:
        if self._snapshot is None:
            self._snapshot = orjson.dumps(self.book())
        return self._snapshot

    def book(self) -> dict[str, Any]:
        """The state: ``{market, bids, asks, seq}``, each side best first."""
        return {
            "market": self.market,
            "bids": sorted(self.bids.items(), key=_price, reverse=True),
            "asks": sorted(self.asks.items(), key=_price),
            "seq": self.seq,
        }


def _price(level: tuple[str, str]) -> Decimal:
    return Decimal(level[0])


# ---------------------------------------------------------------- trades


class TradesTopic(Topic):
    """The latest public trades; an update is the batch's new trades, oldest first."""

    def __init__(self, redis_channel: str, channel: Channel) -> None:
        super().__init__(redis_channel)
        assert channel.market is not None
        self.channel = channel.name
        self.market = channel.market
        self.last_id = 0
        self.recent: deque[bytes] = deque(maxlen=TRADES_SNAPSHOT)

    async def load(self, client: aioredis.Redis) -> None:
        items: list[bytes] = await client.lrange(  # type: ignore[assignment]
            trades_key(self.market), 0, TRADES_SNAPSHOT - 1
        )
        self.recent.clear()
        self.recent.extend(reversed(items))  # Redis keeps them newest first
        self.last_id = orjson.loads(items[0])["trade_id"] if items else 0

    def apply(self, raw: bytes) -> Frames:
        trades = orjson.loads(raw)
        new = [t for t in trades if t["trade_id"] > self.last_id]
        if not new:
            return []
        data = raw if len(new) == len(trades) else orjson.dumps(new)
        self.latest = new
        self.recent.extend(orjson.dumps(t) for t in new)
        self.last_id = new[-1]["trade_id"]
        return [(self.channel, envelope("update", self.channel, data))]

    def snapshot_json(self, channel: str) -> bytes:
        return b"[" + b",".join(self.recent) + b"]"


# ---------------------------------------------------------------- ticker


class TickerTopic(Topic):
    """The 24 h ticker: each update is the whole ticker (as ``GET .../ticker``)."""

    def __init__(self, redis_channel: str, channel: Channel) -> None:
        super().__init__(redis_channel)
        assert channel.market is not None
        self.channel = channel.name
        self.market = channel.market
        self.ts = 0
        self.current = b""

    async def load(self, client: aioredis.Redis) -> None:
        raw: bytes | None = await client.get(ticker_key(self.market))  # type: ignore[assignment]
        if raw is None:  # never traded: what the HTTP API shows
            raw = orjson.dumps(
                {
                    "market": self.market, "last": None, "open": None, "high": None,
                    "low": None, "volume": "0", "quote_volume": "0", "change": None,
                    "trades": 0, "ts": None,
                }
            )  # fmt: skip
        self.current = raw
        self.ts = orjson.loads(raw)["ts"] or 0

    def apply(self, raw: bytes) -> Frames:
        ticker = orjson.loads(raw)
        ts = ticker["ts"] or 0
        if ts < self.ts:
            return []  # older than what the snapshot showed
        self.latest = ticker
        self.ts = ts
        self.current = raw
        return [(self.channel, envelope("update", self.channel, raw))]

    def snapshot_json(self, channel: str) -> bytes:
        return self.current


# ---------------------------------------------------------------- klines


class KlineTopic(Topic):
    """The newest candles of one interval; an update lists the candles a batch changed (full
    state each, oldest first). A candle's trade count only grows, which orders two states of
    the same candle."""

    def __init__(self, redis_channel: str, channel: Channel) -> None:
        super().__init__(redis_channel)
        self.channel = channel.name
        assert channel.market is not None and channel.interval is not None
        self.key = kline_key(channel.market, channel.interval)
        self.candles: dict[int, list[Any]] = {}

    async def load(self, client: aioredis.Redis) -> None:
        members: list[bytes] = await client.zrange(self.key, -KLINES_SNAPSHOT, -1)  # type: ignore[assignment]
        self.candles = {}
        for raw in members:
            candle = orjson.loads(raw)
            self.candles[candle[0]] = candle

    def apply(self, raw: bytes) -> Frames:
        changed = []
        arrays: list[list[Any]] = []
        for candle in orjson.loads(raw):
            held = self.candles.get(candle[0])
            if held is not None and held[7] > candle[7]:
                continue  # an older state of a candle the snapshot already had
            self.candles[candle[0]] = candle
            changed.append(dict(zip(KLINE_FIELDS, candle, strict=True)))
            arrays.append(candle)
        if not changed:
            return []
        self.latest = arrays
        if len(self.candles) > KLINES_SNAPSHOT:
            for t in sorted(self.candles)[:-KLINES_SNAPSHOT]:
                del self.candles[t]
        return [(self.channel, envelope("update", self.channel, orjson.dumps(changed)))]

    def snapshot_json(self, channel: str) -> bytes:
        return orjson.dumps(
            [dict(zip(KLINE_FIELDS, self.candles[t], strict=True)) for t in sorted(self.candles)]
        )


# ---------------------------------------------------------------- a user's orders and balances


class UserTopic(Topic):
    """``live:user:{user}``: one message per batch lists the user's order and balance events;
    they go to the user's ``orders`` and ``balances`` subscribers (each element without its
    ``channel`` field). No snapshot: the state is ``GET /v1/orders`` and ``/v1/balances``."""

    has_snapshot = False

    def apply(self, raw: bytes) -> Frames:
        by_channel: dict[str, list[dict[str, Any]]] = {}
        items = orjson.loads(raw)
        if self.dialects:
            self.latest = [dict(item) for item in items]  # with their "channel"
        for item in items:
            channel = item.pop("channel", None)
            if channel in ("orders", "balances"):
                by_channel.setdefault(channel, []).append(item)
        return [
            (channel, envelope("update", channel, orjson.dumps(items)))
            for channel, items in by_channel.items()
            if self.subscribers.get(channel)
        ]

    def replay(self) -> None:
        self.buffer = []  # no state: nothing to fold in

    def snapshot_json(self, channel: str) -> bytes:  # pragma: no cover - has_snapshot is False
        return b"null"


def make_topic(channel: Channel, redis_channel: str) -> Topic:
    if channel.kind == "depth":
        return DepthTopic(redis_channel, channel)
    if channel.kind == "trades":
        return TradesTopic(redis_channel, channel)
    if channel.kind == "ticker":
        return TickerTopic(redis_channel, channel)
    if channel.kind == "kline":
        return KlineTopic(redis_channel, channel)
    return UserTopic(redis_channel)
