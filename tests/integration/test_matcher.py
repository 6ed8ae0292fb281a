"""The matcher against the real Pub/Sub emulator, Postgres and Redis."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import orjson
import pytest
import redis

from matcher_service.engine.snapshot import state_hash
from matcher_service.persistence import Store
from matcher_service.service import recover
from shared.config import MatcherConfig
from shared.db import connect
from shared.messages import AnyCommand, CancelOrder, PlaceOrder
from tests.integration.matcher_helpers import (
    ETH,
    USDT,
    funded,
    market_setup,
    oplog_count,
    publish,
    running,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def apply_in_stages(cfg: MatcherConfig, *stages: Sequence[AnyCommand]) -> None:
    """Publish each stage once the ones before it are applied: Pub/Sub keeps the order of one
    ordering key only (a user, ``admin``), so a deposit could otherwise come before its asset,
    or a taker before the maker it is meant to meet."""
    applied = oplog_count(cfg)
    for stage in stages:
        publish(cfg.pubsub, stage)
        applied += len(stage)
        wait_for(partial(_applied, cfg, applied), what=f"{applied} commands applied")


def _applied(cfg: MatcherConfig, count: int) -> bool:
    return oplog_count(cfg) == count


def test_a_trade_lands_in_postgres_and_redis(
    matcher_cfg: MatcherConfig, redis_db: redis.Redis
) -> None:
    sell = PlaceOrder(id="o1", user="alice", market="ETH-USDT", side="sell", price=2000 * USDT,
                      amount=ETH, client_order_id="a1")  # fmt: skip
    buy = PlaceOrder(id="o2", user="bob", market="ETH-USDT", side="buy", price=2001 * USDT,
                     amount=ETH // 4)  # fmt: skip
    with running(matcher_cfg):
        apply_in_stages(matcher_cfg, market_setup(), funded(["alice", "bob"]), [sell], [buy])
        wait_for(lambda: redis_db.get("cmd:o2") is not None, what="reply of o2")
        reply = orjson.loads(redis_db.blpop(["reply:o2"], timeout=5)[1])  # type: ignore[index]
    assert reply["ok"] is True
    assert reply["order"]["status"] == "filled"

    db = connect(matcher_cfg.postgres)
    trades = db.run(
        "SELECT price::text, amount::text, maker_fee::text, taker_fee::text FROM trades"
    )
    # 0.25 ETH at the maker's 2000: the buyer's fee 0.2% of 0.25 ETH, the seller's 0.1% of 500.
    assert trades == [[str(2000 * USDT), str(ETH // 4), str(500_000), str(50_000)]]
    balances = {
        (u, a): (int(av), int(fr))
        for u, a, av, fr in db.run("SELECT user_id, asset, available, frozen FROM balances")
    }
    assert balances[("bob", "ETH")] == (100 * ETH + ETH // 4 - 50_000, 0)
    assert balances[("bob", "USDT")] == (1_000_000 * USDT - 500 * USDT, 0)
    assert balances[("alice", "ETH")] == (99 * ETH, ETH * 3 // 4)
    assert balances[("alice", "USDT")] == (1_000_000 * USDT + 500 * USDT - 500_000, 0)
    assert balances[("@fees", "ETH")] == (50_000, 0)
    status = db.run("SELECT order_id, status, filled::text, frozen::text FROM orders ORDER BY 1")
    assert status == [[1, "partially_filled", str(ETH // 4), str(ETH * 3 // 4)],
                      [2, "filled", str(ETH // 4), "0"]]  # fmt: skip
    db.close()

    depth = orjson.loads(redis_db.get("md:depth:ETH-USDT"))  # type: ignore[arg-type]
    assert depth["asks"] == [["2000", "0.75"]] and depth["bids"] == []
    trade = orjson.loads(redis_db.lindex("md:trades:ETH-USDT", 0))  # type: ignore[arg-type]
    assert (trade["price"], trade["amount"]) == ("2000", "0.25")


def test_duplicates_change_nothing_and_get_the_same_reply(
    matcher_cfg: MatcherConfig, redis_db: redis.Redis
) -> None:
    place = PlaceOrder(id="dup-1", user="carol", market="ETH-USDT", side="buy",
                       price=1000 * USDT, amount=ETH)  # fmt: skip
    with running(matcher_cfg):
        apply_in_stages(matcher_cfg, market_setup(), funded(["carol"]), [place])
        first = orjson.loads(redis_db.blpop(["reply:dup-1"], timeout=5)[1])  # type: ignore[index]
        # The same command again, twice, plus the setup again: all already applied.
        publish(matcher_cfg.pubsub, [place, place, *market_setup()])
        wait_for(lambda: redis_db.llen("reply:dup-1") >= 2, what="replies to the repeats")
        again = orjson.loads(redis_db.lpop("reply:dup-1"))  # type: ignore[arg-type]
    assert oplog_count(matcher_cfg) == 6
    assert again["seq"] == first["seq"] and again["ok"] is True
    db = connect(matcher_cfg.postgres)
    assert db.run("SELECT count(*) FROM orders")[0][0] == 1
    db.close()


def test_restart_recovers_the_same_state(matcher_cfg: MatcherConfig) -> None:
    orders = [
        PlaceOrder(id=f"r{i}", user=f"u{i % 3}", market="ETH-USDT",
                   side="buy" if i % 2 else "sell", price=(1990 + i % 20) * USDT, amount=ETH // 10)
        for i in range(60)
    ]  # fmt: skip
    cancels = [CancelOrder(id=f"c{i}", user=f"u{i % 3}", order_id=i) for i in range(1, 30, 3)]
    with running(matcher_cfg) as first:
        publish(matcher_cfg.pubsub, [*market_setup(), *funded(["u0", "u1", "u2"]), *orders])
        wait_for(lambda: oplog_count(matcher_cfg) == 69, what="orders applied")
        first.write_snapshot()
        publish(matcher_cfg.pubsub, cancels)
        total = 69 + len(cancels)
        wait_for(lambda: oplog_count(matcher_cfg) == total, what="cancels applied")
        live_hash = state_hash(first.engine)
    with running(matcher_cfg) as second:
        assert state_hash(second.engine) == live_hash
        assert second.epoch == first.epoch + 1
    db = connect(matcher_cfg.postgres)
    rec = recover(Store(db))
    assert rec.snapshot_seq == 69 and rec.replayed == len(cancels)
    assert state_hash(rec.engine) == live_hash
    db.close()
