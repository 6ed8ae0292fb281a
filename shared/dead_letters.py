"""The dead letters: commands that reached the dead-letter topic, what they are and why, and
the operator's decision on each (docs/decisions/0025).

Two ways lead there: the matcher dead-letters a command it can never apply (undecodable, or
refused by shared.producers: unsigned, unknown producer, bad signature, a type its producer
may not send), and Pub/Sub dead-letters one the matcher did not acknowledge after
``MAX_DELIVERY_ATTEMPTS`` deliveries. Both wait on the hold subscription.

``drain`` moves what waits there into the table ``dead_letters`` (migrations/0008) and only
then acknowledges it, so the list is stable and nothing is lost between the two (a message
drained twice is one row: its message id is the key). A re-drive or a discard is a
conditional change of its row: of two clicks on "re-drive", one claims the row and
publishes, the other gets 409.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import orjson
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]

from shared.admin_actions import without_secrets
from shared.db import Database
from shared.producers import PRODUCER_ATTR, REFUSALS
from shared.pubsub import (
    DELIVERY_COUNT_ATTR,
    ERROR_ATTR,
    ORDERING_KEY_ATTR,
    REASON_ATTR,
    SOURCE_MESSAGE_ATTR,
)

STATES: Final = ("held", "redriving", "redriven", "discarded")
MAX_LISTED: Final = 500
PREVIEW_CHARS: Final = 600
DELIVERY_ATTEMPTS: Final = "delivery_attempts"
"""The reason of a letter Pub/Sub dead-lettered (the matcher never acknowledged it)."""
UNDECODABLE: Final = "undecodable"
FINAL_REASONS: Final = frozenset({UNDECODABLE, *REFUSALS})
"""Letters the matcher refused: re-driven, it would refuse them again."""
CLAIM_TIMEOUT_S: Final = 60
"""A re-drive claimed this long ago and never finished (its instance died before it
published or before it said so) may be claimed again: the matcher applies a command once
however often it comes (its id is unique in the oplog)."""

# An operator's list is read now, not waited for: a pull returns at once when nothing waits.
# The flag is discouraged for throughput, which a list of dead letters does not need.
warnings.filterwarnings(
    "ignore", message="The return_immediately flag is deprecated", category=DeprecationWarning
)

_PULL_ROUNDS: Final = 5
_PULL_MAX: Final = 100
# Attributes the dead-lettering added: not the command's own, not republished.
_ADDED: Final = re.compile(
    rf"^(CloudPubSubDeadLetter.*|{REASON_ATTR}|{ERROR_ATTR}|{ORDERING_KEY_ATTR}"
    rf"|{SOURCE_MESSAGE_ATTR})$"
)
_COLUMNS: Final = (
    "message_id, received_at, published_at, ordering_key, command_id, command_type, producer,"
    " reason, error, delivery_count, state, decided_by, decided_at, redrive_message_id, data"
)


# --------------------------------------------------------------------------------- draining


def _reason(attributes: dict[str, str]) -> tuple[str, str, int | None]:
    """(reason, in words, Pub/Sub's delivery count) of a dead letter's attributes."""
    count_text = attributes.get(DELIVERY_COUNT_ATTR, "")
    count = int(count_text) if count_text.isdigit() else None
    reason = attributes.get(REASON_ATTR)
    if reason:
        return reason[:100], attributes.get(ERROR_ATTR, "")[:1000], count
    if count is not None:
        words = f"the matcher did not acknowledge it in {count} deliveries"
        return DELIVERY_ATTEMPTS, words, count
    return "unknown", attributes.get(ERROR_ATTR, "")[:1000], count


def _command_of(data: bytes) -> tuple[str | None, str | None]:
    """(command id, command type) when ``data`` looks like a command, else Nones."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    cid, kind = doc.get("id"), doc.get("command")
    return (
        cid[:200] if isinstance(cid, str) else None,
        kind[:100] if isinstance(kind, str) else None,
    )


def store(db: Database, message: Any) -> None:
    """Keep one pulled dead letter (a ``PubsubMessage``); a second time changes nothing."""
    attributes = dict(message.attributes)
    reason, error, count = _reason(attributes)
    command_id, command_type = _command_of(message.data)
    published: datetime | None = message.publish_time or None
    db.run(
        "INSERT INTO dead_letters (message_id, published_at, ordering_key, data, attributes,"
        " command_id, command_type, producer, reason, error, delivery_count)"
        " VALUES (:m, :p, :k, :d, CAST(:a AS jsonb), :c, :t, :pr, :r, :e, :n)"
        " ON CONFLICT (message_id) DO NOTHING",
        m=message.message_id, p=published,
        k=message.ordering_key or attributes.get(ORDERING_KEY_ATTR, ""),
        d=bytes(message.data), a=orjson.dumps(attributes).decode(), c=command_id,
        t=command_type, pr=attributes.get(PRODUCER_ATTR), r=reason, e=error, n=count,
    )  # fmt: skip


def drain(
    subscriber: pubsub_v1.SubscriberClient, subscription: str, call: Callable[..., Any]
) -> int:
    """Move what waits on the hold subscription into the table, acknowledging each batch only
    once it is stored; how many were moved. ``call(fn)`` runs ``fn(db)`` (SharedConnection)."""
    moved = 0
    for _ in range(_PULL_ROUNDS):
        try:
            resp = subscriber.pull(
                request={
                    "subscription": subscription,
                    "max_messages": _PULL_MAX,
                    "return_immediately": True,  # a list to show now, not a wait for more
                },
                timeout=5.0,
            )
        except gexc.DeadlineExceeded:
            break
        received = list(resp.received_messages)
        if not received:
            break

        def keep(db: Database, batch: list[Any] = received) -> None:
            for r in batch:
                store(db, r.message)

        call(keep)
        subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [r.ack_id for r in received]}
        )
        moved += len(received)
        if len(received) < _PULL_MAX:
            break
    return moved


