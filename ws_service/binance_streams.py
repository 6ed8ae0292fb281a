"""Binance's spot WebSocket streams as pure translation of the live feed (docs/binance-api.md).

Stream names (``ethusdt@depth@100ms``) are parsed into what they ask for; the matcher's
``live:*`` messages (docs/marketdata.md) become Binance's events: ``depthUpdate`` (``U`` =
the delta's ``prev_seq`` + 1, ``u`` = its ``seq``, so a client continues a REST ``depth``
snapshot whose ``lastUpdateId`` is the book's ``seq``), partial books, ``bookTicker``,
``trade``, ``aggTrade``, ``24hrTicker``, ``kline``, and, for the user data stream,
``executionReport``, ``outboundAccountPosition`` and ``balanceUpdate``. No I/O, no clock: the
event time is passed in.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, Protocol, cast

from api.binance.numbers import fixed_text, ratio
from api.binance.objects import order_status, order_type
from api.binance.symbols import symbol_of
from shared.redis_keys import KLINE_INTERVALS

StreamKind = Literal[
    "diff", "partial", "bookTicker", "trade", "aggTrade", "ticker", "miniTicker", "kline"
]
NativeKind = Literal["depth", "trades", "ticker", "kline"]

PARTIAL_LEVELS: Final = (5, 10, 20)
INTERVAL_MS: Final = dict(KLINE_INTERVALS)
_STREAM_RE: Final = re.compile(
    r"(?P<symbol>[a-z0-9]{2,24})@(?:"
    r"(?P<diff>depth)(?:@(?:100|1000)ms)?"
    r"|depth(?P<levels>5|10|20)(?:@(?:100|1000)ms)?"
    r"|(?P<kind>trade|aggTrade|ticker|miniTicker|bookTicker)"
    r"|kline_(?P<interval>[0-9]+[smhdwM]))"
)
ORDERS_KEPT: Final = 10_000
"""Orders a user stream remembers (type, price, amount) for its later reports."""


@dataclass(frozen=True, slots=True)
class Stream:
    """One Binance stream a client asked for, by the name it used."""

    name: str
    symbol: str
    kind: StreamKind
    levels: int = 0
    interval: str | None = None

    @property
    def native(self) -> NativeKind:
        """The live feed channel kind it is made from."""
        if self.kind in ("diff", "partial", "bookTicker"):
            return "depth"
        if self.kind in ("trade", "aggTrade"):
            return "trades"
        return "ticker" if self.kind in ("ticker", "miniTicker") else "kline"


class StreamError(ValueError):
    """A stream name this exchange does not serve; the message says why."""


def parse_stream(name: object) -> Stream:
    """The stream ``name`` names, or ``StreamError``."""
    if not isinstance(name, str):
        raise StreamError("Invalid request: stream names must be strings")
    found = _STREAM_RE.fullmatch(name)
    if found is None:
        raise StreamError(f"Invalid request: unknown stream {name[:80]!r}")
    symbol = found["symbol"].upper()
    if found["diff"]:
        return Stream(name, symbol, "diff")
    if found["levels"]:
        return Stream(name, symbol, "partial", levels=int(found["levels"]))
    if found["interval"]:
        if found["interval"] not in INTERVAL_MS:
            raise StreamError(
                f"Invalid request: kline interval must be one of {', '.join(INTERVAL_MS)}"
            )
        return Stream(name, symbol, "kline", interval=found["interval"])
    return Stream(name, symbol, cast(StreamKind, found["kind"]))


# ---------------------------------------------------------------- markets and numbers


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """What formatting needs of a market: its name, symbol and assets' precisions."""

    market: str
    base: str
    quote: str
    base_precision: int | None
    quote_precision: int | None

    @property
    def symbol(self) -> str:
        return symbol_of(self.market)

    def qty(self, value: str | None) -> str:
        return number(value, self.base_precision)

    def px(self, value: str | None) -> str:
        return number(value, self.quote_precision)


def number(value: str | None, precision: int | None) -> str:
    """A native decimal string as Binance writes it (padded to ``precision`` decimals; a
    missing number is zero). Unknown precision: the native string as it is."""
    if precision is None:
        return "0" if value is None else value
    if value is not None and value.startswith("-"):  # a change or a delta
        return "-" + fixed_text(value[1:], precision)
    return fixed_text(value, precision)


class Catalog(Protocol):
    """The listed markets and assets, as formatting needs them."""

    def market(self, name: str) -> MarketInfo:
        """``name``'s info (an unlisted one: unknown precisions)."""
        ...

    def precision(self, asset: str) -> int | None: ...


