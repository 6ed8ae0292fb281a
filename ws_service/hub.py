"""The process's one Redis pub/sub connection, and the topics it feeds.

A topic (``ws_service.topics``) exists while at least one local client holds one of its
channels: the first subscriber makes the hub SUBSCRIBE to its ``live:*`` channel, the last
one leaving makes it UNSUBSCRIBE. So an instance receives only what its own clients need (a
``PSUBSCRIBE live:*`` would bring every user's private messages and every market to every
instance).

The same connection carries ``sessions:revoked`` (api.sessions): a logout, a password or
role change, or a deleted API key ends the private subscriptions of the connections it
concerns at once (``Session.revoked``); one remembered for ``RECENT_REVOCATIONS_S`` also stops
a connection that was authenticating while it was published.

The feed is watched end to end: every two seconds the hub PUBLISHes to a channel of its own
and expects to receive it. When Redis cannot be reached or the heartbeat stops, messages may
have been lost, so every client is closed (1013, "reconnect") and the hub reconnects; new
connections are refused (HTTP 503) until it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api.auth import Principal
from api.sessions import Revocation, parse_revocation
from shared.redis_keys import MARKETS_KEY, REVOCATIONS_CHANNEL, ws_heartbeat_channel
from ws_service.protocol import Channel, Ident, error
from ws_service.topics import LIVE, WAITING, Dialect, Topic, make_topic

if TYPE_CHECKING:
    from ws_service.session import Session

log = logging.getLogger("ws.hub")

HEARTBEAT_S: Final = 2.0
FEED_DEAD_S: Final = 6.0
REDIS_CONNECTIONS: Final = 16
"""The pub/sub connection, and reads of snapshots (a client waits for a free one)."""
MAX_RUN: Final = 100
"""Most messages handled before the frames they made are written."""
"""No heartbeat back for this long: the feed is lost."""
RECENT_REVOCATIONS_S: Final = 30.0
"""Longer than a credential check takes (its Redis read happens before the session knows its
principal): a revocation published meanwhile is still caught."""
CLOSE_FEED_LOST: Final = (1013, "market data feed interrupted: reconnect")


class FeedLostError(Exception):
    pass


class Hub:
    def __init__(self, redis_url: str, load_timeout_s: float) -> None:
        self.redis_url = redis_url
        self.load_timeout_s = load_timeout_s
        self.topics: dict[str, Topic] = {}
        self.sessions: set[Session] = set()
        self.ready = False
        """Connected to Redis and subscribed: new clients are accepted."""
        self.stats = {"messages": 0, "sent": 0, "slow_consumers": 0, "feed_losses": 0}
        """Messages from Redis, messages sent to clients, clients cut off, feed losses."""
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None  # redis.asyncio.client.PubSub (untyped)
        self._inflight: dict[str, int] = {}
        self._markets: set[str] = set()
        self._market_lookups: dict[str, asyncio.Future[bool]] = {}
        self._beat_channel = ws_heartbeat_channel(uuid.uuid4().hex)
        self._last_beat = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._dirty: list[Session] = []
        self._revocations: deque[tuple[float, Revocation]] = deque()
        self._flush_soon = False
        self._reading = False

    # -- the feed ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read, and on any failure close every client and connect again."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._connect()
                backoff = 0.5
                await self._read()
            except (RedisError, OSError, FeedLostError) as exc:
                if not self._stopping.is_set():
                    self.stats["feed_losses"] += 1
                    log.warning("market data feed lost: %s", exc, extra={"error": repr(exc)})
            except Exception:  # a bug: the same recovery, loudly
                self.stats["feed_losses"] += 1
                log.exception("market data feed failed")
            finally:
                await self._down()
            if not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 10.0)

    def stop(self) -> None:
        self._stopping.set()

    async def _connect(self) -> None:
        self._client = aioredis.Redis.from_pool(  # closing the client closes the pool
            aioredis.BlockingConnectionPool.from_url(
                self.redis_url,
                max_connections=REDIS_CONNECTIONS,
                timeout=10,
                retry=Retry(NoBackoff(), 0),  # a lost connection is the hub's to handle
                socket_connect_timeout=5,
                socket_timeout=10,
            )
        )
        self._pubsub = self._client.pubsub()
        # Revocations first: the feed counts as up (the heartbeat's confirmation) only after.
        await self._pubsub.subscribe(REVOCATIONS_CHANNEL, self._beat_channel)
        self._last_beat = time.monotonic()

    # -- writing: the frames of one turn, together -------------------------------------------

    def dirty(self, session: Session) -> None:
        """``session`` has frames to write: written at the end of this turn (or of the
        reader's run of messages, when it is reading)."""
        self._dirty.append(session)
        if not self._flush_soon and not self._reading:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_soon = False
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            session.write_pending()

    # -- reading ---------------------------------------------------------------------------------

    async def _read(self) -> None:
        """Read messages; those already waiting are handled as one run, and the frames they
        make are written once the run is over (one write per client for a batch's depth
        update, trades and ticker)."""
        pubsub = self._pubsub
        self._spawn(self._heartbeat())
        while not self._stopping.is_set():
            msg = await pubsub.get_message(timeout=1.0)
            self._reading = True
            try:
                run = 0
                while msg is not None:
                    self._handle(msg)
                    run += 1
                    if run >= MAX_RUN:
                        break
                    msg = await pubsub.get_message(timeout=0)
            finally:
                self._reading = False
                self.flush()
            now = time.monotonic()
            if now - self._last_beat > FEED_DEAD_S:
                raise FeedLostError(f"no heartbeat through Redis for {now - self._last_beat:.1f}s")

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        channel = msg["channel"].decode()
        if channel == self._beat_channel:
            self._last_beat = time.monotonic()
            if kind == "subscribe" and not self.ready:
                self.ready = True
                log.info("market data feed up")
            return
        if channel == REVOCATIONS_CHANNEL:
            if kind == "message":
                self._revoke(msg["data"])
            return
        if kind == "message":
            topic = self.topics.get(channel)
            if topic is None:
                return  # unsubscribed meanwhile
            self.stats["messages"] += 1
            try:
                topic.on_message(msg["data"])
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                # not the documented shape: skipped, and the state read again
                log.error("malformed message on %s: %r", channel, exc)
                topic.needs_reload = True
            if topic.needs_reload and topic.status == LIVE:
                log.warning("gap in %s: reloading its state", channel)
                self._load(topic)
        elif kind in ("subscribe", "unsubscribe"):
            left = self._inflight.get(channel, 1) - 1
            if left > 0:
                self._inflight[channel] = left
                return
            self._inflight.pop(channel, None)
            topic = self.topics.get(channel)
            if kind == "subscribe" and topic is not None and topic.status == WAITING:
                self._load(topic)

    # -- revocations ---------------------------------------------------------------------------

    def _revoke(self, data: bytes) -> None:
        revocation = parse_revocation(data)
        if revocation is None:
            log.error("malformed revocation: %r", data[:200])
            return
        now = time.monotonic()
        self._revocations.append((now, revocation))
        while self._revocations and now - self._revocations[0][0] > RECENT_REVOCATIONS_S:
            self._revocations.popleft()
        for session in list(self.sessions):
            if session.principal is not None and ends(revocation, session.principal):
                session.revoked()

    def revoked(self, principal: Principal) -> bool:
        """Whether a revocation published lately ends ``principal`` (one just checked)."""
        now = time.monotonic()
        return any(
            now - at <= RECENT_REVOCATIONS_S and ends(r, principal) for at, r in self._revocations
        )

    async def _heartbeat(self) -> None:
        while self._client is not None and not self._stopping.is_set():
            try:
                await self._client.publish(self._beat_channel, b"1")
            except RedisError as exc:
                log.warning("heartbeat publish failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_S)

    async def _down(self) -> None:
        """Forget the feed: close every client (their streams may have lost messages)."""
        self.ready = False
        for task in list(self._tasks):
            task.cancel()
        for session in list(self.sessions):
            session.close(*CLOSE_FEED_LOST)
        self.topics.clear()
        self._inflight.clear()
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        with contextlib.suppress(Exception):
            if pubsub is not None:
                await pubsub.aclose()
        with contextlib.suppress(Exception):
            if client is not None:
                await client.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- topics --------------------------------------------------------------------------------

    def _load(self, topic: Topic) -> None:
        """Load a confirmed (or gapped) topic's state from Redis, then serve its waiters."""
        if not topic.has_snapshot:  # nothing to load: live from the confirmation on
            topic.go_live()
            return
        topic.start_loading()
        self._spawn(self._load_state(topic))

    async def _load_state(self, topic: Topic) -> None:
        deadline = time.monotonic() + self.load_timeout_s
        while self.topics.get(topic.redis_channel) is topic:
            try:
                if self._client is None:
                    raise FeedLostError("not connected to Redis")
                await topic.load(self._client)
                topic.replay()
            except Exception as exc:  # Redis, or a malformed value: try again, then give up
                if time.monotonic() > deadline:
                    log.error("could not load %s: %s", topic.redis_channel, exc)
                    await self._give_up(topic)
                    return
                await asyncio.sleep(0.2)
                continue
            if self.topics.get(topic.redis_channel) is not topic:
                return  # its last subscriber left meanwhile
            if topic.needs_reload:  # a gap among the buffered messages: once more
                topic.start_loading()
                continue
            topic.go_live()
            return

    async def _give_up(self, topic: Topic) -> None:
        """The topic's state cannot be read: its subscribers are told and it is dropped."""
        text = "could not read this channel's market data: subscribe again later"
        for group in (topic.waiters, topic.subscribers):
            for channel, sessions in group.items():
                for session in sessions:
                    session.push(error("feed_unavailable", text, channel=channel))
                    session.channels.pop(channel, None)
        topic.waiters, topic.subscribers = {}, {}
        if self.topics.get(topic.redis_channel) is topic:
            del self.topics[topic.redis_channel]
            with contextlib.suppress(Exception):
                await self._command("unsubscribe", topic.redis_channel)

    async def attach(
        self,
        session: Session,
        channel: Channel,
        rc: str,
        ident: Ident,
        dialect: Dialect | None = None,
        name: str | None = None,
    ) -> None:
        """Subscribe ``session`` to ``channel`` (Redis channel ``rc``): ``subscribed`` and its
        snapshot follow as soon as the topic is live (at once when it already is). Another
        wire format's subscriber holds its own client channel ``name``, whose frames
        ``dialect`` makes from the same topic."""
        topic = self.topics.get(rc)
        if topic is None:
            topic = self.topics[rc] = make_topic(channel, rc)
            topic.add(session, name or channel.name, ident, dialect)
            await self._command("subscribe", rc)
            return
        topic.add(session, name or channel.name, ident, dialect)

    async def detach(self, session: Session, name: str, rc: str) -> None:
        topic = self.topics.get(rc)
        if topic is None:
            return
        topic.remove(session, name)
        if topic.empty():
            del self.topics[rc]
            await self._command("unsubscribe", rc)

    async def _command(self, command: str, channel: str) -> None:
        if self._pubsub is None:
            raise FeedLostError("not connected to Redis")
        self._inflight[channel] = self._inflight.get(channel, 0) + 1
        if command == "subscribe":
            await self._pubsub.subscribe(channel)
        else:
            await self._pubsub.unsubscribe(channel)

    async def market_exists(self, market: str) -> bool:
        """Whether the market is listed (markets are never removed: a yes is kept). One
        lookup at a time per market, however many clients ask at once."""
        if market in self._markets:
            return True
        pending = self._market_lookups.get(market)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup_market(market))
            self._market_lookups[market] = pending
            pending.add_done_callback(lambda _: self._market_lookups.pop(market, None))
        return await asyncio.shield(pending)

    async def _lookup_market(self, market: str) -> bool:
        if self._client is None:
            raise FeedLostError("not connected to Redis")
        if await self._client.hexists(MARKETS_KEY, market):
            self._markets.add(market)
            return True
        return False


def ends(revocation: Revocation, principal: Principal) -> bool:
    p = principal
    return revocation.ends(p.user_id, p.via, p.session_id, p.epoch, p.key_id)
