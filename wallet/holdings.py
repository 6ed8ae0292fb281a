"""What the exchange's own wallets hold, as the operator's console shows it: the hot wallet
(every listed asset; withdrawals are paid from it) and the gas wallet (ETH; it tops deposit
addresses up for token sweeps). Read by the scheduled on-chain audit and kept in its stored
report (``wallets``), which ``GET /v1/admin/audits?kind=chain`` answers."""

from __future__ import annotations

from typing import Any

from web3 import Web3

from shared.money import format_units
from wallet.assets import AssetChain
from wallet.chain import token_balance


def _held(w3: Web3, asset: AssetChain, holder: str) -> int:
    if asset.kind == "native":
        return int(w3.eth.get_balance(Web3.to_checksum_address(holder)))
    assert asset.contract is not None
    return token_balance(w3, asset.contract, holder)


def _wallet(w3: Web3, address: str, assets: list[AssetChain]) -> dict[str, Any]:
    balances = {}
    for asset in assets:
        units = _held(w3, asset, address)
        # Token units are exact; the amount is for people (the token's own decimals).
        balances[asset.asset] = {"units": str(units), "amount": format_units(units, asset.decimals)}
    return {"address": Web3.to_checksum_address(address), "balances": balances}


def wallet_holdings(
    w3: Web3, assets: dict[str, AssetChain], hot: str, gas: str | None
) -> dict[str, Any]:
    """``{"hot": {address, balances: {asset: {units, amount}}}, "gas": ... | None}``."""
    listed = [assets[name] for name in sorted(assets)]
    native = [a for a in listed if a.kind == "native"]
    return {
        "hot": _wallet(w3, hot, listed),
        "gas": None if gas is None else _wallet(w3, gas, native),
    }
