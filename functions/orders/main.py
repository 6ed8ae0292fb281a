"""The orders function: place (stop and good-till-date orders included), OCO lists, amend,
cancel and cancel all, and the fate of a command.

Its routes, with their parameters, bodies and answers, are declared below with ``api.route``;
the OpenAPI document made from them (``GET /v1/openapi.json``, functions/docs/openapi.json) is
where to read them.

Every write needs a token or an API key with the ``trade`` scope (command status: ``trade`` or
``read``) and counts against a per-user and a per-IP limit (``TRADE_RATE_*``; 429 with
``Retry-After``).

An order is checked against its market (Redis ``md:markets``) before anything is published,
with the rules the engine applies (shared/order_rules.py): decimal strings only, the market
exists and is open, price on the tick, amount on the step and at least the minimum, notional
at least the minimum, and fields that fit together (docs/engine.md). The answer names the
rule: ``unknown_market``, ``market_halted`` (409), ``bad_price``, ``bad_tick``, ``bad_amount``,
``bad_step``, ``below_min_amount``, ``below_min_notional``, ``invalid_order`` (400). Then the
command goes to Pub/Sub with the user as ordering key, and the function waits up to
``API_REPLY_WAIT_S`` (2 s) for the matcher's verdict. The engine's refusals:
``insufficient_funds``, ``would_take``, ``fok_not_filled``, ``would_trigger``,
``too_many_orders`` (422), ``duplicate_client_order_id``, ``not_amendable`` (409),
``bad_expiry`` (400), ``order_not_found`` (404, also for someone else's order); see
``api.dispatch.rejection``.

``Idempotency-Key`` (POST and DELETE): a retry with the same key and the same request answers
with the first request's command, never publishing a second one (``api.dispatch``).

``GET /v1/commands/{id}`` reads the verdict in Redis (``cmd:{id}``, an hour) and then in the
oplog (Postgres: the command with its order's current state); a command published but not yet
applied is ``pending`` for its owner (``cmdowner:{id}``, set before publishing). Locally, where
the outbox keeps accepted commands until they are in the oplog (shared/outbox.py), one that is
in neither is ``lost``: it never will be applied (a retry with its ``Idempotency-Key`` sends
the request again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Final

import flask
import msgspec
import orjson

from api.auth import Principal, authenticate, count_hits
from api.dispatch import (
    COMMAND_ID_RE,
    IDEMPOTENCY_HEADER,
    Idempotency,
    Services,
    fingerprint,
    new_command_id,
    pending_command,
    rejection,
    services,
)
from api.http import (
    Api,
    ApiError,
    ApiRequest,
    Body,
    DecimalText,
    RateHit,
    bad_request,
    json_response,
    not_found,
)
from api.listings import (
    MARKET_RE,
    MarketSpec,
    amend_units,
    load_market,
    market_of,
    oco_command,
    order_command,
    queue_market,
)
from api.openapi import CLIENT_ORDER_ID, IDEMPOTENCY, PENDING, STR, ok, path_param, query
from api.placing import KnownMarkets, Placement, count_and_number
from api.redis_client import batch_of
from shared import logs
from shared.instance import per_instance
from shared.messages import (
    AmendOrder,
    AnyCommand,
    CancelAll,
    CancelOrder,
    OrderType,
    Reason,
    SelfTrade,
    Side,
    StopKind,
    TimeInForce,
)
from shared.money import format_units
from shared.order_rules import MAX_CLIENT_ORDER_ID

logs.setup()
log = logging.getLogger("api.orders")

api = Api("orders", authenticate=authenticate, scope="trade")

_MAX_ORDER_ID: Final = 10**18
STR_HEADER: Final = {"schema": {"type": "string"}}
Answer = Callable[[dict[str, Any]], flask.Response]


class PlaceOrder(Body):
    """A limit order gives price and amount; a market sell gives amount; a market buy gives
    exactly one of amount and quote_amount. post_only only with GTC; market orders are GTC or
    IOC (both: immediate or cancel). Prices on the market's tick, amounts on its step and at
    least min_amount, price x amount (or quote_amount) at least min_notional."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [
            {
                "market": "ETH-USDT",
                "side": "buy",
                "type": "limit",
                "price": "1995.5",
                "amount": "0.15",
                "client_order_id": "my-order-1",
            },
            {
                "market": "ETH-USDT",
                "side": "sell",
                "type": "limit",
                "price": "2100",
                "amount": "0.2",
                "time_in_force": "GTC",
                "post_only": True,
            },
            {"market": "ETH-USDT", "side": "buy", "type": "market", "quote_amount": "100"},
            {
                "market": "ETH-USDT",
                "side": "sell",
                "type": "limit",
                "price": "1890",
                "amount": "0.5",
                "stop": "stop_loss",
                "stop_price": "1900",
            },
            {
                "market": "ETH-USDT",
                "side": "buy",
                "type": "limit",
                "price": "1900",
                "amount": "0.1",
                "expires_at": 1893456000000,
            },
        ]
    }

    market: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    side: Side
    type: OrderType
    price: Annotated[DecimalText, msgspec.Meta(description="limit orders only")] | None = None
    amount: Annotated[DecimalText, msgspec.Meta(description="base amount")] | None = None
    quote_amount: Annotated[DecimalText, msgspec.Meta(description="market buys only")] | None = None
    time_in_force: TimeInForce = "GTC"
    post_only: bool = False
    client_order_id: (
        Annotated[
            str,  # an empty one is the engine's rule to refuse (invalid_order), not the decoder's
            msgspec.Meta(max_length=MAX_CLIENT_ORDER_ID, extra_json_schema={"minLength": 1}),
        ]
        | None
    ) = None
    stp: SelfTrade = "cancel_taker"
    stop: (
        Annotated[
            StopKind,
            msgspec.Meta(
                description="a stop order: waits out of the book until the last trade price "
                "reaches stop_price (docs/engine.md, Stop orders)"
            ),
        ]
        | None
    ) = None
    stop_price: Annotated[DecimalText, msgspec.Meta(description="stop orders only")] | None = None
    expires_at: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=2**53,
                description="good till date (ms since the epoch): GTC limit and "
                "stop orders; cancelled by the matcher's first batch at or after it",
            ),
        ]
        | None
    ) = None


