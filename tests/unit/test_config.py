"""Configuration from the environment (shared/config.py): defaults, names, types, ranges."""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config import (
    AdminBootstrapConfig,
    ApiConfig,
    ConfigError,
    CursorConfig,
    HttpConfig,
    MatcherConfig,
    OidcConfig,
    PostgresConfig,
    PubSubConfig,
    SecretSource,
    WalletConfig,
    WsConfig,
    env_names,
)

KEYS = {"AUTH_KEYS_JSON": '{"k": "hunter2"}'}
"""ApiConfig needs one source of its keys."""

# The variables each config reads, spelled here independently of shared/config.py: a renamed
# or misspelled variable there fails test_every_variable_is_read_under_its_name.
NAMES: dict[type[msgspec.Struct], dict[str, str]] = {
    PostgresConfig: {
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "database": "PGDATABASE",
        "host": "PGHOST",
        "port": "PGPORT",
        "instance": "CLOUD_SQL_INSTANCE",
    },
    PubSubConfig: {
        "project": "GOOGLE_CLOUD_PROJECT",
        "commands_topic": "COMMANDS_TOPIC",
        "commands_subscription": "COMMANDS_SUBSCRIPTION",
        "events_topic": "EVENTS_TOPIC",
        "dead_letter_topic": "DEAD_LETTER_TOPIC",
        "max_delivery_attempts": "MAX_DELIVERY_ATTEMPTS",
        "outbox": "COMMANDS_OUTBOX",
    },
    MatcherConfig: {
        "redis_url": "REDIS_URL",
        "port": "PORT",
        "batch_max": "BATCH_MAX",
        "batch_wait_ms": "BATCH_WAIT_MS",
        "snapshot_every": "SNAPSHOT_EVERY",
        "snapshot_seconds": "SNAPSHOT_SECONDS",
        "reply_ttl_s": "REPLY_TTL_S",
        "depth_levels": "DEPTH_LEVELS",
        "host": "MATCHER_HOST",
        "seq_hold_ms": "SEQ_HOLD_MS",
        "max_open_orders": "MAX_OPEN_ORDERS",
    },
    OidcConfig: {
        "issuer": "OIDC_ISSUER",
        "audience": "OIDC_AUDIENCE",
        "jwks_url": "OIDC_JWKS_URL",
        "algorithms": "OIDC_ALGORITHMS",
        "role_claim": "OIDC_ROLE_CLAIM",
        "jwks_cache_s": "OIDC_JWKS_CACHE_S",
    },
    ApiConfig: {
        "project": "GOOGLE_CLOUD_PROJECT",
        "redis_url": "REDIS_URL",
        "cors_origins": "API_CORS_ORIGINS",
        "max_body_bytes": "API_MAX_BODY_BYTES",
        "trusted_proxy_hops": "API_TRUSTED_PROXY_HOPS",
        "keys_secret": "AUTH_KEYS_SECRET",
        "keys_file": "AUTH_KEYS_FILE",
        "keys_json": "AUTH_KEYS_JSON",
        "jwt_issuer": "JWT_ISSUER",
        "jwt_audience": "JWT_AUDIENCE",
        "jwt_leeway_s": "JWT_LEEWAY_S",
        "access_ttl_s": "ACCESS_TOKEN_TTL_S",
        "refresh_ttl_s": "REFRESH_TOKEN_TTL_S",
        "api_key_window_ms": "API_KEY_WINDOW_MS",
        "password_min_length": "PASSWORD_MIN_LENGTH",
        "rate_window_s": "AUTH_RATE_WINDOW_S",
        "rate_per_ip": "AUTH_RATE_PER_IP",
        "rate_per_email": "AUTH_RATE_PER_EMAIL",
        "failure_window_s": "AUTH_FAILURE_WINDOW_S",
        "failures_per_email_ip": "AUTH_FAILURES_PER_EMAIL_IP",
        "failures_per_ip": "AUTH_FAILURES_PER_IP",
        "fresh_auth_max_age_s": "FRESH_AUTH_MAX_AGE_S",
        "totp_issuer": "TOTP_ISSUER",
        "reply_wait_s": "API_REPLY_WAIT_S",
        "idempotency_ttl_s": "API_IDEMPOTENCY_TTL_S",
        "trade_rate_window_s": "TRADE_RATE_WINDOW_S",
        "trade_rate_per_user": "TRADE_RATE_PER_USER",
        "trade_rate_per_ip": "TRADE_RATE_PER_IP",
    },
    HttpConfig: {
        "project": "GOOGLE_CLOUD_PROJECT",
        "cors_origins": "API_CORS_ORIGINS",
        "max_body_bytes": "API_MAX_BODY_BYTES",
        "trusted_proxy_hops": "API_TRUSTED_PROXY_HOPS",
    },
    AdminBootstrapConfig: {
        "project": "GOOGLE_CLOUD_PROJECT",
        "redis_url": "REDIS_URL",
        "password_min_length": "PASSWORD_MIN_LENGTH",
        "access_ttl_s": "ACCESS_TOKEN_TTL_S",
        "jwt_leeway_s": "JWT_LEEWAY_S",
    },
    WalletConfig: {
        "rpc_url": "ETH_RPC_URL",
        "chain_id": "CHAIN_ID",
        "redis_url": "REDIS_URL",
        "hot_wallet_address": "HOT_WALLET_ADDRESS",
        "gas_wallet_address": "GAS_WALLET_ADDRESS",
        "confirmations": "DEPOSIT_CONFIRMATIONS",
        "max_fee_wei": "MAX_FEE_GWEI",
        "priority_fee_wei": "PRIORITY_FEE_GWEI",
        "start_block": "WATCHER_START_BLOCK",
        "max_blocks_per_run": "WATCHER_MAX_BLOCKS",
        "reorg_window": "WATCHER_REORG_WINDOW",
        "replace_after_s": "WITHDRAWAL_REPLACE_AFTER_S",
        "fee_bump_percent": "WITHDRAWAL_FEE_BUMP_PERCENT",
        "address_delay_s": "WITHDRAWAL_ADDRESS_DELAY_S",
        "operator_eth_wei": "OPERATOR_ETH_WEI",
    },
    WsConfig: {
        "host": "WS_HOST",
        "port": "PORT",
        "redis_url": "REDIS_URL",
        "max_message_bytes": "WS_MAX_MESSAGE_BYTES",
        "max_subscriptions": "WS_MAX_SUBSCRIPTIONS",
        "max_connections": "WS_MAX_CONNECTIONS",
        "max_buffer_bytes": "WS_MAX_BUFFER_BYTES",
        "write_limit_bytes": "WS_WRITE_LIMIT_BYTES",
        "send_buffer_bytes": "WS_SEND_BUFFER_BYTES",
        "ping_interval_s": "WS_PING_INTERVAL_S",
        "ping_timeout_s": "WS_PING_TIMEOUT_S",
        "idle_timeout_s": "WS_IDLE_TIMEOUT_S",
        "close_timeout_s": "WS_CLOSE_TIMEOUT_S",
        "messages_per_s": "WS_MESSAGES_PER_S",
        "subscribe_timeout_s": "WS_SUBSCRIBE_TIMEOUT_S",
    },
}

