"""The Binance dialect's pure translation (api/binance): signatures, symbols, numbers, filters,
errors and objects."""

from __future__ import annotations

import orjson
import pytest

from api.binance.errors import BinanceError, binance_error, error_answer
from api.binance.markets import symbol_info
from api.binance.numbers import fixed, fixed_text, plain, step_text
from api.binance.objects import Precisions, order_object, order_status, placed_object
from api.binance.signature import sign, signed_part, timestamp_fits, verify
from api.binance.symbols import market_of, symbol_map, symbol_of

# Binance's documented example (Spot API, "SIGNED endpoint examples for POST /api/v3/order").
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
QUERY = (
    b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    b"&recvWindow=5000&timestamp=1499827319559"
)
SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_binance_documented_signature() -> None:
    assert sign(SECRET, QUERY) == SIGNATURE


@pytest.mark.parametrize(
    ("query", "body"),
    [
        (QUERY + b"&signature=" + SIGNATURE.encode(), b""),  # all in the query
        (b"", QUERY + b"&signature=" + SIGNATURE.encode()),  # all in the body
        (QUERY[:36], QUERY[36:] + b"&signature=" + SIGNATURE.encode()),  # split
        (b"signature=" + SIGNATURE.encode() + b"&" + QUERY, b""),  # signature first
    ],
)
def test_signature_covers_query_then_body_as_sent(query: bytes, body: bytes) -> None:
    signed = signed_part(query, body)
    assert signed.payload == QUERY
    assert verify(SECRET, signed)


def test_bad_or_missing_signatures_fail() -> None:
    assert not verify(SECRET, signed_part(QUERY, b""))
    assert not verify(
        "another secret", signed_part(QUERY + b"&signature=" + SIGNATURE.encode(), b"")
    )
    tampered = QUERY.replace(b"quantity=1", b"quantity=2") + b"&signature=" + SIGNATURE.encode()
    assert not verify(SECRET, signed_part(tampered, b""))
    twice = QUERY + b"&signature=" + SIGNATURE.encode() + b"&signature=" + SIGNATURE.encode()
    assert signed_part(twice, b"").signature is None
    # Percent-encoding is signed as sent, never decoded first.
    encoded = b"symbols=%5B%22ETHUSDT%22%5D&timestamp=1"
    assert signed_part(encoded + b"&signature=x", b"").payload == encoded


def test_timestamp_window() -> None:
    now = 1_700_000_000_000
    assert timestamp_fits(now, 5000, now)
    assert timestamp_fits(now - 5000, 5000, now)
    assert not timestamp_fits(now - 5001, 5000, now)
    assert timestamp_fits(now + 999, 5000, now)
    assert not timestamp_fits(now + 1000, 5000, now)


def test_symbols() -> None:
    assert symbol_of("ETH-USDT") == "ETHUSDT"
    assert market_of("ETHUSDT", ["BTC-USDT", "ETH-USDT"]) == "ETH-USDT"
    assert market_of("ETHBTC", ["BTC-USDT", "ETH-USDT"]) is None
    # Two markets that would share a symbol: neither is reachable by it.
    assert symbol_map(["AB-CDE", "ABC-DE", "ETH-USDT"]) == {"ETHUSDT": "ETH-USDT"}


def test_numbers() -> None:
    assert fixed(200001000000, 8) == "2000.01000000"
    assert fixed(0, 6) == "0.000000"
    assert fixed(-150, 2) == "-1.50"
    assert fixed(7, 0) == "7"
    assert fixed_text("0.15", 8) == "0.15000000"
    assert fixed_text(None, 6) == "0.000000"
    assert plain("0.10000000") == "0.1"
    assert plain("2000.00") == "2000"
    assert plain("2000") == "2000"
    assert plain("0.000") == "0"
    assert plain("0.00001") == "0.00001"  # left for the rules: more decimals than the step
    assert step_text(1, 2) == "0.01000000"
    assert step_text(1, 18) == "0.000000000000000001"


MARKET = {
    "market": "ETH-USDT", "base": "ETH", "quote": "USDT", "tick": "0.01", "step": "0.0001",
    "min_amount": "0.0001", "min_notional": "1", "maker_fee": "0.001", "taker_fee": "0.002",
    "status": "open",
}  # fmt: skip


