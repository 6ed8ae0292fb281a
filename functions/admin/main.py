"""The admin function: assets, markets, crediting users, user lookup, disabling and enabling
users, withdrawal review and the audit.

Its routes, with their parameters, bodies and answers, are declared below with ``api.route``;
the OpenAPI document made from them (``GET /v1/openapi.json``, functions/docs/openapi.json) is
where to read them.

Every route needs the admin role: an access token of ours (never an API key, never an external
OIDC token) whose user is an admin in Firestore *now* (a demoted admin's token stops working at
once, not when it expires). Else 403.

The writes are commands to the matcher, like orders (``api.dispatch``): ordering key
``admin`` for assets and markets (so a market created right after its assets is applied
after them), the credited user for deposits. Each answers with the result, or 202
``{command_id, status: "pending"}`` when the matcher has not answered within
``API_REPLY_WAIT_S``; the engine's refusals map as for orders (``duplicate_asset``,
``duplicate_market``, ``duplicate_deposit``: 409).

An asset's chain details (``native`` or ``erc20`` with its contract and token decimals) are not
the engine's business: they are kept in Firestore (``assets/{asset}``) and in Redis
(``HSET md:asset_chains {asset} {"kind", "contract", "decimals", ...}``), where ``GET /v1/assets``
reads them. The wallet's rules for the asset (wallet.assets) go with them when given:
``confirmations`` (1 to 10000) and the decimal strings ``min_deposit``, ``withdrawal_fee``,
``min_withdrawal``, ``withdrawal_daily_limit``, ``sweep_threshold``,
``withdrawal_review_threshold`` (within the asset's precision; kept as given). ``PATCH
/v1/admin/assets/{asset}/chain`` changes them (null removes one: the wallet's default applies);
the chain itself (kind, contract, decimals) never changes.

Withdrawal review: ``GET /v1/admin/withdrawals`` lists those waiting in state ``review`` (above
their asset's ``withdrawal_review_threshold``); approving makes one ``requested`` (the sender
signs it), rejecting refunds it through the matcher (``RefundWithdrawal``). Both need the
admin's fresh proof and second factor, and are logged.

The first admin: ``python -m functions.admin.bootstrap --email ... --password ...``.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, NamedTuple

import flask
import msgspec
import orjson
from google.api_core import exceptions as gexc
from google.cloud import firestore, pubsub_v1  # type: ignore[attr-defined, unused-ignore]

from api import second_factor, sessions
from api.auth import (
    API_KEYS_COLLECTION,
    Principal,
    Role,
    authenticate,
    require_fresh,
    require_role,
)
from api.dispatch import Services, new_command_id, pending_command, rejection, services
from api.history import ORDER_COLUMNS, Catalog, order_json
from api.http import (
    Api,
    ApiError,
    ApiRequest,
    Body,
    DecimalText,
    bad_request,
    conflict,
    json_response,
    not_found,
)
from api.listings import (
    check_fee,
    check_market_definition,
    market_json,
)
from api.openapi import ASSET_PATTERN, MARKET_PARAM, PENDING, ok, path_param, query
from api.params import QueryParams
from shared import admin_actions, audit_runs, books_audit, dead_letters, logs
from shared.config import PubSubConfig
from shared.instance import per_instance
from shared.messages import (
    ASSET_RE,
    AnyCommand,
    CreateAsset,
    CreateMarket,
    Deposit,
    MarketStatus,
    Reason,
    RefundWithdrawal,
    UpdateMarket,
)
from shared.money import MoneyError, format_units, parse_units
from shared.order_rules import MAX_USER_ID
from shared.pubsub import hold_subscription
from shared.redis_keys import ASSET_CHAINS_KEY, ASSETS_KEY, MARKETS_KEY
from shared.redis_values import asset_precisions
from shared.times import iso, utc_now
from wallet.assets import RULE_FIELDS

logs.setup()
log = logging.getLogger("api.admin")

api = Api("admin")

USERS: Final = "users"
EMAILS: Final = "emails"
ASSETS: Final = "assets"
ADMIN_ORDERING_KEY: Final = "admin"
_CONTRACT_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_LOOKUP_RE: Final = re.compile(r"[A-Za-z0-9._@+\-]{1,254}")


def _could_be_document_id(value: str) -> bool:
    """Whether ``value`` can name a Firestore document (no ``/``, not ``.``/``..``, not
    ``__reserved__``): anything else is no user of ours, not a server error."""
    return bool(_LOOKUP_RE.fullmatch(value)) and not value.startswith("__") and set(value) != {"."}


Decimal = DecimalText


Confirmations = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=10_000,
        description="blocks before a deposit is credited (default: DEPOSIT_CONFIRMATIONS)",
    ),
]
MinDeposit = Annotated[
    Decimal, msgspec.Meta(description="smaller deposits are recorded, never credited")
]
WithdrawalFee = Annotated[
    Decimal, msgspec.Meta(description="charged on top of each withdrawal's amount")
]
DailyLimit = Annotated[Decimal, msgspec.Meta(description="per user, rolling 24 h; none if absent")]
ReviewThreshold = Annotated[
    Decimal, msgspec.Meta(description="a withdrawal of more than this waits for a review")
]
SweepThreshold = Annotated[
    Decimal, msgspec.Meta(description="a deposit address holding this much is swept")
]


class NewChain(Body):
    """Decimal rules within the asset's precision; kept only when given."""

    kind: Literal["native", "erc20"]
    decimals: Annotated[int, msgspec.Meta(ge=0, le=77)]
    contract: (
        Annotated[
            str,
            msgspec.Meta(max_length=42, extra_json_schema={"pattern": "^0x[0-9a-fA-F]{40}$"}),
        ]
        | None
    ) = None
    # The wallet's rules (wallet.assets): kept only when given.
    confirmations: Confirmations | None = None
    min_deposit: MinDeposit | None = None
    withdrawal_fee: WithdrawalFee | None = None
    min_withdrawal: Decimal | None = None
    withdrawal_daily_limit: DailyLimit | None = None
    sweep_threshold: SweepThreshold | None = None
    withdrawal_review_threshold: ReviewThreshold | None = None