GWEI = {"MAX_FEE_GWEI", "PRIORITY_FEE_GWEI"}
OIDC = {"OIDC_ISSUER": "https://idp.example/", "OIDC_AUDIENCE": "exchange"}


def load(cls: type[msgspec.Struct], environ: dict[str, str]) -> Any:
    """``cls`` from ``environ`` plus what it cannot load without."""
    if cls is ApiConfig:
        return ApiConfig.load({**KEYS, **environ})
    if cls is OidcConfig:
        return OidcConfig.load({**OIDC, **environ})
    return cls.load(environ)  # type: ignore[attr-defined]


def field_type(cls: type[msgspec.Struct], name: str) -> mi.Type:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    (field,) = (f for f in info.fields if f.name == name)
    t = field.type
    while True:
        if isinstance(t, mi.Metadata):
            t = t.type
        elif isinstance(t, mi.UnionType):
            (t,) = (u for u in t.types if not isinstance(u, mi.NoneType))
        else:
            return t


def numeric_fields() -> list[tuple[type[msgspec.Struct], str, str]]:
    return [
        (cls, field, var)
        for cls, names in NAMES.items()
        for field, var in names.items()
        if isinstance(field_type(cls, field), mi.IntType | mi.FloatType)
    ]


# --- names and defaults ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(NAMES), ids=lambda c: c.__name__)
def test_every_variable_is_read_under_its_name(cls: type[msgspec.Struct]) -> None:
    assert env_names(cls) == NAMES[cls]


