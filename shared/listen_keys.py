"""Binance user-data-stream listen keys: who a ``listenKey`` stands for, kept in Redis.

The Binance dialect's ``POST /api/v3/userDataStream`` (an API key with the ``read`` scope)
creates one; ``PUT`` keeps it alive for another hour; ``DELETE`` ends it. The ws service
resolves the key a client puts in its stream URL (``/ws/<listenKey>``) to the user whose
orders and balances it then streams. A key is 64 random URL-safe characters, as long as
Binance's, and is the only credential of that stream: it is never logged.
"""

from __future__ import annotations

import secrets
from typing import Final

import redis

from shared.redis_keys import listen_key_key, user_listen_keys_key
from shared.redis_values import text

TTL_S: Final = 3600
"""A key lives 60 minutes after its creation or last keep-alive, as on Binance."""

MAX_PER_USER: Final = 20
"""Live keys one user may hold; past this a new one is refused (none is ended for it)."""

KEY_LENGTH: Final = 64


class TooManyListenKeysError(Exception):
    """The user already holds ``MAX_PER_USER`` live keys."""


def well_formed(listen_key: str) -> bool:
    """Whether ``listen_key`` could be one of ours (checked before any Redis lookup)."""
    return len(listen_key) == KEY_LENGTH and all(c.isalnum() or c in "-_" for c in listen_key)


def create(client: redis.Redis, user: str) -> str:
    """A new listen key for ``user``; ``TooManyListenKeysError`` past ``MAX_PER_USER``."""
    held = {text(k) for k in client.smembers(user_listen_keys_key(user))}
    live = {k for k in held if client.exists(listen_key_key(k))}
    if len(live) >= MAX_PER_USER:
        raise TooManyListenKeysError(user)
    key = secrets.token_urlsafe(48)  # 48 bytes -> 64 characters
    pipe = client.pipeline(transaction=True)
    pipe.set(listen_key_key(key), user, ex=TTL_S)
    pipe.sadd(user_listen_keys_key(user), key)
    pipe.expire(user_listen_keys_key(user), TTL_S)
    if held - live:  # expired keys leave the set here
        pipe.srem(user_listen_keys_key(user), *(held - live))
    pipe.execute()
    return key


def owner(client: redis.Redis, listen_key: str) -> str | None:
    """The user ``listen_key`` stands for, or None if it is unknown or expired."""
    if not well_formed(listen_key):
        return None
    value = client.get(listen_key_key(listen_key))
    return None if value is None else text(value)


def keep_alive(client: redis.Redis, user: str, listen_key: str) -> bool:
    """Another ``TTL_S`` for ``user``'s key; False when it is not theirs or has expired."""
    if owner(client, listen_key) != user:
        return False
    pipe = client.pipeline(transaction=True)
    pipe.expire(listen_key_key(listen_key), TTL_S)
    pipe.expire(user_listen_keys_key(user), TTL_S)
    pipe.execute()
    return True


def close(client: redis.Redis, user: str, listen_key: str) -> bool:
    """End ``user``'s key (streams on it stop); False when it is not theirs or has expired."""
    if owner(client, listen_key) != user:
        return False
    pipe = client.pipeline(transaction=True)
    pipe.delete(listen_key_key(listen_key))
    pipe.srem(user_listen_keys_key(user), listen_key)
    pipe.execute()
    return True