class ChainRules(Body):
    """At least one field: a value replaces the rule, null removes it (the wallet's default
    applies again), an absent field keeps it."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [{"withdrawal_fee": "0.001", "withdrawal_daily_limit": "50"}]
    }

    confirmations: Confirmations | msgspec.UnsetType | None = msgspec.UNSET
    min_deposit: MinDeposit | msgspec.UnsetType | None = msgspec.UNSET
    withdrawal_fee: WithdrawalFee | msgspec.UnsetType | None = msgspec.UNSET
    min_withdrawal: Decimal | msgspec.UnsetType | None = msgspec.UNSET
    withdrawal_daily_limit: DailyLimit | msgspec.UnsetType | None = msgspec.UNSET
    sweep_threshold: SweepThreshold | msgspec.UnsetType | None = msgspec.UNSET
    withdrawal_review_threshold: ReviewThreshold | msgspec.UnsetType | None = msgspec.UNSET


class NewAsset(Body):
    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [
            {
                "asset": "LINK",
                "precision": 8,
                "chain": {
                    "kind": "erc20",
                    "contract": "0x514910771AF9Ca656af840dff83E8264EcF986CA",
                    "decimals": 18,
                },
            }
        ]
    }

    asset: Annotated[str, msgspec.Meta(max_length=12, extra_json_schema={"pattern": ASSET_PATTERN})]
    precision: Annotated[int, msgspec.Meta(ge=0, le=18)]
    chain: NewChain | None = None


class NewMarket(Body):
    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [
            {
                "base": "LINK",
                "quote": "USDT",
                "tick": "0.001",
                "step": "0.01",
                "min_amount": "0.1",
                "min_notional": "5",
                "maker_fee": "0.001",
                "taker_fee": "0.002",
            }
        ]
    }

    base: Annotated[str, msgspec.Meta(max_length=12)]
    quote: Annotated[str, msgspec.Meta(max_length=12)]
    tick: Decimal
    step: Decimal
    min_amount: Decimal
    min_notional: Decimal
    maker_fee: Annotated[
        Decimal, msgspec.Meta(description="a fraction below 0.1, 6 decimals at most")
    ]
    taker_fee: Decimal
    market: (
        Annotated[str, msgspec.Meta(max_length=25, description="BASE-QUOTE if given")] | None
    ) = None
    status: MarketStatus = "open"


class MarketChange(Body):
    """At least one field; status halted stops new orders, open resumes."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [{"maker_fee": "0.0005", "taker_fee": "0.0015"}]
    }

    maker_fee: Decimal | None = None
    taker_fee: Decimal | None = None
    status: MarketStatus | None = None


class NewDeposit(Body):
    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [
            {
                "user_id": "3f9c2a1e8b7d4c6f9a0b1c2d3e4f5a6b",
                "asset": "USDT",
                "amount": "1000",
                "ref": "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060:0",
            }
        ]
    }

    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_USER_ID)]
    asset: Annotated[str, msgspec.Meta(max_length=12)]
    amount: Decimal
    ref: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=200,
            description="unique: a second deposit with it is refused (409)",
        ),
    ]


class RoleChange(Body):
    schema_extra: ClassVar[dict[str, Any]] = {"examples": [{"role": "user"}]}

    role: Role


