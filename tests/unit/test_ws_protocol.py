"""The live feed's wire protocol without a server: channel names, client messages, frames."""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.redis_keys import KLINE_INTERVAL_NAMES
from ws_service.protocol import (
    ProtocolError,
    envelope,
    error,
    message,
    parse_channel,
    parse_op,
    text_frame,
)


def unframe(frame: bytes) -> bytes:
    """The payload of one unmasked, final text frame (RFC 6455 5.2), checking its header."""
    first, second = frame[0], frame[1]
    assert first == 0x81, "FIN set, opcode text"
    assert not second & 0x80, "a server never masks"
    n, offset = second & 0x7F, 2
    if n == 126:
        (n,) = struct.unpack("!H", frame[2:4])
        offset = 4
    elif n == 127:
        (n,) = struct.unpack("!Q", frame[2:10])
        offset = 10
    assert len(frame) == offset + n, "the length field names exactly the payload"
    return frame[offset:]


@pytest.mark.parametrize(
    ("name", "kind", "market", "interval"),
    [
        ("depth:ETH-USDT", "depth", "ETH-USDT", None),
        ("trades:ETH-USDT", "trades", "ETH-USDT", None),
        ("ticker:WBTC-USDC", "ticker", "WBTC-USDC", None),
        ("kline:ETH-USDT:1m", "kline", "ETH-USDT", "1m"),
        ("kline:ETH-USDT:1d", "kline", "ETH-USDT", "1d"),
        ("orders", "orders", None, None),
        ("balances", "balances", None, None),
    ],
)
def test_channels_parse(name: str, kind: str, market: str | None, interval: str | None) -> None:
    channel = parse_channel(name)
    assert (channel.name, channel.kind, channel.market, channel.interval) == (
        name,
        kind,
        market,
        interval,
    )
    assert channel.private == (kind in ("orders", "balances"))


def test_redis_channels() -> None:
    assert parse_channel("depth:ETH-USDT").redis_channel() == "live:depth:ETH-USDT"
    assert parse_channel("kline:ETH-USDT:5m").redis_channel() == "live:kline:ETH-USDT:5m"
    assert parse_channel("orders").redis_channel("u1") == "live:user:u1"
    assert parse_channel("balances").redis_channel("u1") == "live:user:u1"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "invalid_channel"),
        (7, "invalid_channel"),
        (None, "invalid_channel"),
        ("book:ETH-USDT", "unknown_channel"),
        ("depth", "unknown_channel"),
        ("depth:eth-usdt", "unknown_channel"),
        ("depth:ETHUSDT", "unknown_channel"),
        ("depth:ETH-USDT:1m", "unknown_channel"),
        ("kline:ETH-USDT", "unknown_interval"),
        ("kline:ETH-USDT:2m", "unknown_interval"),
        ("kline::1m", "unknown_channel"),
        ("x" * 10_000, "unknown_channel"),
    ],
)
def test_bad_channels_are_protocol_errors(name: object, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_channel(name)
    assert caught.value.code == code
    assert len(caught.value.message) < 300, "an echoed name is cut short"


@given(st.text(max_size=40))
def test_any_channel_name_parses_or_is_a_protocol_error(name: str) -> None:
    try:
        channel = parse_channel(name)
    except ProtocolError:
        return
    assert channel.name == name
    assert channel.interval is None or channel.interval in KLINE_INTERVAL_NAMES


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"op": "ping"}', "invalid_message"),
        ("{", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('"ping"', "invalid_message"),
        ('{"op": "dance"}', "unknown_op"),
        ('{"id": 1}', "unknown_op"),
        ('{"op": "ping", "id": true}', "invalid_message"),
        ('{"op": "ping", "id": 1.5}', "invalid_message"),
        ('{"op": "ping", "id": {"a": 1}}', "invalid_message"),
        ('{"op": "ping", "id": "' + "x" * 65 + '"}', "invalid_message"),
    ],
)
def test_bad_client_messages(raw: str | bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_op(raw)
    assert caught.value.code == code


def test_client_messages() -> None:
    op = parse_op('{"op": "subscribe", "channel": "depth:ETH-USDT", "id": "a"}')
    assert (op.op, op.id, op.fields["channel"]) == ("subscribe", "a", "depth:ETH-USDT")
    assert parse_op('{"op": "ping"}').id is None
    assert parse_op('{"op": "ping", "id": 12}').id == 12


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frames_at_each_length_boundary(size: int) -> None:
    payload = b"x" * size
    assert unframe(text_frame(payload)) == payload


@given(
    st.sampled_from(["snapshot", "update"]),
    st.text(min_size=1, max_size=30),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    ),
)
def test_envelope_carries_data_unchanged(kind: str, channel: str, data: object) -> None:
    doc = orjson.loads(unframe(envelope(kind, channel, orjson.dumps(data))))
    assert doc == {"type": kind, "channel": channel, "data": data}


def test_messages_leave_out_none_fields() -> None:
    assert orjson.loads(unframe(message("pong", id=None))) == {"type": "pong"}
    assert orjson.loads(unframe(error("unknown_op", "no", 3))) == {
        "type": "error",
        "code": "unknown_op",
        "message": "no",
        "id": 3,
    }
