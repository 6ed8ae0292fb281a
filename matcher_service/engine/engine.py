"""The engine: one command in, an ``Applied`` (sequence number, verdict, events) out.

Pure and single-threaded: no clock, no I/O, no randomness. Every check runs before the first
change, so a rejected command changes nothing but the sequence number. The semantics are
written down in docs/engine.md; the matching loop is written for speed (locals, in-place
balance lists, positional event construction) because it runs for every order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from matcher_service.engine.accounts import Accounts
from matcher_service.engine.book import Book, Level, Order
from matcher_service.engine.markets import Market, Rejected, check_asset, new_market
from matcher_service.engine.stops import OcoList, Stop, Triggers, rises
from shared.messages import (
    FEE_ACCOUNT,
    AmendOrder,
    AnyCommand,
    AnyEvent,
    Applied,
    AssetCreated,
    BalanceChanged,
    CancelAll,
    CancelOrder,
    CreateAsset,
    CreateMarket,
    Deposit,
    DepositCredited,
    ExpireOrders,
    OrderAccepted,
    OrderAmended,
    OrderListChanged,
    OrderRejected,
    OrderStatus,
    OrderTriggered,
    OrderType,
    OrderUpdated,
    PlaceOco,
    PlaceOrder,
    Reason,
    RefundWithdrawal,
    RequestWithdrawal,
    SettleWithdrawal,
    Side,
    Trade,
    UpdateMarket,
    UserSeq,
    WithdrawalChanged,
)
from shared.money import MoneyError, parse_fee_rate
from shared.order_rules import MAX_USER_ID, oco_violation, order_violation

Events = list[AnyEvent]
# Read by every cancel: a module global, as CPython 3.11 does not specialise reading a class
# attribute.
CANCELLED_BY_USER = Reason.CANCELLED_BY_USER
UNBOUNDED = 1 << 256  # the amount of a market buy by quote: only its budget stops it
MAX_SKIPPED = 16
"""Gaps remembered per user (the numbers a user's later command was applied past): a
command with one of these numbers arriving later is refused as ``out_of_order``."""

SeqState = tuple[int, int, tuple[tuple[int, int], ...]]
"""Per user: (epoch, last applied n, skipped ranges (first, last) in the order skipped)."""


class Withdrawal:
    __slots__ = ("amount", "asset", "fee", "user")

    def __init__(self, user: str, asset: str, amount: int, fee: int) -> None:
        self.user = user
        self.asset = asset
        self.amount = amount
        self.fee = fee


class OrderView:
    """A read-only copy of an open order, for callers outside the engine."""

    __slots__ = (
        "amount",
        "client_order_id",
        "fee",
        "filled_quote",
        "market",
        "order_id",
        "price",
        "remaining",
        "side",
        "status",
        "user",
    )

    def __init__(self, o: Order) -> None:
        self.order_id = o.id
        self.user = o.user
        self.market = o.market.name
        self.side = "buy" if o.is_buy else "sell"
        self.price = o.price
        self.amount = o.amount
        self.remaining = o.remaining
        self.filled_quote = o.filled_quote
        self.fee = o.fee
        self.client_order_id = o.client_order_id
        self.status = o.status


def _check_user(user: str) -> None:
    if not user or len(user) > MAX_USER_ID or user[0] == "@":
        raise Rejected(Reason.INVALID, "bad user id")


class Engine:
    def __init__(self, max_open_orders: int | None = None) -> None:
        self.max_open_orders = max_open_orders
        """Open orders (resting and pending stops) a user may have; None: no limit. Not part
        of the state: a replay must run with the same setting (docs/decisions/0019)."""
        self.seq = 0
        self.next_order_id = 1
        self.next_trade_id = 1
        self.assets: dict[str, int] = {}  # asset -> precision
        self.markets: dict[str, Market] = {}
        self.books: dict[str, Book] = {}
        self.accounts = Accounts()
        self.orders: dict[int, Order] = {}  # open orders by id
        self.user_orders: dict[str, dict[int, Order]] = {}
        self.client_ids: dict[tuple[str, str], Order] = {}
        self.deposit_refs: set[str] = set()
        self.withdrawal_ids: set[str] = set()
        self.pending: dict[str, Withdrawal] = {}
        self.user_seqs: dict[str, SeqState] = {}
        self.stops: dict[int, Stop] = {}  # pending stop orders by id
        self.user_stops: dict[str, dict[int, Stop]] = {}
        self.stop_cids: dict[tuple[str, str], Stop] = {}
        self.triggers: dict[str, Triggers] = {}
        self.lists: dict[int, OcoList] = {}
        self.next_list_id = 1
        self.expiries: dict[int, int] = {}  # good-till-date order id -> expires_at
        self.expiry_heap: list[tuple[int, int]] = []  # (expires_at, id), stale ones skipped
        self._handlers: dict[type, Callable[[Any, Events], None]] = {
            CreateAsset: self._create_asset,
            CreateMarket: self._create_market,
            UpdateMarket: self._update_market,
            Deposit: self._deposit,
            RequestWithdrawal: self._request_withdrawal,
            SettleWithdrawal: self._settle_withdrawal,
            RefundWithdrawal: self._refund_withdrawal,
            PlaceOrder: self._place,
            CancelOrder: self._cancel,
            CancelAll: self._cancel_all,
            PlaceOco: self._place_oco,
            AmendOrder: self._amend,
            ExpireOrders: self._expire,
        }

    # ------------------------------------------------------------ entry point

    def apply(self, cmd: AnyCommand) -> Applied:
        self.seq += 1
        events: Events = []
        try:
            if cmd.user_seq is not None:
                self._sequence(cmd, cmd.user_seq)
            self._handlers[type(cmd)](cmd, events)
        except Rejected as rej:
            if isinstance(cmd, PlaceOrder | PlaceOco):
                cid = cmd.client_order_id if isinstance(cmd, PlaceOrder) else None
                rejected = OrderRejected(cmd.user, cmd.market, cid, rej.reason)
                return Applied(self.seq, cmd.id, False, rej.reason, [rejected])
            return Applied(self.seq, cmd.id, False, rej.reason, [])
        return Applied(self.seq, cmd.id, True, None, events)

    def _sequence(self, cmd: AnyCommand, us: UserSeq) -> None:
        """Record a user's command's place among the user's commands, or refuse it as
        ``out_of_order`` when a later one was applied before it (docs/engine.md, "Each
        user's order"). The place counts even when the command itself is then refused."""
        user = getattr(cmd, "user", None)
        if user is None:  # not a user's command: nothing to order
            return
        _check_user(user)
        if us.n < 1 or us.epoch < 0:
            raise Rejected(Reason.INVALID, "bad user_seq")
        epoch, last, skipped = self.user_seqs.get(user, (0, 0, ()))
        if us.epoch < epoch:  # from before the counter began again: later ones went first
            raise Rejected(Reason.OUT_OF_ORDER)
        if us.epoch > epoch:  # the counter began again (Redis lost it): a fresh count
            last, skipped = 0, ()
        n = us.n
        if n <= last:
            if any(lo <= n <= hi for lo, hi in skipped):
                raise Rejected(Reason.OUT_OF_ORDER)
            # Never skipped, so never seen: the counter was set back (Redis lost its newest
            # writes) and counts on from here. Numbers from n up are being given out again.
            skipped = tuple((lo, min(hi, n - 1)) for lo, hi in skipped if lo < n)
        elif n > last + 1:  # applied past a gap
            skipped = (*skipped, (last + 1, n - 1))[-MAX_SKIPPED:]
        self.user_seqs[user] = (us.epoch, n, skipped)

    # ------------------------------------------------------------ queries

    def balance(self, user: str, asset: str) -> tuple[int, int]:
        return self.accounts.peek(user, asset)

    def balances(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {
            (user, asset): (bal[0], bal[1])
            for user, assets in self.accounts.users.items()
            for asset, bal in assets.items()
            if bal[0] or bal[1]
        }

    def fees(self, asset: str) -> int:
        return self.accounts.fees.get(asset, 0)

    def totals(self, asset: str) -> tuple[int, int]:
        return self.accounts.deposits.get(asset, 0), self.accounts.withdrawals.get(asset, 0)

    def order(self, order_id: int) -> OrderView | None:
        o = self.orders.get(order_id)
        return OrderView(o) if o else None

    def open_orders(self, user: str) -> list[OrderView]:
        return [OrderView(o) for o in self.user_orders.get(user, {}).values()]

    def pending_stops(self) -> list[tuple[Any, ...]]:
        """Every pending stop order, by id: (id, user, market, side, stop, stop price, type,
        price, amount, quote amount, client order id, hold, list id)."""
        return [
            (
                s.id, s.user, s.market.name, "buy" if s.is_buy else "sell", s.kind,
                s.stop_price, s.order_type, s.price, s.amount, s.quote_amount,
                s.client_order_id, s.hold, s.list_id,
            )
            for s in sorted(self.stops.values(), key=lambda s: s.id)
        ]  # fmt: skip

    def last_price(self, market: str) -> int:
        return self.markets[market].last_price

    def next_expiry(self) -> int | None:
        """The earliest expiry of an open good-till-date order: when it is at or before a
        batch's time, the matcher heads the batch with an ``expire_orders``."""
        heap = self.expiry_heap
        while heap and self.expiries.get(heap[0][1]) is None:
            heapq.heappop(heap)  # its order ended some other way
        return heap[0][0] if heap else None

    def open_count(self, user: str) -> int:
        """The user's open orders that count toward the limit: resting and pending stops."""
        return len(self.user_orders.get(user, ())) + len(self.user_stops.get(user, ()))

    def book(
        self, market: str
    ) -> tuple[
        list[tuple[int, list[tuple[int, str, int]]]], list[tuple[int, list[tuple[int, str, int]]]]
    ]:
        b = self.books[market]

        def side(levels: Any) -> list[tuple[int, list[tuple[int, str, int]]]]:
            return [(lv.price, [(o.id, o.user, o.remaining) for o in lv.live()]) for lv in levels]

        return side(b.bids.values()), side(b.asks.values())

    # ------------------------------------------------------------ admin

    def _create_asset(self, c: CreateAsset, ev: Events) -> None:
        check_asset(c.asset, c.precision)
        if c.asset in self.assets:
            raise Rejected(Reason.DUPLICATE_ASSET)
        self.assets[c.asset] = c.precision
        ev.append(AssetCreated(c.asset, c.precision))

    def _create_market(self, c: CreateMarket, ev: Events) -> None:
        if c.market in self.markets:
            raise Rejected(Reason.DUPLICATE_MARKET)
        m = new_market(c, self.assets)
        self.markets[m.name] = m
        self.books[m.name] = Book(m)
        ev.append(m.event())

    def _update_market(self, c: UpdateMarket, ev: Events) -> None:
        m = self.markets.get(c.market)
        if m is None:
            raise Rejected(Reason.UNKNOWN_MARKET)
        try:
            maker = m.maker_fee if c.maker_fee is None else parse_fee_rate(c.maker_fee)
            taker = m.taker_fee if c.taker_fee is None else parse_fee_rate(c.taker_fee)
        except MoneyError as exc:
            raise Rejected(Reason.INVALID, str(exc)) from exc
        m.maker_fee, m.taker_fee = maker, taker
        if c.status is not None:
            m.status = c.status
        ev.append(m.event())

    # ------------------------------------------------------------ money in and out

    def _known_asset(self, asset: str) -> None:
        if asset not in self.assets:
            raise Rejected(Reason.UNKNOWN_ASSET)

    def _deposit(self, c: Deposit, ev: Events) -> None:
        _check_user(c.user)
        self._known_asset(c.asset)
        if c.amount <= 0:
            raise Rejected(Reason.BAD_AMOUNT)
        if c.ref in self.deposit_refs:
            raise Rejected(Reason.DUPLICATE_DEPOSIT)
        self.deposit_refs.add(c.ref)
        acc = self.accounts
        acc.deposits[c.asset] = acc.deposits.get(c.asset, 0) + c.amount
        ev.append(acc.move(c.user, c.asset, c.amount, 0, "deposit", c.ref))
        ev.append(DepositCredited(c.user, c.asset, c.amount, c.ref))

    def _request_withdrawal(self, c: RequestWithdrawal, ev: Events) -> None:
        _check_user(c.user)
        self._known_asset(c.asset)
        if c.amount <= 0 or c.fee < 0:
            raise Rejected(Reason.BAD_AMOUNT)
        if c.withdrawal_id in self.withdrawal_ids:
            raise Rejected(Reason.DUPLICATE_WITHDRAWAL)
        total = c.amount + c.fee
        if self.accounts.peek(c.user, c.asset)[0] < total:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)
        self.withdrawal_ids.add(c.withdrawal_id)
        self.pending[c.withdrawal_id] = Withdrawal(c.user, c.asset, c.amount, c.fee)
        ev.append(
            self.accounts.move(c.user, c.asset, -total, total, "withdrawal_hold", c.withdrawal_id)
        )
        ev.append(WithdrawalChanged(c.withdrawal_id, c.user, c.asset, c.amount, c.fee, "held"))

    def _settle_withdrawal(self, c: SettleWithdrawal, ev: Events) -> None:
        w = self.pending.pop(c.withdrawal_id, None)
        if w is None:
            raise Rejected(Reason.UNKNOWN_WITHDRAWAL)
        acc = self.accounts
        wid = c.withdrawal_id
        ev.append(acc.move(w.user, w.asset, 0, -(w.amount + w.fee), "withdrawal_settled", wid))
        if w.fee:
            ev.append(acc.add_fee(w.asset, w.fee, "withdrawal_fee", wid))
        acc.withdrawals[w.asset] = acc.withdrawals.get(w.asset, 0) + w.amount
        ev.append(WithdrawalChanged(wid, w.user, w.asset, w.amount, w.fee, "settled"))

    def _refund_withdrawal(self, c: RefundWithdrawal, ev: Events) -> None:
        w = self.pending.pop(c.withdrawal_id, None)
        if w is None:
            raise Rejected(Reason.UNKNOWN_WITHDRAWAL)
        total = w.amount + w.fee
        wid = c.withdrawal_id
        ev.append(self.accounts.move(w.user, w.asset, total, -total, "withdrawal_refunded", wid))
        ev.append(WithdrawalChanged(wid, w.user, w.asset, w.amount, w.fee, "refunded"))

    # ------------------------------------------------------------ cancels

    def _close(self, o: Order, reason: str, ev: Events) -> None:
        """Take an open order off its book and out of the indexes, releasing its hold.
        Inlined by hand: cancels are a third of all traffic."""
        m = o.market
        rem = o.remaining
        price = o.price
        book = self.books[m.name]
        if o.is_buy:
            hold = price * rem // m.base_scale
            asset = m.quote
            side, key = book.bids, -price
        else:
            hold = rem
            asset = m.base
            side, key = book.asks, price
        level = side[key]
        level.qty -= rem
        count = level.count - 1
        level.count = count
        o.remaining = 0
        if not count:
            del side[key]
        elif len(level.orders) > 2 * count + 16:
            level.compact()
        oid, user, cid = o.id, o.user, o.client_order_id
        del self.orders[oid]
        mine = self.user_orders[user]
        del mine[oid]
        if not mine:
            del self.user_orders[user]
        if cid is not None:
            del self.client_ids[(user, cid)]
        bal = self.accounts.users[user][asset]
        available = bal[0] + hold
        frozen = bal[1] - hold
        bal[0] = available
        bal[1] = frozen
        ev.append(
            BalanceChanged(user, asset, available, frozen, hold, -hold, "order_release", str(oid))
        )
        ev.append(
            OrderUpdated(
                oid, user, m.name, "cancelled", o.amount - rem, o.filled_quote, o.fee, 0, reason
            )
        )
        if o.list_id:
            self._end_list(o.list_id, reason, ev)

    def _close_stop(self, s: Stop, reason: str, ev: Events) -> None:
        """Cancel a pending stop order, releasing its hold."""
        self._unlist_stop(s)
        m = s.market
        if s.hold:
            asset = m.quote if s.is_buy else m.base
            ev.append(
                self.accounts.move(s.user, asset, s.hold, -s.hold, "order_release", str(s.id))
            )
        ev.append(OrderUpdated(s.id, s.user, m.name, "cancelled", 0, 0, 0, 0, reason))
        if s.list_id:
            self._end_list(s.list_id, reason, ev)

    def _unlist_stop(self, s: Stop) -> None:
        """Take a stop out of the pending indexes."""
        del self.stops[s.id]
        mine = self.user_stops[s.user]
        del mine[s.id]
        if not mine:
            del self.user_stops[s.user]
        if s.client_order_id is not None:
            del self.stop_cids[(s.user, s.client_order_id)]
        self.triggers[s.market.name].discard(s)

    def _end_list(self, list_id: int, reason: str, ev: Events) -> None:
        """One order of an OCO list traded, triggered or was cancelled (``reason``): cancel
        the other (reason ``oco``) and close the list."""
        lst = self.lists.pop(list_id)
        limit = self.orders.get(lst.limit_id)
        if limit is not None and limit.list_id:
            limit.list_id = 0
            self._close(limit, Reason.OCO, ev)
        stop = self.stops.get(lst.stop_id)
        if stop is not None and stop.list_id:
            stop.list_id = 0
            self._close_stop(stop, Reason.OCO, ev)
        ev.append(
            OrderListChanged(
                list_id,
                lst.user,
                lst.market_name,
                lst.side,
                "done",
                lst.limit_id,
                lst.stop_id,
                reason,
            )
        )

    def _cancel(self, c: CancelOrder, ev: Events) -> None:
        user, oid = c.user, c.order_id
        if not user or len(user) > MAX_USER_ID or user[0] == "@":  # _check_user, inlined
            raise Rejected(Reason.INVALID, "bad user id")
        if (oid is None) == (c.client_order_id is None):
            raise Rejected(Reason.INVALID, "give order_id or client_order_id")
        if oid is not None:
            o = self.orders.get(oid)
            if o is None:
                s = self.stops.get(oid)
                if s is None:
                    raise Rejected(Reason.ORDER_NOT_FOUND)
                if s.user != user:
                    raise Rejected(Reason.NOT_YOUR_ORDER)
                self._close_stop(s, Reason.CANCELLED_BY_USER, ev)
                return
            if o.user != user:
                raise Rejected(Reason.NOT_YOUR_ORDER)
        else:
            key = (c.user, c.client_order_id or "")
            found = self.client_ids.get(key)
            if found is None:
                s = self.stop_cids.get(key)
                if s is None:
                    raise Rejected(Reason.ORDER_NOT_FOUND)
                self._close_stop(s, Reason.CANCELLED_BY_USER, ev)
                return
            o = found
        self._close(o, CANCELLED_BY_USER, ev)

    def _cancel_all(self, c: CancelAll, ev: Events) -> None:
        _check_user(c.user)
        if c.market is not None and c.market not in self.markets:
            raise Rejected(Reason.UNKNOWN_MARKET)
        mine = self.user_orders.get(c.user, {})
        stops = self.user_stops.get(c.user, {})
        for oid in sorted((*mine, *stops)):
            # Looked up again: cancelling one order of a list cancels the other.
            o = self.orders.get(oid)
            if o is not None:
                if c.market is None or o.market.name == c.market:
                    self._close(o, Reason.CANCELLED_BY_USER, ev)
                continue
            s = self.stops.get(oid)
            if s is not None and (c.market is None or s.market.name == c.market):
                self._close_stop(s, Reason.CANCELLED_BY_USER, ev)

    # ------------------------------------------------------------ orders

    def _place(self, c: PlaceOrder, ev: Events) -> None:
        """Check an order, then accept it by its time in force (docs/engine.md, "Orders").

        First the rules that need no state (shared/order_rules.py, the API functions check
        the same), then the client order id and the funds. Then, as exchange-core splits a new
        order: a GTC limit rests what it does not fill (``_place_gtc``), an IOC limit and every
        market order (GTC or IOC alike) cancel it (``_place_ioc``), a FOK limit fills in full
        or is refused (``_place_fok``).
        """
        m = self.markets.get(c.market)
        if m is None:
            raise Rejected(Reason.UNKNOWN_MARKET)
        user, price, amount, cid = c.user, c.price, c.amount, c.client_order_id
        order_type, tif = c.type, c.time_in_force
        stop, expires_at = c.stop, c.expires_at
        broken = order_violation(
            m, user, c.side, order_type, price, amount, c.quote_amount, tif, c.post_only, cid,
            stop, c.stop_price, expires_at,
        )  # fmt: skip
        if broken is not None:
            raise Rejected(broken.reason, broken.message)
        if cid is not None and ((user, cid) in self.client_ids or (user, cid) in self.stop_cids):
            raise Rejected(Reason.DUPLICATE_CLIENT_ORDER_ID)
        if expires_at is not None and expires_at <= c.ts:
            raise Rejected(Reason.BAD_EXPIRY)
        limit = self.max_open_orders
        if limit is not None and self.open_count(user) >= limit:
            raise Rejected(Reason.TOO_MANY_ORDERS)
        is_buy = c.side == "buy"
        if stop is not None:
            self._place_stop(c, m, is_buy, ev)
            return
        mine = self.accounts.users.get(user)
        budget: int | None = None
        tid = self.next_trade_id
        # ``bal``: the balance the order pays from, handed on so that resting does not look
        # it up again.
        if is_buy:
            bal = mine.get(m.quote) if mine else None
            have = bal[0] if bal else 0
            if order_type == "limit":
                need = price * amount // m.base_scale  # type: ignore[operator]
            else:
                budget = have if c.quote_amount is None else c.quote_amount
                need = budget or 1  # a market buy by amount needs some quote
            if have < need:
                raise Rejected(Reason.INSUFFICIENT_FUNDS)
        else:
            bal = mine.get(m.base) if mine else None
            if (bal[0] if bal else 0) < amount:  # type: ignore[operator]
                raise Rejected(Reason.INSUFFICIENT_FUNDS)
        if tif == "GTC" and order_type == "limit":
            self._place_gtc(c, m, user, is_buy, price, amount, ev, 0, bal)  # type: ignore[arg-type]
            if expires_at is not None and self.next_order_id - 1 in self.orders:
                self._add_expiry(self.next_order_id - 1, expires_at)
        elif tif == "FOK":
            self._place_fok(c, m, user, is_buy, price, amount, ev)  # type: ignore[arg-type]
        else:  # an IOC limit, a market order
            self._place_ioc(c, m, user, is_buy, price, amount, budget, ev)
        if self.stops and self.next_trade_id != tid:
            self._run_triggers(m, c.ts, ev)

    def _add_expiry(self, oid: int, expires_at: int) -> None:
        self.expiries[oid] = expires_at
        heapq.heappush(self.expiry_heap, (expires_at, oid))

    # ------------------------------------------------------------ stop orders

    def _stop_hold(self, c: PlaceOrder, m: Market, is_buy: bool) -> int:
        """What a stop order freezes while pending: all it may pay once triggered."""
        if not is_buy:
            return c.amount  # type: ignore[return-value]
        if c.type == "limit":
            return c.price * c.amount // m.base_scale  # type: ignore[operator]
        return c.quote_amount  # type: ignore[return-value]

    def _place_stop(self, c: PlaceOrder, m: Market, is_buy: bool, ev: Events) -> None:
        """A stop order: funds checked and frozen now, out of the book until triggered
        (docs/engine.md, "Stop orders"). One the last price already triggers is refused."""
        user = c.user
        hold = self._stop_hold(c, m, is_buy)
        asset = m.quote if is_buy else m.base
        if self.accounts.peek(user, asset)[0] < hold:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)
        kind, stop_price = c.stop, c.stop_price
        assert kind is not None and stop_price is not None  # order_violation checked both
        last = m.last_price
        if last and (last >= stop_price if rises(kind, is_buy) else last <= stop_price):
            raise Rejected(Reason.WOULD_TRIGGER)
        oid = self.next_order_id
        self.next_order_id = oid + 1
        ev.append(
            OrderAccepted(
                oid, user, m.name, c.side, c.type, c.price, c.amount, c.quote_amount,
                c.time_in_force, False, c.client_order_id, c.ts, kind, stop_price, c.expires_at,
            )
        )  # fmt: skip
        ev.append(self.accounts.move(user, asset, -hold, hold, "order_freeze", str(oid)))
        s = Stop(
            oid, user, m, is_buy, kind, stop_price, c.type, c.price, c.amount, c.quote_amount,
            c.time_in_force, c.stp, c.client_order_id, hold,
        )  # fmt: skip
        self._list_stop(s)
        if c.expires_at is not None:
            self._add_expiry(oid, c.expires_at)

    def _list_stop(self, s: Stop) -> None:
        self.stops[s.id] = s
        self.user_stops.setdefault(s.user, {})[s.id] = s
        if s.client_order_id is not None:
            self.stop_cids[(s.user, s.client_order_id)] = s
        triggers = self.triggers.get(s.market.name)
        if triggers is None:
            triggers = self.triggers[s.market.name] = Triggers()
        triggers.add(s)

    def _run_triggers(self, m: Market, ts: int, ev: Events) -> None:
        """Release the stops the last trade price reached, in order (rising: lowest stop
        price first; falling: highest first; then order id), each within this command; what
        they trade may reach more, released in turn until none is reached."""
        triggers = self.triggers.get(m.name)
        if triggers is None:
            return
        while True:
            last = m.last_price
            batch = triggers.take(last)
            if not batch:
                return
            for sid in batch:
                s = self.stops.get(sid)
                if s is not None:  # else cancelled by an earlier one as its list's other order
                    self._trigger(s, last, ts, ev)

    def _trigger(self, s: Stop, last: int, ts: int, ev: Events) -> None:
        """A triggered stop becomes an ordinary order with its id: it releases its hold (and
        cancels its list's limit order), then is placed as its type and time in force say,
        as the taker, joining the back of the queue if it rests."""
        del self.stops[s.id]
        mine = self.user_stops[s.user]
        del mine[s.id]
        if not mine:
            del self.user_stops[s.user]
        if s.client_order_id is not None:
            del self.stop_cids[(s.user, s.client_order_id)]
        m = s.market
        side: Side = "buy" if s.is_buy else "sell"
        ev.append(OrderTriggered(s.id, s.user, m.name, side, s.stop_price, last, ts))
        if s.list_id:
            list_id, s.list_id = s.list_id, 0
            self._end_list(list_id, Reason.TRIGGERED, ev)
        if s.hold:
            asset = m.quote if s.is_buy else m.base
            ev.append(
                self.accounts.move(s.user, asset, s.hold, -s.hold, "order_release", str(s.id))
            )
        c = PlaceOrder(
            id="", ts=ts, user=s.user, market=m.name, side=side, type=s.order_type,
            price=s.price, amount=s.amount, quote_amount=s.quote_amount,
            time_in_force=s.time_in_force, client_order_id=s.client_order_id, stp=s.stp,
        )  # fmt: skip
        if s.order_type == "limit" and s.time_in_force == "GTC":
            self._place_gtc(c, m, s.user, s.is_buy, s.price, s.amount, ev, s.id)  # type: ignore[arg-type]
        else:
            budget = s.quote_amount if s.is_buy and s.order_type == "market" else None
            self._place_ioc(c, m, s.user, s.is_buy, s.price, s.amount, budget, ev, s.id)

    # ------------------------------------------------------------ OCO, amend, expiry

    def _place_oco(self, c: PlaceOco, ev: Events) -> None:
        """A post-only limit order and a stop-loss order of the same side and amount, one
        list; its hold is the larger of the two orders' holds (docs/engine.md, "OCO")."""
        m = self.markets.get(c.market)
        if m is None:
            raise Rejected(Reason.UNKNOWN_MARKET)
        user, amount, price = c.user, c.amount, c.price
        broken = oco_violation(m, user, c.side, amount, price, c.stop_price, c.stop_limit_price)
        if broken is not None:
            raise Rejected(broken.reason, broken.message)
        limit = self.max_open_orders
        if limit is not None and self.open_count(user) + 2 > limit:
            raise Rejected(Reason.TOO_MANY_ORDERS)
        is_buy = c.side == "buy"
        scale = m.base_scale
        if is_buy:
            asset = m.quote
            limit_hold = price * amount // scale
            stop_hold = (c.stop_limit_price or 0) * amount // scale
        else:
            asset, limit_hold, stop_hold = m.base, amount, amount
        extra = max(0, stop_hold - limit_hold)
        if self.accounts.peek(user, asset)[0] < limit_hold + extra:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)
        book = self.books[m.name]
        best = book.best_ask() if is_buy else book.best_bid()
        if best is not None and (best <= price if is_buy else best >= price):
            raise Rejected(Reason.WOULD_TAKE)
        last = m.last_price
        if last and (last >= c.stop_price if is_buy else last <= c.stop_price):
            raise Rejected(Reason.WOULD_TRIGGER)
        list_id = self.next_list_id
        self.next_list_id = list_id + 1
        limit_id = self.next_order_id
        stop_id = limit_id + 1
        self.next_order_id = stop_id + 1
        name = m.name
        ev.append(
            OrderAccepted(
                limit_id, user, name, c.side, "limit", price, amount, None, "GTC", True, None,
                c.ts, None, None, None, list_id,
            )
        )  # fmt: skip
        acc = self.accounts
        ev.append(acc.move(user, asset, -limit_hold, limit_hold, "order_freeze", str(limit_id)))
        o = Order(limit_id, user, m, is_buy, price, amount, amount, None, list_id=list_id)
        book.add(o)
        self.orders[limit_id] = o
        self.user_orders.setdefault(user, {})[limit_id] = o
        stop_type: OrderType = "market" if c.stop_limit_price is None else "limit"
        ev.append(
            OrderAccepted(
                stop_id, user, name, c.side, stop_type, c.stop_limit_price, amount, None, "GTC",
                False, None, c.ts, "stop_loss", c.stop_price, None, list_id,
            )
        )  # fmt: skip
        if extra:
            ev.append(acc.move(user, asset, -extra, extra, "order_freeze", str(stop_id)))
        self._list_stop(
            Stop(
                stop_id, user, m, is_buy, "stop_loss", c.stop_price, stop_type,
                c.stop_limit_price, amount, None, "GTC", c.stp, None, extra, list_id,
            )
        )  # fmt: skip
        self.lists[list_id] = OcoList(list_id, user, name, c.side, limit_id, stop_id)
        ev.append(OrderListChanged(list_id, user, name, c.side, "open", limit_id, stop_id, None))

    def _amend(self, c: AmendOrder, ev: Events) -> None:
        """Change a resting limit order's price and/or amount at once (docs/engine.md,
        "Amend"): it keeps its place in the queue unless the price changes or the amount
        grows; it never takes (a new price that crosses is refused, ``would_take``)."""
        _check_user(c.user)
        if (c.order_id is None) == (c.client_order_id is None):
            raise Rejected(Reason.INVALID, "give order_id or client_order_id")
        if c.price is None and c.amount is None:
            raise Rejected(Reason.INVALID, "give price and/or amount")
        if c.order_id is not None:
            o = self.orders.get(c.order_id)
            if o is None:
                s = self.stops.get(c.order_id)
                if s is None:
                    raise Rejected(Reason.ORDER_NOT_FOUND)
                if s.user != c.user:
                    raise Rejected(Reason.NOT_YOUR_ORDER)
                raise Rejected(Reason.NOT_AMENDABLE)
            if o.user != c.user:
                raise Rejected(Reason.NOT_YOUR_ORDER)
        else:
            key = (c.user, c.client_order_id or "")
            found = self.client_ids.get(key)
            if found is None:
                if key in self.stop_cids:
                    raise Rejected(Reason.NOT_AMENDABLE)
                raise Rejected(Reason.ORDER_NOT_FOUND)
            o = found
        if o.list_id:
            raise Rejected(Reason.NOT_AMENDABLE)
        m = o.market
        is_buy = o.is_buy
        side: Side = "buy" if is_buy else "sell"
        price = o.price if c.price is None else c.price
        amount = o.amount if c.amount is None else c.amount
        broken = order_violation(m, c.user, side, "limit", price, amount, None, "GTC", False, None)
        if broken is not None:
            raise Rejected(broken.reason, broken.message)
        filled = o.amount - o.remaining
        if amount <= filled:
            raise Rejected(Reason.BAD_AMOUNT, "amount must be more than what has filled")
        remaining = amount - filled
        hold = price * remaining // m.base_scale if is_buy else remaining
        delta = hold - o.hold()
        asset = m.quote if is_buy else m.base
        if delta > self.accounts.peek(c.user, asset)[0]:
            raise Rejected(Reason.INSUFFICIENT_FUNDS)
        book = self.books[m.name]
        if price != o.price:
            best = book.best_ask() if is_buy else book.best_bid()
            if best is not None and (best <= price if is_buy else best >= price):
                raise Rejected(Reason.WOULD_TAKE)
        keep = price == o.price and amount <= o.amount
        side_book = book.bids if is_buy else book.asks
        level = side_book[-o.price if is_buy else o.price]
        if keep:
            level.qty -= o.remaining - remaining
            o.amount, o.remaining = amount, remaining
        else:
            # To the back of the queue at its (new) price: the old entry is left dead in
            # its queue (as a cancel leaves it) and a new one with the same id is queued.
            level.qty -= o.remaining
            level.count -= 1
            o.remaining = 0
            if not level.count:
                del side_book[-o.price if is_buy else o.price]
            elif len(level.orders) > 2 * level.count + 16:
                level.compact()
            moved = Order(
                o.id, o.user, m, is_buy, price, amount, remaining, o.client_order_id,
                o.filled_quote, o.fee,
            )  # fmt: skip
            book.add(moved)
            self.orders[o.id] = moved
            self.user_orders[o.user][o.id] = moved
            if o.client_order_id is not None:
                self.client_ids[(o.user, o.client_order_id)] = moved
        if delta:
            reason = "order_freeze" if delta > 0 else "order_release"
            ev.append(self.accounts.move(c.user, asset, -delta, delta, reason, str(o.id)))
        ev.append(OrderAmended(o.id, c.user, m.name, price, amount, filled, hold, keep))

    def _expire(self, c: ExpireOrders, ev: Events) -> None:
        """Cancel every good-till-date order whose expiry is at or before the batch's time,
        earliest expiry first, then by order id."""
        heap, expiries = self.expiry_heap, self.expiries
        while heap and heap[0][0] <= c.ts:
            _, oid = heapq.heappop(heap)
            if expiries.pop(oid, None) is None:
                continue
            o = self.orders.get(oid)
            if o is not None:
                self._close(o, Reason.EXPIRED, ev)
                continue
            s = self.stops.get(oid)
            if s is not None:
                self._close_stop(s, Reason.EXPIRED, ev)

    def _place_gtc(
        self,
        c: PlaceOrder,
        m: Market,
        user: str,
        is_buy: bool,
        price: int,
        amount: int,
        ev: Events,
        triggered: int = 0,
        bal: list[int] | None = None,
    ) -> None:
        """Good till cancelled (limit orders): take what crosses the price, rest the rest.
        ``post_only`` is refused (``would_take``) when anything crosses. ``triggered``: the
        id of a triggered stop order placed now (its ``OrderTriggered`` stands for the
        ``OrderAccepted``). ``bal``: the user's balance the order pays from, when the
        caller has it."""
        book = self.books[m.name]
        # It crosses when the best opposite key is at most its price (bids are keyed by the
        # negated price: at most minus its price, for a sell).
        if is_buy:
            side, key = book.bids, -price
            best = book.asks.best
            crosses = best is not None and best <= price
        else:
            side, key = book.asks, price
            best = book.bids.best
            crosses = best is not None and best <= -price
        if crosses and c.post_only:
            raise Rejected(Reason.WOULD_TAKE)
        # Accepted: from here on every step changes state.
        name, cid = m.name, c.client_order_id
        if triggered:
            oid = triggered
        else:
            oid = self.next_order_id
            self.next_order_id = oid + 1
            ev.append(
                OrderAccepted(
                    oid, user, name, c.side, "limit", price, amount, None, "GTC", c.post_only,
                    cid, c.ts, None, None, c.expires_at,
                )
            )  # fmt: skip
        taker = Order(oid, user, m, is_buy, price, amount, amount, cid)
        if crosses:
            stop = self._match(book, taker, price, None, c.stp, c.ts, ev)
            remaining = taker.remaining
            if stop is not None or not remaining:
                self._end(taker, c, stop, ev)
                return
        else:
            remaining = amount
        # Rest on the book, freezing what the remainder may still pay.
        if is_buy:
            hold = price * remaining // m.base_scale
            asset = m.quote
        else:
            hold = remaining
            asset = m.base
        if bal is None:
            bal = self.accounts.get(user, asset)
        available = bal[0] - hold
        frozen = bal[1] + hold
        bal[0] = available
        bal[1] = frozen
        ev.append(
            BalanceChanged(user, asset, available, frozen, -hold, hold, "order_freeze", str(oid))
        )
        # Book.add, inlined.
        level = side.get(key)
        if level is None:
            level = side[key] = Level(price)
        level.orders.append(taker)
        level.qty += remaining
        level.count += 1
        self.orders[oid] = taker
        open_orders = self.user_orders.get(user)
        if open_orders is None:
            open_orders = self.user_orders[user] = {}
        open_orders[oid] = taker
        if cid is not None:
            self.client_ids[(user, cid)] = taker
        if remaining != amount:
            ev.append(
                OrderUpdated(
                    oid, user, name, "partially_filled", amount - remaining, taker.filled_quote,
                    taker.fee, hold, None,
                )
            )  # fmt: skip

    def _place_ioc(
        self,
        c: PlaceOrder,
        m: Market,
        user: str,
        is_buy: bool,
        price: int | None,
        amount: int | None,
        budget: int | None,
        ev: Events,
        triggered: int = 0,
    ) -> None:
        """Immediate or cancel: take what can be taken now and cancel the rest. Every market
        order (no ``price``: it takes any; a buy spends at most ``budget`` of quote), an IOC
        limit, a FOK limit that can fill. ``triggered``: as for ``_place_gtc``."""
        book = self.books[m.name]
        best = book.asks.best if is_buy else book.bids.best  # crosses: as in _place_gtc
        crosses = best is not None and (price is None or best <= (price if is_buy else -price))
        # Accepted: from here on every step changes state.
        cid = c.client_order_id
        if triggered:
            oid = triggered
        else:
            oid = self.next_order_id
            self.next_order_id = oid + 1
            ev.append(
                OrderAccepted(
                    oid, user, m.name, c.side, c.type, price, amount, c.quote_amount,
                    c.time_in_force, c.post_only, cid, c.ts,
                )
            )  # fmt: skip
        # A market buy by quote has no amount bound: only its budget stops it.
        taker_amount = amount or UNBOUNDED
        taker = Order(oid, user, m, is_buy, price or 0, taker_amount, taker_amount, cid)
        stop = self._match(book, taker, price, budget, c.stp, c.ts, ev) if crosses else None
        self._end(taker, c, stop, ev)

    def _place_fok(
        self, c: PlaceOrder, m: Market, user: str, is_buy: bool, price: int, amount: int, ev: Events
    ) -> None:
        """Fill or kill (limit orders): refused (``fok_not_filled``) unless the whole amount
        can fill now; then it fills as an IOC order would, completely."""
        if not self._fillable(self.books[m.name], user, is_buy, price, amount, c.stp):
            raise Rejected(Reason.FOK_NOT_FILLED)
        self._place_ioc(c, m, user, is_buy, price, amount, None, ev)

    @staticmethod
    def _end(taker: Order, c: PlaceOrder, stop: str | None, ev: Events) -> None:
        """The last update of an order that does not rest: filled, or cancelled with why."""
        remaining = taker.remaining
        filled = taker.amount - remaining
        status: OrderStatus = "cancelled"
        reason: str | None
        if not remaining:
            status, reason = "filled", None
        elif stop == Reason.INSUFFICIENT_FUNDS and c.amount is None and filled:
            status, reason = "filled", None  # a quote budget spent down to less than a step
        elif stop is not None:
            reason = stop
        else:
            reason = Reason.IOC_EXPIRED if c.type == "limit" else Reason.NO_LIQUIDITY
        ev.append(
            OrderUpdated(
                taker.id, taker.user, taker.market.name, status, filled, taker.filled_quote,
                taker.fee, 0, reason,
            )
        )  # fmt: skip

    def _fillable(
        self, book: Book, user: str, is_buy: bool, limit: int, amount: int, stp: str
    ) -> bool:
        need = amount
        for level in book.levels(not is_buy):
            if level.price > limit if is_buy else level.price < limit:
                return False
            for o in level.live():
                if o.user == user:
                    if stp != "cancel_maker":
                        return False
                    continue
                need -= o.remaining
                if need <= 0:
                    return True
        return False

    def _match(
        self,
        book: Book,
        taker: Order,
        limit: int | None,
        budget: int | None,
        stp: str,
        ts: int,
        ev: Events,
    ) -> str | None:
        """Fill ``taker`` against the opposite side. Returns why it stopped early (self-trade
        prevention, an exhausted budget), or None when it ran out of amount or prices."""
        m = book.market
        is_buy = taker.is_buy
        side = book.asks if is_buy else book.bids
        if not side:
            return None
        scale, step = m.base_scale, m.step
        base, quote, name = m.base, m.quote, m.name
        t_rate, m_rate = m.taker_fee, m.maker_fee
        user = taker.user
        accounts = self.accounts
        acc_get = accounts.get
        users = accounts.users
        fees = accounts.fees
        pay_asset, get_asset = (quote, base) if is_buy else (base, quote)
        t_pay_bal = acc_get(user, pay_asset)
        t_get_bal = acc_get(user, get_asset)
        append = ev.append
        remaining = taker.remaining
        t_filled_quote = t_fee = 0
        stop: str | None = None
        side_pop = side.popitem
        orders = self.orders
        user_orders = self.user_orders
        client_ids = self.client_ids
        tid = self.next_trade_id
        taker_side: Side = "buy" if is_buy else "sell"
        oid = taker.id
        last_price = 0
        while remaining and side:
            level: Level = side[side.best]
            price = level.price
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            queue = level.orders
            while remaining:
                mo = queue[0]
                m_rem = mo.remaining
                if not m_rem:  # cancelled earlier, still queued
                    queue.popleft()
                    continue
                if mo.user == user:
                    stop = self._self_trade(mo, price, budget, stp, ev)
                    if stop is not None:
                        break
                    queue = level.orders  # closing may have compacted the queue
                    if not level.count:
                        break
                    continue
                amt = remaining if remaining < m_rem else m_rem
                q = price * amt // scale
                if budget is not None and q > budget:
                    amt = (budget * scale // price) // step * step
                    if not amt:
                        stop = Reason.INSUFFICIENT_FUNDS
                        break
                    q = price * amt // scale
                if budget is not None:
                    budget -= q
                m_user = mo.user
                t_ref = str(tid)
                # The taker pays ``t_pay`` of ``pay_asset`` from available and gets ``t_get``
                # of ``get_asset``; the maker pays ``t_get`` from its hold and gets ``t_pay``.
                # Each pays its fee in what it gets.
                if is_buy:
                    t_pay, t_get = q, amt
                else:
                    t_pay, t_get = amt, q
                t_fee_now = -((-t_get * t_rate) // 1000000)
                m_fee_now = -((-t_pay * m_rate) // 1000000)
                t_pay_bal[0] = t_pay_avail = t_pay_bal[0] - t_pay
                t_get_bal[0] = t_get_avail = t_get_bal[0] + t_get - t_fee_now
                # Accounts.get, inlined: the maker has both balances, but after a restore a
                # balance that was zero is absent.
                m_assets = users.get(m_user)
                m_pay_bal = m_assets.get(get_asset) if m_assets else None
                if m_pay_bal is None:
                    m_pay_bal = acc_get(m_user, get_asset)
                m_get_bal = m_assets.get(pay_asset) if m_assets else None
                if m_get_bal is None:
                    m_get_bal = acc_get(m_user, pay_asset)
                m_pay_bal[1] = m_pay_frozen = m_pay_bal[1] - t_get
                m_get_bal[0] = m_get_avail = m_get_bal[0] + t_pay - m_fee_now
                append(
                    Trade(
                        tid, name, price, amt, q, taker_side, mo.id, oid, m_user, user,
                        m_fee_now, t_fee_now, ts,
                    )
                )  # fmt: skip
                append(
                    BalanceChanged(
                        user, pay_asset, t_pay_avail, t_pay_bal[1], -t_pay, 0, "trade", t_ref
                    )
                )
                append(
                    BalanceChanged(
                        user, get_asset, t_get_avail, t_get_bal[1], t_get - t_fee_now, 0,
                        "trade", t_ref,
                    )
                )  # fmt: skip
                append(
                    BalanceChanged(
                        m_user, get_asset, m_pay_bal[0], m_pay_frozen, 0, -t_get, "trade", t_ref
                    )
                )
                append(
                    BalanceChanged(
                        m_user, pay_asset, m_get_avail, m_get_bal[1], t_pay - m_fee_now, 0,
                        "trade", t_ref,
                    )
                )  # fmt: skip
                # The fee account's changes, base asset first.
                base_fee, quote_fee = (t_fee_now, m_fee_now) if is_buy else (m_fee_now, t_fee_now)
                if base_fee:
                    fees[base] = f = fees.get(base, 0) + base_fee
                    append(BalanceChanged(FEE_ACCOUNT, base, f, 0, base_fee, 0, "trade_fee", t_ref))
                if quote_fee:
                    fees[quote] = f = fees.get(quote, 0) + quote_fee
                    append(
                        BalanceChanged(FEE_ACCOUNT, quote, f, 0, quote_fee, 0, "trade_fee", t_ref)
                    )
                tid += 1
                last_price = price
                t_filled_quote += q
                t_fee += t_fee_now
                remaining -= amt
                m_rem -= amt
                mo.remaining = m_rem
                mo.filled_quote += q
                mo.fee += m_fee_now
                level.qty -= amt
                if m_rem:
                    append(
                        OrderUpdated(
                            mo.id, m_user, name, "partially_filled", mo.amount - m_rem,
                            mo.filled_quote, mo.fee, mo.hold(), None,
                        )
                    )  # fmt: skip
                    if mo.list_id:
                        list_id, mo.list_id = mo.list_id, 0
                        self._end_list(list_id, Reason.TRADED, ev)
                    continue
                queue.popleft()
                level.count -= 1
                del orders[mo.id]
                mine = user_orders[m_user]
                del mine[mo.id]
                if not mine:
                    del user_orders[m_user]
                if mo.client_order_id is not None:
                    del client_ids[(m_user, mo.client_order_id)]
                append(
                    OrderUpdated(
                        mo.id, m_user, name, "filled", mo.amount, mo.filled_quote, mo.fee, 0, None
                    )
                )
                if mo.list_id:
                    list_id, mo.list_id = mo.list_id, 0
                    self._end_list(list_id, Reason.TRADED, ev)
                if not level.count:
                    break
            if stop is not None:
                break
            if not level.count:
                # The level may already be gone if self-trade prevention closed its last order.
                best = side.best
                if best is not None and side[best] is level:
                    side_pop(0)
            elif remaining:
                break  # budget or the loop above stopped inside this level
        if tid != self.next_trade_id:
            m.last_price = last_price
        self.next_trade_id = tid
        return self._finish_taker(taker, remaining, t_filled_quote, t_fee, budget, stop, bool(side))

    def _self_trade(
        self, mo: Order, price: int, budget: int | None, stp: str, ev: Events
    ) -> str | None:
        """The taker met ``mo``, a maker of its own user, at ``price``: closes the maker unless
        the policy keeps it. Returns why the taker stops, or None to go on matching."""
        # Self-trade prevention acts only on a maker the taker could trade with: a budget
        # that cannot buy one step at this price stops here. (A spent amount already ended
        # the loop; so did a price beyond the limit.)
        m = mo.market
        if budget is not None and budget * m.base_scale // price < m.step:
            return Reason.INSUFFICIENT_FUNDS
        if stp == "cancel_taker":
            return Reason.SELF_TRADE
        self._close(mo, Reason.SELF_TRADE, ev)
        if stp == "cancel_both":
            return Reason.SELF_TRADE
        return None

    @staticmethod
    def _finish_taker(
        taker: Order,
        remaining: int,
        filled_quote: int,
        fee: int,
        budget: int | None,
        stop: str | None,
        saw_more: bool,
    ) -> str | None:
        """Records what matching did to ``taker`` and returns why it stopped early (None if it
        ran out of amount or prices). ``saw_more``: the opposite side still has orders."""
        if stop is None and budget == 0 and remaining and (saw_more or taker.amount == UNBOUNDED):
            # Spent to the last unit: a buy by quote is done; a buy by amount that still
            # saw asks ran out of money (one that emptied the book ran out of liquidity).
            stop = Reason.INSUFFICIENT_FUNDS
        taker.remaining = remaining
        taker.filled_quote = filled_quote
        taker.fee = fee
        return stop
