"""The local chain of ``make run``: the wallet's development keys, the USDT test token, the
wallet's funding, the assets' chain details, and a faucet for trying deposits.

    python -m infra.devchain faucet 0xYourDepositAddress --eth 1.5 --usdt 250

The faucet sends from anvil's dev account 9 (10,000 ETH; ``make run`` mints it USDT). Setup
uses dev account 0: it deploys the token (once per chain: the chain is kept in
``.state/anvil-state.json``), funds the gas wallet (it pays for token sweeps' gas) and puts a
little ETH in the hot wallet (gas for withdrawals; the on-chain audit counts it as the
operator's). The wallet's keys are made once in ``.state/wallet/`` (files readable by the
owner only) and reach the jobs as ``*_FILE`` variables, as Secret Manager does in the cloud.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from eth_account import Account
from web3 import Web3

from infra.token import (
    USDT_DECIMALS,
    USDT_NAME,
    USDT_SYMBOL,
    deploy_token,
    mint,
    token_contract,
    transfer,
)
from wallet.keys import new_mnemonic

DEV_MNEMONIC: Final = "test test test test test test test test test test test junk"
SETUP_KEY: Final = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
FAUCET_KEY: Final = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"
ETHER: Final = 10**18
GAS_WALLET_FUNDING: Final = 10 * ETHER
HOT_WALLET_FUNDING: Final = 2 * ETHER
FAUCET_USDT: Final = 10_000_000 * 10**USDT_DECIMALS
CONFIRMATIONS: Final = 3


def asset_chains(usdt: str) -> dict[str, dict[str, Any]]:
    """The seeded assets' chain details and wallet rules (decimal strings in the asset's
    precision), as POST /v1/admin/assets would store them."""
    return {
        "ETH": {
            "kind": "native", "contract": None, "decimals": 18,
            "confirmations": CONFIRMATIONS, "min_deposit": "0.001", "withdrawal_fee": "0.001",
            "min_withdrawal": "0.01", "withdrawal_daily_limit": "100",
            "sweep_threshold": "0.001",
        },
        "USDT": {
            "kind": "erc20", "contract": usdt.lower(), "decimals": USDT_DECIMALS,
            "confirmations": CONFIRMATIONS, "min_deposit": "1", "withdrawal_fee": "1",
            "min_withdrawal": "10", "withdrawal_daily_limit": "100000", "sweep_threshold": "10",
        },
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class LocalWallet:
    mnemonic_file: Path
    hot_key_file: Path
    gas_key_file: Path
    hot_address: str
    gas_address: str

    def env(self) -> dict[str, str]:
        return {
            "WALLET_MNEMONIC_FILE": str(self.mnemonic_file),
            "HOT_WALLET_KEY_FILE": str(self.hot_key_file),
            "GAS_WALLET_KEY_FILE": str(self.gas_key_file),
            "HOT_WALLET_ADDRESS": self.hot_address,
            "OPERATOR_ETH_WEI": str(HOT_WALLET_FUNDING),
            "GAS_WALLET_ADDRESS": self.gas_address,
            "DEPOSIT_CONFIRMATIONS": str(CONFIRMATIONS),
            "WATCHER_START_BLOCK": "0",
        }


def _private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def wallet_keys(state_dir: Path) -> LocalWallet:
    """The development wallet's keys, made once (never the well-known dev accounts: the chain's
    dev keys are public, and the wallet must behave as with real secrets)."""
    d = state_dir / "wallet"
    files = {"mnemonic": d / "mnemonic", "hot": d / "hot-wallet.key", "gas": d / "gas-wallet.key"}
    if not files["mnemonic"].is_file():
        _private(files["mnemonic"], new_mnemonic())
    for name in ("hot", "gas"):
        if not files[name].is_file():
            _private(files[name], Account.create().key.hex())
    hot = Account.from_key(files["hot"].read_text().strip()).address
    gas = Account.from_key(files["gas"].read_text().strip()).address
    return LocalWallet(files["mnemonic"], files["hot"], files["gas"], hot, gas)


def send_eth(w3: Web3, key: str, to: str, value: int) -> bytes:
    """Send ``value`` wei from ``key``'s account and wait for it to be mined; the signed bytes
    (a test may send them again)."""
    account = Account.from_key(key)
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    tx = {
        "type": 2, "chainId": w3.eth.chain_id, "to": Web3.to_checksum_address(to),
        "value": value, "gas": 21_000, "maxFeePerGas": 2 * base + 10**9,
        "maxPriorityFeePerGas": 10**9,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
    }  # fmt: skip
    signed = account.sign_transaction(tx)
    w3.eth.send_raw_transaction(signed.raw_transaction)
    w3.eth.wait_for_transaction_receipt(signed.hash, timeout=60, poll_latency=0.1)
    return bytes(signed.raw_transaction)


def ensure_chain(rpc_url: str, state_dir: Path, wallet: LocalWallet) -> str:
    """The USDT contract's address on the local chain (deployed when the chain lacks it), with
    the gas and hot wallets funded."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    path = state_dir / "chain.json"
    usdt: str | None = None
    if path.is_file():
        usdt = json.loads(path.read_text()).get("usdt")
    if usdt is None or len(w3.eth.get_code(Web3.to_checksum_address(usdt))) == 0:
        usdt = deploy_token(w3, SETUP_KEY, USDT_NAME, USDT_SYMBOL, USDT_DECIMALS)
        mint(w3, SETUP_KEY, usdt, Account.from_key(FAUCET_KEY).address, FAUCET_USDT)
        path.write_text(json.dumps({"usdt": usdt}) + "\n")
    if w3.eth.get_balance(Web3.to_checksum_address(wallet.gas_address)) < GAS_WALLET_FUNDING // 2:
        send_eth(w3, SETUP_KEY, wallet.gas_address, GAS_WALLET_FUNDING)
    if w3.eth.get_balance(Web3.to_checksum_address(wallet.hot_address)) == 0:
        send_eth(w3, SETUP_KEY, wallet.hot_address, HOT_WALLET_FUNDING)
    return Web3.to_checksum_address(usdt)


