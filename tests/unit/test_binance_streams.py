"""The Binance streams' translation (ws_service/binance_streams.py, ws_service.binance.route):
stream names, depth deltas as ``U``/``u`` a REST snapshot's ``lastUpdateId`` continues, the
public events, the user data stream's reports from the matcher's ``live:user`` batches, and
what a WebSocket API request signs."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from ws_service import binance_streams as bs
from ws_service.binance import route

ETH = bs.MarketInfo("ETH-USDT", "ETH", "USDT", 8, 6)


class Listed:
    def market(self, name: str) -> bs.MarketInfo:
        assert name == "ETH-USDT"
        return ETH

    def precision(self, asset: str) -> int | None:
        return {"ETH": 8, "USDT": 6}.get(asset)


@pytest.mark.parametrize(
    ("name", "kind", "extra"),
    [
        ("ethusdt@depth", "diff", {}),
        ("ethusdt@depth@100ms", "diff", {}),
        ("ethusdt@depth@1000ms", "diff", {}),
        ("ethusdt@depth5", "partial", {"levels": 5}),
        ("ethusdt@depth20@100ms", "partial", {"levels": 20}),
        ("ethusdt@trade", "trade", {}),
        ("ethusdt@aggTrade", "aggTrade", {}),
        ("ethusdt@ticker", "ticker", {}),
        ("ethusdt@miniTicker", "miniTicker", {}),
        ("ethusdt@bookTicker", "bookTicker", {}),
        ("ethusdt@kline_1m", "kline", {"interval": "1m"}),
        ("ethusdt@kline_1d", "kline", {"interval": "1d"}),
    ],
)
def test_stream_names(name: str, kind: str, extra: dict[str, Any]) -> None:
    stream = bs.parse_stream(name)
    assert (stream.name, stream.symbol, stream.kind) == (name, "ETHUSDT", kind)
    for field, value in extra.items():
        assert getattr(stream, field) == value


@pytest.mark.parametrize(
    "name", ["ethusdt", "ethusdt@depth7", "ethusdt@kline_7m", "ethusdt@forceOrder", "@trade", 5]
)
def test_unknown_streams_are_refused(name: object) -> None:
    with pytest.raises(bs.StreamError):
        bs.parse_stream(name)


def test_routes() -> None:
    key = "a" * 64
    assert route("/ws/" + key, "") == bs_route("raw", listen_key=key)
    assert route("/ws/0", "") == bs_route("raw")  # ccxt.pro's stream index: no stream
    assert route("/ws/ethusdt@trade/ethusdt@depth", "") == bs_route(
        "raw", ("ethusdt@trade", "ethusdt@depth")
    )
    assert route("/stream", "streams=ethusdt@trade/ethusdt@ticker") == bs_route(
        "combined", ("ethusdt@trade", "ethusdt@ticker")
    )
    assert route("/ws-api/v3", "") == bs_route("api")
    assert route("/v1/ws", "") is None and route("/wss", "") is None


def bs_route(mode: Any, streams: tuple[str, ...] = (), listen_key: str | None = None) -> Any:
    from ws_service.binance import Route

    return Route(mode, streams, listen_key)


def test_depth_delta_continues_a_snapshot() -> None:
    """A snapshot at ``seq`` S has ``lastUpdateId`` S; the delta from S to S' is
    ``U`` = S + 1, ``u`` = S': Binance's rule ``U <= lastUpdateId + 1 <= u`` holds for the first
    delta after the snapshot, and each next one has ``U`` = the previous ``u`` + 1."""
    delta = {"market": "ETH-USDT", "seq": 43, "prev_seq": 42,
             "bids": [["1999.99", "0.1"]], "asks": [["2000", "0"]]}  # fmt: skip
    event = bs.depth_update(ETH, delta, 1000)
    assert event == {
        "e": "depthUpdate", "E": 1000, "s": "ETHUSDT", "U": 43, "u": 43,
        "b": [["1999.990000", "0.10000000"]], "a": [["2000.000000", "0.00000000"]],
    }  # fmt: skip
    book = bs.partial_depth(ETH, [["1999.99", "1"]], [["2000", "2"], ["2001", "3"]], 43, 1)
    assert book == {
        "lastUpdateId": 43,
        "bids": [["1999.990000", "1.00000000"]],
        "asks": [["2000.000000", "2.00000000"]],
    }
    assert bs.book_ticker(ETH, 43, None, ["2000", "2"]) == {
        "u": 43, "s": "ETHUSDT", "b": "0.000000", "B": "0.00000000",
        "a": "2000.000000", "A": "2.00000000",
    }  # fmt: skip


def test_trades_ticker_and_candles() -> None:
    trade = {"trade_id": 6, "market": "ETH-USDT", "price": "2000", "amount": "0.5",
             "quote": "1000", "taker_side": "sell", "ts": 1704070801000}  # fmt: skip
    assert bs.trade_event(ETH, trade, 9) == {
        "e": "trade", "E": 9, "s": "ETHUSDT", "t": 6, "p": "2000.000000", "q": "0.50000000",
        "T": 1704070801000, "m": True, "M": True,
    }  # fmt: skip
    agg = bs.agg_trade_event(ETH, trade, 9)
    assert (agg["a"], agg["f"], agg["l"], agg["m"]) == (6, 6, 6, True)
    ticker = {"market": "ETH-USDT", "last": "1999.99", "open": "2000", "high": "2001.5",
              "low": "1999.99", "volume": "1.4", "quote_volume": "2800.147", "change": "-0.01",
              "trades": 6, "ts": 1704070801000}  # fmt: skip
    event = bs.ticker_event(ETH, ticker, 9)
    assert (event["p"], event["P"], event["c"], event["v"], event["n"]) == (
        "-0.010000", "-0.000", "1999.990000", "1.40000000", 6,
    )  # fmt: skip
    assert event["w"] == "2000.105000" and event["C"] - event["O"] == 86_400_000
    never = {"market": "ETH-USDT", "last": None, "open": None, "high": None, "low": None,
             "volume": "0", "quote_volume": "0", "change": None, "trades": 0,
             "ts": None}  # fmt: skip
    assert bs.mini_ticker_event(ETH, never, 9)["c"] == "0.000000"
    candle = [1704067200000, "2000", "2001", "1999", "2000.5", "0.7", "1400.35", 3]
    k = bs.kline_event(ETH, "1m", candle, 1704067230000)["k"]
    assert (k["t"], k["T"], k["i"], k["o"], k["c"], k["n"], k["x"]) == (
        1704067200000, 1704067259999, "1m", "2000.000000", "2000.500000", 3, False,
    )  # fmt: skip
    assert bs.kline_event(ETH, "1m", candle, 1704067260000)["k"]["x"] is True


def accepted(order_id: int, **fields: Any) -> dict[str, Any]:
    return {"channel": "orders", "event": "order_accepted", "order_id": order_id,
            "market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2000",
            "amount": "1", "quote_amount": None, "time_in_force": "GTC", "post_only": False,
            "client_order_id": f"c{order_id}", "ts": 100, **fields}  # fmt: skip


def traded(order_id: int, trade_id: int, amount: str, role: str = "taker") -> dict[str, Any]:
    quote = str(2000 * float(amount)).rstrip("0").rstrip(".")
    return {"channel": "orders", "event": "trade", "trade_id": trade_id, "market": "ETH-USDT",
            "order_id": order_id, "side": "buy", "role": role, "price": "2000",
            "amount": amount, "quote": quote, "fee": "0.0002", "fee_asset": "ETH",
            "ts": 101}  # fmt: skip


def updated(order_id: int, status: str, filled: str, reason: str | None = None) -> dict[str, Any]:
    quote = str(2000 * float(filled)).rstrip("0").rstrip(".")
    return {"channel": "orders", "event": "order_updated", "order_id": order_id,
            "market": "ETH-USDT", "side": "buy", "status": status, "filled": filled,
            "filled_quote": quote, "fee": "0", "frozen": "0", "reason": reason}  # fmt: skip


def test_an_order_that_fills_in_two_trades() -> None:
    stream = bs.UserStream(Listed())
    batch = [accepted(2), traded(2, 1, "0.4"), traded(2, 2, "0.6"), updated(2, "filled", "1")]
    reports = stream.events(batch, 500)
    assert [(r["x"], r["X"], r["z"], r["l"]) for r in reports] == [
        ("NEW", "NEW", "0.00000000", "0.00000000"),
        ("TRADE", "PARTIALLY_FILLED", "0.40000000", "0.40000000"),
        ("TRADE", "FILLED", "1.00000000", "0.60000000"),
    ]
    last = reports[-1]
    assert (last["s"], last["c"], last["S"], last["o"], last["f"]) == (
        "ETHUSDT", "c2", "BUY", "LIMIT", "GTC",
    )  # fmt: skip
    assert (last["q"], last["p"], last["Z"], last["Y"], last["n"], last["N"]) == (
        "1.00000000", "2000.000000", "2000.000000", "1200.000000", "0.00020000", "ETH",
    )  # fmt: skip
    assert (last["i"], last["t"], last["m"], last["O"], last["T"]) == (2, 2, False, 100, 101)
    assert 2 not in stream.orders  # forgotten once it ended


def test_cancels_expiries_and_orders_from_before_the_stream() -> None:
    stream = bs.UserStream(Listed())
    cancel = [accepted(3, post_only=True), updated(3, "cancelled", "0", "cancelled_by_user")]
    reports = stream.events(cancel, 1)
    assert [(r["x"], r["X"], r["o"]) for r in reports] == [
        ("NEW", "NEW", "LIMIT_MAKER"), ("CANCELED", "CANCELED", "LIMIT_MAKER"),
    ]  # fmt: skip
    ioc = [accepted(4, time_in_force="IOC"), traded(4, 5, "0.25"),
           updated(4, "cancelled", "0.25", "ioc_expired")]  # fmt: skip
    reports = stream.events(ioc, 1)
    assert [(r["x"], r["X"], r["z"]) for r in reports] == [
        ("NEW", "NEW", "0.00000000"),
        ("TRADE", "PARTIALLY_FILLED", "0.25000000"),
        ("EXPIRED", "EXPIRED", "0.25000000"),
    ]
    # A resting order from before the stream began: cumulative fills from the batch's
    # order_updated, its terms unknown.
    maker = [traded(1, 9, "0.5", "maker"), updated(1, "partially_filled", "0.75")]
    reports = stream.events(maker, 1)
    (report,) = reports
    assert (report["x"], report["X"], report["z"], report["m"], report["q"]) == (
        "TRADE", "PARTIALLY_FILLED", "0.75000000", True, "0.00000000",
    )  # fmt: skip


def test_balances_after_a_batch() -> None:
    stream = bs.UserStream(Listed())
    batch = [
        {"channel": "balances", "asset": "USDT", "available": "100", "frozen": "0",
         "delta_available": "100", "delta_frozen": "0", "reason": "deposit", "ref": "d1"},
        {"channel": "balances", "asset": "USDT", "available": "90", "frozen": "10",
         "delta_available": "-10", "delta_frozen": "10", "reason": "order_freeze", "ref": "1"},
        {"channel": "balances", "asset": "ETH", "available": "0.5", "frozen": "0",
         "delta_available": "0.5", "delta_frozen": "0", "reason": "trade", "ref": "2"},
    ]  # fmt: skip
    update, position = stream.events(batch, 7)
    assert update == {"e": "balanceUpdate", "E": 7, "a": "USDT", "d": "100.000000", "T": 7}
    assert position["e"] == "outboundAccountPosition"
    assert position["B"] == [
        {"a": "USDT", "f": "90.000000", "l": "10.000000"},
        {"a": "ETH", "f": "0.50000000", "l": "0.00000000"},
    ]


def test_negative_numbers_keep_their_sign() -> None:
    assert bs.number("-0.5", 8) == "-0.50000000"
    assert bs.number(None, 2) == "0.00"
    assert bs.number("1.5", None) == "1.5"


def test_what_a_websocket_api_request_signs() -> None:
    """Parameters but ``signature`` sorted by name, ``name=value`` joined with ``&`` (as
    ccxt's ``sign_params`` and Binance's documentation make it)."""
    params = {"timestamp": 1649729878532, "apiKey": "ak_x", "recvWindow": 5000, "signature": "f"}
    payload = bs.ws_api_payload(params)
    assert payload == b"apiKey=ak_x&recvWindow=5000&timestamp=1649729878532"
    signature = hmac.new(b"secret", payload, hashlib.sha256).hexdigest()
    assert len(signature) == 64