def test_the_variables_are_read_from_the_environment_by_those_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through ``os.environ``, as a deployable loads them."""
    monkeypatch.setenv("BATCH_MAX", "25")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("COMMANDS_OUTBOX", "yes")
    cfg = MatcherConfig.load()
    assert (cfg.batch_max, cfg.postgres.port, cfg.pubsub.outbox) == (25, 6543, True)


@pytest.mark.parametrize(
    "cls",
    [
        PostgresConfig,
        PubSubConfig,
        MatcherConfig,
        WsConfig,
        WalletConfig,
        HttpConfig,
        AdminBootstrapConfig,
    ],
)
def test_an_empty_environment_gives_the_defaults(cls: type[msgspec.Struct]) -> None:
    cfg = cls.load({})  # type: ignore[attr-defined]
    for field in msgspec.structs.fields(cls):
        if field.default is not msgspec.NODEFAULT:
            assert getattr(cfg, field.name) == field.default, field.name


def test_the_defaults() -> None:
    m = MatcherConfig.load({})
    assert (m.port, m.batch_max, m.batch_wait_ms, m.snapshot_every, m.seq_hold_ms) == (
        8090,
        1000,
        25,
        100_000,
        3000,
    )
    assert m.postgres == PostgresConfig(
        user="postgres", password=None, database="postgres", host="127.0.0.1", port=5432
    )
    assert m.pubsub.project == "local-exchange" and m.pubsub.max_delivery_attempts == 10
    assert not m.pubsub.outbox
    assert WsConfig.load({}).port == 8081 and WsConfig.load({}).host == "0.0.0.0"
    w = WalletConfig.load({})
    assert (w.max_fee_wei, w.priority_fee_wei, w.start_block) == (200 * 10**9, 10**9, None)
    assert not w.mnemonic.configured
    api = ApiConfig.load(KEYS)
    assert api.oidc is None and api.cors_origins == () and api.reply_wait_s == 2.0
    assert api.refresh_ttl_s == 30 * 24 * 3600 and api.password_min_length == 10


def test_an_empty_variable_counts_as_unset() -> None:
    assert MatcherConfig.load({"BATCH_MAX": "", "REDIS_URL": " "}) == MatcherConfig.load({})
    assert OidcConfig.load({"OIDC_ISSUER": ""}) is None


# --- required -------------------------------------------------------------------------------


def test_a_missing_required_variable_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^environment variable OIDC_AUDIENCE is required$"):
        ApiConfig.load({**KEYS, "OIDC_ISSUER": "https://idp/"})
    with pytest.raises(ConfigError, match="CURSOR_KEY_FILE"):
        CursorConfig.load({})
    with pytest.raises(ConfigError, match="exactly one of AUTH_KEYS_SECRET, AUTH_KEYS_FILE"):
        ApiConfig.load({})
    with pytest.raises(ConfigError, match="got AUTH_KEYS_FILE, AUTH_KEYS_JSON"):
        ApiConfig.load({**KEYS, "AUTH_KEYS_FILE": "/keys.json"})
    for source in ("AUTH_KEYS_SECRET", "AUTH_KEYS_FILE", "AUTH_KEYS_JSON"):
        assert ApiConfig.load({source: "x"}) is not None


# --- wrong types and ranges -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "field", "var"), numeric_fields(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_a_malformed_number_names_its_variable(
    cls: type[msgspec.Struct], field: str, var: str
) -> None:
    with pytest.raises(ConfigError, match=f"^environment variable {var} must be .*, got 'ten'$"):
        load(cls, {var: "ten"})
    # Every number has a lower bound.
    with pytest.raises(ConfigError, match=f"^environment variable {var} must be "):
        load(cls, {var: "-1"})


def test_the_message_says_what_is_wrong() -> None:
    def error(cls: type[msgspec.Struct], **environ: str) -> str:
        with pytest.raises(ConfigError) as err:
            load(cls, environ)
        return str(err.value)

    assert error(MatcherConfig, BATCH_MAX="0") == (
        "environment variable BATCH_MAX must be an integer >= 1, got '0'"
    )
    assert error(MatcherConfig, BATCH_MAX="2.5") == (
        "environment variable BATCH_MAX must be an integer, got '2.5'"
    )
    assert error(ApiConfig, API_REPLY_WAIT_S="61") == (
        "environment variable API_REPLY_WAIT_S must be a number <= 60.0, got '61'"
    )
    assert "PASSWORD_MIN_LENGTH must be an integer >= 8" in error(
        ApiConfig, PASSWORD_MIN_LENGTH="7"
    )
    assert "API_TRUSTED_PROXY_HOPS must be an integer <= 5" in error(
        ApiConfig, API_TRUSTED_PROXY_HOPS="6"
    )
    assert "PGPORT must be an integer <= 65535" in error(PostgresConfig, PGPORT="65536")
    assert "MAX_DELIVERY_ATTEMPTS must be an integer >= 5" in error(
        PubSubConfig, MAX_DELIVERY_ATTEMPTS="4"
    )
    assert "WS_MAX_MESSAGE_BYTES must be an integer >= 1024" in error(
        WsConfig, WS_MAX_MESSAGE_BYTES="1000"
    )
    assert "WITHDRAWAL_FEE_BUMP_PERCENT must be an integer >= 10" in error(
        WalletConfig, WITHDRAWAL_FEE_BUMP_PERCENT="9"
    )
    assert "HOT_WALLET_ADDRESS must be text matching" in error(
        WalletConfig, HOT_WALLET_ADDRESS="0x1234"
    )
    assert "GAS_WALLET_ADDRESS" in error(WalletConfig, GAS_WALLET_ADDRESS="0x" + "g" * 40)


def test_numbers_may_carry_surrounding_spaces() -> None:
    assert MatcherConfig.load({"BATCH_MAX": " 25 "}).batch_max == 25
    assert WsConfig.load({"WS_PING_INTERVAL_S": "2.5"}).ping_interval_s == 2.5
    assert WsConfig.load({"WS_PING_INTERVAL_S": "3"}).ping_interval_s == 3.0
    assert MatcherConfig.load({"PORT": "0"}).port == 0  # the health server on any free port


# --- special parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("true", True),
        ("yes", True),
        ("TRUE", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_booleans(text: str, value: bool) -> None:
    assert PubSubConfig.load({"COMMANDS_OUTBOX": text}).outbox is value


def test_a_malformed_boolean_is_refused() -> None:
    with pytest.raises(ConfigError, match="COMMANDS_OUTBOX must be one of 1, true"):
        PubSubConfig.load({"COMMANDS_OUTBOX": "maybe"})


def test_lists() -> None:
    cfg = ApiConfig.load({**KEYS, "API_CORS_ORIGINS": " https://a, https://b,, "})
    assert cfg.cors_origins == ("https://a", "https://b")
    assert ApiConfig.load({**KEYS, "API_CORS_ORIGINS": "*"}).cors_origins == ("*",)
    oidc = OidcConfig.load({**OIDC, "OIDC_ALGORITHMS": "RS256, ES256,EdDSA"})
    assert oidc is not None and oidc.algorithms == ("RS256", "ES256", "EdDSA")
    with pytest.raises(ConfigError, match="OIDC_ALGORITHMS"):
        OidcConfig.load({**OIDC, "OIDC_ALGORITHMS": "RS256,HS256"})
    with pytest.raises(ConfigError, match="OIDC_ALGORITHMS"):
        OidcConfig.load({**OIDC, "OIDC_ALGORITHMS": ","})


def test_urls() -> None:
    oidc = OidcConfig.load(OIDC)
    assert oidc is not None and oidc.jwks_url == "https://idp.example/.well-known/jwks.json"
    assert oidc.algorithms == ("RS256",) and oidc.role_claim is None
    oidc = OidcConfig.load({**OIDC, "OIDC_JWKS_URL": "https://keys/jwks"})
    assert oidc is not None and oidc.jwks_url == "https://keys/jwks"
    assert WalletConfig.load({"ETH_RPC_URL": "http://node:8545"}).rpc_url == "http://node:8545"


def test_gwei() -> None:
    w = WalletConfig.load({"MAX_FEE_GWEI": "1.5", "PRIORITY_FEE_GWEI": "0.000000001"})
    assert (w.max_fee_wei, w.priority_fee_wei) == (1_500_000_000, 1)
    for bad in ("lots", "0.0000000001", "-1", "NaN", "Infinity"):
        with pytest.raises(ConfigError, match=r"^environment variable MAX_FEE_GWEI must be"):
            WalletConfig.load({"MAX_FEE_GWEI": bad})
    with pytest.raises(ConfigError, match="PRIORITY_FEE_GWEI cannot exceed MAX_FEE_GWEI"):
        WalletConfig.load({"MAX_FEE_GWEI": "1", "PRIORITY_FEE_GWEI": "2"})


def test_start_block() -> None:
    assert WalletConfig.load({"WATCHER_START_BLOCK": "17"}).start_block == 17
    assert WalletConfig.load({"WATCHER_START_BLOCK": "0"}).start_block == 0
    with pytest.raises(ConfigError, match="WATCHER_START_BLOCK"):
        WalletConfig.load({"WATCHER_START_BLOCK": "latest"})


# --- secrets --------------------------------------------------------------------------------


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    api = ApiConfig.load(KEYS)
    assert api.keys_json == KEYS["AUTH_KEYS_JSON"] and "hunter2" not in repr(api)
    pg = PostgresConfig.load({"PGPASSWORD": "s3cret-pw"})
    assert pg.password == "s3cret-pw" and "s3cret-pw" not in repr(
        MatcherConfig(postgres=pg, pubsub=PubSubConfig())
    )
    words = "test test test test test test test test test test test junk"
    wallet = WalletConfig.load({"WALLET_MNEMONIC": words})
    assert wallet.mnemonic.value == words and "junk" not in repr(wallet)
    cursor = CursorConfig.load({"CURSOR_KEY": "k" * 40})
    assert "k" * 40 not in repr(cursor) and cursor.read_key() == b"k" * 40


def test_secret_sources() -> None:
    s = SecretSource.load("HOT_WALLET_KEY", {"HOT_WALLET_KEY_FILE": "/run/key"})
    assert (s.value, s.file, s.secret, s.configured) == (None, "/run/key", None, True)
    s = SecretSource.load("HOT_WALLET_KEY", {"HOT_WALLET_KEY_SECRET": "projects/p/secrets/k"})
    assert s.secret == "projects/p/secrets/k"
    with pytest.raises(ConfigError, match="at most one of HOT_WALLET_KEY, HOT_WALLET_KEY_FILE"):
        SecretSource.load("HOT_WALLET_KEY", {"HOT_WALLET_KEY": "x", "HOT_WALLET_KEY_FILE": "/k"})
    with pytest.raises(ConfigError, match="HOT_WALLET_KEY_SECRET is required"):
        SecretSource.load("HOT_WALLET_KEY", {}).read()


# --- round trip -----------------------------------------------------------------------------


def valid(cls: type[msgspec.Struct], field: str) -> st.SearchStrategy[Any]:
    """Values ``field`` accepts, from its type and constraints."""
    t = field_type(cls, field)
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else 0)
        high = t.le if t.le is not None else 10**12
        return st.integers(min_value=low, max_value=high)
    if isinstance(t, mi.FloatType):
        floor = t.ge if t.ge is not None else (t.gt if t.gt is not None else 0.0)
        ceiling = t.le if t.le is not None else 1e9
        return st.floats(
            min_value=floor, max_value=ceiling, exclude_min=t.gt is not None, allow_nan=False
        )
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.VarTupleType):
        item = (
            st.from_regex("(RS|PS|ES)[0-9]{3}", fullmatch=True)
            if cls is OidcConfig
            else st.just("https://a")
        )
        return st.lists(item, min_size=1, max_size=3).map(tuple)
    assert isinstance(t, mi.StrType), (cls, field, t)
    if t.pattern:
        return st.from_regex(t.pattern, fullmatch=True)
    return st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def environments(
    draw: st.DrawFn, cls: type[msgspec.Struct]
) -> tuple[dict[str, str], dict[str, Any]]:
    environ: dict[str, str] = {}
    expected: dict[str, Any] = {}
    for field, var in NAMES[cls].items():
        if var in GWEI or var in ("AUTH_KEYS_SECRET", "AUTH_KEYS_FILE", "AUTH_KEYS_JSON"):
            continue
        if draw(st.booleans()):
            value = draw(valid(cls, field))
            environ[var] = text_of(value)
            expected[field] = value
    return environ, expected


@pytest.mark.parametrize("cls", list(NAMES), ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_valid_values_round_trip(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    environ, expected = data.draw(environments(cls))
    cfg = load(cls, environ)
    for field, value in expected.items():
        assert getattr(cfg, field) == value, (field, environ)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**9 - 1))
def test_gwei_round_trips(gwei: int, wei: int) -> None:
    text = f"{gwei}.{wei:09d}"
    w = WalletConfig.load({"MAX_FEE_GWEI": text, "PRIORITY_FEE_GWEI": "0"})
    assert w.max_fee_wei == gwei * 10**9 + wei


def test_the_queries_function_reads_the_matchers_depth_levels() -> None:
    from functions.queries.main import QueriesConfig

    assert env_names(QueriesConfig) == {"depth_levels": "DEPTH_LEVELS"}
    assert QueriesConfig.load({}).depth_levels == MatcherConfig.load({}).depth_levels == 50
    assert QueriesConfig.load({"DEPTH_LEVELS": "20"}).depth_levels == 20
    with pytest.raises(ConfigError, match="DEPTH_LEVELS must be an integer >= 1, got '0'"):
        QueriesConfig.load({"DEPTH_LEVELS": "0"})


# --- the docs function and the admin's bootstrap --------------------------------------------


def test_the_docs_function_reads_the_http_settings_alone() -> None:
    """No auth keys, no Redis: only what the Api wrapper needs, under the API's names."""
    cfg = HttpConfig.load({"API_CORS_ORIGINS": "https://a, https://b", "AUTH_KEYS_JSON": ""})
    assert cfg.cors_origins == ("https://a", "https://b") and cfg.trusted_proxy_hops == 0
    api = ApiConfig.load({**KEYS, "API_TRUSTED_PROXY_HOPS": "2"})
    assert isinstance(api, HttpConfig) and api.trusted_proxy_hops == 2
    with pytest.raises(ConfigError, match=r"^environment variable API_TRUSTED_PROXY_HOPS must "):
        HttpConfig.load({"API_TRUSTED_PROXY_HOPS": "two"})


