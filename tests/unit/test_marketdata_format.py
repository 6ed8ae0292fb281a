"""The market-data publisher's fast amount formatter agrees with shared.money.format_units."""

from __future__ import annotations

import random

from matcher_service.marketdata import fmt
from shared.money import format_units


def test_fast_formatter_equals_format_units() -> None:
    rng = random.Random(3)
    values = [0, 1, -1, 10**18, -(10**18) + 1, 123_450_000, 10**40 + 7]
    values += [rng.randint(-(10**20), 10**20) for _ in range(3000)]
    values += [rng.randint(0, 10**5) * 10 ** rng.randint(0, 12) for _ in range(3000)]
    for precision in range(19):
        for v in values:
            assert fmt(v, precision) == format_units(v, precision), (v, precision)
