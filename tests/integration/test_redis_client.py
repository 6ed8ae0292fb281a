"""The API functions' Redis batches (api.redis_client) against a real Redis: the same results
as redis-py's pipeline, and a connection never reused with a reply left unread."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from api.redis_client import ApiRedis, batch_of, connect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def client(redis_db: redis.Redis) -> Iterator[ApiRedis]:
    c = connect(os.environ["REDIS_URL"])
    yield c
    c.close()


def _queue_all(pipe: Any) -> None:
    pipe.set("k", b"v", ex=60)
    pipe.set("k", b"w", nx=True)
    pipe.get("k")
    pipe.get("missing")
    pipe.hset("h", "f", b"1")
    pipe.hget("h", "f")
    pipe.hget("h", "nope")
    pipe.hgetall("h")
    pipe.hgetall("no-hash")
    pipe.hexists("h", "f")
    pipe.hexists("h", "nope")
    pipe.eval("return {KEYS[1], ARGV[1], 7}", 1, "a", "b")
    pipe.blpop(["no-list"], 0.01)
    pipe.delete("k", "h")


def test_a_batch_answers_as_a_pipeline_does(client: ApiRedis, redis_db: redis.Redis) -> None:
    batch = client.batch()
    _queue_all(batch)
    got = batch.execute()
    pipe = redis_db.pipeline(transaction=False)
    _queue_all(pipe)
    assert got == pipe.execute()
    redis_db.rpush("list", b"x")
    assert client.batch().blpop(["list"], 1).execute() == [(b"list", b"x")]
    assert client.batch().execute() == []
    # A plain client gets a pipeline with the same methods.
    assert not isinstance(batch_of(redis_db), type(batch))


def test_an_error_reply_drops_the_connection_and_the_next_batch_reads_its_own(
    client: ApiRedis, redis_db: redis.Redis
) -> None:
    redis_db.set("text", b"t")
    redis_db.set("after", b"a")
    with pytest.raises(redis.ResponseError):
        # The error comes first: the replies after it are never read from that connection.
        client.batch().hgetall("text").get("after").get("after").execute()
    assert client.batch().get("text").execute() == [b"t"]


def test_a_connection_gone_while_idle_is_replaced(client: ApiRedis, redis_db: redis.Redis) -> None:
    redis_db.set("k", b"v")
    assert client.batch().get("k").execute() == [b"v"]
    killed = redis_db.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert client.batch().get("k").execute() == [b"v"]


def test_each_thread_has_its_own_connection(client: ApiRedis, redis_db: redis.Redis) -> None:
    before = len(redis_db.client_list())
    seen: list[object] = []

    def use() -> None:
        client.batch().get("k").execute()
        seen.append(client.thread_connection())

    threads = [threading.Thread(target=use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    use()
    assert len({id(c) for c in seen}) == 4
    # Each is open on the server until the client is closed.
    assert len(redis_db.client_list()) == before + 4
    client.close()
    assert len(redis_db.client_list()) == before