def test_the_bootstrap_applies_the_apis_account_rules() -> None:
    boot, api = AdminBootstrapConfig.load({}), ApiConfig.load(KEYS)
    for field in ("project", "password_min_length", "access_ttl_s", "jwt_leeway_s"):
        assert getattr(boot, field) == getattr(api, field), field
    assert boot.redis_url is None  # unset: sessions end in Firestore alone
    assert boot.ended_session_retain_s == api.access_ttl_s + api.jwt_leeway_s == 930
    boot = AdminBootstrapConfig.load({"ACCESS_TOKEN_TTL_S": "60", "JWT_LEEWAY_S": "5"})
    assert boot.ended_session_retain_s == 65
    with pytest.raises(ConfigError, match=r"^environment variable PASSWORD_MIN_LENGTH must be an"):
        AdminBootstrapConfig.load({"PASSWORD_MIN_LENGTH": "7"})


def test_the_bootstrap_stops_on_a_malformed_variable_before_it_does_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from functions.admin import bootstrap

    def no_firestore(**kwargs: Any) -> Any:
        raise AssertionError("Firestore was reached")

    monkeypatch.setattr("google.cloud.firestore.Client", no_firestore)
    monkeypatch.setenv("ACCESS_TOKEN_TTL_S", "15m")
    assert bootstrap.main(["--email", "boss@example.com", "--password", "a long password"]) == 2
    assert capsys.readouterr().err == (
        "error: environment variable ACCESS_TOKEN_TTL_S must be an integer, got '15m'\n"
    )
