"""Configuration from the environment, in one typed place.

Every deployable calls ``XConfig.load()`` once at start; a missing or malformed variable stops
it at once with a message naming the variable, instead of failing later in a request.

Each config is a frozen ``msgspec.Struct``. A field read from the environment names its
variable once, in its annotation, together with its constraints::

    batch_max: Annotated[int, env("BATCH_MAX", gt=0)] = 1000

``from_env`` reads those variables (an unset or empty one takes the field's default), turns
the text of booleans and comma-separated lists into values, and lets ``msgspec.convert``
(``strict=False``: ``"25"`` becomes 25) check types and constraints; a failure becomes a
``ConfigError`` naming the variable, what it must be and what it was.
"""

from __future__ import annotations

import base64
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any, ClassVar, TypeVar

import msgspec
from msgspec import Meta

from shared import logs


class ConfigError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# the loader
# --------------------------------------------------------------------------------------------


def env(
    name: str,
    *,
    parse: Callable[[str], object] | None = None,
    secret: bool = False,
    **constraints: Any,
) -> Meta:
    """A field's environment variable ``name``, its constraints (``msgspec.Meta``: ``gt``,
    ``ge``, ``le``, ``pattern``, ``min_length``...), an optional ``parse`` of the text (raising
    ``ValueError("must be ...")``) and whether its value is kept out of reprs and errors."""
    extra: dict[str, Any] = {"env": name}
    if parse is not None:
        extra["parse"] = parse
    if secret:
        extra["secret"] = True
    return Meta(extra=extra, **constraints)


SECRET = Meta(extra={"secret": True})
"""A field, not from the environment by itself, kept out of reprs."""


class _Field(msgspec.Struct, frozen=True):
    name: str
    env: str | None
    kind: type | None
    """``bool`` or ``tuple`` when the text needs a turn before conversion."""
    parse: Callable[[str], object] | None
    secret: bool


def _metas(tp: Any) -> tuple[list[Meta], type | None]:
    """The ``Meta`` annotations anywhere in ``tp`` (``Annotated``, ``X | None``) and its
    base type when that is ``bool`` or a tuple."""
    metas: list[Meta] = []
    kind: type | None = None
    stack = [tp]
    while stack:
        t = stack.pop()
        origin = typing.get_origin(t)
        if origin is Annotated:
            base, *extras = typing.get_args(t)
            metas.extend(m for m in extras if isinstance(m, Meta))
            stack.append(base)
        elif origin in (typing.Union, types.UnionType):
            stack.extend(typing.get_args(t))
        elif t is bool or origin is tuple:
            kind = bool if t is bool else tuple
    return metas, kind


@cache
def _fields(cls: type[msgspec.Struct]) -> tuple[_Field, ...]:
    out = []
    for f in msgspec.structs.fields(cls):
        metas, kind = _metas(f.type)
        extra: dict[str, Any] = {}
        for m in metas:
            extra.update(m.extra or {})
        out.append(
            _Field(f.name, extra.get("env"), kind, extra.get("parse"), bool(extra.get("secret")))
        )
    return tuple(out)


def env_names(cls: type[msgspec.Struct]) -> dict[str, str]:
    """Field name → environment variable, for the fields of ``cls`` read from it."""
    return {f.name: f.env for f in _fields(cls) if f.env is not None}


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _text_to_value(field: _Field, raw: str) -> object:
    if field.parse is not None:
        return field.parse(raw)
    if field.kind is bool:
        word = raw.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else raw
    if field.kind is tuple:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw if field.secret else raw.strip()


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "bool": "one of 1, true, yes, on, 0, false, no, off",
    "array": "a comma-separated list",
}
_PATH = re.compile(r" - at `\$\.(\w+)")
_MISSING = re.compile(r"missing required field `(\w+)`")
_EXPECTED = re.compile(r"Expected `([\w |]+)`(.*)")

Config = TypeVar("Config", bound=msgspec.Struct)


