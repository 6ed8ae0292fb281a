"""The on-chain audit is exact while a withdrawal is mined but not yet confirmed (the wallet
still says ``broadcast``), not only at rest: the chain's balances already moved, and the
audit reads the receipt. As a scheduled job it stores each run, alerts on a difference and on
a hot wallet short of what waiting withdrawals need."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from eth_account import Account
from msgspec.structs import replace

from infra.token import transfer
from shared import alerts, audit_runs
from tests.integration.test_wallet_chain import (
    OPERATOR_ETH,
    USDT_UNIT,
    N,
    Wallet,
    _funded_alice,
    node,
    w,
)
from wallet.chain import receipt
from wallet.jobs import send_once
from wallet.scheduled_audit import chain_audit_once

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
