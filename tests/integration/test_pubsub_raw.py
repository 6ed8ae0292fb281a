"""The matcher's raw Pub/Sub calls (matcher_service.pubsub_raw) against the emulator: they
publish, pull, lease and acknowledge as the generated client does, and a raw call that fails
is made once more through the generated client rather than lost (decision 0036)."""

from __future__ import annotations

import time
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]

from matcher_service.pubsub_raw import PubsubMessage, Subscription, Topic
from shared.config import PubSubConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class _Unavailable(grpc.RpcError):  # type: ignore[misc]
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


def _fail(*_: Any, **__: Any) -> Any:
    raise _Unavailable()


def _clients(ps: PubSubConfig) -> tuple[Topic, Subscription]:
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = Topic(publisher, publisher.topic_path(ps.project, ps.commands_topic))
    sub = Subscription(
        subscriber, subscriber.subscription_path(ps.project, ps.commands_subscription)
    )
    return topic, sub


def _pull_all(sub: Subscription, n: int, within: float = 30.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + within
    while len(got) < n and time.monotonic() < deadline:
        got += sub.pull(100, timeout=1.0)
    return got


def _messages() -> list[Any]:
    return [
        PubsubMessage(data=f"m{i}".encode(), ordering_key=f"k{i}", attributes={"a": str(i)})
        for i in range(3)
    ]


def _check_round_trip(topic: Topic, sub: Subscription) -> None:
    ids = topic.publish(_messages(), timeout=10)
    assert len(ids) == 3
    got = _pull_all(sub, 3)
    assert sorted(m.message.message_id for m in got) == sorted(ids)
    assert sorted(
        (m.message.data, m.message.ordering_key, dict(m.message.attributes)) for m in got
    ) == [(f"m{i}".encode(), f"k{i}", {"a": str(i)}) for i in range(3)]
    # Handed back at once (deadline 0): Pub/Sub delivers them again.
    sub.modify_ack_deadline([m.ack_id for m in got], 0)
    again = _pull_all(sub, 3)
    assert sorted(m.message.message_id for m in again) == sorted(ids)
    # Acknowledged: never again, not even after the subscription's deadline (10 s) would pass.
    sub.acknowledge([m.ack_id for m in again])
    sub.modify_ack_deadline([m.ack_id for m in again], 0)  # no effect on acknowledged ones
    assert sub.pull(100, timeout=2.0) == []


def test_raw_calls_publish_pull_lease_and_acknowledge(pubsub: PubSubConfig) -> None:
    topic, sub = _clients(pubsub)
    assert sub.pull(100, timeout=0.5) == []  # nothing there: the deadline passes, no error
    _check_round_trip(topic, sub)


def test_a_failed_raw_call_is_made_again_through_the_generated_client(
    pubsub: PubSubConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, sub = _clients(pubsub)
    monkeypatch.setattr(topic, "_publish", _fail)
    for name in ("_pull", "_ack", "_modack"):
        monkeypatch.setattr(sub, name, _fail)
    _check_round_trip(topic, sub)
