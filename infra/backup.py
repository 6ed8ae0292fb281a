"""Local backups of the exchange's Postgres and their restore (docs/operations.md, "Backups
and restore"): ``pg_dump`` in its custom format, restored into a new database that the matcher
then recovers from (its latest snapshot, then the oplog after it) to the same state hash.

    python -m infra.backup dump FILE                 # the database of PG* (source .state/env)
    python -m infra.backup restore FILE NEW_DATABASE

In the cloud, Cloud SQL's backups and point-in-time recovery play this part (a clone of the
instance at a time); the matcher's recovery is the same.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from msgspec.structs import replace

from shared.config import PostgresConfig
from shared.db import connect

PG_BIN_DIR: Final = Path("/usr/lib/postgresql/15/bin")
_NAME_OK: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _env(cfg: PostgresConfig) -> dict[str, str]:
    env = {**os.environ, "PGHOST": cfg.host, "PGPORT": str(cfg.port), "PGUSER": cfg.user}
    if cfg.password is not None:
        env["PGPASSWORD"] = str(cfg.password)
    return env


def dump(cfg: PostgresConfig, path: Path) -> None:
    """The whole database (schema and data, the oplog and snapshots included) to ``path``, as
    one consistent snapshot (pg_dump runs in one repeatable-read transaction)."""
    subprocess.run(
        [str(PG_BIN_DIR / "pg_dump"), "--format=custom", "--no-owner", f"--file={path}",
         cfg.database],
        env=_env(cfg), check=True, capture_output=True,
    )  # fmt: skip


def restore(cfg: PostgresConfig, path: Path, database: str) -> PostgresConfig:
    """A new database ``database`` made from the dump at ``path``; its connection."""
    if not database or set(database) - _NAME_OK:
        raise ValueError("the new database's name is lowercase letters, digits and _")
    admin = connect(cfg, "restore")
    try:
        admin.run(f"CREATE DATABASE {database}")
    finally:
        admin.close()
    subprocess.run(
        [str(PG_BIN_DIR / "pg_restore"), "--no-owner", "--exit-on-error",
         f"--dbname={database}", str(path)],
        env=_env(cfg), check=True, capture_output=True,
    )  # fmt: skip
    return replace(cfg, database=database)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.backup", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("dump").add_argument("file", type=Path)
    restoring = sub.add_parser("restore")
    restoring.add_argument("file", type=Path)
    restoring.add_argument("database")
    args = parser.parse_args(argv)
    cfg = PostgresConfig.load()
    if args.what == "dump":
        dump(cfg, args.file)
    else:
        restore(cfg, args.file, args.database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