def faucet(rpc_url: str, to: str, eth: Decimal, usdt: Decimal, state_dir: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    if not Web3.is_checksum_address(to) and not Web3.is_address(to):
        raise SystemExit(f"not an address: {to}")
    if eth > 0:
        send_eth(w3, FAUCET_KEY, to, int(eth * ETHER))
        print(f"sent {eth} ETH to {to}")
    if usdt > 0:
        token = json.loads((state_dir / "chain.json").read_text())["usdt"]
        transfer(w3, FAUCET_KEY, token, to, int(usdt * 10**USDT_DECIMALS))
        print(f"sent {usdt} USDT ({token}) to {to}")


def _rpc_of(state_dir: Path) -> str:
    """ETH_RPC_URL as ``make run`` wrote it in STATE/env (it may use other ports)."""
    env = state_dir / "env"
    if env.is_file():
        for line in env.read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            if name == "ETH_RPC_URL":
                return shlex.split(value)[0]
    return os.environ.get("ETH_RPC_URL", "http://127.0.0.1:8545")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.devchain", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("faucet", help="send test ETH and USDT to an address on the local chain")
    f.add_argument("address")
    f.add_argument("--eth", type=Decimal, default=Decimal(0))
    f.add_argument("--usdt", type=Decimal, default=Decimal(0))
    f.add_argument("--state-dir", type=Path, default=Path(".state"), help="make run's state")
    f.add_argument("--rpc", help="the node (default: make run's anvil, from STATE/env)")
    b = sub.add_parser("balance", help="an address's ETH and USDT on the local chain, as JSON")
    b.add_argument("address")
    b.add_argument("--state-dir", type=Path, default=Path(".state"), help="make run's state")
    b.add_argument("--rpc", help="the node (default: make run's anvil, from STATE/env)")
    args = parser.parse_args(argv)
    rpc = args.rpc or _rpc_of(args.state_dir)
    if args.cmd == "faucet":
        faucet(rpc, args.address, args.eth, args.usdt, args.state_dir)
    else:
        print(json.dumps(balances(rpc, args.address, args.state_dir)))
    return 0


def balances(rpc_url: str, address: str, state_dir: Path) -> dict[str, str]:
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    holder = Web3.to_checksum_address(address)
    token = json.loads((state_dir / "chain.json").read_text())["usdt"]
    usdt = token_contract(w3, token).functions.balanceOf(holder).call()
    return {
        "address": holder,
        "ETH": _decimal(int(w3.eth.get_balance(holder)), 18),
        "USDT": _decimal(int(usdt), USDT_DECIMALS),
    }


def _decimal(units: int, decimals: int) -> str:
    text = f"{Decimal(units).scaleb(-decimals):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


if __name__ == "__main__":
    sys.exit(main())
