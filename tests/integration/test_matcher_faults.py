"""Fault tests of the matcher against the real Pub/Sub emulator, Postgres and Redis: kill -9
mid-stream, a Postgres outage, two matchers at once, redelivery after a failed batch, a
Redis that refuses writes.

Each test ends with the same verdict (``check_exactly_once_and_consistent``): every published
command is in the oplog exactly once, the seq is gapless, and Postgres agrees with a clean
replay of its oplog (state hash, snapshots, balances, fees, open orders, engine invariants).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]
from msgspec.structs import replace

from infra.services import Stack
from matcher_service.engine import Engine
from matcher_service.persistence import BatchWrites, Store
from shared.config import MatcherConfig, PostgresConfig
from shared.db import connect
from shared.messages import AnyCommand, Deposit, PlaceOrder, Reason, encode
from shared.pubsub import REASON_ATTR
from shared.redis_keys import depth_key, live_depth_channel
from tests.integration.conftest import TEMPLATE_DB
from tests.integration.matcher_helpers import (
    ETH,
    USDT,
    Stream,
    check_exactly_once_and_consistent,
    dead_letters,
    funded,
    market_setup,
    matcher_processes,
    postgres_down,
    publish,
    publish_many,
    running,
    set_ack_deadline,
    wait_applied,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

log = logging.getLogger(__name__)

ACK_DEADLINE_S = 10
"""The subscription's ack deadline in these tests (the least Pub/Sub allows): what a killed
matcher had pulled comes back after it."""


@pytest.fixture
def pg(stack: Stack) -> Iterator[PostgresConfig]:
    """A fresh, migrated database (as conftest's ``pg``), dropped over a new connection: the
    tests here restart Postgres, which cuts every connection opened before."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = connect(PostgresConfig.load())
    admin.run(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    admin.close()
    yield replace(PostgresConfig.load(), database=name)
    admin = connect(PostgresConfig.load())
    admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def _setup(cfg: MatcherConfig, users: list[str]) -> list[str]:
    """The market, then funded users, applied before the stream starts."""
    market, deposits = market_setup(), funded(users)
    publish(cfg.pubsub, market)
    wait_applied(cfg, [c.id for c in market], 30)
    publish_many(cfg.pubsub, deposits)
    ids = [c.id for c in (*market, *deposits)]
    wait_applied(cfg, ids, 30)
    return ids


def _lease(cfg: MatcherConfig) -> tuple[int, str]:
    db = connect(cfg.postgres)
    try:
        epoch, holder = db.run("SELECT epoch, holder FROM matcher_lease WHERE id = 1")[0]
        return int(epoch), str(holder)
    finally:
        db.close()


def _oplog_count(cfg: MatcherConfig) -> int:
    db = connect(cfg.postgres)
    try:
        return int(db.run("SELECT count(*) FROM oplog")[0][0])
    finally:
        db.close()


# ------------------------------------------------------------ 1. kill -9


def test_kill_9_mid_stream_loses_nothing_and_applies_nothing_twice(
    matcher_cfg: MatcherConfig, tmp_path: Path
) -> None:
    cfg = replace(matcher_cfg, batch_max=200)
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")  # shown with a failure: the stream and kill times replay
    rng = random.Random(seed)
    set_ack_deadline(cfg.pubsub, ACK_DEADLINE_S)
    users = [f"k{i}" for i in range(300)]  # keys a kill leaves blocked hold up few others
    kills: list[tuple[str, int]] = []  # (when, oplog rows at the kill)
    with matcher_processes(cfg, tmp_path) as start:
        matcher = start()
        matcher.wait_ready()
        setup_ids = _setup(cfg, users)
        stream = Stream(cfg.pubsub, users, seed, rate=250.0).start()
        try:
            for i in range(5):
                if i == 2:  # once while it recovers: as soon as its health server answers
                    wait_for(matcher.answers, 30, "the health server")
                    time.sleep(rng.uniform(0.0, 0.1))
                    when = "recovering"
                else:  # mid-stream, between or inside batches
                    matcher.wait_ready()
                    time.sleep(rng.uniform(0.2, 1.5))
                    when = "consuming"
                kills.append((when, _oplog_count(cfg)))
                matcher.kill()
                matcher = start()
            matcher.wait_ready()
            stream.wait_count(2500)
        finally:
            published = setup_ids + stream.stop()
        wait_applied(cfg, published, ACK_DEADLINE_S + 50)
        matcher.stop()
        assert matcher.proc.returncode == 0, matcher.tail()
    verdict = check_exactly_once_and_consistent(cfg, published)
    log.info("seed %d kills %s verdict %s", seed, kills, verdict)
    assert kills[-1][1] > len(setup_ids), "the kills came after the stream had started"
    assert verdict.snapshots >= 3 and verdict.trades > 100
    assert dead_letters(cfg.pubsub) == []


# ------------------------------------------------------------ 2. Postgres outage

OUTAGE_S = 9.0
"""Longer than a retry schedule of pull, fail, nack (0.5, 1, 2, 4 s apart) takes to spend
the five delivery attempts the fixture's dead-letter policy allows."""


def test_postgres_outage_loses_nothing_and_acks_nothing_early(
    stack: Stack, matcher_cfg: MatcherConfig, tmp_path: Path
) -> None:
    cfg = matcher_cfg
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")  # shown with a failure: the stream and kill times replay
    users = [f"p{i}" for i in range(16)]
    with matcher_processes(cfg, tmp_path) as start:
        matcher = start()
        matcher.wait_ready()
        setup_ids = _setup(cfg, users)
        stream = Stream(cfg.pubsub, users, seed, rate=200.0).start()
        try:
            stream.wait_count(600)
            with postgres_down(stack):
                down_at = time.monotonic()
                wait_for(lambda: matcher.readyz() == 503, 10, "readyz 503 while Postgres is down")
                # A quiet spell: few enough messages that every pull would get them all.
                stream.rate = 10.0
                wait_for(lambda: time.monotonic() - down_at >= OUTAGE_S, OUTAGE_S + 1, "outage")
                assert matcher.readyz() == 503 and matcher.alive()
                up_at = time.monotonic()
            stream.rate = 200.0
            matcher.wait_ready(30)
            stream.wait_count(stream.count() + 400)
        finally:
            published = setup_ids + stream.stop()
        during = [i for c in stream.chunks if c.started >= down_at and c.confirmed <= up_at
                  for i in c.ids]  # fmt: skip
        assert len(during) >= 50, "the stream went on during the outage"
        wait_applied(cfg, published, 60)
        assert matcher.alive(), "the matcher rode out the outage in the same process"
        matcher.stop()
        assert matcher.proc.returncode == 0, matcher.tail()
    # Everything published while Postgres was down is in the oplog: none of it was acked
    # before it was durable (nothing would redeliver it) nor dead-lettered.
    verdict = check_exactly_once_and_consistent(cfg, published)
    log.info("seed %d verdict %s, %d published during the outage", seed, verdict, len(during))
    assert dead_letters(cfg.pubsub) == []


# ------------------------------------------------------------ 3. two matchers


def test_two_matchers_one_applies_the_standby_takes_over(
    matcher_cfg: MatcherConfig, tmp_path: Path
) -> None:
    cfg = matcher_cfg
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")  # shown with a failure: the stream and kill times replay
    set_ack_deadline(cfg.pubsub, ACK_DEADLINE_S)
    users = [f"t{i}" for i in range(200)]
    with matcher_processes(cfg, tmp_path) as start:
        pair = [start(), start()]

        def one_active() -> bool:
            states = sorted((m.readyz() or 0, m.answers()) for m in pair)
            return states == [(200, True), (503, True)]

        wait_for(one_active, 30, "one matcher ready, the other answering 503")
        active = next(m for m in pair if m.readyz() == 200)
        standby = pair[1 - pair.index(active)]
        epoch, holder = _lease(cfg)
        assert holder == active.holder
        setup_ids = _setup(cfg, users)
        stream = Stream(cfg.pubsub, users, seed, rate=200.0).start()
        try:
            stream.wait_count(800)
            assert standby.readyz() == 503 and _lease(cfg) == (epoch, active.holder)
            assert '"lease taken"' not in standby.tail(1000), "the standby waited"
            before = _oplog_count(cfg)
            active.kill()
            standby.wait_ready(30)
            assert _lease(cfg) == (epoch + 1, standby.holder)
            stream.wait_count(stream.count() + 600)
        finally:
            published = setup_ids + stream.stop()
        wait_applied(cfg, published, ACK_DEADLINE_S + 50)
        assert _lease(cfg) == (epoch + 1, standby.holder)
        standby.stop()
        assert standby.proc.returncode == 0, standby.tail()
    verdict = check_exactly_once_and_consistent(cfg, published)
    log.info("seed %d: %d applied before the kill, verdict %s", seed, before, verdict)
    assert len(setup_ids) < before < len(published)
    assert dead_letters(cfg.pubsub) == []


# ------------------------------------------------------------ 4. redelivery keeps order

ZOE_SELLS = [
    # Both sell all of Zoe's ether: in publish order the first rests, the second is refused.
    PlaceOrder(id="zoe-sell-1", user="zoe", market="ETH-USDT", side="sell", price=3000 * USDT,
               amount=ETH),
    PlaceOrder(id="zoe-sell-2", user="zoe", market="ETH-USDT", side="sell", price=2500 * USDT,
               amount=ETH),
]  # fmt: skip
ZOE_DEPOSIT = Deposit(id="zoe-dep", user="zoe", asset="ETH", amount=ETH, ref="zoe-eth")


@pytest.mark.parametrize("fault", ["commit_fails", "ack_lost", "postgres_down"])
def test_a_failed_batch_does_not_reorder_a_users_commands(
    fault: str,
    stack: Stack,
    matcher_cfg: MatcherConfig,
    redis_db: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first sell's batch fails; the second sell is published while the first is still
    out with the matcher. Whatever Pub/Sub hands out next, the result is that of applying
    them in publish order: the first sell rests, the second is refused."""
    cfg = matcher_cfg
    sell1, sell2 = ZOE_SELLS
    with running(cfg) as matcher:
        setup_ids = _setup(cfg, ["zoe-buyer"])
        publish(cfg.pubsub, [ZOE_DEPOSIT])
        wait_applied(cfg, [ZOE_DEPOSIT.id], 30)
        if fault in ("commit_fails", "ack_lost"):
            entered, release, committed = threading.Event(), threading.Event(), threading.Event()
            real_write, real_ack = Store.write_prepared, matcher.commands.acknowledge

            def hold_then_fail(what: str) -> None:
                entered.set()
                release.wait(20)  # meanwhile the second sell is published
                raise ConnectionError(f"injected: {what}")

            def write_prepared(self: Store, epoch: int, writes: BatchWrites, *args: Any) -> None:
                first = any(c.id == sell1.id for c, _ in writes.batch) and not entered.is_set()
                if first and fault == "commit_fails":
                    hold_then_fail("the connection dropped before COMMIT")
                real_write(self, epoch, writes, *args)
                if first:
                    committed.set()

            def acknowledge(*args: Any, **kwargs: Any) -> Any:
                if committed.is_set() and not entered.is_set():
                    hold_then_fail("the batch is durable, its acknowledgement is lost")
                return real_ack(*args, **kwargs)

            monkeypatch.setattr(Store, "write_prepared", write_prepared)
            monkeypatch.setattr(matcher.commands, "acknowledge", acknowledge)
            publish(cfg.pubsub, [sell1])
            wait_for(entered.is_set, 30, "the first sell's batch failing")
            publish(cfg.pubsub, [sell2])  # while the first sell is out with the matcher
            release.set()
        else:
            with postgres_down(stack):
                publish(cfg.pubsub, [sell1])
                wait_for(lambda: not matcher.ready.is_set(), 30, "the first sell's batch failed")
                publish(cfg.pubsub, [sell2])
                time.sleep(1.0)  # Postgres stays away a little longer: the matcher waits
        wait_applied(cfg, [sell1.id, sell2.id], 60)
        wait_for(lambda: redis_db.get(f"cmd:{sell2.id}") is not None, 10, "reply of sell 2")
        engine_balances = matcher.engine.balances()
        engine_book = matcher.engine.book("ETH-USDT")

    published = [*setup_ids, ZOE_DEPOSIT.id, sell1.id, sell2.id]
    check_exactly_once_and_consistent(cfg, published)
    db = connect(cfg.postgres)
    try:
        log_rows = db.run("SELECT command_id, ok, reason FROM oplog ORDER BY seq")
        orders = db.run(
            "SELECT user_id, price::text, amount::text, status FROM orders ORDER BY order_id"
        )
    finally:
        db.close()
    assert log_rows[-3:] == [
        [ZOE_DEPOSIT.id, True, None],
        [sell1.id, True, None],
        [sell2.id, False, Reason.INSUFFICIENT_FUNDS],
    ]
    assert orders == [["zoe", str(3000 * USDT), str(ETH), "open"]]
    reply = orjson.loads(redis_db.get(f"cmd:{sell2.id}"))  # type: ignore[arg-type]
    assert (reply["ok"], reply["reason"]) == (False, Reason.INSUFFICIENT_FUNDS)

    # The same commands applied in publish order, with no fault at all.
    reference = Engine()
    commands: list[AnyCommand] = [*market_setup(), *funded(["zoe-buyer"]), ZOE_DEPOSIT, *ZOE_SELLS]
    for cmd in commands:
        reference.apply(cmd)
    assert engine_balances == reference.balances()
    assert engine_book == reference.book("ETH-USDT")
    assert reference.balance("zoe", "ETH") == (0, ETH)


# ------------------------------------------------------------ 4b. Redis refuses writes


def _depth_messages(sub: Any) -> list[dict[str, Any]]:
    out = []
    while (m := sub.get_message(timeout=0.2)) is not None:
        if m["type"] == "message":
            out.append(orjson.loads(m["data"]))
    return out


def test_a_redis_outage_loses_no_reply_and_no_depth_version(
    matcher_cfg: MatcherConfig, redis_db: redis.Redis
) -> None:
    """Redis refuses writes (out of memory) while a batch is published: the batch is durable
    but its market data and replies cannot be sent. Its messages are not acknowledged; once
    Redis takes writes again the matcher rebuilds the market data from Postgres, and the
    messages come back as duplicates and get their replies. The depth feed goes on from the
    last version it published, without a gap."""
    cfg = matcher_cfg
    sell1, _ = ZOE_SELLS
    market = "ETH-USDT"
    feed = redis_db.pubsub()  # type: ignore[no-untyped-call]
    feed.subscribe(live_depth_channel(market))
    policy = str(redis_db.config_get("maxmemory-policy")["maxmemory-policy"])
    with running(cfg) as matcher:
        setup_ids = _setup(cfg, ["zoe-buyer"])
        publish(cfg.pubsub, [ZOE_DEPOSIT])
        wait_applied(cfg, [ZOE_DEPOSIT.id], 30)
        before = orjson.loads(redis_db.get(depth_key(market)))["seq"]  # type: ignore[arg-type]
        redis_db.config_set("maxmemory-policy", "noeviction")
        redis_db.config_set("maxmemory", "1")  # every write is refused: OOM
        try:
            publish(cfg.pubsub, [sell1])
            wait_applied(cfg, [sell1.id], 30)  # durable
            wait_for(lambda: not matcher.ready.is_set(), 30, "the matcher saw Redis fail")
            time.sleep(1.0)  # it retries its rebuild meanwhile, and fails
            assert redis_db.get(f"cmd:{sell1.id}") is None
        finally:
            redis_db.config_set("maxmemory", "0")
            redis_db.config_set("maxmemory-policy", policy)
        wait_for(matcher.ready.is_set, 30, "the matcher rebuilt the market data")
        wait_for(lambda: redis_db.get(f"cmd:{sell1.id}") is not None, 30, "the sell's reply")
        deltas = _depth_messages(feed)
    feed.close()

    check_exactly_once_and_consistent(cfg, [*setup_ids, ZOE_DEPOSIT.id, sell1.id])
    reply = orjson.loads(redis_db.get(f"cmd:{sell1.id}"))  # type: ignore[arg-type]
    assert (reply["ok"], reply["reason"]) == (True, None)
    waiting = redis_db.lrange(f"reply:{sell1.id}", 0, -1)  # for a caller still waiting
    assert [orjson.loads(r)["ok"] for r in waiting] == [True]
    after = orjson.loads(redis_db.get(depth_key(market)))  # type: ignore[arg-type]
    assert after["seq"] == before + 1, "one version more: the sell, published once"
    assert after["asks"] == [["3000", "1"]]
    seqs = [d["seq"] for d in deltas]
    assert seqs[-1] == after["seq"]
    assert all(d["prev_seq"] == d["seq"] - 1 for d in deltas)
    # Out of memory, Redis refuses the failed pipeline's SET but not its PUBLISH: the feed
    # may see the version the rebuild publishes again. Never a gap, never a step back.
    assert seqs == sorted(seqs), "the feed's versions went back"
    assert sorted(set(seqs)) == list(range(seqs[0], seqs[-1] + 1)), "the feed has a gap"


# ------------------------------------------------------------ 5. a dead letter that fails


def _take_held_letters(cfg: MatcherConfig) -> list[tuple[bytes, dict[str, str]]]:
    """What reached the dead-letter topic (its hold subscription), pulled and acknowledged."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(cfg.pubsub.project, f"{cfg.pubsub.dead_letter_topic}-hold")
    try:
        resp = subscriber.pull(request={"subscription": path, "max_messages": 100}, timeout=2.0)
        if resp.received_messages:
            ids = [m.ack_id for m in resp.received_messages]
            subscriber.acknowledge(request={"subscription": path, "ack_ids": ids})
        return [(m.message.data, dict(m.message.attributes)) for m in resp.received_messages]
    except gexc.DeadlineExceeded:
        return []
    finally:
        subscriber.close()


def test_a_refused_command_is_acked_only_once_dead_lettered(
    matcher_cfg: MatcherConfig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The dead-letter topic refuses the matcher's publish (say, a permission missing in the
    cloud): the refused command is not acknowledged, so Pub/Sub hands it out again, and once
    publishing works it lands on the dead-letter topic, with why; meanwhile the matcher goes
    on applying good commands."""
    cfg = matcher_cfg
    caplog.set_level(logging.ERROR, logger="matcher")
    forged = encode(Deposit(id="f-unsigned", user="alice", asset="ETH", amount=ETH, ref="f"))
    with running(cfg) as matcher:
        publish(cfg.pubsub, market_setup())
        wait_applied(cfg, [c.id for c in market_setup()], 30)
        real_publish = matcher.publisher.publish
        failing = threading.Event()
        failing.set()
        refused_publishes: list[bytes] = []

        def publish_to(topic: str, data: bytes, **attributes: str) -> Any:
            if topic == matcher.dead_letter_topic and failing.is_set():
                refused_publishes.append(data)
                future: Future[str] = Future()
                denied = gexc.PermissionDenied("injected: no pubsub.publisher")  # type: ignore[no-untyped-call]
                future.set_exception(denied)
                return future
            return real_publish(topic, data, **attributes)

        monkeypatch.setattr(matcher.publisher, "publish", publish_to)
        raw = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        topic = raw.topic_path(cfg.pubsub.project, cfg.pubsub.commands_topic)
        raw.publish(topic, forged, ordering_key="alice").result(timeout=30)
        raw.stop()
        # A second delivery: the first was not acknowledged.
        wait_for(lambda: len(refused_publishes) >= 2, 60, "the refused command handed out again")
        genuine = Deposit(id="dep-bob", user="bob", asset="ETH", amount=ETH, ref="bob")
        publish(cfg.pubsub, [genuine])
        wait_applied(cfg, [genuine.id], 30)
        assert _take_held_letters(cfg) == []  # nothing reached the dead-letter topic yet

        failing.clear()
        letters: list[tuple[bytes, dict[str, str]]] = []

        def dead_lettered() -> bool:
            letters.extend(_take_held_letters(cfg))
            return bool(letters)

        wait_for(dead_lettered, 60, "the refused command dead-lettered")

    assert set(refused_publishes) == {forged}
    assert [(data, attrs[REASON_ATTR]) for data, attrs in letters] == [(forged, "unsigned")]
    assert _oplog_count(cfg) == len(market_setup()) + 1  # the forged deposit never applied
    failures = [r for r in caplog.records if r.getMessage().startswith("dead-letter publish")]
    assert len(failures) >= 2 and all(r.levelno == logging.ERROR for r in failures)