def admin(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return api(request)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _admin(req: ApiRequest, svc: Services) -> Principal:
    """The caller, when it is an admin right now; else 401 or 403."""
    principal = authenticate(req, svc.auth)
    require_role(principal, "admin")
    if principal.via != "jwt":
        raise ApiError(403, "forbidden", "admin routes need an admin's access token")
    snap = svc.auth.firestore.collection(USERS).document(principal.user_id).get()
    if not snap.exists or (snap.to_dict() or {}).get("role") != "admin":
        raise ApiError(403, "forbidden", "this needs the 'admin' role")
    if req.method not in ("GET", "HEAD"):
        _record_action(req, svc, principal)
    return principal


def _record_action(req: ApiRequest, svc: Services, principal: Principal) -> None:
    """Every admin action in the append-only log, before it is carried out: an action the
    log cannot take is not done (503)."""
    try:
        details: Any = orjson.loads(req.body) if req.body else None
    except orjson.JSONDecodeError:
        details = {"unreadable_body_bytes": len(req.body)}
    target = next(iter(req.params.values()), None)
    svc.db.call(
        lambda db: admin_actions.record(
            db, admin_id=principal.user_id, action=f"{req.method} {req.path}", target=target,
            client_ip=req.client_ip, request_id=req.request_id, details=details,
        )
    )  # fmt: skip


def _send(svc: Services, cmd: AnyCommand, ordering_key: str, owner: str) -> dict[str, Any] | None:
    """The matcher's accepting reply; raises its refusal; None when it did not answer in
    time."""
    reply = svc.commands.send(cmd, ordering_key=ordering_key, owner=owner)
    if reply is not None and not reply["ok"]:
        raise rejection(reply)
    return reply


def _check_rules(rules: dict[str, Any], precision: int) -> None:
    """The decimal-string rules fit the asset's precision (400 ``invalid_chain``)."""
    for name in RULE_FIELDS:
        value = rules.get(name)
        if value is None:
            continue
        try:
            parse_units(value, precision, name)
        except MoneyError as exc:
            raise bad_request(
                f"{exc} (the asset's precision is {precision})", "invalid_chain"
            ) from None


# --------------------------------------------------------------------------------------------
# assets and markets
# --------------------------------------------------------------------------------------------


@api.route(
    "POST",
    "/v1/admin/assets",
    summary="List an asset",
    operation_id="createAsset",
    tag="admin",
    auth="admin",
    body=NewAsset,
    responses={201: ok("Listed", "Asset"), 202: PENDING},
    errors=(409,),
)
def create_asset(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _admin(req, svc)
    body = req.json(NewAsset)
    if not ASSET_RE.fullmatch(body.asset):
        raise bad_request("asset must be 2 to 12 of A-Z and 0-9", "invalid_asset")
    chain: dict[str, Any] | None = None
    if body.chain is not None:
        c = body.chain
        if c.kind == "erc20" and (c.contract is None or not _CONTRACT_RE.fullmatch(c.contract)):
            raise bad_request(
                "an erc20 asset needs its contract address (0x + 40 hex)", "invalid_chain"
            )
        if c.kind == "native" and c.contract is not None:
            raise bad_request("a native asset has no contract", "invalid_chain")
        if body.precision > c.decimals:
            raise bad_request("precision cannot exceed the token's decimals", "invalid_chain")
        chain = {
            "kind": c.kind,
            "contract": c.contract.lower() if c.contract else None,
            "decimals": c.decimals,
        }
        rules = {
            name: getattr(c, name)
            for name in ("confirmations", *RULE_FIELDS)
            if getattr(c, name) is not None
        }
        _check_rules(rules, body.precision)
        chain.update(rules)
    if svc.redis.hexists(ASSETS_KEY, body.asset):
        raise conflict(f"asset {body.asset} exists", Reason.DUPLICATE_ASSET)
    svc.auth.firestore.collection(ASSETS).document(body.asset).set(
        {
            "asset": body.asset,
            "precision": body.precision,
            "chain": chain,
            "updated_at": utc_now(),
            "updated_by": principal.user_id,
        }
    )
    if chain is None:
        svc.redis.hdel(ASSET_CHAINS_KEY, body.asset)
    else:
        svc.redis.hset(ASSET_CHAINS_KEY, body.asset, orjson.dumps(chain))
    cmd = CreateAsset(id=new_command_id(), asset=body.asset, precision=body.precision)
    if _send(svc, cmd, ADMIN_ORDERING_KEY, principal.user_id) is None:
        return pending_command(cmd.id)
    return json_response(
        {"asset": body.asset, "precision": body.precision, "chain": chain}, status=201
    )


@api.route(
    "PATCH",
    "/v1/admin/assets/{asset}/chain",
    summary="Change an asset's deposit and withdrawal rules",
    operation_id="updateAssetChain",
    tag="admin",
    auth="admin",
    body=ChainRules,
    params=(path_param("asset", {"type": "string", "pattern": ASSET_PATTERN}, example="ETH"),),
    responses={200: ok("The asset now", "Asset")},
    errors=(404,),
)
def update_asset_chain(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _admin(req, svc)
    asset = req.params["asset"]
    body = req.json(ChainRules)
    given = {
        name: value
        for name in ("confirmations", *RULE_FIELDS)
        if (value := getattr(body, name)) is not msgspec.UNSET
    }
    if not given:
        raise bad_request("give at least one of confirmations, " + ", ".join(RULE_FIELDS))
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hget(ASSETS_KEY, asset)
    pipe.hget(ASSET_CHAINS_KEY, asset)
    raw_asset, raw_chain = pipe.execute()
    if raw_asset is None:
        raise not_found(f"no asset {asset}", "asset_not_found")
    if raw_chain is None:
        raise not_found(f"asset {asset} has no chain details", "no_chain")
    precision = int(orjson.loads(raw_asset)["precision"])
    _check_rules(given, precision)
    chain: dict[str, Any] = orjson.loads(raw_chain)
    for name, value in given.items():
        if value is None:
            chain.pop(name, None)
        else:
            chain[name] = value
    svc.auth.firestore.collection(ASSETS).document(asset).set(
        {"asset": asset, "precision": precision, "chain": chain, "updated_at": utc_now(),
         "updated_by": principal.user_id},
        merge=["asset", "precision", "chain", "updated_at", "updated_by"],  # chain: replaced
    )  # fmt: skip
    svc.redis.hset(ASSET_CHAINS_KEY, asset, orjson.dumps(chain))
    log.info("chain rules changed", extra={"asset": asset, "by": principal.user_id})
    return json_response({"asset": asset, "precision": precision, "chain": chain})


@api.route(
    "POST",
    "/v1/admin/markets",
    summary="Open a market",
    operation_id="createMarket",
    tag="admin",
    auth="admin",
    body=NewMarket,
    responses={201: ok("Created", "Market"), 202: PENDING},
    errors=(409,),
)
def create_market(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _admin(req, svc)
    body = req.json(NewMarket)
    name = f"{body.base}-{body.quote}"
    if body.market is not None and body.market != name:
        raise bad_request("a market is named BASE-QUOTE", "invalid_market")
    check_market_definition(
        base=body.base, quote=body.quote, precisions=asset_precisions(svc.redis),
        tick=body.tick, step=body.step, min_amount=body.min_amount,
        min_notional=body.min_notional, maker_fee=body.maker_fee, taker_fee=body.taker_fee,
    )  # fmt: skip
    if svc.redis.hexists(MARKETS_KEY, name):
        raise conflict(f"market {name} exists", Reason.DUPLICATE_MARKET)
    cmd = CreateMarket(
        id=new_command_id(), market=name, base=body.base, quote=body.quote, tick=body.tick,
        step=body.step, min_amount=body.min_amount, min_notional=body.min_notional,
        maker_fee=body.maker_fee, taker_fee=body.taker_fee, status=body.status,
    )  # fmt: skip
    if _send(svc, cmd, ADMIN_ORDERING_KEY, principal.user_id) is None:
        return pending_command(cmd.id)
    definition = {k: v for k, v in msgspec.structs.asdict(cmd).items() if k not in ("id", "ts")}
    return json_response(market_json(svc.redis, name) or definition, status=201)


@api.route(
    "PATCH",
    "/v1/admin/markets/{market}",
    summary="Change a market's fees, halt or resume it",
    operation_id="updateMarket",
    tag="admin",
    auth="admin",
    body=MarketChange,
    params=(MARKET_PARAM,),
    responses={200: ok("The market now", "Market"), 202: PENDING},
    errors=(404,),
)
def update_market(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _admin(req, svc)
    name = req.params["market"]
    body = req.json(MarketChange)
    if body.maker_fee is None and body.taker_fee is None and body.status is None:
        raise bad_request("give at least one of maker_fee, taker_fee, status")
    for field, value in (("maker_fee", body.maker_fee), ("taker_fee", body.taker_fee)):
        if value is not None:
            check_fee(value, field)
    current = market_json(svc.redis, name)
    if current is None:
        raise not_found(f"no market {name}", "market_not_found")
    cmd = UpdateMarket(
        id=new_command_id(), market=name, maker_fee=body.maker_fee, taker_fee=body.taker_fee,
        status=body.status,
    )  # fmt: skip
    if _send(svc, cmd, ADMIN_ORDERING_KEY, principal.user_id) is None:
        return pending_command(cmd.id)
    return json_response(market_json(svc.redis, name) or current)


# --------------------------------------------------------------------------------------------
# deposits
# --------------------------------------------------------------------------------------------


@api.route(
    "POST",
    "/v1/admin/deposits",
    summary="Credit a user (until the wallet watcher does)",
    operation_id="creditDeposit",
    tag="admin",
    auth="admin",
    body=NewDeposit,
    responses={201: ok("Credited", "DepositCredited"), 202: PENDING},
    errors=(409,),
)
def credit(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _admin(req, svc)
    body = req.json(NewDeposit)
    user = body.user_id
    if (
        user.startswith("@")
        or not _could_be_document_id(user)
        or (
            not user.startswith("oidc_")
            and not svc.auth.firestore.collection(USERS).document(user).get().exists
        )
    ):
        raise bad_request(f"no user {user!r}", "unknown_user")
    raw = svc.redis.hget(ASSETS_KEY, body.asset)
    if raw is None:
        raise bad_request(f"unknown asset {body.asset!r}", Reason.UNKNOWN_ASSET)
    precision = int(orjson.loads(raw)["precision"])
    try:
        amount = parse_units(body.amount, precision, "amount")
    except MoneyError as exc:
        raise bad_request(str(exc), Reason.BAD_AMOUNT) from None
    if amount <= 0:
        raise bad_request("amount must be positive", Reason.BAD_AMOUNT)
    cmd = Deposit(id=new_command_id(), user=user, asset=body.asset, amount=amount, ref=body.ref)
    reply = _send(svc, cmd, user, principal.user_id)
    if reply is None:
        return pending_command(cmd.id)
    return json_response(
        {
            "command_id": cmd.id,
            "seq": reply["seq"],
            "user_id": user,
            "asset": body.asset,
            "amount": format_units(amount, precision),
            "ref": body.ref,
        },
        status=201,
    )


# --------------------------------------------------------------------------------------------
# users
# --------------------------------------------------------------------------------------------


def _lookup(svc: Services, wanted: str) -> tuple[str, dict[str, Any]]:
    """(user id, user document) of an id or an email; 404 ``user_not_found``."""
    wanted = wanted.strip()
    missing = not_found("no such user", "user_not_found")
    if not _could_be_document_id(wanted):
        raise missing
    db = svc.auth.firestore
    user_id = wanted
    if "@" in wanted:
        link = db.collection(EMAILS).document(wanted.lower()).get()
        if not link.exists:
            raise missing
        user_id = str((link.to_dict() or {}).get("user_id"))
    snap = db.collection(USERS).document(user_id).get()
    if not snap.exists:
        raise missing
    return user_id, snap.to_dict() or {}


_BALANCES_SQL: Final = (
    "SELECT asset, available, frozen FROM balances WHERE user_id = :u ORDER BY asset"
)
_RECENT: Final = 20
"""How many of a user's latest open orders, deposits and withdrawals the lookup shows."""
_OPEN_ORDERS_SQL: Final = (
    f"SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = :u"
    " AND status IN ('open', 'partially_filled') ORDER BY order_id DESC LIMIT :n"
)
_DEPOSITS_SQL: Final = (
    "SELECT ref, asset, amount, ts FROM deposits WHERE user_id = :u ORDER BY seq DESC LIMIT :n"
)
_WITHDRAWALS_SQL: Final = (
    "SELECT withdrawal_id, asset, amount, fee, address, state, error, tx_hash, created_at"
    " FROM withdrawal_requests WHERE user_id = :u ORDER BY created_at DESC, withdrawal_id"
    " LIMIT :n"
)


def _user_json(svc: Services, user_id: str, user: dict[str, Any]) -> dict[str, Any]:
    def units(value: Any, asset: str) -> str:
        return format_units(int(value), catalog.precision(asset) if catalog.has_asset(asset) else 0)

    catalog = Catalog.load(svc.redis, svc.db)
    db, n = svc.db, _RECENT
    balances = {
        str(asset): {"available": units(available, asset), "frozen": units(frozen, asset)}
        for asset, available, frozen in db.run(_BALANCES_SQL, u=user_id)
    }
    return {
        "user_id": user_id,
        "email": user.get("email"),
        "role": user.get("role", "user"),
        "created_at": iso(user.get("created_at")),
        "disabled": bool(user.get("disabled", False)),
        "balances": balances,
        "open_orders": [
            order_json(row, catalog) for row in db.run(_OPEN_ORDERS_SQL, u=user_id, n=n)
        ],
        "deposits": [
            {"ref": ref, "asset": asset, "amount": units(amount, asset), "ts": int(ts)}
            for ref, asset, amount, ts in db.run(_DEPOSITS_SQL, u=user_id, n=n)
        ],
        "withdrawals": [
            {
                "id": wid,
                "asset": asset,
                "amount": units(amount, asset),
                "fee": units(fee, asset),
                "address": address,
                "state": state,
                "error": error,
                "tx_hash": tx_hash,
                "created_at": iso(created),
            }
            for wid, asset, amount, fee, address, state, error, tx_hash, created in db.run(
                _WITHDRAWALS_SQL, u=user_id, n=n
            )
        ],
    }


@api.route(
    "GET",
    "/v1/admin/users/{id_or_email}",
    summary="A user by id or email, with their balances, open orders, deposits and withdrawals",
    operation_id="findUser",
    tag="admin",
    auth="admin",
    params=(path_param("id_or_email", example="alice@example.com"),),
    responses={200: ok("The user", "AdminUser")},
    errors=(404,),
    description=(
        "balances: the ledger's, per asset (available; frozen: in orders or withdrawals); the "
        "user's latest open orders, deposits and withdrawal requests (20 of each, newest first)."
    ),
)
def find_user(req: ApiRequest) -> flask.Response:
    svc = services()
    _admin(req, svc)
    return json_response(_user_json(svc, *_lookup(svc, req.params["id_or_email"])))


@api.route(
    "PATCH",
    "/v1/admin/users/{id_or_email}",
    summary="Give a user a role",
    operation_id="changeRole",
    tag="admin",
    auth="admin",
    body=RoleChange,
    params=(path_param("id_or_email", example="alice@example.com"),),
    responses={200: ok("The user", "AdminUser")},
    errors=(404,),
    description=(
        "A change ends every session of the user at once (their tokens name the old role). Needs "
        "the admin's recent proof (401 fresh_auth_required)."
    ),
)
def change_role(req: ApiRequest) -> flask.Response:
    """``{role}``: the user's role; a change ends every session of the user at once (their
    tokens say the old role). Granting or taking a role needs the admin's fresh proof."""
    svc = services()
    principal = _admin(req, svc)
    body = req.json(RoleChange)
    require_fresh(principal, svc.config)
    user_id, user = _lookup(svc, req.params["id_or_email"])
    if user.get("role", "user") != body.role:
        svc.auth.firestore.collection(USERS).document(user_id).update({"role": body.role})
        svc.auth.sessions.end_all(user_id)
        log.info(
            "role changed",
            extra={"user_id": user_id, "role": body.role, "by": principal.user_id},
        )
        user = {**user, "role": body.role}
    return json_response(_user_json(svc, user_id, user))


@api.route(
    "POST",
    "/v1/admin/users/{id_or_email}/disable",
    summary="Disable a user: every session ends, their API keys are deleted, login is refused",
    operation_id="disableUser",
    description=(
        "Login then answers 403 account_disabled. Needs the admin's recent proof (401 "
        "fresh_auth_required); an admin cannot disable themselves (400 cannot_disable_self)."
    ),
    tag="admin",
    auth="admin",
    params=(path_param("id_or_email", example="alice@example.com"),),
    responses={200: ok("The user", "AdminUser")},
    errors=(400, 404),
)
def disable_user(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _admin(req, svc)
    require_fresh(principal, svc.config)
    user_id, user = _lookup(svc, req.params["id_or_email"])
    if user_id == principal.user_id:
        raise bad_request("an admin cannot disable themselves", "cannot_disable_self")
    db = svc.auth.firestore
    db.collection(USERS).document(user_id).update(
        {"disabled": True, "disabled_at": utc_now(), "disabled_by": principal.user_id}
    )
    keys = db.collection(API_KEYS_COLLECTION).where(
        filter=firestore.FieldFilter("user_id", "==", user_id)
    )
    for key in keys.stream():
        key.reference.delete()
        svc.auth.sessions.api_key_deleted(user_id, key.id)
    svc.auth.sessions.end_all(user_id)
    log.warning(
        "user disabled",
        extra={"event": "user_disabled", "user_id": user_id, "by": principal.user_id},
    )
    return json_response(_user_json(svc, user_id, {**user, "disabled": True}))


@api.route(
    "POST",
    "/v1/admin/users/{id_or_email}/enable",
    summary="Enable a disabled user: they can log in again (their API keys stay deleted)",
    operation_id="enableUser",
    description="Needs the admin's recent proof (401 fresh_auth_required).",
    tag="admin",
    auth="admin",
    params=(path_param("id_or_email", example="alice@example.com"),),
    responses={200: ok("The user", "AdminUser")},
    errors=(400, 404),
)
def enable_user(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _admin(req, svc)
    require_fresh(principal, svc.config)
    user_id, user = _lookup(svc, req.params["id_or_email"])
    svc.auth.firestore.collection(USERS).document(user_id).update(
        {"disabled": False, "enabled_at": utc_now(), "enabled_by": principal.user_id}
    )
    log.warning(
        "user enabled", extra={"event": "user_enabled", "user_id": user_id, "by": principal.user_id}
    )
    return json_response(_user_json(svc, user_id, {**user, "disabled": False}))


# --------------------------------------------------------------------------------------------
# withdrawal review
# --------------------------------------------------------------------------------------------

_REVIEW_STATES: Final = ("review", "requested", "rejected", "signed", "broadcast", "confirmed",
                         "failed", "refunded")  # fmt: skip
_REVIEW_SQL: Final = """
SELECT r.withdrawal_id, r.user_id, r.asset, r.amount, r.fee, r.address, r.state, r.error,
       w.state, r.reviewed_by, r.reviewed_at, r.created_at
FROM withdrawal_requests r LEFT JOIN withdrawals w USING (withdrawal_id)
"""


class ReviewDecision(Body):
    schema_extra: ClassVar[dict[str, Any]] = {"examples": [{}, {"totp_code": "123456"}]}

    totp_code: second_factor.TotpCode = None


class Reviewed(NamedTuple):
    """A withdrawal request as the review sees it (``_REVIEW_SQL``'s columns, in order)."""

    withdrawal_id: str
    user_id: str
    asset: str
    amount: Any  # numeric: integer units of the asset
    fee: Any
    address: str
    state: str
    error: str | None
    held: str | None
    """The matcher's withdrawal state: ``held`` once it holds the funds, None before."""
    reviewed_by: str | None
    reviewed_at: datetime | None
    created_at: datetime


def _reviewed_json(row: Reviewed, precisions: dict[str, int]) -> dict[str, Any]:
    p = precisions.get(row.asset, 0)
    return {
        "id": row.withdrawal_id, "user_id": row.user_id, "asset": row.asset,
        "amount": format_units(int(row.amount), p), "fee": format_units(int(row.fee), p),
        "address": row.address, "state": row.state, "error": row.error,
        "held": row.held == "held", "reviewed_by": row.reviewed_by,
        "reviewed_at": iso(row.reviewed_at), "created_at": iso(row.created_at),
    }  # fmt: skip


def _reviewed(svc: Services, wid: str) -> Reviewed:
    rows = svc.db.run(_REVIEW_SQL + " WHERE r.withdrawal_id = :w", w=wid)
    if not rows:
        raise not_found("no such withdrawal", "withdrawal_not_found")
    return Reviewed(*rows[0])


def _awaiting_review(svc: Services, wid: str) -> Reviewed:
    """The withdrawal, waiting for review with its funds held by the matcher: 404 when there
    is none, 409 ``not_in_review`` / ``not_held`` else."""
    row = _reviewed(svc, wid)
    if row.state != "review":
        raise conflict(f"withdrawal {wid} is {row.state}, not in review", "not_in_review")
    if row.held != "held":
        raise conflict("the matcher has not held its funds yet; retry", "not_held")
    return row


_Outcome = Literal["state = 'requested'", "state = 'failed', error = 'rejected_in_review'"]
"""What approving and rejecting set (the only text ``_decide`` puts into its statement)."""


def _decide(svc: Services, wid: str, outcome: _Outcome, by: str) -> None:
    """Record the review's ``outcome`` (the SET part) only if the withdrawal is still in
    review: of two admins deciding at once, the second gets 409 ``not_in_review``."""
    done = svc.db.run(
        f"UPDATE withdrawal_requests SET {outcome}, reviewed_by = :b, reviewed_at = now(),"
        " updated_at = now() WHERE withdrawal_id = :w AND state = 'review'"
        " RETURNING withdrawal_id",
        b=by, w=wid,
    )  # fmt: skip
    if not done:
        raise conflict(f"withdrawal {wid} is no longer in review", "not_in_review")


def _reviewer(req: ApiRequest, svc: Services) -> Principal:
    """An admin, proved recently and with their second factor when it is on: approving
    sends funds out."""
    principal = _admin(req, svc)
    body = req.json(ReviewDecision) if req.body else ReviewDecision()
    second_factor.require_second_factor(svc.auth, req, principal, body.totp_code)
    return principal


@api.route(
    "GET",
    "/v1/admin/withdrawals",
    summary="Withdrawals by state (those waiting for review by default), oldest first",
    operation_id="listReviewWithdrawals",
    tag="admin",
    auth="admin",
    params=(query("state", {"type": "string", "enum": list(_REVIEW_STATES)}),),
    responses={200: ok("Withdrawals", "ReviewedWithdrawalList")},
    errors=(400,),
    description="At most 500; held says whether the matcher holds the funds yet.",
)
def list_review_withdrawals(req: ApiRequest) -> flask.Response:
    svc = services()
    _admin(req, svc)
    state = QueryParams(req, "state").text("state") or "review"
    if state not in _REVIEW_STATES:
        raise bad_request(f"state must be one of {', '.join(_REVIEW_STATES)}", "invalid_state")
    rows = svc.db.run(
        _REVIEW_SQL + " WHERE r.state = :s ORDER BY r.created_at, r.withdrawal_id LIMIT 500",
        s=state,
    )
    precisions = asset_precisions(svc.redis)
    return json_response({"withdrawals": [_reviewed_json(Reviewed(*r), precisions) for r in rows]})


@api.route(
    "POST",
    "/v1/admin/withdrawals/{id}/approve",
    summary="Approve a withdrawal waiting for review: the sender signs it",
    operation_id="approveWithdrawal",
    tag="admin",
    auth="admin",
    body=ReviewDecision,
    params=(path_param("id", example="wd_0123456789abcdef0123456789abcdef"),),
    responses={200: ok("The withdrawal", "ReviewedWithdrawal")},
    errors=(404, 409, 429),
    description=(
        "Needs the admin's recent proof (401 fresh_auth_required) and, with two-factor on, "
        "totp_code. 409 not_in_review when it is not waiting for review; 409 not_held while the "
        "matcher has not held its funds yet (retry)."
    ),
)
def approve_withdrawal(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _reviewer(req, svc)
    wid = req.params["id"]
    _awaiting_review(svc, wid)
    _decide(svc, wid, "state = 'requested'", principal.user_id)
    log.warning(
        "withdrawal approved",
        extra={"event": "withdrawal_approved", "withdrawal": wid, "by": principal.user_id},
    )
    return json_response(_reviewed_json(_reviewed(svc, wid), asset_precisions(svc.redis)))


@api.route(
    "POST",
    "/v1/admin/withdrawals/{id}/reject",
    summary="Reject a withdrawal waiting for review: its funds go back to the user",
    operation_id="rejectWithdrawal",
    tag="admin",
    auth="admin",
    body=ReviewDecision,
    params=(path_param("id", example="wd_0123456789abcdef0123456789abcdef"),),
    responses={200: ok("The withdrawal", "ReviewedWithdrawal")},
    errors=(404, 409, 429),
    description=(
        "Needs the admin's recent proof. The withdrawal becomes failed (error "
        "rejected_in_review) and the matcher refunds amount + fee (RefundWithdrawal); once it "
        "has, refunded (the withdrawal sender finishes it if the matcher answers late). 409 "
        "not_in_review, not_held as for approving."
    ),
)
def reject_withdrawal(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _reviewer(req, svc)
    wid = req.params["id"]
    row = _awaiting_review(svc, wid)
    _decide(svc, wid, "state = 'failed', error = 'rejected_in_review'", principal.user_id)
    log.warning(
        "withdrawal rejected",
        extra={"event": "withdrawal_rejected", "withdrawal": wid, "by": principal.user_id},
    )
    user = row.user_id
    # The sender's id for the same refund: whichever is applied first, the other is a duplicate.
    reply = svc.commands.send(
        RefundWithdrawal(id=f"refund:{wid}", withdrawal_id=wid), ordering_key=user,
        owner=principal.user_id,
    )  # fmt: skip
    if reply is not None and reply["ok"]:
        svc.db.run(
            "UPDATE withdrawal_requests SET state = 'refunded', updated_at = now()"
            " WHERE withdrawal_id = :w AND state = 'failed'",
            w=wid,
        )
    return json_response(_reviewed_json(_reviewed(svc, wid), asset_precisions(svc.redis)))


# --------------------------------------------------------------------------------------------
# the audit
# --------------------------------------------------------------------------------------------


@api.route(
    "GET",
    "/v1/admin/audit",
    summary="Run the conservation check over the database",
    operation_id="audit",
    tag="admin",
    auth="admin",
    responses={200: ok("The report", "Audit")},
    description=(
        "Per asset: sum of all balances (fees included) == deposits - settled withdrawals; no "
        "negative balance; every account's frozen == its open orders' holds + its held "
        "withdrawals. ok is false when anything differs."
    ),
)
def audit(req: ApiRequest) -> flask.Response:
    svc = services()
    _admin(req, svc)
    return json_response(
        svc.db.call(books_audit.audit)
    )  # Postgres down: the Api wrapper answers 503


def _int_arg(req: ApiRequest, name: str, default: int | None, top: int) -> int | None:
    raw = req.raw.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= top:
        raise bad_request(f"{name} must be an integer from 1 to {top}")
    return int(raw)


@api.route(
    "GET",
    "/v1/admin/audits",
    summary="The audits' stored results, newest first",
    operation_id="listAudits",
    tag="admin",
    auth="admin",
    params=(
        query("kind", {"type": "string", "enum": list(audit_runs.KINDS)}, "one kind only"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": audit_runs.MAX_HISTORY}),
    ),
    responses={200: ok("The runs", "AuditRuns")},
    errors=(400, 401, 403, 503),
    description=(
        "Each scheduled (or requested) run of the books' conservation audit and of the "
        "on-chain audit, with its report; ok is false when the run found a difference (an "
        "alert was raised). docs/operations.md."
    ),
)
def list_audits(req: ApiRequest) -> flask.Response:
    svc = services()
    _admin(req, svc)
    kind = req.raw.args.get("kind")
    if kind is not None and kind not in audit_runs.KINDS:
        raise bad_request(f"kind must be one of {', '.join(audit_runs.KINDS)}")
    limit = _int_arg(req, "limit", 50, audit_runs.MAX_HISTORY) or 50
    runs = svc.db.call(lambda db: audit_runs.history(db, kind, limit))
    return json_response({"audits": runs})


@api.route(
    "POST",
    "/v1/admin/audits/books",
    summary="Run the books' conservation audit now and store its result",
    operation_id="runBooksAudit",
    tag="admin",
    auth="admin",
    responses={201: ok("The stored run", "AuditRun")},
    errors=(401, 403, 503),
    description="As the schedule runs it: the result is stored, and a difference alerts.",
)
def run_books_audit(req: ApiRequest) -> flask.Response:
    svc = services()
    _admin(req, svc)

    def run(db: Any) -> dict[str, Any]:
        return audit_runs.get(db, audit_runs.run_books(db)["run_id"])

    return json_response(svc.db.call(run), status=201)


@api.route(
    "GET",
    "/v1/admin/actions",
    summary="The admin actions' log, newest first",
    operation_id="listAdminActions",
    tag="admin",
    auth="admin",
    params=(
        query("before", {"type": "integer", "minimum": 1}, "only actions with a smaller id"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": admin_actions.MAX_LISTED}),
    ),
    responses={200: ok("The actions", "AdminActions")},
    errors=(400, 401, 403, 503),
    description=(
        "Every admin action (any admin route but a read): who, what, when, from where, with "
        "the request's body (secrets removed). Append-only: nothing in the product changes "
        "or removes an entry, and the database refuses to."
    ),
)
def list_admin_actions(req: ApiRequest) -> flask.Response:
    svc = services()
    _admin(req, svc)
    before = _int_arg(req, "before", None, 2**62)
    limit = _int_arg(req, "limit", 100, admin_actions.MAX_LISTED) or 100
    actions = svc.db.call(lambda db: admin_actions.listing(db, before, limit))
    return json_response({"actions": actions})


# --------------------------------------------------------------------------------------------
# a user's sessions
# --------------------------------------------------------------------------------------------


@api.route(
    "GET",
    "/v1/admin/users/{id_or_email}/sessions",
    summary="A user's live sessions (logins)",
    operation_id="listUserSessions",
    tag="admin",
    auth="admin",
    params=(path_param("id_or_email", example="alice@example.com"),),
    responses={200: ok("The sessions", "AdminUserSessions")},
    errors=(404,),
    description=(
        "Each login that still works: not logged out, not ended by a password or role change "
        "or by disabling the user, with an unspent, unexpired refresh token. Disabling the "
        "user ends them all."
    ),
)
def list_user_sessions(req: ApiRequest) -> flask.Response:
    svc = services()
    _admin(req, svc)
    user_id, user = _lookup(svc, req.params["id_or_email"])
    live = sessions.live_sessions(svc.auth.firestore, user_id, user, utc_now())
    return json_response({"user_id": user_id, "sessions": live})


# --------------------------------------------------------------------------------------------
# dead letters (docs/decisions/0025)
# --------------------------------------------------------------------------------------------

_LETTER_ID: Final = path_param(
    "id", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}, example="4711"
)


class _Hold:
    """The hold subscription of the dead-letter topic, and a client to pull from it."""

    def __init__(self) -> None:
        cfg = PubSubConfig.load()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.path = self.subscriber.subscription_path(cfg.project, hold_subscription(cfg))

    def close(self) -> None:
        self.subscriber.close()


@per_instance
def _hold() -> _Hold:
    return _Hold()


def _letter_or_404(svc: Services, message_id: str) -> dict[str, Any]:
    letter = svc.db.call(lambda db: dead_letters.get(db, message_id))
    if letter is None:
        raise not_found("no such dead letter", "dead_letter_not_found")
    return letter


@api.route(
    "GET",
    "/v1/admin/dead-letters",
    summary="The commands that reached the dead-letter topic, newest first",
    operation_id="listDeadLetters",
    tag="admin",
    auth="admin",
    params=(
        query("state", {"type": "string", "enum": list(dead_letters.STATES)}, "one state only"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": dead_letters.MAX_LISTED}),
    ),
    responses={200: ok("The dead letters", "DeadLetters")},
    errors=(400, 401, 403, 503),
    description=(
        "What waits on the dead-letter topic's hold subscription is first moved into the "
        "exchange's table (acknowledged once stored), then listed: each with its command "
        "(id, type, producer, ordering key, a preview with secret-looking fields removed), "
        "why it was dead-lettered (reason: undecodable, unsigned, unknown_producer, "
        "bad_signature, forbidden_command when the matcher refused it; delivery_attempts when "
        "Pub/Sub gave up on it) and what was decided."
    ),
)
def list_dead_letters(req: ApiRequest) -> flask.Response:
    svc = services()
    _admin(req, svc)
    state = req.raw.args.get("state")
    if state is not None and state not in dead_letters.STATES:
        raise bad_request(f"state must be one of {', '.join(dead_letters.STATES)}")
    limit = _int_arg(req, "limit", 100, dead_letters.MAX_LISTED) or 100
    hold = _hold()
    try:
        drained = dead_letters.drain(hold.subscriber, hold.path, svc.db.call)
    except gexc.GoogleAPICallError as exc:
        log.warning("dead letters not drained", extra={"error": repr(exc)})
        raise ApiError(
            503, "unavailable", "the dead-letter subscription cannot be read now"
        ) from None
    if drained:
        log.warning(
            "dead letters received", extra={"event": "dead_letters_received", "count": drained}
        )
    letters = svc.db.call(lambda db: dead_letters.listing(db, state, limit))
    return json_response({"dead_letters": letters})


@api.route(
    "POST",
    "/v1/admin/dead-letters/{id}/redrive",
    summary="Re-drive a dead letter: its command is published again, as it was",
    operation_id="redriveDeadLetter",
    tag="admin",
    auth="admin",
    params=(_LETTER_ID,),
    responses={200: ok("The dead letter now", "DeadLetter")},
    errors=(404, 409, 503),
    description=(
        "Its data and its producer's signature, with its ordering key, go to the commands "
        "topic once, however often this is asked (409 not_held after the first). The matcher "
        "checks the signature again and applies a command id once: one it already applied is "
        "answered as before. A command the matcher refused (undecodable, unsigned, bad "
        "signature, forbidden) would be refused again: 409 not_redrivable; discard it."
    ),
)
def redrive_dead_letter(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _admin(req, svc)
    message_id = req.params["id"]
    letter = _letter_or_404(svc, message_id)
    if letter["reason"] in dead_letters.FINAL_REASONS:
        raise conflict(
            f"the matcher refused it ({letter['reason']}): it would refuse it again",
            "not_redrivable",
        )
    claim = svc.db.call(lambda db: dead_letters.claim_redrive(db, message_id, principal.user_id))
    if claim is None:
        raise conflict(f"dead letter {message_id} is {letter['state']}, not held", "not_held")
    data, attributes, ordering_key = claim
    try:
        new_id = svc.commands.publisher().publish_signed(data, attributes, ordering_key)
    except Exception:
        svc.db.call(lambda db: dead_letters.release(db, message_id))
        raise
    svc.db.call(lambda db: dead_letters.redriven(db, message_id, new_id))
    log.warning(
        "dead letter re-driven",
        extra={"event": "dead_letter_redriven", "dead_letter": message_id,
               "command_id": letter["command_id"], "by": principal.user_id},
    )  # fmt: skip
    return json_response(_letter_or_404(svc, message_id))


@api.route(
    "POST",
    "/v1/admin/dead-letters/{id}/discard",
    summary="Discard a dead letter: it stays listed, as discarded, and is never applied",
    operation_id="discardDeadLetter",
    tag="admin",
    auth="admin",
    params=(_LETTER_ID,),
    responses={200: ok("The dead letter now", "DeadLetter")},
    errors=(404, 409),
    description="409 not_held when it was re-driven or discarded already.",
)
def discard_dead_letter(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _admin(req, svc)
    message_id = req.params["id"]
    letter = _letter_or_404(svc, message_id)
    if not svc.db.call(lambda db: dead_letters.discard(db, message_id, principal.user_id)):
        raise conflict(f"dead letter {message_id} is {letter['state']}, not held", "not_held")
    log.warning(
        "dead letter discarded",
        extra={"event": "dead_letter_discarded", "dead_letter": message_id,
               "command_id": letter["command_id"], "by": principal.user_id},
    )  # fmt: skip
    return json_response(_letter_or_404(svc, message_id))
