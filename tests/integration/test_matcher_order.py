"""Each user's commands apply in the order the user sent them, whatever order Pub/Sub hands
them out in (docs/decisions/0006): messages reordered and duplicated on purpose, a gap that
never fills, a gap held across a crash, a Redis that loses the counters.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson
import pytest
import redis
from msgspec.structs import replace

from api.dispatch import UserSeqs
from matcher_service.engine import Engine
from shared.config import MatcherConfig
from shared.db import connect
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
from shared.redis_keys import user_seq_key
from tests.integration.matcher_helpers import (
    ETH,
    USDT,
    check_exactly_once_and_consistent,
    funded,
    market_setup,
    matcher_processes,
    publish,
    publish_many,
    running,
    wait_applied,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

EPOCH = 1_700_000_000_000


def zoe_sends(epoch: int = EPOCH, first: int = 1) -> list[AnyCommand]:
    """Five commands whose outcome depends on their order: a sale, its cancel, a withdrawal
    of what the cancel freed, a sale that the withdrawal leaves unfunded, a cancel-all."""
    cmds: list[AnyCommand] = [
        PlaceOrder(id="z-sell", user="zoe", market="ETH-USDT", side="sell", price=3000 * USDT,
                   amount=100 * ETH, client_order_id="a"),
        CancelOrder(id="z-cancel", user="zoe", client_order_id="a"),
        RequestWithdrawal(id="z-withdraw", user="zoe", asset="ETH", amount=100 * ETH, fee=0,
                          withdrawal_id="zw-1"),
        PlaceOrder(id="z-sell-2", user="zoe", market="ETH-USDT", side="sell",
                   price=2500 * USDT, amount=ETH, client_order_id="b"),
        CancelAll(id="z-cancel-all", user="zoe", market="ETH-USDT"),
    ]  # fmt: skip
    for n, cmd in enumerate(cmds, first):
        cmd.user_seq = UserSeq(epoch, n)
    return cmds


def oplog(cfg: MatcherConfig, user: str) -> list[tuple[str, bool, str | None]]:
    db = connect(cfg.postgres)
    try:
        rows = db.run("SELECT command_id, ok, reason, command FROM oplog ORDER BY seq")
    finally:
        db.close()
    return [
        (cid, ok, reason)
        for cid, ok, reason, command in rows
        if orjson.loads(command).get("user") == user
        and orjson.loads(command)["command"] != "deposit"
    ]


def parked_rows(cfg: MatcherConfig) -> int:
    db = connect(cfg.postgres)
    try:
        return int(db.run("SELECT count(*) FROM parked")[0][0])
    finally:
        db.close()


IN_ORDER = [
    ("z-sell", True, None),
    ("z-cancel", True, None),
    ("z-withdraw", True, None),
    ("z-sell-2", False, Reason.INSUFFICIENT_FUNDS),
    ("z-cancel-all", True, None),
]


def test_reordered_and_duplicated_messages_apply_in_the_users_order(
    matcher_cfg: MatcherConfig, redis_db: redis.Redis
) -> None:
    cfg = matcher_cfg
    cmds = zoe_sends()
    rng = random.Random(7)
    # Every command at least once, some twice, in an order Pub/Sub would never use; each
    # message on an ordering key of its own, so the emulator hands them out as published.
    messages = [*cmds, cmds[2], cmds[4], cmds[0]]
    rng.shuffle(messages)
    messages.sort(key=lambda c: -c.user_seq.n if c.user_seq else 0)  # the last first
    publisher = CommandPublisher(cfg.pubsub)
    with running(cfg) as matcher:
        setup = [*market_setup(), *funded(["zoe"])]
        publish(cfg.pubsub, setup)
        wait_applied(cfg, [c.id for c in setup], 30)
        for i, cmd in enumerate(messages):
            publisher.publish(cmd, f"zoe-{i}")
            time.sleep(0.05)  # each in a batch of its own: most of them wait, parked
        wait_applied(cfg, [c.id for c in cmds], 30)
        wait_for(lambda: redis_db.get("cmd:z-cancel-all") is not None, 10, "the last reply")
        stats = dict(matcher.stats)
        engine_balances = matcher.engine.balances()
    assert oplog(cfg, "zoe") == IN_ORDER
    assert stats["parked"] >= 3 and stats["gaps"] == 0 and stats["out_of_order"] == 0
    assert stats["duplicates"] >= 3
    assert parked_rows(cfg) == 0
    reference = Engine()
    for cmd in [*setup, *cmds]:
        reference.apply(cmd)
    assert reference.balances() == engine_balances
    check_exactly_once_and_consistent(cfg, [c.id for c in (*setup, *cmds)])


def test_a_gap_that_never_fills_is_held_then_applied_past_and_the_late_one_refused(
    matcher_cfg: MatcherConfig, redis_db: redis.Redis
) -> None:
    cfg = replace(matcher_cfg, seq_hold_ms=1500)
    sell, cancel, withdraw, *_ = zoe_sends()
    with running(cfg) as matcher:
        matcher.sequencer.hold_floor = 0  # no predecessor whose lease to wait out
        setup = [*market_setup(), *funded(["zoe"])]
        publish(cfg.pubsub, setup)
        wait_applied(cfg, [c.id for c in setup], 30)
        publish(cfg.pubsub, [sell])
        wait_applied(cfg, [sell.id], 10)
        sent = time.monotonic()
        publish(cfg.pubsub, [withdraw])  # the cancel before it never came (a failed publish)
        wait_for(lambda: parked_rows(cfg) == 1, 10, "the withdrawal parked")
        wait_applied(cfg, [withdraw.id], 10)
        held = time.monotonic() - sent
        publish(cfg.pubsub, [cancel])  # it comes after all: too late
        wait_applied(cfg, [cancel.id], 10)
        wait_for(lambda: redis_db.get(f"cmd:{cancel.id}") is not None, 10, "the cancel's reply")
        stats = dict(matcher.stats)
    assert 1.4 <= held < 5, held
    assert oplog(cfg, "zoe") == [
        ("z-sell", True, None),
        ("z-withdraw", False, Reason.INSUFFICIENT_FUNDS),  # the sale still holds the ether
        ("z-cancel", False, Reason.OUT_OF_ORDER),
    ]
    reply = orjson.loads(redis_db.get(f"cmd:{cancel.id}"))  # type: ignore[arg-type]
    assert (reply["ok"], reply["reason"]) == (False, Reason.OUT_OF_ORDER)
    assert stats["gaps"] == 1 and stats["out_of_order"] == 1
    assert parked_rows(cfg) == 0
    check_exactly_once_and_consistent(cfg, [c.id for c in (*setup, sell, withdraw, cancel)])


def test_parked_commands_survive_a_crash(
    matcher_cfg: MatcherConfig, redis_db: redis.Redis, tmp_path: Path
) -> None:
    """A command parked by one matcher is in Postgres and acknowledged: the next matcher
    applies it once its missing predecessors come."""
    cfg = replace(matcher_cfg, seq_hold_ms=60_000)
    cmds = zoe_sends()
    markets, deposits = market_setup(), funded(["zoe"])
    setup = [*markets, *deposits]
    with matcher_processes(cfg, tmp_path) as start:
        matcher = start()
        matcher.wait_ready()
        # Deposits and listings travel under different ordering keys: Pub/Sub may hand a
        # deposit over before its asset exists unless the listings are applied first.
        publish_many(cfg.pubsub, markets)
        wait_applied(cfg, [c.id for c in markets], 30)
        publish_many(cfg.pubsub, deposits)
        wait_applied(cfg, [c.id for c in deposits], 30)
        publish(cfg.pubsub, cmds[2:])  # ahead of the first two: parked
        wait_for(lambda: parked_rows(cfg) == 3, 10, "three commands parked")
        matcher.kill()
        matcher = start()
        matcher.wait_ready()
        publish(cfg.pubsub, cmds[:2])
        wait_applied(cfg, [c.id for c in cmds], 30)
        matcher.stop()
    assert oplog(cfg, "zoe") == IN_ORDER
    assert parked_rows(cfg) == 0
    check_exactly_once_and_consistent(cfg, [c.id for c in (*setup, *cmds)])


def test_counters_lost_with_redis_go_on_without_a_wait(
    matcher_cfg: MatcherConfig, redis_db: redis.Redis
) -> None:
    """Redis loses every counter (a new epoch), then one user's newest increments (a
    failover: the count set back): every command still applies at once, in order."""
    cfg = matcher_cfg
    seqs = UserSeqs(redis_db)

    def orders(prefix: str, count: int) -> list[AnyCommand]:
        out: list[AnyCommand] = []
        for i in range(count):
            cmd = PlaceOrder(id=f"{prefix}{i}", user="yan", market="ETH-USDT", side="buy",
                             price=(1000 + i) * USDT, amount=ETH // 100)  # fmt: skip
            seqs.stamp(cmd)
            out.append(cmd)
        return out

    with running(cfg) as matcher:
        setup = [*market_setup(), *funded(["yan"])]
        publish(cfg.pubsub, setup)
        wait_applied(cfg, [c.id for c in setup], 30)
        first = orders("a", 3)
        publish(cfg.pubsub, first)
        wait_applied(cfg, [c.id for c in first], 10)
        redis_db.flushall()  # Redis lost its data: the count begins again, in a later epoch
        time.sleep(0.01)
        second = orders("b", 3)
        assert [c.user_seq.n for c in second if c.user_seq] == [1, 2, 3]
        publish(cfg.pubsub, second)
        redis_db.hincrby(user_seq_key("yan"), "n", -2)  # the newest two lost again
        third = orders("c", 2)
        assert [c.user_seq.n for c in third if c.user_seq] == [2, 3]
        publish(cfg.pubsub, third)
        sent = time.monotonic()
        wait_applied(cfg, [c.id for c in (*second, *third)], 10)
        took = time.monotonic() - sent
        stats = dict(matcher.stats)
    assert took < cfg.seq_hold_ms / 1000, "nothing waited for a gap"
    assert [cid for cid, ok, _ in oplog(cfg, "yan") if ok] == [
        c.id for c in (*first, *second, *third)
    ]
    assert stats["gaps"] == 0 and stats["out_of_order"] == 0 and stats["parked"] == 0
