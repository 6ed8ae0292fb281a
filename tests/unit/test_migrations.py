"""The migrations are one numbered sequence: 0001, 0002, ... each number once (a number two
branches both took would apply in an order nobody chose), and migrating refuses a folder that
is not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from migrations.migrate import MIGRATIONS, MigrationError, numbered


def test_the_migrations_are_numbered_once_each_without_a_gap() -> None:
    files = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    by_number = numbered()  # raises on a shared number or a stray name
    assert len(by_number) == len(files)
    assert list(by_number) == list(range(1, len(files) + 1))


def _folder(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;\n")
    return tmp_path


def test_two_migrations_of_one_number_are_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "0001_core.sql", "0002_fees.sql", "0002_limits.sql")
    shared = re.escape("0002_fees.sql and 0002_limits.sql share the number 0002")
    with pytest.raises(MigrationError, match=shared):
        numbered(folder)


@pytest.mark.parametrize("name", ["2_fees.sql", "0002-fees.sql", "fees.sql", "0002_Fees.sql"])
def test_a_migration_named_otherwise_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(MigrationError, match=re.escape("name it NNNN_what.sql")):
        numbered(_folder(tmp_path, "0001_core.sql", name))


def test_the_order_is_the_numbers(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "0010_later.sql", "0002_fees.sql", "0001_core.sql")
    assert [p.name for p in numbered(folder).values()] == [
        "0001_core.sql", "0002_fees.sql", "0010_later.sql",
    ]  # fmt: skip