def from_env(cls: type[Config], environ: Mapping[str, str] | None = None, **given: Any) -> Config:
    """``cls`` from its fields' environment variables; ``given`` fills the fields that are not
    read from the environment by themselves (nested configs, secret sources)."""
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in _fields(cls)}
    raw: dict[str, str] = {}
    values: dict[str, object] = dict(given)
    for f in fields.values():
        if f.env is None:
            continue
        text = environ.get(f.env, "")
        if text.strip() == "":
            continue
        raw[f.name] = text
        try:
            values[f.name] = _text_to_value(f, text)
        except ValueError as exc:
            raise ConfigError(_message(f, str(exc), text)) from None
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(cls, fields, str(exc), raw)) from None


def _explain(cls: type, fields: dict[str, _Field], error: str, raw: dict[str, str]) -> str:
    missing = _MISSING.search(error)
    if missing:
        f = fields.get(missing.group(1))
        if f is not None and f.env is not None:
            return f"environment variable {f.env} is required"
    at = _PATH.search(error)
    f = fields.get(at.group(1)) if at else None
    if f is None or f.env is None:
        return f"{cls.__name__}: {error}"
    reason = error[: at.start()] if at else error
    expected = _EXPECTED.match(reason)
    if expected:
        kind, rest = expected.groups()
        words = " or ".join(_TYPE_WORDS.get(k.strip(), k.strip()) for k in kind.split("|"))
        rest = "" if rest.startswith(", got") else rest
        if " or null" in words:
            words = words.replace(" or null", "")
        reason = f"must be {words}{rest}"
    return _message(f, reason, raw.get(f.name, ""))


def _message(f: _Field, reason: str, text: str) -> str:
    shown = "" if f.secret else f", got {text!r}"
    return f"environment variable {f.env} {reason}{shown}"


class _Config(msgspec.Struct, frozen=True, kw_only=True):
    """The configs' base: a repr without the secret fields."""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in _fields(type(self)) if not f.secret
        )
        return f"{type(self).__name__}({shown})"


def _unset(cls: type[msgspec.Struct], field: str, environ: Mapping[str, str] | None) -> bool:
    name = env_names(cls)[field]
    return (os.environ if environ is None else environ).get(name, "").strip() == ""


Port = Annotated[int, Meta(ge=1, le=65535)]
REDIS_URL = "redis://127.0.0.1:6379/0"
Project = Annotated[str, env("GOOGLE_CLOUD_PROJECT")]
PROJECT = "local-exchange"

# The account rules the HTTP API applies and the admin's bootstrap applies too: each variable
# named once, here.
PasswordMinLength = Annotated[int, env("PASSWORD_MIN_LENGTH", ge=8)]
PASSWORD_MIN_LENGTH = 10
AccessTokenTtl = Annotated[int, env("ACCESS_TOKEN_TTL_S", gt=0)]
ACCESS_TOKEN_TTL_S = 900
JwtLeeway = Annotated[int, env("JWT_LEEWAY_S", ge=0)]
JWT_LEEWAY_S = 30
BlockNumber = Annotated[int, Meta(ge=0)]
Address = Annotated[str, Meta(pattern="^0x[0-9a-fA-F]{40}$")]


# --------------------------------------------------------------------------------------------
# the configs
# --------------------------------------------------------------------------------------------


class PostgresConfig(_Config, frozen=True, kw_only=True):
    """A direct connection (local) or, with ``instance``, the Cloud SQL connector."""

    user: Annotated[str, env("PGUSER")] = "postgres"
    password: Annotated[str | None, env("PGPASSWORD", secret=True)] = None
    database: Annotated[str, env("PGDATABASE")] = "postgres"
    host: Annotated[str, env("PGHOST")] = "127.0.0.1"
    port: Annotated[Port, env("PGPORT")] = 5432
    instance: Annotated[str | None, env("CLOUD_SQL_INSTANCE")] = None

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> PostgresConfig:
        return from_env(PostgresConfig, environ)


