"""The on-chain audit is exact while a withdrawal is mined but not yet confirmed (the wallet
still says ``broadcast``), not only at rest: the chain's balances already moved, and the
audit reads the receipt."""

from __future__ import annotations

import pytest
from eth_account import Account

from tests.integration.test_wallet_chain import USDT_UNIT, N, Wallet, _funded_alice, node, w
from wallet.chain import receipt
from wallet.jobs import send_once

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
