"""Configuration from the environment, in one typed place.

Every deployable calls ``load_*`` once at start; a missing or malformed variable stops it
at once with a message naming the variable, instead of failing later in a request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from shared import logs


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
    outbox: bool = False
    """Keep accepted commands in Redis until they are in the oplog (shared/outbox.py): for
    the local emulator, which forgets unacknowledged messages when it stops."""

    @staticmethod
    def load() -> PubSubConfig:
        return PubSubConfig(
            project=_get("GOOGLE_CLOUD_PROJECT", "local-exchange"),
            commands_topic=_get("COMMANDS_TOPIC", "commands"),
            commands_subscription=_get("COMMANDS_SUBSCRIPTION", "commands-matcher"),
            events_topic=_get("EVENTS_TOPIC", "events"),
            dead_letter_topic=_get("DEAD_LETTER_TOPIC", "commands-dead-letter"),
            max_delivery_attempts=_int("MAX_DELIVERY_ATTEMPTS", 10),
            outbox=os.environ.get("COMMANDS_OUTBOX", "") in ("1", "true", "yes"),
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
    host: str = "127.0.0.1"
    """Where the health server (``/healthz``, ``/readyz``) listens: loopback unless told
    otherwise (``MATCHER_HOST``); the container image says ``0.0.0.0`` for Cloud Run."""
    seq_hold_ms: int = 3000
    """How long a gap in a user's commands is held (the missing one may still come) before
    the later ones are applied past it (docs/decisions/0006)."""

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
            host=_get("MATCHER_HOST", "127.0.0.1"),
            seq_hold_ms=_int("SEQ_HOLD_MS", 3000),
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
    """X-Forwarded-For entries, from the right, that the deployment's own proxies append (0
    locally: the TCP peer; 2 behind the cloud's load balancer). shared.http.client_ip."""
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
    """Signups per client IP and window."""
    rate_per_email: int
    """Signups per email address and window."""
    failure_window_s: int
    """How long a password failure counts (shared.throttle): from a budget's first failure."""
    failures_per_email_ip: int
    """Wrong passwords per (email, client address) and window; then 429 for that client."""
    failures_per_ip: int
    """Wrong passwords per client address (any email) and window; then 429 for it."""
    fresh_auth_max_age_s: int
    """How recent a proof of who the caller is (password) sensitive actions need."""
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
            failure_window_s=_int("AUTH_FAILURE_WINDOW_S", 900),
            failures_per_email_ip=_int("AUTH_FAILURES_PER_EMAIL_IP", 10),
            failures_per_ip=_int("AUTH_FAILURES_PER_IP", 100),
            fresh_auth_max_age_s=_int("FRESH_AUTH_MAX_AGE_S", 300),
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
            ("AUTH_FAILURE_WINDOW_S", cfg.failure_window_s),
            ("AUTH_FAILURES_PER_EMAIL_IP", cfg.failures_per_email_ip),
            ("AUTH_FAILURES_PER_IP", cfg.failures_per_ip),
            ("FRESH_AUTH_MAX_AGE_S", cfg.fresh_auth_max_age_s),
            ("API_IDEMPOTENCY_TTL_S", cfg.idempotency_ttl_s),
            ("TRADE_RATE_WINDOW_S", cfg.trade_rate_window_s),
            ("TRADE_RATE_PER_USER", cfg.trade_rate_per_user),
            ("TRADE_RATE_PER_IP", cfg.trade_rate_per_ip),
        ):
            if value <= 0:
                raise ConfigError(f"environment variable {name} must be positive, got {value}")
        if not 0 <= cfg.trusted_proxy_hops <= 5:
            raise ConfigError("environment variable API_TRUSTED_PROXY_HOPS must be 0 to 5")
        if not 0 <= cfg.reply_wait_s <= 60:
            raise ConfigError("environment variable API_REPLY_WAIT_S must be 0 to 60 seconds")
        if cfg.password_min_length < 8:
            raise ConfigError("environment variable PASSWORD_MIN_LENGTH must be at least 8")
        return cfg


