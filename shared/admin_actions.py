"""The append-only log of admin actions (``admin_actions``, migrations/0005): who, what,
when, from where. The product only inserts; the database refuses updates and deletes."""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from shared.db import Database

MAX_LISTED: Final = 500
_SECRET: Final = re.compile(r"pass|secret|token|key|mnemonic", re.IGNORECASE)


def without_secrets(value: Any) -> Any:
    """``value`` with secrets' values removed, NUL characters (which Postgres's text and
    jsonb cannot hold) replaced, and integers beyond 64 bits as text."""
    if isinstance(value, dict):
        return {
            _text(str(k)): "(removed)" if _SECRET.search(str(k)) else without_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)  # kept exactly, and answerable as JSON again
    return value


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd")


def record(
    db: Database,
    *,
    admin_id: str,
    action: str,
    target: str | None,
    client_ip: str,
    request_id: str,
    details: Any,
) -> int:
    """Append one action; its id."""
    rows = db.run(
        "INSERT INTO admin_actions (admin_id, action, target, client_ip, request_id, details)"
        " VALUES (:a, :act, :t, :ip, :rid, CAST(:d AS jsonb)) RETURNING id",
        a=admin_id, act=_text(action), t=None if target is None else _text(target),
        ip=client_ip, rid=request_id,
        d=orjson.dumps(without_secrets(details)).decode(),
    )  # fmt: skip
    return int(rows[0][0])


def listing(db: Database, before: int | None, limit: int) -> list[dict[str, Any]]:
    """The actions newest first, those with an id below ``before`` when given."""
    rows = db.run(
        "SELECT id, at, admin_id, action, target, client_ip, request_id, details"
        " FROM admin_actions WHERE CAST(:b AS bigint) IS NULL OR id < :b"
        " ORDER BY id DESC LIMIT :n",
        b=before, n=min(limit, MAX_LISTED),
    )  # fmt: skip
    return [
        {
            "id": int(r[0]),
            "at": r[1].isoformat(),
            "admin_id": r[2],
            "action": r[3],
            "target": r[4],
            "client_ip": r[5],
            "request_id": r[6],
            "details": without_secrets(r[7]),  # jsonb turns 1e30 into an integer
        }
        for r in rows
    ]
