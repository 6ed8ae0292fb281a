"""Sending commands from an API function to the matcher, and hearing its verdict.

    svc = services()                         # per instance: auth context, publisher, database
    cmd = PlaceOrder(id=new_command_id(), user=user, ...)
    reply = svc.commands.send(cmd, ordering_key=user, owner=user)
    if reply is None:                        # no verdict within API_REPLY_WAIT_S
        return json_response({"command_id": cmd.id, "status": "pending"}, status=202)
    if not reply["ok"]:
        raise rejection(reply)               # the engine's reason, with a fitting status

``send`` first gives a user's own command (an order, a cancel, a withdrawal: ``SEQUENCED``) its
place among the user's commands (``user_seq``, ``UserSeqs``: one Redis increment; the matcher
applies each user's commands in that order, docs/decisions/0006) and marks the command's owner
in Redis (``cmdowner:{id}``, kept as long as an idempotency key), so ``GET /v1/commands/{id}``
can answer "pending" to its owner and 404 to anyone else before the matcher has seen it, both
in one round trip; then publishes with the ordering key (a failed publish resumes the key:
``CommandPublisher``) and waits on ``BLPOP reply:{id}`` (the matcher pushes the verdict there
and also keeps it at ``cmd:{id}``; docs/marketdata.md).

Locally (``COMMANDS_OUTBOX=1``) the command is also kept in Redis until the matcher has it in
the oplog (shared/outbox.py): the emulator forgets unacknowledged messages when it stops, and
``make run`` publishes again what the last run left. ``queued`` tells whether it still is.

``Idempotency-Key``: ``Idempotency.begin`` remembers, per user and key, the command id and a
fingerprint of the request (``SET NX``, 24 h). A retry with the same key and the same request
gets the first command's id (the caller answers with that command's result, without
publishing again); the same key with another request is refused (422
``idempotency_key_reused``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Self

import flask
import orjson
import redis

from api.auth import AuthContext, default_context
from api.http import ApiError, ApiRequest, bad_request, json_response, unavailable
from api.redis_client import batch_of
from api.redis_scripts import NEXT_SEQ, NEXT_SEQ_KEPT
from shared import outbox
from shared.config import ApiConfig, PostgresConfig, PubSubConfig
from shared.db import SharedConnection
from shared.instance import per_instance
from shared.messages import (
    AnyCommand,
    CancelAll,
    CancelOrder,
    PlaceOrder,
    Reason,
    RequestWithdrawal,
    UserSeq,
)
from shared.pubsub import CommandPublisher
from shared.redis_keys import (
    OUTBOX_KEY,
    command_key,
    command_owner_key,
    command_seq_key,
    idempotency_key,
    reply_key,
    user_seq_key,
)

log = logging.getLogger("api.commands")

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
COMMAND_ID_RE: Final = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_IDEMPOTENCY_KEY_RE: Final = re.compile(r"[\x21-\x7e]{1,255}")
_POLL_S: Final = 0.02


SEQUENCED: Final = (PlaceOrder, CancelOrder, CancelAll, RequestWithdrawal)
"""The commands a user sends: each takes its place among the user's commands (``user_seq``)."""


class UserSeqs:
    """Each user's commands numbered in the order the API accepted them (``useq:{user}``, a
    hash of ``epoch`` and ``n``, kept for good: a user's count goes on from where it is). The
    number a command got is recorded with it for a while (``cmdseq:{id}``): numbering the same
    command again answers the same number (docs/decisions/0041)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._next = client.register_script(NEXT_SEQ)

    def next(
        self,
        user: str,
        command_id: str,
        client: Any = None,
        kept: tuple[bytes, bytes] | None = None,
    ) -> Any:
        """The ``UserSeq`` of the user's command ``command_id``: the user's next, or the one it
        was given already (with ``client`` a pipeline: queued, its result is ``[epoch, n]``;
        with ``kept`` too, its outbox entry around the number,
        ``shared.outbox.numbered_template``: the entry is written with the number)."""
        keys = (user_seq_key(user), command_seq_key(command_id))
        if client is not None and kept is not None:
            return client.eval(NEXT_SEQ_KEPT, 3, *keys, OUTBOX_KEY, command_id, *kept)
        if client is not None:
            # EVAL on a pipeline: a registered script there costs a SCRIPT EXISTS round trip.
            return client.eval(NEXT_SEQ, 2, *keys)
        got = self._next(keys=keys, client=self._redis)
        return UserSeq(int(got[0]), int(got[1]))

    def stamp(self, cmd: AnyCommand) -> None:
        """Give a user's own command its place, unless it has one."""
        if isinstance(cmd, SEQUENCED) and cmd.user_seq is None:
            cmd.user_seq = self.next(cmd.user, cmd.id)


