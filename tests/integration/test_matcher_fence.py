"""The batch statement's fence against a real Postgres: a matcher whose lease epoch is no longer
the current one writes nothing and gets ``FencedError``; the current one writes the batch and
the events cursor in one statement (docs/decisions/0017)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from matcher_service.engine import Engine
from matcher_service.persistence import Batch, FencedError, Store
from shared.config import PostgresConfig
from shared.db import Database, connect
from shared.messages import CreateAsset

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def db(pg: PostgresConfig) -> Iterator[Database]:
    conn = connect(pg, "test-fence")
    yield conn
    conn.close()


def one_batch(command_id: str) -> Batch:
    cmd = CreateAsset(id=command_id, asset="ETH", precision=8)
    cmd.ts = 1_700_000_000_000
    return [(cmd, Engine().apply(cmd))]


def oplog_ids(db: Database) -> list[str]:
    return [str(r[0]) for r in db.run("SELECT command_id FROM oplog ORDER BY seq")]


def events_cursor(db: Database) -> int:
    return int(db.run("SELECT seq FROM outbox_cursor WHERE name = 'events'")[0][0])


def test_a_stale_epoch_writes_nothing(db: Database) -> None:
    store = Store(db)
    old = store.take_lease("first")
    current = store.take_lease("second")  # a takeover
    with pytest.raises(FencedError, match=f"the lease epoch is {current}, mine is {old}"):
        store.write_batch(old, one_batch("c1"), published_seq=7)
    assert oplog_ids(db) == []
    assert events_cursor(db) == 0
    # The connection is fine afterwards (no transaction left open).
    store.write_batch(current, one_batch("c1"), published_seq=7)
    assert oplog_ids(db) == ["c1"]
    assert events_cursor(db) == 7


def test_the_cursor_never_goes_back(db: Database) -> None:
    store = Store(db)
    epoch = store.take_lease("only")
    store.write_batch(epoch, one_batch("c1"), published_seq=9)
    store.write_batch(epoch, [], published_seq=4)
    assert events_cursor(db) == 9


def test_a_failed_statement_writes_nothing(db: Database) -> None:
    store = Store(db)
    epoch = store.take_lease("only")
    store.write_batch(epoch, one_batch("c1"))
    with pytest.raises(Exception, match="duplicate key"):  # the same command id again
        store.write_batch(epoch, one_batch("c1"), published_seq=3)
    assert oplog_ids(db) == ["c1"]
    assert events_cursor(db) == 0
