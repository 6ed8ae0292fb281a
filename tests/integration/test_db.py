"""shared.db.SharedConnection against a real Postgres: a failure that may have struck in the
middle of an exchange with the server never leaves the connection in use (the next statement
would read the previous one's answer); a clean SQL error keeps it; a lost one is replaced.
And migrating refuses a migrations folder that is not one numbered sequence before it applies
anything."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pg8000.exceptions
import pytest

from migrations.migrate import MigrationError, migrate
from shared.config import PostgresConfig
from shared.db import Database, DatabaseUnavailableError, SharedConnection, connect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAR_EAST = timezone(timedelta(hours=14))


@pytest.fixture
def shared(pg: PostgresConfig) -> Iterator[SharedConnection]:
    conn = SharedConnection(pg, "test-db")
    conn.run("CREATE TABLE rows (owner text, n int)")
    conn.run("INSERT INTO rows VALUES ('alice', 1), ('alice', 2), ('bob', 3)")
    yield conn
    conn.close()


def backend(conn: SharedConnection) -> int:
    return int(conn.run("SELECT pg_backend_pid()")[0][0])


# pg8000 sends Parse and Describe, then fails while encoding the parameters for Bind: the
# server's answers to the first two are still unread when the exception leaves pg8000.
MID_MESSAGE: list[tuple[str, Callable[[Database], Any], type[BaseException]]] = [
    (
        "a timestamp whose UTC form is before year 1",
        lambda db: db.run(
            "SELECT owner FROM rows WHERE :t < now()", t=datetime(1, 1, 1, tzinfo=FAR_EAST)
        ),
        OverflowError,
    ),
    (
        "text that is not valid UTF-8",
        lambda db: db.run("SELECT owner FROM rows WHERE owner = :o", o="\udc80"),
        UnicodeEncodeError,
    ),
]


@pytest.mark.parametrize(("what", "poison", "error"), MID_MESSAGE, ids=[m[0] for m in MID_MESSAGE])
def test_a_failure_in_the_middle_of_a_message_discards_the_connection(
    shared: SharedConnection,
    what: str,
    poison: Callable[[Database], Any],
    error: type[BaseException],
) -> None:
    before = backend(shared)
    assert shared.run("SELECT n FROM rows WHERE owner = 'alice' ORDER BY n") == [[1], [2]]
    with pytest.raises(error):
        shared.call(poison)
    # Each statement gets its own answer, on a connection that is not the poisoned one.
    assert shared.run("SELECT n FROM rows WHERE owner = 'bob'") == [[3]]
    assert shared.run("SELECT n FROM rows WHERE owner = 'alice' ORDER BY n") == [[1], [2]]
    assert backend(shared) != before


def test_an_error_of_the_callers_own_inside_a_transaction_discards_the_connection(
    shared: SharedConnection,
) -> None:
    before = backend(shared)

    def half_done(db: Database) -> None:
        db.run("BEGIN")
        db.run("UPDATE rows SET n = n + 100 WHERE owner = 'bob'")
        raise ValueError("a bug between two statements")

    with pytest.raises(ValueError, match="a bug"):
        shared.call(half_done)
    assert backend(shared) != before
    assert shared.run("SELECT n FROM rows WHERE owner = 'bob'") == [[3]]  # never committed


def test_a_clean_sql_error_keeps_the_connection_and_ends_its_transaction(
    shared: SharedConnection,
) -> None:
    before = backend(shared)

    def fails(db: Database) -> None:
        db.run("BEGIN")
        db.run("UPDATE rows SET n = n + 100 WHERE owner = 'bob'")
        db.run("SELECT 1 / 0")

    with pytest.raises(pg8000.exceptions.DatabaseError) as caught:
        shared.call(fails)
    assert caught.value.args[0]["C"] == "22012"  # division_by_zero
    assert backend(shared) == before
    assert shared.run("SELECT n FROM rows WHERE owner = 'bob'") == [[3]]


def test_a_lost_connection_is_replaced_once_then_unavailable(
    shared: SharedConnection, pg: PostgresConfig
) -> None:
    before = backend(shared)
    admin = connect(pg)
    try:
        admin.run("SELECT pg_terminate_backend(:p)", p=before)
    finally:
        admin.close()
    assert shared.run("SELECT count(*) FROM rows") == [[3]]
    assert backend(shared) != before

    def always_lost(db: Database) -> None:
        raise pg8000.exceptions.InterfaceError("network error")

    with pytest.raises(DatabaseUnavailableError):
        shared.call(always_lost)
    assert shared.run("SELECT count(*) FROM rows") == [[3]]


def test_migrating_refuses_two_migrations_of_one_number_and_applies_none(
    pg: PostgresConfig, tmp_path: Path
) -> None:
    for name, table in (("0001_a.sql", "a"), ("0002_b.sql", "b"), ("0002_c.sql", "c")):
        (tmp_path / name).write_text(f"CREATE TABLE {table} (n int);\n")
    db = connect(pg)
    try:
        with pytest.raises(MigrationError, match="share the number 0002"):
            migrate(db, tmp_path)
        tables = db.run("SELECT count(*) FROM pg_tables WHERE tablename IN ('a', 'b', 'c')")
        assert tables == [[0]]
        (tmp_path / "0002_c.sql").rename(tmp_path / "0003_c.sql")
        assert migrate(db, tmp_path) == ["0001_a", "0002_b", "0003_c"]
    finally:
        db.close()
