"""The on-chain audit: what the exchange holds on chain against what it owes, per asset.

    held on chain (deposit addresses + hot wallet)
      == owed to users and the fee account (the matcher's balances, in token units)
       - credits that did not come from the chain (admin deposits)
       + in flight: deposits on chain not credited yet, the watcher's pending and crediting
         ones and those in blocks it has not scanned yet
       + deposits never to be credited: below the minimum, refused
       + dust (what credited deposits carried below the asset's precision)
       - withdrawals already mined that the matcher has not settled yet
       + operator funding (what the operator put in the hot wallet, given by the caller)
       + ETH only: gas top-ups received from the gas wallet - gas the holdings paid

Every term comes from the wallet's tables, the matcher's tables and the chain; a difference
other than zero is money unaccounted for.

Exact, not tolerant (docs/decisions/0027): every term is read as of one block, ``block``, the
head when the audit starts. The balances are read at that block; the tables in one
read-only snapshot (REPEATABLE READ), so a deposit credited by the matcher halfway through is
counted once; the blocks above the watcher's cursor up to ``block`` are scanned with the
watcher's own rule (wallet.watcher.find_deposits), so a deposit the chain holds that the
watcher has not seen yet is in flight, reported apart (``unscanned``), not a difference; a
transaction the wallet broadcast counts from its receipt when it is mined at or below
``block`` (its row still says ``broadcast`` until enough blocks follow), and not above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from web3 import Web3

from shared.db import Database
from wallet.addresses import Owner
from wallet.assets import AssetChain
from wallet.chain import hexstr, receipt, token_balance
from wallet.watcher import deposit_ref, find_deposits

MAX_UNSCANNED_BLOCKS: Final = 1000
"""The most blocks above the watcher's cursor the audit scans itself; a watcher further
behind is a problem of its own, reported as one (``watcher_behind``), not scanned."""


@dataclass(frozen=True, slots=True)
class AssetAudit:
    asset: str
    on_chain: int
    owed: int
    off_chain_credits: int
    in_flight: int
    """Deposits on chain not credited yet: pending or crediting, or not scanned yet."""
    unscanned: int
    """The part of ``in_flight`` in blocks the watcher has not scanned yet."""
    uncredited: int
    """Deposits that will not be credited: below the minimum, refused by the matcher."""
    dust: int
    unsettled_sent: int
    gas_net: int
    operator_funding: int

    @property
    def expected(self) -> int:
        return (
            self.owed - self.off_chain_credits + self.in_flight + self.uncredited + self.dust
            - self.unsettled_sent + self.gas_net + self.operator_funding
        )  # fmt: skip

    @property
    def difference(self) -> int:
        return self.on_chain - self.expected


@dataclass(frozen=True, slots=True)
class ChainAudit:
    block: int
    """The block every term was read at (the head when the audit started)."""
    scanned_to: int
    """The last block the watcher had scanned (its cursor, or the last of its blocks still
    on the chain after a reorganisation it has not followed yet), at most ``block``."""
    watcher_behind: bool
    """More than ``max_unscanned`` blocks were not scanned: they were not counted."""
    assets: dict[str, AssetAudit]

    @property
    def ok(self) -> bool:
        return not self.watcher_behind and all(a.difference == 0 for a in self.assets.values())


@dataclass(frozen=True, slots=True)
class _InFlight:
    """Broadcast transactions the chain has mined that the wallet has not recorded yet."""

    withdrawn: dict[str, int]  # asset -> token units sent by withdrawals still held
    gas_paid: int  # wei the holders paid for them
    topups: int  # wei the gas wallet's top-ups brought


def _in_flight(db: Database, w3: Web3, chain_id: int, holders: list[str], block: int) -> _InFlight:
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
        if rcpt is None or int(rcpt["blockNumber"]) > block:
            continue  # not mined as of the audited block: the balances do not show it
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


def _scanned_to(db: Database, w3: Web3, chain_id: int, block: int, start_block: int | None) -> int:
    """The last block whose deposits the tables hold, as the chain is at ``block``."""
    rows = db.run("SELECT block_number FROM chain_cursor WHERE chain_id = :c", c=chain_id)
    if not rows:  # the watcher never ran: it starts at its start block, or at the head
        return block if start_block is None else min(block, start_block - 1)
    cursor = min(int(rows[0][0]), block)
    stored = db.run(
        "SELECT number, hash FROM chain_blocks WHERE chain_id = :c AND number <= :n"
        " ORDER BY number DESC",
        c=chain_id, n=cursor,
    )  # fmt: skip
    for number, known in stored:
        # The newest one that is still on the chain (usually the first): above it, the
        # watcher's records belong to blocks a reorganisation removed; it will rescan them.
        if hexstr(w3.eth.get_block(int(number))["hash"]) == known:
            return int(number)
    return cursor if not stored else int(stored[-1][0]) - 1


def _unscanned(
    db: Database,
    w3: Web3,
    assets: Mapping[str, AssetChain],
    owners: Mapping[str, Owner],
    gas_wallet: str | None,
    chain_id: int,
    after: int,
    block: int,
) -> dict[str, int]:
    """Asset -> token units deposited in blocks ``after`` + 1 .. ``block``, not credited."""
    found = []
    for number in range(after + 1, block + 1):
        full = w3.eth.get_block(number, full_transactions=True)
        found += find_deposits(w3, full, dict(assets), dict(owners), gas_wallet)
    refs = [deposit_ref(chain_id, f.tx_hash, f.log_index) for f in found]
    credited = {
        str(r[0]) for r in db.run("SELECT ref FROM deposits WHERE ref = ANY(:r)", r=refs)
    } if refs else set()  # fmt: skip
    out: dict[str, int] = {}
    for f, ref in zip(found, refs, strict=True):
        if ref not in credited:  # one credited before a reorganisation moved its block
            out[f.asset.asset] = out.get(f.asset.asset, 0) + f.token_amount
    return out


def audit_chain(
    db: Database,
    w3: Web3,
    chain_id: int,
    assets: Mapping[str, AssetChain],
    owners: Mapping[str, Owner],
    hot_address: str,
    *,
    operator_funding: int = 0,
    gas_wallet: str | None = None,
    start_block: int | None = None,
    max_unscanned: int = MAX_UNSCANNED_BLOCKS,
) -> ChainAudit:
    """Every asset audited as of the current head. ``owners``: the deposit addresses (by
    lowercase address); ``operator_funding``: the ETH the operator put in the hot wallet;
    ``gas_wallet`` and ``start_block``: the watcher's (WalletConfig); ``max_unscanned``: the
    most blocks above the watcher's cursor scanned here."""
    block = int(w3.eth.block_number)
    db.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        scanned_to = _scanned_to(db, w3, chain_id, block, start_block)
        behind = block - scanned_to > max_unscanned
        unscanned = (
            {} if behind
            else _unscanned(db, w3, assets, owners, gas_wallet, chain_id, scanned_to, block)
        )  # fmt: skip
        holders = [*owners, hot_address.lower()]
        flight = _in_flight(db, w3, chain_id, holders, block)
        out = {
            name: _asset(
                db, w3, chain_id, asset, holders, block, scanned_to,
                unscanned.get(name, 0), flight,
                operator_funding if asset.kind == "native" else 0,
            )
            for name, asset in sorted(assets.items())
        }  # fmt: skip
        db.run("COMMIT")
    except BaseException:
        db.run("ROLLBACK")
        raise
    return ChainAudit(block, scanned_to, behind, out)


