"""Configuration from the environment, in one typed place.

Every deployable calls ``load_*`` once at start; a missing or malformed variable stops it
at once with a message naming the variable, instead of failing later in a request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class ConfigError(RuntimeError):
    pass


def _get(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ConfigError(f"environment variable {name} is required")
    return value


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """A direct connection (local) or, with ``instance``, the Cloud SQL connector."""

    user: str
    password: str | None
    database: str
    host: str
    port: int
    instance: str | None

    @staticmethod
    def load() -> PostgresConfig:
        return PostgresConfig(
            user=_get("PGUSER", "postgres"),
            password=os.environ.get("PGPASSWORD") or None,
            database=_get("PGDATABASE", "postgres"),
            host=_get("PGHOST", "127.0.0.1"),
            port=_int("PGPORT", 5432),
            instance=os.environ.get("CLOUD_SQL_INSTANCE") or None,
        )


@dataclass(frozen=True, slots=True)
class PubSubConfig:
    project: str
    commands_topic: str
    commands_subscription: str
    events_topic: str
    dead_letter_topic: str
    max_delivery_attempts: int

    @staticmethod
    def load() -> PubSubConfig:
        return PubSubConfig(
            project=_get("GOOGLE_CLOUD_PROJECT", "local-exchange"),
            commands_topic=_get("COMMANDS_TOPIC", "commands"),
            commands_subscription=_get("COMMANDS_SUBSCRIPTION", "commands-matcher"),
            events_topic=_get("EVENTS_TOPIC", "events"),
            dead_letter_topic=_get("DEAD_LETTER_TOPIC", "commands-dead-letter"),
            max_delivery_attempts=_int("MAX_DELIVERY_ATTEMPTS", 10),
        )


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    postgres: PostgresConfig
    pubsub: PubSubConfig
    redis_url: str
    port: int
    batch_max: int
    """Most commands in one batch (one Postgres transaction)."""
    batch_wait_ms: int
    """How long a pull waits for more commands before it closes a batch."""
    snapshot_every: int
    """Write a snapshot after this many commands (0: never)."""
    snapshot_seconds: float
    reply_ttl_s: int
    depth_levels: int

    @staticmethod
    def load() -> MatcherConfig:
        return MatcherConfig(
            postgres=PostgresConfig.load(),
            pubsub=PubSubConfig.load(),
            redis_url=_get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            port=_int("PORT", 8090),
            batch_max=_int("BATCH_MAX", 1000),
            batch_wait_ms=_int("BATCH_WAIT_MS", 5),
            snapshot_every=_int("SNAPSHOT_EVERY", 100_000),
            snapshot_seconds=_float("SNAPSHOT_SECONDS", 300.0),
            reply_ttl_s=_int("REPLY_TTL_S", 3600),
            depth_levels=_int("DEPTH_LEVELS", 50),
        )
