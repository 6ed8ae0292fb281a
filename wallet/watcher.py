"""The deposit watcher: one run scans the blocks after its checkpoint up to the head, records
transfers to deposit addresses, follows reorganisations, and credits confirmed deposits.

What counts as a deposit:
- native ETH: a successful transaction (receipt status 1) whose ``to`` is a deposit address,
  with a value, not sent by the exchange's gas wallet (its top-ups pay for token sweeps);
- an ERC-20 ``Transfer`` log of a *listed* token contract to a deposit address (a failed
  transaction has no logs; any other contract's logs are ignored).

Reorganisations: every scanned block's hash is kept for ``reorg_window`` blocks. Each run first
checks the newest stored block against the chain (if it matches, so do all its ancestors);
otherwise it walks back to the last block that still matches, forgets the blocks above it,
marks their uncredited deposits ``orphaned`` and rescans from there. A deposit that reappears
in another block becomes pending again under the same key; its confirmations restart.

Crediting: a deposit with its asset's confirmations becomes ``crediting`` (committed first),
then a ``Deposit`` command goes to the matcher with the id ``deposit:{ref}`` and the ref
``{chain id}:{tx hash}:{log index}`` (-1 for native ETH): a repeated publish, an overlapping
run or a redelivery is a duplicate the matcher ignores, so a deposit is credited once. The
run after, the matcher's ``deposits`` table shows it ``credited``. Runs are serialised by an
advisory lock; overlapping ones return at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import BlockNotFound

from shared.config import WalletConfig
from shared.db import Database
from shared.messages import Deposit
from wallet.addresses import Owner
from wallet.assets import AssetChain
from wallet.chain import TRANSFER_TOPIC, WATCHER_LOCK, hexstr, job_lock, topic_address

log = logging.getLogger("wallet.watcher")

REPUBLISH_AFTER_S = 30
"""A deposit still ``crediting`` this long after its command is published again (same id)."""


@dataclass(slots=True)
class WatchReport:
    head: int = 0
    scanned_to: int = 0
    blocks: int = 0
    reorg_to: int | None = None
    found: int = 0
    credited: list[str] = field(default_factory=list)
    orphaned: int = 0
    skipped: str | None = None


@dataclass(frozen=True, slots=True)
class Found:
    tx_hash: str
    log_index: int
    owner: Owner
    asset: AssetChain
    sender: str
    token_amount: int


def deposit_ref(chain_id: int, tx_hash: str, log_index: int) -> str:
    return f"{chain_id}:{tx_hash}:{log_index}"


def deposit_command_id(ref: str) -> str:
    return f"deposit:{ref}"


def run_watcher(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    assets: dict[str, AssetChain],
    owners: dict[str, Owner],
    publish: Callable[[Deposit], None],
    verdict: Callable[[str], dict[str, Any] | None],
) -> WatchReport:
    report = WatchReport()
    with job_lock(db, WATCHER_LOCK, cfg.chain_id) as mine:
        if not mine:
            report.skipped = "another watcher run holds the lock"
            return report
        report.head = head = int(w3.eth.block_number)
        last = _checkpoint(db, cfg, head)
        ancestor = _follow_reorg(db, w3, cfg, last, head, report)
        if ancestor is not None:
            last = ancestor
        end = min(head, last + cfg.max_blocks_per_run)
        report.scanned_to = last
        for number in range(last + 1, end + 1):
            if not _scan_block(db, w3, cfg, number, head, assets, owners, report):
                break  # the chain moved under us: the next run sees the reorg
            report.scanned_to = number
            report.blocks += 1
        _credit(db, cfg, head, publish, verdict, report)
    if report.found or report.credited or report.reorg_to is not None:
        log.info(
            "watcher run",
            extra={"head": head, "scanned_to": report.scanned_to, "found": report.found,
                   "credited": len(report.credited), "reorg_to": report.reorg_to},
        )  # fmt: skip
    return report


def _checkpoint(db: Database, cfg: WalletConfig, head: int) -> int:
    rows = db.run("SELECT block_number FROM chain_cursor WHERE chain_id = :c", c=cfg.chain_id)
    if rows:
        return int(rows[0][0])
    start = head if cfg.start_block is None else cfg.start_block
    db.run(
        "INSERT INTO chain_cursor (chain_id, block_number, head) VALUES (:c, :b, :h)"
        " ON CONFLICT DO NOTHING",
        c=cfg.chain_id, b=start - 1, h=head,
    )  # fmt: skip
    return int(
        db.run("SELECT block_number FROM chain_cursor WHERE chain_id = :c", c=cfg.chain_id)[0][0]
    )


def _canonical_hash(w3: Web3, number: int, head: int) -> str | None:
    if number > head:
        return None
    try:
        return hexstr(w3.eth.get_block(number)["hash"])
    except BlockNotFound:
        return None


def _follow_reorg(
    db: Database, w3: Web3, cfg: WalletConfig, last: int, head: int, report: WatchReport
) -> int | None:
    """The block to rescan from when the stored chain has left the canonical one, else None."""
    rows = db.run(
        "SELECT number, hash FROM chain_blocks WHERE chain_id = :c ORDER BY number DESC",
        c=cfg.chain_id,
    )
    if not rows:
        return None
    ancestor: int | None = None
    for number, stored in rows:
        if _canonical_hash(w3, int(number), head) == stored:
            ancestor = int(number)
            break
    if ancestor == int(rows[0][0]):
        return None  # the newest stored block is canonical, hence all before it
    if ancestor is None:
        # Deeper than the window: rescan all of it (deposits are keyed, nothing is doubled).
        ancestor = int(rows[-1][0]) - 1
        log.critical("reorganisation deeper than the watcher's window", extra={"to": ancestor})
    db.run("BEGIN")
    try:
        db.run(
            "DELETE FROM chain_blocks WHERE chain_id = :c AND number > :a",
            c=cfg.chain_id, a=ancestor,
        )  # fmt: skip
        orphaned = db.run(
            "UPDATE chain_deposits SET status = 'orphaned', updated_at = now()"
            " WHERE chain_id = :c AND block_number > :a AND status IN ('pending', 'below_minimum')"
            " RETURNING ref",
            c=cfg.chain_id, a=ancestor,
        )  # fmt: skip
        late = db.run(
            "SELECT ref FROM chain_deposits WHERE chain_id = :c AND block_number > :a"
            " AND status IN ('crediting', 'credited')",
            c=cfg.chain_id, a=ancestor,
        )  # fmt: skip
        db.run(
            "UPDATE chain_cursor SET block_number = :a WHERE chain_id = :c",
            a=ancestor, c=cfg.chain_id,
        )  # fmt: skip
        db.run("COMMIT")
    except BaseException:
        db.run("ROLLBACK")
        raise
    for (ref,) in late:
        # Confirmations are there to make this impossible; an operator must look.
        log.critical("a credited deposit's block left the chain", extra={"ref": ref})
    report.reorg_to = ancestor
    report.orphaned += len(orphaned)
    log.warning(
        "chain reorganisation", extra={"ancestor": ancestor, "was": last, "orphaned": len(orphaned)}
    )
    return ancestor


def _scan_block(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    number: int,
    head: int,
    assets: dict[str, AssetChain],
    owners: dict[str, Owner],
    report: WatchReport,
) -> bool:
    block = w3.eth.get_block(number, full_transactions=True)
    block_hash = hexstr(block["hash"])
    parent = hexstr(block["parentHash"])
    prev = db.run(
        "SELECT hash FROM chain_blocks WHERE chain_id = :c AND number = :n",
        c=cfg.chain_id, n=number - 1,
    )  # fmt: skip
    if prev and prev[0][0] != parent:
        return False
    found = find_deposits(w3, block, assets, owners, cfg.gas_wallet_address)
    db.run("BEGIN")
    try:
        db.run(
            "INSERT INTO chain_blocks (chain_id, number, hash, parent_hash)"
            " VALUES (:c, :n, :h, :p) ON CONFLICT (chain_id, number)"
            " DO UPDATE SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash",
            c=cfg.chain_id, n=number, h=block_hash, p=parent,
        )  # fmt: skip
        for f in found:
            _record(db, cfg, number, block_hash, f)
        db.run(
            "UPDATE chain_cursor SET block_number = :n, head = :h WHERE chain_id = :c",
            n=number, h=head, c=cfg.chain_id,
        )  # fmt: skip
        db.run(
            "DELETE FROM chain_blocks WHERE chain_id = :c AND number < :keep",
            c=cfg.chain_id, keep=number - cfg.reorg_window,
        )  # fmt: skip
        db.run("COMMIT")
    except BaseException:
        db.run("ROLLBACK")
        raise
    report.found += len(found)
    return True


def find_deposits(
    w3: Web3,
    block: Any,
    assets: dict[str, AssetChain],
    owners: dict[str, Owner],
    gas_wallet_address: str | None,
) -> list[Found]:
    """The deposits in one block (fetched with its full transactions), by the rules above. The
    on-chain audit (wallet/audit.py) counts the blocks the watcher has not scanned yet with it,
    so both agree on what a deposit is."""
    found: list[Found] = []
    native = next((a for a in assets.values() if a.kind == "native"), None)
    gas_wallet = (gas_wallet_address or "").lower()
    if native is not None and owners:
        for item in block["transactions"]:
            tx: dict[str, Any] = dict(item)  # full transactions
            to = tx.get("to")
            if not to or int(tx["value"]) <= 0:
                continue
            owner = owners.get(str(to).lower())
            sender = str(tx["from"]).lower()
            if owner is None or sender == gas_wallet:
                continue
            rcpt = w3.eth.get_transaction_receipt(tx["hash"])
            if int(rcpt["status"]) != 1:
                continue  # a failed transaction moved nothing
            found.append(Found(hexstr(tx["hash"]), -1, owner, native, sender, int(tx["value"])))
    tokens = {a.contract: a for a in assets.values() if a.kind == "erc20" and a.contract}
    if tokens and owners:
        logs = w3.eth.get_logs(
            {
                "blockHash": block["hash"],
                "address": [to_checksum_address(c) for c in tokens],
                "topics": [TRANSFER_TOPIC],
            }
        )
        for entry in logs:
            topics = entry["topics"]
            token = tokens.get(str(entry["address"]).lower())
            if token is None or len(topics) != 3 or entry.get("removed"):
                continue  # not a listed token, or not an ERC-20 Transfer (ERC-721 has 4 topics)
            owner = owners.get(topic_address(topics[2]))
            amount = int.from_bytes(bytes(entry["data"]), "big") if entry["data"] else 0
            if owner is None or amount <= 0:
                continue
            found.append(
                Found(
                    hexstr(entry["transactionHash"]), int(entry["logIndex"]), owner, token,
                    topic_address(topics[1]), amount,
                )
            )  # fmt: skip
    return found


def _record(db: Database, cfg: WalletConfig, number: int, block_hash: str, f: Found) -> None:
    amount, dust = f.asset.from_token(f.token_amount)
    status = "pending" if amount >= f.asset.min_deposit else "below_minimum"
    ref = deposit_ref(cfg.chain_id, f.tx_hash, f.log_index)
    db.run(
        "INSERT INTO chain_deposits (chain_id, tx_hash, log_index, ref, user_id, asset, address,"
        " sender, token_amount, amount, dust, block_number, block_hash, confirmations_required,"
        " status) VALUES (:c, :tx, :li, :ref, :u, :asset, :addr, :sender, :ta, :a, :d, :bn, :bh,"
        " :req, :st)"
        " ON CONFLICT (chain_id, tx_hash, log_index) DO UPDATE SET"
        "  block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,"
        "  status = CASE WHEN chain_deposits.status = 'orphaned' THEN EXCLUDED.status"
        "           ELSE chain_deposits.status END,"
        "  updated_at = now()",
        c=cfg.chain_id, tx=f.tx_hash, li=f.log_index, ref=ref, u=f.owner.user_id,
        asset=f.asset.asset, addr=f.owner.address.lower(), sender=f.sender, ta=f.token_amount,
        a=amount, d=dust, bn=number, bh=block_hash, req=f.asset.confirmations, st=status,
    )  # fmt: skip


def _credit(
    db: Database,
    cfg: WalletConfig,
    head: int,
    publish: Callable[[Deposit], None],
    verdict: Callable[[str], dict[str, Any] | None],
    report: WatchReport,
) -> None:
    rows = db.run(
        "SELECT d.ref, d.user_id, d.asset, d.amount, d.block_number, d.confirmations_required,"
        " d.status, d.command_id, m.ref IS NOT NULL,"
        " d.updated_at < now() - make_interval(secs => :again)"
        " FROM chain_deposits d LEFT JOIN deposits m ON m.ref = d.ref"
        " WHERE d.chain_id = :c AND d.status IN ('pending', 'crediting')"
        " ORDER BY d.block_number, d.ref",
        c=cfg.chain_id, again=REPUBLISH_AFTER_S,
    )  # fmt: skip
    for ref, user, asset, amount, number, required, status, command_id, applied, stale in rows:
        if applied:
            db.run(
                "UPDATE chain_deposits SET status = 'credited', credited_at = now(),"
                " updated_at = now() WHERE ref = :r",
                r=ref,
            )
            report.credited.append(ref)
            continue
        if status == "pending":
            if head - int(number) + 1 < int(required):
                continue
            command_id = deposit_command_id(ref)
            db.run(
                "UPDATE chain_deposits SET status = 'crediting', command_id = :cid,"
                " updated_at = now() WHERE ref = :r AND status = 'pending'",
                cid=command_id, r=ref,
            )  # fmt: skip
        else:
            answer = verdict(command_id)
            if answer is not None and not answer.get("ok", False):
                reason = str(answer.get("reason") or answer.get("error") or "refused")
                db.run(
                    "UPDATE chain_deposits SET status = 'rejected', error = :e, updated_at = now()"
                    " WHERE ref = :r",
                    e=reason, r=ref,
                )  # fmt: skip
                log.error("the matcher refused a deposit", extra={"ref": ref, "reason": reason})
                continue
            if not stale:
                continue  # published recently; its verdict is on the way
            db.run("UPDATE chain_deposits SET updated_at = now() WHERE ref = :r", r=ref)
        publish(Deposit(id=command_id, user=user, asset=asset, amount=int(amount), ref=ref))