class PlaceOcoList(Body):
    """One-cancels-the-other: a post-only limit order at price and a stop-loss at stop_price
    (a limit at stop_limit_price once triggered; without it, a sell's is a market order), both
    of side and amount, with their funds held once. A sell's stop_price is below its price, a
    buy's above it; a buy needs stop_limit_price."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [
            {
                "market": "ETH-USDT",
                "side": "sell",
                "amount": "1",
                "price": "2100",
                "stop_price": "1950",
            },
        ]
    }

    market: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    side: Side
    amount: DecimalText
    price: DecimalText
    stop_price: DecimalText
    stop_limit_price: DecimalText | None = None
    stp: SelfTrade = "cancel_taker"


class AmendOrderBody(Body):
    """A resting limit order's new price and/or new total amount (filled part included). The
    same price and an amount not larger keep its place in the queue; a new price or a larger
    amount send it to the back. A new price that would trade is refused (would_take)."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [
            {"market": "ETH-USDT", "amount": "0.1"},
            {"market": "ETH-USDT", "price": "1996"},
        ]
    }

    market: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    price: DecimalText | None = None
    amount: Annotated[DecimalText, msgspec.Meta(description="new total amount")] | None = None


def orders(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return api(request)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _trader(
    req: ApiRequest, svc: Services, also: Callable[[Any], None] | None = None
) -> tuple[Principal, list[Any]]:
    """The caller (with the trade scope: the route's, checked by api.http), counted against
    the per-user and per-IP limits (one Redis round trip, with the caller's session check
    for the routes declared ``session_in_limits`` and the reads ``also`` queues: their
    results)."""
    principal = authenticate(req, svc.auth)
    return principal, count_hits(req, svc.auth, _trade_hits(req, svc, principal), also)


def _trade_hits(req: ApiRequest, svc: Services, principal: Principal) -> list[RateHit]:
    """A trading request's hits: the per-user and the per-IP limits."""
    cfg = svc.config
    window = cfg.trade_rate_window_s
    return [
        ("trade:user", principal.user_id, cfg.trade_rate_per_user, window),
        ("trade:ip", req.client_ip, cfg.trade_rate_per_ip, window),
    ]


def _send(
    svc: Services,
    req: ApiRequest,
    user: str,
    cmd: AnyCommand,
    request_fingerprint: str,
    answer: Answer,
) -> flask.Response:
    """Publish ``cmd`` for ``user`` (or, for a retry with the same ``Idempotency-Key``, find
    the first attempt's command) and answer with its verdict, or 202 while it is pending."""
    key = Idempotency.key_of(req)
    if key is not None:
        first = svc.idempotency.begin(user, key, request_fingerprint, cmd.id)
        if first is not None and _lost(svc, first, user):  # never applied: send it now
            svc.idempotency.abandon(user, key, first)
            first = svc.idempotency.begin(user, key, request_fingerprint, cmd.id)
        if first is not None:
            reply = svc.commands.result(first) or _from_oplog(svc, first, user)
            if reply is None:
                reply = svc.commands.poll(first, svc.commands.wait_s)
            return pending_command(first) if reply is None else answer(reply)
    try:
        svc.commands.publish(cmd, ordering_key=user, owner=user)
    except Exception:
        if key is not None:
            svc.idempotency.abandon(user, key, cmd.id)
        raise
    reply = svc.commands.wait_reply(cmd.id, svc.commands.wait_s)
    return pending_command(cmd.id) if reply is None else answer(reply)


def _placed(reply: dict[str, Any]) -> flask.Response:
    if not reply["ok"]:
        raise rejection(reply)
    order = reply["order"]
    return json_response(
        order,
        status=201,
        headers={
            "Location": f"/v1/orders/{order['order_id']}",
            "X-Command-Id": str(reply["command_id"]),
        },
    )


def _cancelled(reply: dict[str, Any]) -> flask.Response:
    if not reply["ok"]:
        raise rejection(reply)
    return json_response(reply["order"])


def _cancelled_all(reply: dict[str, Any]) -> flask.Response:
    if not reply["ok"]:
        raise rejection(reply)
    return json_response({"orders": reply.get("orders") or []})


# --------------------------------------------------------------------------------------------
# routes
# --------------------------------------------------------------------------------------------


@api.route(
    "POST",
    "/v1/orders",
    summary="Place an order",
    operation_id="placeOrder",
    session_in_limits=True,
    tag="orders",
    scope="trade",
    body=PlaceOrder,
    params=(IDEMPOTENCY,),
    responses={
        201: ok(
            "Accepted by the matcher: the order's state",
            "Order",
            {
                "Location": {"schema": {"type": "string"}, "description": "/v1/orders/{order_id}"},
                "X-Command-Id": STR_HEADER,
            },
        ),
        202: PENDING,
    },
    errors=(409, 422, 429),
    description=(
        "A stop order (stop, stop_price) waits out of the book until the last trade price "
        "reaches its stop; expires_at makes an order good till that date. Checked against the "
        "market before anything is queued (codes: unknown_market, market_halted, bad_price, "
        "bad_tick, bad_amount, bad_step, below_min_amount, below_min_notional, invalid_order); "
        "then the matcher's verdict within a short wait: 201 with the order, or 202 while it is "
        "pending. The engine's refusals: "
        "insufficient_funds, would_take, fok_not_filled, would_trigger, too_many_orders (422), "
        "bad_expiry (400), duplicate_client_order_id (409)."
    ),
)
def place_order(req: ApiRequest) -> flask.Response:
    svc = services()
    # The body is read first so the market's reads share the rate limits' round trip; a bad
    # body is still refused after the limits and the Idempotency-Key, as before.
    body: PlaceOrder | None = None
    invalid: ApiError | None = None
    try:
        body = req.json(PlaceOrder)
    except ApiError as exc:
        invalid = exc
    wanted = body.market if body is not None and MARKET_RE.fullmatch(body.market) else None
    if body is not None and wanted is not None and req.header(IDEMPOTENCY_HEADER) is None:
        placed, counted = _place_in_one_trip(req, svc, body, wanted)
        if placed is not None:
            return placed
        if counted:  # the market changed since this instance read it: read it again
            principal = authenticate(req, svc.auth)
            return _place(svc, req, principal, body, wanted, _market_reads(svc, wanted))
    principal, reads = _trader(
        req, svc, None if wanted is None else lambda pipe: queue_market(pipe, wanted)
    )
    Idempotency.key_of(req)  # a malformed key is refused before anything else
    if invalid is not None:
        raise invalid
    assert body is not None
    return _place(svc, req, principal, body, wanted, reads)


def _place(
    svc: Services,
    req: ApiRequest,
    principal: Principal,
    body: PlaceOrder,
    wanted: str | None,
    reads: list[Any],
) -> flask.Response:
    """The order checked against the market (``queue_market``'s reads), then sent."""
    if wanted is not None:
        _known_markets().remember(wanted, *reads)
    market = None if wanted is None else market_of(*reads)
    if market is None:
        raise bad_request(f"unknown market {body.market!r}", Reason.UNKNOWN_MARKET)
    cmd = _order_of(market, principal, body)
    request_fp = fingerprint("POST /v1/orders", msgspec.json.encode(body))
    return _send(svc, req, principal.user_id, cmd, request_fp, _placed)


def _order_of(market: MarketSpec, principal: Principal, body: PlaceOrder) -> AnyCommand:
    return order_command(
        market, command_id=new_command_id(), user=principal.user_id, side=body.side,
        order_type=body.type, price=body.price, amount=body.amount,
        quote_amount=body.quote_amount, time_in_force=body.time_in_force,
        post_only=body.post_only, client_order_id=body.client_order_id, stp=body.stp,
        stop=body.stop, stop_price=body.stop_price, expires_at=body.expires_at,
    )  # fmt: skip


def _market_reads(svc: Services, name: str) -> list[Any]:
    pipe = batch_of(svc.redis)
    queue_market(pipe, name)
    return list(pipe.execute())


@per_instance
def _known_markets() -> KnownMarkets:
    """The markets this instance has read (api.placing): what an order is checked against
    before its one round trip, which proves them current."""
    return KnownMarkets()


def _place_in_one_trip(
    req: ApiRequest, svc: Services, body: PlaceOrder, wanted: str
) -> tuple[flask.Response | None, bool]:
    """A valid order without an ``Idempotency-Key``, on a market this instance has read:
    checked, counted and numbered in one Redis round trip (api.placing, decision 0035), then
    published: (the answer, True). (None, counted) when that could not be done: with
    ``counted`` the rate limits were counted (the market changed since it was read), else
    nothing was done."""
    known = _known_markets().get(wanted)
    if known is None:
        return None, False
    principal = authenticate(req, svc.auth)
    try:
        cmd = _order_of(known.spec, principal, body)
    except ApiError:
        return None, False  # refused with the market as this instance read it: check anew
    user = principal.user_id
    hits = _trade_hits(req, svc, principal)
    placement = count_and_number(req, svc.auth, svc.commands, hits, known, cmd, user)
    if placement is not Placement.NUMBERED:
        return None, placement is Placement.COUNTED
    svc.commands.publish(cmd, ordering_key=user, owner=user, numbered=True)
    reply = svc.commands.wait_reply(cmd.id, svc.commands.wait_s)
    return (pending_command(cmd.id) if reply is None else _placed(reply)), True


def _listed(reply: dict[str, Any]) -> flask.Response:
    if not reply["ok"]:
        raise rejection(reply)
    listed = reply["list"]
    return json_response(
        {k: v for k, v in listed.items() if k != "event"},
        status=201,
        headers={"X-Command-Id": str(reply["command_id"])},
    )


@api.route(
    "POST",
    "/v1/order-lists",
    summary="Place an OCO list (a limit order and a stop-loss, one cancels the other)",
    operation_id="placeOrderList",
    session_in_limits=True,
    tag="orders",
    scope="trade",
    body=PlaceOcoList,
    params=(IDEMPOTENCY,),
    responses={
        201: ok("Accepted by the matcher: the list", "OcoList", {"X-Command-Id": STR_HEADER}),
        202: PENDING,
    },
    errors=(409, 422, 429),
    description=(
        "Both orders are checked against the market before anything is "
        "queued (as for an order); the matcher refuses a list whose limit order would trade "
        "(would_take), whose stop is already reached (would_trigger), that would exceed the "
        "open-order limit (too_many_orders) or that the funds do not cover "
        "(insufficient_funds), all 422."
    ),
)
def place_order_list(req: ApiRequest) -> flask.Response:
    svc = services()
    principal, _ = _trader(req, svc)
    Idempotency.key_of(req)
    body = req.json(PlaceOcoList)
    market = load_market(svc.redis, body.market)
    if market is None:
        raise bad_request(f"unknown market {body.market!r}", Reason.UNKNOWN_MARKET)
    cmd = oco_command(
        market, command_id=new_command_id(), user=principal.user_id, side=body.side,
        amount=body.amount, price=body.price, stop_price=body.stop_price,
        stop_limit_price=body.stop_limit_price, stp=body.stp,
    )  # fmt: skip
    request_fp = fingerprint("POST /v1/order-lists", msgspec.json.encode(body))
    return _send(svc, req, principal.user_id, cmd, request_fp, _listed)


def _amended(reply: dict[str, Any]) -> flask.Response:
    if not reply["ok"]:
        raise rejection(reply)
    return json_response(reply["order"])


@api.route(
    "POST",
    "/v1/orders/{order_id}/amend",
    summary="Change a resting order's price or amount in one step",
    operation_id="amendOrder",
    session_in_limits=True,
    tag="orders",
    scope="trade",
    body=AmendOrderBody,
    params=(path_param("order_id", example="1"), IDEMPOTENCY),
    responses={200: ok("The amended order", "AmendedOrder"), 202: PENDING},
    errors=(404, 409, 422, 429),
    description=(
        "Cancel-replace in one command: never a moment without the "
        "order. Refusals: not_amendable (409: a pending stop order or an order of a list), "
        "would_take, insufficient_funds (422), order_not_found (404)."
    ),
)
def amend_order(req: ApiRequest) -> flask.Response:
    svc = services()
    principal, _ = _trader(req, svc)
    Idempotency.key_of(req)
    raw_id = req.params["order_id"]
    if not raw_id.isascii() or not raw_id.isdigit() or not 0 < int(raw_id) < _MAX_ORDER_ID:
        raise not_found("no such order", Reason.ORDER_NOT_FOUND)
    body = req.json(AmendOrderBody)
    market = load_market(svc.redis, body.market)
    if market is None:
        raise bad_request(f"unknown market {body.market!r}", Reason.UNKNOWN_MARKET)
    if body.price is None and body.amount is None:
        raise bad_request("give price and/or amount", "invalid_order")
    price, amount = amend_units(market, body.price, body.amount)
    cmd = AmendOrder(
        id=new_command_id(), user=principal.user_id, order_id=int(raw_id), price=price,
        amount=amount,
    )  # fmt: skip
    request_fp = fingerprint("POST /v1/orders/{order_id}/amend", raw_id, msgspec.json.encode(body))
    return _send(svc, req, principal.user_id, cmd, request_fp, _amended)


@api.route(
    "DELETE",
    "/v1/orders/{order_id}",
    summary="Cancel one of the caller's orders",
    operation_id="cancelOrder",
    session_in_limits=True,
    tag="orders",
    scope="trade",
    params=(
        path_param("order_id", example="1"),
        IDEMPOTENCY,
    ),
    responses={200: ok("The cancelled order", "Order"), 202: PENDING},
    errors=(400, 404, 422, 429),
)
def cancel_order(req: ApiRequest) -> flask.Response:
    svc = services()
    principal, _ = _trader(req, svc)
    Idempotency.key_of(req)
    raw_id = req.params["order_id"]
    if not raw_id.isascii() or not raw_id.isdigit() or not 0 < int(raw_id) < _MAX_ORDER_ID:
        raise not_found("no such order", Reason.ORDER_NOT_FOUND)
    order_id = int(raw_id)
    cmd = CancelOrder(id=new_command_id(), user=principal.user_id, order_id=order_id)
    request_fp = fingerprint("DELETE /v1/orders/{order_id}", str(order_id))
    return _send(svc, req, principal.user_id, cmd, request_fp, _cancelled)


@api.route(
    "DELETE",
    "/v1/orders/by-client-id/{client_order_id}",
    summary="Cancel the open order with a client id",
    operation_id="cancelOrderByClientId",
    session_in_limits=True,
    tag="orders",
    scope="trade",
    params=(CLIENT_ORDER_ID, IDEMPOTENCY),
    responses={200: ok("The cancelled order", "Order"), 202: PENDING},
    errors=(400, 404, 422, 429),
)
def cancel_by_client_id(req: ApiRequest) -> flask.Response:
    svc = services()
    principal, _ = _trader(req, svc)
    Idempotency.key_of(req)
    client_order_id = req.params["client_order_id"]
    if len(client_order_id) > MAX_CLIENT_ORDER_ID:
        raise not_found("no such order", Reason.ORDER_NOT_FOUND)
    cmd = CancelOrder(id=new_command_id(), user=principal.user_id, client_order_id=client_order_id)
    request_fp = fingerprint("DELETE /v1/orders/by-client-id", client_order_id)
    return _send(svc, req, principal.user_id, cmd, request_fp, _cancelled)


@api.route(
    "DELETE",
    "/v1/orders",
    summary="Cancel all the caller's open orders",
    operation_id="cancelAllOrders",
    session_in_limits=True,
    tag="orders",
    scope="trade",
    params=(
        query("market", STR, "only this market"),
        IDEMPOTENCY,
    ),
    responses={
        200: ok(
            "What was cancelled",
            {
                "type": "object",
                "properties": {
                    "orders": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}}
                },
                "required": ["orders"],
            },
        ),
        202: PENDING,
    },
    errors=(400, 422, 429),
)
def cancel_all(req: ApiRequest) -> flask.Response:
    svc = services()
    principal, _ = _trader(req, svc)
    Idempotency.key_of(req)
    market = req.query("market")
    if market is not None and load_market(svc.redis, market) is None:
        raise bad_request(f"unknown market {market!r}", Reason.UNKNOWN_MARKET)
    cmd = CancelAll(id=new_command_id(), user=principal.user_id, market=market)
    request_fp = fingerprint("DELETE /v1/orders", market or "")
    return _send(svc, req, principal.user_id, cmd, request_fp, _cancelled_all)


