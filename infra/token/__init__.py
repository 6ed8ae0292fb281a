"""The ERC-20 test token (TestToken.sol) of the local chain: deploy it, mint, transfer.

The compiled artifact, TestToken.json, is committed (``python -m infra.token.build``
regenerates it, ``--check`` proves it reproducible), so nothing here needs a compiler.

Every transaction is signed locally with the given private key (EIP-1559 fees), so no unlocked
node account is needed and the same code works against anvil or a real testnet. Amounts are
integers in the token's base units (for a 6-decimal token, 1 USDT is 1_000_000).

Errors: a call that would revert fails while its gas is estimated, with web3's
``ContractLogicError`` carrying the revert reason, and nothing is sent. A mined transaction
that reverted (possible when ``gas`` is given, so nothing is estimated) raises
``TransactionRevertedError``. A receipt that does not arrive within ``timeout`` seconds raises
web3's ``TimeExhausted``. Nonces come from the node's pending state: one process per sending
key at a time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from eth_account import Account
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams, TxReceipt, Wei

TOKEN_DIR: Final[Path] = Path(__file__).resolve().parent
SOURCE_PATH: Final[Path] = TOKEN_DIR / "TestToken.sol"
ARTIFACT_PATH: Final[Path] = TOKEN_DIR / "TestToken.json"
CONTRACT_NAME: Final[str] = "TestToken"

#: What the local chain's USDT stand-in is deployed as.
USDT_NAME: Final[str] = "Tether USD"
USDT_SYMBOL: Final[str] = "USDT"
USDT_DECIMALS: Final[int] = 6

#: Seconds to wait for a receipt: generous, as anvil may mine only once per block time.
DEFAULT_TIMEOUT: Final[float] = 60.0
_POLL_LATENCY: Final[float] = 0.1


class TokenError(RuntimeError):
    """The artifact is unusable, or a token transaction did not succeed."""


class TransactionRevertedError(TokenError):
    """A token transaction was mined but reverted (receipt status 0)."""

    def __init__(self, tx_hash: HexBytes, receipt: TxReceipt) -> None:
        super().__init__(f"transaction {tx_hash.to_0x_hex()} reverted (status 0)")
        self.tx_hash = tx_hash
        self.receipt = receipt


@dataclass(frozen=True)
class TokenArtifact:
    """The compiled contract as committed in TestToken.json."""

    abi: list[dict[str, Any]]
    bytecode: str
    compiler: str
    settings: dict[str, Any]
    source_sha256: str


def load_artifact(path: Path = ARTIFACT_PATH) -> TokenArtifact:
    """Read the committed artifact.

    Raises TokenError when the artifact is malformed, or when it was built from a different
    TestToken.sol than the one next to it (the source was edited without rebuilding): deploying
    bytecode that does not match the source would make every test misleading.
    """
    try:
        raw = json.loads(path.read_text())
        artifact = TokenArtifact(
            abi=list(raw["abi"]),
            bytecode=str(raw["bytecode"]),
            compiler=str(raw["compiler"]),
            settings=dict(raw["settings"]),
            source_sha256=str(raw["source_sha256"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TokenError(f"cannot load the token artifact {path}: {exc}") from exc
    if not artifact.bytecode.startswith("0x") or len(artifact.bytecode) <= 2:
        raise TokenError(f"{path}: bytecode is missing")
    source = path.parent / SOURCE_PATH.name
    if source.is_file() and hashlib.sha256(source.read_bytes()).hexdigest() != (
        artifact.source_sha256
    ):
        raise TokenError(
            f"{path} was not built from the current {source.name}; "
            "run python -m infra.token.build and commit the result"
        )
    return artifact


def token_contract(w3: Web3, address: str) -> Contract:
    """The deployed token at ``address``, for calls (``.functions.balanceOf(a).call()``)
    and event decoding (``.events.Transfer().process_receipt(r)``)."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact().abi)


def balance_of(w3: Web3, token: str, holder: str) -> int:
    """``holder``'s balance in base units."""
    balance: int = (
        token_contract(w3, token).functions.balanceOf(Web3.to_checksum_address(holder)).call()
    )
    return balance


def wait_for_success(w3: Web3, tx_hash: HexBytes, timeout: float = DEFAULT_TIMEOUT) -> TxReceipt:
    """Poll for the receipt (raises web3's TimeExhausted after ``timeout`` seconds) and raise
    TransactionRevertedError when the transaction reverted."""
    receipt = w3.eth.wait_for_transaction_receipt(
        tx_hash, timeout=timeout, poll_latency=_POLL_LATENCY
    )
    if receipt["status"] != 1:
        raise TransactionRevertedError(tx_hash, receipt)
    return receipt


def _fee_params(w3: Web3, sender: ChecksumAddress, gas: int | None) -> TxParams:
    """From, pending nonce (so several transactions can be in flight per block) and EIP-1559
    fees that stay valid while the base fee doubles twice."""
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
    tip = int(w3.eth.max_priority_fee)
    params: TxParams = {
        "from": sender,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(sender, "pending"),
        "maxPriorityFeePerGas": Wei(tip),
        "maxFeePerGas": Wei(2 * base_fee + tip),
    }
    if gas is not None:
        params["gas"] = gas  # skips estimation, so a reverting call is mined (status 0)
    return params


class Buildable(Protocol):
    """A contract function call or constructor, ready to become a transaction."""

    def build_transaction(self, transaction: TxParams | None = None) -> TxParams: ...


def send_call(
    w3: Web3,
    key: str,
    call: Buildable,
    *,
    wait: bool = True,
    gas: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> HexBytes:
    """Sign ``call`` (e.g. ``token_contract(w3, t).functions.approve(s, n)``) with ``key`` and
    send it; with ``wait``, also wait for its receipt and check its status."""
    account = Account.from_key(key)
    tx = call.build_transaction(_fee_params(w3, account.address, gas))
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    if wait:
        wait_for_success(w3, tx_hash, timeout)
    return tx_hash


def deploy_token(
    w3: Web3,
    deployer_key: str,
    name: str,
    symbol: str,
    decimals: int,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> ChecksumAddress:
    """Deploy a TestToken owned (mintable) by ``deployer_key``'s account; wait for it."""
    if not 0 <= decimals <= 255:
        raise ValueError(f"decimals must fit in uint8: {decimals}")
    artifact = load_artifact()
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = send_call(w3, deployer_key, factory.constructor(name, symbol, decimals), wait=False)
    address = wait_for_success(w3, tx_hash, timeout).get("contractAddress")
    if address is None:
        raise TokenError("deployment receipt has no contract address")
    return Web3.to_checksum_address(address)


def mint(
    w3: Web3,
    owner_key: str,
    token: str,
    to: str,
    amount: int,
    *,
    wait: bool = True,
    gas: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> HexBytes:
    """Mint ``amount`` base units to ``to`` (only the deployer may); return the tx hash."""
    fn = token_contract(w3, token).functions.mint(Web3.to_checksum_address(to), amount)
    return send_call(w3, owner_key, fn, wait=wait, gas=gas, timeout=timeout)


def transfer(
    w3: Web3,
    key: str,
    token: str,
    to: str,
    amount: int,
    *,
    wait: bool = True,
    gas: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> HexBytes:
    """Transfer ``amount`` base units from ``key``'s account to ``to``; return the tx hash."""
    fn = token_contract(w3, token).functions.transfer(Web3.to_checksum_address(to), amount)
    return send_call(w3, key, fn, wait=wait, gas=gas, timeout=timeout)