class PubSubConfig(_Config, frozen=True, kw_only=True):
    project: Project = PROJECT
    commands_topic: Annotated[str, env("COMMANDS_TOPIC")] = "commands"
    commands_subscription: Annotated[str, env("COMMANDS_SUBSCRIPTION")] = "commands-matcher"
    events_topic: Annotated[str, env("EVENTS_TOPIC")] = "events"
    dead_letter_topic: Annotated[str, env("DEAD_LETTER_TOPIC")] = "commands-dead-letter"
    max_delivery_attempts: Annotated[int, env("MAX_DELIVERY_ATTEMPTS", ge=5, le=100)] = 10
    """Pub/Sub's dead-letter policy allows 5 to 100."""
    outbox: Annotated[bool, env("COMMANDS_OUTBOX")] = False
    """Keep accepted commands in Redis until they are in the oplog (shared/outbox.py): for
    the local emulator, which forgets unacknowledged messages when it stops."""

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> PubSubConfig:
        return from_env(PubSubConfig, environ)


DEFAULT_MAX_OPEN_ORDERS = 200
"""Open orders per user unless ``MAX_OPEN_ORDERS`` says otherwise (as Binance's 200)."""


class MatcherConfig(_Config, frozen=True, kw_only=True):
    postgres: PostgresConfig
    pubsub: PubSubConfig
    redis_url: Annotated[str, env("REDIS_URL")] = REDIS_URL
    port: Annotated[int, env("PORT", ge=0, le=65535)] = 8090
    """The health server's port; 0: any free one (tests)."""
    batch_max: Annotated[int, env("BATCH_MAX", gt=0)] = 1000
    """Most commands in one batch (one Postgres transaction)."""
    batch_wait_ms: Annotated[int, env("BATCH_WAIT_MS", ge=0)] = 25
    """While a backlog lasts, how long to keep pulling into one batch before committing it."""
    snapshot_every: Annotated[int, env("SNAPSHOT_EVERY", ge=0)] = 100_000
    """Write a snapshot after this many commands (0: never)."""
    snapshot_seconds: Annotated[float, env("SNAPSHOT_SECONDS", gt=0)] = 300.0
    reply_ttl_s: Annotated[int, env("REPLY_TTL_S", gt=0)] = 3600
    depth_levels: Annotated[int, env("DEPTH_LEVELS", gt=0)] = 50
    host: Annotated[str, env("MATCHER_HOST")] = "127.0.0.1"
    """Where the health server (``/healthz``, ``/readyz``) listens: loopback unless told
    otherwise; the container image says ``0.0.0.0`` for Cloud Run."""
    seq_hold_ms: Annotated[int, env("SEQ_HOLD_MS", ge=0)] = 3000
    """How long a gap in a user's commands is held (the missing one may still come) before
    the later ones are applied past it (docs/decisions/0006)."""
    max_open_orders: Annotated[int, env("MAX_OPEN_ORDERS", ge=0)] = DEFAULT_MAX_OPEN_ORDERS
    """Open orders (resting and pending stop orders) one user may have; more are refused,
    ``too_many_orders``; 0: no limit. Replays must run with the same (docs/decisions/0019)."""

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> MatcherConfig:
        return from_env(
            MatcherConfig,
            environ,
            postgres=PostgresConfig.load(environ),
            pubsub=PubSubConfig.load(environ),
        )


Asymmetric = Annotated[str, Meta(pattern="^(RS|PS|ES|EdDSA)")]


class OidcConfig(_Config, frozen=True, kw_only=True):
    """An external OpenID Connect issuer (e.g. Auth0) whose access tokens the API accepts."""

    issuer: Annotated[str, env("OIDC_ISSUER")]
    audience: Annotated[str, env("OIDC_AUDIENCE")]
    jwks_url: Annotated[str, env("OIDC_JWKS_URL")] = ""
    """Default: the issuer's ``/.well-known/jwks.json``."""
    algorithms: Annotated[tuple[Asymmetric, ...], env("OIDC_ALGORITHMS", min_length=1)] = ("RS256",)
    """Pinned; never a symmetric (HS*) algorithm."""
    role_claim: Annotated[str | None, env("OIDC_ROLE_CLAIM")] = None
    """A claim that may say ``admin``; without it every external user has the role ``user``."""
    jwks_cache_s: Annotated[int, env("OIDC_JWKS_CACHE_S", gt=0)] = 300

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> OidcConfig | None:
        """None without an issuer."""
        if _unset(OidcConfig, "issuer", environ):
            return None
        cfg = from_env(OidcConfig, environ)
        if not cfg.jwks_url:
            url = cfg.issuer.rstrip("/") + "/.well-known/jwks.json"
            cfg = msgspec.structs.replace(cfg, jwks_url=url)
        return cfg


