"""The matcher's Pub/Sub calls of every batch, as raw protobuf on the Pub/Sub clients' own
channels: Pull, Acknowledge and ModifyAckDeadline on its commands subscription
(``Subscription``), Publish on its events topic (``Topic``).

At the rates an exchange sees most of the time a batch holds a few commands, and these calls
are most of the matcher's Pub/Sub cost per batch. Through the generated client each one also
builds proto-plus wrappers, a retry and a timeout object, its routing header and a logging
interceptor's work: about as much CPU as the gRPC call itself (docs/benchmarks.md). Here the
requests are plain protobuf messages sent with callables made once, on the generated client's
channel (its credentials and endpoint; the emulator's locally), with the subscription's
routing header computed once (the same as the API's publish: decision 0030).

Retries stay those of the generated client: a raw call that fails with anything but the end
of its own deadline is made once more through the generated client, with its retry policy for
that method (transient errors, backing off) in what is left of the time allowed
(docs/decisions/0036).
"""

from __future__ import annotations

import time
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.api_core import exceptions as gexc
from google.api_core import gapic_v1
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]
from google.pubsub_v1.services.publisher import PublisherClient as GapicPublisher
from google.pubsub_v1.types import pubsub as pubsub_types

_SERVICE = "/google.pubsub.v1.Subscriber/"
_PUBLISH = "/google.pubsub.v1.Publisher/Publish"
_PublishRequest = pubsub_types.PublishRequest.pb()
_PublishResponse = pubsub_types.PublishResponse.pb()
PubsubMessage = pubsub_types.PubsubMessage.pb()
"""The raw protobuf message type, for ``Topic.publish``."""
_PullRequest = pubsub_types.PullRequest.pb()
_PullResponse = pubsub_types.PullResponse.pb()
_AcknowledgeRequest = pubsub_types.AcknowledgeRequest.pb()
_ModifyAckDeadlineRequest = pubsub_types.ModifyAckDeadlineRequest.pb()

# Acknowledge and ModifyAckDeadline answer an empty message: left as bytes, not parsed.
ACK_TIMEOUT_S = 60.0
"""Acknowledge and ModifyAckDeadline: the generated client's default timeout."""
ACK_IDS_MAX = 1000
"""The most ack ids one Acknowledge or ModifyAckDeadline call carries."""


class Subscription:
    """Pull, acknowledge and lease the messages of one subscription (raw protobuf)."""

    def __init__(self, client: pubsub_v1.SubscriberClient, path: str) -> None:
        self.client = client  # the generated client: its channel, and the retries
        self.path = path
        channel = client.transport.grpc_channel
        self._pull = channel.unary_unary(
            _SERVICE + "Pull",
            request_serializer=_PullRequest.SerializeToString,
            response_deserializer=_PullResponse.FromString,
        )
        self._ack = channel.unary_unary(
            _SERVICE + "Acknowledge",
            request_serializer=_AcknowledgeRequest.SerializeToString,
        )
        self._modack = channel.unary_unary(
            _SERVICE + "ModifyAckDeadline",
            request_serializer=_ModifyAckDeadlineRequest.SerializeToString,
        )
        routing = (("subscription", path),)
        self._metadata = (gapic_v1.routing_header.to_grpc_metadata(routing),)  # type: ignore[no-untyped-call]

    def pull(self, max_messages: int, timeout: float) -> list[Any]:
        """Up to ``max_messages`` messages (raw ``ReceivedMessage``s): none when ``timeout``
        passes first; Pub/Sub's error (``google.api_core.exceptions``) when the generated
        client's retries of it failed too."""
        deadline = time.monotonic() + timeout
        try:
            response = self._pull(
                _PullRequest(subscription=self.path, max_messages=max_messages),
                timeout=timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return []
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            try:
                retried = self.client.pull(
                    request={"subscription": self.path, "max_messages": max_messages},
                    timeout=left,
                )
            except gexc.DeadlineExceeded:
                return []
            return list(pubsub_types.PullResponse.pb(retried).received_messages)
        return list(response.received_messages)

    def acknowledge(self, ack_ids: list[str]) -> None:
        """Acknowledge ``ack_ids``; the generated client's error when its retries failed."""
        for i in range(0, len(ack_ids), ACK_IDS_MAX):
            part = ack_ids[i : i + ACK_IDS_MAX]
            try:
                self._ack(
                    _AcknowledgeRequest(subscription=self.path, ack_ids=part),
                    timeout=ACK_TIMEOUT_S,
                    metadata=self._metadata,
                )
            except grpc.RpcError:
                self.client.acknowledge(request={"subscription": self.path, "ack_ids": part})

    def modify_ack_deadline(self, ack_ids: list[str], seconds: int) -> None:
        """Lease ``ack_ids`` for ``seconds`` more (0: hand them back now)."""
        for i in range(0, len(ack_ids), ACK_IDS_MAX):
            part = ack_ids[i : i + ACK_IDS_MAX]
            try:
                self._modack(
                    _ModifyAckDeadlineRequest(
                        subscription=self.path, ack_ids=part, ack_deadline_seconds=seconds
                    ),
                    timeout=ACK_TIMEOUT_S,
                    metadata=self._metadata,
                )
            except grpc.RpcError:
                self.client.modify_ack_deadline(
                    request={
                        "subscription": self.path,
                        "ack_ids": part,
                        "ack_deadline_seconds": seconds,
                    }
                )


class Topic:
    """Publish messages on one topic (raw protobuf)."""

    def __init__(self, client: pubsub_v1.PublisherClient, path: str) -> None:
        self.client = client  # the generated client: its channel, and the retries
        self.path = path
        self._publish = client.transport.grpc_channel.unary_unary(
            _PUBLISH,
            request_serializer=_PublishRequest.SerializeToString,
            response_deserializer=_PublishResponse.FromString,
        )
        routing = (("topic", path),)
        self._metadata = (gapic_v1.routing_header.to_grpc_metadata(routing),)  # type: ignore[no-untyped-call]

    def publish(self, messages: list[Any], timeout: float) -> list[str]:
        """Publish ``messages`` (``PubsubMessage``) in one call; their message ids once
        Pub/Sub has them. A failed call is sent again through the generated client, with its
        retry of transient errors: the events' consumers take a message by its sequence
        numbers, so a second copy changes nothing."""
        try:
            response = self._publish(
                _PublishRequest(topic=self.path, messages=messages),
                timeout=timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError:
            retried = GapicPublisher.publish(  # the generated client's own unary call
                self.client,
                topic=self.path,
                messages=[pubsub_types.PubsubMessage.wrap(m) for m in messages],
                timeout=timeout,
            )
            return list(retried.message_ids)
        return list(response.message_ids)