# ---------------------------------------------------------------- market streams


def depth_update(m: MarketInfo, delta: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """A native depth delta as ``depthUpdate``: ``[U, u]`` = ``[prev_seq + 1, seq]``."""
    return {
        "e": "depthUpdate",
        "E": now_ms,
        "s": m.symbol,
        "U": int(delta["prev_seq"]) + 1,
        "u": int(delta["seq"]),
        "b": levels(m, delta["bids"]),
        "a": levels(m, delta["asks"]),
    }


def levels(m: MarketInfo, rows: Iterable[Iterable[str]]) -> list[list[str]]:
    return [[m.px(price), m.qty(amount)] for price, amount in rows]


def partial_depth(
    m: MarketInfo, bids: list[list[str]], asks: list[list[str]], seq: int, n: int
) -> dict[str, Any]:
    """The top ``n`` levels (each side best first) as a partial book stream's message."""
    return {"lastUpdateId": seq, "bids": levels(m, bids[:n]), "asks": levels(m, asks[:n])}


def book_ticker(
    m: MarketInfo, seq: int, bid: list[str] | None, ask: list[str] | None
) -> dict[str, Any]:
    """The best bid and ask (an empty side is zeros)."""
    bid_px, bid_qty = bid if bid is not None else (None, None)
    ask_px, ask_qty = ask if ask is not None else (None, None)
    return {
        "u": seq,
        "s": m.symbol,
        "b": m.px(bid_px),
        "B": m.qty(bid_qty),
        "a": m.px(ask_px),
        "A": m.qty(ask_qty),
    }


def trade_event(m: MarketInfo, t: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """A public trade; ``m`` (buyer is maker) is true when the taker sold."""
    return {
        "e": "trade",
        "E": now_ms,
        "s": m.symbol,
        "t": t["trade_id"],
        "p": m.px(t["price"]),
        "q": m.qty(t["amount"]),
        "T": t["ts"],
        "m": t["taker_side"] == "sell",
        "M": True,
    }


def agg_trade_event(m: MarketInfo, t: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """A public trade as an aggregate of one (its id is the trade's, as in ``aggTrades``)."""
    return {
        "e": "aggTrade",
        "E": now_ms,
        "s": m.symbol,
        "a": t["trade_id"],
        "p": m.px(t["price"]),
        "q": m.qty(t["amount"]),
        "f": t["trade_id"],
        "l": t["trade_id"],
        "T": t["ts"],
        "m": t["taker_side"] == "sell",
        "M": True,
    }


def ticker_event(m: MarketInfo, tk: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """The native 24 h ticker as ``24hrTicker`` (the book's bid and ask are the
    ``bookTicker`` stream's)."""
    close_ms = tk.get("ts") or now_ms
    opened, volume = tk.get("open"), Decimal(tk.get("volume") or "0")
    quote_volume = Decimal(tk.get("quote_volume") or "0")
    percent = (
        ratio(Decimal(tk["change"]) * 100, Decimal(opened), 3)
        if opened is not None and tk.get("change") is not None
        else "0.000"
    )
    places = m.quote_precision if m.quote_precision is not None else 8
    return {
        "e": "24hrTicker",
        "E": now_ms,
        "s": m.symbol,
        "p": m.px(tk.get("change")),
        "P": percent,
        "w": ratio(quote_volume, volume, places),
        "x": m.px(opened),
        "c": m.px(tk.get("last")),
        "o": m.px(opened),
        "h": m.px(tk.get("high")),
        "l": m.px(tk.get("low")),
        "v": m.qty(tk.get("volume")),
        "q": m.px(tk.get("quote_volume")),
        "O": close_ms - INTERVAL_MS["1d"],
        "C": close_ms,
        "n": tk.get("trades") or 0,
    }


def mini_ticker_event(m: MarketInfo, tk: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """The native 24 h ticker as ``24hrMiniTicker`` (ccxt.pro's ``watch_ticker``)."""
    return {
        "e": "24hrMiniTicker",
        "E": now_ms,
        "s": m.symbol,
        "c": m.px(tk.get("last")),
        "o": m.px(tk.get("open")),
        "h": m.px(tk.get("high")),
        "l": m.px(tk.get("low")),
        "v": m.qty(tk.get("volume")),
        "q": m.px(tk.get("quote_volume")),
    }


def kline_event(m: MarketInfo, interval: str, candle: list[Any], now_ms: int) -> dict[str, Any]:
    """A native candle ``[open_time, o, h, l, c, volume, quote_volume, trades]``."""
    open_ms = int(candle[0])
    close_ms = open_ms + INTERVAL_MS[interval] - 1
    return {
        "e": "kline",
        "E": now_ms,
        "s": m.symbol,
        "k": {
            "t": open_ms,
            "T": close_ms,
            "s": m.symbol,
            "i": interval,
            "f": -1,
            "L": -1,
            "o": m.px(candle[1]),
            "c": m.px(candle[4]),
            "h": m.px(candle[2]),
            "l": m.px(candle[3]),
            "v": m.qty(candle[5]),
            "n": candle[7],
            "x": now_ms > close_ms,
            "q": m.px(candle[6]),
            "V": "0",
            "Q": "0",
            "B": "0",
        },
    }


# ---------------------------------------------------------------- the user data stream


@dataclass(frozen=True, slots=True)
class OrderInfo:
    """An order's fixed terms, from its ``order_accepted``."""

    market: str
    side: str
    type: str
    time_in_force: str
    price: str | None
    amount: str | None
    quote_amount: str | None
    client_order_id: str
    created: int


class UserStream:
    """One user's ``live:user`` batches as Binance user data events, in engine order: an
    ``executionReport`` per order event, then any ``balanceUpdate`` (deposits, withdrawals)
    and one ``outboundAccountPosition`` with each changed asset's state after the batch.

    An order's type, price and amount come from its ``order_accepted``; for an order placed
    before the stream began they are unknown (zeros), the rest of the report is exact: the
    cumulative fills come from the batch's ``order_updated``."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.orders: OrderedDict[int, OrderInfo] = OrderedDict()

    def events(self, items: Sequence[Mapping[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        orders = [i for i in items if i.get("channel") == "orders"]
        balances = [i for i in items if i.get("channel") == "balances"]
        out = self._order_events(orders, now_ms)
        out += self._balance_events(balances, now_ms)
        return out

    def _order_events(self, items: list[Mapping[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        final = {i["order_id"]: i for i in items if i.get("event") == "order_updated"}
        # what each order still fills after each of its trades in this batch
        later: dict[int, tuple[Decimal, Decimal]] = {}
        after: list[tuple[Decimal, Decimal]] = [(Decimal(0), Decimal(0))] * len(items)
        for idx in range(len(items) - 1, -1, -1):
            item = items[idx]
            if item.get("event") == "trade":
                qty, quote = later.get(item["order_id"], (Decimal(0), Decimal(0)))
                after[idx] = (qty, quote)
                later[item["order_id"]] = (
                    qty + Decimal(item["amount"]),
                    quote + Decimal(item["quote"]),
                )
        traded: set[int] = set()
        out: list[dict[str, Any]] = []
        for idx, item in enumerate(items):
            event = item.get("event")
            if event == "order_accepted":
                info = self._remember(item)
                out.append(self._report(info, item["order_id"], "NEW", "NEW", now_ms, info.created))
            elif event == "trade":
                oid = item["order_id"]
                traded.add(oid)
                end = final.get(oid)
                qty_after, quote_after = after[idx]
                if end is not None:
                    cum_qty = Decimal(end["filled"]) - qty_after
                    cum_quote = Decimal(end["filled_quote"]) - quote_after
                    # the order's last trade of the batch is the one that may fill it
                    filled = qty_after == 0 and end["status"] == "filled"
                else:
                    cum_qty, cum_quote, filled = (
                        Decimal(item["amount"]),
                        Decimal(item["quote"]),
                        False,
                    )
                status = "FILLED" if filled else "PARTIALLY_FILLED"
                info = self.orders.get(oid) or self._unknown(item)
                report = self._report(info, oid, "TRADE", status, now_ms, item["ts"])
                m = self.catalog.market(info.market)
                fee_precision = (
                    m.base_precision if item["fee_asset"] == m.base else m.quote_precision
                )
                report.update(
                    l=m.qty(item["amount"]),
                    z=m.qty(_text(cum_qty)),
                    L=m.px(item["price"]),
                    n=number(item["fee"], fee_precision),
                    N=item["fee_asset"],
                    t=item["trade_id"],
                    m=item["role"] == "maker",
                    Z=m.px(_text(cum_quote)),
                    Y=m.px(item["quote"]),
                )
                out.append(report)
            elif event == "order_updated":
                oid = item["order_id"]
                status = item["status"]
                if status in ("filled", "cancelled"):
                    known = self.orders.pop(oid, None)
                    info = known if known is not None else self._unknown(item)
                else:
                    continue  # open or partly filled: its trades' reports said so
                if status == "filled" and oid in traded:
                    continue
                binance_status = (
                    "FILLED"
                    if status == "filled"
                    else order_status("cancelled", item.get("reason"))
                )
                execution = "TRADE" if status == "filled" else binance_status
                if execution == "EXPIRED_IN_MATCH":
                    execution = "TRADE_PREVENTION"
                report = self._report(info, oid, execution, binance_status, now_ms, now_ms)
                m = self.catalog.market(info.market)
                report.update(z=m.qty(item["filled"]), Z=m.px(item["filled_quote"]))
                out.append(report)
        return out

    def _remember(self, item: Mapping[str, Any]) -> OrderInfo:
        info = OrderInfo(
            market=item["market"],
            side=item["side"],
            type=order_type(item["type"], bool(item.get("post_only"))),
            time_in_force=item.get("time_in_force") or "GTC",
            price=item.get("price"),
            amount=item.get("amount"),
            quote_amount=item.get("quote_amount"),
            client_order_id=item.get("client_order_id") or "",
            created=int(item["ts"]),
        )
        self.orders[item["order_id"]] = info
        while len(self.orders) > ORDERS_KEPT:
            self.orders.popitem(last=False)
        return info

    @staticmethod
    def _unknown(item: Mapping[str, Any]) -> OrderInfo:
        """An order the stream did not see accepted: what its later events tell."""
        return OrderInfo(
            market=item["market"], side=item["side"], type="LIMIT", time_in_force="GTC",
            price=None, amount=None, quote_amount=None, client_order_id="",
            created=int(item.get("ts") or 0),
        )  # fmt: skip

    def _report(
        self, info: OrderInfo, order_id: int, execution: str, status: str, now_ms: int, at: int
    ) -> dict[str, Any]:
        m = self.catalog.market(info.market)
        working = status in ("NEW", "PARTIALLY_FILLED") and info.type != "MARKET"
        return {
            "e": "executionReport",
            "E": now_ms,
            "s": m.symbol,
            "c": info.client_order_id,
            "S": info.side.upper(),
            "o": info.type,
            "f": "GTC" if info.type != "LIMIT" else info.time_in_force,
            "q": m.qty(info.amount),
            "p": m.px(info.price),
            "P": m.px(None),
            "F": m.qty(None),
            "g": -1,
            "C": "",
            "x": execution,
            "X": status,
            "r": "NONE",
            "i": order_id,
            "l": m.qty(None),
            "z": m.qty(None),
            "L": m.px(None),
            "n": "0",
            "N": None,
            "T": at,
            "t": -1,
            "w": working,
            "m": False,
            "M": False,
            "O": info.created or at,
            "Z": m.px(None),
            "Y": m.px(None),
            "Q": m.px(info.quote_amount),
            "W": info.created or at,
            "V": "NONE",
        }

    def _balance_events(self, items: list[Mapping[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        if not items:
            return []
        out: list[dict[str, Any]] = []
        latest: dict[str, Mapping[str, Any]] = {}
        for item in items:
            latest[item["asset"]] = item  # the account after the batch, first-seen order kept
            if item.get("reason") in _TRANSFERS and item.get("delta_available") not in (None, "0"):
                out.append(
                    {
                        "e": "balanceUpdate",
                        "E": now_ms,
                        "a": item["asset"],
                        "d": number(item["delta_available"], self.catalog.precision(item["asset"])),
                        "T": now_ms,
                    }
                )
        out.append(
            {
                "e": "outboundAccountPosition",
                "E": now_ms,
                "u": now_ms,
                "B": [
                    {
                        "a": asset,
                        "f": number(item["available"], self.catalog.precision(asset)),
                        "l": number(item["frozen"], self.catalog.precision(asset)),
                    }
                    for asset, item in latest.items()
                ],
            }
        )
        return out


_TRANSFERS: Final = frozenset(
    {"deposit", "withdrawal_hold", "withdrawal_settled", "withdrawal_refunded"}
)


def _text(value: Decimal) -> str:
    """An exact decimal as a canonical string (no exponent, no trailing zeros)."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def ws_api_payload(params: Mapping[str, Any]) -> bytes:
    """What a WebSocket API request signs: its parameters but ``signature``, sorted by name,
    as ``name=value`` joined with ``&`` (not percent-encoded)."""
    return "&".join(
        f"{k}={_param_text(v)}" for k, v in sorted(params.items()) if k != "signature"
    ).encode()


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