class HttpConfig(_Config, frozen=True, kw_only=True):
    """What the wrapper around every HTTP function needs (api.http.Api): browsers' origins,
    the body limit, the proxies in front, the project (the trace field of log lines). The
    docs function needs nothing more; ``ApiConfig`` adds what the others need."""

    project: Project = PROJECT
    cors_origins: Annotated[tuple[str, ...], env("API_CORS_ORIGINS")] = ()
    """Origins allowed to call from a browser; ``*`` allows any; empty allows none."""
    max_body_bytes: Annotated[int, env("API_MAX_BODY_BYTES", gt=0)] = 64 * 1024
    trusted_proxy_hops: Annotated[int, env("API_TRUSTED_PROXY_HOPS", ge=0, le=5)] = 0
    """X-Forwarded-For entries, from the right, that the deployment's own proxies append (0
    locally: the TCP peer; 2 behind the cloud's load balancer). api.http.client_ip."""

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> HttpConfig:
        return from_env(HttpConfig, environ)


class ApiConfig(HttpConfig, frozen=True, kw_only=True):
    """What every HTTP function but docs needs: HTTP behaviour (``HttpConfig``), the auth
    secrets' source, token and API-key rules, rate limits.

    The secrets (JWT signing keys, the API-key master secret) come from exactly one of
    ``AUTH_KEYS_SECRET`` (a Secret Manager version name, in the cloud), ``AUTH_KEYS_FILE`` or
    ``AUTH_KEYS_JSON`` (development); the document's format is in ``api.auth``.
    """

    redis_url: Annotated[str, env("REDIS_URL")] = REDIS_URL
    keys_secret: Annotated[str | None, env("AUTH_KEYS_SECRET")] = None
    keys_file: Annotated[str | None, env("AUTH_KEYS_FILE")] = None
    keys_json: Annotated[str | None, env("AUTH_KEYS_JSON", secret=True)] = None
    jwt_issuer: Annotated[str, env("JWT_ISSUER")] = "exchange"
    jwt_audience: Annotated[str, env("JWT_AUDIENCE")] = "exchange-api"
    jwt_leeway_s: JwtLeeway = JWT_LEEWAY_S
    access_ttl_s: AccessTokenTtl = ACCESS_TOKEN_TTL_S
    refresh_ttl_s: Annotated[int, env("REFRESH_TOKEN_TTL_S", gt=0)] = 30 * 24 * 3600
    oidc: OidcConfig | None = None
    api_key_window_ms: Annotated[int, env("API_KEY_WINDOW_MS", gt=0)] = 5000
    """A signed request's timestamp may differ from the server's clock by at most this."""
    password_min_length: PasswordMinLength = PASSWORD_MIN_LENGTH
    rate_window_s: Annotated[int, env("AUTH_RATE_WINDOW_S", gt=0)] = 60
    rate_per_ip: Annotated[int, env("AUTH_RATE_PER_IP", gt=0)] = 30
    """Signups per client IP and window."""
    rate_per_email: Annotated[int, env("AUTH_RATE_PER_EMAIL", gt=0)] = 10
    """Signups per email address and window."""
    failure_window_s: Annotated[int, env("AUTH_FAILURE_WINDOW_S", gt=0)] = 900
    """How long a password failure counts (api.throttle): from a budget's first failure."""
    failures_per_email_ip: Annotated[int, env("AUTH_FAILURES_PER_EMAIL_IP", gt=0)] = 10
    """Wrong passwords per (email, client address) and window; then 429 for that client."""
    failures_per_ip: Annotated[int, env("AUTH_FAILURES_PER_IP", gt=0)] = 100
    """Wrong passwords per client address (any email) and window; then 429 for it."""
    fresh_auth_max_age_s: Annotated[int, env("FRESH_AUTH_MAX_AGE_S", gt=0)] = 300
    """How recent a proof of who the caller is (password) sensitive actions need."""
    totp_issuer: Annotated[str, env("TOTP_ISSUER")] = "Exchange"
    """The issuer an authenticator app shows next to the account (otpauth:// URIs)."""
    reply_wait_s: Annotated[float, env("API_REPLY_WAIT_S", ge=0, le=60)] = 2.0
    """How long a function waits for the matcher's reply before answering 202."""
    idempotency_ttl_s: Annotated[int, env("API_IDEMPOTENCY_TTL_S", gt=0)] = 24 * 3600
    """How long an ``Idempotency-Key`` (and a command's owner marker) is remembered."""
    trade_rate_window_s: Annotated[int, env("TRADE_RATE_WINDOW_S", gt=0)] = 10
    trade_rate_per_user: Annotated[int, env("TRADE_RATE_PER_USER", gt=0)] = 200
    """Order placements and cancels per user and window."""
    trade_rate_per_ip: Annotated[int, env("TRADE_RATE_PER_IP", gt=0)] = 1000
    """Order placements and cancels per client IP and window."""

    KEY_SOURCES: ClassVar[tuple[str, ...]] = ("keys_secret", "keys_file", "keys_json")

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> ApiConfig:
        cfg = from_env(ApiConfig, environ, oidc=OidcConfig.load(environ))
        names = env_names(ApiConfig)
        given = [names[f] for f in ApiConfig.KEY_SOURCES if getattr(cfg, f) is not None]
        if len(given) != 1:
            raise ConfigError(
                f"exactly one of {', '.join(names[f] for f in ApiConfig.KEY_SOURCES)} is required"
                + (f", got {', '.join(given)}" if given else "")
            )
        return cfg


