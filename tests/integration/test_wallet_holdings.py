"""The scheduled on-chain audit keeps what the exchange's own wallets hold with its run (the
console's Audit tab shows it): the hot wallet's every asset and the gas wallet's ETH, exactly
as the chain says, in token units and in the token's decimals."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from eth_account import Account
from msgspec.structs import replace

from infra.token import transfer
from shared import audit_runs
from tests.integration.test_wallet_chain import (
    OPERATOR_ETH,
    USDT_UNIT,
    Wallet,
    _funded_alice,
    node,
    w,
)
from wallet.scheduled_audit import chain_audit_once

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

__all__ = ["node", "w"]  # the fixtures


def test_the_chain_audit_keeps_the_hot_and_gas_wallets_balances(w: Wallet) -> None:
    _funded_alice(w)  # deposits swept into the hot wallet, which the operator funded too
    rt = dataclasses.replace(w.rt, cfg=replace(w.cfg, operator_eth_wei=OPERATOR_ETH))
    chain_audit_once(rt)
    wallets = audit_runs.history(w.db, "chain", 1)[0]["report"]["wallets"]
    hot, gas = wallets["hot"], wallets["gas"]
    assert hot["address"] == w.hot.address and gas["address"] == w.gas.address
    assert sorted(hot["balances"]) == ["ETH", "USDT"] and sorted(gas["balances"]) == ["ETH"]
    usdt = w.usdt_of(w.hot.address)
    assert usdt > 0
    assert hot["balances"]["USDT"]["units"] == str(usdt)
    assert Decimal(hot["balances"]["USDT"]["amount"]) * USDT_UNIT == usdt
    assert hot["balances"]["ETH"]["units"] == str(w.eth_of(w.hot.address))
    assert gas["balances"]["ETH"]["units"] == str(w.eth_of(w.gas.address))

    # The hot wallet's USDT leaves: the next run says so.
    transfer(w.w3, w.hot.key.hex(), w.token, Account.create().address, usdt)
    chain_audit_once(rt)
    later = audit_runs.history(w.db, "chain", 1)[0]["report"]["wallets"]
    assert later["hot"]["balances"]["USDT"] == {"units": "0", "amount": "0"}
