"""An order's checks and its number in one Redis round trip (docs/decisions/0035).

Placing an order took three Redis round trips before its publish: the session and rate
limits with the market's reads, then the user's command number with the command's owner (and
locally the outbox), then the wait for the reply. Each costs more CPU in the socket calls than
in the work (docs/benchmarks.md). This merges the first two: the order is checked against the
market as this instance last read it (``KnownMarkets``), and one script then checks the
session, counts both rate limits, and only when both pass and the market and its two assets
still hold exactly the bytes the check used, numbers the command, records its owner and keeps
it in the outbox, as ``Commands.publish`` would have.

When the market changed since (or was never read by this instance), the script counts and
stops there; the caller reads the market again and goes on the usual way
(``Placement.COUNTED``). Nothing is counted twice, and the numbering never follows a check made
with anything but the stored definition.

The script is safe to send again (``api.redis_client`` does when the connection fails, and
Redis may have run it already): the number is recorded for the command id, and the script sent
again for a command it numbered only answers that number, counting nothing (decision 0041).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Any, Final

from api.auth import AuthContext
from api.dispatch import Commands
from api.http import ApiRequest, RateHit, raise_over_limits
from api.listings import MarketSpec, market_of
from api.redis_client import batch_of
from api.redis_scripts import COUNT_AND_NUMBER
from api.sessions import session_revoked
from shared import outbox
from shared.messages import AnyCommand, UserSeq
from shared.redis_keys import (
    ASSETS_KEY,
    MARKETS_KEY,
    OUTBOX_KEY,
    SESSION_ENDED_FIELD_PREFIX,
    command_owner_key,
    command_seq_key,
    rate_limit_key,
    session_key,
    user_seq_key,
)

_MAX_KNOWN: Final = 1000


@dataclass(frozen=True, slots=True)
class KnownMarket:
    """A market as this instance read it, with the stored bytes it was made from."""

    spec: MarketSpec
    raw: bytes
    base_raw: bytes
    quote_raw: bytes


class KnownMarkets:
    """The markets this instance has read, by name: what an order is checked against before
    its one round trip, which proves them current (see the module)."""

    def __init__(self) -> None:
        self._known: dict[str, KnownMarket] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> KnownMarket | None:
        return self._known.get(name)

    def remember(self, name: str, raw: bytes | None, assets: dict[bytes, bytes]) -> None:
        """``market_of``'s reads of ``name`` (``queue_market``'s results)."""
        spec = None if raw is None else market_of(raw, assets)
        base_raw = None if spec is None else assets.get(spec.base.encode())
        quote_raw = None if spec is None else assets.get(spec.quote.encode())
        with self._lock:
            if spec is None or raw is None or base_raw is None or quote_raw is None:
                self._known.pop(name, None)
                return
            if name not in self._known and len(self._known) >= _MAX_KNOWN:
                self._known.clear()
            self._known[name] = KnownMarket(spec, raw, base_raw, quote_raw)


class Placement(enum.Enum):
    NUMBERED = "numbered"
    """Counted, numbered, its owner recorded (and kept in the outbox): publish it."""
    COUNTED = "counted"
    """Counted only: the market changed since it was read; read it and go on as usual."""
    SESSION_NOT_CACHED = "session_not_cached"
    """Nothing done: Redis holds no copy of the user's sessions (check them, then count)."""
    UNTRIED = "untried"
    """Nothing done: the command cannot be kept in the outbox this way; go the usual way."""


def count_and_number(
    req: ApiRequest,
    ctx: AuthContext,
    commands: Commands,
    hits: list[RateHit],
    known: KnownMarket,
    cmd: AnyCommand,
    owner: str,
) -> Placement:
    """The request's session (when due, ``ApiRequest.session_due``) and ``hits``, then, when
    they pass and ``known`` is still what Redis holds, ``cmd``'s number (set on it), owner and
    outbox entry; 401 ``session_revoked``, 429 as ``RateLimiter.hit_many``."""
    template = outbox.numbered_template(cmd, owner) if commands.keeps_outbox else None
    if commands.keeps_outbox and template is None:
        return Placement.UNTRIED
    due = req.session_due
    spec = known.spec
    keys: list[Any] = [rate_limit_key(scope, subject) for scope, subject, _, _ in hits]
    args: list[Any] = [len(hits), 0 if due is None else 1]
    args += [w * 1000 for _, _, _, w in hits]
    args += [limit for _, _, limit, _ in hits]
    if due is not None:
        keys.append(session_key(due.user_id))
        args += [SESSION_ENDED_FIELD_PREFIX + due.session_id, due.epoch]
    keys += [MARKETS_KEY, ASSETS_KEY, user_seq_key(owner)]
    keys += [command_owner_key(cmd.id), command_seq_key(cmd.id)]
    args += [spec.name, known.raw, spec.base, known.base_raw, spec.quote, known.quote_raw]
    args += [owner.encode(), commands.owner_ttl_s]
    if template is not None:
        keys.append(OUTBOX_KEY)
        args += [cmd.id, *template]
    (state, *rest) = (
        batch_of(ctx.redis).eval(COUNT_AND_NUMBER, len(keys), *keys, *args).execute()[0]
    )
    if int(state) == 1:
        return Placement.SESSION_NOT_CACHED
    if int(state) == 2:
        raise session_revoked()
    req.session_due = None
    counted, numbered = rest[: len(hits)], rest[len(hits) :]
    raise_over_limits(hits, counted)
    if not numbered:
        return Placement.COUNTED
    epoch, n = numbered[0]
    cmd.user_seq = UserSeq(int(epoch), int(n))
    return Placement.NUMBERED
