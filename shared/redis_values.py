"""What comes back from Redis, as Python values."""

from __future__ import annotations


def text(value: bytes | str) -> str:
    """A key, field or value as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else value