def test_exchange_info_filters_from_tick_step_and_minimums() -> None:
    info = symbol_info(MARKET, 8, 6)
    assert (info["symbol"], info["status"], info["baseAsset"], info["quoteAsset"]) == (
        "ETHUSDT", "TRADING", "ETH", "USDT",
    )  # fmt: skip
    assert info["orderTypes"] == ["LIMIT", "LIMIT_MAKER", "MARKET"]
    filters = {f["filterType"]: f for f in info["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["PRICE_FILTER"]["minPrice"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00010000"
    assert filters["LOT_SIZE"]["minQty"] == "0.00010000"
    assert filters["NOTIONAL"]["minNotional"] == "1.00000000"
    assert symbol_info({**MARKET, "status": "halted"}, 8, 6)["status"] == "HALT"


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        ("open", None, "NEW"),
        ("partially_filled", None, "PARTIALLY_FILLED"),
        ("filled", None, "FILLED"),
        ("cancelled", "cancelled_by_user", "CANCELED"),
        ("cancelled", "ioc_expired", "EXPIRED"),
        ("cancelled", "no_liquidity", "EXPIRED"),
        ("cancelled", "self_trade_prevented", "EXPIRED_IN_MATCH"),
    ],
)
def test_order_status(status: str, reason: str | None, expected: str) -> None:
    assert order_status(status, reason) == expected


ORDER = {
    "order_id": 42, "market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000.5",
    "amount": "0.5", "quote_amount": None, "time_in_force": "IOC", "post_only": False,
    "client_order_id": "c-1", "status": "cancelled", "filled": "0.2",
    "filled_quote": "400.1", "fee": "0.0004", "fee_asset": "ETH", "frozen": "0",
    "reason": "ioc_expired", "ts": 1_700_000_000_000, "updated_ts": 1_700_000_000_001,
}  # fmt: skip
FILL = {
    "trade_id": 7, "market": "ETH-USDT", "order_id": 42, "side": "buy", "role": "taker",
    "price": "2000.5", "amount": "0.2", "quote": "400.1", "fee": "0.0004", "fee_asset": "ETH",
    "ts": 1_700_000_000_000,
}  # fmt: skip
P = Precisions(8, 6)


def test_order_object() -> None:
    o = order_object(ORDER, P)
    assert o["orderId"] == 42 and isinstance(o["orderId"], int)
    assert (o["symbol"], o["status"], o["type"], o["side"], o["timeInForce"]) == (
        "ETHUSDT", "EXPIRED", "LIMIT", "BUY", "IOC",
    )  # fmt: skip
    assert (o["price"], o["origQty"], o["executedQty"], o["cummulativeQuoteQty"]) == (
        "2000.500000", "0.50000000", "0.20000000", "400.100000",
    )  # fmt: skip
    maker = order_object({**ORDER, "post_only": True, "time_in_force": "GTC"}, P)
    assert (maker["type"], maker["timeInForce"]) == ("LIMIT_MAKER", "GTC")


def test_placed_answers() -> None:
    assert set(placed_object(ORDER, [FILL], P, "ACK")) == {
        "symbol", "orderId", "orderListId", "clientOrderId", "transactTime",
    }  # fmt: skip
    assert "fills" not in placed_object(ORDER, [FILL], P, "RESULT")
    full = placed_object(ORDER, [FILL], P, "FULL")
    assert full["fills"] == [
        {"price": "2000.500000", "qty": "0.20000000", "commission": "0.00040000",
         "commissionAsset": "ETH", "tradeId": 7},
    ]  # fmt: skip


INSUFFICIENT = "Account has insufficient balance for requested action."
INVALID_KEY = "Invalid API-key, IP, or permissions for action."


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (422, "insufficient_funds", (400, -2010, INSUFFICIENT)),
        (422, "would_take", (400, -2010, "Order would immediately match and take.")),
        (409, "duplicate_client_order_id", (400, -2010, "Duplicate order sent.")),
        (400, "bad_tick", (400, -1013, "Filter failure: PRICE_FILTER")),
        (400, "bad_step", (400, -1013, "Filter failure: LOT_SIZE")),
        (400, "below_min_amount", (400, -1013, "Filter failure: LOT_SIZE")),
        (400, "below_min_notional", (400, -1013, "Filter failure: NOTIONAL")),
        (400, "unknown_market", (400, -1121, "Invalid symbol.")),
        (401, "invalid_api_key", (401, -2015, INVALID_KEY)),
        (403, "insufficient_scope", (401, -2015, INVALID_KEY)),
    ],
)  # fmt: skip
def test_native_errors_in_binance_codes(
    status: int, code: str, expected: tuple[int, int, str]
) -> None:
    assert binance_error(status, code, "whatever") == expected


def test_error_answer_shape_and_rate_limit() -> None:
    answer = error_answer(429, "rate_limited", "too many requests", {"Retry-After": "3"})
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "3"
    assert orjson.loads(answer.get_data())["code"] == -1003
    own = BinanceError(400, -1022, "Signature for this request is not valid.")
    answer = error_answer(own.status, own.code, own.message)
    assert orjson.loads(answer.get_data()) == {
        "code": -1022,
        "msg": "Signature for this request is not valid.",
    }
    assert error_answer(503, "unavailable", "down").status_code == 503
