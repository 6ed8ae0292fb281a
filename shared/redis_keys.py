"""Every Redis key and channel of the exchange, and the kline intervals: spelled here only.

The matcher writes market data, replies and ``live:*`` channels; the queries function, the
ws service, the other functions and the wallet jobs read them; they deploy separately, so they
must agree on each name. As ``shared.messages`` owns the Pub/Sub messages, this module owns the
Redis names (docs/marketdata.md describes the values). ``tests/unit/test_redis_keys.py`` pins
every format, and fails when a product module outside this one spells a prefix itself.

Each name says what is stored there, the Redis type, and its TTL policy.
"""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------- kline intervals

MINUTE_MS: Final = 60_000
DAY_MS: Final = 86_400_000

KLINE_INTERVALS: Final[tuple[tuple[str, int], ...]] = (
    ("1m", MINUTE_MS),
    ("5m", 5 * MINUTE_MS),
    ("15m", 15 * MINUTE_MS),
    ("1h", 60 * MINUTE_MS),
    ("4h", 240 * MINUTE_MS),
    ("1d", DAY_MS),
)
"""Kline intervals and their length in ms; candles open at multiples of the length (UTC),
and every length divides a day."""

KLINE_INTERVAL_NAMES: Final[tuple[str, ...]] = tuple(name for name, _ in KLINE_INTERVALS)
"""The interval names clients use (``1m`` ... ``1d``), shortest first."""

# ---------------------------------------------------------------- market data (matcher writes)

MARKETS_KEY: Final = "md:markets"
"""Hash market -> market JSON; no TTL (matcher: on create/update and on rebuild)."""

ASSETS_KEY: Final = "md:assets"
"""Hash asset -> ``{asset, precision}`` JSON; no TTL (matcher: on create and on rebuild)."""


def depth_key(market: str) -> str:
    """String: the top-N book JSON with its ``seq``; no TTL (matcher, when the top changes)."""
    return f"md:depth:{market}"


def trades_key(market: str) -> str:
    """List of recent public trade JSONs, newest first, capped; no TTL (matcher)."""
    return f"md:trades:{market}"


def kline_key(market: str, interval: str) -> str:
    """Sorted set of candle JSONs scored by open time, capped; no TTL (matcher)."""
    return f"md:kline:{market}:{interval}"


def ticker_key(market: str) -> str:
    """String: the 24 h ticker JSON; no TTL (matcher, on trades and as the window moves)."""
    return f"md:ticker:{market}"


# ---------------------------------------------------------------- wallet chain details

ASSET_CHAINS_KEY: Final = "md:asset_chains"
"""Hash asset -> ``{kind, contract, decimals}`` JSON; no TTL (admin function, local seed)."""

# ---------------------------------------------------------------- live channels (matcher PUBLISH)

LIVE_PREFIX: Final = "live:"
"""The prefix of every channel the matcher publishes on (the ws service subscribes one by one)."""


def live_depth_channel(market: str) -> str:
    """Channel: depth deltas (``seq``, ``prev_seq``) of a batch."""
    return f"live:depth:{market}"


def live_trades_channel(market: str) -> str:
    """Channel: JSON list of a batch's public trades, oldest first."""
    return f"live:trades:{market}"


def live_kline_channel(market: str, interval: str) -> str:
    """Channel: JSON list of the candles a batch changed, oldest first."""
    return f"live:kline:{market}:{interval}"


def live_ticker_channel(market: str) -> str:
    """Channel: the new ``ticker_key`` value."""
    return f"live:ticker:{market}"


def live_user_channel(user: str) -> str:
    """Channel: JSON list of one user's private order and balance messages of a batch."""
    return f"live:user:{user}"


# ---------------------------------------------------------------- command verdicts


def reply_key(command_id: str) -> str:
    """List with the matcher's one verdict JSON, for ``BLPOP``; TTL ``reply_ttl_s``."""
    return f"reply:{command_id}"


