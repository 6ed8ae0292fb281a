"""The wallet function: the caller's deposit address and deposits, and withdrawals.

Its routes, with their parameters, bodies and answers, are declared below with ``api.route``;
the OpenAPI document made from them (``GET /v1/openapi.json``, functions/docs/openapi.json) is
where to read them.

Reads need a token or an API key with the ``read`` scope (the withdrawal routes also take a
``withdraw`` key, so a key can follow what it sent). ``POST /v1/withdrawals`` needs the
``withdraw`` scope and counts against the trade rate limits (``TRADE_RATE_*``). With a token it
also needs a fresh proof (``auth_time`` within ``FRESH_AUTH_MAX_AGE_S``: login or
``POST /v1/auth/reauth``; else 401 ``fresh_auth_required``); an API key with the ``withdraw``
scope is its own proof (making it needed one, and its secret signs each request). With
two-factor on, a withdrawal made with a token also carries ``totp_code`` (api.second_factor).

The withdrawal address allow-list (wallet.allow_list): with it on, only saved addresses past
their waiting time (``WITHDRAWAL_ADDRESS_DELAY_S``) may receive (403 ``address_not_saved``,
``address_not_yet_usable``). Above the asset's ``withdrawal_review_threshold`` a request is
stored in state ``review``: an admin approves or rejects it (functions/admin) before the sender
may sign it.

Deposit addresses: one per user and chain (ETH and its tokens share it), BIP-44 index from the
Postgres sequence ``deposit_address_index``, kept in Firestore (wallet.addresses). The HD
wallet comes from ``WALLET_MNEMONIC`` / ``_FILE`` / ``_SECRET`` (shared.config.WalletConfig),
read once per instance; neither it nor any key is ever logged or answered.

A withdrawal is checked before anything is stored: the asset is known (``unknown_asset``) and
listed on the chain (``no_chain``); the amount is a decimal string within the asset's precision
and positive (``bad_amount``) and at least the asset's minimum (``below_min_withdrawal``); the
address is ``0x`` + 40 hex (``invalid_address``), not the zero address (``invalid_address``),
and, when it mixes upper and lower case, carries a valid EIP-55 checksum (``invalid_checksum``;
all lowercase or all uppercase hex carries none and is accepted, as wallets and explorers show
addresses both ways). All 400. The address is stored and shown checksummed. The asset's
withdrawal fee is charged on top of the amount (the matcher holds amount + fee). Then, under
a per-user advisory lock in one Postgres transaction, the rolling 24 h sum of the user's
requests for the asset (all but rejected and refunded ones) plus this one must stay within the
asset's daily limit (422 ``daily_limit_exceeded``), and the ``withdrawal_requests`` row is
inserted (``requested``). The ``RequestWithdrawal`` command goes to the matcher with the user as
ordering key; its refusal (422 ``insufficient_funds``, ...) marks the row ``rejected``; no
verdict within ``API_REPLY_WAIT_S`` answers 202. A publish that fails (503) marks the row
rejected (``not_queued``): nothing was held. The withdrawal sender (wallet.sender)
moves it on.

``Idempotency-Key``: a retry with the same key and request answers with the first request's
withdrawal (the withdrawal id is derived from the command id), never storing a second one.

Cursors are opaque, signed strings (``next_cursor``; null on the last page; api.cursors),
valid for the listing and the user they were made for; query parameters are strict as in the
queries function (unknown, repeated or empty ones, a bad cursor answer 400).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, TypeVar

import flask
import msgspec
import orjson
from eth_utils.address import is_checksum_address, to_checksum_address

from api import second_factor
from api.auth import Principal, authenticate, require_fresh, require_session
from api.cursors import Cursors, default_cursors
from api.dispatch import Idempotency, Services, fingerprint, new_command_id, rejection
from api.http import (
    Api,
    ApiError,
    ApiRequest,
    Body,
    DecimalText,
    bad_request,
    conflict,
    json_response,
    no_content,
    not_found,
    unavailable,
)
from api.openapi import ASSET_PATTERN, CURSOR, IDEMPOTENCY, LIMIT, STR, ok, path_param, query
from api.params import QueryParams
from shared import logs
from shared.config import ConfigError, WalletConfig
from shared.db import Database
from shared.instance import close_members, lazy, per_instance
from shared.messages import Reason, RequestWithdrawal
from shared.money import MoneyError, format_units, parse_units
from shared.redis_keys import ASSET_CHAINS_KEY, ASSETS_KEY
from shared.redis_values import asset_precisions
from shared.times import iso
from wallet import allow_list
from wallet.addresses import allocate, next_index_from
from wallet.assets import AssetChain
from wallet.keys import HdWallet

logs.setup()
log = logging.getLogger("api.wallet")

api = Api("wallet", authenticate=authenticate, scope="read")
T = TypeVar("T")

PAGE_DEFAULT, PAGE_MAX = 50, 500
WITHDRAWAL_PREFIX: Final = "wd_"
_WITHDRAWAL_ID_RE: Final = re.compile(r"wd_[0-9a-f]{32}")
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_ZERO_ADDRESS: Final = "0x" + "0" * 40
_LOCK_CLASS: Final = 0x77D1  # the first key of the per-user withdrawal advisory lock
STATES_NOT_COUNTED: Final = ("rejected", "refunded")
"""Withdrawal requests that do not count against the daily limit: nothing left the exchange."""


class NewWithdrawal(Body):
    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [
            {
                "asset": "ETH",
                "amount": "0.05",
                "address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            }
        ]
    }

    asset: Annotated[str, msgspec.Meta(max_length=12)]
    amount: Annotated[
        DecimalText, msgspec.Meta(description="what arrives; the fee is charged on top")
    ]
    address: Annotated[
        str,
        msgspec.Meta(
            max_length=64,
            extra_json_schema={"pattern": "^0x[0-9a-fA-F]{40}$"},
            description=(
                "EIP-55: mixed case with a valid checksum, or all lowercase or all uppercase "
                "(no checksum); stored and shown checksummed"
            ),
        ),
    ]
    totp_code: second_factor.TotpCode = None


class NewWithdrawalAddress(Body):
    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [{"address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "label": "cold"}]
    }

    address: Annotated[
        str, msgspec.Meta(max_length=64, extra_json_schema={"pattern": "^0x[0-9a-fA-F]{40}$"})
    ]
    label: Annotated[str, msgspec.Meta(max_length=64)] = ""
    totp_code: second_factor.TotpCode = None


class AllowListSwitch(Body):
    schema_extra: ClassVar[dict[str, Any]] = {"examples": [{"on": True}]}

    on: bool
    totp_code: second_factor.TotpCode = None


def wallet(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return api(request)


# --------------------------------------------------------------------------------------------
# what the function holds for its instance's life
# --------------------------------------------------------------------------------------------


class WalletServices(Services):
    """A command-sending function's services (api.dispatch) and the wallet's own, each built
    on its first use (shared.instance): the chain's configuration and the deposit addresses'
    HD wallet (its seed is derived once: PBKDF2 is slow). A wallet that is not configured
    answers 503 on the routes that need it, logged with the variables' names, never a secret."""

    @lazy
    def wallet_config(self) -> WalletConfig:
        return _configured(WalletConfig.load)

    @lazy
    def hd(self) -> HdWallet:
        mnemonic = self.wallet_config.mnemonic
        return _configured(lambda: HdWallet.from_source(mnemonic))

    @property
    def cursors(self) -> Cursors:
        """The API layer's own per-instance cursor key (api.cursors)."""
        return default_cursors()

    def close(self) -> None:
        close_members(self)
        super().close()


