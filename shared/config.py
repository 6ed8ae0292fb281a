"""Configuration from the environment, in one typed place.

Every deployable calls ``load_*`` once at start; a missing or malformed variable stops it
at once with a message naming the variable, instead of failing later in a request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


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
    """While a backlog lasts, how long to keep pulling into one batch before committing it."""
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
            batch_wait_ms=_int("BATCH_WAIT_MS", 25),
            snapshot_every=_int("SNAPSHOT_EVERY", 100_000),
            snapshot_seconds=_float("SNAPSHOT_SECONDS", 300.0),
            reply_ttl_s=_int("REPLY_TTL_S", 3600),
            depth_levels=_int("DEPTH_LEVELS", 50),
        )


def _list(name: str, default: str = "") -> tuple[str, ...]:
    raw = os.environ.get(name, default)
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _optional(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """An external OpenID Connect issuer (e.g. Auth0) whose access tokens the API accepts."""

    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...]
    """Pinned; never a symmetric (HS*) algorithm."""
    role_claim: str | None
    """A claim that may say ``admin``; without it every external user has the role ``user``."""
    jwks_cache_s: int

    @staticmethod
    def load() -> OidcConfig | None:
        issuer = _optional("OIDC_ISSUER")
        if issuer is None:
            return None
        algorithms = _list("OIDC_ALGORITHMS", "RS256")
        if not algorithms or any(not a.startswith(("RS", "PS", "ES", "EdDSA")) for a in algorithms):
            raise ConfigError(f"OIDC_ALGORITHMS must be asymmetric algorithms, got {algorithms}")
        return OidcConfig(
            issuer=issuer,
            audience=_get("OIDC_AUDIENCE"),
            jwks_url=_get("OIDC_JWKS_URL", issuer.rstrip("/") + "/.well-known/jwks.json"),
            algorithms=algorithms,
            role_claim=_optional("OIDC_ROLE_CLAIM"),
            jwks_cache_s=_int("OIDC_JWKS_CACHE_S", 300),
        )


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """What every HTTP function needs: HTTP behaviour, the auth secrets' source, token and
    API-key rules, rate limits.

    The secrets (JWT signing keys, the API-key master secret) come from exactly one of
    ``AUTH_KEYS_SECRET`` (a Secret Manager version name, in the cloud), ``AUTH_KEYS_FILE`` or
    ``AUTH_KEYS_JSON`` (development); the document's format is in ``shared.auth``.
    """

    project: str
    redis_url: str
    cors_origins: tuple[str, ...]
    """Origins allowed to call from a browser; ``*`` allows any; empty allows none."""
    max_body_bytes: int
    trusted_proxy_hops: int
    """Proxies in front that append to X-Forwarded-For (0 locally: use the peer address)."""
    keys_secret: str | None
    keys_file: str | None
    keys_json: str | None = field(repr=False)
    jwt_issuer: str
    jwt_audience: str
    jwt_leeway_s: int
    access_ttl_s: int
    refresh_ttl_s: int
    oidc: OidcConfig | None
    api_key_window_ms: int
    """A signed request's timestamp may differ from the server's clock by at most this."""
    password_min_length: int
    rate_window_s: int
    rate_per_ip: int
    """Login and signup attempts per client IP and window."""
    rate_per_email: int
    """Login and signup attempts per email address and window."""
    reply_wait_s: float = 2.0
    """How long a function waits for the matcher's reply before answering 202."""
    idempotency_ttl_s: int = 24 * 3600
    """How long an ``Idempotency-Key`` (and a command's owner marker) is remembered."""
    trade_rate_window_s: int = 10
    trade_rate_per_user: int = 200
    """Order placements and cancels per user and window."""
    trade_rate_per_ip: int = 1000
    """Order placements and cancels per client IP and window."""

    @staticmethod
    def load() -> ApiConfig:
        sources = {
            name: _optional(name)
            for name in ("AUTH_KEYS_SECRET", "AUTH_KEYS_FILE", "AUTH_KEYS_JSON")
        }
        given = [name for name, value in sources.items() if value is not None]
        if len(given) != 1:
            raise ConfigError(
                "exactly one of AUTH_KEYS_SECRET, AUTH_KEYS_FILE, AUTH_KEYS_JSON is required"
                + (f", got {', '.join(given)}" if given else "")
            )
        cfg = ApiConfig(
            project=_get("GOOGLE_CLOUD_PROJECT", "local-exchange"),
            redis_url=_get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            cors_origins=_list("API_CORS_ORIGINS"),
            max_body_bytes=_int("API_MAX_BODY_BYTES", 64 * 1024),
            trusted_proxy_hops=_int("API_TRUSTED_PROXY_HOPS", 0),
            keys_secret=sources["AUTH_KEYS_SECRET"],
            keys_file=sources["AUTH_KEYS_FILE"],
            keys_json=sources["AUTH_KEYS_JSON"],
            jwt_issuer=_get("JWT_ISSUER", "exchange"),
            jwt_audience=_get("JWT_AUDIENCE", "exchange-api"),
            jwt_leeway_s=_int("JWT_LEEWAY_S", 30),
            access_ttl_s=_int("ACCESS_TOKEN_TTL_S", 900),
            refresh_ttl_s=_int("REFRESH_TOKEN_TTL_S", 30 * 24 * 3600),
            oidc=OidcConfig.load(),
            api_key_window_ms=_int("API_KEY_WINDOW_MS", 5000),
            password_min_length=_int("PASSWORD_MIN_LENGTH", 10),
            rate_window_s=_int("AUTH_RATE_WINDOW_S", 60),
            rate_per_ip=_int("AUTH_RATE_PER_IP", 30),
            rate_per_email=_int("AUTH_RATE_PER_EMAIL", 10),
            reply_wait_s=_float("API_REPLY_WAIT_S", 2.0),
            idempotency_ttl_s=_int("API_IDEMPOTENCY_TTL_S", 24 * 3600),
            trade_rate_window_s=_int("TRADE_RATE_WINDOW_S", 10),
            trade_rate_per_user=_int("TRADE_RATE_PER_USER", 200),
            trade_rate_per_ip=_int("TRADE_RATE_PER_IP", 1000),
        )
        for name, value in (
            ("API_MAX_BODY_BYTES", cfg.max_body_bytes),
            ("ACCESS_TOKEN_TTL_S", cfg.access_ttl_s),
            ("REFRESH_TOKEN_TTL_S", cfg.refresh_ttl_s),
            ("API_KEY_WINDOW_MS", cfg.api_key_window_ms),
            ("AUTH_RATE_WINDOW_S", cfg.rate_window_s),
            ("AUTH_RATE_PER_IP", cfg.rate_per_ip),
            ("AUTH_RATE_PER_EMAIL", cfg.rate_per_email),
            ("API_IDEMPOTENCY_TTL_S", cfg.idempotency_ttl_s),
            ("TRADE_RATE_WINDOW_S", cfg.trade_rate_window_s),
            ("TRADE_RATE_PER_USER", cfg.trade_rate_per_user),
            ("TRADE_RATE_PER_IP", cfg.trade_rate_per_ip),
        ):
            if value <= 0:
                raise ConfigError(f"environment variable {name} must be positive, got {value}")
        if not 0 <= cfg.reply_wait_s <= 60:
            raise ConfigError("environment variable API_REPLY_WAIT_S must be 0 to 60 seconds")
        if cfg.password_min_length < 8:
            raise ConfigError("environment variable PASSWORD_MIN_LENGTH must be at least 8")
        return cfg