class AdminBootstrapConfig(_Config, frozen=True, kw_only=True):
    """``python -m functions.admin.bootstrap``: the Firestore of the project, the Redis where
    a user's sessions end (optional: without it they end in Firestore alone, seen by the
    functions within ``api.sessions.CACHE_TTL_S``), and the API's account rules."""

    project: Project = PROJECT
    redis_url: Annotated[str | None, env("REDIS_URL")] = None
    password_min_length: PasswordMinLength = PASSWORD_MIN_LENGTH
    access_ttl_s: AccessTokenTtl = ACCESS_TOKEN_TTL_S
    jwt_leeway_s: JwtLeeway = JWT_LEEWAY_S

    @property
    def ended_session_retain_s(self) -> int:
        """An ended session stays refused as long as its access tokens could live."""
        return self.access_ttl_s + self.jwt_leeway_s

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> AdminBootstrapConfig:
        return from_env(AdminBootstrapConfig, environ)


def _wei_from_gwei(raw: str) -> int:
    try:
        wei = Decimal(raw.strip()) * 10**9
    except InvalidOperation:
        raise ValueError("must be a number of gwei") from None
    if not wei.is_finite() or wei < 0 or wei != wei.to_integral_value():
        raise ValueError("must be a whole, non-negative number of wei in gwei")
    return int(wei)


def secret_manager_payload(name: str) -> bytes:
    """The payload of a Secret Manager secret version (``projects/P/secrets/S/versions/V``),
    through its REST API with the runtime's default credentials (the JWT keys, the cursor
    key, the HD wallet's mnemonic)."""
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    response = session.get(f"https://secretmanager.googleapis.com/v1/{name}:access", timeout=10)
    if response.status_code != 200:
        raise ConfigError(f"Secret Manager answered {response.status_code} for {name}")
    return base64.b64decode(response.json()["payload"]["data"])


class SecretSource(_Config, frozen=True):
    """Where one wallet secret comes from: exactly one of ``{P}`` (the value, development
    only), ``{P}_FILE`` (a local file) or ``{P}_SECRET`` (a Secret Manager version name)."""

    name: str
    value: Annotated[str | None, SECRET] = None
    file: str | None = None
    secret: str | None = None

    @staticmethod
    def load(prefix: str, environ: Mapping[str, str] | None = None) -> SecretSource:
        environ = os.environ if environ is None else environ
        given = {s: environ.get(prefix + s) or None for s in ("", "_FILE", "_SECRET")}
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
            return secret_manager_payload(self.secret).decode().strip()
        raise ConfigError(f"one of {self.name}, {self.name}_FILE or {self.name}_SECRET is required")


