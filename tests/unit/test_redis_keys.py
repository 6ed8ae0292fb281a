"""The Redis names the deployables share: their formats are pinned, and spelled in one module.

The matcher, the ws service, the functions and the wallet jobs deploy separately and meet only
in Redis; renaming a key here is a change to all of them at once (and to data already
stored), so it must show up as a change to this test too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Final

from shared import redis_keys as k

REPO = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = ("functions", "matcher_service", "ws_service", "shared", "infra", "bench")
OWNER = REPO / "shared" / "redis_keys.py"


def test_market_data_keys() -> None:
    assert k.MARKETS_KEY == "md:markets"
    assert k.ASSETS_KEY == "md:assets"
    assert k.ASSET_CHAINS_KEY == "md:asset_chains"
    assert k.depth_key("ETH-USDT") == "md:depth:ETH-USDT"
    assert k.trades_key("ETH-USDT") == "md:trades:ETH-USDT"
    assert k.kline_key("ETH-USDT", "5m") == "md:kline:ETH-USDT:5m"
    assert k.ticker_key("ETH-USDT") == "md:ticker:ETH-USDT"


def test_live_channels() -> None:
    assert k.live_depth_channel("ETH-USDT") == "live:depth:ETH-USDT"
    assert k.live_trades_channel("ETH-USDT") == "live:trades:ETH-USDT"
    assert k.live_kline_channel("ETH-USDT", "1h") == "live:kline:ETH-USDT:1h"
    assert k.live_ticker_channel("ETH-USDT") == "live:ticker:ETH-USDT"
    assert k.live_user_channel("u1") == "live:user:u1"
    assert k.REVOCATIONS_CHANNEL == "sessions:revoked"
    assert k.ws_heartbeat_channel("abc") == "ws:heartbeat:abc"


def test_command_keys() -> None:
    assert k.reply_key("c1") == "reply:c1"
    assert k.command_key("c1") == "cmd:c1"
    assert k.command_owner_key("c1") == "cmdowner:c1"
    assert k.command_seq_key("c1") == "cmdseq:c1"
    assert k.user_seq_key("u1") == "useq:u1"
    assert k.idempotency_key("u1", "ab12") == "idem:u1:ab12"
    assert k.OUTBOX_KEY == "outbox:commands"


def test_session_and_limit_keys() -> None:
    assert k.session_key("u1") == "sess:u1"
    assert k.SESSION_ENDED_FIELD_PREFIX == "s:"
    assert k.rate_limit_key("trade:ip", "10.0.0.1") == "rl:trade:ip:10.0.0.1"
    assert k.auth_failures_pair_key("d1", "10.0.0.1") == "authfail:pair:d1:10.0.0.1"
    assert k.auth_failures_ip_key("10.0.0.1") == "authfail:ip:10.0.0.1"
    assert k.api_signature_key("key1", "sig") == "apisig:key1:sig"


def test_kline_intervals() -> None:
    assert k.KLINE_INTERVALS == (
        ("1m", 60_000),
        ("5m", 300_000),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("4h", 14_400_000),
        ("1d", 86_400_000),
    )
    assert k.KLINE_INTERVAL_NAMES == ("1m", "5m", "15m", "1h", "4h", "1d")
    assert all(k.DAY_MS % ms == 0 for _, ms in k.KLINE_INTERVALS)


def test_every_prefix_is_listed() -> None:
    """Each name the module makes starts with a prefix of ``KEY_PREFIXES`` (so the scan below
    covers it)."""
    names = [
        k.MARKETS_KEY, k.ASSETS_KEY, k.ASSET_CHAINS_KEY, k.depth_key("m"), k.trades_key("m"),
        k.kline_key("m", "1m"), k.ticker_key("m"), k.live_depth_channel("m"),
        k.live_trades_channel("m"), k.live_kline_channel("m", "1m"), k.live_ticker_channel("m"),
        k.live_user_channel("u"), k.reply_key("c"), k.command_key("c"),
        k.command_owner_key("c"), k.command_seq_key("c"), k.user_seq_key("u"),
        k.idempotency_key("u", "d"),
        k.OUTBOX_KEY, k.session_key("u"), k.REVOCATIONS_CHANNEL, k.ws_heartbeat_channel("t"),
        k.rate_limit_key("s", "x"), k.auth_failures_pair_key("a", "x"),
        k.auth_failures_ip_key("x"), k.api_signature_key("k", "s"),
    ]  # fmt: skip
    for name in names:
        assert name.startswith(k.KEY_PREFIXES), name


_KEYLIKE: Final = re.compile("|".join(re.escape(p) + "(?! )" for p in k.KEY_PREFIXES))
"""A prefix not followed by a space (``outbox: published ...`` is a log line, not a key)."""


def _spellings(path: Path) -> list[str]:
    """Where ``path`` spells a Redis prefix or a kline interval list itself: a string (or the
    start of an f-string) beginning with a prefix, or the interval name ``4h``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        # An f-string's literal parts are constants too: its opening one is checked here.
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if _KEYLIKE.match(text) or text == "4h":
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {text[:40]!r}")
    return found


def test_no_product_module_spells_a_key() -> None:
    """Redis names and kline intervals come from shared.redis_keys only."""
    found = []
    for top in PRODUCT_DIRS:
        for path in sorted((REPO / top).rglob("*.py")):
            if path != OWNER:
                found += _spellings(path)
    assert found == [], "use shared.redis_keys:\n" + "\n".join(found)
