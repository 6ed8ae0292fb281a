"""The sweep: moves what deposit addresses hold into the hot wallet.

A run first follows the sweep and top-up transactions still open (broadcasting stored ones
that never left, noting what mined ones cost); an address with one still open is left alone
until it is mined, so runs never race an address's nonce or its balance. Then, for each
address that has a credited deposit:

- ERC-20 first: a token balance at or above the asset's ``sweep_threshold`` is sent to the hot
  wallet by the address itself. It needs ETH for gas: when the address has less than the gas
  limit x max fee, the gas wallet first sends it exactly the difference (a ``gas_topup``), and
  the token sweep follows in a later run, once that is mined.
- ETH last (a token sweep may still need the ETH): balance minus the exact gas cost. The
  transaction sets maxPriorityFee = maxFee, so the price paid is exactly maxFee whatever the base
  fee, and the address ends at zero wei.

Every transaction is signed and stored (``wallet_txs``) before it is broadcast, with per-address
nonces (``wallet.chain``). Runs are serialised by an advisory lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3

from shared.config import WalletConfig
from shared.db import Database
from wallet.addresses import Owner
from wallet.assets import AssetChain
from wallet.chain import (
    ETH_TRANSFER_GAS,
    SWEEP_LOCK,
    TOKEN_TRANSFER_GAS,
    Fees,
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
from wallet.keys import HdWallet

log = logging.getLogger("wallet.sweep")


@dataclass(slots=True)
class SweepReport:
    swept: list[tuple[str, str, int]] = field(default_factory=list)
    """(address, asset, token amount) of the sweeps sent in this run."""
    topped_up: list[str] = field(default_factory=list)
    mined: int = 0
    busy: int = 0
    skipped: str | None = None


def run_sweep(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    assets: dict[str, AssetChain],
    owners: Callable[[], dict[str, Owner]],
    wallet: HdWallet,
    gas_wallet: LocalAccount,
    hot_address: str,
) -> SweepReport:
    report = SweepReport()
    with job_lock(db, SWEEP_LOCK, cfg.chain_id) as mine:
        if not mine:
            report.skipped = "another sweep run holds the lock"
            return report
        busy = _follow_open(db, w3, cfg, report)
        candidates = db.run(
            "SELECT DISTINCT address FROM chain_deposits WHERE chain_id = :c"
            " AND status = 'credited' ORDER BY address",
            c=cfg.chain_id,
        )
        fees: Fees | None = None
        # The deposit addresses (a Firestore query) only when some address has funds to
        # sweep: most runs have none.
        known = owners() if candidates else {}
        native = next((a for a in assets.values() if a.kind == "native"), None)
        tokens = [a for a in assets.values() if a.kind == "erc20" and a.contract]
        for (address,) in candidates:
            owner = known.get(address)
            if owner is None:
                continue
            if address in busy:
                report.busy += 1
                continue
            fees = fees or current_fees(w3, cfg)
            account = wallet.account(owner.index)
            if account.address.lower() != address:
                log.critical("a deposit address does not match its index", extra={"a": address})
                continue
            if _sweep_tokens(db, w3, cfg, tokens, account, gas_wallet, hot_address, fees, report):
                continue
            if native is not None:
                _sweep_eth(db, w3, cfg, native, account, hot_address, fees, report)
    if report.swept or report.topped_up:
        log.info("sweep run", extra={"swept": len(report.swept), "topped_up": report.topped_up})
    return report


def _follow_open(db: Database, w3: Web3, cfg: WalletConfig, report: SweepReport) -> set[str]:
    """Broadcast what was stored and never sent, note what got mined; the addresses that still
    have a transaction in flight."""
    busy: set[str] = set()
    rows = db.run(
        "SELECT tx_hash, raw_tx, status, purpose, sender, recipient FROM wallet_txs"
        " WHERE chain_id = :c AND purpose IN ('sweep', 'gas_topup')"
        " AND status IN ('signed', 'broadcast') ORDER BY sender, nonce",
        c=cfg.chain_id,
    )
    for tx_hash, raw, status, purpose, sender, recipient in rows:
        rcpt = receipt(w3, tx_hash)
        if rcpt is None:
            if status == "signed" or not known(w3, tx_hash):
                broadcast(db, w3, tx_hash, bytes(raw))
            busy.add(recipient if purpose == "gas_topup" else sender)
            continue
        record_mined(db, tx_hash, rcpt)
        report.mined += 1
    return busy


def _sweep_tokens(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    tokens: list[AssetChain],
    account: LocalAccount,
    gas_wallet: LocalAccount,
    hot_address: str,
    fees: Fees,
    report: SweepReport,
) -> bool:
    """True when a transaction for this address went out (the ETH sweep waits for it)."""
    for token in tokens:
        assert token.contract is not None
        balance = token_balance(w3, token.contract, account.address)
        if balance <= 0 or balance < token.to_token(token.sweep_threshold):
            continue
        need = TOKEN_TRANSFER_GAS * fees.max_fee
        has = int(w3.eth.get_balance(account.address))
        if has < need:
            top_up = need - has
            tx = sign_and_store(
                db, w3, cfg, gas_wallet, purpose="gas_topup", to=account.address, value=top_up,
                data=b"", gas=ETH_TRANSFER_GAS, fees=fees, asset="ETH",
                recipient=account.address, token_amount=top_up,
            )  # fmt: skip
            broadcast(db, w3, tx.tx_hash, tx.raw)
            report.topped_up.append(account.address.lower())
            return True
        tx = sign_and_store(
            db, w3, cfg, account, purpose="sweep", to=token.contract, value=0,
            data=transfer_data(hot_address, balance), gas=TOKEN_TRANSFER_GAS, fees=fees,
            asset=token.asset, recipient=hot_address, token_amount=balance,
        )  # fmt: skip
        broadcast(db, w3, tx.tx_hash, tx.raw)
        report.swept.append((account.address.lower(), token.asset, balance))
        return True
    return False


def _sweep_eth(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    native: AssetChain,
    account: LocalAccount,
    hot_address: str,
    fees: Fees,
    report: SweepReport,
) -> None:
    balance = int(w3.eth.get_balance(account.address))
    exact = Fees(fees.max_fee, fees.max_fee)  # price paid == max fee: nothing left behind
    value = balance - ETH_TRANSFER_GAS * exact.max_fee
    if value <= 0 or value < native.to_token(native.sweep_threshold):
        return
    tx = sign_and_store(
        db, w3, cfg, account, purpose="sweep", to=to_checksum_address(hot_address), value=value,
        data=b"", gas=ETH_TRANSFER_GAS, fees=exact, asset=native.asset, recipient=hot_address,
        token_amount=value,
    )  # fmt: skip
    broadcast(db, w3, tx.tx_hash, tx.raw)
    report.swept.append((account.address.lower(), native.asset, value))
