"""Pub/Sub topics and the commands publisher every producer shares.

Commands are published with the user as ordering key (per-user FIFO). A publish that fails
with ordering on pauses that key in the client until ``resume_publish``: ``publish_command``
resumes it before raising, so the next attempt can go through.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

import grpc  # type: ignore[import-untyped]
from google.api_core import exceptions, gapic_v1
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]
from google.pubsub_v1.services.publisher import PublisherClient as GapicPublisher
from google.pubsub_v1.types import pubsub as pubsub_types

from shared.config import PubSubConfig
from shared.messages import AnyCommand, encode
from shared.producers import Signer

log = logging.getLogger(__name__)

_PUBLISH_METHOD = "/google.pubsub.v1.Publisher/Publish"
_PublishRequest = pubsub_types.PublishRequest.pb()
_PubsubMessage = pubsub_types.PubsubMessage.pb()
_PublishResponse = pubsub_types.PublishResponse.pb()

COMMANDS_ACK_DEADLINE_S = 10
"""The matcher's lease on the commands it pulled (the least Pub/Sub allows): it renews the
lease while it holds them, so should it die its successor has them, and every later command
of their users, within seconds (docs/matcher.md). Terraform sets the same."""

# What a dead letter carries besides the command's own attributes (its producer's signature):
# the matcher sets these when it dead-letters a command itself; Pub/Sub's dead-letter policy
# adds DELIVERY_COUNT_ATTR instead. shared/dead_letters.py reads them.
REASON_ATTR: Final = "dead_letter_reason"
"""A stable code: ``undecodable`` or a refusal of shared.producers (``unsigned``, ...)."""
ERROR_ATTR: Final = "error"
"""Why, in words."""
ORDERING_KEY_ATTR: Final = "ordering_key"
"""The command's ordering key (the signature covers it; a re-drive needs it)."""
SOURCE_MESSAGE_ATTR: Final = "source_message_id"
"""Its message id on the commands topic."""
DELIVERY_COUNT_ATTR: Final = "CloudPubSubDeadLetterSourceDeliveryCount"
"""Set by Pub/Sub on a message it dead-lettered after that many deliveries."""


def hold_subscription(cfg: PubSubConfig) -> str:
    """The subscription that keeps the dead letters for an operator (Terraform: the same)."""
    return f"{cfg.dead_letter_topic}-hold"


