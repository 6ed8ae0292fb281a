"""One client connection: what it subscribed to, who it is, and its outgoing line.

Writes never wait. The frames a session gets in one turn of the event loop go to its socket
in one write while the socket keeps up; once the socket's buffer is above its high-water
mark (``write_limit_bytes``, after the kernel's own send buffer is full), frames wait in the
session's own line, handed to the socket when it drains. When more than
``max_buffer_bytes`` wait, the client is too slow: its line is dropped and it is closed
(1008, "slow consumer: buffer overflow"), so a slow client costs the others nothing but its
own bytes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Final

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from api.auth import Principal
from shared.config import WsConfig
from ws_service.auth import SocketAuth
from ws_service.protocol import (
    PRIVATE_KINDS,
    Ident,
    Op,
    ProtocolError,
    error,
    message,
    parse_channel,
    parse_op,
)

if TYPE_CHECKING:
    from ws_service.binance import Route
    from ws_service.hub import Hub

log = logging.getLogger("ws.session")

_OPEN: Final = State.OPEN
CLOSE_SLOW: Final = (1008, "slow consumer: buffer overflow")
CLOSE_RATE: Final = (1008, "too many messages")
_REVOKED: Final = "the session ended (a logout, a password or role change, a deleted API key)"


class FeedConnection(ServerConnection):
    """websockets' server connection, telling its session when the socket drains."""

    session: Session | None = None
    principal: Principal | None = None
    """Set when the opening handshake itself was authenticated (Authorization/X-API-Key)."""
    token_expires: float | None = None
    binance_route: Route | None = None
    """Set when the path is one of Binance's (``ws_service.binance``)."""

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.session is not None:
            self.session.drain_line()


