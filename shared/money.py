"""Exact money: decimal strings on the wire, integers of a fixed unit inside.

An asset with precision ``p`` counts in units of ``10**-p``: 1.5 ETH at precision 8 is
``150_000_000``. Prices count in quote units per one whole base unit, so a price of 2000.01
USDT (precision 6) is ``2_000_010_000``. Nothing here rounds silently: a value that does not
fit raises :class:`MoneyError` with a message fit for an API client.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# Plain decimal notation only: no sign, exponent, NaN, infinity, spaces or leading "+".
_DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")
# Far above any real amount; keeps arithmetic and database columns bounded.
MAX_DIGITS = 40
FEE_SCALE = 10**6
"""Fee rates count in millionths: "0.001" (0.1 %) is 1000."""


class MoneyError(ValueError):
    """A value that is not an exact, representable amount."""


def parse_decimal(value: object, field: str = "value") -> Decimal:
    """Parse a non-negative decimal string. Floats and ints are refused: they lose exactness."""
    if not isinstance(value, str):
        raise MoneyError(f'{field} must be a decimal string such as "0.15"')
    # fullmatch: with match, "$" would also match before a final newline ("1\n").
    if len(value) > MAX_DIGITS + 1 or not _DECIMAL_RE.fullmatch(value):
        raise MoneyError(f"{field} must be a plain non-negative decimal string, got {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid input
        raise MoneyError(f"{field} is not a decimal: {value!r}") from exc


def to_units(value: Decimal, precision: int, field: str = "value") -> int:
    """Exact integer count of ``10**-precision`` units; refuses extra decimals. Counted on the
    digits with integers: Decimal arithmetic rounds past its context's 28 digits."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise MoneyError(f"{field} is not a number")
    units = int("".join(map(str, digits)))
    shift = exponent + precision
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        units *= scale
    else:
        units, rest = divmod(units, scale)
        if rest:
            raise MoneyError(f"{field} has more than {precision} decimal places")
    return -units if sign else units


def parse_units(value: object, precision: int, field: str = "value") -> int:
    """A decimal string straight to integer units."""
    return to_units(parse_decimal(value, field), precision, field)


def format_units(units: int, precision: int) -> str:
    """Integer units as a canonical decimal string ("1.5", "0", "0.00000001")."""
    sign = "-" if units < 0 else ""
    units = abs(units)
    if precision == 0:
        return f"{sign}{units}"
    whole, frac = divmod(units, 10**precision)
    frac_s = f"{frac:0{precision}d}".rstrip("0")
    return f"{sign}{whole}.{frac_s}" if frac_s else f"{sign}{whole}"


def parse_fee_rate(value: object, field: str = "fee") -> int:
    """A fee rate such as "0.001" in millionths; at most 6 decimals, below 10 %."""
    rate = parse_units(value, 6, field)
    if rate >= FEE_SCALE // 10:
        raise MoneyError(f"{field} must be below 0.1")
    return rate


def fee_for(amount: int, rate: int) -> int:
    """Fee on ``amount`` units at ``rate`` millionths, rounded up: the exchange never loses
    a fraction of a unit, and a fee never exceeds the amount it is taken from."""
    return -((-amount * rate) // FEE_SCALE)
