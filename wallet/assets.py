"""The wallet's view of an asset: where it lives on chain and its deposit and withdrawal rules.

An asset's chain details are kept by the admin function in Firestore (``assets/{asset}``) and
Redis (``md:asset_chains``, what ``GET /v1/assets`` shows). Amounts in the rules are decimal
strings in the asset's precision, as on the wire.

Conversions are exact: a token amount becomes the asset's units by integer division by
``10 ** (decimals - precision)``; what is below one unit is the *dust*, kept with the deposit
(recorded, visible, counted in the audit), never rounded into anyone's balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import redis

from shared.db import Database
from shared.money import parse_units
from shared.redis_keys import ASSET_CHAINS_KEY
from shared.redis_values import asset_precisions

RULE_FIELDS = (
    "min_deposit",
    "withdrawal_fee",
    "min_withdrawal",
    "withdrawal_daily_limit",
    "sweep_threshold",
    "withdrawal_review_threshold",
)


@dataclass(frozen=True, slots=True)
class AssetChain:
    asset: str
    precision: int
    kind: str
    """``native`` (ETH) or ``erc20``."""
    contract: str | None
    """Lowercase 0x address of an ERC-20 contract."""
    decimals: int
    confirmations: int
    min_deposit: int
    """Deposits below this (asset units) are recorded but not credited."""
    withdrawal_fee: int
    min_withdrawal: int
    withdrawal_daily_limit: int | None
    """Per user and rolling 24 hours; None: no limit."""
    sweep_threshold: int
    """A deposit address holding at least this much is swept."""
    review_threshold: int | None = None
    """A withdrawal of more than this waits for an admin's review; None: none does."""

    @property
    def unit(self) -> int:
        """Token units in one unit of the asset."""
        return int(10 ** (self.decimals - self.precision))

    def from_token(self, token_amount: int) -> tuple[int, int]:
        """(asset units, dust in token units)."""
        return divmod(token_amount, self.unit)

    def to_token(self, amount: int) -> int:
        return amount * self.unit

    @staticmethod
    def parse(asset: str, precision: int, chain: dict[str, Any], confirmations: int) -> AssetChain:
        def rule(name: str, default: int | None) -> int | None:
            raw = chain.get(name)
            return default if raw is None else parse_units(raw, precision, name)

        limit = rule("withdrawal_daily_limit", None)
        contract = chain.get("contract")
        return AssetChain(
            asset=asset,
            precision=precision,
            kind=str(chain["kind"]),
            contract=None if contract is None else str(contract).lower(),
            decimals=int(chain["decimals"]),
            confirmations=int(chain.get("confirmations") or confirmations),
            min_deposit=rule("min_deposit", 1) or 1,
            withdrawal_fee=rule("withdrawal_fee", 0) or 0,
            min_withdrawal=rule("min_withdrawal", 1) or 1,
            withdrawal_daily_limit=limit,
            sweep_threshold=rule("sweep_threshold", 1) or 1,
            review_threshold=rule("withdrawal_review_threshold", None),
        )


def load_asset_chains(client: redis.Redis, default_confirmations: int) -> dict[str, AssetChain]:
    """Every asset that has chain details, by name."""
    precisions = asset_precisions(client)
    out: dict[str, AssetChain] = {}
    for raw_name, raw_chain in client.hgetall(ASSET_CHAINS_KEY).items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        if name not in precisions:
            continue  # chain details ahead of the asset itself: not usable yet
        chain = orjson.loads(raw_chain)
        out[name] = AssetChain.parse(name, precisions[name], chain, default_confirmations)
    return out


def load_durable_asset_chains(
    firestore: Any, db: Database, default_confirmations: int
) -> dict[str, AssetChain]:
    """Every asset with chain details, from their durable sources, for the withdrawal sender:
    the chain (contract, decimals) from Firestore (``assets/{asset}``, written by the admin
    function), the precision from the matcher's ``assets`` table. Not from Redis, which many
    deployables may write: a payout's contract and decimals must not be one write away."""
    precisions = {str(a): int(p) for a, p in db.run("SELECT asset, precision FROM assets")}
    out: dict[str, AssetChain] = {}
    for snap in firestore.collection("assets").stream():
        doc = snap.to_dict() or {}
        if snap.id in precisions and isinstance(doc.get("chain"), dict):
            chain = doc["chain"]
            out[snap.id] = AssetChain.parse(
                snap.id, precisions[snap.id], chain, default_confirmations
            )
    return out


def restore_asset_chains(client: redis.Redis, firestore: Any) -> int:
    """Put the assets' chain details back into Redis from Firestore (their durable copy) when
    Redis has lost them (a restarted Memorystore keeps nothing); the number restored."""
    if client.exists(ASSET_CHAINS_KEY):
        return 0
    chains = {}
    for snap in firestore.collection("assets").stream():
        doc = snap.to_dict() or {}
        if isinstance(doc.get("chain"), dict):
            chains[snap.id] = orjson.dumps(doc["chain"])
    if chains:
        client.hset(ASSET_CHAINS_KEY, mapping=chains)
    return len(chains)
