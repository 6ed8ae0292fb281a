"""What comes back from Redis, as Python values."""

from __future__ import annotations

import orjson
import redis

from shared.redis_keys import ASSETS_KEY


def text(value: bytes | str) -> str:
    """A key, field or value as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else value


def asset_precisions(client: redis.Redis) -> dict[str, int]:
    """Every listed asset and its precision, as the matcher publishes them (``ASSETS_KEY``)."""
    raw = client.hgetall(ASSETS_KEY)
    return {text(k): int(orjson.loads(v)["precision"]) for k, v in raw.items()}
