"""The messages every deployable shares: the one schema of commands and events.

Commands flow into the matcher (from functions, wallet jobs and admin tools); events flow out
of it (to Postgres, Redis, the ``events`` topic and the ws service). All amounts are integers of
the asset's unit and all prices integers of quote units per whole base unit (see
``shared.money``); market and fee settings travel as decimal strings because they are rare and
read by people. Structs are ``gc=False``: they hold only scalars, so the garbage collector need
not track millions of them.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
SelfTrade = Literal["cancel_taker", "cancel_maker", "cancel_both"]
MarketStatus = Literal["open", "halted"]
OrderStatus = Literal["open", "partially_filled", "filled", "cancelled"]
StopKind = Literal["stop_loss", "take_profit"]
"""A stop order's trigger (docs/engine.md, "Stop orders"): a stop-loss sell and a take-profit
buy trigger when the last trade price falls to the stop price, a stop-loss buy and a
take-profit sell when it rises to it."""
ListStatus = Literal["open", "done"]

FEE_ACCOUNT: Final = "@fees"
ASSET_RE: Final = re.compile(r"[A-Z0-9]{2,12}")
"""A valid asset name (use ``fullmatch``): what the engine and the API both accept."""
MAX_PRECISION: Final = 18
"""The most decimals an asset may have."""
"""The account every fee is paid into; no user id can take this form."""


class Reason:
    """Reason codes of rejections and cancellations; stable strings clients may rely on."""

    INVALID = "invalid_command"
    UNKNOWN_ASSET = "unknown_asset"
    DUPLICATE_ASSET = "duplicate_asset"
    UNKNOWN_MARKET = "unknown_market"
    DUPLICATE_MARKET = "duplicate_market"
    MARKET_HALTED = "market_halted"
    BAD_PRICE = "bad_price"
    BAD_TICK = "bad_tick"
    BAD_AMOUNT = "bad_amount"
    BAD_STEP = "bad_step"
    BELOW_MIN_AMOUNT = "below_min_amount"
    BELOW_MIN_NOTIONAL = "below_min_notional"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    ORDER_NOT_FOUND = "order_not_found"
    NOT_YOUR_ORDER = "not_your_order"
    WOULD_TAKE = "would_take"
    FOK_NOT_FILLED = "fok_not_filled"
    DUPLICATE_DEPOSIT = "duplicate_deposit"
    DUPLICATE_WITHDRAWAL = "duplicate_withdrawal"
    UNKNOWN_WITHDRAWAL = "unknown_withdrawal"
    OUT_OF_ORDER = "out_of_order"
    """A user's command that arrived after a later command of the same user had been applied
    (it was missing for longer than the matcher holds a gap): refused, nothing done."""
    # Why an accepted order ended without filling completely.
    CANCELLED_BY_USER = "cancelled_by_user"
    IOC_EXPIRED = "ioc_expired"
    NO_LIQUIDITY = "no_liquidity"
    SELF_TRADE = "self_trade_prevented"
    # Stop orders, lists, amends, expiry and the open-order limit.
    WOULD_TRIGGER = "would_trigger"
    """A stop order whose trigger the last trade price has already reached."""
    TOO_MANY_ORDERS = "too_many_orders"
    """The user has as many open orders (resting and pending stops) as the limit allows."""
    BAD_EXPIRY = "bad_expiry"
    """An ``expires_at`` not after the matcher's time of the batch."""
    NOT_AMENDABLE = "not_amendable"
    """Only a resting limit order outside a list can be amended."""
    TRADED = "traded"
    """Why an OCO list ended: its limit order traded."""
    TRIGGERED = "triggered"
    """Why an OCO list ended: its stop order triggered."""
    EXPIRED = "expired"
    """A good-till-date order cancelled by the first batch at or after its expiry."""
    OCO = "oco"
    """Cancelled because the other order of its one-cancels-the-other list traded, triggered
    or was cancelled."""


# ---------------------------------------------------------------- commands