def _wei_from_gwei(name: str, default: str) -> int:
    from decimal import Decimal, InvalidOperation

    raw = os.environ.get(name) or default
    try:
        wei = Decimal(raw) * 10**9
    except InvalidOperation:
        raise ConfigError(
            f"environment variable {name} must be a number of gwei, got {raw!r}"
        ) from None
    if wei < 0 or wei != wei.to_integral_value():
        raise ConfigError(f"environment variable {name} must be a whole number of wei in gwei")
    return int(wei)


@dataclass(frozen=True, slots=True)
class SecretSource:
    """Where one wallet secret comes from: exactly one of ``{P}`` (the value, development
    only), ``{P}_FILE`` (a local file) or ``{P}_SECRET`` (a Secret Manager version name)."""

    name: str
    value: str | None = field(default=None, repr=False)
    file: str | None = None
    secret: str | None = None

    @staticmethod
    def load(prefix: str) -> SecretSource:
        given = {suffix: _optional(prefix + suffix) for suffix in ("", "_FILE", "_SECRET")}
        named = [prefix + s for s, v in given.items() if v is not None]
        if len(named) > 1:
            raise ConfigError(f"give at most one of {', '.join(named)}")
        return SecretSource(prefix, given[""], given["_FILE"], given["_SECRET"])

    @property
    def configured(self) -> bool:
        return self.value is not None or self.file is not None or self.secret is not None

    def read(self) -> str:
        """The secret's text, never logged (shared.logs redacts it from here on). Fails with
        the variable names when unset."""
        text = self._read()
        logs.hide(text)
        return text

    def _read(self) -> str:
        if self.value is not None:
            return self.value.strip()
        if self.file is not None:
            try:
                with open(self.file, encoding="utf-8") as f:
                    return f.read().strip()
            except OSError as exc:
                raise ConfigError(f"{self.name}_FILE cannot be read: {exc.strerror}") from None
        if self.secret is not None:
            from shared.auth import secret_manager_payload

            return secret_manager_payload(self.secret).decode().strip()
        raise ConfigError(f"one of {self.name}, {self.name}_FILE or {self.name}_SECRET is required")


@dataclass(frozen=True, slots=True)
class CursorConfig:
    """The key that signs page cursors (shared.cursors), read by the functions that list
    pages (queries, wallet): exactly one of ``CURSOR_KEY`` (the value, development only),
    ``CURSOR_KEY_FILE`` or ``CURSOR_KEY_SECRET`` (a Secret Manager version name, in the
    cloud), as the auth keys are given; at least 32 characters (``secrets.token_urlsafe(32)``).
    """

    MIN_KEY_BYTES = 32

    key: SecretSource

    @staticmethod
    def load() -> CursorConfig:
        source = SecretSource.load("CURSOR_KEY")
        if not source.configured:
            raise ConfigError("one of CURSOR_KEY, CURSOR_KEY_FILE or CURSOR_KEY_SECRET is required")
        return CursorConfig(source)

    def read_key(self) -> bytes:
        """The key's bytes; never logged."""
        key = self.key.read().encode()
        if len(key) < CursorConfig.MIN_KEY_BYTES:
            raise ConfigError(
                f"the cursor key (CURSOR_KEY*) must be at least {CursorConfig.MIN_KEY_BYTES}"
                " characters"
            )
        return key


