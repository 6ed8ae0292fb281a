"""A deliberately simple reference model of the matching engine (docs/engine.md).

Written independently of ``matcher_service.engine`` to be compared with it: plain dicts for
accounts, one plain list of resting orders (sorted by price priority and order id whenever
the book is read), and the rules of docs/engine.md spelled out one by one, in the order the
document gives them. Clarity over speed: every lookup is a linear scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    MarketChanged,
    MarketStatus,
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
    SelfTrade,
    SettleWithdrawal,
    Side,
    StopKind,
    TimeInForce,
    Trade,
    UpdateMarket,
    WithdrawalChanged,
)
from shared.money import MoneyError, fee_for, parse_fee_rate, parse_units

Level = tuple[int, list[tuple[int, str, int]]]


class RejectedError(Exception):
    """A command failed a check; carries the reason code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class RefMarket:
    name: str
    base: str
    quote: str
    tick: str
    step: str
    min_amount: str
    min_notional: str
    maker_fee: str
    taker_fee: str
    status: MarketStatus
    tick_units: int
    step_units: int
    min_amount_units: int
    min_notional_units: int
    maker_rate: int
    taker_rate: int


@dataclass
class RefOrder:
    order_id: int
    user: str
    market: str
    side: Side
    order_type: OrderType
    price: int | None
    amount: int | None
    quote_amount: int | None
    time_in_force: TimeInForce
    post_only: bool
    client_order_id: str | None
    stp: SelfTrade
    remaining: int = 0
    filled: int = 0
    filled_quote: int = 0
    fee: int = 0
    status: OrderStatus = "open"
    priority: int = 0
    """Its place in time among the resting orders: set each time it joins a queue."""
    stop: StopKind | None = None
    stop_price: int | None = None
    expires_at: int | None = None
    list_id: int = 0
    hold: int = 0
    """A pending stop order's own hold (the stop order of a list: beyond the limit's)."""


@dataclass
class RefWithdrawal:
    withdrawal_id: str
    user: str
    asset: str
    amount: int
    fee: int
    state: str = "held"


@dataclass
class RefAccount:
    available: int = 0
    frozen: int = 0


@dataclass
class _Ctx:
    """What one command produces."""

    events: list[AnyEvent] = field(default_factory=list)


def valid_user(user: object) -> bool:
    return isinstance(user, str) and 0 < len(user) <= 128 and not user.startswith("@")


