"""The local stack launcher against the real services: start, use each one, stop, no leftovers."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
import uuid

import pytest

from infra.processes import proc_alive, process_tree
from infra.services import Stack, StackConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _port_closed(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except OSError:
        return True


def _check_pubsub(project: str) -> None:
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    suffix = uuid.uuid4().hex[:8]
    publisher = PublisherClient()
    topic = publisher.topic_path(project, f"stack-test-{suffix}")
    publisher.create_topic(name=topic)
    with SubscriberClient() as subscriber:
        subscription = subscriber.subscription_path(project, f"stack-test-sub-{suffix}")
        subscriber.create_subscription(name=subscription, topic=topic)
        publisher.publish(topic, b"hello", kind="test").result(timeout=10)
        received: list[bytes] = []
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            response = subscriber.pull(
                subscription=subscription, max_messages=10, timeout=5, return_immediately=False
            )
            received += [m.message.data for m in response.received_messages]
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
    publisher.stop()
    assert received == [b"hello"]


def _check_firestore(project: str) -> None:
    from google.cloud import firestore

    client = firestore.Client(project=project)
    try:
        doc = client.collection("stack_test").document(uuid.uuid4().hex)
        doc.set({"n": 42, "s": "ok"})
        assert doc.get().to_dict() == {"n": 42, "s": "ok"}
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _check_postgres(stack: Stack) -> None:
    import pg8000.native

    env = stack.env()
    con = pg8000.native.Connection(
        user=env["PGUSER"], host=env["PGHOST"], port=int(env["PGPORT"]), database=env["PGDATABASE"]
    )
    try:
        assert con.run("SELECT 1") == [[1]]
        assert con.run("SHOW fsync") == [["off"]]
    finally:
        con.close()


def _check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        key = f"stack-test-{uuid.uuid4().hex}"
        assert client.set(key, "v1")
        assert client.get(key) == b"v1"
    finally:
        client.close()


def _check_anvil(url: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as resp:
        assert int(json.loads(resp.read())["result"], 16) == 31337


def test_local_stack_starts_serves_and_stops_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    config = StackConfig.with_free_ports(project=f"stack-test-{uuid.uuid4().hex[:6]}")
    stack = Stack(config)
    # Processes of other stacks in this test session (the shared fixture's) are not ours.
    before = process_tree(os.getpid())
    t0 = time.monotonic()
    with stack:
        started = time.monotonic() - t0
        print(f"stack up in {started:.1f}s, per service: {stack.ready_seconds()}")
        assert stack.running == ["pubsub", "firestore", "postgres", "redis", "anvil"]
        state_dir = stack.state_dir
        env = stack.env()
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert env["PUBSUB_EMULATOR_HOST"] == f"127.0.0.1:{config.pubsub_port}"
        assert env["FIRESTORE_EMULATOR_HOST"] == f"127.0.0.1:{config.firestore_port}"

        _check_anvil(env["ETH_RPC_URL"])
        _check_redis(env["REDIS_URL"])
        _check_postgres(stack)
        _check_firestore(config.project)
        _check_pubsub(config.project)

        # Everything we (the test process) spawned, down to gcloud's java and postgres backends.
        spawned = {p for p in process_tree(os.getpid()) - before if p[0] != os.getpid()}
        service_procs = stack.processes()
        assert len(service_procs) >= 8  # 3 per emulator, postmaster + workers, redis, anvil

    for name in ("pubsub", "firestore", "postgres", "redis", "anvil"):
        port = config.port(name)
        assert _port_closed(config.host, port), f"{name} still listening on {port}"
    leftovers = [p for p in spawned | service_procs if proc_alive(p)]
    assert leftovers == [], f"processes left behind: {leftovers}"
    assert not state_dir.exists(), "temp state dir should be removed on stop"
    assert stack.running == []