def new_command_id() -> str:
    """A fresh command id (functions are not the engine: randomness is fine here)."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------------------------
# Verdicts as HTTP answers
# --------------------------------------------------------------------------------------------

_STATUS_OF_REASON: Final[dict[str, int]] = {
    # The request does not fit the rules (normally caught before publishing).
    Reason.INVALID: 400,
    Reason.UNKNOWN_ASSET: 400,
    Reason.UNKNOWN_MARKET: 400,
    Reason.BAD_PRICE: 400,
    Reason.BAD_TICK: 400,
    Reason.BAD_AMOUNT: 400,
    Reason.BAD_STEP: 400,
    Reason.BELOW_MIN_AMOUNT: 400,
    Reason.BELOW_MIN_NOTIONAL: 400,
    # Someone else's or no such thing: never say which.
    Reason.ORDER_NOT_FOUND: 404,
    Reason.NOT_YOUR_ORDER: 404,
    Reason.UNKNOWN_WITHDRAWAL: 404,
    # Clashes with the current state.
    Reason.DUPLICATE_CLIENT_ORDER_ID: 409,
    Reason.DUPLICATE_ASSET: 409,
    Reason.DUPLICATE_MARKET: 409,
    Reason.DUPLICATE_DEPOSIT: 409,
    Reason.DUPLICATE_WITHDRAWAL: 409,
    Reason.MARKET_HALTED: 409,
    Reason.NOT_AMENDABLE: 409,
    Reason.BAD_EXPIRY: 400,
    # Well formed, but the book or the balance does not allow it now.
    Reason.INSUFFICIENT_FUNDS: 422,
    Reason.WOULD_TAKE: 422,
    Reason.FOK_NOT_FILLED: 422,
    Reason.WOULD_TRIGGER: 422,
    Reason.TOO_MANY_ORDERS: 422,
}
_CODE_OF_REASON: Final[dict[str, str]] = {
    Reason.NOT_YOUR_ORDER: Reason.ORDER_NOT_FOUND,
    Reason.INVALID: "invalid_command",
}


def rejection(reply: dict[str, Any]) -> ApiError:
    """The engine's refusal (``reply["ok"]`` false) as an API error: the engine's reason code
    (``not_your_order`` reads ``order_not_found``) with the status above (422 otherwise)."""
    reason = str(reply.get("reason") or "rejected")
    status = _STATUS_OF_REASON.get(reason, 422)
    code = _CODE_OF_REASON.get(reason, reason)
    if status == 404:
        return ApiError(404, code, "no such order" if code == Reason.ORDER_NOT_FOUND else code)
    return ApiError(
        status, code, f"the matching engine refused command {reply.get('command_id')}: {reason}"
    )


# --------------------------------------------------------------------------------------------
# Publishing and waiting
# --------------------------------------------------------------------------------------------


class Commands:
    def __init__(
        self,
        client: redis.Redis,
        publisher: Callable[[], CommandPublisher],
        wait_s: float,
        owner_ttl_s: int,
        use_outbox: bool = False,
    ) -> None:
        self._redis = client
        self._make_publisher = publisher
        self._publisher: CommandPublisher | None = None
        self._seqs = UserSeqs(client)
        self._lock = threading.Lock()
        self.wait_s = wait_s
        self.owner_ttl_s = owner_ttl_s
        self.keeps_outbox = use_outbox

    def publisher(self) -> CommandPublisher:
        with self._lock:
            if self._publisher is None:
                self._publisher = self._make_publisher()
            return self._publisher

    def send(self, cmd: AnyCommand, *, ordering_key: str, owner: str) -> dict[str, Any] | None:
        """Publish ``cmd`` and wait for the matcher's verdict: the reply, or None when none
        came within ``wait_s`` (the command is queued; its owner may poll). 503 when it
        could not be queued (nothing was done; the caller may retry)."""
        self.publish(cmd, ordering_key=ordering_key, owner=owner)
        return self.wait_reply(cmd.id, self.wait_s)

    def publish(
        self, cmd: AnyCommand, *, ordering_key: str, owner: str, numbered: bool = False
    ) -> None:
        """``numbered``: the command's number, owner and outbox entry are written already
        (api.placing); only the publish is left."""
        key = command_owner_key(cmd.id)
        if not numbered:
            self._number(cmd, ordering_key, owner)
        try:
            self.publisher().publish_one(cmd, ordering_key)
        except Exception:
            log.exception("could not publish command %s", cmd.id)
            self._redis.delete(key)
            if self.keeps_outbox:
                outbox.remove(self._redis, [cmd.id])
            raise unavailable("the command could not be queued; nothing was done") from None

    def _number(self, cmd: AnyCommand, ordering_key: str, owner: str) -> None:
        """The command's number (a user's own), its owner and, locally, its outbox entry."""
        key = command_owner_key(cmd.id)
        pipe = batch_of(self._redis)
        sequenced = isinstance(cmd, SEQUENCED) and cmd.user == owner and cmd.user_seq is None
        # The outbox keeps the command as published, so after its number: written by the
        # numbering script itself when it can be (one round trip fewer), else after it.
        template = (
            outbox.numbered_template(cmd, ordering_key) if sequenced and self.keeps_outbox else None
        )
        if sequenced:
            self._seqs.next(owner, cmd.id, client=pipe, kept=template)
        pipe.set(key, owner.encode(), ex=self.owner_ttl_s)
        done = pipe.execute()
        if sequenced:
            cmd.user_seq = UserSeq(int(done[0][0]), int(done[0][1]))
        if self.keeps_outbox and template is None:
            outbox.add(self._redis, cmd, ordering_key)

    def wait_reply(self, command_id: str, timeout: float) -> dict[str, Any] | None:
        """The reply popped from ``reply:{id}`` within ``timeout`` seconds, else the verdict
        at ``cmd:{id}`` (someone else popped it, or it came just after), else None."""
        if timeout > 0:
            (popped,) = batch_of(self._redis).blpop([reply_key(command_id)], timeout).execute()
            if popped is not None:
                return dict(orjson.loads(popped[1]))
        return self.result(command_id)

    def poll(self, command_id: str, timeout: float) -> dict[str, Any] | None:
        """The verdict at ``cmd:{id}``, checking until ``timeout`` (for a retry of a request
        whose first attempt may still be waiting on the reply list)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.result(command_id)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(_POLL_S)

    def result(self, command_id: str) -> dict[str, Any] | None:
        raw = self._redis.get(command_key(command_id))
        return None if raw is None else dict(orjson.loads(raw))

    def queued(self, command_id: str) -> bool | None:
        """Whether the command is still kept for the matcher (the local outbox); None when
        there is no outbox (Pub/Sub keeps every accepted command until it is applied)."""
        return outbox.holds(self._redis, command_id) if self.keeps_outbox else None

    def owner(self, command_id: str) -> str | None:
        raw = self._redis.get(command_owner_key(command_id))
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)


