"""The withdrawal sender: signs approved withdrawals from the hot wallet, broadcasts them,
follows them to their confirmations, and settles or refunds them through the matcher.

One run, in order (each step's outcome is committed before the next step acts on it):

1. ``requested`` withdrawals the matcher has *held* are signed with the hot wallet's next
   nonce; the signed bytes are stored with the nonce in one transaction (state ``signed``).
   A request the matcher refused becomes ``rejected``; one that cannot be sent (its asset has
   no chain details any more) is refunded. A hot wallet short of funds makes it wait.
2. Every stored, unsent transaction is broadcast (state ``broadcast``). After a crash between
   signing and sending, this re-sends the *same* bytes: one transaction, never two.
3. A broadcast withdrawal is followed: mined with status 1 and its asset's confirmations, it
   is ``confirmed`` and settled (``SettleWithdrawal``); mined with status 0 it is ``failed``
   and refunded (``RefundWithdrawal``). One the node no longer knows is re-broadcast; one not
   mined after ``replace_after_s`` is replaced at the same nonce with fees raised by
   ``fee_bump_percent`` (under the cap). Whichever attempt is mined decides.
4. Settle and refund commands have fixed ids (``settle:{id}``, ``refund:{id}``): published
   again until the matcher shows the withdrawal settled or refunded, and applied once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from shared.alerts import ALERT_FIELD, HOT_WALLET_LOW, WITHDRAWAL_STUCK
from shared.config import WalletConfig
from shared.db import Database
from shared.messages import RefundWithdrawal, SettleWithdrawal
from wallet.assets import AssetChain
from wallet.chain import (
    ETH_TRANSFER_GAS,
    SENDER_LOCK,
    TOKEN_TRANSFER_GAS,
    Fees,
    StoredTx,
    broadcast,
    current_fees,
    job_lock,
    known,
    receipt,
    record_mined,
    sign_and_store,
    token_balance,
    transfer_data,
)

log = logging.getLogger("wallet.sender")

Publish = Callable[[SettleWithdrawal | RefundWithdrawal, str], None]
"""Publish a command with an ordering key (the withdrawal's user)."""


@dataclass(slots=True)
class SendReport:
    signed: list[str] = field(default_factory=list)
    broadcast: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    skipped: str | None = None


@dataclass(frozen=True, slots=True)
class Steps:
    """Which steps a run takes (all of them; tests stop early to stand for a crash)."""

    sign: bool = True
    broadcast: bool = True
    follow: bool = True


def run_sender(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    assets: dict[str, AssetChain],
    hot: LocalAccount,
    publish: Publish,
    verdict: Callable[[str], dict[str, Any] | None],
    now: Callable[[], float],
    steps: Steps = Steps(),
) -> SendReport:
    report = SendReport()
    with job_lock(db, SENDER_LOCK, cfg.chain_id) as mine:
        if not mine:
            report.skipped = "another sender run holds the lock"
            return report
        if steps.sign:
            _sign_held(db, w3, cfg, assets, hot, publish, verdict, report)
        if steps.broadcast:
            _broadcast_signed(db, w3, cfg, report)
        if steps.follow:
            _follow(db, w3, cfg, assets, hot, now, report)
            _settle(db, cfg, publish, report)
    if any((report.signed, report.broadcast, report.confirmed, report.failed, report.replaced)):
        log.info(
            "sender run",
            extra={k: getattr(report, k) for k in ("signed", "confirmed", "failed", "replaced")},
        )
    return report


def _set_state(db: Database, wid: str, state: str, error: str | None = None) -> None:
    db.run(
        "UPDATE withdrawal_requests SET state = :s, error = coalesce(:e, error),"
        " updated_at = now() WHERE withdrawal_id = :w",
        s=state, e=error, w=wid,
    )  # fmt: skip


def _sign_held(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    assets: dict[str, AssetChain],
    hot: LocalAccount,
    publish: Publish,
    verdict: Callable[[str], dict[str, Any] | None],
    report: SendReport,
) -> None:
    rows = db.run(
        "SELECT r.withdrawal_id, r.user_id, r.asset, r.token_amount, r.address, r.command_id,"
        " w.state, r.amount"
        " FROM withdrawal_requests r LEFT JOIN withdrawals w USING (withdrawal_id)"
        # Only 'requested': one in 'review' waits for an admin (functions/admin), never signed.
        " WHERE r.chain_id = :c AND r.state = 'requested' ORDER BY r.created_at",
        c=cfg.chain_id,
    )
    fees: Fees | None = None
    # What this run has already committed from the hot wallet (the balance is read once).
    reserved: dict[str, int] = {}
    for wid, user, asset_name, token_amount, address, command_id, held, amount_units in rows:
        if held is None:
            answer = verdict(command_id)
            if answer is not None and not answer.get("ok", False):
                _set_state(db, wid, "rejected", str(answer.get("reason") or "refused"))
                report.rejected.append(wid)
            continue  # not applied yet
        if held in ("settled", "refunded"):  # settled or refunded by hand: nothing to send
            _set_state(db, wid, "confirmed" if held == "settled" else "refunded")
            continue
        asset = assets.get(asset_name)
        refusal = (
            f"asset {asset_name} has no chain details" if asset is None
            else "the zero address cannot receive" if int(address, 16) == 0
            # Its token amount was worked out from Redis at request time: it must match the
            # durable decimals, or someone changed them in between.
            else "token_amount_mismatch" if asset.to_token(int(amount_units)) != int(token_amount)
            else None
        )  # fmt: skip
        if refusal == "token_amount_mismatch":
            log.error(
                "security: a withdrawal's token amount does not match its asset's decimals",
                extra={"event": "security", "withdrawal": wid, "asset": asset_name},
            )
        if refusal is not None or asset is None:
            _set_state(db, wid, "failed", refusal)
            publish(RefundWithdrawal(id=f"refund:{wid}", withdrawal_id=wid), user)
            report.failed.append(wid)
            continue
        fees = fees or current_fees(w3, cfg)
        amount = int(token_amount)
        if "@native" not in reserved:
            reserved["@native"] = int(w3.eth.get_balance(hot.address))
        to, value, data, gas = _payout(asset, address, amount)
        if asset.contract is None:
            needs = {"@native": amount + gas * fees.max_fee}
        else:
            if asset.asset not in reserved:
                reserved[asset.asset] = token_balance(w3, asset.contract, hot.address)
            needs = {asset.asset: amount, "@native": gas * fees.max_fee}
        if any(reserved[k] < v for k, v in needs.items()):
            # The sweep refills the hot wallet; an operator is told. The user's funds stay held.
            log.warning(
                "the hot wallet cannot pay a withdrawal yet",
                extra={"withdrawal": wid, ALERT_FIELD: HOT_WALLET_LOW},
            )
            report.waiting.append(wid)
            continue
        for k, v in needs.items():
            reserved[k] -= v

        def signed(db: Database, tx: StoredTx, wid: str = wid) -> None:
            db.run(
                "UPDATE withdrawal_requests SET state = 'signed', tx_hash = :h, updated_at = now()"
                " WHERE withdrawal_id = :w AND state = 'requested'",
                h=tx.tx_hash, w=wid,
            )  # fmt: skip

        sign_and_store(
            db, w3, cfg, hot, purpose="withdrawal", to=to, value=value, data=data, gas=gas,
            fees=fees, asset=asset_name, recipient=address, token_amount=amount,
            withdrawal_id=wid, also=signed,
        )  # fmt: skip
        report.signed.append(wid)


def _payout(asset: AssetChain, address: str, amount: int) -> tuple[str, int, bytes, int]:
    """(to, value, data, gas limit) of a transaction paying ``amount`` token units to
    ``address``: ETH directly, an ERC-20 through its contract's ``transfer``."""
    if asset.contract is None:
        return address, amount, b"", ETH_TRANSFER_GAS
    return asset.contract, 0, transfer_data(address, amount), TOKEN_TRANSFER_GAS


def _broadcast_signed(db: Database, w3: Web3, cfg: WalletConfig, report: SendReport) -> None:
    rows = db.run(
        "SELECT tx_hash, raw_tx, withdrawal_id FROM wallet_txs WHERE chain_id = :c"
        " AND purpose = 'withdrawal' AND status = 'signed' ORDER BY sender, nonce, attempt",
        c=cfg.chain_id,
    )
    for tx_hash, raw, wid in rows:
        if broadcast(db, w3, tx_hash, bytes(raw)):
            db.run(
                "UPDATE withdrawal_requests SET state = 'broadcast', updated_at = now()"
                " WHERE withdrawal_id = :w AND state = 'signed'",
                w=wid,
            )
            report.broadcast.append(wid)
        else:
            # Its nonce went to another attempt of the same withdrawal; following decides.
            db.run("UPDATE wallet_txs SET status = 'replaced' WHERE tx_hash = :h", h=tx_hash)


def _follow(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    assets: dict[str, AssetChain],
    hot: LocalAccount,
    now: Callable[[], float],
    report: SendReport,
) -> None:
    head = int(w3.eth.block_number)
    rows = db.run(
        "SELECT withdrawal_id, user_id, asset FROM withdrawal_requests"
        " WHERE chain_id = :c AND state = 'broadcast' ORDER BY created_at",
        c=cfg.chain_id,
    )
    for wid, _user, asset_name in rows:
        attempts = db.run(
            "SELECT tx_hash, raw_tx, nonce, attempt, max_fee, priority_fee, recipient, gas_limit,"
            " token_amount, extract(epoch FROM broadcast_at) FROM wallet_txs"
            " WHERE withdrawal_id = :w AND status IN ('broadcast', 'mined', 'failed')"
            " ORDER BY attempt",
            w=wid,
        )
        mined = None
        for row in attempts:
            rcpt = receipt(w3, row[0])
            if rcpt is not None:
                mined = (row[0], rcpt)
                break
        if mined is not None:
            tx_hash, rcpt = mined
            asset = assets.get(asset_name)
            needed = asset.confirmations if asset else cfg.confirmations
            if head - int(rcpt["blockNumber"]) + 1 < needed:
                continue
            record_mined(db, tx_hash, rcpt)
            db.run(
                "UPDATE wallet_txs SET status = 'replaced', updated_at = now()"
                " WHERE withdrawal_id = :w AND tx_hash <> :h AND status IN ('signed', 'broadcast')",
                w=wid, h=tx_hash,
            )  # fmt: skip
            ok = int(rcpt["status"]) == 1
            db.run(
                "UPDATE withdrawal_requests SET state = :s, tx_hash = :h, updated_at = now(),"
                " error = :e WHERE withdrawal_id = :w",
                s="confirmed" if ok else "failed", h=tx_hash, w=wid,
                e=None if ok else "the transaction failed on chain",
            )  # fmt: skip
            (report.confirmed if ok else report.failed).append(wid)
            continue
        if not attempts:
            continue
        last = attempts[-1]
        if not any(known(w3, row[0]) for row in attempts):
            # Dropped by the node (a restart, a full pool): the same bytes again.
            broadcast(db, w3, last[0], bytes(last[1]))
            continue
        sent_at = float(last[9] or 0)
        if now() - sent_at >= cfg.replace_after_s:
            _replace(db, w3, cfg, assets, hot, wid, last, report)


def _replace(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    assets: dict[str, AssetChain],
    hot: LocalAccount,
    wid: str,
    last: Any,
    report: SendReport,
) -> None:
    tx_hash, _raw, nonce, attempt, max_fee, prio, recipient = last[:7]
    gas, token_amount = int(last[7]), int(last[8])
    old = Fees(int(max_fee), int(prio))
    fees = old.bumped(cfg.fee_bump_percent, current_fees(w3, cfg), cfg.max_fee_wei)
    if fees is None:
        log.warning(
            "a stuck withdrawal cannot be replaced under the fee cap",
            extra={"w": wid, ALERT_FIELD: WITHDRAWAL_STUCK},
        )
        return
    row = db.run("SELECT asset FROM withdrawal_requests WHERE withdrawal_id = :w", w=wid)[0]
    asset = assets.get(row[0])
    if asset is None:
        return
    to, value, data, _gas = _payout(asset, recipient, token_amount)

    def replaced(db: Database, tx: StoredTx) -> None:
        db.run(
            "UPDATE withdrawal_requests SET tx_hash = :h, updated_at = now()"
            " WHERE withdrawal_id = :w",
            h=tx.tx_hash, w=wid,
        )  # fmt: skip

    new = sign_and_store(
        db, w3, cfg, hot, purpose="withdrawal", to=to, value=value, data=data, gas=gas,
        fees=fees, asset=asset.asset, recipient=recipient, token_amount=token_amount,
        withdrawal_id=wid, nonce=int(nonce), attempt=int(attempt) + 1, also=replaced,
    )  # fmt: skip
    broadcast(db, w3, new.tx_hash, new.raw)
    report.replaced.append(wid)
    log.warning(
        "replaced a stuck withdrawal",
        extra={
            "withdrawal": wid,
            "old": tx_hash,
            "new": new.tx_hash,
            ALERT_FIELD: WITHDRAWAL_STUCK,
        },
    )


def _settle(db: Database, cfg: WalletConfig, publish: Publish, report: SendReport) -> None:
    """Publish the settle or refund of every confirmed or failed withdrawal until the matcher
    shows it done (fixed command ids: a repeat is a duplicate)."""
    rows = db.run(
        "SELECT r.withdrawal_id, r.user_id, r.state, w.state FROM withdrawal_requests r"
        " JOIN withdrawals w USING (withdrawal_id)"
        " WHERE r.chain_id = :c AND r.state IN ('confirmed', 'failed') AND w.state = 'held'"
        " UNION ALL"
        " SELECT r.withdrawal_id, r.user_id, r.state, w.state FROM withdrawal_requests r"
        " JOIN withdrawals w USING (withdrawal_id)"
        " WHERE r.chain_id = :c AND r.state = 'failed' AND w.state = 'refunded'"
        # The API answered 503 (the publish timed out) yet the command got through: the user
        # was told it failed, so the hold goes back.
        " UNION ALL"
        " SELECT r.withdrawal_id, r.user_id, r.state, w.state FROM withdrawal_requests r"
        " JOIN withdrawals w USING (withdrawal_id)"
        " WHERE r.chain_id = :c AND r.state = 'rejected' AND w.state = 'held'",
        c=cfg.chain_id,
    )
    for wid, user, state, held in rows:
        if state == "rejected":
            publish(RefundWithdrawal(id=f"refund:{wid}", withdrawal_id=wid), user)
        elif held == "refunded":
            _set_state(db, wid, "refunded")
            report.refunded.append(wid)
        elif state == "confirmed":
            publish(SettleWithdrawal(id=f"settle:{wid}", withdrawal_id=wid), user)
        else:
            publish(RefundWithdrawal(id=f"refund:{wid}", withdrawal_id=wid), user)