@dataclass(frozen=True, slots=True)
class WalletConfig:
    """The Ethereum wallet's jobs and routes (shared/wallet, docs/wallet.md)."""

    rpc_url: str
    chain_id: int
    mnemonic: SecretSource
    """The HD wallet of the deposit addresses (m/44'/60'/0'/0/i): the wallet API, the sweep."""
    hot_wallet_key: SecretSource
    """The hot wallet's private key: the withdrawal sender only."""
    gas_wallet_key: SecretSource
    """The gas wallet's private key (tops deposit addresses up for token sweeps): the sweep."""
    redis_url: str
    """Where the assets' chain details and the matcher's verdicts are."""
    hot_wallet_address: str | None
    """Where sweeps go; required by the sweep (the sender derives it from its key)."""
    gas_wallet_address: str | None
    """Its top-ups are not deposits: the watcher skips transfers from it."""
    confirmations: int = 12
    """Default confirmations for an asset whose chain details do not set them."""
    max_fee_wei: int = 200 * 10**9
    """The cap on maxFeePerGas for every transaction the wallet signs."""
    priority_fee_wei: int = 10**9
    start_block: int | None = None
    """Where the watcher's first run starts (default: the head at that run)."""
    max_blocks_per_run: int = 200
    reorg_window: int = 128
    """How many recent block hashes the watcher keeps to notice a reorganisation."""
    replace_after_s: int = 120
    """A withdrawal not mined after this long is re-sent at the same nonce with a higher fee."""
    fee_bump_percent: int = 25

    @staticmethod
    def load() -> WalletConfig:
        start = _optional("WATCHER_START_BLOCK")
        if start is not None and not start.isdigit():
            raise ConfigError("environment variable WATCHER_START_BLOCK must be a block number")
        cfg = WalletConfig(
            rpc_url=_get("ETH_RPC_URL", "http://127.0.0.1:8545"),
            chain_id=_int("CHAIN_ID", 31337),
            mnemonic=SecretSource.load("WALLET_MNEMONIC"),
            hot_wallet_key=SecretSource.load("HOT_WALLET_KEY"),
            gas_wallet_key=SecretSource.load("GAS_WALLET_KEY"),
            redis_url=_get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            hot_wallet_address=_optional("HOT_WALLET_ADDRESS"),
            gas_wallet_address=_optional("GAS_WALLET_ADDRESS"),
            confirmations=_int("DEPOSIT_CONFIRMATIONS", 12),
            max_fee_wei=_wei_from_gwei("MAX_FEE_GWEI", "200"),
            priority_fee_wei=_wei_from_gwei("PRIORITY_FEE_GWEI", "1"),
            start_block=None if start is None else int(start),
            max_blocks_per_run=_int("WATCHER_MAX_BLOCKS", 200),
            reorg_window=_int("WATCHER_REORG_WINDOW", 128),
            replace_after_s=_int("WITHDRAWAL_REPLACE_AFTER_S", 120),
            fee_bump_percent=_int("WITHDRAWAL_FEE_BUMP_PERCENT", 25),
        )
        for name, value in (
            ("CHAIN_ID", cfg.chain_id),
            ("DEPOSIT_CONFIRMATIONS", cfg.confirmations),
            ("WATCHER_MAX_BLOCKS", cfg.max_blocks_per_run),
            ("WATCHER_REORG_WINDOW", cfg.reorg_window),
            ("WITHDRAWAL_REPLACE_AFTER_S", cfg.replace_after_s),
        ):
            if value <= 0:
                raise ConfigError(f"environment variable {name} must be positive, got {value}")
        if cfg.fee_bump_percent < 10:
            # Nodes refuse a replacement that does not raise both fees by at least 10 %.
            raise ConfigError("environment variable WITHDRAWAL_FEE_BUMP_PERCENT must be >= 10")
        if cfg.priority_fee_wei > cfg.max_fee_wei:
            raise ConfigError("PRIORITY_FEE_GWEI cannot exceed MAX_FEE_GWEI")
        for name, addr in (
            ("HOT_WALLET_ADDRESS", cfg.hot_wallet_address),
            ("GAS_WALLET_ADDRESS", cfg.gas_wallet_address),
        ):
            if addr is not None and not (
                len(addr) == 42 and addr.startswith("0x") and _is_hex(addr[2:])
            ):
                raise ConfigError(f"environment variable {name} must be an address (0x + 40 hex)")
        return cfg


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


