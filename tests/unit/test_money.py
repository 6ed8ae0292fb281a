"""Decimal strings to integer units and back, exactly, up to the 40 digits the wire allows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.money import MAX_DIGITS, MoneyError, format_units, parse_units


@given(
    st.integers(0, 18).flatmap(lambda p: st.tuples(st.integers(0, 10**MAX_DIGITS - 1), st.just(p)))
)
def test_units_survive_a_round_trip_through_their_decimal_string(
    units_precision: tuple[int, int],
) -> None:
    units, precision = units_precision
    assert parse_units(format_units(units, precision), precision) == units


@pytest.mark.parametrize(
    ("text", "precision", "units"),
    [
        ("10000000000000000000000000001", 0, 10**28 + 1),  # past Decimal's 28 digits
        ("1.00000000000000000000000000001", 29, 10**29 + 1),
        ("2000.01", 6, 2_000_010_000),
        ("0.000", 2, 0),
    ],
)
def test_no_digit_is_rounded_away(text: str, precision: int, units: int) -> None:
    assert parse_units(text, precision) == units


def test_more_decimals_than_the_precision_are_refused() -> None:
    with pytest.raises(MoneyError, match="more than 8 decimal places"):
        parse_units("1000000000000000000000000000.000000001", 8)