class Session:
    def __init__(
        self, conn: FeedConnection, hub: Hub, auth: SocketAuth, cfg: WsConfig, peer: str
    ) -> None:
        self.conn = conn
        self.transport = conn.transport
        if cfg.send_buffer_bytes:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.send_buffer_bytes)
        self.protocol = conn.protocol
        self.hub = hub
        self.auth = auth
        self.cfg = cfg
        self.peer = peer
        self.channels: dict[str, str] = {}
        """Client channel name -> the Redis channel behind it."""
        self.principal: Principal | None = None
        self.closing = False
        self._pending: list[bytes] = []
        self._line: deque[bytes] = deque()
        self._line_bytes = 0
        self._burst = float(cfg.max_subscriptions + cfg.messages_per_s)
        self._tokens = self._burst
        self._refilled = time.monotonic()
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._idle: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None
        if conn.principal is not None:
            if hub.revoked(conn.principal):  # ended while the handshake was being checked
                self.push(error("session_revoked", _REVOKED))
            else:
                self._authenticated(conn.principal, conn.token_expires)
        self._arm_idle()

    @property
    def user_id(self) -> str | None:
        return self.principal.user_id if self.principal is not None else None

    # -- writing -------------------------------------------------------------------------------

    def push(self, frame: bytes) -> None:
        """Queue a frame for this turn of the event loop; never waits. The hub writes each
        session's frames of a turn together (``write_pending``): one system call for the
        depth update and the trades of one batch."""
        if self.closing:
            return
        if not self._pending:
            self.hub.dirty(self)
        self._pending.append(frame)

    def write_pending(self) -> None:
        """Write this turn's frames, or line them up behind a full socket."""
        frames = self._pending  # reused, not replaced: no allocation per client and turn
        if not frames or self.closing:
            frames.clear()
            return
        if self._line or self.conn.paused:
            self._line.extend(frames)
            self._line_bytes += sum(map(len, frames))
            frames.clear()
            if self._line_bytes > self.cfg.max_buffer_bytes:
                self.hub.stats["slow_consumers"] += 1
                log.info("slow consumer closed", extra={"peer": self.peer, "user": self.user_id})
                self.close(*CLOSE_SLOW)
            return
        if self.protocol.state is _OPEN:
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
            self.hub.stats["sent"] += len(frames)
        frames.clear()

    def joined(self, channel: str, ident: Ident, frames: list[bytes]) -> None:
        """A topic joined this session to ``channel`` of another wire format (a dialect),
        with its first ``frames``; that format's session answers its request here."""
        for frame in frames:
            self.push(frame)

    def drain_line(self) -> None:
        """The socket drained below its low-water mark: hand it what waits in line."""
        if not self._line or self.closing or self.protocol.state is not _OPEN:
            return
        data = b"".join(self._line)
        self.hub.stats["sent"] += len(self._line)
        self._line.clear()
        self._line_bytes = 0
        self.transport.write(data)

    def close(self, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason``; what still waits in line is dropped."""
        if self.closing:
            return
        self.closing = True
        self._pending.clear()
        self._line.clear()
        self._line_bytes = 0
        self._cancel_timers()
        self._closer = self._loop.create_task(self.conn.close(code, reason))
        # close() waits for the socket to drain, which a client that stopped reading never
        # lets happen: then the connection is cut after close_timeout.
        self._loop.call_later(self.cfg.close_timeout_s, self._abort)

    def _abort(self) -> None:
        if self.protocol.state is not State.CLOSED:
            self.transport.abort()

    # -- reading -------------------------------------------------------------------------------

    async def handle(self, raw: str | bytes) -> None:
        """One client message: answered with a result or an error, never an exception."""
        if not self._take_token():
            self.close(*CLOSE_RATE)
            return
        ident: Ident = None
        try:
            op = parse_op(raw)
            ident = op.id
            if op.op == "subscribe":
                await self._subscribe(op)
            elif op.op == "unsubscribe":
                await self._unsubscribe(op)
            elif op.op == "auth":
                await self._auth(op)
            else:
                self.push(message("pong", id=ident, ts=int(time.time() * 1000)))
        except ProtocolError as exc:
            self.push(error(exc.code, exc.message, ident))
        except Exception:
            log.exception("failed to handle a message", extra={"peer": self.peer})
            self.push(error("internal", "the service failed to handle this message", ident))

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(
            self._burst, self._tokens + (now - self._refilled) * self.cfg.messages_per_s
        )
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _subscribe(self, op: Op) -> None:
        channel = parse_channel(op.fields.get("channel"))
        if channel.private and self.principal is None:
            raise ProtocolError(
                "auth_required",
                f"{channel.name} needs an authenticated connection: send "
                '{"op": "auth", "token": "<access token>"} first',
            )
        if channel.name not in self.channels:
            if len(self.channels) >= self.cfg.max_subscriptions:
                raise ProtocolError(
                    "too_many_subscriptions",
                    f"at most {self.cfg.max_subscriptions} subscriptions per connection",
                )
            if channel.market is not None and not await self._market_exists(channel.market):
                raise ProtocolError("unknown_market", f"unknown market {channel.market!r}")
        rc = channel.redis_channel(self.user_id)
        self.channels[channel.name] = rc
        self._disarm_idle()
        try:
            await self.hub.attach(self, channel, rc, op.id)
        except Exception as exc:
            self.channels.pop(channel.name, None)
            log.warning("subscribe %s failed: %s", channel.name, exc)
            raise ProtocolError(
                "feed_unavailable", "market data is unavailable: try again"
            ) from None

    async def _market_exists(self, market: str) -> bool:
        try:
            return await self.hub.market_exists(market)
        except Exception as exc:
            log.warning("market lookup failed: %s", exc)
            raise ProtocolError(
                "feed_unavailable", "market data is unavailable: try again"
            ) from None

    async def _unsubscribe(self, op: Op) -> None:
        name = op.fields.get("channel")
        rc = self.channels.pop(name, None) if isinstance(name, str) else None
        if rc is None:
            parse_channel(name)  # a malformed name says so
            raise ProtocolError("not_subscribed", f"not subscribed to {name!r}")
        assert isinstance(name, str)
        self.push(message("unsubscribed", channel=name, id=op.id))
        if not self.channels:
            self._arm_idle()
        await self._detach(name, rc)

    async def _detach(self, name: str, rc: str) -> None:
        try:
            await self.hub.detach(self, name, rc)
        except Exception as exc:  # the feed is down: the hub forgets everything anyway
            log.debug("unsubscribe %s failed: %s", name, exc)

    async def _auth(self, op: Op) -> None:
        principal, expires = await self.auth.verify_op(op.fields, self.peer)
        if self.hub.revoked(principal):  # ended while it was being checked
            raise ProtocolError("session_revoked", _REVOKED)
        if self.principal is not None and self.principal.user_id != principal.user_id:
            raise ProtocolError(
                "already_authenticated",
                "this connection is authenticated as another user: open a new one",
            )
        self._authenticated(principal, expires)
        self.push(
            message(
                "authenticated",
                id=op.id,
                user_id=principal.user_id,
                via=principal.via,
                expires_at=None if expires is None else int(expires * 1000),
            )
        )

    def _authenticated(self, principal: Principal, expires: float | None) -> None:
        self.principal = principal
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if expires is not None:
            delay = max(0.0, expires - time.time())
            self._expiry = self._loop.call_later(delay, self._token_expired)

    def _token_expired(self) -> None:
        """The access token expired: private subscriptions end until a new one is given."""
        self._expiry = None
        self._end_private("token_expired", "the access token expired")

    def revoked(self) -> None:
        """The credentials' session ended (api.sessions): as for an expired token."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._end_private("session_revoked", _REVOKED)

    def _end_private(self, code: str, why: str) -> None:
        self.principal = None
        private = {n: rc for n, rc in self.channels.items() if n in PRIVATE_KINDS}
        for name in private:
            del self.channels[name]
        self.push(
            error(
                code,
                f"{why}: send new credentials (op auth) and subscribe again "
                "to " + (", ".join(private) or "orders and balances"),
                channels=list(private),
            )
        )
        if not self.channels:
            self._arm_idle()
        if private:
            self._loop.create_task(self._detach_all(private))

    async def _detach_all(self, channels: dict[str, str]) -> None:
        for name, rc in channels.items():
            await self._detach(name, rc)

    async def drop(self) -> None:
        """The connection ended: leave every topic."""
        self.closing = True
        self._cancel_timers()
        channels, self.channels = self.channels, {}
        await self._detach_all(channels)

    # -- timers --------------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        if self._idle is None and not self.closing:
            self._idle = self._loop.call_later(self.cfg.idle_timeout_s, self._idle_out)

    def _disarm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_out(self) -> None:
        self._idle = None
        if not self.channels:
            self.close(1008, f"idle: no subscription for {self.cfg.idle_timeout_s:g}s")

    def _cancel_timers(self) -> None:
        self._disarm_idle()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
