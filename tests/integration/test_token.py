"""The USDT test token: the contract and its helpers behave on a real anvil (1-second blocks,
as under ``make run``). Its committed artifact is checked in tests/unit/test_token_artifact.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.exceptions import ContractLogicError

from infra.services import Stack, StackConfig
from infra.token import (
    USDT_DECIMALS,
    USDT_NAME,
    USDT_SYMBOL,
    TransactionRevertedError,
    balance_of,
    deploy_token,
    mint,
    send_call,
    token_contract,
    transfer,
    wait_for_success,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# anvil's dev accounts 0 and 1 (mnemonic "test test ... junk"), funded with ETH.
DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ALICE_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
DEPLOYER = Account.from_key(DEPLOYER_KEY).address
ALICE = Account.from_key(ALICE_KEY).address
USDT = 10**USDT_DECIMALS
# Enough for any call here; given explicitly so a reverting call is mined, not estimated.
EXPLICIT_GAS = 200_000


@pytest.fixture(scope="module")
def w3() -> Iterator[Web3]:
    with Stack(StackConfig.with_free_ports(block_time=1.0), services=["anvil"]) as stack:
        yield Web3(Web3.HTTPProvider(stack.url("anvil"), request_kwargs={"timeout": 10}))


@pytest.fixture
def token(w3: Web3) -> ChecksumAddress:
    """A fresh USDT per test, so balances start at zero."""
    return deploy_token(w3, DEPLOYER_KEY, USDT_NAME, USDT_SYMBOL, USDT_DECIMALS)


def test_deploy(w3: Web3, token: ChecksumAddress) -> None:
    functions = token_contract(w3, token).functions
    assert functions.decimals().call() == 6
    assert functions.name().call() == "Tether USD"
    assert functions.symbol().call() == "USDT"
    assert functions.owner().call() == DEPLOYER
    assert functions.totalSupply().call() == 0
    assert len(w3.eth.get_code(token)) > 0


def test_mint_and_transfer_move_balances_and_emit_transfer(
    w3: Web3, token: ChecksumAddress
) -> None:
    bob = Account.create().address
    contract = token_contract(w3, token)

    minted = w3.eth.get_transaction_receipt(mint(w3, DEPLOYER_KEY, token, ALICE, 1_000 * USDT))
    [event] = contract.events.Transfer().process_receipt(minted)
    assert dict(event["args"]) == {
        "from": "0x0000000000000000000000000000000000000000",
        "to": ALICE,
        "value": 1_000 * USDT,
    }

    sent = w3.eth.get_transaction_receipt(transfer(w3, ALICE_KEY, token, bob, 250 * USDT))
    [event] = contract.events.Transfer().process_receipt(sent)
    assert event["address"] == token
    assert dict(event["args"]) == {"from": ALICE, "to": bob, "value": 250 * USDT}
    assert balance_of(w3, token, ALICE) == 750 * USDT
    assert balance_of(w3, token, bob) == 250 * USDT
    assert contract.functions.totalSupply().call() == 1_000 * USDT


def test_several_transfers_in_flight_at_once(w3: Web3, token: ChecksumAddress) -> None:
    # Nonces come from the pending state, so several transactions can be in flight at once.
    bob = Account.create().address
    mint(w3, DEPLOYER_KEY, token, ALICE, 10 * USDT)
    hashes = [transfer(w3, ALICE_KEY, token, bob, USDT, wait=False) for _ in range(3)]
    receipts = [wait_for_success(w3, h) for h in hashes]
    assert all(r["status"] == 1 for r in receipts)
    assert balance_of(w3, token, bob) == 3 * USDT
    assert balance_of(w3, token, ALICE) == 7 * USDT


def test_transfer_beyond_balance_reverts(w3: Web3, token: ChecksumAddress) -> None:
    bob = Account.create().address
    mint(w3, DEPLOYER_KEY, token, ALICE, 5 * USDT)

    # Default: gas estimation runs the call first and surfaces the revert reason; nothing is
    # sent.
    nonce = w3.eth.get_transaction_count(ALICE)
    with pytest.raises(ContractLogicError, match="TestToken: insufficient balance"):
        transfer(w3, ALICE_KEY, token, bob, 5 * USDT + 1)
    assert w3.eth.get_transaction_count(ALICE, "pending") == nonce

    # With explicit gas the transaction is mined and reverts: status 0, no Transfer log.
    with pytest.raises(TransactionRevertedError) as failed:
        transfer(w3, ALICE_KEY, token, bob, 5 * USDT + 1, gas=EXPLICIT_GAS)
    assert failed.value.receipt["status"] == 0
    assert failed.value.receipt["logs"] == []
    assert balance_of(w3, token, ALICE) == 5 * USDT
    assert balance_of(w3, token, bob) == 0


def test_non_owner_mint_reverts(w3: Web3, token: ChecksumAddress) -> None:
    with pytest.raises(ContractLogicError, match="TestToken: caller is not the owner"):
        mint(w3, ALICE_KEY, token, ALICE, USDT)
    with pytest.raises(TransactionRevertedError) as failed:
        mint(w3, ALICE_KEY, token, ALICE, USDT, gas=EXPLICIT_GAS)
    assert failed.value.receipt["status"] == 0
    assert balance_of(w3, token, ALICE) == 0
    assert token_contract(w3, token).functions.totalSupply().call() == 0


def test_transfer_from_needs_allowance(w3: Web3, token: ChecksumAddress) -> None:
    bob = Account.create().address
    functions = token_contract(w3, token).functions
    mint(w3, DEPLOYER_KEY, token, ALICE, 10 * USDT)
    send_call(w3, ALICE_KEY, functions.approve(DEPLOYER, 4 * USDT))
    assert functions.allowance(ALICE, DEPLOYER).call() == 4 * USDT

    with pytest.raises(ContractLogicError, match="TestToken: insufficient allowance"):
        send_call(w3, DEPLOYER_KEY, functions.transferFrom(ALICE, bob, 5 * USDT))
    send_call(w3, DEPLOYER_KEY, functions.transferFrom(ALICE, bob, 3 * USDT))
    assert functions.allowance(ALICE, DEPLOYER).call() == USDT
    assert balance_of(w3, token, bob) == 3 * USDT
    assert balance_of(w3, token, ALICE) == 7 * USDT
