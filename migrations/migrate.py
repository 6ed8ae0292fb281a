"""Apply the SQL files in migrations/ in order, each once, each in one transaction.

Usage: ``python -m migrations.migrate`` (connection from PG* variables, see shared/config.py).

A migration is ``NNNN_what.sql``; it is known by its file name (``schema_migrations``) and
applied in the order of its number. Two branches that each add the next number would, once
merged, hold two files of one number, applied in an order nobody chose: migrating refuses to
start while they do (renumber one), as it refuses a file named otherwise.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Final

from shared.config import PostgresConfig
from shared.db import Database, connect

MIGRATIONS = Path(__file__).parent
log = logging.getLogger("migrate")
_NAME: Final = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


class MigrationError(Exception):
    """The migrations folder is not one numbered sequence: nothing was applied."""


def numbered(folder: Path = MIGRATIONS) -> dict[int, Path]:
    """The migrations of ``folder`` by number, in order; MigrationError for a file not named
    ``NNNN_what.sql`` or two files of one number."""
    found: dict[int, Path] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"migration {path.name}: name it NNNN_what.sql")
        number = int(match[1])
        if number in found:
            raise MigrationError(
                f"migrations {found[number].name} and {path.name} share the number {number:04d}:"
                " renumber one of them"
            )
        found[number] = path
    return dict(sorted(found.items()))


def migrate(db: Database, folder: Path = MIGRATIONS) -> list[str]:
    """Apply what is missing; returns the versions applied now. Safe to run concurrently:
    an advisory lock serialises migrators. MigrationError, before anything is applied, when
    the folder's files are not one numbered sequence (``numbered``)."""
    paths = list(numbered(folder).values())
    db.run(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    applied_now = []
    db.run("SELECT pg_advisory_lock(7001)")
    try:
        done = {row[0] for row in db.run("SELECT version FROM schema_migrations")}
        for path in paths:
            version = path.stem
            if version in done:
                continue
            db.run("BEGIN")
            try:
                db.run(path.read_text())
                db.run("INSERT INTO schema_migrations (version) VALUES (:v)", v=version)
                db.run("COMMIT")
            except Exception:
                db.run("ROLLBACK")
                raise
            log.info("applied migration", extra={"version": version})
            applied_now.append(version)
    finally:
        db.run("SELECT pg_advisory_unlock(7001)")
    return applied_now


def main() -> None:
    from shared import logs

    logs.setup()
    db = connect(PostgresConfig.load(), "migrate")
    try:
        applied = migrate(db)
    finally:
        db.close()
    log.info("migrations up to date", extra={"applied": applied})


if __name__ == "__main__":
    main()
