"""The chain side shared by the wallet jobs: the node client, EIP-1559 fees under a cap,
ERC-20 encoding, and signed transactions that are stored before they are broadcast.

A transaction's nonce is allocated from ``wallet_nonces`` in the same Postgres transaction
that stores its signed bytes in ``wallet_txs``: after a crash either neither exists, or both
do and the next run broadcasts the stored bytes again. Nothing is ever signed twice for one
purpose except a deliberate replacement (same nonce, higher fee) of a stuck withdrawal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError

from shared.config import WalletConfig
from shared.db import Database

TRANSFER_TOPIC: Final = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
_TRANSFER_SELECTOR: Final = keccak(text="transfer(address,uint256)")[:4]
_BALANCE_OF_SELECTOR: Final = keccak(text="balanceOf(address)")[:4]
ETH_TRANSFER_GAS: Final = 21_000
TOKEN_TRANSFER_GAS: Final = 100_000
"""Gas limit of an ERC-20 transfer (a plain token uses ~35-52k; the rest is margin)."""

# Advisory lock ids of the jobs (with the chain id as the second key): one run at a time.
WATCHER_LOCK: Final = 7101
SWEEP_LOCK: Final = 7102
SENDER_LOCK: Final = 7103


def connect(cfg: WalletConfig) -> Web3:
    w3 = Web3(Web3.HTTPProvider(cfg.rpc_url, request_kwargs={"timeout": 15}))
    chain_id = w3.eth.chain_id
    if chain_id != cfg.chain_id:
        raise RuntimeError(
            f"the node at ETH_RPC_URL is chain {chain_id}, not CHAIN_ID {cfg.chain_id}"
        )
    return w3


def hexstr(value: bytes | str) -> str:
    """Lowercase 0x hex of a hash or bytes, whatever web3 handed back."""
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def topic_address(topic: bytes | str) -> str:
    """The lowercase address in an indexed ``address`` topic."""
    return "0x" + hexstr(topic)[-40:]


def transfer_data(to: str, amount: int) -> bytes:
    return _TRANSFER_SELECTOR + bytes.fromhex(to[2:].lower()).rjust(32, b"\0") + amount.to_bytes(32)


def token_balance(w3: Web3, token: str, holder: str, block: int | None = None) -> int:
    """``holder``'s balance of ``token`` at ``block`` (the latest one by default)."""
    data = _BALANCE_OF_SELECTOR + bytes.fromhex(holder[2:].lower()).rjust(32, b"\0")
    out = w3.eth.call({"to": to_checksum_address(token), "data": data}, block)
    return int.from_bytes(bytes(out), "big") if out else 0


