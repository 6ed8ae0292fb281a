"""Time as the API writes it: aware UTC datetimes, ISO 8601 text on the wire."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def iso(value: object) -> str | None:
    """A datetime (Postgres ``timestamptz``, a Firestore timestamp) as ISO 8601 in UTC;
    anything else (a missing field, None) as None."""
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else None