@per_instance
def services() -> WalletServices:
    return WalletServices.from_environment()


def _configured(load: Callable[[], T]) -> T:
    try:
        return load()
    except ConfigError as exc:  # the message names variables, never the secret
        log.error("wallet configuration", extra={"error": str(exc)})
        raise unavailable("the wallet is not configured; try again later") from None


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _withdrawer(req: ApiRequest, svc: WalletServices) -> Principal:
    principal = authenticate(req, svc.auth)  # and its scope: the route's (api.http)
    require_fresh(principal, svc.config)  # a token alone is not enough to move funds out
    cfg, limiter = svc.config, svc.auth.limiter
    limiter.hit("trade:user", principal.user_id, cfg.trade_rate_per_user, cfg.trade_rate_window_s)
    limiter.hit("trade:ip", req.client_ip, cfg.trade_rate_per_ip, cfg.trade_rate_window_s)
    return principal


class Precisions:
    """Asset precisions from Redis; an asset Redis lacks (flushed, rebuild pending) is looked
    up in the ``assets`` table."""

    def __init__(self, svc: WalletServices) -> None:
        self._svc = svc
        self._known = asset_precisions(svc.redis)
        self._complete = False

    def __call__(self, asset: str) -> int:
        if asset not in self._known and not self._complete:
            self._complete = True
            rows = self._svc.db.run("SELECT asset, precision FROM assets")
            for name, precision in rows:
                self._known.setdefault(name, int(precision))
        if asset not in self._known:
            raise LookupError(f"no definition of asset {asset!r}")
        return self._known[asset]


