"""Apply the SQL files in migrations/ in order, each once, each in one transaction.

Usage: ``python -m migrations.migrate`` (connection from PG* variables, see shared/config.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from shared.config import PostgresConfig
from shared.db import Database, connect

MIGRATIONS = Path(__file__).parent
log = logging.getLogger("migrate")


def migrate(db: Database) -> list[str]:
    """Apply what is missing; returns the versions applied now. Safe to run concurrently:
    an advisory lock serialises migrators."""
    db.run(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    applied_now = []
    db.run("SELECT pg_advisory_lock(7001)")
    try:
        done = {row[0] for row in db.run("SELECT version FROM schema_migrations")}
        for path in sorted(MIGRATIONS.glob("*.sql")):
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