class Idempotency:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    @staticmethod
    def key_of(req: ApiRequest) -> str | None:
        """The request's ``Idempotency-Key``, None without one; 400 when malformed."""
        key = req.header(IDEMPOTENCY_HEADER)
        if key is None:
            return None
        if not _IDEMPOTENCY_KEY_RE.fullmatch(key):
            raise bad_request(
                f"{IDEMPOTENCY_HEADER} must be 1 to 255 printable ASCII characters",
                "invalid_idempotency_key",
            )
        return key

    @staticmethod
    def _redis_key(user: str, key: str) -> str:
        return idempotency_key(user, hashlib.sha256(key.encode()).hexdigest()[:40])

    def begin(self, user: str, key: str, fingerprint: str, command_id: str) -> str | None:
        """None when this request is the first with ``key`` (it now owns ``command_id``);
        else the command id of the first, when it was the same request (422 otherwise)."""
        rkey = self._redis_key(user, key)
        value = orjson.dumps({"command_id": command_id, "fingerprint": fingerprint})
        for _ in range(3):
            if self._redis.set(rkey, value, nx=True, ex=self._ttl_s):
                return None
            raw = self._redis.get(rkey)
            if raw is None:  # expired in between: try to take it again
                continue
            first = orjson.loads(raw)
            if first["fingerprint"] != fingerprint:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    f"this {IDEMPOTENCY_HEADER} was used with a different request",
                )
            return str(first["command_id"])
        raise unavailable("could not record the idempotency key")  # pragma: no cover

    def abandon(self, user: str, key: str, command_id: str) -> None:
        """Forget ``key`` when its command was never queued, so that a retry can go ahead."""
        rkey = self._redis_key(user, key)
        raw = self._redis.get(rkey)
        if raw is not None and orjson.loads(raw)["command_id"] == command_id:
            self._redis.delete(rkey)


def fingerprint(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# What a command-sending function holds for its instance's life
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Services:
    auth: AuthContext
    commands: Commands
    idempotency: Idempotency
    db: SharedConnection
    """Postgres (the matcher's tables, read only), opened on first use."""

    @property
    def config(self) -> ApiConfig:
        return self.auth.config

    @property
    def redis(self) -> redis.Redis:
        return self.auth.redis

    def close(self) -> None:
        """Close the Postgres connection (the auth context is an instance object of its own,
        reset with it by ``shared.instance.reset_instance``)."""
        self.db.close()

    @classmethod
    def from_environment(cls) -> Self:
        """The environment's services (``PubSubConfig``, ``PostgresConfig``, ``ApiConfig``);
        a function with more of its own extends the class (the wallet's)."""
        ctx = default_context()
        cfg = ctx.config
        pubsub = PubSubConfig.load()
        return cls(
            auth=ctx,
            commands=Commands(
                ctx.redis,
                lambda: CommandPublisher(pubsub),
                cfg.reply_wait_s,
                cfg.idempotency_ttl_s,
                use_outbox=pubsub.outbox,
            ),
            idempotency=Idempotency(ctx.redis, cfg.idempotency_ttl_s),
            db=SharedConnection(PostgresConfig.load()),
        )


@per_instance
def services() -> Services:
    """The environment's services, built on first use and kept for the instance's life."""
    return Services.from_environment()


def pending_command(command_id: str) -> flask.Response:
    """202: the command is queued and the matcher has not answered yet; poll
    ``/v1/commands/{id}``."""
    return json_response(
        {"command_id": command_id, "status": "pending"},
        status=202,
        headers={"Location": f"/v1/commands/{command_id}"},
    )
