"""The withdrawal address allow-list: a user's saved addresses and whether only they may
receive the user's withdrawals.

Firestore:

- ``withdrawal_addresses/{user_id}:{lowercase address}``: user_id, address (checksummed),
  label, created_at, usable_from (created_at + ``WITHDRAWAL_ADDRESS_DELAY_S``). An address
  saved by someone holding a stolen session cannot be paid before the owner has had the delay
  to notice (the saving is logged, and listed with its time) and remove it;
- ``users/{user_id}``, field ``withdrawal_allow_list``: ``{"on": true}`` while only saved
  addresses may receive; turning it off sets ``off_from`` (now + the same delay), so the
  allow-list keeps holding until then: switching it off is no faster a way out than saving
  an address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from google.api_core import exceptions as gexc
from google.cloud import firestore

COLLECTION: Final = "withdrawal_addresses"
USERS: Final = "users"
FIELD: Final = "withdrawal_allow_list"
MAX_ADDRESSES: Final = 50

Verdict = Literal["ok", "not_saved", "not_yet"]


@dataclass(frozen=True, slots=True)
class SavedAddress:
    address: str
    label: str
    created_at: datetime
    usable_from: datetime

    def usable(self, now: datetime) -> bool:
        return now >= self.usable_from


@dataclass(frozen=True, slots=True)
class Setting:
    on: bool
    off_from: datetime | None
    """When a requested switch-off takes effect (None: none requested)."""

    def enforced(self, now: datetime) -> bool:
        return self.on and (self.off_from is None or now < self.off_from)


def _id(user_id: str, address: str) -> str:
    return f"{user_id}:{address.lower()}"


def _saved(doc: dict[str, Any]) -> SavedAddress:
    return SavedAddress(
        address=str(doc["address"]),
        label=str(doc.get("label", "")),
        created_at=doc["created_at"],
        usable_from=doc["usable_from"],
    )


def now() -> datetime:
    return datetime.now(UTC)


def saved(db: Any, user_id: str) -> list[SavedAddress]:
    """The user's saved addresses, oldest first."""
    query = db.collection(COLLECTION).where(filter=firestore.FieldFilter("user_id", "==", user_id))
    out = [_saved(snap.to_dict()) for snap in query.stream()]
    out.sort(key=lambda a: (a.created_at, a.address))
    return out


def save(
    db: Any, user_id: str, address: str, label: str, delay_s: int, at: datetime
) -> SavedAddress | None:
    """Save ``address`` (checksummed) for the user, usable after ``delay_s``; None when it is
    saved already (its delay is not restarted, nor shortened)."""
    record = {
        "user_id": user_id,
        "address": address,
        "label": label,
        "created_at": at,
        "usable_from": at + timedelta(seconds=delay_s),
    }
    try:
        db.collection(COLLECTION).document(_id(user_id, address)).create(record)
    except gexc.AlreadyExists:
        return None
    return _saved(record)


def remove(db: Any, user_id: str, address: str) -> bool:
    ref = db.collection(COLLECTION).document(_id(user_id, address))
    if not ref.get().exists:
        return False
    ref.delete()
    return True


def setting(user: dict[str, Any] | None) -> Setting:
    raw = (user or {}).get(FIELD) or {}
    return Setting(on=bool(raw.get("on")), off_from=raw.get("off_from"))


def turn_on(db: Any, user_id: str) -> None:
    db.collection(USERS).document(user_id).update({FIELD: {"on": True}})


def turn_off(db: Any, user_id: str, at: datetime, delay_s: int) -> Setting:
    """Ask for the allow-list to stop holding after ``delay_s`` (at once when it was off);
    a switch-off already asked for keeps its earlier time."""
    ref = db.collection(USERS).document(user_id)
    current = setting(ref.get().to_dict())
    if not current.on:
        return current
    off_from = at + timedelta(seconds=delay_s)
    if current.off_from is not None and current.off_from <= off_from:
        return current
    ref.update({FIELD: {"on": True, "off_from": off_from}})
    return Setting(on=True, off_from=off_from)


def permits(db: Any, user_id: str, address: str, at: datetime) -> Verdict:
    """Whether the user's allow-list lets ``address`` receive a withdrawal now."""
    user = db.collection(USERS).document(user_id).get().to_dict()
    if not setting(user).enforced(at):
        return "ok"
    snap = db.collection(COLLECTION).document(_id(user_id, address)).get()
    if not snap.exists:
        return "not_saved"
    return "ok" if _saved(snap.to_dict()).usable(at) else "not_yet"
