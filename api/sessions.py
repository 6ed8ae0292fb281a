"""Sessions that end at once: a logout, a password change, a role change.

A session is one login: its refresh tokens (one family, ``refresh_families/{sid}``) and the
access tokens issued from them, which carry its id (claim ``sid``) and the user's *session
epoch* when they were issued (claim ``epoch``). Every request with an access token is checked
here (``SessionStore.check``, from ``api.auth.authenticate``): one Redis read (``HMGET``)
says whether the token's epoch is still the user's and whether its session was ended.

- Logout (and a refresh token used twice) ends one session: its id is recorded as ended.
- A password change, a role change or an operator's reset ends all of a user's sessions: the
  user's epoch goes up, so every token issued before is refused and every refresh family older
  than the epoch is too (functions/auth compares the family's epoch at refresh).

Firestore holds the truth, in the user's document: ``session_epoch`` (an integer, 0 when
absent) and ``ended_sessions`` ({sid: until}, kept while an access token of the session could
still be valid, i.e. ``ACCESS_TOKEN_TTL_S`` + ``JWT_LEEWAY_S``). Redis holds a copy per user
(hash ``sess:{user}``: ``epoch`` and ``s:{sid}`` -> until), kept ``CACHE_TTL_S``: a request
that finds no copy reads the document and writes one. Every write goes to Firestore first,
then merges into the copy (a Lua script: the larger epoch wins, ended sessions add up), so
writers and readers racing each other can only add to the copy, never take an ending back,
and a copy lost with Redis's data comes back from Firestore. A change made to Firestore alone
(by hand) is seen within ``CACHE_TTL_S``.

Every ending is also published on ``sessions:revoked`` (``Revocation``): the ws service ends
the private subscriptions of live connections it concerns (ws_service.hub); deleting an API key
publishes one too, for the connections authenticated with it.

External OIDC users have no document here: their sessions are their identity provider's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import orjson
import redis
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from api.http import unauthorized, unavailable
from shared.redis_keys import REVOCATIONS_CHANNEL, SESSION_ENDED_FIELD_PREFIX, session_key

log = logging.getLogger("sessions")

USERS: Final = "users"
FAMILIES: Final = "refresh_families"
"""One document per login session (its id is the session's ``sid``): functions/auth."""
REFRESH_TOKENS: Final = "refresh_tokens"
"""One document per refresh token (keyed by its hash): functions/auth."""
CACHE_TTL_S: Final = 300
"""How long Redis keeps a user's copy without a write: bounds how long a change made to
Firestore alone goes unseen (a Firestore read per active user and 5 minutes otherwise)."""

# KEYS[1]: the user's copy. ARGV: epoch, ttl_s, now (seconds), then sid, until pairs.
# The larger epoch wins, ended sessions are added (those past their until are dropped).
_MERGE: Final = """
local key = KEYS[1]
local current = redis.call('HGET', key, 'epoch')
if (not current) or tonumber(ARGV[1]) > tonumber(current) then
  redis.call('HSET', key, 'epoch', ARGV[1])
end
for i = 4, #ARGV, 2 do
  redis.call('HSET', key, 's:' .. ARGV[i], ARGV[i + 1])
end
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 's:' and tonumber(fields[i + 1]) < tonumber(ARGV[3]) then
    redis.call('HDEL', key, fields[i])
  end
end
redis.call('EXPIRE', key, ARGV[2])
return 0
"""


class Revocation(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What ended, as published on ``REVOCATIONS_CHANNEL``: one session (``sid``), every
    session issued before an epoch (``epoch``), or an API key (``api_key``)."""

    user: str
    sid: str | None = None
    epoch: int | None = None
    api_key: str | None = None

    def ends(self, user_id: str, via: str, sid: str | None, epoch: int, key: str | None) -> bool:
        """Whether a caller authenticated so is cut off by this."""
        if user_id != self.user:
            return False
        if via == "api_key":
            return self.api_key is not None and key == self.api_key
        if via != "jwt":
            return False
        if self.sid is not None and sid == self.sid:
            return True
        return self.epoch is not None and epoch < self.epoch


def parse_revocation(data: bytes) -> Revocation | None:
    try:
        return msgspec.json.decode(data, type=Revocation)
    except msgspec.DecodeError:
        return None


@dataclass(frozen=True, slots=True)
class SessionState:
    epoch: int
    ended: Mapping[str, float]
    """Ended session ids -> until when (seconds since the epoch) they must stay refused."""


def state_of(user: Mapping[str, Any] | None, now: float) -> SessionState:
    """The session state in a user document (None: no such user, nothing ended)."""
    if not user:
        return SessionState(0, {})
    epoch = user.get("session_epoch")
    ended = user.get("ended_sessions") or {}
    until = {
        str(sid): value.timestamp() if isinstance(value, datetime) else float(value)
        for sid, value in ended.items()
    }
    return SessionState(
        epoch if isinstance(epoch, int) else 0, {s: t for s, t in until.items() if t >= now}
    )


def _ended_path(sid: str) -> str:
    # A session id may start with a digit: quoted as a field path needs it.
    return str(FieldPath("ended_sessions", sid).to_api_repr())


@contextlib.contextmanager
def _backing_services() -> Iterator[None]:
    """Redis or Firestore failing: 503 (retry), never a 500, and never a session let through."""
    try:
        yield
    except (redis.RedisError, GoogleAPICallError) as exc:
        log.warning("session state unavailable: %r", exc)
        raise unavailable("session state cannot be read or written now; try again") from None


def session_revoked() -> Exception:
    return unauthorized("this session has ended: log in again", "session_revoked")


class SessionStore:
    def __init__(self, client: redis.Redis, db: Any, retain_s: int) -> None:
        """``db``: a Firestore client; ``retain_s``: how long an ended session stays refused
        (the longest an access token of it could still be valid)."""
        self._redis = client
        self._db = db
        self._retain_s = retain_s
        self._merge = client.register_script(_MERGE)

    # -- every request ----------------------------------------------------------------------

    def check(self, user_id: str, sid: str, epoch: int) -> None:
        """401 ``session_revoked`` unless the session ``sid`` of ``user_id``, issued at
        ``epoch``, is still on. One Redis read; Firestore when Redis has no copy."""
        with _backing_services():
            current, ended = self._redis.hmget(
                session_key(user_id), ["epoch", SESSION_ENDED_FIELD_PREFIX + sid]
            )
            if current is None:
                state = self._load(user_id)
                current_epoch, is_ended = state.epoch, sid in state.ended
            else:
                current_epoch, is_ended = int(current), ended is not None
        if is_ended or epoch < current_epoch:
            raise session_revoked()

    def epoch(self, user: Mapping[str, Any] | None) -> int:
        """The epoch to issue a user's tokens at, from their document."""
        return state_of(user, time.time()).epoch

    # -- endings ----------------------------------------------------------------------------

    def end_session(self, user_id: str, sid: str) -> None:
        """End one session now (logout, a refresh token used twice)."""
        with _backing_services():
            self._end_session(user_id, sid)

    def _end_session(self, user_id: str, sid: str) -> None:
        now = time.time()
        ref = self._db.collection(USERS).document(user_id)
        doc = ref.get().to_dict() or {}
        state = state_of(doc, now)
        until = now + self._retain_s
        changes: dict[str, Any] = {_ended_path(sid): datetime.fromtimestamp(until, UTC)}
        for old in set(doc.get("ended_sessions") or {}) - set(state.ended) - {sid}:
            changes[_ended_path(old)] = firestore.DELETE_FIELD  # none of its tokens is valid
        ref.update(changes)
        self._write(user_id, SessionState(state.epoch, {**state.ended, sid: until}), now)
        self._publish(Revocation(user=user_id, sid=sid))

    def end_all(self, user_id: str) -> int:
        """End every session of the user now (password or role change); the new epoch."""
        with _backing_services():
            return self._end_all(user_id)

    def _end_all(self, user_id: str) -> int:
        ref = self._db.collection(USERS).document(user_id)
        ref.update({"session_epoch": firestore.Increment(1)})
        now = time.time()
        state = state_of(ref.get().to_dict(), now)
        self._write(user_id, state, now)
        self._publish(Revocation(user=user_id, epoch=state.epoch))
        return state.epoch

    def api_key_deleted(self, user_id: str, key_id: str) -> None:
        """Tell live connections authenticated with the key (HTTP reads the key each time)."""
        with _backing_services():
            self._publish(Revocation(user=user_id, api_key=key_id))

    # -- the copy ---------------------------------------------------------------------------

    def _load(self, user_id: str) -> SessionState:
        now = time.time()
        state = state_of(self._db.collection(USERS).document(user_id).get().to_dict(), now)
        self._write(user_id, state, now)
        return state

    def _write(self, user_id: str, state: SessionState, now: float) -> None:
        pairs = [str(x) for sid, until in state.ended.items() for x in (sid, until)]
        self._merge(keys=[session_key(user_id)], args=[state.epoch, CACHE_TTL_S, now, *pairs])

    def _publish(self, revocation: Revocation) -> None:
        self._redis.publish(REVOCATIONS_CHANNEL, orjson.dumps(msgspec.to_builtins(revocation)))


def live_sessions(
    db: Any, user_id: str, user: Mapping[str, Any], now: datetime
) -> list[dict[str, Any]]:
    """The user's sessions that still work (an operator's view; ``db`` a Firestore client):
    not logged out nor revoked, not ended by a change of password or role (the user's epoch),
    and holding a refresh token that is unspent and unexpired. Oldest first."""
    state = state_of(user, now.timestamp())
    expires: dict[str, datetime] = {}
    tokens = (
        db.collection(REFRESH_TOKENS)
        .where(filter=firestore.FieldFilter("user_id", "==", user_id))
        .where(filter=firestore.FieldFilter("status", "==", "active"))
    )
    for snap in tokens.stream():
        token = snap.to_dict() or {}
        until = token.get("expires_at")
        sid = str(token.get("family_id"))
        if isinstance(until, datetime) and until > now and until > expires.get(sid, now):
            expires[sid] = until
    out = []
    for family_id, until in expires.items():
        if family_id in state.ended:
            continue
        snap = db.collection(FAMILIES).document(family_id).get()
        family: dict[str, Any] = (snap.to_dict() or {}) if snap.exists else {}
        if not family or family.get("revoked") or int(family.get("epoch", 0)) < state.epoch:
            continue
        auth_time = family.get("auth_time")
        out.append(
            {
                "id": family_id,
                "created_at": _iso(family.get("created_at")),
                "last_password_at": (
                    datetime.fromtimestamp(auth_time, UTC).isoformat()
                    if isinstance(auth_time, int) else None
                ),
                "refresh_expires_at": until.isoformat(),
            }
        )  # fmt: skip
    return sorted(out, key=lambda s: (s["created_at"] or "", s["id"]))


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None
