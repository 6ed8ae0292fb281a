"""The on-chain audit is exact in flight, not only at rest: while a withdrawal is mined but not
yet confirmed (the wallet still says ``broadcast``: the chain's balances already moved, and
the audit reads the receipt); while a deposit is on chain but the watcher has not scanned it
yet, or has but it is below its confirmations (in flight, reported apart, not a difference);
while a sweep and its gas top-up are mined unrecorded. A real difference is still one. As a
scheduled job it stores each run, alerts on a difference and on a hot wallet short of what
waiting withdrawals need."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from eth_account import Account
from functions_framework import create_app
from msgspec.structs import replace

from infra.processes import REPO_ROOT
from infra.services.anvil import eth_rpc
from infra.token import transfer
from shared import alerts, audit_runs
from tests.integration.test_wallet_chain import (
    CHAIN_ID,
    ETHER,
    OPERATOR_ETH,
    OUTSIDER_KEY,
    USDT_UNIT,
    N,
    Wallet,
    _funded_alice,
    node,
    w,
)
from wallet import jobs
from wallet.assets import load_asset_chains
from wallet.audit import ChainAudit
from wallet.chain import receipt
from wallet.jobs import send_once, sweep_once
from wallet.scheduled_audit import chain_audit_once, chain_report

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

__all__ = ["node", "w"]  # the fixtures


def test_the_audit_is_exact_while_withdrawals_are_mined_unconfirmed(w: Wallet) -> None:
    assert N >= 3  # room for a mined block before the confirmations
    _funded_alice(w)
    outside = Account.create().address
    eth = w.request_withdrawal("alice", "ETH", 100_000_000, 50_000, outside)
    usdt = w.request_withdrawal("alice", "USDT", 120 * USDT_UNIT, USDT_UNIT, outside)
    assert w.audit() == {"ETH": 0, "USDT": 0}  # held, nothing sent yet
    report = send_once(w.rt)
    assert sorted(report["broadcast"]) == sorted([eth, usdt])
    hashes = [w.withdrawal(wid)[1] for wid in (eth, usdt)]
    if not all(_mined(w, h) for h in hashes):  # the node mines as it receives, or not
        w.mine(1)
    assert all(_mined(w, h) for h in hashes)
    for wid in (eth, usdt):  # mined, fewer than N blocks deep: not recorded yet
        assert w.withdrawal(wid)[0] == "broadcast" and w.withdrawal(wid)[2] == "held"
    assert w.audit() == {"ETH": 0, "USDT": 0}

    w.send_until(eth, "confirmed", "settled")
    w.send_until(usdt, "confirmed", "settled")
    assert w.audit() == {"ETH": 0, "USDT": 0}


def _mined(w: Wallet, tx_hash: str | None) -> bool:
    assert tx_hash is not None
    return receipt(w.w3, tx_hash) is not None


def test_the_scheduled_chain_audit_stores_alerts_and_checks_the_hot_wallet(
    w: Wallet, caplog: pytest.LogCaptureFixture
) -> None:
    _funded_alice(w)  # deposits swept into the hot wallet, which the operator funded too
    rt = dataclasses.replace(w.rt, cfg=replace(w.cfg, operator_eth_wei=OPERATOR_ETH))
    first = chain_audit_once(rt)
    assert first["ok"] is True and first["hot_wallet_short"] == []

    outside = Account.create().address
    w.request_withdrawal("alice", "USDT", 120 * USDT_UNIT, USDT_UNIT, outside)
    # The hot wallet's USDT leaves without the books knowing (a stolen key, say).
    transfer(w.w3, w.hot.key.hex(), w.token, outside, w.usdt_of(w.hot.address))
    caplog.set_level(logging.WARNING)
    second = chain_audit_once(rt)
    assert second["ok"] is False
    assert [s["asset"] for s in second["hot_wallet_short"]] == ["USDT"]
    raised = {getattr(r, alerts.ALERT_FIELD) for r in caplog.records if hasattr(r, "alert")}
    assert raised == {alerts.AUDIT_DIFFERENCE, alerts.HOT_WALLET_LOW}

    runs = audit_runs.history(w.db, "chain", 10)
    assert [(r["id"], r["ok"]) for r in runs] == [
        (second["run_id"], False), (first["run_id"], True),
    ]  # fmt: skip
    mismatch = runs[0]["report"]["mismatches"]
    # The USDT, and the ETH its transfer paid in gas: neither in the wallet's records.
    assert [(m["kind"], m["asset"]) for m in mismatch] == [
        ("on_chain", "ETH"),
        ("on_chain", "USDT"),
    ]


def test_a_deposit_on_chain_before_the_watcher_credits_it_is_in_flight_not_a_difference(
    w: Wallet,
) -> None:
    eth, usdt = 3 * ETHER // 2, 250 * USDT_UNIT
    w.send_usdt(OUTSIDER_KEY, w.addr["alice"], usdt)
    w.send_eth(OUTSIDER_KEY, w.addr["alice"], eth)  # the head: 1 confirmation of N
    # On chain, not scanned yet (the watcher has never run): in flight, all of it unscanned.
    unscanned = w.chain_audit()
    assert unscanned.ok and unscanned.block == w.head()
    assert _flights(unscanned) == {"ETH": (0, eth, eth), "USDT": (0, usdt, usdt)}

    w.watch()  # seen, below the confirmations: still in flight, no longer unscanned
    assert [d[4] for d in w.deposits("alice")] == ["pending", "pending"]
    assert _flights(w.chain_audit()) == {"ETH": (0, eth, 0), "USDT": (0, usdt, 0)}

    w.mine(N)
    w.watch_until_credited("alice", "ETH", 150_000_000)
    w.watch_until_credited("alice", "USDT", 250 * USDT_UNIT)
    assert _flights(w.chain_audit()) == {"ETH": (0, 0, 0), "USDT": (0, 0, 0)}

    # A sweep in flight: the USDT's gas top-up, then both sweeps, mined and not recorded.
    for _ in range(2):
        sweep_once(w.rt)
        assert w.audit() == {"ETH": 0, "USDT": 0}
        w.mine(1)  # mined, fewer than N blocks deep
        assert w.audit() == {"ETH": 0, "USDT": 0}
    open_txs = w.db.run("SELECT count(*) FROM wallet_txs WHERE status = 'broadcast'")[0][0]
    assert int(open_txs) >= 1  # the audit did count transactions the wallet has not recorded
    w.sweep_until_quiet()
    assert _flights(w.chain_audit()) == {"ETH": (0, 0, 0), "USDT": (0, 0, 0)}


def test_a_reorganisation_the_watcher_has_not_followed_yet_is_no_difference(w: Wallet) -> None:
    before = eth_rpc(w.url, "evm_snapshot")
    raw = w.send_eth(OUTSIDER_KEY, w.addr["bob"], 2 * ETHER)
    w.watch()
    assert [d[4] for d in w.deposits("bob")] == ["pending"]
    assert _flights(w.chain_audit()) == {"ETH": (0, 2 * ETHER, 0), "USDT": (0, 0, 0)}
    # The deposit's block leaves the chain; the watcher's records still hold it.
    eth_rpc(w.url, "evm_revert", [before])
    w.mine(2)
    assert _flights(w.chain_audit()) == {"ETH": (0, 0, 0), "USDT": (0, 0, 0)}
    # Mined again in another block: on chain, not where the watcher saw it.
    w.w3.eth.send_raw_transaction(raw)
    assert _flights(w.chain_audit()) == {"ETH": (0, 2 * ETHER, 2 * ETHER), "USDT": (0, 0, 0)}
    w.watch()
    assert [d[4] for d in w.deposits("bob")] == ["pending"]
    assert _flights(w.chain_audit()) == {"ETH": (0, 2 * ETHER, 0), "USDT": (0, 0, 0)}


def test_a_watcher_too_far_behind_is_reported_not_scanned(w: Wallet) -> None:
    most = 4  # of MAX_UNSCANNED_BLOCKS in production
    w.watch()
    w.send_eth(OUTSIDER_KEY, w.addr["bob"], ETHER)  # not scanned: not counted, a difference
    w.mine(most)
    audit = w.chain_audit(max_unscanned=most)
    assert audit.watcher_behind and not audit.ok
    assert audit.block - audit.scanned_to == most + 1
    assert _flights(audit) == {"ETH": (ETHER, 0, 0), "USDT": (0, 0, 0)}
    chains = load_asset_chains(w.rt.redis, N)
    report = chain_report(w.db, w.w3, w.rt, chains, w.hot.address, max_unscanned=most)
    assert report["ok"] is False
    assert [m["kind"] for m in report["mismatches"]] == ["watcher_behind", "on_chain"]
    assert w.chain_audit(max_unscanned=most + 1).ok  # within reach: scanned, in flight
    w.watch()  # the watcher catches up
    assert w.chain_audit(max_unscanned=0).ok


def test_a_real_difference_is_found_while_deposits_are_in_flight(
    w: Wallet, caplog: pytest.LogCaptureFixture
) -> None:
    _funded_alice(w)
    w.send_eth(OUTSIDER_KEY, w.addr["bob"], ETHER)  # in flight, unscanned
    assert _flights(w.chain_audit()) == {"ETH": (0, ETHER, ETHER), "USDT": (0, 0, 0)}

    # A balance forged in Postgres: the books owe 5 USDT the chain never brought.
    w.db.run(
        "UPDATE balances SET available = available + :x WHERE user_id = 'alice' AND asset = 'USDT'",
        x=5 * USDT_UNIT,
    )
    audit = w.chain_audit()
    assert not audit.ok
    assert _flights(audit) == {"ETH": (0, ETHER, ETHER), "USDT": (-5 * USDT_UNIT, 0, 0)}

    # ETH leaves the hot wallet behind the exchange's back (a stolen key, say).
    gone = ETHER // 10
    sent = w.send_eth(w.hot.key.hex(), Account.create().address, gone)
    rcpt = w.w3.eth.get_transaction_receipt(w.w3.keccak(sent))
    gas = int(rcpt["gasUsed"]) * int(rcpt["effectiveGasPrice"])
    assert w.audit() == {"ETH": -(gone + gas), "USDT": -5 * USDT_UNIT}

    caplog.set_level(logging.WARNING)
    rt = dataclasses.replace(w.rt, cfg=replace(w.cfg, operator_eth_wei=OPERATOR_ETH))
    report = chain_audit_once(rt)
    assert report["ok"] is False
    raised = {getattr(r, alerts.ALERT_FIELD) for r in caplog.records if hasattr(r, "alert")}
    assert raised == {alerts.AUDIT_DIFFERENCE}
    stored = audit_runs.get(w.db, report["run_id"])["report"]
    assert [(m["kind"], m["asset"]) for m in stored["mismatches"]] == [
        ("on_chain", "ETH"),
        ("on_chain", "USDT"),
    ]
    assert stored["assets"]["ETH"]["in_flight"] == str(ETHER)
    assert stored["assets"]["ETH"]["unscanned"] == str(ETHER)
    assert stored["assets"]["ETH"]["difference"] == str(-(gone + gas))
    assert stored["block"] >= stored["scanned_to"]


def _flights(audit: ChainAudit) -> dict[str, tuple[int, int, int]]:
    """Per asset: (difference, in flight, of it unscanned)."""
    return {n: (a.difference, a.in_flight, a.unscanned) for n, a in audit.assets.items()}


def test_the_reserves_function_runs_the_audit_as_cloud_scheduler_calls_it(
    w: Wallet, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """functions-framework serving functions/reserves/main.py, configured from the
    environment as Terraform configures it."""
    w.send_eth(OUTSIDER_KEY, w.addr["bob"], ETHER)  # on chain, not scanned
    env = {
        "ETH_RPC_URL": w.url, "CHAIN_ID": str(CHAIN_ID), "HOT_WALLET_ADDRESS": w.hot.address,
        "GAS_WALLET_ADDRESS": w.gas.address, "OPERATOR_ETH_WEI": str(OPERATOR_ETH),
        "WATCHER_START_BLOCK": str(w.cfg.start_block), "PGDATABASE": w.rt.postgres.database,
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    jobs.runtime.reset()
    caplog.set_level(logging.INFO)
    try:
        source = str(REPO_ROOT / "functions" / "reserves" / "main.py")
        app = create_app(target="reserves", source=source)  # type: ignore[no-untyped-call]
        resp = app.test_client().post("/")
    finally:
        jobs.runtime.reset()
    assert resp.status_code == 200, resp.get_data(as_text=True)
    report = resp.get_json()
    assert report["ok"] is True and report["hot_wallet_short"] == []
    assert report["in_flight"] == {"ETH": str(ETHER), "USDT": "0"}
    assert not [r for r in caplog.records if hasattr(r, alerts.ALERT_FIELD)]  # no false alarm
    assert any(getattr(r, "audit", None) == "chain" for r in caplog.records)  # it did log
    [run] = audit_runs.history(w.db, "chain", 10)
    assert run["id"] == report["run_id"] and run["ok"] is True
    assert run["report"]["assets"]["ETH"]["unscanned"] == str(ETHER)
