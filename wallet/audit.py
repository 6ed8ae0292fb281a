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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from web3 import Web3

from shared.db import Database
from wallet.assets import AssetChain
from wallet.chain import token_balance


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
    gas_net = 0
    if asset.kind == "native":
        lowered = [h.lower() for h in holders]
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
        gas_net = topups - paid
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