def command_key(command_id: str) -> str:
    """String: the matcher's verdict JSON, for polling; TTL ``reply_ttl_s``."""
    return f"cmd:{command_id}"


# ---------------------------------------------------------------- commands sent by the API


def command_owner_key(command_id: str) -> str:
    """String: the user id that sent the command; TTL the API's owner TTL."""
    return f"cmdowner:{command_id}"


def command_seq_key(command_id: str) -> str:
    """String ``{epoch}:{n}``: the number the API gave the command (``user_seq``), so that a
    numbering sent again for it answers the same; TTL ``api.redis_scripts.NUMBER_RECORD_TTL_S``."""
    return f"cmdseq:{command_id}"


def user_seq_key(user: str) -> str:
    """Hash ``{epoch, n}``: the user's command count (``user_seq``); no TTL."""
    return f"useq:{user}"


def idempotency_key(user: str, key_digest: str) -> str:
    """String: ``{command_id, fingerprint}`` JSON of the first request with an
    ``Idempotency-Key`` (``key_digest`` its hash); TTL the idempotency TTL (SET NX EX)."""
    return f"idem:{user}:{key_digest}"


OUTBOX_KEY: Final = "outbox:commands"
"""Hash command id -> accepted command not yet in the oplog; no TTL (local only, entries
removed by the matcher)."""

# ---------------------------------------------------------------- sessions and abuse limits


def session_key(user: str) -> str:
    """Hash ``epoch`` and ``s:{sid}`` -> until: a user's cached session state; TTL
    ``api.sessions.CACHE_TTL_S``, renewed on each write."""
    return f"sess:{user}"


SESSION_ENDED_FIELD_PREFIX: Final = "s:"
"""The prefix of the fields of ``session_key`` that hold an ended session (``s:{sid}``)."""

REVOCATIONS_CHANNEL: Final = "sessions:revoked"
"""Channel: a ``api.sessions.Revocation`` JSON each time a session or API key ends."""


def ws_heartbeat_channel(token: str) -> str:
    """Channel: one ws instance's own heartbeat through Redis (``token`` unique per hub)."""
    return f"ws:heartbeat:{token}"


def rate_limit_key(scope: str, subject: str) -> str:
    """String counter of hits in a fixed window; PEXPIRE NX of the window at the first hit."""
    return f"rl:{scope}:{subject}"


def auth_failures_pair_key(account_digest: str, subject: str) -> str:
    """String counter of failed passwords of one (account, client address); TTL the window."""
    return f"authfail:pair:{account_digest}:{subject}"


def auth_failures_ip_key(subject: str) -> str:
    """String counter of failed passwords of one client address; TTL the failure window."""
    return f"authfail:ip:{subject}"


def api_signature_key(key_id: str, signature: str) -> str:
    """String: a signed API request already used (replays refused); PX two windows + 1 s."""
    return f"apisig:{key_id}:{signature}"


# ---------------------------------------------------------------- Binance dialect


def listen_key_key(listen_key: str) -> str:
    """String: the user id of a Binance user-data-stream ``listenKey``; TTL
    ``shared.listen_keys.TTL_S``, renewed by each keep-alive (``PUT /api/v3/userDataStream``)."""
    return f"listenkey:{listen_key}"


def user_listen_keys_key(user: str) -> str:
    """Set of the user's live ``listenKey`` values (so they can be listed and ended at once);
    TTL ``shared.listen_keys.TTL_S``, renewed with each key."""
    return f"listenkeys:{user}"


KEY_PREFIXES: Final[tuple[str, ...]] = (
    "md:",
    "live:",
    "reply:",
    "cmd:",
    "cmdowner:",
    "cmdseq:",
    "useq:",
    "idem:",
    "outbox:",
    "sess:",
    "sessions:",
    "ws:heartbeat:",
    "rl:",
    "authfail:",
    "apisig:",
    "listenkey:",
    "listenkeys:",
)
"""Every prefix above: no product module outside this one spells one in a string."""