# --------------------------------------------------------------------------------- reading


def preview(data: bytes) -> str:
    """What the command says, safe to show: JSON with secret-looking fields' values removed,
    else its text without control characters; at most PREVIEW_CHARS."""
    try:
        doc = orjson.loads(data)
        text = orjson.dumps(without_secrets(doc)).decode()
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", errors="replace")
    text = "".join(c if c in " \n" or unicodedata.category(c)[0] != "C" else "\ufffd" for c in text)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _letter(row: Any) -> dict[str, Any]:
    (mid, received, published, key, cid, ctype, producer, reason, error, count, state, by, at,
     redrive_id, data) = row  # fmt: skip
    return {
        "id": mid, "received_at": _iso(received), "published_at": _iso(published),
        "ordering_key": key, "command_id": cid, "command_type": ctype, "producer": producer,
        "reason": reason, "error": error, "delivery_count": count, "state": state,
        "decided_by": by, "decided_at": _iso(at), "redrive_message_id": redrive_id,
        "redrivable": state == "held" and reason not in FINAL_REASONS,
        "preview": preview(bytes(data)),
    }  # fmt: skip


def listing(db: Database, state: str | None, limit: int) -> list[dict[str, Any]]:
    """The letters newest first (of one state, or all)."""
    rows = db.run(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE CAST(:s AS text) IS NULL OR state = :s"
        " ORDER BY received_at DESC, message_id LIMIT :n",
        s=state, n=min(limit, MAX_LISTED),
    )  # fmt: skip
    return [_letter(r) for r in rows]


def get(db: Database, message_id: str) -> dict[str, Any] | None:
    rows = db.run(f"SELECT {_COLUMNS} FROM dead_letters WHERE message_id = :m", m=message_id)
    return _letter(rows[0]) if rows else None


# --------------------------------------------------------------------------------- deciding


def claim_redrive(
    db: Database, message_id: str, admin_id: str
) -> tuple[bytes, dict[str, str], str] | None:
    """Take the letter for a re-drive: (data, the command's own attributes, ordering key), or
    None when it is not (or no longer) held, or the matcher refused it for good."""
    rows = db.run(
        "UPDATE dead_letters SET state = 'redriving', decided_by = :b, decided_at = now()"
        " WHERE message_id = :m AND NOT (reason = ANY(CAST(:final AS text[])))"
        " AND (state = 'held' OR (state = 'redriving'"
        "      AND decided_at < now() - make_interval(secs => :t)))"
        " RETURNING data, attributes, ordering_key",
        m=message_id, b=admin_id, final=sorted(FINAL_REASONS), t=CLAIM_TIMEOUT_S,
    )  # fmt: skip
    if not rows:
        return None
    data, attributes, key = rows[0]
    own = {str(k): str(v) for k, v in (attributes or {}).items() if not _ADDED.match(str(k))}
    return bytes(data), own, str(key)


def redriven(db: Database, message_id: str, new_message_id: str) -> None:
    db.run(
        "UPDATE dead_letters SET state = 'redriven', redrive_message_id = :n"
        " WHERE message_id = :m AND state = 'redriving'",
        m=message_id, n=new_message_id,
    )  # fmt: skip


def release(db: Database, message_id: str) -> None:
    """The publish failed: the letter is held again, for another try."""
    db.run(
        "UPDATE dead_letters SET state = 'held', decided_by = NULL, decided_at = NULL"
        " WHERE message_id = :m AND state = 'redriving'",
        m=message_id,
    )


def discard(db: Database, message_id: str, admin_id: str) -> bool:
    """Mark a held letter discarded; False when it is not (or no longer) held."""
    rows = db.run(
        "UPDATE dead_letters SET state = 'discarded', decided_by = :b, decided_at = now()"
        " WHERE message_id = :m AND state = 'held' RETURNING message_id",
        m=message_id, b=admin_id,
    )  # fmt: skip
    return bool(rows)
