"""Pointing the HTTP functions, run in-process, at a test's own services."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import orjson
import pytest

from api.auth import new_secrets_document
from shared.config import MatcherConfig
from shared.instance import reset_instance

# Sources of configuration a developer's shell may hold that must not reach the functions.
FOREIGN = (
    "AUTH_KEYS_FILE", "AUTH_KEYS_SECRET", "OIDC_ISSUER", "API_CORS_ORIGINS",
    "WALLET_MNEMONIC_FILE", "WALLET_MNEMONIC_SECRET", "CURSOR_KEY_FILE", "CURSOR_KEY_SECRET",
)  # fmt: skip


def reset_functions() -> None:
    """Forget the functions' cached configuration and clients."""
    reset_instance()


def point_functions_at(
    mp: pytest.MonkeyPatch, cfg: MatcherConfig, **extra: str
) -> Callable[..., None]:
    """Set the functions' environment to ``cfg``'s Pub/Sub names, database and Redis, with
    fresh auth keys and ``extra``; returns ``configure(**env)``, which changes more of it."""

    def configure(**env: str) -> None:
        for name, value in env.items():
            mp.setenv(name, value)
        reset_functions()

    for name in FOREIGN:
        mp.delenv(name, raising=False)
    ps = cfg.pubsub
    configure(
        AUTH_KEYS_JSON=orjson.dumps(new_secrets_document()).decode(),
        CURSOR_KEY=secrets.token_urlsafe(32),
        COMMANDS_TOPIC=ps.commands_topic,
        COMMANDS_SUBSCRIPTION=ps.commands_subscription,
        EVENTS_TOPIC=ps.events_topic,
        DEAD_LETTER_TOPIC=ps.dead_letter_topic,
        PGDATABASE=cfg.postgres.database,
        REDIS_URL=cfg.redis_url,
        API_REPLY_WAIT_S="10",
        **extra,
    )
    return configure
