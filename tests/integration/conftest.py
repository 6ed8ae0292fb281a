"""Real local services for integration tests: one stack per test session (started lazily,
on free ports), a fresh migrated database, fresh Pub/Sub names and an empty Firestore per test."""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import redis
from google.cloud import firestore
from msgspec.structs import replace

from infra.services import Stack, StackConfig
from migrations.migrate import migrate
from shared.config import MatcherConfig, PostgresConfig, PubSubConfig
from shared.db import connect
from shared.pubsub import ensure_topics

TEMPLATE_DB = "exchange_template"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    s = Stack(StackConfig.with_free_ports())
    s.start(["pubsub", "firestore", "postgres", "redis"])
    os.environ.update(s.env())
    admin = connect(PostgresConfig.load())
    admin.run(f"CREATE DATABASE {TEMPLATE_DB}")
    admin.close()
    template = connect(replace(PostgresConfig.load(), database=TEMPLATE_DB))
    migrate(template)
    template.close()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def pg(stack: Stack) -> Iterator[PostgresConfig]:
    """A fresh, migrated database of its own."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = connect(PostgresConfig.load())
    admin.run(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield replace(PostgresConfig.load(), database=name)
    admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def redis_db(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def firestore_db(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[firestore.Client]:
    """An empty Firestore of this test's own: the emulator keeps projects apart, so the test
    gets a fresh project id, and GOOGLE_CLOUD_PROJECT names it while the test runs. Its
    documents are deleted afterwards (the emulator's DELETE documents endpoint)."""
    project = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    client = firestore.Client(project=project)
    yield client
    client.close()  # type: ignore[no-untyped-call]
    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10):
        pass


@pytest.fixture
def pubsub(stack: Stack) -> PubSubConfig:
    """Topic and subscription names of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    cfg = PubSubConfig(
        project=os.environ["GOOGLE_CLOUD_PROJECT"],
        commands_topic=f"commands-{suffix}",
        commands_subscription=f"commands-matcher-{suffix}",
        events_topic=f"events-{suffix}",
        dead_letter_topic=f"commands-dl-{suffix}",
        max_delivery_attempts=5,
    )
    ensure_topics(cfg)
    return cfg


@pytest.fixture
def matcher_cfg(pg: PostgresConfig, pubsub: PubSubConfig, redis_db: redis.Redis) -> MatcherConfig:
    return MatcherConfig(
        postgres=pg, pubsub=pubsub, redis_url=os.environ["REDIS_URL"], port=0,
        batch_max=1000, batch_wait_ms=5, snapshot_every=0, snapshot_seconds=3600.0,
        reply_ttl_s=600, depth_levels=20,
    )  # fmt: skip