@dataclass(frozen=True, slots=True)
class Fees:
    max_fee: int
    priority_fee: int

    def bumped(self, percent: int, market: Fees, cap: int) -> Fees | None:
        """Fees to replace a transaction sent with these: at least ``percent`` more on both
        (nodes want 10 %+) and at least the market's; None when that would pass the cap."""
        grow = 100 + percent
        prio = max(-(-self.priority_fee * grow // 100), market.priority_fee)
        max_fee = max(-(-self.max_fee * grow // 100), market.max_fee, prio)
        return None if max_fee > cap else Fees(max_fee, prio)


def current_fees(w3: Web3, cfg: WalletConfig) -> Fees:
    """maxFee = 2 x base fee + tip (room for six full blocks of base fee growth), capped."""
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    prio = min(cfg.priority_fee_wei, cfg.max_fee_wei)
    return Fees(min(cfg.max_fee_wei, 2 * base + prio), prio)


@contextlib.contextmanager
def job_lock(db: Database, lock: int, chain_id: int) -> Iterator[bool]:
    """A session advisory lock for one run of a job: yields False (do nothing) when another
    run holds it. A run that dies loses its connection and with it the lock."""
    got = db.run(
        "SELECT pg_try_advisory_lock(CAST(:k AS int), CAST(:c AS int))", k=lock, c=chain_id
    )[0][0]
    try:
        yield bool(got)
    finally:
        if got:
            db.run(
                "SELECT pg_advisory_unlock(CAST(:k AS int), CAST(:c AS int))", k=lock, c=chain_id
            )


@dataclass(frozen=True, slots=True)
class StoredTx:
    tx_hash: str
    nonce: int
    raw: bytes
    fees: Fees


def sign_and_store(
    db: Database,
    w3: Web3,
    cfg: WalletConfig,
    account: LocalAccount,
    *,
    purpose: str,
    to: str,
    value: int,
    data: bytes,
    gas: int,
    fees: Fees,
    asset: str,
    recipient: str,
    token_amount: int,
    withdrawal_id: str | None = None,
    nonce: int | None = None,
    attempt: int = 0,
    also: Callable[[Database, StoredTx], None] | None = None,
) -> StoredTx:
    """Sign a type-2 transaction and store it, allocating the sender's next nonce (or reusing
    ``nonce`` for a replacement), in one Postgres transaction; ``also`` runs inside it (the
    caller's state change). Not broadcast: see ``broadcast``."""
    sender = account.address.lower()
    on_chain = w3.eth.get_transaction_count(account.address, "pending") if nonce is None else 0
    db.run("BEGIN")
    try:
        if nonce is None:
            db.run(
                "INSERT INTO wallet_nonces (chain_id, address, next_nonce) VALUES (:c, :a, :n)"
                " ON CONFLICT DO NOTHING",
                c=cfg.chain_id, a=sender, n=on_chain,
            )  # fmt: skip
            stored = db.run(
                "SELECT next_nonce FROM wallet_nonces WHERE chain_id = :c AND address = :a"
                " FOR UPDATE",
                c=cfg.chain_id, a=sender,
            )[0][0]  # fmt: skip
            # Someone may have sent from this account outside the wallet: never go below
            # the chain's count, or the transaction would be refused as "nonce too low".
            nonce = max(int(stored), on_chain)
            db.run(
                "UPDATE wallet_nonces SET next_nonce = :n WHERE chain_id = :c AND address = :a",
                n=nonce + 1, c=cfg.chain_id, a=sender,
            )  # fmt: skip
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": cfg.chain_id,
            "nonce": nonce,
            "to": to_checksum_address(to),
            "value": value,
            "gas": gas,
            "maxFeePerGas": fees.max_fee,
            "maxPriorityFeePerGas": fees.priority_fee,
            "data": data,
        }
        signed = account.sign_transaction(tx)
        stored_tx = StoredTx(hexstr(signed.hash), nonce, bytes(signed.raw_transaction), fees)
        db.run(
            "INSERT INTO wallet_txs (tx_hash, chain_id, purpose, sender, nonce, recipient, asset,"
            " token_amount, max_fee, priority_fee, gas_limit, raw_tx, withdrawal_id, attempt,"
            " status) VALUES (:h, :c, :p, :s, :n, :r, :asset, :amt, :mf, :pf, :g, :raw, :w,"
            " :attempt, 'signed')",
            h=stored_tx.tx_hash, c=cfg.chain_id, p=purpose, s=sender, n=nonce,
            r=recipient.lower(), asset=asset, amt=token_amount, mf=fees.max_fee,
            pf=fees.priority_fee, g=gas, raw=stored_tx.raw, w=withdrawal_id, attempt=attempt,
        )  # fmt: skip
        if also is not None:
            also(db, stored_tx)
        db.run("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            db.run("ROLLBACK")
        raise
    return stored_tx


def broadcast(db: Database, w3: Web3, tx_hash: str, raw: bytes) -> bool:
    """Send stored bytes (again). True when the node has the transaction (now or already);
    False when it refuses it for good (its nonce is taken by another transaction)."""
    try:
        w3.eth.send_raw_transaction(raw)
    except Web3RPCError as exc:
        if not known(w3, tx_hash):
            message = str(exc).lower()
            if "nonce too low" in message or "nonce has already been used" in message:
                return False
            raise
    db.run(
        "UPDATE wallet_txs SET status = 'broadcast', broadcast_at = coalesce(broadcast_at, now()),"
        " updated_at = now() WHERE tx_hash = :h AND status = 'signed'",
        h=tx_hash,
    )
    return True


def known(w3: Web3, tx_hash: str) -> bool:
    try:
        w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return False
    return True


def receipt(w3: Web3, tx_hash: str) -> dict[str, Any] | None:
    try:
        return dict(w3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
    except TransactionNotFound:
        return None


def record_mined(db: Database, tx_hash: str, rcpt: dict[str, Any]) -> None:
    """Note a mined transaction's fate and the gas it really cost (for the on-chain audit)."""
    cost = int(rcpt["gasUsed"]) * int(rcpt["effectiveGasPrice"])
    db.run(
        "UPDATE wallet_txs SET status = :s, gas_cost = :g, block_number = :b, updated_at = now()"
        " WHERE tx_hash = :h",
        s="mined" if int(rcpt["status"]) == 1 else "failed", g=cost,
        b=int(rcpt["blockNumber"]), h=tx_hash,
    )  # fmt: skip
