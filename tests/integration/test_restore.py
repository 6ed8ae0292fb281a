"""A restore, proven: from a Postgres backup (``pg_dump``, infra/backup.py) the matcher
recovers to the state hash the live one had; and from an older backup plus the oplog exported
since (``python -m matcher_service.replay --export``), the same hash again. The restored
database then keeps serving commands. docs/operations.md, "Backups and restore"."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from msgspec.structs import replace

from infra.backup import dump, restore
from matcher_service.engine.snapshot import state_hash
from matcher_service.persistence import Store
from matcher_service.replay import replay
from matcher_service.service import recover
from shared.config import MatcherConfig, PostgresConfig
from shared.db import connect
from shared.messages import PlaceOrder
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


@pytest.fixture
def restored_names(pg: PostgresConfig) -> Iterator[list[str]]:
    """The databases the test restores into, dropped afterwards."""
    names: list[str] = []
    yield names
    admin = connect(PostgresConfig.load())
    try:
        for name in names:
            admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


def _orders(start: int, n: int) -> list[PlaceOrder]:
    return [
        PlaceOrder(id=f"r{i}", user=f"u{i % 3}", market="ETH-USDT",
                   side="buy" if i % 2 else "sell", price=(2000 + i % 5) * USDT,
                   amount=ETH // 10)
        for i in range(start, start + n)
    ]  # fmt: skip


def test_backup_and_oplog_restore_the_same_state(
    matcher_cfg: MatcherConfig, tmp_path: Path, restored_names: list[str]
) -> None:
    setup = [*market_setup(), *funded(["u0", "u1", "u2"])]
    older = tmp_path / "older.dump"
    with running(matcher_cfg) as matcher:
        publish(matcher_cfg.pubsub, [*setup, *_orders(0, 20)])
        wait_for(lambda: oplog_count(matcher_cfg) == len(setup) + 20, what="first orders")
        matcher.write_snapshot()
        publish(matcher_cfg.pubsub, _orders(20, 10))
        wait_for(lambda: oplog_count(matcher_cfg) == len(setup) + 30, what="more orders")
        dump(matcher_cfg.postgres, older)  # taken while the matcher runs
        publish(matcher_cfg.pubsub, _orders(30, 15))
        total = len(setup) + 45
        wait_for(lambda: oplog_count(matcher_cfg) == total, what="last orders")
        live = state_hash(matcher.engine)
    latest = tmp_path / "latest.dump"
    dump(matcher_cfg.postgres, latest)
    db = connect(matcher_cfg.postgres)
    try:  # the oplog as `python -m matcher_service.replay --export` writes it
        oplog = [cmd for _, cmd in Store(db).commands_after(0)]
    finally:
        db.close()
    assert len(oplog) == total

    # 1. The latest backup: a matcher on the restored database recovers the same state, then
    #    keeps applying commands.
    restored_names.append(f"r_{uuid.uuid4().hex[:12]}")
    cfg = replace(matcher_cfg, postgres=restore(matcher_cfg.postgres, latest, restored_names[-1]))
    with running(cfg) as matcher:
        assert state_hash(matcher.engine) == live
        publish(cfg.pubsub, _orders(45, 1))
        wait_for(lambda: oplog_count(cfg) == total + 1, what="an order after the restore")

    # 2. The older backup plus the oplog since: the same state hash.
    restored_names.append(f"r_{uuid.uuid4().hex[:12]}")
    old_cfg = restore(matcher_cfg.postgres, older, restored_names[-1])
    db = connect(old_cfg)
    try:
        recovered = recover(Store(db))
    finally:
        db.close()
    seq = recovered.engine.seq
    assert len(setup) + 30 <= seq < total
    assert recovered.snapshot_seq == len(setup) + 20
    engine = replay(oplog[seq:], recovered.engine)
    assert state_hash(engine) == live