def _asset(
    db: Database,
    w3: Web3,
    chain_id: int,
    asset: AssetChain,
    holders: list[str],
    block: int,
    scanned_to: int,
    unscanned: int,
    flight: _InFlight,
    operator_funding: int,
) -> AssetAudit:
    if asset.kind == "native":
        on_chain = sum(int(w3.eth.get_balance(Web3.to_checksum_address(a), block)) for a in holders)
    else:
        assert asset.contract is not None
        on_chain = sum(token_balance(w3, asset.contract, a, block) for a in holders)
    unit = asset.unit
    owed = _one(db, "SELECT sum(available + frozen) FROM balances WHERE asset = :a", a=asset.asset)
    off_chain = _one(
        db,
        "SELECT sum(m.amount) FROM deposits m WHERE m.asset = :a AND NOT EXISTS"
        " (SELECT 1 FROM chain_deposits d WHERE d.ref = m.ref)",
        a=asset.asset,
    )
    # Seen by the watcher, not credited; above scanned_to they are counted by the scan.
    seen = (
        "SELECT sum(d.token_amount) FROM chain_deposits d WHERE d.chain_id = :c AND d.asset = :a"
        " AND d.status IN ({}) AND d.block_number <= :s"
        " AND NOT EXISTS (SELECT 1 FROM deposits m WHERE m.ref = d.ref)"
    )
    waiting = _one(
        db, seen.format("'pending', 'crediting'"), c=chain_id, a=asset.asset, s=scanned_to
    )
    refused = _one(
        db, seen.format("'below_minimum', 'rejected'"), c=chain_id, a=asset.asset, s=scanned_to
    )
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
            c=chain_id, s=holders,
        )  # fmt: skip
        gas_net = topups + flight.topups - paid - flight.gas_paid
    return AssetAudit(
        asset=asset.asset,
        on_chain=on_chain,
        owed=owed * unit,
        off_chain_credits=off_chain * unit,
        in_flight=waiting + unscanned,
        unscanned=unscanned,
        uncredited=refused,
        dust=dust,
        unsettled_sent=unsettled,
        gas_net=gas_net,
        operator_funding=operator_funding,
    )
