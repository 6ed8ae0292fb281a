"""The on-chain audit: what the exchange holds on chain against what it owes, per asset.

    held on chain (deposit addresses + hot wallet)
      == owed to users and the fee account (the matcher's balances, in token units)
       - credits that did not come from the chain (admin deposits)
       + deposits seen but not (yet) credited: pending, below the minimum, refused
       + dust (what credited deposits carried below the asset's precision)
       - withdrawals already mined that the matcher has not settled yet
       + operator funding (what the operator put in the hot wallet, given by the caller)
       + ETH only: gas top-ups received from the gas wallet - gas the holdings paid

Every term comes from the wallet's tables, the matcher's tables and the chain; a difference
other than zero is money unaccounted for.

Exact in flight too: a transaction the wallet broadcast that is mined but not yet confirmed
(its row still says ``broadcast`` until enough blocks follow) already moved the chain's
balances, so its receipt is read from the chain and it counts as mined: a withdrawal's amount
as sent but unsettled, its gas as paid, a gas top-up as received.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from web3 import Web3

from shared.db import Database
from wallet.assets import AssetChain
from wallet.chain import receipt, token_balance


@dataclass(frozen=True, slots=True)
class AssetAudit:
    asset: str
    on_chain: int
    owed: int
    off_chain_credits: int
    uncredited: int
    dust: int
    unsettled_sent: int
    gas_net: int
    operator_funding: int

    @property
    def expected(self) -> int:
        return (
            self.owed - self.off_chain_credits + self.uncredited + self.dust
            - self.unsettled_sent + self.gas_net + self.operator_funding
        )  # fmt: skip

    @property
    def difference(self) -> int:
        return self.on_chain - self.expected


@dataclass(frozen=True, slots=True)
class _InFlight:
    """Broadcast transactions the chain has mined that the wallet has not recorded yet."""

    withdrawn: dict[str, int]  # asset -> token units sent by withdrawals still held
    gas_paid: int  # wei the holders paid for them
    topups: int  # wei the gas wallet's top-ups brought


def _in_flight(db: Database, w3: Web3, chain_id: int, holders: list[str]) -> _InFlight:
    rows = db.run(
        "SELECT t.tx_hash, t.purpose, t.sender, t.asset, t.token_amount, w.state"
        " FROM wallet_txs t LEFT JOIN withdrawals w ON w.withdrawal_id = t.withdrawal_id"
        " WHERE t.chain_id = :c AND t.status = 'broadcast'",
        c=chain_id,
    )
    withdrawn: dict[str, int] = {}
    gas_paid = topups = 0
    for tx_hash, purpose, sender, asset, token_amount, held in rows:
        rcpt = receipt(w3, str(tx_hash))
        if rcpt is None:
            continue
        ok = int(rcpt["status"]) == 1
        if str(sender).lower() in holders:
            gas_paid += int(rcpt["gasUsed"]) * int(rcpt["effectiveGasPrice"])
        if ok and purpose == "withdrawal" and held == "held":
            withdrawn[str(asset)] = withdrawn.get(str(asset), 0) + int(token_amount)
        if ok and purpose == "gas_topup":
            topups += int(token_amount)
    return _InFlight(withdrawn, gas_paid, topups)


def _one(db: Database, sql: str, **params: object) -> int:
    value = db.run(sql, **params)[0][0]
    return int(value or 0)


def audit_asset(
    db: Database,
    w3: Web3,
    chain_id: int,
    asset: AssetChain,
    addresses: Iterable[str],
    hot_address: str,
    operator_funding: int = 0,
) -> AssetAudit:
    holders = [*addresses, hot_address]
    if asset.kind == "native":
        on_chain = sum(int(w3.eth.get_balance(Web3.to_checksum_address(a))) for a in holders)
    else:
        assert asset.contract is not None
        on_chain = sum(token_balance(w3, asset.contract, a) for a in holders)
    unit = asset.unit
    owed = _one(db, "SELECT sum(available + frozen) FROM balances WHERE asset = :a", a=asset.asset)
    off_chain = _one(
        db,
        "SELECT sum(m.amount) FROM deposits m WHERE m.asset = :a AND NOT EXISTS"
        " (SELECT 1 FROM chain_deposits d WHERE d.ref = m.ref)",
        a=asset.asset,
    )
    uncredited = _one(
        db,
        "SELECT sum(d.token_amount) FROM chain_deposits d WHERE d.chain_id = :c AND d.asset = :a"
        " AND d.status <> 'orphaned' AND NOT EXISTS (SELECT 1 FROM deposits m WHERE m.ref = d.ref)",
        c=chain_id, a=asset.asset,
    )  # fmt: skip
    dust = _one(
        db,
        "SELECT sum(d.dust) FROM chain_deposits d WHERE d.chain_id = :c AND d.asset = :a"
        " AND EXISTS (SELECT 1 FROM deposits m WHERE m.ref = d.ref)",
        c=chain_id, a=asset.asset,
    )  # fmt: skip
    unsettled = _one(
        db,
        "SELECT sum(r.token_amount) FROM withdrawal_requests r JOIN withdrawals w"
        " USING (withdrawal_id) JOIN wallet_txs t ON t.tx_hash = r.tx_hash"
        " WHERE r.chain_id = :c AND r.asset = :a AND t.status = 'mined' AND w.state = 'held'",
        c=chain_id, a=asset.asset,
    )  # fmt: skip
    lowered = [h.lower() for h in holders]
    flight = _in_flight(db, w3, chain_id, lowered)
    unsettled += flight.withdrawn.get(asset.asset, 0)
    gas_net = 0
    if asset.kind == "native":
        topups = _one(
            db,
            "SELECT sum(token_amount) FROM wallet_txs WHERE chain_id = :c"
            " AND purpose = 'gas_topup' AND status = 'mined'",
            c=chain_id,
        )
        paid = _one(
            db,
            "SELECT sum(gas_cost) FROM wallet_txs WHERE chain_id = :c"
            " AND status IN ('mined', 'failed') AND sender = ANY(:s)",
            c=chain_id, s=lowered,
        )  # fmt: skip
        gas_net = topups + flight.topups - paid - flight.gas_paid
    return AssetAudit(
        asset=asset.asset,
        on_chain=on_chain,
        owed=owed * unit,
        off_chain_credits=off_chain * unit,
        uncredited=uncredited,
        dust=dust,
        unsettled_sent=unsettled,
        gas_net=gas_net,
        operator_funding=operator_funding,
    )