def ensure_topics(cfg: PubSubConfig) -> None:
    """Create the topics and the matcher's subscription if missing (idempotent). In the cloud
    Terraform owns them; locally the stack calls this at start."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    project = cfg.project
    for topic in (cfg.commands_topic, cfg.events_topic, cfg.dead_letter_topic):
        with contextlib.suppress(exceptions.AlreadyExists):
            publisher.create_topic(name=publisher.topic_path(project, topic))
    subscriptions = {
        cfg.commands_subscription: {
            "topic": publisher.topic_path(project, cfg.commands_topic),
            "enable_message_ordering": True,
            "ack_deadline_seconds": COMMANDS_ACK_DEADLINE_S,
            "dead_letter_policy": {
                "dead_letter_topic": publisher.topic_path(project, cfg.dead_letter_topic),
                "max_delivery_attempts": cfg.max_delivery_attempts,
            },
        },
        hold_subscription(cfg): {
            # Keeps dead letters for an operator to inspect.
            "topic": publisher.topic_path(project, cfg.dead_letter_topic),
        },
    }
    for name, spec in subscriptions.items():
        path = subscriber.subscription_path(project, name)
        try:
            subscriber.create_subscription(request={"name": path, **spec})
        except exceptions.AlreadyExists:
            if "ack_deadline_seconds" in spec:  # made by an older version: 60 s
                subscriber.update_subscription(
                    request={
                        "subscription": {
                            "name": path,
                            "ack_deadline_seconds": spec["ack_deadline_seconds"],
                        },
                        "update_mask": {"paths": ["ack_deadline_seconds"]},
                    }
                )


class CommandPublisher:
    """Publishes commands signed as their producer (shared.producers): the keys come from
    ``COMMAND_KEYS*`` unless a ``signer`` is given."""

    def __init__(self, cfg: PubSubConfig, signer: Signer | None = None) -> None:
        self._signer = signer if signer is not None else Signer.load()
        self._client = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self._topic = self._client.topic_path(cfg.project, cfg.commands_topic)
        # Publish on the client's own channel (its credentials) with raw protobuf messages:
        # the generated client's wrappers (retry and timeout objects, proto-plus copies, a
        # logging interceptor) cost as much CPU as the call itself (docs/benchmarks.md).
        self._publish_rpc = self._client.transport.grpc_channel.unary_unary(
            _PUBLISH_METHOD,
            request_serializer=_PublishRequest.SerializeToString,
            response_deserializer=_PublishResponse.FromString,
        )
        topic = (("topic", self._topic),)
        self._routing = (gapic_v1.routing_header.to_grpc_metadata(topic),)  # type: ignore[no-untyped-call]

    def _send(
        self, data: bytes, attributes: dict[str, str], ordering_key: str
    ) -> pubsub_v1.publisher.futures.Future:
        return self._client.publish(self._topic, data, ordering_key=ordering_key, **attributes)

    def publish(self, cmd: AnyCommand, ordering_key: str, timeout: float = 10.0) -> str:
        """Publish and wait until Pub/Sub has it; returns the message id."""
        future = self.publish_async(cmd, ordering_key)
        try:
            return str(future.result(timeout=timeout))
        except Exception:
            self._client.resume_publish(self._topic, ordering_key)
            raise

    def publish_one(self, cmd: AnyCommand, ordering_key: str, timeout: float = 10.0) -> str:
        """``publish`` for a caller that sends one command and waits for it (an API request):
        one unary Publish call in the calling thread, not the client's batching publisher,
        which would add a commit thread, a future and its batch delay per message
        (docs/decisions/0016). The order of a user's commands does not rest on the publisher
        (``user_seq``, decision 0006), and nothing is paused on a failure."""
        data = encode(cmd)
        attributes = self._signer.attributes(type(cmd), data, ordering_key)
        request = _PublishRequest(
            topic=self._topic,
            messages=[_PubsubMessage(data=data, ordering_key=ordering_key, attributes=attributes)],
        )
        try:
            response = self._publish_rpc(request, timeout=timeout, metadata=self._routing)
        except grpc.RpcError as exc:
            # Once more through the generated client, with its retry of transient errors (a
            # second copy is harmless: the matcher applies a command id once).
            log.warning("publish of %s failed (%s); retrying", cmd.id, exc.code())
            message = pubsub_v1.types.PubsubMessage(
                data=data, ordering_key=ordering_key, attributes=attributes
            )
            retried = GapicPublisher.publish(
                self._client, topic=self._topic, messages=[message], timeout=timeout
            )
            return str(retried.message_ids[0])
        return str(response.message_ids[0])

    def publish_signed(
        self, data: bytes, attributes: dict[str, str], ordering_key: str, timeout: float = 10.0
    ) -> str:
        """Publish a message already signed by its producer, as it is (a dead letter
        re-driven: its producer's signature, not ours); one unary call. The message id."""
        message = pubsub_v1.types.PubsubMessage(
            data=data, ordering_key=ordering_key, attributes=attributes
        )
        response = GapicPublisher.publish(
            self._client, topic=self._topic, messages=[message], timeout=timeout
        )
        return str(response.message_ids[0])

    def publish_raw(self, data: bytes, ordering_key: str) -> pubsub_v1.publisher.futures.Future:
        """Publish a command already encoded (the local outbox's copy)."""
        return self._send(data, self._signer.attributes_of(data, ordering_key), ordering_key)

    def publish_async(
        self, cmd: AnyCommand, ordering_key: str
    ) -> pubsub_v1.publisher.futures.Future:
        data = encode(cmd)
        return self._send(
            data, self._signer.attributes(type(cmd), data, ordering_key), ordering_key
        )

    def resume(self, ordering_key: str) -> None:
        self._client.resume_publish(self._topic, ordering_key)
