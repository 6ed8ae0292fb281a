"""docs/decisions/README.md lists every decision record, in order, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

DECISIONS = Path(__file__).resolve().parents[2] / "docs" / "decisions"


def test_every_record_is_in_the_index_in_order() -> None:
    records = sorted(p.name for p in DECISIONS.glob("[0-9][0-9][0-9][0-9]-*.md"))
    index = (DECISIONS / "README.md").read_text()
    linked = re.findall(r"^\| \[(\d{4})\]\((\d{4}-[^)]+\.md)\) \|", index, flags=re.M)
    assert [name for _, name in linked] == records
    assert all(name.startswith(number) for number, name in linked)


def test_record_numbers_are_unique() -> None:
    numbers = [p.name[:4] for p in DECISIONS.glob("[0-9][0-9][0-9][0-9]-*.md")]
    assert len(numbers) == len(set(numbers))
