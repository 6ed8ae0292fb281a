"""The on-chain audit (wallet/audit.py) as a scheduled job: every asset audited, the result
stored with the books' audits (shared/audit_runs.py, kind ``chain``) and a difference alerted;
and the hot wallet's balance against what the withdrawals waiting to be sent need, alerted
(``hot_wallet_low``) before a user waits on it. docs/operations.md."""

from __future__ import annotations

import logging
from typing import Any

from web3 import Web3

from shared import alerts, audit_runs
from shared.db import Database
from shared.times import utc_now
from wallet import addresses
from wallet.assets import AssetChain, load_durable_asset_chains
from wallet.audit import MAX_UNSCANNED_BLOCKS, audit_chain
from wallet.chain import token_balance
from wallet.holdings import wallet_holdings
from wallet.jobs import Runtime, _with_db, runtime

log = logging.getLogger("wallet.audit")

# Withdrawals whose amount is still to leave the hot wallet.
_WAITING_SQL = """
SELECT asset, coalesce(sum(token_amount), 0), count(*) FROM withdrawal_requests
WHERE chain_id = :c AND state IN ('requested', 'signed') GROUP BY asset
"""


def chain_report(
    db: Database,
    w3: Web3,
    rt: Runtime,
    assets: dict[str, AssetChain],
    hot: str,
    max_unscanned: int = MAX_UNSCANNED_BLOCKS,
) -> dict[str, Any]:
    """Every asset's on-chain audit, as the books' report is shaped (``ok``, ``assets``,
    ``mismatches``); amounts in the asset's token units (wei for ETH). ``in_flight``: deposits
    on chain not credited yet (``unscanned``: the part the watcher has not seen yet)."""
    owners = addresses.owners(rt.firestore, rt.cfg.chain_id)
    seq = int(db.run("SELECT coalesce(max(seq), 0) FROM oplog")[0][0])
    audit = audit_chain(
        db, w3, rt.cfg.chain_id, assets, owners, hot,
        operator_funding=rt.cfg.operator_eth_wei, gas_wallet=rt.cfg.gas_wallet_address,
        start_block=rt.cfg.start_block, max_unscanned=max_unscanned,
    )  # fmt: skip
    out: dict[str, Any] = {}
    mismatches: list[dict[str, Any]] = []
    if audit.watcher_behind:
        mismatches.append(
            {"kind": "watcher_behind", "asset": "", "actual": str(audit.scanned_to),
             "expected": str(audit.block),
             "message": f"the watcher is more than {max_unscanned} blocks behind:"
                        " the blocks it has not scanned were not counted"}
        )  # fmt: skip
    for name, a in audit.assets.items():
        out[name] = {"on_chain": str(a.on_chain), "expected": str(a.expected),
                     "difference": str(a.difference), "ok": a.difference == 0,
                     "in_flight": str(a.in_flight), "unscanned": str(a.unscanned)}  # fmt: skip
        if a.difference:
            mismatches.append(
                {"kind": "on_chain", "asset": name, "actual": str(a.on_chain),
                 "expected": str(a.expected),
                 "message": "held on chain != owed, with every term in between"}
            )  # fmt: skip
    return {"ok": not mismatches, "checked_at": utc_now().isoformat(), "seq": seq,
            "block": audit.block, "scanned_to": audit.scanned_to,
            "assets": out, "mismatches": mismatches}  # fmt: skip


def hot_wallet_short(
    db: Database, w3: Web3, chain_id: int, assets: dict[str, AssetChain], hot: str
) -> list[dict[str, Any]]:
    """The assets the hot wallet holds less of than the waiting withdrawals need; each one
    alerted."""
    short = []
    for asset_name, needed, count in db.run(_WAITING_SQL, c=chain_id):
        asset = assets.get(str(asset_name))
        if asset is None:
            continue
        if asset.kind == "native":
            held = int(w3.eth.get_balance(Web3.to_checksum_address(hot)))
        else:
            assert asset.contract is not None
            held = token_balance(w3, asset.contract, hot)
        if held < int(needed):
            entry: dict[str, Any] = {
                "asset": asset.asset, "held": str(held), "needed": str(int(needed)),
                "withdrawals": int(count),
            }  # fmt: skip
            short.append(entry)
            alerts.alert(
                log, alerts.HOT_WALLET_LOW,
                f"the hot wallet holds less {asset.asset} than waiting withdrawals need",
                **entry,
            )  # fmt: skip
    return short


def chain_audit_once(rt: Runtime | None = None) -> dict[str, Any]:
    """One scheduled run: the on-chain audit stored (and alerted), the hot wallet checked."""
    rt = rt or runtime()
    hot = rt.cfg.hot_wallet_address
    if hot is None:
        from shared.config import ConfigError

        raise ConfigError("environment variable HOT_WALLET_ADDRESS is required by the audit")
    w3 = rt.w3

    def run(db: Database) -> dict[str, Any]:
        # The assets' contracts and decimals from their durable sources, not Redis' copy:
        # the audit trusts no cache (and needs no Redis).
        assets = load_durable_asset_chains(rt.firestore, db, rt.cfg.confirmations)
        report = chain_report(db, w3, rt, assets, hot)
        # Kept with the run: the console shows the wallets' balances from it.
        report["wallets"] = wallet_holdings(w3, assets, hot, rt.cfg.gas_wallet_address)
        run_id = audit_runs.record(db, "chain", report)
        short = hot_wallet_short(db, w3, rt.cfg.chain_id, assets, hot)
        in_flight = {name: a["in_flight"] for name, a in report["assets"].items()}
        return {"ok": report["ok"], "run_id": run_id, "block": report["block"],
                "in_flight": in_flight, "hot_wallet_short": short}  # fmt: skip

    return _with_db(rt, "audit", run)
