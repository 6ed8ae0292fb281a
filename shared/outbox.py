"""The local outbox: commands the API accepted that are not yet in the oplog (local only).

The Pub/Sub emulator keeps its topics and subscriptions across a restart but forgets every
message not yet acknowledged, so locally a command answered 202 would vanish with a stop of
the stack. With ``COMMANDS_OUTBOX=1`` (what ``make run`` sets; off in the cloud, where Pub/Sub
is durable) the API writes each command to the Redis hash ``outbox:commands`` before
publishing it, the matcher removes it once it is in the oplog, and ``make run`` publishes
again at start whatever the last run left there (Redis keeps its data in ``.state/redis``).
``GET /v1/commands/{id}`` answers ``lost`` for a command its owner sent that is neither in
the oplog nor in the outbox (docs/decisions/0008).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

import msgspec

from shared.messages import AnyCommand, UserSeq
from shared.redis_keys import OUTBOX_KEY

log = logging.getLogger(__name__)


class _Entry(msgspec.Struct, array_like=True):
    ordering_key: str
    accepted_ms: int
    command: msgspec.Raw


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Entry)


class Entry(NamedTuple):
    command_id: str
    ordering_key: str
    accepted_ms: int
    data: bytes
    """The command as published (JSON)."""


def add(client: Any, cmd: AnyCommand, ordering_key: str) -> None:
    """Keep ``cmd`` until the matcher has it in the oplog (``client``: Redis or a pipeline)."""
    entry = _Entry(ordering_key, time.time_ns() // 1_000_000, msgspec.Raw(_encoder.encode(cmd)))
    client.hset(OUTBOX_KEY, cmd.id, _encoder.encode(entry))


_SEQ_PLACEHOLDER: Final = b'"user_seq":[0,0]'


def numbered_template(cmd: AnyCommand, ordering_key: str) -> tuple[bytes, bytes] | None:
    """``add``'s entry for a command still to be numbered, split where its ``user_seq``
    goes: the script that gives the number writes ``before + b"epoch,n" + after``, the
    entry as ``add`` would write it once the number is set (the command as published), in
    the same round trip. None when the command cannot be split so (then ``add`` it)."""
    if cmd.user_seq is not None:
        return None
    cmd.user_seq = UserSeq(0, 0)
    try:
        data = _encoder.encode(
            _Entry(ordering_key, time.time_ns() // 1_000_000, msgspec.Raw(_encoder.encode(cmd)))
        )
    finally:
        cmd.user_seq = None
    # The key can show only once: inside a JSON string its quotes would be escaped.
    if data.count(_SEQ_PLACEHOLDER) != 1:
        return None
    before, _, after = data.partition(_SEQ_PLACEHOLDER)
    return before + b'"user_seq":[', b"]" + after


def remove(client: Any, command_ids: Iterable[str]) -> None:
    ids = list(command_ids)
    for i in range(0, len(ids), 1000):
        client.hdel(OUTBOX_KEY, *ids[i : i + 1000])


def holds(client: Any, command_id: str) -> bool:
    return bool(client.hexists(OUTBOX_KEY, command_id))


def size(client: Any) -> int:
    return int(client.hlen(OUTBOX_KEY))


def entries(client: Any) -> list[Entry]:
    """Everything in the outbox, oldest first."""
    out = []
    for cid, raw in client.hgetall(OUTBOX_KEY).items():
        e = _decoder.decode(raw)
        command_id = cid.decode() if isinstance(cid, bytes) else str(cid)
        out.append(Entry(command_id, e.ordering_key, e.accepted_ms, bytes(e.command)))
    out.sort(key=lambda e: (e.accepted_ms, e.command_id))
    return out


def republish(
    client: Any,
    publish: Callable[[bytes, str], Any],
    durable: Callable[[list[str]], set[str]],
) -> tuple[int, int]:
    """Publish again what the outbox holds and the oplog does not (``durable`` names the ids
    it has); forget the rest. ``publish(data, ordering_key)`` returns a future. Returns
    (published, forgotten)."""
    held = entries(client)
    done = durable([e.command_id for e in held]) if held else set()
    remove(client, done)
    futures = [publish(e.data, e.ordering_key) for e in held if e.command_id not in done]
    for future in futures:
        future.result(timeout=60)
    return len(futures), len(done)