@dataclass(frozen=True, slots=True)
class WsConfig:
    """The ws service (``python -m ws_service``, docs/ws.md): where it listens, the Redis it
    reads market data from, its heartbeats and limits. Authentication reads ``ApiConfig`` (the
    same JWT keys and API keys as the HTTP functions)."""

    host: str
    port: int
    redis_url: str
    max_message_bytes: int
    """Largest message a client may send (larger: closed with 1009)."""
    max_subscriptions: int
    """Channels one connection may hold at once."""
    max_connections: int
    """Open connections per process; more are refused (HTTP 503) until some close."""
    max_buffer_bytes: int
    """Bytes waiting for one client beyond its socket; more: closed as a slow consumer."""
    write_limit_bytes: int
    """The socket's write buffer high-water mark (asyncio), before messages wait in line."""
    send_buffer_bytes: int
    """SO_SNDBUF of each client socket; 0: the kernel's (autotuned: megabytes on loopback)."""
    ping_interval_s: float
    ping_timeout_s: float
    """A client that does not answer a ping within this is dead and is closed."""
    idle_timeout_s: float
    """A connection without any subscription for this long is closed."""
    close_timeout_s: float
    messages_per_s: float
    """Client messages per second per connection (bursts up to max_subscriptions more)."""
    subscribe_timeout_s: float
    """How long a subscription may wait for the market-data feed before failing."""

    @staticmethod
    def load() -> WsConfig:
        cfg = WsConfig(
            host=_get("WS_HOST", "0.0.0.0"),
            port=_int("PORT", 8081),
            redis_url=_get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            max_message_bytes=_int("WS_MAX_MESSAGE_BYTES", 16 * 1024),
            max_subscriptions=_int("WS_MAX_SUBSCRIPTIONS", 50),
            max_connections=_int("WS_MAX_CONNECTIONS", 10_000),
            max_buffer_bytes=_int("WS_MAX_BUFFER_BYTES", 1024 * 1024),
            write_limit_bytes=_int("WS_WRITE_LIMIT_BYTES", 64 * 1024),
            send_buffer_bytes=_int("WS_SEND_BUFFER_BYTES", 0),
            ping_interval_s=_float("WS_PING_INTERVAL_S", 20.0),
            ping_timeout_s=_float("WS_PING_TIMEOUT_S", 20.0),
            idle_timeout_s=_float("WS_IDLE_TIMEOUT_S", 60.0),
            close_timeout_s=_float("WS_CLOSE_TIMEOUT_S", 5.0),
            messages_per_s=_float("WS_MESSAGES_PER_S", 20.0),
            subscribe_timeout_s=_float("WS_SUBSCRIBE_TIMEOUT_S", 10.0),
        )
        for name, value in (
            ("PORT", cfg.port),
            ("WS_MAX_MESSAGE_BYTES", cfg.max_message_bytes),
            ("WS_MAX_SUBSCRIPTIONS", cfg.max_subscriptions),
            ("WS_MAX_CONNECTIONS", cfg.max_connections),
            ("WS_MAX_BUFFER_BYTES", cfg.max_buffer_bytes),
            ("WS_WRITE_LIMIT_BYTES", cfg.write_limit_bytes),
            ("WS_PING_INTERVAL_S", cfg.ping_interval_s),
            ("WS_PING_TIMEOUT_S", cfg.ping_timeout_s),
            ("WS_IDLE_TIMEOUT_S", cfg.idle_timeout_s),
            ("WS_CLOSE_TIMEOUT_S", cfg.close_timeout_s),
            ("WS_MESSAGES_PER_S", cfg.messages_per_s),
            ("WS_SUBSCRIBE_TIMEOUT_S", cfg.subscribe_timeout_s),
        ):
            if value <= 0:
                raise ConfigError(f"environment variable {name} must be positive, got {value}")
        if cfg.max_message_bytes < 1024:
            raise ConfigError("environment variable WS_MAX_MESSAGE_BYTES must be at least 1024")
        if cfg.send_buffer_bytes < 0:
            raise ConfigError("environment variable WS_SEND_BUFFER_BYTES must not be negative")
        return cfg
