"""Producer-signed commands against a real matcher, Pub/Sub emulator, Postgres and Redis: a
command of a type its producer may not send, an unsigned one, one signed with a key the
matcher does not know, and one moved to another ordering key are all refused, dead-lettered
and logged as security events; nothing of them is applied and balances stay as they were."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]

from shared.config import MatcherConfig, PubSubConfig
from shared.db import connect
from shared.messages import Deposit, encode
from shared.producers import Signer, parse_keys, signature_attributes
from shared.pubsub import CommandPublisher
from tests.integration.matcher_helpers import (
    ETH,
    market_setup,
    publish,
    running,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def keys() -> dict[str, Ed25519PrivateKey]:
    """Every producer's private key: the local stack's document (infra.services)."""
    private, _ = parse_keys(Path(os.environ["COMMAND_KEYS_FILE"]).read_text())
    return private


def take_dead_letters(ps: PubSubConfig) -> list[bytes]:
    """What reached the dead-letter topic since the last call (pulled and acknowledged)."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(ps.project, f"{ps.dead_letter_topic}-hold")
    try:
        resp = subscriber.pull(request={"subscription": path, "max_messages": 100}, timeout=2.0)
        if resp.received_messages:
            ids = [m.ack_id for m in resp.received_messages]
            subscriber.acknowledge(request={"subscription": path, "ack_ids": ids})
        return [m.message.data for m in resp.received_messages]
    except gexc.DeadlineExceeded:
        return []
    finally:
        subscriber.close()


def forged(cid: str) -> bytes:
    """A deposit of 1000 ETH to alice: what a thief would credit."""
    return encode(Deposit(id=cid, user="alice", asset="ETH", amount=1000 * ETH, ref=cid))


def balances(cfg: MatcherConfig, user: str) -> list[list[object]]:
    db = connect(cfg.postgres)
    try:
        rows: list[list[object]] = db.run(
            "SELECT asset, available, frozen FROM balances WHERE user_id = :u ORDER BY asset",
            u=user,
        )
        return rows
    finally:
        db.close()


def in_oplog(cfg: MatcherConfig, ids: list[str]) -> int:
    db = connect(cfg.postgres)
    try:
        return int(
            db.run(
                "SELECT count(*) FROM oplog WHERE command_id = ANY(CAST(:ids AS text[]))", ids=ids
            )[0][0]
        )
    finally:
        db.close()


def test_forged_and_forbidden_commands_are_dead_lettered_and_change_nothing(
    matcher_cfg: MatcherConfig, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = matcher_cfg
    ps = cfg.pubsub
    caplog.set_level(logging.ERROR, logger="matcher")
    with running(cfg):
        publish(ps, market_setup())
        watcher = CommandPublisher(ps, Signer({"watcher": keys()["watcher"]}))
        watcher.publish(
            Deposit(id="dep-1", user="alice", asset="ETH", amount=ETH, ref="r1"), "alice"
        )
        wait_for(lambda: in_oplog(cfg, ["dep-1"]) == 1, 30, "the watcher's deposit applied")
        before = balances(cfg, "alice")
        assert before == [["ETH", ETH, 0]]

        # A compromised orders function: its own key, a type it may not send. Its publisher
        # will not sign it...
        orders = keys()["orders"]
        with pytest.raises(PermissionError):
            CommandPublisher(ps, Signer({"orders": orders})).publish(
                Deposit(id="x", user="alice", asset="ETH", amount=1, ref="x"), "alice"
            )
        # ... and by hand, straight onto the topic, it is refused by the matcher.
        raw = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        topic = raw.topic_path(ps.project, ps.commands_topic)

        def send(cid: str, key: str = "alice", **attributes: str) -> None:
            raw.publish(topic, forged(cid), ordering_key=key, **attributes).result(timeout=30)

        # Signed with the orders key, by hand: a type orders may not send.
        send(
            "f-forbidden", **signature_attributes("orders", orders, forged("f-forbidden"), "alice")
        )
        send("f-unsigned")
        send("f-nosig", producer="watcher")
        # The watcher's name with a key the matcher does not know.
        stranger = Ed25519PrivateKey.generate()
        send(
            "f-stranger", **signature_attributes("watcher", stranger, forged("f-stranger"), "alice")
        )
        # A genuine watcher signature, moved to another ordering key.
        moved = signature_attributes("watcher", keys()["watcher"], forged("f-moved"), "alice")
        send("f-moved", key="bob", **moved)
        raw.stop()

        refused = ["f-forbidden", "f-unsigned", "f-stranger", "f-moved", "f-nosig"]
        letters: list[bytes] = []

        def all_dead_lettered() -> bool:
            letters.extend(take_dead_letters(ps))
            return len(letters) >= len(refused)

        wait_for(all_dead_lettered, 60, "the forged dead-lettered")
        # Still serving: a genuine command after them is applied.
        watcher.publish(Deposit(id="dep-2", user="bob", asset="ETH", amount=ETH, ref="r2"), "bob")
        wait_for(lambda: in_oplog(cfg, ["dep-2"]) == 1, 30, "the next deposit applied")

    assert in_oplog(cfg, refused) == 0
    assert balances(cfg, "alice") == before
    letters.extend(take_dead_letters(ps))
    assert sorted(letters) == sorted(forged(cid) for cid in refused)
    events = [r for r in caplog.records if r.getMessage() == "security: command refused"]
    reasons = sorted(str(getattr(r, "reason", "")) for r in events)
    assert reasons == sorted(
        ["forbidden_command", "unsigned", "unsigned", "bad_signature", "bad_signature"]
    )
    assert {getattr(r, "command_id", None) for r in events} == set(refused)


class _Unavailable(grpc.RpcError):  # type: ignore[misc]
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


def test_a_single_publish_is_signed_applied_and_retried_when_its_call_fails(
    matcher_cfg: MatcherConfig,
) -> None:
    """An API request's publish (``publish_one``: raw protobuf on the client's channel) is
    signed and applied; a failed call is sent again through the generated client, and the
    command applied once."""
    cfg = matcher_cfg
    ps = cfg.pubsub
    with running(cfg):
        publish(ps, market_setup())
        watcher = CommandPublisher(ps, Signer({"watcher": keys()["watcher"]}))
        first = Deposit(id="dep-one-1", user="carol", asset="ETH", amount=ETH, ref="one-1")
        assert watcher.publish_one(first, "carol")
        failed: list[str] = []

        def fails(*_args: object, **_kwargs: object) -> object:
            failed.append("call")
            raise _Unavailable()

        watcher._publish_rpc = fails  # the emulator refusing the first call
        second = Deposit(id="dep-one-2", user="carol", asset="ETH", amount=ETH, ref="one-2")
        assert watcher.publish_one(second, "carol")
        assert failed == ["call"]
        wait_for(lambda: in_oplog(cfg, ["dep-one-1", "dep-one-2"]) == 2, 30, "both applied")
        assert balances(cfg, "carol") == [["ETH", 2 * ETH, 0]]