class UserSeq(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Where a command stands among its user's commands (docs/decisions/0006): ``n`` counts
    the user's commands from 1, one Redis increment in the function that accepted it;
    ``epoch`` is when that counter began (Redis's clock, ms), so a counter that Redis lost
    and began again is told apart from a late command. On the wire ``[epoch, n]``."""

    epoch: int
    n: int


class Command(msgspec.Struct, tag_field="command", kw_only=True, gc=False):
    """Every command carries a unique id (idempotency) and the time the matcher stamped on
    it when it formed the batch (milliseconds since the epoch; part of the oplog so replay is
    deterministic). A user's own commands (orders, cancels, withdrawals) also carry their
    ``user_seq``: the matcher applies each user's commands in that order."""

    id: str
    ts: int = 0
    user_seq: UserSeq | None = None


class CreateAsset(Command, tag="create_asset", kw_only=True, gc=False):
    asset: str
    precision: int


class CreateMarket(Command, tag="create_market", kw_only=True, gc=False):
    market: str
    base: str
    quote: str
    tick: str
    step: str
    min_amount: str
    min_notional: str
    maker_fee: str
    taker_fee: str
    status: MarketStatus = "open"


class UpdateMarket(Command, tag="update_market", kw_only=True, gc=False):
    market: str
    maker_fee: str | None = None
    taker_fee: str | None = None
    status: MarketStatus | None = None


class Deposit(Command, tag="deposit", kw_only=True, gc=False):
    user: str
    asset: str
    amount: int
    ref: str
    """External id (chain id, tx hash, log index): a second deposit with it is refused."""


class RequestWithdrawal(Command, tag="request_withdrawal", kw_only=True, gc=False):
    user: str
    asset: str
    amount: int
    fee: int
    withdrawal_id: str


class SettleWithdrawal(Command, tag="settle_withdrawal", kw_only=True, gc=False):
    withdrawal_id: str


class RefundWithdrawal(Command, tag="refund_withdrawal", kw_only=True, gc=False):
    withdrawal_id: str


class PlaceOrder(Command, tag="place_order", kw_only=True, gc=False):
    user: str
    market: str
    side: Side
    type: OrderType = "limit"
    price: int | None = None
    """Limit price; required for limit orders, refused for market orders."""
    amount: int | None = None
    """Base amount; required except for a market buy given by ``quote_amount``."""
    quote_amount: int | None = None
    """Quote to spend; only for market buys, instead of ``amount``."""
    time_in_force: TimeInForce = "GTC"
    post_only: bool = False
    client_order_id: str | None = None
    stp: SelfTrade = "cancel_taker"
    stop: StopKind | None = None
    """A stop order: pending, out of the book, until the last trade price reaches
    ``stop_price`` (docs/engine.md, "Stop orders")."""
    stop_price: int | None = None
    expires_at: int | None = None
    """Good till date: cancelled by the first batch whose time is at or after it (ms)."""


class PlaceOco(Command, tag="place_oco", kw_only=True, gc=False):
    """One-cancels-the-other: a post-only limit order and a stop order of the same side and
    amount, held once (docs/engine.md, "OCO lists")."""

    user: str
    market: str
    side: Side
    amount: int
    price: int
    """The limit order's price."""
    stop_price: int
    stop_limit_price: int | None = None
    """The stop order's limit price once triggered; None: a market order (sells only)."""
    stp: SelfTrade = "cancel_taker"


class AmendOrder(Command, tag="amend_order", kw_only=True, gc=False):
    """Change a resting limit order's price and/or amount in one step (docs/engine.md,
    "Amend"). ``amount`` is the new total amount, filled part included."""

    user: str
    order_id: int | None = None
    client_order_id: str | None = None
    price: int | None = None
    amount: int | None = None


class ExpireOrders(Command, tag="expire_orders", kw_only=True, gc=False):
    """Cancel every good-till-date order whose expiry is at or before ``ts``; the matcher
    puts one at the head of a batch when an expiry is due."""


class CancelOrder(Command, tag="cancel_order", kw_only=True, gc=False):
    user: str
    order_id: int | None = None
    client_order_id: str | None = None


class CancelAll(Command, tag="cancel_all", kw_only=True, gc=False):
    user: str
    market: str | None = None


AnyCommand = (
    CreateAsset
    | CreateMarket
    | UpdateMarket
    | Deposit
    | RequestWithdrawal
    | SettleWithdrawal
    | RefundWithdrawal
    | PlaceOrder
    | CancelOrder
    | CancelAll
    | PlaceOco
    | AmendOrder
    | ExpireOrders
)


# ---------------------------------------------------------------- events


class Event(msgspec.Struct, tag_field="event", gc=False):
    pass


class AssetCreated(Event, tag="asset_created", gc=False):
    asset: str
    precision: int


class MarketChanged(Event, tag="market_changed", gc=False):
    """A market was created or its fees or status changed; carries the whole definition."""

    market: str
    base: str
    quote: str
    tick: str
    step: str
    min_amount: str
    min_notional: str
    maker_fee: str
    taker_fee: str
    status: MarketStatus


class BalanceChanged(Event, tag="balance", gc=False):
    """One account's balance after a change, with the change and why it happened.
    ``ref`` names what caused it: an order id, trade id, deposit ref or withdrawal id."""

    user: str
    asset: str
    available: int
    frozen: int
    delta_available: int
    delta_frozen: int
    reason: str
    ref: str


class OrderAccepted(Event, tag="order_accepted", gc=False):
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
    ts: int
    stop: StopKind | None = None
    stop_price: int | None = None
    expires_at: int | None = None
    list_id: int | None = None
    """The OCO list the order belongs to."""


class OrderRejected(Event, tag="order_rejected", gc=False):
    user: str
    market: str
    client_order_id: str | None
    reason: str


class OrderUpdated(Event, tag="order_updated", gc=False):
    """An order's state after fills or its end. ``filled`` in base units, ``filled_quote``
    in quote units, ``fee`` paid so far in the asset the order receives, ``frozen`` what it
    still holds."""

    order_id: int
    user: str
    market: str
    status: OrderStatus
    filled: int
    filled_quote: int
    fee: int
    frozen: int
    reason: str | None


class OrderTriggered(Event, tag="order_triggered", gc=False):
    """A pending stop order whose trigger the last trade price reached: from here it is an
    ordinary order (it may trade, then rest ``open`` or end as its ``OrderUpdated`` says)."""

    order_id: int
    user: str
    market: str
    side: Side
    stop_price: int
    last_price: int
    ts: int


class OrderAmended(Event, tag="order_amended", gc=False):
    """A resting order's new price and amount; ``kept_priority`` when it kept its place in
    the queue (same price, amount not increased)."""

    order_id: int
    user: str
    market: str
    price: int
    amount: int
    filled: int
    frozen: int
    kept_priority: bool


class OrderListChanged(Event, tag="order_list", gc=False):
    """An OCO list: ``open`` when placed, ``done`` when one of its orders traded, triggered
    or was cancelled (``reason``: ``traded``, ``triggered`` or the cancel's reason)."""

    list_id: int
    user: str
    market: str
    side: Side
    status: ListStatus
    limit_order_id: int
    stop_order_id: int
    reason: str | None


class Trade(Event, tag="trade", gc=False):
    """A fill at the maker's price. The buyer's fee is in base, the seller's in quote."""

    trade_id: int
    market: str
    price: int
    amount: int
    quote: int
    taker_side: Side
    maker_order_id: int
    taker_order_id: int
    maker_user: str
    taker_user: str
    maker_fee: int
    taker_fee: int
    ts: int


class DepositCredited(Event, tag="deposit_credited", gc=False):
    user: str
    asset: str
    amount: int
    ref: str


class WithdrawalChanged(Event, tag="withdrawal", gc=False):
    withdrawal_id: str
    user: str
    asset: str
    amount: int
    fee: int
    state: Literal["held", "settled", "refunded"]


AnyEvent = (
    AssetCreated
    | MarketChanged
    | BalanceChanged
    | OrderAccepted
    | OrderRejected
    | OrderUpdated
    | OrderTriggered
    | OrderAmended
    | OrderListChanged
    | Trade
    | DepositCredited
    | WithdrawalChanged
)


class Applied(msgspec.Struct, gc=False):
    """The engine's answer to one command: its sequence number, whether it applied, the
    reason when it did not, and the events it produced (none when rejected, but an
    ``OrderRejected`` for an order, so its owner hears of it)."""

    seq: int
    command_id: str
    ok: bool
    reason: str | None
    events: list[AnyEvent]


command_encoder = msgspec.json.Encoder()
command_decoder = msgspec.json.Decoder(AnyCommand)
event_decoder = msgspec.json.Decoder(AnyEvent)
applied_decoder = msgspec.json.Decoder(Applied)


def encode(obj: object) -> bytes:
    """JSON bytes of any command, event or result."""
    return command_encoder.encode(obj)


def decode_command(data: bytes | str) -> AnyCommand:
    """A command from JSON; raises ``msgspec.ValidationError`` with a clear path on bad input."""
    cmd: AnyCommand = command_decoder.decode(data)
    return cmd