def _asset_chain(svc: WalletServices, asset: str) -> AssetChain:
    """The asset's chain rules; 400 ``unknown_asset`` or ``no_chain``."""
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hget(ASSETS_KEY, asset)
    pipe.hget(ASSET_CHAINS_KEY, asset)
    raw_asset, raw_chain = pipe.execute()
    if raw_asset is None:
        raise bad_request(f"unknown asset {asset!r}", Reason.UNKNOWN_ASSET)
    if raw_chain is None:
        raise bad_request(
            f"asset {asset} is not listed on a chain: no deposits or withdrawals", "no_chain"
        )
    precision = int(orjson.loads(raw_asset)["precision"])
    default_confirmations = svc.wallet_config.confirmations
    try:
        return AssetChain.parse(asset, precision, orjson.loads(raw_chain), default_confirmations)
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        log.error("malformed chain details", extra={"asset": asset, "error": repr(exc)})
        raise unavailable(f"the chain details of {asset} are unavailable; try again") from None


class Params(QueryParams):
    """The query string, checked (api.params), with this function's cursors."""

    def cursor(self, listing: str, user: str) -> tuple[datetime, str] | None:
        """The (time, key) a page of ``listing`` starts after (api.cursors); 400 unless
        this API made the cursor for this listing and user."""
        raw = self.text("cursor")
        return None if raw is None else services().cursors.open_time_key(listing, user, raw)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A page of one of the caller's listings as asked for, checked: the caller, the page's
    size, its SQL conditions (the caller's rows, of the asset asked for, after the cursor's
    time and key) with their arguments, and the assets' precisions."""

    listing: str
    user: str
    limit: int
    where: str
    args: dict[str, Any]
    precision: Precisions

    @staticmethod
    def of(
        req: ApiRequest, svc: WalletServices, listing: str, *, time: str, key: str, prefix: str = ""
    ) -> PageQuery:
        """Rows newest first by the column ``time``, then by ``key``; ``prefix`` qualifies
        the columns (``d.``) where the query joins another table."""
        user = authenticate(req, svc.auth).user_id
        params = Params(req, "asset", "limit", "cursor")
        limit = params.limit(PAGE_DEFAULT, PAGE_MAX)
        cursor = params.cursor(listing, user)
        precision = Precisions(svc)
        asset = _asset_param(params, precision)
        where = [f"{prefix}user_id = :u"]
        args: dict[str, Any] = {"u": user, "n": limit + 1}
        if asset is not None:
            where.append(f"{prefix}asset = :a")
            args["a"] = asset
        if cursor is not None:
            t, k = prefix + time, prefix + key
            where.append(f"({t} < :t OR ({t} = :t AND {k} > :k))")
            args["t"], args["k"] = cursor
        return PageQuery(listing, user, limit, " AND ".join(where), args, precision)

    def answer(
        self, items: list[dict[str, Any]], rows: Sequence[Sequence[Any]], time_at: int, key_at: int
    ) -> flask.Response:
        """``limit + 1`` rows were read: the extra one only says that another page exists;
        the cursor is the time and key (``rows``' columns ``time_at``, ``key_at``) of the
        page's last row."""
        cursor = None
        if len(items) > self.limit:
            last = rows[self.limit - 1]
            time, key = last[time_at], str(last[key_at])
            cursor = services().cursors.make_time_key(self.listing, self.user, time, key)
        return json_response({self.listing: items[: self.limit], "next_cursor": cursor})


def _asset_param(params: Params, precision: Precisions) -> str | None:
    asset = params.text("asset")
    if asset is not None:
        try:
            precision(asset)
        except LookupError:
            raise bad_request(f"unknown asset {asset!r}", Reason.UNKNOWN_ASSET) from None
    return asset


# --------------------------------------------------------------------------------------------
# deposits
# --------------------------------------------------------------------------------------------


