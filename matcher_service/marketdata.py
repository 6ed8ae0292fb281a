"""The matcher's market-data publisher: the engine's results into Redis.

After each batch is durable in Postgres the matcher calls :meth:`MarketData.publish` once with
the batch's ``(command, Applied)`` pairs. Everything it writes goes out in ONE non-transactional
pipeline: replies for waiting callers, depth snapshots and deltas, recent trades, klines,
rolling 24 h tickers, private order and balance updates, market and asset definitions. The
keys and channels are the contract with the API functions and the ws service; they are
documented in ``docs/marketdata.md``.

Pure from its inputs: time is the commands' ``ts`` (stamped by the matcher) and the trades'
``ts``; there is no clock read. All money leaves as decimal strings (``format_units``) at the
market's base precision (amounts) and quote precision (prices, quote values).

State kept in memory (restored by :meth:`MarketData.rebuild` at start): per market the last
published top-N depth and its version, the current candle of every kline interval, the minute
buckets of the rolling 24 h ticker and the last price.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any, Final

import orjson
import redis

from matcher_service.engine.book import Book
from matcher_service.engine.engine import Engine
from matcher_service.engine.markets import Market
from shared.messages import (
    FEE_ACCOUNT,
    AnyCommand,
    Applied,
    AssetCreated,
    BalanceChanged,
    CancelAll,
    CancelOrder,
    MarketChanged,
    OrderAccepted,
    OrderAmended,
    OrderListChanged,
    OrderRejected,
    OrderTriggered,
    OrderUpdated,
    PlaceOco,
    Reason,
    Trade,
)
from shared.money import parse_units
from shared.redis_keys import (
    ASSETS_KEY,
    DAY_MS,
    KLINE_INTERVALS,
    MARKETS_KEY,
    MINUTE_MS,
    command_key,
    depth_key,
    kline_key,
    live_depth_channel,
    live_kline_channel,
    live_ticker_channel,
    live_trades_channel,
    live_user_channel,
    reply_key,
    ticker_key,
    trades_key,
)

JSON = dict[str, Any]
Pipeline = Any  # redis.client.Pipeline; its methods are loosely typed

_SIZES: Final = tuple(size for _, size in KLINE_INTERVALS)
TRADES_KEPT: Final = 1000
"""Recent public trades kept per market in ``md:trades:{m}``."""
KLINES_KEPT: Final = 1500
"""Candles kept per market and interval in ``md:kline:{m}:{iv}``."""

# Index of the fields of a candle (a list, mutated in place for speed).
_T, _O, _H, _L, _C, _V, _Q, _N, _MARK = range(9)
# Fields of a ticker minute bucket.
_B_T, _B_O, _B_H, _B_L, _B_V, _B_Q, _B_N = range(7)

_SCALES: Final = tuple(10**p for p in range(19))
_FORMATTED_MAX: Final = 100_000


class _Formatted(dict[int, str]):
    """Amounts of one precision already formatted, by units: prices and amounts repeat
    (levels, lots), and ``table[units]`` is one dict lookup in C, where a call to ``fmt``
    costs a Python frame (a dozen per order). A miss formats and keeps the text; emptied
    when it grows past _FORMATTED_MAX."""

    __slots__ = ("precision",)

    def __init__(self, precision: int) -> None:
        super().__init__()
        self.precision = precision

    def __missing__(self, units: int) -> str:
        text = _format(units, self.precision)
        if len(self) >= _FORMATTED_MAX:
            self.clear()
        self[units] = text
        return text


_FORMATTED: Final[tuple[_Formatted, ...]] = tuple(_Formatted(p) for p in range(19))
"""Per precision, ``_FORMATTED[precision][units]`` is ``fmt(units, precision)``."""


def fmt(units: int, precision: int) -> str:
    """``shared.money.format_units``, several times faster (it runs a dozen times per order):
    same output for every integer and precision 0 to 18 (the test holds them equal)."""
    return _FORMATTED[precision][units]


def _format(units: int, precision: int) -> str:
    if not units:
        return "0"
    if units < 0:
        return "-" + _format(-units, precision)
    scale = _SCALES[precision]
    whole, frac = divmod(units, scale)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac + scale)[1:].rstrip('0')}"


_FLUSH_LUA: Final = """
-- KEYS: reply:{id}, cmd:{id} per reply. ARGV: ttl, the lengths of the parts (comma
-- separated), the parts one after the other: one body per reply, then channels and messages
-- alternating.
local ttl = ARGV[1]
local blob = ARGV[3]
local parts = {}
local pos = 1
for len in string.gmatch(ARGV[2], '%d+') do
  local stop = pos + tonumber(len)
  parts[#parts + 1] = string.sub(blob, pos, stop - 1)
  pos = stop
end
local n = #KEYS / 2
for i = n + 1, #parts, 2 do
  redis.call('PUBLISH', parts[i], parts[i + 1])
end
for j = 1, n do
  local body = parts[j]
  redis.call('RPUSH', KEYS[2 * j - 1], body)
  redis.call('EXPIRE', KEYS[2 * j - 1], ttl)
  redis.call('SET', KEYS[2 * j], body, 'EX', ttl)
end
return n
"""
"""Private publishes and replies in one command per chunk: redis-py spends ~25 us packing and
parsing each pipelined command, which at three per reply would cap the matcher at a few
thousand commands a second. Same effects as PUBLISH / RPUSH+EXPIRE / SET EX one by one. The
bodies and messages travel joined in one argument, with their lengths in another: redis-py
packs each argument in Python, ~0.6 us apiece, and a batch of 1,000 orders has some 5,000 of
them. The keys stay declared as keys."""
_FLUSH_CHUNK: Final = 500


def rebuild_since(now_ms: int) -> int:
    """The earliest trade time :meth:`MarketData.rebuild` must be given: the UTC midnight at
    or before ``now_ms - 24 h``. From there every candle (all intervals divide a day) and the
    24 h ticker window are complete. Any earlier UTC midnight works too (more history)."""
    start = now_ms - DAY_MS
    return start - start % DAY_MS


# ---------------------------------------------------------------- per-market state


class _MarketState:
    __slots__ = (
        "asks",
        "batch_trades",
        "bids",
        "buckets",
        "candles",
        "count",
        "depth_seq",
        "high",
        "kl_touched",
        "last",
        "low",
        "name",
        "quote_volume",
        "volume",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.depth_seq = 0
        self.bids: dict[int, int] = {}  # last published top-N, price -> amount
        self.asks: dict[int, int] = {}
        self.candles: list[list[int] | None] = [None] * len(KLINE_INTERVALS)
        self.kl_touched: list[list[list[int]]] = [[] for _ in KLINE_INTERVALS]
        self.buckets: deque[list[int]] = deque()
        self.volume = 0
        self.quote_volume = 0
        self.count = 0
        self.high: int | None = None
        self.low: int | None = None
        self.last: int | None = None
        self.batch_trades: list[bytes] = []


def _diff(prev: dict[int, int], new: list[tuple[int, int]], best_high: bool) -> list[list[int]]:
    """Levels to set (amount 0: remove) to turn the published ``prev`` into ``new``."""
    out = [[p, a] for p, a in new if prev.get(p) != a]
    if prev:
        now = dict(new)
        out += [[p, 0] for p in prev if p not in now]
    out.sort(reverse=best_high)
    return out


def _side_json(levels: Iterable[tuple[int, int] | list[int]], qp: int, bp: int) -> list[list[str]]:
    q, b = _FORMATTED[qp], _FORMATTED[bp]
    return [[q[p], b[a]] for p, a in levels]


def _order_json(acc: OrderAccepted, upd: OrderUpdated | None, m: Market) -> JSON:
    """The state of an order placed by one command: its acceptance plus its last update."""
    bp, qp = m.base_precision, m.quote_precision
    b, q = _FORMATTED[bp], _FORMATTED[qp]
    is_buy = acc.side == "buy"
    price, amount, quote_amount = acc.price, acc.amount, acc.quote_amount
    order: JSON = {
        "order_id": acc.order_id,
        "market": acc.market,
        "side": acc.side,
        "type": acc.order_type,
        "price": None if price is None else q[price],
        "amount": None if amount is None else b[amount],
        "quote_amount": None if quote_amount is None else q[quote_amount],
        "time_in_force": acc.time_in_force,
        "post_only": acc.post_only,
        "client_order_id": acc.client_order_id,
        "status": upd.status if upd else "open",
        "filled": b[upd.filled if upd else 0],
        "filled_quote": q[upd.filled_quote if upd else 0],
        "fee": (b if is_buy else q)[upd.fee if upd else 0],
        "reason": upd.reason if upd else None,
        "ts": acc.ts,
    }
    if acc.stop is not None or acc.expires_at is not None or acc.list_id is not None:
        order.update(_stop_fields(acc, qp))
    return order


def _stop_fields(acc: OrderAccepted, qp: int) -> JSON:
    """What a stop order, a good-till-date order or an order of an OCO list adds (only the
    fields it has: a plain order's messages stay as they were)."""
    out: JSON = {}
    if acc.stop is not None:
        out["stop"] = acc.stop
        out["stop_price"] = None if acc.stop_price is None else fmt(acc.stop_price, qp)
    if acc.expires_at is not None:
        out["expires_at"] = acc.expires_at
    if acc.list_id is not None:
        out["list_id"] = acc.list_id
    return out


def _trade_json(t: Trade, price: str, amount: str, quote: str) -> bytes:
    """A public trade, as in ``md:trades:{m}`` and ``live:trades:{m}``."""
    return orjson.dumps(
        {
            "trade_id": t.trade_id,
            "market": t.market,
            "price": price,
            "amount": amount,
            "quote": quote,
            "taker_side": t.taker_side,
            "ts": t.ts,
        }
    )


def _market_json(ev: MarketChanged) -> bytes:
    return orjson.dumps(
        {
            "market": ev.market,
            "base": ev.base,
            "quote": ev.quote,
            "tick": ev.tick,
            "step": ev.step,
            "min_amount": ev.min_amount,
            "min_notional": ev.min_notional,
            "maker_fee": ev.maker_fee,
            "taker_fee": ev.taker_fee,
            "status": ev.status,
        }
    )


def _asset_json(asset: str, precision: int) -> bytes:
    return orjson.dumps({"asset": asset, "precision": precision})


# ---------------------------------------------------------------- private messages and replies
# One formatter per event kind, as on the ``live:user:{user}`` channel (docs/marketdata.md).


def _balance_message(ev: BalanceChanged, precision: int) -> JSON:
    f = _FORMATTED[precision]
    return {
        "channel": "balances",
        "asset": ev.asset,
        "available": f[ev.available],
        "frozen": f[ev.frozen],
        "delta_available": f[ev.delta_available],
        "delta_frozen": f[ev.delta_frozen],
        "reason": ev.reason,
        "ref": ev.ref,
    }


def _order_accepted_message(ev: OrderAccepted, m: Market) -> JSON:
    bp, qp = m.base_precision, m.quote_precision
    b, q = _FORMATTED[bp], _FORMATTED[qp]
    msg = {
        "channel": "orders",
        "event": "order_accepted",
        "order_id": ev.order_id,
        "market": ev.market,
        "side": ev.side,
        "type": ev.order_type,
        "price": None if ev.price is None else q[ev.price],
        "amount": None if ev.amount is None else b[ev.amount],
        "quote_amount": None if ev.quote_amount is None else q[ev.quote_amount],
        "time_in_force": ev.time_in_force,
        "post_only": ev.post_only,
        "client_order_id": ev.client_order_id,
        "ts": ev.ts,
    }
    if ev.stop is not None or ev.expires_at is not None or ev.list_id is not None:
        msg.update(_stop_fields(ev, qp))
    return msg


def _order_triggered_message(ev: OrderTriggered, m: Market) -> JSON:
    qp = m.quote_precision
    return {
        "channel": "orders",
        "event": "order_triggered",
        "order_id": ev.order_id,
        "market": ev.market,
        "side": ev.side,
        "stop_price": fmt(ev.stop_price, qp),
        "last_price": fmt(ev.last_price, qp),
        "ts": ev.ts,
    }


def _order_amended_message(ev: OrderAmended, is_buy: bool, m: Market) -> JSON:
    bp, qp = m.base_precision, m.quote_precision
    return {
        "channel": "orders",
        "event": "order_amended",
        "order_id": ev.order_id,
        "market": ev.market,
        "side": "buy" if is_buy else "sell",
        "price": fmt(ev.price, qp),
        "amount": fmt(ev.amount, bp),
        "filled": fmt(ev.filled, bp),
        "frozen": fmt(ev.frozen, qp if is_buy else bp),
        "kept_priority": ev.kept_priority,
    }


def _order_list_message(ev: OrderListChanged) -> JSON:
    return {
        "channel": "orders",
        "event": "order_list",
        "list_id": ev.list_id,
        "market": ev.market,
        "side": ev.side,
        "status": ev.status,
        "limit_order_id": ev.limit_order_id,
        "stop_order_id": ev.stop_order_id,
        "reason": ev.reason,
    }


def _order_updated_message(ev: OrderUpdated, is_buy: bool, m: Market) -> JSON:
    """The update of an order that buys when ``is_buy`` (the event does not say)."""
    b, q = _FORMATTED[m.base_precision], _FORMATTED[m.quote_precision]
    return {
        "channel": "orders",
        "event": "order_updated",
        "order_id": ev.order_id,
        "market": ev.market,
        "side": "buy" if is_buy else "sell",
        "status": ev.status,
        "filled": b[ev.filled],
        "filled_quote": q[ev.filled_quote],
        "fee": (b if is_buy else q)[ev.fee],
        "frozen": (q if is_buy else b)[ev.frozen],
        "reason": ev.reason,
    }


def _cancelled_json(update: JSON) -> JSON:
    """An order a cancel closed, as its reply lists it: its update's fields but the channel,
    event and hold."""
    return {
        "order_id": update["order_id"],
        "market": update["market"],
        "side": update["side"],
        "status": update["status"],
        "filled": update["filled"],
        "filled_quote": update["filled_quote"],
        "fee": update["fee"],
        "reason": update["reason"],
    }


def _order_rejected_message(ev: OrderRejected, command_id: str) -> JSON:
    return {
        "channel": "orders",
        "event": "order_rejected",
        "command_id": command_id,
        "market": ev.market,
        "client_order_id": ev.client_order_id,
        "reason": ev.reason,
    }


def _reply_json(
    cmd: AnyCommand,
    ap: Applied,
    accepted: OrderAccepted | None,
    final: OrderUpdated | None,
    cancelled: list[JSON],
    markets: dict[str, Market],
    extra: JSON | None = None,
) -> bytes:
    """The reply to one command: its verdict, and the order it placed or cancelled (the
    orders a cancel-all cancelled)."""
    reply: JSON = {
        "command_id": ap.command_id,
        "seq": ap.seq,
        "ok": ap.ok,
        "reason": ap.reason,
        "order": None,
    }
    if accepted is not None:
        reply["order"] = _order_json(accepted, final, markets[accepted.market])
    elif type(cmd) is CancelOrder:
        reply["order"] = cancelled[0] if cancelled else None
    elif type(cmd) is CancelAll:
        reply["orders"] = cancelled
    if extra:  # an OCO list's, an amend's
        reply.update(extra)
    return orjson.dumps(reply)


# ---------------------------------------------------------------- the publisher


class MarketData:
    """Publishes each applied batch to Redis. Not thread-safe: one matcher, one instance."""

    def __init__(self, redis: redis.Redis, depth_levels: int = 50, reply_ttl_s: int = 3600) -> None:
        self.redis = redis
        self.depth_levels = depth_levels
        self.reply_ttl_s = reply_ttl_s
        self._states: dict[str, _MarketState] = {}
        self._now = 0  # newest command/trade ts seen
        self._mark = 0  # batch number, marks candles touched in the current batch

    # ------------------------------------------------------------ per batch

    def publish(self, engine: Engine, batch: list[tuple[AnyCommand, Applied]]) -> None:
        """Write one applied batch to Redis in one pipeline. Raises Redis errors; after one,
        the in-memory state may be ahead of Redis: call :meth:`rebuild` before going on."""
        pipe = self.prepare(engine, batch)
        if pipe is not None:
            pipe.execute()

    def prepare(self, engine: Engine, batch: list[tuple[AnyCommand, Applied]]) -> Pipeline:
        """The pipeline that publishes one applied batch, built but not sent (None for an
        empty batch): the engine is read now, at the batch's end, and the pipeline may be
        executed later from another thread (the matcher sends it while it works on the next
        batch). The in-memory state counts it as published: if it is never executed, call
        :meth:`rebuild` before going on.

        Each event becomes its owner's private message (one formatter per kind) and marks
        what it changed; each command gets its reply. Then the market data of what changed:
        depth, trades and klines, tickers; last the private messages and the replies."""
        if not batch:
            return None
        self._mark += 1
        mark = self._mark
        now = self._now
        states = self._states
        markets = engine.markets
        assets = engine.assets
        pipe: Pipeline = self.redis.pipeline(transaction=False)

        sides: dict[int, bool] = {}  # order id -> is buy, for orders seen in this batch
        private: defaultdict[str, list[JSON]] = defaultdict(list)
        depth_changed: set[str] = set()
        traded: dict[str, _MarketState] = {}
        new_markets: list[str] = []
        replies: list[tuple[str, bytes]] = []

        for cmd, ap in batch:
            if cmd.ts > now:
                now = cmd.ts
            is_cancel = type(cmd) is CancelOrder or type(cmd) is CancelAll
            accepted: OrderAccepted | None = None
            final: OrderUpdated | None = None
            cancelled: list[JSON] = []
            extra: JSON = {}
            updated: dict[int, JSON] = {}  # this command's order updates, by order id
            prev: Any = None
            for ev in ap.events:
                if type(ev) is BalanceChanged:
                    if ev.user != FEE_ACCOUNT:
                        private[ev.user].append(_balance_message(ev, assets[ev.asset]))
                elif type(ev) is OrderUpdated:
                    m = markets[ev.market]
                    is_buy = sides.get(ev.order_id)
                    if is_buy is None:
                        if ev.reason == Reason.OCO and type(prev) is OrderUpdated:
                            is_buy = sides[prev.order_id]  # the other order of its list
                        else:
                            is_buy = self._side_of(ev, prev, m, engine)
                        sides[ev.order_id] = is_buy
                    msg = _order_updated_message(ev, is_buy, m)
                    private[ev.user].append(msg)
                    updated[ev.order_id] = msg
                    depth_changed.add(ev.market)
                    if accepted is not None and ev.order_id == accepted.order_id:
                        final = ev
                    elif is_cancel:
                        cancelled.append(_cancelled_json(msg))
                elif type(ev) is Trade:
                    self._trade(ev, markets[ev.market], states, traded, sides, private, mark)
                elif type(ev) is OrderAccepted:
                    if accepted is None:  # an OCO list's reply shows its limit order
                        accepted = ev
                    sides[ev.order_id] = ev.side == "buy"
                    depth_changed.add(ev.market)
                    private[ev.user].append(_order_accepted_message(ev, markets[ev.market]))
                elif type(ev) is OrderTriggered:
                    sides[ev.order_id] = ev.side == "buy"
                    depth_changed.add(ev.market)
                    private[ev.user].append(_order_triggered_message(ev, markets[ev.market]))
                elif type(ev) is OrderAmended:
                    m = markets[ev.market]
                    view = engine.order(ev.order_id)
                    is_buy = view is not None and view.side == "buy"
                    sides[ev.order_id] = is_buy
                    msg = _order_amended_message(ev, is_buy, m)
                    private[ev.user].append(msg)
                    depth_changed.add(ev.market)
                    extra["order"] = {k: v for k, v in msg.items() if k not in ("channel", "event")}
                elif type(ev) is OrderListChanged:
                    # A pending stop cancelled without a hold to release did not say its side.
                    side = ev.side
                    for oid in (ev.limit_order_id, ev.stop_order_id):
                        if oid in updated:
                            updated[oid]["side"] = side
                    msg = _order_list_message(ev)
                    private[ev.user].append(msg)
                    if type(cmd) is PlaceOco:
                        extra["list"] = {k: v for k, v in msg.items() if k != "channel"}
                elif type(ev) is OrderRejected:
                    private[ev.user].append(_order_rejected_message(ev, ap.command_id))
                elif type(ev) is MarketChanged:
                    pipe.hset(MARKETS_KEY, ev.market, _market_json(ev))
                    if ev.market not in states:
                        states[ev.market] = _MarketState(ev.market)
                        new_markets.append(ev.market)
                elif type(ev) is AssetCreated:
                    pipe.hset(ASSETS_KEY, ev.asset, _asset_json(ev.asset, ev.precision))
                prev = ev
            reply = _reply_json(cmd, ap, accepted, final, cancelled, markets, extra)
            replies.append((ap.command_id, reply))
        self._now = now

        self._write_depths(pipe, engine, depth_changed, new_markets, now)
        self._write_trades(pipe, traded, markets)
        self._write_tickers(pipe, traded, markets, now)
        self._write_private(pipe, private, replies)
        return pipe

    def _write_depths(
        self, pipe: Pipeline, engine: Engine, changed: set[str], new_markets: list[str], now: int
    ) -> None:
        """Depth of the markets whose books changed: a diff against the last published top-N;
        a new market gets a first snapshot and ticker."""
        states, markets = self._states, engine.markets
        for name in new_markets:
            changed.discard(name)
            st = states[name]
            m = markets[name]
            self._depth(pipe, st, engine.books[name], m, force=True)
            self._write_ticker(pipe, st, m, now)
        for name in changed:
            st = states.get(name) or self._add_state(name)
            self._depth(pipe, st, engine.books[name], markets[name], force=False)

    @classmethod
    def _write_trades(
        cls, pipe: Pipeline, traded: dict[str, _MarketState], markets: dict[str, Market]
    ) -> None:
        """The batch's public trades and the candles they touched, per market that traded."""
        for name, st in traded.items():
            items = st.batch_trades
            tkey = trades_key(name)
            pipe.lpush(tkey, *items)
            pipe.ltrim(tkey, 0, TRADES_KEPT - 1)
            pipe.publish(live_trades_channel(name), b"[" + b",".join(items) + b"]")
            st.batch_trades = []
            cls._write_klines(pipe, st, markets[name])

    def _write_tickers(
        self,
        pipe: Pipeline,
        traded: dict[str, _MarketState],
        markets: dict[str, Market],
        now: int,
    ) -> None:
        """The tickers of the markets that traded and of those whose 24 h window lost a
        minute bucket."""
        cutoff = now - DAY_MS
        for name, st in self._states.items():
            buckets = st.buckets
            if name in traded or (buckets and buckets[0][_B_T] <= cutoff):
                self._expire(st, now)
                self._write_ticker(pipe, st, markets[name], now)

    def _write_private(
        self, pipe: Pipeline, private: dict[str, list[JSON]], replies: list[tuple[str, bytes]]
    ) -> None:
        """Private updates, then replies last: a caller that got its reply sees the market
        data. One script call per chunk of replies (see ``_FLUSH_LUA``)."""
        messages: list[bytes] = []
        for user, msgs in private.items():
            messages += (live_user_channel(user).encode(), orjson.dumps(msgs))
        ttl = self.reply_ttl_s
        for start in range(0, max(len(replies), 1), _FLUSH_CHUNK):
            chunk = replies[start : start + _FLUSH_CHUNK]
            keys: list[str] = []
            bodies: list[bytes] = []
            for cid, body in chunk:
                keys += (reply_key(cid), command_key(cid))
                bodies.append(body)
            parts = bodies + messages
            lengths = ",".join([str(len(p)) for p in parts])
            pipe.eval(_FLUSH_LUA, len(keys), *keys, ttl, lengths, b"".join(parts))
            messages = []

    def _trade(
        self,
        ev: Trade,
        m: Market,
        states: dict[str, _MarketState],
        traded: dict[str, _MarketState],
        sides: dict[int, bool],
        private: defaultdict[str, list[JSON]],
        mark: int,
    ) -> None:
        name = ev.market
        st = traded.get(name)
        if st is None:
            st = traded[name] = states.get(name) or self._add_state(name)
        bp, qp = m.base_precision, m.quote_precision
        taker_buys = ev.taker_side == "buy"
        sides[ev.taker_order_id] = taker_buys
        sides[ev.maker_order_id] = not taker_buys
        b, q = _FORMATTED[bp], _FORMATTED[qp]
        price, amount, quote = q[ev.price], b[ev.amount], q[ev.quote]
        st.batch_trades.append(_trade_json(ev, price, amount, quote))
        base_fee = b[ev.taker_fee if taker_buys else ev.maker_fee]
        quote_fee = q[ev.maker_fee if taker_buys else ev.taker_fee]
        for user, oid, role, is_buy in (
            (ev.taker_user, ev.taker_order_id, "taker", taker_buys),
            (ev.maker_user, ev.maker_order_id, "maker", not taker_buys),
        ):
            msg: JSON = {
                "channel": "orders",
                "event": "trade",
                "trade_id": ev.trade_id,
                "market": name,
                "order_id": oid,
                "side": "buy" if is_buy else "sell",
                "role": role,
                "price": price,
                "amount": amount,
                "quote": quote,
                "fee": base_fee if is_buy else quote_fee,
                "fee_asset": m.base if is_buy else m.quote,
                "ts": ev.ts,
            }
            private[user].append(msg)
        _on_trade(st, ev, mark)

    def _add_state(self, name: str) -> _MarketState:
        """State for a market this instance has not heard of (published without rebuild)."""
        st = self._states[name] = _MarketState(name)
        return st

    @staticmethod
    def _side_of(ev: OrderUpdated, prev: Any, m: Market, engine: Engine) -> bool:
        """Whether an order not yet seen in the batch buys: a cancel's update follows the
        release of its hold (quote for a buy); otherwise the order still rests."""
        if (
            type(prev) is BalanceChanged
            and prev.reason == "order_release"
            and prev.ref == str(ev.order_id)
        ):
            return prev.asset == m.quote
        view = engine.order(ev.order_id)
        return view is not None and view.side == "buy"

    def _depth(self, pipe: Pipeline, st: _MarketState, book: Book, m: Market, force: bool) -> None:
        """Publish the market's top-N depth when it differs from the last published one."""
        bids, asks = book.depth(self.depth_levels)
        d_bids = _diff(st.bids, bids, True)
        d_asks = _diff(st.asks, asks, False)
        if not (d_bids or d_asks or force):
            return
        st.depth_seq = seq = st.depth_seq + 1
        st.bids = dict(bids)
        st.asks = dict(asks)
        bp, qp = m.base_precision, m.quote_precision
        name = st.name
        snapshot = {
            "market": name,
            "bids": _side_json(bids, qp, bp),
            "asks": _side_json(asks, qp, bp),
            "seq": seq,
        }
        delta = {
            "market": name,
            "seq": seq,
            "prev_seq": seq - 1,
            "bids": _side_json(d_bids, qp, bp),
            "asks": _side_json(d_asks, qp, bp),
        }
        pipe.set(depth_key(name), orjson.dumps(snapshot))
        pipe.publish(live_depth_channel(name), orjson.dumps(delta))

    @staticmethod
    def _write_klines(
        pipe: Pipeline, st: _MarketState, m: Market, rebuilding: bool = False, since: int = 0
    ) -> None:
        """Write the candles touched since the last write. Rebuilding: only the newest
        ``KLINES_KEPT`` that open at or after ``since``, and announce only the current one."""
        bp, qp = m.base_precision, m.quote_precision
        name = st.name
        for (iv, _), touched in zip(KLINE_INTERVALS, st.kl_touched, strict=True):
            if not touched:
                continue
            if rebuilding:
                candles = [c for c in touched[-KLINES_KEPT:] if c[_T] >= since]
            else:
                candles = touched[:]
            touched.clear()
            if not candles:
                continue
            key = kline_key(name, iv)
            out = []
            for c in candles:
                t = c[_T]
                member = orjson.dumps(
                    [
                        t,
                        fmt(c[_O], qp),
                        fmt(c[_H], qp),
                        fmt(c[_L], qp),
                        fmt(c[_C], qp),
                        fmt(c[_V], bp),
                        fmt(c[_Q], qp),
                        c[_N],
                    ]
                )
                pipe.zremrangebyscore(key, t, t)
                pipe.zadd(key, {member: t})
                out.append(member)
            pipe.zremrangebyrank(key, 0, -KLINES_KEPT - 1)
            if rebuilding:
                out = out[-1:]
            pipe.publish(live_kline_channel(name, iv), b"[" + b",".join(out) + b"]")

    @staticmethod
    def _expire(st: _MarketState, now: int) -> None:
        """Drop the minute buckets that left the 24 h window ending at ``now``."""
        buckets = st.buckets
        cutoff = now - DAY_MS
        if not buckets or buckets[0][_B_T] > cutoff:
            return
        while buckets and buckets[0][_B_T] <= cutoff:
            b = buckets.popleft()
            st.volume -= b[_B_V]
            st.quote_volume -= b[_B_Q]
            st.count -= b[_B_N]
        if buckets:
            st.high = max(b[_B_H] for b in buckets)
            st.low = min(b[_B_L] for b in buckets)
        else:
            st.high = st.low = None

    @staticmethod
    def _write_ticker(pipe: Pipeline, st: _MarketState, m: Market, now: int) -> None:
        bp, qp = m.base_precision, m.quote_precision
        last = st.last
        open_: int | None
        if st.buckets:
            open_, high, low = st.buckets[0][_B_O], st.high, st.low
        else:
            open_ = high = low = last  # no trade in 24 h: the price stands still
        ticker = {
            "market": st.name,
            "last": None if last is None else fmt(last, qp),
            "open": None if open_ is None else fmt(open_, qp),
            "high": None if high is None else fmt(high, qp),
            "low": None if low is None else fmt(low, qp),
            "volume": fmt(st.volume, bp),
            "quote_volume": fmt(st.quote_volume, qp),
            "change": None if last is None or open_ is None else fmt(last - open_, qp),
            "trades": st.count,
            "ts": now or None,
        }
        body = orjson.dumps(ticker)
        pipe.set(ticker_key(st.name), body)
        pipe.publish(live_ticker_channel(st.name), body)

    # ------------------------------------------------------------ on start

    def rebuild(
        self,
        engine: Engine,
        trades: Iterable[Trade],
        *,
        now_ms: int | None = None,
        since_ms: int | None = None,
    ) -> None:
        """Reset the in-memory state and rewrite Redis from the engine and recent trades.

        ``trades``: every Trade with ``ts >= since_ms``, oldest first, as stored in Postgres;
        ``since_ms`` must be at most ``now_ms - 24 h`` (the ticker window and every current
        candle are then complete). Candles opening before ``since_ms`` (default: the market's
        first given trade) may miss trades and are not written: Redis keeps its copies.
        :func:`rebuild_since` gives a bound (a UTC midnight) from which every candle of every
        interval is complete, to rebuild a flushed Redis. ``now_ms``: the end of the 24 h
        ticker window (the matcher's clock at start); default: the newest trade's ts.

        Depth versions continue from the snapshots already in Redis, and the first depth
        message is a delta from them, so ws clients need not resync. Recent trades in Redis
        older than the first given one are kept; with no given trade for a market, its last
        price comes from its newest stored trade.
        """
        self._states = states = {}
        self._mark += 1
        mark = self._mark
        markets = engine.markets
        names = list(markets)
        for name in names:
            states[name] = _MarketState(name)

        reads: Pipeline = self.redis.pipeline(transaction=False)
        for name in names:
            reads.get(depth_key(name))
            reads.lrange(trades_key(name), 0, TRADES_KEPT - 1)
        stored = reads.execute()

        recent: dict[str, deque[Trade]] = {name: deque(maxlen=TRADES_KEPT) for name in names}
        first_ts: dict[str, int] = {}
        now = now_ms or 0
        for tr in trades:
            st = states.get(tr.market)
            if st is None:
                continue
            if tr.market not in first_ts:
                first_ts[tr.market] = tr.ts
            _on_trade(st, tr, mark)
            recent[tr.market].append(tr)
            if tr.ts > now:
                now = tr.ts
        self._now = now

        pipe: Pipeline = self.redis.pipeline(transaction=True)
        if engine.assets:
            pipe.hset(ASSETS_KEY, mapping={a: _asset_json(a, p) for a, p in engine.assets.items()})
        if markets:
            pipe.hset(MARKETS_KEY, mapping={n: _market_json(m.event()) for n, m in markets.items()})
        for i, name in enumerate(names):
            m = markets[name]
            st = states[name]
            bp, qp = m.base_precision, m.quote_precision
            raw_depth, raw_trades = stored[2 * i], stored[2 * i + 1]
            if raw_depth:
                snap = orjson.loads(raw_depth)
                st.depth_seq = int(snap["seq"])
                st.bids = {parse_units(p, qp): parse_units(a, bp) for p, a in snap["bids"]}
                st.asks = {parse_units(p, qp): parse_units(a, bp) for p, a in snap["asks"]}
            self._depth(pipe, st, engine.books[name], m, force=not raw_depth)

            given = recent[name]
            if given:
                first = given[0].trade_id
                items = [
                    _trade_json(t, fmt(t.price, qp), fmt(t.amount, bp), fmt(t.quote, qp))
                    for t in reversed(given)
                ]
                for raw in raw_trades:
                    if len(items) >= TRADES_KEPT:
                        break
                    if orjson.loads(raw)["trade_id"] < first:
                        items.append(raw)
                tkey = trades_key(name)
                pipe.delete(tkey)
                pipe.rpush(tkey, *items)
            elif raw_trades:
                st.last = parse_units(orjson.loads(raw_trades[0])["price"], qp)

            since = first_ts.get(name, 0) if since_ms is None else since_ms
            self._write_klines(pipe, st, m, rebuilding=True, since=since)
            self._expire(st, now)
            self._write_ticker(pipe, st, m, now)
        pipe.execute()


def _on_trade(st: _MarketState, tr: Trade, mark: int) -> None:
    """Fold one trade into the market's ticker buckets and current candles. A trade older
    than the current bucket or candle (a clock that stepped back) counts in the current one."""
    p, a, q, ts = tr.price, tr.amount, tr.quote, tr.ts
    st.last = p
    buckets = st.buckets
    minute = ts - ts % MINUTE_MS
    if buckets and buckets[-1][_B_T] >= minute:
        b = buckets[-1]
        if p > b[_B_H]:
            b[_B_H] = p
        elif p < b[_B_L]:
            b[_B_L] = p
        b[_B_V] += a
        b[_B_Q] += q
        b[_B_N] += 1
    else:
        buckets.append([minute, p, p, p, a, q, 1])
    st.volume += a
    st.quote_volume += q
    st.count += 1
    high = st.high
    if high is None:
        st.high = st.low = p
    elif p > high:
        st.high = p
    elif p < st.low:  # type: ignore[operator]
        st.low = p
    candles = st.candles
    touched = st.kl_touched
    for i, size in enumerate(_SIZES):
        c = candles[i]
        t0 = ts - ts % size
        if c is None or t0 > c[_T]:
            candles[i] = c = [t0, p, p, p, p, a, q, 1, mark]
            touched[i].append(c)
            continue
        if p > c[_H]:
            c[_H] = p
        elif p < c[_L]:
            c[_L] = p
        c[_C] = p
        c[_V] += a
        c[_Q] += q
        c[_N] += 1
        if c[_MARK] != mark:
            c[_MARK] = mark
            touched[i].append(c)
