"""Deposit addresses: one per user and chain, derived from the HD wallet, kept in Firestore.

    deposit_addresses/{chain_id}:{user_id}        {user_id, chain_id, address, index, created_at}
    deposit_address_owners/{chain_id}:{address}   {user_id, chain_id, address, index}

(``address`` lowercase in the owner's document id.) The index comes from a Postgres sequence,
so no two allocations ever get the same one, however many instances run. Both documents are
created in one batch with ``create`` (fails if it exists): when two requests of the same user
race, one batch wins and the other reads the winner's address; the loser's index is skipped.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, Final

from google.api_core.exceptions import AlreadyExists

from shared.db import Database
from wallet.keys import HdWallet

ADDRESSES: Final = "deposit_addresses"
OWNERS: Final = "deposit_address_owners"


def _doc_id(chain_id: int, user_id: str) -> str:
    return f"{chain_id}:{user_id}"


def deposit_address(firestore: Any, chain_id: int, user_id: str) -> str | None:
    snap = firestore.collection(ADDRESSES).document(_doc_id(chain_id, user_id)).get()
    return str(snap.get("address")) if snap.exists else None


def allocate(
    firestore: Any,
    next_index: Callable[[], int],
    wallet: HdWallet,
    chain_id: int,
    user_id: str,
) -> str:
    """The user's deposit address on the chain, made on first call (checksummed)."""
    found = deposit_address(firestore, chain_id, user_id)
    if found is not None:
        return found
    index = next_index()
    address = wallet.address(index)
    now = datetime.datetime.now(datetime.UTC)
    batch = firestore.batch()
    batch.create(
        firestore.collection(ADDRESSES).document(_doc_id(chain_id, user_id)),
        {"user_id": user_id, "chain_id": chain_id, "address": address, "index": index,
         "created_at": now},
    )  # fmt: skip
    batch.create(
        firestore.collection(OWNERS).document(f"{chain_id}:{address.lower()}"),
        {"user_id": user_id, "chain_id": chain_id, "address": address, "index": index},
    )
    try:
        batch.commit()
    except AlreadyExists:
        found = deposit_address(firestore, chain_id, user_id)
        if found is None:  # the owner document exists without the address: cannot happen
            raise
        return found
    return address


def next_index_from(db: Callable[[], Database]) -> Callable[[], int]:
    def next_index() -> int:
        return int(db().run("SELECT nextval('deposit_address_index')")[0][0])

    return next_index


class Owner:
    __slots__ = ("address", "index", "user_id")

    def __init__(self, user_id: str, address: str, index: int) -> None:
        self.user_id = user_id
        self.address = address
        self.index = index


def owners(firestore: Any, chain_id: int) -> dict[str, Owner]:
    """Every deposit address of the chain, by lowercase address."""
    out: dict[str, Owner] = {}
    query = firestore.collection(OWNERS).where(filter=_field_filter("chain_id", "==", chain_id))
    for snap in query.stream():
        d = snap.to_dict()
        out[str(d["address"]).lower()] = Owner(
            str(d["user_id"]), str(d["address"]), int(d["index"])
        )
    return out


def _field_filter(field: str, op: str, value: Any) -> Any:
    from google.cloud.firestore_v1.base_query import FieldFilter

    return FieldFilter(field, op, value)