@api.route(
    "GET",
    "/v1/deposits/address",
    summary="The caller's deposit address for an asset",
    operation_id="getDepositAddress",
    tag="wallet",
    scope="read",
    params=(query("asset", {"type": "string", "pattern": ASSET_PATTERN}, required=True),),
    responses={200: ok("The address", "DepositAddress")},
    errors=(400, 429),
    description=(
        "Made on the first call, the same afterwards; one per user and chain (ETH and its "
        "tokens share it). unknown_asset, no_chain (the asset is not on a chain): 400."
    ),
)
def deposit_address(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = authenticate(req, svc.auth)
    params = Params(req, "asset")
    asset = params.text("asset")
    if asset is None:
        raise bad_request("query parameter 'asset' is required", "missing_parameter")
    chain = _asset_chain(svc, asset)
    chain_id = svc.wallet_config.chain_id
    hd = svc.hd

    def next_index() -> int:
        return int(svc.db.call(lambda db: next_index_from(lambda: db)()))

    try:
        address = allocate(svc.auth.firestore, next_index, hd, chain_id, principal.user_id)
    except ApiError:
        raise
    except Exception:
        log.exception("could not allocate a deposit address", extra={"user_id": principal.user_id})
        raise unavailable("the deposit address could not be made; try again") from None
    return json_response(
        {
            "asset": chain.asset,
            "chain_id": chain_id,
            "address": address,
            "kind": chain.kind,
            "contract": chain.contract,
            "decimals": chain.decimals,
            "confirmations": chain.confirmations,
            "min_deposit": format_units(chain.min_deposit, chain.precision),
        },
        headers={"Cache-Control": "no-store"},
    )


_DEPOSIT_SQL: Final = """
SELECT d.ref, d.asset, d.amount, d.tx_hash, d.log_index, d.block_number,
       d.confirmations_required, d.status, d.dust, d.address, d.seen_at, d.credited_at, c.head
FROM chain_deposits d LEFT JOIN chain_cursor c ON c.chain_id = d.chain_id
WHERE {where} ORDER BY d.seen_at DESC, d.ref LIMIT :n
"""


def _confirmations(status: str, block: int, required: int, head: int | None) -> int:
    if status == "orphaned" or head is None:
        return 0
    seen = max(0, head - block + 1)
    return min(seen, required) if status == "pending" else seen


def _deposit_json(row: Sequence[Any], precision: Callable[[str], int]) -> dict[str, Any]:
    (ref, asset, amount, tx_hash, log_index, block, required, status, dust, address, seen_at,
     credited_at, head) = row  # fmt: skip
    return {
        "id": ref,
        "asset": asset,
        "amount": format_units(int(amount), precision(asset)),
        "tx_hash": tx_hash,
        "log_index": int(log_index),
        "block_number": int(block),
        "confirmations": _confirmations(
            status, int(block), int(required), None if head is None else int(head)
        ),
        "confirmations_required": int(required),
        "status": status,
        "dust": str(int(dust)),
        "address": address,
        "created_at": iso(seen_at),
        "credited_at": iso(credited_at),
    }


@api.route(
    "GET",
    "/v1/deposits",
    summary="The caller's chain deposits, newest first",
    operation_id="listDeposits",
    tag="wallet",
    scope="read",
    params=(
        query("asset", STR),
        LIMIT,
        CURSOR,
    ),
    responses={200: ok("A page", "DepositList")},
    errors=(400, 429),
    description=(
        "Every transfer seen to the caller's address, pending ones with their confirmations so far."
    ),
)
def list_deposits(req: ApiRequest) -> flask.Response:
    svc = services()
    page = PageQuery.of(req, svc, "deposits", time="seen_at", key="ref", prefix="d.")
    rows = svc.db.run(_DEPOSIT_SQL.format(where=page.where), **page.args)
    return page.answer([_deposit_json(row, page.precision) for row in rows], rows, 10, 0)


# --------------------------------------------------------------------------------------------
# withdrawals
# --------------------------------------------------------------------------------------------

# A withdrawal reads ``confirmed`` only once the books show it settled: between the sender
# marking it mined and the matcher applying its SettleWithdrawal, the amount is still frozen,
# and a caller who waits for ``confirmed`` and then reads its balances must see them final.
_WITHDRAWAL_COLUMNS: Final = (
    "withdrawal_id, asset, amount, fee, address,"
    " CASE WHEN state = 'confirmed' AND EXISTS (SELECT 1 FROM withdrawals h"
    " WHERE h.withdrawal_id = withdrawal_requests.withdrawal_id AND h.state = 'held')"
    " THEN 'broadcast' ELSE state END,"
    " tx_hash, error, created_at, updated_at"
)


def _withdrawal_json(row: Sequence[Any], precision: Callable[[str], int]) -> dict[str, Any]:
    wid, asset, amount, fee, address, state, tx_hash, error, created_at, updated_at = row
    p = precision(asset)
    return {
        "id": wid,
        "asset": asset,
        "amount": format_units(int(amount), p),
        "fee": format_units(int(fee), p),
        "address": to_checksum_address(address),
        "state": state,
        "tx_hash": tx_hash,
        "error": error,
        "created_at": iso(created_at),
        "updated_at": iso(updated_at),
    }


def _checked_address(address: str) -> str:
    """The address in its checksummed form (EIP-55). All lowercase or all uppercase hex
    carries no checksum and is taken as it is; mixed case must carry a valid one."""
    if not _ADDRESS_RE.fullmatch(address):
        raise bad_request(
            "address must be an Ethereum address: 0x followed by 40 hex digits",
            "invalid_address",
        )
    if address.lower() == _ZERO_ADDRESS:
        raise bad_request("the zero address cannot receive a withdrawal", "invalid_address")
    digits = address[2:]
    if digits not in (digits.lower(), digits.upper()) and not is_checksum_address(address):
        raise bad_request(
            "the address's EIP-55 checksum (its mix of upper and lower case) does not match: "
            "it is probably mistyped",
            "invalid_checksum",
        )
    return to_checksum_address(address)


def _get_withdrawal(svc: WalletServices, user: str, wid: str) -> list[Any] | None:
    rows = svc.db.run(
        f"SELECT {_WITHDRAWAL_COLUMNS} FROM withdrawal_requests"
        " WHERE withdrawal_id = :w AND user_id = :u",
        w=wid,
        u=user,
    )
    return list(rows[0]) if rows else None


def _mark_rejected(svc: WalletServices, wid: str, reason: str) -> None:
    svc.db.run(
        "UPDATE withdrawal_requests SET state = 'rejected', error = :e, updated_at = now()"
        " WHERE withdrawal_id = :w AND state IN ('requested', 'review')",
        e=reason,
        w=wid,
    )


@dataclass(frozen=True, slots=True)
class _Request:
    withdrawal_id: str
    command_id: str
    user: str
    chain: AssetChain
    amount: int
    fee: int
    address: str
    chain_id: int

    @property
    def state(self) -> str:
        """``review`` above the asset's review threshold (an admin approves or rejects it;
        the sender signs only ``requested`` ones), else ``requested``."""
        threshold = self.chain.review_threshold
        return "review" if threshold is not None and self.amount > threshold else "requested"


def _store(db: Database, r: _Request) -> int | None:
    """Insert the request under the user's advisory lock; None when stored (or found stored
    by an earlier try of this same transaction), else the units left of the daily limit."""
    db.run("BEGIN")
    try:
        db.run("SELECT pg_advisory_xact_lock(:c, hashtext(:u))", c=_LOCK_CLASS, u=r.user)
        if db.run("SELECT 1 FROM withdrawal_requests WHERE withdrawal_id = :w", w=r.withdrawal_id):
            db.run("ROLLBACK")
            return None
        limit = r.chain.withdrawal_daily_limit
        if limit is not None:
            used = db.run(
                "SELECT coalesce(sum(amount), 0) FROM withdrawal_requests WHERE user_id = :u"
                " AND asset = :a AND created_at > now() - interval '24 hours'"
                " AND state NOT IN ('rejected', 'refunded')",
                u=r.user,
                a=r.chain.asset,
            )[0][0]
            if int(used) + r.amount > limit:
                db.run("ROLLBACK")
                return max(0, limit - int(used))
        db.run(
            "INSERT INTO withdrawal_requests (withdrawal_id, user_id, asset, amount, fee,"
            " token_amount, address, chain_id, state, command_id)"
            " VALUES (:w, :u, :a, :amount, :fee, :token, :addr, :chain, :state, :cmd)",
            w=r.withdrawal_id, u=r.user, a=r.chain.asset, amount=r.amount, fee=r.fee,
            token=r.chain.to_token(r.amount), addr=r.address, chain=r.chain_id,
            state=r.state, cmd=r.command_id,
        )  # fmt: skip
        db.run("COMMIT")
        return None
    except BaseException:
        with contextlib.suppress(Exception):
            db.run("ROLLBACK")
        raise


def _withdrawal_pending(wid: str, command_id: str, state: str) -> flask.Response:
    return json_response(
        {"withdrawal_id": wid, "command_id": command_id, "state": state},
        status=202,
        headers={"Location": f"/v1/withdrawals/{wid}"},
    )


def _created(svc: WalletServices, user: str, wid: str, command_id: str) -> flask.Response:
    row = _get_withdrawal(svc, user, wid)
    if row is None:  # pragma: no cover - the row was stored before publishing
        raise unavailable("the withdrawal could not be read back; try again")
    return json_response(
        _withdrawal_json(row, Precisions(svc)),
        status=201,
        headers={"Location": f"/v1/withdrawals/{wid}", "X-Command-Id": command_id},
    )


def _verdict(
    svc: WalletServices, user: str, wid: str, command_id: str, reply: dict[str, Any] | None
) -> flask.Response:
    if reply is None:
        row = _get_withdrawal(svc, user, wid)
        return _withdrawal_pending(wid, command_id, row[5] if row else "requested")
    if not reply["ok"]:
        _mark_rejected(svc, wid, str(reply.get("reason") or "rejected"))
        raise rejection(reply)
    return _created(svc, user, wid, command_id)


def _repeat(svc: WalletServices, user: str, command_id: str) -> flask.Response:
    """The answer to a retry with the same ``Idempotency-Key``: the first request's."""
    wid = WITHDRAWAL_PREFIX + command_id
    row = _get_withdrawal(svc, user, wid)
    if row is None:
        raise conflict(
            "the first request with this Idempotency-Key is still being processed; retry",
            "idempotency_key_in_use",
        )
    state, error = row[5], row[7]
    if state == "rejected":
        raise rejection({"ok": False, "reason": error, "command_id": command_id})
    if state not in ("requested", "review"):
        return _created(svc, user, wid, command_id)
    reply = svc.commands.result(command_id) or svc.commands.poll(command_id, svc.commands.wait_s)
    return _verdict(svc, user, wid, command_id, reply)


@api.route(
    "POST",
    "/v1/withdrawals",
    summary="Withdraw to an address on the chain",
    operation_id="requestWithdrawal",
    tag="wallet",
    scope="withdraw",
    body=NewWithdrawal,
    params=(IDEMPOTENCY,),
    responses={
        201: ok(
            "Held by the matcher; the sender signs and sends it",
            "Withdrawal",
            {
                "Location": {"schema": {"type": "string"}, "description": "/v1/withdrawals/{id}"},
                "X-Command-Id": {"schema": {"type": "string"}},
            },
        ),
        202: ok(
            "Stored and queued; the matcher has not answered in time",
            "WithdrawalPending",
            {"Location": {"schema": {"type": "string"}, "description": "/v1/withdrawals/{id}"}},
        ),
    },
    errors=(409, 422, 429),
    description=(
        "A token also needs a recent proof (401 fresh_auth_required: POST /v1/auth/reauth) "
        "and, with two-factor on, totp_code (401 totp_required / invalid_totp_code); an API "
        "key with the withdraw scope is its own proof. Checked "
        "before anything is stored (400: unknown_asset, no_chain, bad_amount, "
        "below_min_withdrawal, invalid_address, invalid_checksum); with the allow-list on, the "
        "address must be saved (403 address_not_saved) and past its delay (403 "
        "address_not_yet_usable); the asset's daily limit per "
        "user (422 daily_limit_exceeded). The matcher holds amount + fee (422 "
        "insufficient_funds); 202 when it has not answered in time. A retry with the same "
        "Idempotency-Key answers with the same withdrawal (409 idempotency_key_in_use while the "
        "first is still being stored). Above the asset's review threshold it is held in state "
        "review until an admin approves it (then requested) or rejects it (refunded)."
    ),
)
def request_withdrawal(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _withdrawer(req, svc)
    user = principal.user_id
    key = Idempotency.key_of(req)  # a malformed key is refused before anything else
    body = req.json(NewWithdrawal)
    chain = _asset_chain(svc, body.asset)
    try:
        amount = parse_units(body.amount, chain.precision, "amount")
    except MoneyError as exc:
        raise bad_request(str(exc), Reason.BAD_AMOUNT) from None
    if amount <= 0:
        raise bad_request("amount must be positive", Reason.BAD_AMOUNT)
    if amount < chain.min_withdrawal:
        minimum = format_units(chain.min_withdrawal, chain.precision)
        raise bad_request(
            f"the smallest withdrawal of {chain.asset} is {minimum}", "below_min_withdrawal"
        )
    address = _checked_address(body.address)
    _allow_listed(svc, user, address)
    chain_id = svc.wallet_config.chain_id

    command_id = new_command_id()
    if key is not None:
        # The code is not part of the request's identity: a retry may carry a newer one.
        same = msgspec.structs.replace(body, totp_code=None)
        request_fp = fingerprint("POST /v1/withdrawals", msgspec.json.encode(same))
        first = svc.idempotency.begin(user, key, request_fp, command_id)
        if first is not None:
            return _repeat(svc, user, first)
    try:
        # (The fresh proof again: _withdrawer checked it before the rate limits counted.)
        second_factor.require_second_factor(svc.auth, req, principal, body.totp_code)
    except Exception:
        if key is not None:
            svc.idempotency.abandon(user, key, command_id)
        raise
    r = _Request(
        withdrawal_id=WITHDRAWAL_PREFIX + command_id, command_id=command_id, user=user,
        chain=chain, amount=amount, fee=chain.withdrawal_fee, address=address,
        chain_id=chain_id,
    )  # fmt: skip
    try:
        left = svc.db.call(lambda db: _store(db, r))
    except Exception:
        if key is not None:
            svc.idempotency.abandon(user, key, command_id)
        raise
    if left is not None:
        if key is not None:  # nothing was done: a retry with the key is a new request
            svc.idempotency.abandon(user, key, command_id)
        assert chain.withdrawal_daily_limit is not None
        p = chain.precision
        raise ApiError(
            422,
            "daily_limit_exceeded",
            f"this would exceed the daily withdrawal limit of "
            f"{format_units(chain.withdrawal_daily_limit, p)} {chain.asset} "
            f"(left for the last 24 hours: {format_units(left, p)})",
        )
    cmd = RequestWithdrawal(
        id=command_id, user=user, asset=chain.asset, amount=amount, fee=r.fee,
        withdrawal_id=r.withdrawal_id,
    )  # fmt: skip
    try:
        reply = svc.commands.send(cmd, ordering_key=user, owner=user)
    except ApiError:
        # Not queued: nothing was held. The row stays as a record, rejected.
        _mark_rejected(svc, r.withdrawal_id, "not_queued")
        if key is not None:
            svc.idempotency.abandon(user, key, command_id)
        raise
    return _verdict(svc, user, r.withdrawal_id, command_id, reply)


@api.route(
    "GET",
    "/v1/withdrawals",
    summary="The caller's withdrawals, newest first",
    operation_id="listWithdrawals",
    tag="wallet",
    scope=("read", "withdraw"),
    params=(
        query("asset", STR),
        LIMIT,
        CURSOR,
    ),
    responses={200: ok("A page", "WithdrawalList")},
    errors=(400, 429),
)
def list_withdrawals(req: ApiRequest) -> flask.Response:
    svc = services()
    page = PageQuery.of(req, svc, "withdrawals", time="created_at", key="withdrawal_id")
    sql = (
        f"SELECT {_WITHDRAWAL_COLUMNS} FROM withdrawal_requests WHERE {page.where}"
        " ORDER BY created_at DESC, withdrawal_id LIMIT :n"
    )
    rows = svc.db.run(sql, **page.args)
    return page.answer([_withdrawal_json(row, page.precision) for row in rows], rows, 8, 0)


@api.route(
    "GET",
    "/v1/withdrawals/{id}",
    summary="One of the caller's withdrawals",
    operation_id="getWithdrawal",
    tag="wallet",
    scope=("read", "withdraw"),
    params=(path_param("id", example="wd_0123456789abcdef0123456789abcdef"),),
    responses={200: ok("The withdrawal", "Withdrawal")},
    errors=(400, 404, 429),
)
def get_withdrawal(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = authenticate(req, svc.auth)
    Params(req)
    wid = req.params["id"]
    missing = not_found("no such withdrawal", "withdrawal_not_found")
    if not _WITHDRAWAL_ID_RE.fullmatch(wid):
        raise missing
    row = _get_withdrawal(svc, principal.user_id, wid)
    if row is None:
        raise missing
    return json_response(_withdrawal_json(row, Precisions(svc)))


# --------------------------------------------------------------------------------------------
# the withdrawal address allow-list (wallet.allow_list)
# --------------------------------------------------------------------------------------------


def _allow_listed(svc: WalletServices, user: str, address: str) -> None:
    """403 unless the user's allow-list, when on, lets ``address`` receive now."""
    verdict = allow_list.permits(svc.auth.firestore, user, address, allow_list.now())
    if verdict == "not_saved":
        raise ApiError(
            403, "address_not_saved",
            "only saved addresses may receive this account's withdrawals: save it first "
            "(POST /v1/withdrawal-addresses); it becomes usable after the waiting time",
        )  # fmt: skip
    if verdict == "not_yet":
        raise ApiError(
            403, "address_not_yet_usable",
            "this address was saved recently: it may receive withdrawals once its waiting "
            "time is over (see usable_from in GET /v1/withdrawal-addresses)",
        )  # fmt: skip


def _address_json(a: allow_list.SavedAddress, now: datetime) -> dict[str, Any]:
    return {
        "address": a.address,
        "label": a.label,
        "created_at": iso(a.created_at),
        "usable_from": iso(a.usable_from),
        "usable": a.usable(now),
    }


def _setting_json(setting: allow_list.Setting, now: datetime) -> dict[str, Any]:
    return {
        "on": setting.on,
        "off_from": iso(setting.off_from),
        "enforced": setting.enforced(now),
    }


def _account_holder(req: ApiRequest, svc: WalletServices) -> Principal:
    """A signed-in person (a token): API keys do not change where funds may go."""
    principal = authenticate(req, svc.auth)
    require_session(principal)
    return principal


def _user_doc(svc: WalletServices, user: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = (
        svc.auth.firestore.collection(allow_list.USERS).document(user).get().to_dict()
    )
    return doc


@api.route(
    "GET",
    "/v1/withdrawal-addresses",
    summary="The caller's saved withdrawal addresses and the allow-list setting",
    operation_id="listWithdrawalAddresses",
    tag="wallet",
    scope=("read", "withdraw"),
    responses={200: ok("The allow-list", "WithdrawalAllowList")},
    errors=(429,),
)
def list_withdrawal_addresses(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = authenticate(req, svc.auth)
    Params(req)
    now = allow_list.now()
    db = svc.auth.firestore
    setting = allow_list.setting(_user_doc(svc, principal.user_id))
    addresses = [_address_json(a, now) for a in allow_list.saved(db, principal.user_id)]
    return json_response({"allow_list": _setting_json(setting, now), "addresses": addresses})


@api.route(
    "POST",
    "/v1/withdrawal-addresses",
    summary="Save a withdrawal address (usable after a waiting time)",
    operation_id="saveWithdrawalAddress",
    tag="wallet",
    auth="session",
    body=NewWithdrawalAddress,
    responses={201: ok("Saved", "WithdrawalAddress")},
    errors=(409, 429),
    description=(
        "A signed-in person only (403 for an API key), with a recent proof (401 "
        "fresh_auth_required) and, with two-factor on, totp_code (401 totp_required / "
        "invalid_totp_code). The address may receive withdrawals from usable_from on "
        "(WITHDRAWAL_ADDRESS_DELAY_S after saving, 24 hours by default), when the allow-list is "
        "on. 409 address_saved when it is saved already (its time is kept); 409 "
        "too_many_addresses past 50. Address checks as for withdrawals (400 invalid_address, "
        "invalid_checksum)."
    ),
)
def save_withdrawal_address(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _account_holder(req, svc)
    body = req.json(NewWithdrawalAddress)
    address = _checked_address(body.address)
    second_factor.require_second_factor(svc.auth, req, principal, body.totp_code)
    db = svc.auth.firestore
    if len(allow_list.saved(db, principal.user_id)) >= allow_list.MAX_ADDRESSES:
        raise conflict(f"at most {allow_list.MAX_ADDRESSES} saved addresses", "too_many_addresses")
    now = allow_list.now()
    saved = allow_list.save(
        db, principal.user_id, address, body.label.strip(), svc.wallet_config.address_delay_s, now
    )
    if saved is None:
        raise conflict("this address is saved already", "address_saved")
    log.warning(
        "withdrawal address saved",
        extra={"event": "withdrawal_address_saved", "user_id": principal.user_id,
               "address": address, "usable_from": iso(saved.usable_from)},
    )  # fmt: skip
    return json_response(_address_json(saved, now), status=201)


@api.route(
    "DELETE",
    "/v1/withdrawal-addresses/{address}",
    summary="Remove a saved withdrawal address",
    operation_id="deleteWithdrawalAddress",
    tag="wallet",
    auth="session",
    params=(path_param("address", example="0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),),
    responses={204: ok("Removed")},
    errors=(400, 404),
    description="A signed-in person only; removing needs no fresh proof (it only narrows).",
)
def delete_withdrawal_address(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _account_holder(req, svc)
    address = _checked_address(req.params["address"])
    if not allow_list.remove(svc.auth.firestore, principal.user_id, address):
        raise not_found("no such saved address", "address_not_found")
    return no_content()


@api.route(
    "PUT",
    "/v1/withdrawal-allow-list",
    summary="Turn 'only to saved addresses' on or off",
    operation_id="setWithdrawalAllowList",
    tag="wallet",
    auth="session",
    body=AllowListSwitch,
    responses={200: ok("The setting", "WithdrawalAllowListSetting")},
    errors=(429,),
    description=(
        "A signed-in person only. On: at once. Off: needs a recent proof and, with two-factor "
        "on, totp_code; it takes effect after the same waiting time as a new address "
        "(off_from), so switching it off is no faster a way out than saving an address. "
        "Turning it on again cancels a pending switch-off."
    ),
)
def set_withdrawal_allow_list(req: ApiRequest) -> flask.Response:
    svc = services()
    principal = _account_holder(req, svc)
    body = req.json(AllowListSwitch)
    db = svc.auth.firestore
    now = allow_list.now()
    if body.on:
        allow_list.turn_on(db, principal.user_id)
        setting = allow_list.Setting(on=True, off_from=None)
    else:
        second_factor.require_second_factor(svc.auth, req, principal, body.totp_code)
        setting = allow_list.turn_off(db, principal.user_id, now, svc.wallet_config.address_delay_s)
        log.warning(
            "withdrawal allow-list switched off",
            extra={"event": "withdrawal_allow_list_off", "user_id": principal.user_id,
                   "off_from": iso(setting.off_from)},
        )  # fmt: skip
    return json_response(_setting_json(setting, now))