@api.route(
    "GET",
    "/v1/commands/{id}",
    summary="The fate of a command the caller sent",
    operation_id="getCommand",
    tag="orders",
    scope=("read", "trade"),  # a trading key may follow what it sent
    params=(path_param("id", description="the command id of a 202 answer"),),
    responses={200: ok("Applied, rejected or lost", "CommandStatus"), 202: PENDING},
    errors=(404, 429),
)
def command_status(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = authenticate(req, svc.auth)
    user = principal.user_id
    command_id = req.params["id"]
    unknown = not_found("no such command", "command_not_found")
    if not COMMAND_ID_RE.fullmatch(command_id):
        raise unknown
    owner = svc.commands.owner(command_id)
    if owner is not None and owner != user:
        raise unknown
    reply = svc.commands.result(command_id) if owner == user else None
    queued: bool | None = None
    if reply is None:
        # Whether it is still queued, asked before the oplog: the matcher lets go of a
        # queued command only once it is in the oplog.
        queued = svc.commands.queued(command_id) if owner == user else None
        from_log = _from_oplog(svc, command_id, user)
        if from_log is not None:
            # The oplog proved the caller sent it; Redis may still hold the fuller reply.
            reply = svc.commands.result(command_id) or from_log
    if reply is None:
        if owner == user:
            return pending_command(command_id) if queued is not False else _lost_answer(command_id)
        raise unknown
    return json_response({**reply, "status": "applied" if reply["ok"] else "rejected"})


def _lost(svc: Services, command_id: str, user: str) -> bool:
    """The command was accepted but is neither queued nor applied: it never will be."""
    if svc.commands.queued(command_id) is not False:
        return False
    return svc.commands.result(command_id) is None and _from_oplog(svc, command_id, user) is None


def _lost_answer(command_id: str) -> flask.Response:
    return json_response(
        {
            "command_id": command_id, "status": "lost", "seq": None, "ok": False,
            "reason": "no_longer_queued", "order": None,
            "message": (
                "accepted, but neither applied nor queued any more: the local Pub/Sub "
                "emulator was stopped before the matcher applied it and the local outbox "
                "did not keep it. Nothing was done; send it again."
            ),
        }
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# the oplog (Postgres): verdicts older than their Redis copy
# --------------------------------------------------------------------------------------------

_OPLOG_SQL: Final = (
    "SELECT seq, ok, reason, order_id, command FROM oplog WHERE command_id = :command_id"
)
_ORDER_SQL: Final = """
SELECT o.order_id, o.market, o.side, o.order_type, o.price, o.amount, o.quote_amount,
       o.time_in_force, o.post_only, o.client_order_id, o.status, o.filled, o.filled_quote,
       o.fee, o.reason, o.created_ts, ab.precision, aq.precision
FROM orders o
JOIN markets m ON m.market = o.market
JOIN assets ab ON ab.asset = m.base
JOIN assets aq ON aq.asset = m.quote
WHERE o.order_id = :order_id AND o.user_id = :user_id
"""


def _order_from_row(row: list[Any]) -> dict[str, Any]:
    """An ``orders`` row in the form of the matcher's replies (docs/marketdata.md)."""
    (order_id, market, side, order_type, price, amount, quote_amount, tif, post_only, coid,
     status, filled, filled_quote, fee, reason, created_ts, bp, qp) = row  # fmt: skip

    def fmt(value: Any, precision: int) -> str | None:
        return None if value is None else format_units(int(value), int(precision))

    return {
        "order_id": int(order_id),
        "market": market,
        "side": side,
        "type": order_type,
        "price": fmt(price, qp),
        "amount": fmt(amount, bp),
        "quote_amount": fmt(quote_amount, qp),
        "time_in_force": tif,
        "post_only": post_only,
        "client_order_id": coid,
        "status": status,
        "filled": fmt(filled, bp),
        "filled_quote": fmt(filled_quote, qp),
        "fee": fmt(fee, bp if side == "buy" else qp),
        "reason": reason,
        "ts": int(created_ts),
    }


def _from_oplog(svc: Services, command_id: str, user: str) -> dict[str, Any] | None:
    """The verdict of ``command_id`` from the oplog when ``user`` sent it, else None."""

    def read(db: Any) -> dict[str, Any] | None:
        rows = db.run(_OPLOG_SQL, command_id=command_id)
        if not rows:
            return None
        seq, ok, reason, order_id, command_json = rows[0]
        command = orjson.loads(command_json)
        if command.get("user") != user:
            return None
        result: dict[str, Any] = {
            "command_id": command_id,
            "seq": int(seq),
            "ok": bool(ok),
            "reason": reason,
            "order": None,
        }
        if ok and order_id is None and command.get("command") == "cancel_order":
            order_id = command.get("order_id")
        if ok and order_id is not None:
            found = db.run(_ORDER_SQL, order_id=int(order_id), user_id=user)
            result["order"] = _order_from_row(found[0]) if found else None
        return result

    return svc.db.call(read)  # Postgres down: the Api wrapper answers 503
