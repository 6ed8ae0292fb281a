"""The wire protocol of the live feed (docs/ws.md): channel names, the client's operations,
and the server's messages as ready-to-send WebSocket frames.

Every server message is one JSON object with a ``type``; messages about a channel name it::

    {"type": "subscribed", "channel": "depth:ETH-USDT", "id": 1}
    {"type": "snapshot", "channel": "depth:ETH-USDT", "data": {...}}
    {"type": "update", "channel": "depth:ETH-USDT", "data": {...}}
    {"type": "error", "code": "unknown_channel", "message": "...", "id": 1}

A message is serialized once and framed once (:func:`text_frame`); fan-out writes the same
bytes to every subscriber's socket.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from shared.redis_keys import (
    KLINE_INTERVAL_NAMES,
    live_depth_channel,
    live_kline_channel,
    live_ticker_channel,
    live_trades_channel,
    live_user_channel,
)

Ident = str | int | None
"""The ``id`` a client put in a message, echoed in the answers."""
Kind = Literal["depth", "trades", "ticker", "kline", "orders", "balances"]
PUBLIC_KINDS: Final = ("depth", "trades", "ticker", "kline")
PRIVATE_KINDS: Final = ("orders", "balances")
MARKET_RE: Final = re.compile(r"[A-Z0-9]{2,12}-[A-Z0-9]{2,12}")
_ID_MAX_CHARS: Final = 64


class ProtocolError(Exception):
    """A client message the service answers with an error (the connection stays open)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---------------------------------------------------------------- channels


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel a client subscribes to, as named on the wire."""

    name: str
    kind: Kind
    market: str | None = None
    interval: str | None = None

    @property
    def private(self) -> bool:
        return self.kind in PRIVATE_KINDS

    def redis_channel(self, user_id: str | None = None) -> str:
        """The matcher's PUBLISH channel behind it (``live:user:{user}`` for private ones)."""
        if self.private:
            assert user_id is not None, "a private channel needs the user"
            return live_user_channel(user_id)
        assert self.market is not None
        if self.kind == "depth":
            return live_depth_channel(self.market)
        if self.kind == "trades":
            return live_trades_channel(self.market)
        if self.kind == "ticker":
            return live_ticker_channel(self.market)
        assert self.interval is not None
        return live_kline_channel(self.market, self.interval)


def parse_channel(name: object) -> Channel:
    """The channel a client named, or ``ProtocolError`` saying what is wrong with the name."""
    if not isinstance(name, str) or not name:
        raise ProtocolError("invalid_channel", "channel must be a non-empty string")
    if name in PRIVATE_KINDS:
        return Channel(name, name)  # type: ignore[arg-type]
    kind, _, rest = name.partition(":")
    if kind not in PUBLIC_KINDS:
        raise ProtocolError(
            "unknown_channel",
            f"unknown channel {name[:80]!r}: use depth:{{market}}, trades:{{market}}, "
            "ticker:{market}, kline:{market}:{interval}, orders or balances",
        )
    if kind == "kline":
        market, _, interval = rest.partition(":")
        if interval not in KLINE_INTERVAL_NAMES:
            raise ProtocolError(
                "unknown_interval",
                f"kline interval must be one of {', '.join(KLINE_INTERVAL_NAMES)} "
                "(kline:ETH-USDT:1m)",
            )
    else:
        market, interval = rest, None
    if not MARKET_RE.fullmatch(market):
        raise ProtocolError(
            "unknown_channel", f"{kind} needs a market name BASE-QUOTE, like {kind}:ETH-USDT"
        )
    return Channel(name, kind, market, interval)  # type: ignore[arg-type]


# ---------------------------------------------------------------- client operations


@dataclass(frozen=True, slots=True)
class Op:
    """One decoded client message: ``op`` and its fields, ``id`` echoed in the answers."""

    op: str
    id: Ident
    fields: dict[str, Any]


OPS: Final = ("subscribe", "unsubscribe", "auth", "ping")


def parse_op(raw: str | bytes) -> Op:
    """A client message, or ``ProtocolError`` (bad JSON, not an object, unknown op)."""
    if isinstance(raw, bytes):
        raise ProtocolError("invalid_message", "send JSON text messages, not binary ones")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("invalid_json", "the message is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError("invalid_message", 'a message is a JSON object: {"op": ...}')
    ident = doc.get("id")
    if ident is not None and not (
        (isinstance(ident, int) and not isinstance(ident, bool))
        or (isinstance(ident, str) and len(ident) <= _ID_MAX_CHARS)
    ):
        raise ProtocolError(
            "invalid_message", f"id must be an integer or a string of at most {_ID_MAX_CHARS}"
        )
    op = doc.get("op")
    if op not in OPS:
        raise ProtocolError(
            "unknown_op", f"op must be one of {', '.join(OPS)}, got {str(op)[:40]!r}"
        )
    return Op(op, ident, doc)


# ---------------------------------------------------------------- server messages


def text_frame(payload: bytes) -> bytes:
    """An unfragmented, unmasked WebSocket text frame (RFC 6455 5.2) carrying ``payload``:
    what a server sends, the same bytes for every client (no compression is negotiated)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def message(kind: str, **fields: Any) -> bytes:
    """A server message's frame: ``{"type": kind, **fields}`` (``None`` fields left out)."""
    doc = {"type": kind}
    doc.update((k, v) for k, v in fields.items() if v is not None)
    return text_frame(orjson.dumps(doc))


def envelope(kind: str, channel: str, data_json: bytes) -> bytes:
    """A snapshot or update of ``channel`` around already-serialized ``data_json``."""
    head = orjson.dumps({"type": kind, "channel": channel})
    return text_frame(head[:-1] + b',"data":' + data_json + b"}")


def error(code: str, text: str, ident: Ident = None, **extra: Any) -> bytes:
    return message("error", code=code, message=text, id=ident, **extra)