class CursorConfig(_Config, frozen=True):
    """The key that signs page cursors (api.cursors), read by the functions that list
    pages (queries, wallet): exactly one of ``CURSOR_KEY`` (the value, development only),
    ``CURSOR_KEY_FILE`` or ``CURSOR_KEY_SECRET`` (a Secret Manager version name, in the
    cloud), as the auth keys are given; at least 32 characters (``secrets.token_urlsafe(32)``).
    """

    MIN_KEY_BYTES: ClassVar[int] = 32

    key: SecretSource

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> CursorConfig:
        source = SecretSource.load("CURSOR_KEY", environ)
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


class CommandKeysConfig(_Config, frozen=True):
    """The command-signing keys (shared.producers): exactly one of ``COMMAND_KEYS`` (the
    document, development only), ``COMMAND_KEYS_FILE`` or ``COMMAND_KEYS_SECRET`` (a Secret
    Manager version name, in the cloud). A producer's document holds its private key; the
    matcher's the producers' public keys."""

    keys: SecretSource

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> CommandKeysConfig:
        source = SecretSource.load("COMMAND_KEYS", environ)
        if not source.configured:
            raise ConfigError(
                "one of COMMAND_KEYS, COMMAND_KEYS_FILE or COMMAND_KEYS_SECRET is required"
            )
        return CommandKeysConfig(source)


class WalletConfig(_Config, frozen=True, kw_only=True):
    """The Ethereum wallet's jobs and routes (wallet/, docs/wallet.md)."""

    rpc_url: Annotated[str, env("ETH_RPC_URL")] = "http://127.0.0.1:8545"
    chain_id: Annotated[int, env("CHAIN_ID", gt=0)] = 31337
    mnemonic: SecretSource
    """The HD wallet of the deposit addresses (m/44'/60'/0'/0/i): the wallet API, the sweep."""
    hot_wallet_key: SecretSource
    """The hot wallet's private key: the withdrawal sender only."""
    gas_wallet_key: SecretSource
    """The gas wallet's private key (tops deposit addresses up for token sweeps): the sweep."""
    redis_url: Annotated[str, env("REDIS_URL")] = REDIS_URL
    """Where the assets' chain details and the matcher's verdicts are."""
    hot_wallet_address: Annotated[Address | None, env("HOT_WALLET_ADDRESS")] = None
    """Where sweeps go; required by the sweep (the sender derives it from its key)."""
    gas_wallet_address: Annotated[Address | None, env("GAS_WALLET_ADDRESS")] = None
    """Its top-ups are not deposits: the watcher skips transfers from it."""
    confirmations: Annotated[int, env("DEPOSIT_CONFIRMATIONS", gt=0)] = 12
    """Default confirmations for an asset whose chain details do not set them."""
    max_fee_wei: Annotated[int, env("MAX_FEE_GWEI", parse=_wei_from_gwei, ge=0)] = 200 * 10**9
    """The cap on maxFeePerGas for every transaction the wallet signs."""
    priority_fee_wei: Annotated[int, env("PRIORITY_FEE_GWEI", parse=_wei_from_gwei, ge=0)] = 10**9
    start_block: Annotated[BlockNumber | None, env("WATCHER_START_BLOCK")] = None
    """Where the watcher's first run starts (default: the head at that run)."""
    max_blocks_per_run: Annotated[int, env("WATCHER_MAX_BLOCKS", gt=0)] = 200
    reorg_window: Annotated[int, env("WATCHER_REORG_WINDOW", gt=0)] = 128
    """How many recent block hashes the watcher keeps to notice a reorganisation."""
    replace_after_s: Annotated[int, env("WITHDRAWAL_REPLACE_AFTER_S", gt=0)] = 120
    """A withdrawal not mined after this long is re-sent at the same nonce with a higher fee."""
    fee_bump_percent: Annotated[int, env("WITHDRAWAL_FEE_BUMP_PERCENT", ge=10)] = 25
    """Nodes refuse a replacement that does not raise both fees by at least 10 %."""
    address_delay_s: Annotated[int, env("WITHDRAWAL_ADDRESS_DELAY_S", ge=0)] = 24 * 3600
    """How long a newly saved withdrawal address (or switching the allow-list off) waits
    before it counts (wallet.allow_list)."""
    operator_eth_wei: Annotated[int, env("OPERATOR_ETH_WEI", ge=0)] = 0
    """The ETH the operator put into the hot wallet (gas for withdrawals): the scheduled
    on-chain audit counts it as held but owed to nobody (wallet/audit.py)."""

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> WalletConfig:
        cfg = from_env(
            WalletConfig,
            environ,
            mnemonic=SecretSource.load("WALLET_MNEMONIC", environ),
            hot_wallet_key=SecretSource.load("HOT_WALLET_KEY", environ),
            gas_wallet_key=SecretSource.load("GAS_WALLET_KEY", environ),
        )
        if cfg.priority_fee_wei > cfg.max_fee_wei:
            raise ConfigError("PRIORITY_FEE_GWEI cannot exceed MAX_FEE_GWEI")
        return cfg