class ReferenceEngine:
    def __init__(self, max_open_orders: int | None = None) -> None:
        self.max_open_orders = max_open_orders
        self.seq = 0
        self.assets: dict[str, int] = {}
        self.markets: dict[str, RefMarket] = {}
        self.accounts: dict[tuple[str, str], RefAccount] = {}
        self.fee_balances: dict[str, int] = {}
        self.deposited: dict[str, int] = {}
        self.withdrawn: dict[str, int] = {}
        self.deposit_refs: set[str] = set()
        self.withdrawals: dict[str, RefWithdrawal] = {}
        # Every order ever accepted, by id; the open ones are the resting book.
        self.orders: dict[int, RefOrder] = {}
        self.resting: list[RefOrder] = []
        self.next_order_id = 1
        self.next_trade_id = 1
        self.stops: list[RefOrder] = []  # pending stop orders
        # user, market, side, limit order id, stop order id
        self.lists: dict[int, tuple[str, str, Side, int, int]] = {}
        self.next_list_id = 1
        self.last_price: dict[str, int] = {}
        self.clock = 0  # orders join queues in this order

    # ------------------------------------------------------------ queries

    def balance(self, user: str, asset: str) -> tuple[int, int]:
        acc = self.accounts.get((user, asset))
        return (0, 0) if acc is None else (acc.available, acc.frozen)

    def balances(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {
            key: (acc.available, acc.frozen)
            for key, acc in self.accounts.items()
            if acc.available or acc.frozen
        }

    def fees(self, asset: str) -> int:
        return self.fee_balances.get(asset, 0)

    def totals(self, asset: str) -> tuple[int, int]:
        return (self.deposited.get(asset, 0), self.withdrawn.get(asset, 0))

    def side_orders(self, market: str, side: Side) -> list[RefOrder]:
        """Resting orders of one side, best first: price priority, then order id (FIFO)."""
        orders = [o for o in self.resting if o.market == market and o.side == side]
        if side == "buy":
            orders.sort(key=lambda o: (-(o.price or 0), o.priority))
        else:
            orders.sort(key=lambda o: (o.price or 0, o.priority))
        return orders

    def pending_stops(self) -> list[tuple[object, ...]]:
        return [
            (
                o.order_id, o.user, o.market, o.side, o.stop, o.stop_price, o.order_type,
                o.price, o.amount, o.quote_amount, o.client_order_id, o.hold, o.list_id,
            )
            for o in sorted(self.stops, key=lambda o: o.order_id)
        ]  # fmt: skip

    def _rest(self, o: RefOrder) -> None:
        self.clock += 1
        o.priority = self.clock
        self.resting.append(o)

    def book(self, market: str) -> tuple[list[Level], list[Level]]:
        def levels(side: Side) -> list[Level]:
            out: list[Level] = []
            for o in self.side_orders(market, side):
                assert o.price is not None
                if not out or out[-1][0] != o.price:
                    out.append((o.price, []))
                out[-1][1].append((o.order_id, o.user, o.remaining))
            return out

        return levels("buy"), levels("sell")

    def order(self, order_id: int) -> RefOrder | None:
        o = self.orders.get(order_id)
        return o if o is not None and o in self.resting else None

    # ------------------------------------------------------------ helpers

    def _account(self, user: str, asset: str) -> RefAccount:
        return self.accounts.setdefault((user, asset), RefAccount())

    def _change(
        self,
        ctx: _Ctx,
        user: str,
        asset: str,
        d_avail: int,
        d_frozen: int,
        reason: str,
        ref: str,
    ) -> None:
        acc = self._account(user, asset)
        acc.available += d_avail
        acc.frozen += d_frozen
        assert acc.available >= 0 and acc.frozen >= 0, (user, asset, acc)
        ctx.events.append(
            BalanceChanged(user, asset, acc.available, acc.frozen, d_avail, d_frozen, reason, ref)
        )

    def _pay_fee(self, ctx: _Ctx, asset: str, amount: int, reason: str, ref: str) -> None:
        self.fee_balances[asset] = self.fee_balances.get(asset, 0) + amount
        ctx.events.append(
            BalanceChanged(FEE_ACCOUNT, asset, self.fee_balances[asset], 0, amount, 0, reason, ref)
        )

    def _scale(self, market: RefMarket) -> int:
        scale: int = 10 ** self.assets[market.base]
        return scale

    def _quote_value(self, market: RefMarket, price: int, amount: int) -> int:
        return price * amount // self._scale(market)

    def _hold(self, o: RefOrder) -> int:
        """What a resting order still holds: quote for a buy, base for a sell."""
        market = self.markets[o.market]
        if o.side == "buy":
            assert o.price is not None
            return self._quote_value(market, o.price, o.remaining)
        return o.remaining

    def _hold_asset(self, o: RefOrder) -> str:
        market = self.markets[o.market]
        return market.quote if o.side == "buy" else market.base

    def _order_updated(self, o: RefOrder, reason: str | None) -> OrderUpdated:
        frozen = self._hold(o) if o in self.resting else 0
        return OrderUpdated(
            o.order_id,
            o.user,
            o.market,
            o.status,
            o.filled,
            o.filled_quote,
            o.fee,
            frozen,
            reason,
        )

    def _cancel_resting(self, ctx: _Ctx, o: RefOrder, reason: str) -> None:
        hold = self._hold(o)
        self._change(
            ctx, o.user, self._hold_asset(o), hold, -hold, "order_release", str(o.order_id)
        )
        self.resting.remove(o)
        o.status = "cancelled"
        ctx.events.append(self._order_updated(o, reason))
        if o.list_id:
            self._end_list(ctx, o.list_id, reason)

    def _cancel_stop(self, ctx: _Ctx, o: RefOrder, reason: str) -> None:
        self.stops.remove(o)
        if o.hold:
            self._change(
                ctx, o.user, self._hold_asset(o), o.hold, -o.hold, "order_release", str(o.order_id)
            )
        o.status = "cancelled"
        ctx.events.append(
            OrderUpdated(o.order_id, o.user, o.market, "cancelled", 0, 0, 0, 0, reason)
        )
        if o.list_id:
            self._end_list(ctx, o.list_id, reason)

    def _end_list(self, ctx: _Ctx, list_id: int, reason: str) -> None:
        """The list is done: cancel whichever of its orders is still open (reason ``oco``)."""
        user, market, side, limit_id, stop_id = self.lists.pop(list_id)
        for o in list(self.resting):
            if o.order_id == limit_id and o.list_id:
                o.list_id = 0
                self._cancel_resting(ctx, o, Reason.OCO)
        for o in list(self.stops):
            if o.order_id == stop_id and o.list_id:
                o.list_id = 0
                self._cancel_stop(ctx, o, Reason.OCO)
        ctx.events.append(
            OrderListChanged(list_id, user, market, side, "done", limit_id, stop_id, reason)
        )

    def _market_event(self, m: RefMarket) -> MarketChanged:
        return MarketChanged(
            m.name,
            m.base,
            m.quote,
            m.tick,
            m.step,
            m.min_amount,
            m.min_notional,
            m.maker_fee,
            m.taker_fee,
            m.status,
        )

    # ------------------------------------------------------------ apply

    def apply(self, cmd: AnyCommand) -> Applied:
        self.seq += 1
        ctx = _Ctx()
        try:
            # Every check runs before the first change, so a rejection has nothing to undo.
            self._dispatch(cmd, ctx)
        except RejectedError as rej:
            events: list[AnyEvent] = []
            if isinstance(cmd, PlaceOrder):
                events.append(OrderRejected(cmd.user, cmd.market, cmd.client_order_id, rej.reason))
            elif isinstance(cmd, PlaceOco):
                events.append(OrderRejected(cmd.user, cmd.market, None, rej.reason))
            return Applied(self.seq, cmd.id, False, rej.reason, events)
        return Applied(self.seq, cmd.id, True, None, ctx.events)

    def _dispatch(self, cmd: AnyCommand, ctx: _Ctx) -> None:
        if isinstance(cmd, CreateAsset):
            self._create_asset(cmd, ctx)
        elif isinstance(cmd, CreateMarket):
            self._create_market(cmd, ctx)
        elif isinstance(cmd, UpdateMarket):
            self._update_market(cmd, ctx)
        elif isinstance(cmd, Deposit):
            self._deposit(cmd, ctx)
        elif isinstance(cmd, RequestWithdrawal):
            self._request_withdrawal(cmd, ctx)
        elif isinstance(cmd, SettleWithdrawal):
            self._settle_withdrawal(cmd, ctx)
        elif isinstance(cmd, RefundWithdrawal):
            self._refund_withdrawal(cmd, ctx)
        elif isinstance(cmd, PlaceOrder):
            self._place_order(cmd, ctx)
        elif isinstance(cmd, CancelOrder):
            self._cancel_order(cmd, ctx)
        elif isinstance(cmd, CancelAll):
            self._cancel_all(cmd, ctx)
        elif isinstance(cmd, PlaceOco):
            self._place_oco(cmd, ctx)
        elif isinstance(cmd, AmendOrder):
            self._amend(cmd, ctx)
        elif isinstance(cmd, ExpireOrders):
            self._expire(cmd, ctx)
        else:  # pragma: no cover
            raise RejectedError(Reason.INVALID)

    # ------------------------------------------------------------ admin

    def _create_asset(self, cmd: CreateAsset, ctx: _Ctx) -> None:
        if not cmd.asset or "-" in cmd.asset or not 0 <= cmd.precision <= 18:
            raise RejectedError(Reason.INVALID)
        if cmd.asset in self.assets:
            raise RejectedError(Reason.DUPLICATE_ASSET)
        self.assets[cmd.asset] = cmd.precision
        ctx.events.append(AssetCreated(cmd.asset, cmd.precision))

    def _create_market(self, cmd: CreateMarket, ctx: _Ctx) -> None:
        if cmd.market in self.markets:
            raise RejectedError(Reason.DUPLICATE_MARKET)
        if cmd.base not in self.assets or cmd.quote not in self.assets:
            raise RejectedError(Reason.UNKNOWN_ASSET)
        if cmd.base == cmd.quote or cmd.market != f"{cmd.base}-{cmd.quote}":
            raise RejectedError(Reason.INVALID)
        bp, qp = self.assets[cmd.base], self.assets[cmd.quote]
        try:
            tick = parse_units(cmd.tick, qp)
            step = parse_units(cmd.step, bp)
            min_amount = parse_units(cmd.min_amount, bp)
            min_notional = parse_units(cmd.min_notional, qp)
            maker = parse_fee_rate(cmd.maker_fee)
            taker = parse_fee_rate(cmd.taker_fee)
        except MoneyError as exc:
            raise RejectedError(Reason.INVALID) from exc
        if tick <= 0 or step <= 0 or (tick * step) % 10**bp:
            raise RejectedError(Reason.INVALID)
        m = RefMarket(
            cmd.market,
            cmd.base,
            cmd.quote,
            cmd.tick,
            cmd.step,
            cmd.min_amount,
            cmd.min_notional,
            cmd.maker_fee,
            cmd.taker_fee,
            cmd.status,
            tick,
            step,
            min_amount,
            min_notional,
            maker,
            taker,
        )
        self.markets[cmd.market] = m
        ctx.events.append(self._market_event(m))

    def _update_market(self, cmd: UpdateMarket, ctx: _Ctx) -> None:
        m = self.markets.get(cmd.market)
        if m is None:
            raise RejectedError(Reason.UNKNOWN_MARKET)
        try:
            maker = parse_fee_rate(cmd.maker_fee) if cmd.maker_fee is not None else None
            taker = parse_fee_rate(cmd.taker_fee) if cmd.taker_fee is not None else None
        except MoneyError as exc:
            raise RejectedError(Reason.INVALID) from exc
        if maker is not None and cmd.maker_fee is not None:
            m.maker_fee, m.maker_rate = cmd.maker_fee, maker
        if taker is not None and cmd.taker_fee is not None:
            m.taker_fee, m.taker_rate = cmd.taker_fee, taker
        if cmd.status is not None:
            m.status = cmd.status
        ctx.events.append(self._market_event(m))

    # ------------------------------------------------------------ money movements

    def _deposit(self, cmd: Deposit, ctx: _Ctx) -> None:
        if not valid_user(cmd.user):
            raise RejectedError(Reason.INVALID)
        if cmd.asset not in self.assets:
            raise RejectedError(Reason.UNKNOWN_ASSET)
        if cmd.amount <= 0:
            raise RejectedError(Reason.BAD_AMOUNT)
        if cmd.ref in self.deposit_refs:
            raise RejectedError(Reason.DUPLICATE_DEPOSIT)
        self.deposit_refs.add(cmd.ref)
        self.deposited[cmd.asset] = self.deposited.get(cmd.asset, 0) + cmd.amount
        self._change(ctx, cmd.user, cmd.asset, cmd.amount, 0, "deposit", cmd.ref)
        ctx.events.append(DepositCredited(cmd.user, cmd.asset, cmd.amount, cmd.ref))

    def _request_withdrawal(self, cmd: RequestWithdrawal, ctx: _Ctx) -> None:
        if not valid_user(cmd.user):
            raise RejectedError(Reason.INVALID)
        if cmd.asset not in self.assets:
            raise RejectedError(Reason.UNKNOWN_ASSET)
        if cmd.amount <= 0 or cmd.fee < 0:
            raise RejectedError(Reason.BAD_AMOUNT)
        if cmd.withdrawal_id in self.withdrawals:
            raise RejectedError(Reason.DUPLICATE_WITHDRAWAL)
        total = cmd.amount + cmd.fee
        if self.balance(cmd.user, cmd.asset)[0] < total:
            raise RejectedError(Reason.INSUFFICIENT_FUNDS)
        w = RefWithdrawal(cmd.withdrawal_id, cmd.user, cmd.asset, cmd.amount, cmd.fee)
        self.withdrawals[w.withdrawal_id] = w
        self._change(ctx, w.user, w.asset, -total, total, "withdrawal_hold", w.withdrawal_id)
        ctx.events.append(
            WithdrawalChanged(w.withdrawal_id, w.user, w.asset, w.amount, w.fee, "held")
        )

    def _pending(self, withdrawal_id: str) -> RefWithdrawal:
        w = self.withdrawals.get(withdrawal_id)
        if w is None or w.state != "held":
            raise RejectedError(Reason.UNKNOWN_WITHDRAWAL)
        return w

    def _settle_withdrawal(self, cmd: SettleWithdrawal, ctx: _Ctx) -> None:
        w = self._pending(cmd.withdrawal_id)
        total = w.amount + w.fee
        w.state = "settled"
        self._change(ctx, w.user, w.asset, 0, -total, "withdrawal_settled", w.withdrawal_id)
        if w.fee:
            self._pay_fee(ctx, w.asset, w.fee, "withdrawal_fee", w.withdrawal_id)
        self.withdrawn[w.asset] = self.withdrawn.get(w.asset, 0) + w.amount
        ctx.events.append(
            WithdrawalChanged(w.withdrawal_id, w.user, w.asset, w.amount, w.fee, "settled")
        )

    def _refund_withdrawal(self, cmd: RefundWithdrawal, ctx: _Ctx) -> None:
        w = self._pending(cmd.withdrawal_id)
        total = w.amount + w.fee
        w.state = "refunded"
        self._change(ctx, w.user, w.asset, total, -total, "withdrawal_refunded", w.withdrawal_id)
        ctx.events.append(
            WithdrawalChanged(w.withdrawal_id, w.user, w.asset, w.amount, w.fee, "refunded")
        )

    # ------------------------------------------------------------ orders: checks

    def _check_order(self, cmd: PlaceOrder, shape_only: bool = False) -> RefMarket:
        """The seven checks of docs/engine.md, in order; rejects on the first failure."""
        # 1. market known and open; user id valid.
        m = self.markets.get(cmd.market)
        if m is None:
            raise RejectedError(Reason.UNKNOWN_MARKET)
        if m.status != "open":
            raise RejectedError(Reason.MARKET_HALTED)
        if not valid_user(cmd.user):
            raise RejectedError(Reason.INVALID)
        # 2. shape.
        if cmd.type == "limit":
            if cmd.price is None:  # "price given and > 0 (bad_price)"
                raise RejectedError(Reason.BAD_PRICE)
            if cmd.price <= 0:
                raise RejectedError(Reason.BAD_PRICE)
            if cmd.price % m.tick_units:
                raise RejectedError(Reason.BAD_TICK)
            if cmd.amount is None or cmd.quote_amount is not None:
                raise RejectedError(Reason.INVALID)
            if cmd.post_only and cmd.time_in_force != "GTC":
                raise RejectedError(Reason.INVALID)
        else:
            if cmd.price is not None or cmd.post_only:
                raise RejectedError(Reason.INVALID)
            if cmd.time_in_force not in ("GTC", "IOC"):
                raise RejectedError(Reason.INVALID)
            if cmd.side == "sell":
                if cmd.amount is None or cmd.quote_amount is not None:
                    raise RejectedError(Reason.INVALID)
            elif (cmd.amount is None) == (cmd.quote_amount is None):
                raise RejectedError(Reason.INVALID)
        if cmd.stop is not None or cmd.stop_price is not None:
            if cmd.stop is None or cmd.stop_price is None:
                raise RejectedError(Reason.INVALID)
            if cmd.stop_price <= 0:
                raise RejectedError(Reason.BAD_PRICE)
            if cmd.stop_price % m.tick_units:
                raise RejectedError(Reason.BAD_TICK)
            if cmd.time_in_force == "FOK" or cmd.post_only:
                raise RejectedError(Reason.INVALID)
            if cmd.type == "market" and cmd.side == "buy" and cmd.quote_amount is None:
                raise RejectedError(Reason.INVALID)
        if cmd.expires_at is not None:
            if cmd.time_in_force != "GTC" or (cmd.type == "market" and cmd.stop is None):
                raise RejectedError(Reason.INVALID)
            if cmd.expires_at <= 0:
                raise RejectedError(Reason.BAD_EXPIRY)
        if cmd.client_order_id is not None and not 1 <= len(cmd.client_order_id) <= 64:
            raise RejectedError(Reason.INVALID)
        # 3. sizes.
        if cmd.amount is not None:
            if cmd.amount <= 0:
                raise RejectedError(Reason.BAD_AMOUNT)
            if cmd.amount % m.step_units:
                raise RejectedError(Reason.BAD_STEP)
            if cmd.amount < m.min_amount_units:
                raise RejectedError(Reason.BELOW_MIN_AMOUNT)
        if cmd.quote_amount is not None:
            if cmd.quote_amount <= 0:
                raise RejectedError(Reason.BAD_AMOUNT)
            if cmd.quote_amount < m.min_notional_units:
                raise RejectedError(Reason.BELOW_MIN_NOTIONAL)
        if cmd.type == "limit":
            assert cmd.price is not None and cmd.amount is not None
            if self._quote_value(m, cmd.price, cmd.amount) < m.min_notional_units:
                raise RejectedError(Reason.BELOW_MIN_NOTIONAL)
        if shape_only:
            return m
        # 4. client order id unique among the user's open orders, pending stops included.
        if cmd.client_order_id is not None and any(
            o.user == cmd.user and o.client_order_id == cmd.client_order_id
            for o in self.resting + self.stops
        ):
            raise RejectedError(Reason.DUPLICATE_CLIENT_ORDER_ID)
        # 5. an expiry after the batch's time.
        if cmd.expires_at is not None and cmd.expires_at <= cmd.ts:
            raise RejectedError(Reason.BAD_EXPIRY)
        # 6. the open-order limit.
        if self.max_open_orders is not None and self._open_count(cmd.user) >= self.max_open_orders:
            raise RejectedError(Reason.TOO_MANY_ORDERS)
        if cmd.stop is not None:
            # 7. a stop's funds: all it may pay, frozen now; 8. not triggered already.
            hold = self._stop_hold(m, cmd.side, cmd.type, cmd.price, cmd.amount, cmd.quote_amount)
            asset = m.quote if cmd.side == "buy" else m.base
            if self.balance(cmd.user, asset)[0] < hold:
                raise RejectedError(Reason.INSUFFICIENT_FUNDS)
            assert cmd.stop_price is not None
            if self._triggered(cmd.market, cmd.stop, cmd.side, cmd.stop_price):
                raise RejectedError(Reason.WOULD_TRIGGER)
            return m
        # 7. funds.
        quote_avail = self.balance(cmd.user, m.quote)[0]
        base_avail = self.balance(cmd.user, m.base)[0]
        if cmd.side == "sell":
            assert cmd.amount is not None
            needed_ok = base_avail >= cmd.amount
        elif cmd.type == "limit":
            assert cmd.price is not None and cmd.amount is not None
            needed_ok = quote_avail >= self._quote_value(m, cmd.price, cmd.amount)
        elif cmd.quote_amount is not None:
            needed_ok = quote_avail >= cmd.quote_amount
        else:
            needed_ok = quote_avail > 0
        if not needed_ok:
            raise RejectedError(Reason.INSUFFICIENT_FUNDS)
        opposite: Side = "sell" if cmd.side == "buy" else "buy"
        # 8. post-only.
        if cmd.post_only:
            assert cmd.price is not None
            best = self.side_orders(m.name, opposite)
            if best and self._crosses(cmd.side, cmd.price, best[0]):
                raise RejectedError(Reason.WOULD_TAKE)
        # 9. fill-or-kill.
        if cmd.time_in_force == "FOK":
            assert cmd.amount is not None
            fillable = 0
            for maker in self.side_orders(m.name, opposite):
                if not self._crosses(cmd.side, cmd.price, maker):
                    break
                if maker.user == cmd.user:
                    if cmd.stp == "cancel_maker":
                        continue
                    break
                fillable += maker.remaining
            if fillable < cmd.amount:
                raise RejectedError(Reason.FOK_NOT_FILLED)
        return m

    @staticmethod
    def _crosses(side: Side, limit: int | None, maker: RefOrder) -> bool:
        """Whether a maker's price crosses a taker's limit (None: a market order)."""
        if limit is None:
            return True
        assert maker.price is not None
        return maker.price <= limit if side == "buy" else maker.price >= limit

    # ------------------------------------------------------------ orders: matching

    def _place_order(self, cmd: PlaceOrder, ctx: _Ctx) -> None:
        m = self._check_order(cmd)
        taker = RefOrder(
            order_id=self.next_order_id,
            user=cmd.user,
            market=cmd.market,
            side=cmd.side,
            order_type=cmd.type,
            price=cmd.price,
            amount=cmd.amount,
            quote_amount=cmd.quote_amount,
            time_in_force=cmd.time_in_force,
            post_only=cmd.post_only,
            client_order_id=cmd.client_order_id,
            stp=cmd.stp,
            remaining=cmd.amount or 0,
            stop=cmd.stop,
            stop_price=cmd.stop_price,
            expires_at=cmd.expires_at,
        )
        self.next_order_id += 1
        self.orders[taker.order_id] = taker
        ctx.events.append(self._accepted(taker, cmd.ts))
        if cmd.stop is not None:
            taker.hold = self._stop_hold(
                m, taker.side, taker.order_type, taker.price, taker.amount, taker.quote_amount
            )
            self._change(
                ctx, taker.user, self._hold_asset(taker), -taker.hold, taker.hold,
                "order_freeze", str(taker.order_id),
            )  # fmt: skip
            self.stops.append(taker)
            return
        trades = self.next_trade_id
        self._take(ctx, m, taker, cmd.ts)
        if self.next_trade_id != trades:
            self._run_triggers(ctx, m, cmd.ts)

    def _accepted(self, o: RefOrder, ts: int) -> OrderAccepted:
        return OrderAccepted(
            o.order_id, o.user, o.market, o.side, o.order_type, o.price, o.amount,
            o.quote_amount, o.time_in_force, o.post_only, o.client_order_id, ts, o.stop,
            o.stop_price, o.expires_at, o.list_id or None,
        )  # fmt: skip

    def _take(self, ctx: _Ctx, m: RefMarket, taker: RefOrder, ts: int) -> None:
        """Match an accepted order as the taker, then rest it or end it."""
        scale = self._scale(m)
        opposite: Side = "sell" if taker.side == "buy" else "buy"
        by_quote = taker.order_type == "market" and taker.quote_amount is not None
        # A market buy spends from a budget: its quote_amount, or all its available quote.
        budget: int | None = None
        if taker.order_type == "market" and taker.side == "buy":
            budget = taker.quote_amount if by_quote else self.balance(taker.user, m.quote)[0]

        end: str  # why matching stopped
        # docs/engine.md's tests before each fill, in its order: nothing left to fill, no
        # maker that crosses, a budget that cannot buy one step at the maker's price, then
        # self-trade prevention, and only then a fill.
        while True:
            if not by_quote and taker.remaining == 0:
                end = "done"
                break
            makers = self.side_orders(m.name, opposite)
            if not makers or not self._crosses(taker.side, taker.price, makers[0]):
                end = "book"
                break
            maker = makers[0]
            assert maker.price is not None
            qty = maker.remaining if by_quote else min(taker.remaining, maker.remaining)
            if budget is not None:
                affordable = (budget * scale // maker.price) // m.step_units * m.step_units
                qty = min(qty, affordable)
                if qty == 0:
                    end = "budget"
                    break
            # Only now, with a maker the taker could trade with, self-trade prevention.
            if maker.user == taker.user:
                if taker.stp in ("cancel_maker", "cancel_both"):
                    self._cancel_resting(ctx, maker, Reason.SELF_TRADE)
                if taker.stp in ("cancel_taker", "cancel_both"):
                    end = "stp"
                    break
                continue
            quote = maker.price * qty // scale
            if budget is not None:
                budget -= quote
            self._fill(ctx, m, ts, taker, maker, qty, quote)

        # Resting, or the taker's end.
        reason: str | None = None
        if end == "done":
            taker.status = "filled"
        elif end == "stp":
            taker.status, reason = "cancelled", Reason.SELF_TRADE
        elif end == "budget":
            if by_quote and taker.filled > 0:
                taker.status = "filled"
            else:
                taker.status, reason = "cancelled", Reason.INSUFFICIENT_FUNDS
        elif by_quote:  # the book ran out of asks
            assert budget is not None
            if budget > 0:
                taker.status, reason = "cancelled", Reason.NO_LIQUIDITY
            else:
                taker.status = "filled"
        elif taker.order_type == "market":
            taker.status, reason = "cancelled", Reason.NO_LIQUIDITY
        elif taker.time_in_force == "GTC":
            taker.status = "partially_filled" if taker.filled else "open"
            self._rest(taker)
            hold = self._hold(taker)
            self._change(
                ctx,
                taker.user,
                self._hold_asset(taker),
                -hold,
                hold,
                "order_freeze",
                str(taker.order_id),
            )
        elif taker.time_in_force == "IOC":
            taker.status, reason = "cancelled", Reason.IOC_EXPIRED
        else:  # pragma: no cover - FOK was checked to fill completely
            raise AssertionError("FOK order left a remainder")
        if taker.status != "open":  # an order resting untraded: OrderAccepted says it all
            ctx.events.append(self._order_updated(taker, reason))

    # ------------------------------------------------------------ stop orders

    def _open_count(self, user: str) -> int:
        return sum(1 for o in self.resting + self.stops if o.user == user)

    def _stop_hold(
        self,
        m: RefMarket,
        side: Side,
        order_type: OrderType,
        price: int | None,
        amount: int | None,
        quote_amount: int | None,
    ) -> int:
        if side == "sell":
            assert amount is not None
            return amount
        if order_type == "limit":
            assert price is not None and amount is not None
            return self._quote_value(m, price, amount)
        assert quote_amount is not None
        return quote_amount

    def _triggered(self, market: str, stop: StopKind, side: Side, stop_price: int) -> bool:
        """Whether the last trade price reaches a stop: a stop-loss buy or take-profit sell
        when the price is at or above it, a stop-loss sell or take-profit buy at or below."""
        last = self.last_price.get(market)
        if last is None:
            return False
        up = (stop == "stop_loss" and side == "buy") or (stop == "take_profit" and side == "sell")
        return last >= stop_price if up else last <= stop_price

    def _run_triggers(self, ctx: _Ctx, m: RefMarket, ts: int) -> None:
        while True:
            last = self.last_price[m.name]
            reached = [
                o
                for o in self.stops
                if o.market == m.name and self._triggered(m.name, o.stop, o.side, o.stop_price)  # type: ignore[arg-type]
            ]
            if not reached:
                return

            def order(o: RefOrder) -> tuple[int, int, int]:
                assert o.stop_price is not None
                up = (o.stop == "stop_loss") == (o.side == "buy")
                if up:  # rising: the lowest first
                    return (0, o.stop_price, o.order_id)
                return (1, -o.stop_price, o.order_id)

            for o in sorted(reached, key=order):
                if o in self.stops:  # else cancelled as its list's other order
                    self._trigger(ctx, m, o, last, ts)

    def _trigger(self, ctx: _Ctx, m: RefMarket, o: RefOrder, last: int, ts: int) -> None:
        self.stops.remove(o)
        assert o.stop_price is not None
        ctx.events.append(
            OrderTriggered(o.order_id, o.user, o.market, o.side, o.stop_price, last, ts)
        )
        if o.list_id:
            list_id, o.list_id = o.list_id, 0
            self._end_list(ctx, list_id, Reason.TRIGGERED)
        if o.hold:
            self._change(
                ctx, o.user, self._hold_asset(o), o.hold, -o.hold, "order_release",
                str(o.order_id),
            )  # fmt: skip
            o.hold = 0
        o.remaining = o.amount or 0
        self._take(ctx, m, o, ts)

    def _fill(
        self,
        ctx: _Ctx,
        m: RefMarket,
        ts: int,
        taker: RefOrder,
        maker: RefOrder,
        qty: int,
        quote: int,
    ) -> None:
        assert maker.price is not None
        trade_id = self.next_trade_id
        self.next_trade_id += 1
        ref = str(trade_id)
        buyer_rate, seller_rate = (
            (m.taker_rate, m.maker_rate) if taker.side == "buy" else (m.maker_rate, m.taker_rate)
        )
        buyer_fee = fee_for(qty, buyer_rate)  # in base
        seller_fee = fee_for(quote, seller_rate)  # in quote
        taker_fee, maker_fee = (
            (buyer_fee, seller_fee) if taker.side == "buy" else (seller_fee, buyer_fee)
        )
        ctx.events.append(
            Trade(
                trade_id,
                m.name,
                maker.price,
                qty,
                quote,
                taker.side,
                maker.order_id,
                taker.order_id,
                maker.user,
                taker.user,
                maker_fee,
                taker_fee,
                ts,
            )
        )
        # The taker pays from available, the maker from its frozen hold.
        if taker.side == "buy":
            self._change(ctx, taker.user, m.quote, -quote, 0, "trade", ref)
            self._change(ctx, taker.user, m.base, qty - buyer_fee, 0, "trade", ref)
            self._change(ctx, maker.user, m.base, 0, -qty, "trade", ref)
            self._change(ctx, maker.user, m.quote, quote - seller_fee, 0, "trade", ref)
        else:
            self._change(ctx, taker.user, m.base, -qty, 0, "trade", ref)
            self._change(ctx, taker.user, m.quote, quote - seller_fee, 0, "trade", ref)
            self._change(ctx, maker.user, m.quote, 0, -quote, "trade", ref)
            self._change(ctx, maker.user, m.base, qty - buyer_fee, 0, "trade", ref)
        if buyer_fee:
            self._pay_fee(ctx, m.base, buyer_fee, "trade_fee", ref)
        if seller_fee:
            self._pay_fee(ctx, m.quote, seller_fee, "trade_fee", ref)
        if taker.amount is not None:  # a market buy by quote has no base amount to count down
            taker.remaining -= qty
        maker.remaining -= qty
        for o, fee in ((taker, taker_fee), (maker, maker_fee)):
            o.filled += qty
            o.filled_quote += quote
            o.fee += fee
        if maker.remaining == 0:
            maker.status = "filled"
            self.resting.remove(maker)
        else:
            maker.status = "partially_filled"
        self.last_price[m.name] = maker.price
        ctx.events.append(self._order_updated(maker, None))
        if maker.list_id:
            list_id, maker.list_id = maker.list_id, 0
            self._end_list(ctx, list_id, Reason.TRADED)

    # ------------------------------------------------------------ cancels

    def _cancel_order(self, cmd: CancelOrder, ctx: _Ctx) -> None:
        if not valid_user(cmd.user):
            raise RejectedError(Reason.INVALID)
        if (cmd.order_id is None) == (cmd.client_order_id is None):
            raise RejectedError(Reason.INVALID)
        o = self._find(cmd.user, cmd.order_id, cmd.client_order_id)
        if o in self.stops:
            self._cancel_stop(ctx, o, Reason.CANCELLED_BY_USER)
        else:
            self._cancel_resting(ctx, o, Reason.CANCELLED_BY_USER)

    def _find(self, user: str, order_id: int | None, client_order_id: str | None) -> RefOrder:
        """A user's open order (resting or a pending stop) by id or client order id."""
        open_orders = self.resting + self.stops
        if order_id is not None:
            found = [o for o in open_orders if o.order_id == order_id]
            if not found:
                raise RejectedError(Reason.ORDER_NOT_FOUND)
            if found[0].user != user:
                raise RejectedError(Reason.NOT_YOUR_ORDER)
            return found[0]
        mine = [o for o in open_orders if o.user == user and o.client_order_id == client_order_id]
        if not mine:
            raise RejectedError(Reason.ORDER_NOT_FOUND)
        (o,) = mine
        return o

    def _cancel_all(self, cmd: CancelAll, ctx: _Ctx) -> None:
        if not valid_user(cmd.user):
            raise RejectedError(Reason.INVALID)
        if cmd.market is not None and cmd.market not in self.markets:
            raise RejectedError(Reason.UNKNOWN_MARKET)
        mine = sorted(
            (
                o
                for o in self.resting + self.stops
                if o.user == cmd.user and (cmd.market is None or o.market == cmd.market)
            ),
            key=lambda o: o.order_id,
        )
        for o in mine:
            if o in self.stops:
                self._cancel_stop(ctx, o, Reason.CANCELLED_BY_USER)
            elif o in self.resting:  # else cancelled with the other order of its list
                self._cancel_resting(ctx, o, Reason.CANCELLED_BY_USER)

    # ------------------------------------------------------------ OCO, amend, expiry

    def _place_oco(self, cmd: PlaceOco, ctx: _Ctx) -> None:
        m = self.markets.get(cmd.market)
        if m is None:
            raise RejectedError(Reason.UNKNOWN_MARKET)
        limit = PlaceOrder(
            id="", user=cmd.user, market=cmd.market, side=cmd.side, type="limit",
            price=cmd.price, amount=cmd.amount, post_only=True,
        )  # fmt: skip
        stop_type: OrderType = "market" if cmd.stop_limit_price is None else "limit"
        stop = PlaceOrder(
            id="", user=cmd.user, market=cmd.market, side=cmd.side, type=stop_type,
            price=cmd.stop_limit_price, amount=cmd.amount, stop="stop_loss",
            stop_price=cmd.stop_price,
        )  # fmt: skip
        # The rules that need no state, for each order in turn; a stop limit price that
        # breaks one is the stop order's.
        self._check_shape(limit)
        if stop_type == "market" and cmd.side == "buy":
            raise RejectedError(Reason.INVALID)
        self._check_shape(stop)
        if cmd.stop_price >= cmd.price if cmd.side == "sell" else cmd.stop_price <= cmd.price:
            raise RejectedError(Reason.BAD_PRICE)
        if self.max_open_orders is not None and (
            self._open_count(cmd.user) + 2 > self.max_open_orders
        ):
            raise RejectedError(Reason.TOO_MANY_ORDERS)
        limit_hold = self._stop_hold(m, cmd.side, "limit", cmd.price, cmd.amount, None)
        stop_hold = (
            self._stop_hold(m, cmd.side, "limit", cmd.stop_limit_price, cmd.amount, None)
            if cmd.stop_limit_price is not None
            else cmd.amount
        )
        extra = max(0, stop_hold - limit_hold)
        asset = m.quote if cmd.side == "buy" else m.base
        if self.balance(cmd.user, asset)[0] < limit_hold + extra:
            raise RejectedError(Reason.INSUFFICIENT_FUNDS)
        opposite: Side = "sell" if cmd.side == "buy" else "buy"
        best = self.side_orders(m.name, opposite)
        if best and self._crosses(cmd.side, cmd.price, best[0]):
            raise RejectedError(Reason.WOULD_TAKE)
        if self._triggered(m.name, "stop_loss", cmd.side, cmd.stop_price):
            raise RejectedError(Reason.WOULD_TRIGGER)
        list_id = self.next_list_id
        self.next_list_id += 1
        limit_order = RefOrder(
            order_id=self.next_order_id, user=cmd.user, market=m.name, side=cmd.side,
            order_type="limit", price=cmd.price, amount=cmd.amount, quote_amount=None,
            time_in_force="GTC", post_only=True, client_order_id=None, stp=cmd.stp,
            remaining=cmd.amount, list_id=list_id,
        )  # fmt: skip
        stop_order = RefOrder(
            order_id=self.next_order_id + 1, user=cmd.user, market=m.name, side=cmd.side,
            order_type=stop_type, price=cmd.stop_limit_price, amount=cmd.amount,
            quote_amount=None, time_in_force="GTC", post_only=False, client_order_id=None,
            stp=cmd.stp, remaining=cmd.amount, stop="stop_loss", stop_price=cmd.stop_price,
            list_id=list_id,
        )  # fmt: skip
        self.next_order_id += 2
        self.orders[limit_order.order_id] = limit_order
        self.orders[stop_order.order_id] = stop_order
        ctx.events.append(self._accepted(limit_order, cmd.ts))
        self._change(
            ctx, cmd.user, asset, -limit_hold, limit_hold, "order_freeze",
            str(limit_order.order_id),
        )  # fmt: skip
        self._rest(limit_order)
        ctx.events.append(self._accepted(stop_order, cmd.ts))
        if extra:
            self._change(
                ctx, cmd.user, asset, -extra, extra, "order_freeze", str(stop_order.order_id)
            )
        stop_order.hold = extra
        self.stops.append(stop_order)
        self.lists[list_id] = (
            cmd.user, m.name, cmd.side, limit_order.order_id, stop_order.order_id,
        )  # fmt: skip
        ctx.events.append(
            OrderListChanged(
                list_id, cmd.user, m.name, cmd.side, "open", limit_order.order_id,
                stop_order.order_id, None,
            )
        )  # fmt: skip

    def _check_shape(self, cmd: PlaceOrder) -> None:
        """Checks 1 to 3 of an order (market, user, shape, sizes)."""
        saved = self.stops, self.resting, self.max_open_orders
        # The later checks are not wanted here: run the checks up to the sizes only.
        try:
            self.stops, self.resting, self.max_open_orders = [], [], None
            self._check_order(cmd, shape_only=True)
        finally:
            self.stops, self.resting, self.max_open_orders = saved

    def _amend(self, cmd: AmendOrder, ctx: _Ctx) -> None:
        if not valid_user(cmd.user):
            raise RejectedError(Reason.INVALID)
        if (cmd.order_id is None) == (cmd.client_order_id is None):
            raise RejectedError(Reason.INVALID)
        if cmd.price is None and cmd.amount is None:
            raise RejectedError(Reason.INVALID)
        o = self._find(cmd.user, cmd.order_id, cmd.client_order_id)
        if o in self.stops or o.list_id:
            raise RejectedError(Reason.NOT_AMENDABLE)
        assert o.price is not None and o.amount is not None
        price = o.price if cmd.price is None else cmd.price
        amount = o.amount if cmd.amount is None else cmd.amount
        m = self._check_shape_of(o, price, amount)
        if amount <= o.filled:
            raise RejectedError(Reason.BAD_AMOUNT)
        old_hold = self._hold(o)
        remaining = amount - o.filled
        hold = self._quote_value(m, price, remaining) if o.side == "buy" else remaining
        delta = hold - old_hold
        if delta > self.balance(o.user, self._hold_asset(o))[0]:
            raise RejectedError(Reason.INSUFFICIENT_FUNDS)
        if price != o.price:
            opposite: Side = "sell" if o.side == "buy" else "buy"
            best = self.side_orders(m.name, opposite)
            if best and self._crosses(o.side, price, best[0]):
                raise RejectedError(Reason.WOULD_TAKE)
        keep = price == o.price and amount <= o.amount
        o.price, o.amount, o.remaining = price, amount, remaining
        if not keep:  # to the back of the queue
            self.resting.remove(o)
            self._rest(o)
        if delta:
            reason = "order_freeze" if delta > 0 else "order_release"
            self._change(ctx, o.user, self._hold_asset(o), -delta, delta, reason, str(o.order_id))
        ctx.events.append(
            OrderAmended(o.order_id, o.user, o.market, price, amount, o.filled, hold, keep)
        )

    def _check_shape_of(self, o: RefOrder, price: int, amount: int) -> RefMarket:
        probe = PlaceOrder(
            id="", user=o.user, market=o.market, side=o.side, type="limit", price=price,
            amount=amount,
        )  # fmt: skip
        self._check_shape(probe)
        return self.markets[o.market]

    def _expire(self, cmd: ExpireOrders, ctx: _Ctx) -> None:
        due = sorted(
            (
                o
                for o in self.resting + self.stops
                if o.expires_at is not None and o.expires_at <= cmd.ts
            ),
            key=lambda o: (o.expires_at, o.order_id),
        )
        for o in due:
            if o in self.stops:
                self._cancel_stop(ctx, o, Reason.EXPIRED)
            else:
                self._cancel_resting(ctx, o, Reason.EXPIRED)