class WebConfig(_Config, frozen=True, kw_only=True):
    """The web page as the local gateway serves it at ``/`` (docs/web.md)."""

    dist: Annotated[str | None, env("WEB_DIST")] = None
    """The built page (``npm run build`` in web/); unset: ``web/dist`` of the checkout."""
    ws_url: Annotated[Annotated[str, Meta(pattern="^wss?://")] | None, env("WEB_WS_URL")] = None
    """Where the page finds the live feed (``/config.json``); unset: ``/v1/ws`` at its origin."""

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> WebConfig:
        return from_env(WebConfig, environ)


class WsConfig(_Config, frozen=True, kw_only=True):
    """The ws service (``python -m ws_service``, docs/ws.md): where it listens, the Redis it
    reads market data from, its heartbeats and limits. Authentication reads ``ApiConfig`` (the
    same JWT keys and API keys as the HTTP functions)."""

    host: Annotated[str, env("WS_HOST")] = "0.0.0.0"
    port: Annotated[Port, env("PORT")] = 8081
    redis_url: Annotated[str, env("REDIS_URL")] = REDIS_URL
    max_message_bytes: Annotated[int, env("WS_MAX_MESSAGE_BYTES", ge=1024)] = 16 * 1024
    """Largest message a client may send (larger: closed with 1009)."""
    max_subscriptions: Annotated[int, env("WS_MAX_SUBSCRIPTIONS", gt=0)] = 50
    """Channels one connection may hold at once."""
    max_connections: Annotated[int, env("WS_MAX_CONNECTIONS", gt=0)] = 10_000
    """Open connections per process; more are refused (HTTP 503) until some close."""
    max_buffer_bytes: Annotated[int, env("WS_MAX_BUFFER_BYTES", gt=0)] = 1024 * 1024
    """Bytes waiting for one client beyond its socket; more: closed as a slow consumer."""
    write_limit_bytes: Annotated[int, env("WS_WRITE_LIMIT_BYTES", gt=0)] = 64 * 1024
    """The socket's write buffer high-water mark (asyncio), before messages wait in line."""
    send_buffer_bytes: Annotated[int, env("WS_SEND_BUFFER_BYTES", ge=0)] = 0
    """SO_SNDBUF of each client socket; 0: the kernel's (autotuned: megabytes on loopback)."""
    ping_interval_s: Annotated[float, env("WS_PING_INTERVAL_S", gt=0)] = 20.0
    ping_timeout_s: Annotated[float, env("WS_PING_TIMEOUT_S", gt=0)] = 20.0
    """A client that does not answer a ping within this is dead and is closed."""
    idle_timeout_s: Annotated[float, env("WS_IDLE_TIMEOUT_S", gt=0)] = 60.0
    """A connection without any subscription for this long is closed."""
    close_timeout_s: Annotated[float, env("WS_CLOSE_TIMEOUT_S", gt=0)] = 5.0
    messages_per_s: Annotated[float, env("WS_MESSAGES_PER_S", gt=0)] = 20.0
    """Client messages per second per connection (bursts up to max_subscriptions more)."""
    subscribe_timeout_s: Annotated[float, env("WS_SUBSCRIBE_TIMEOUT_S", gt=0)] = 10.0
    """How long a subscription may wait for the market-data feed before failing."""

    @staticmethod
    def load(environ: Mapping[str, str] | None = None) -> WsConfig:
        return from_env(WsConfig, environ)
