"""Numbers as Binance writes and reads them: decimal strings padded with zeros to a fixed
number of decimals (``"2000.01000000"``). Input is read exactly: trailing zeros are dropped
(they change nothing), any other digit past the asset's precision is refused by the rules,
never rounded away.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from shared.money import parse_units


def fixed(units: int, precision: int) -> str:
    """Integer units of ``10**-precision`` as a string with exactly ``precision`` decimals."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**precision)
    return f"{sign}{whole}.{frac:0{precision}d}" if precision else f"{sign}{whole}"


def fixed_text(value: str | None, precision: int) -> str:
    """A canonical decimal string of the native API (``"0.15"``, or None for none) padded to
    ``precision`` decimals; None is ``"0"`` padded, as Binance writes an absent number."""
    return fixed(0 if value is None else parse_units(value, precision), precision)


def plain(value: str) -> str:
    """A decimal string as the native rules read it: trailing fractional zeros and a bare
    ``.`` dropped (``"0.10000000"`` -> ``"0.1"``, ``"2000.00"`` -> ``"2000"``). Anything else
    is left for the rules to accept or refuse."""
    if "." not in value:
        return value
    stripped = value.rstrip("0").rstrip(".")
    return stripped or "0"


def step_text(units: int, precision: int) -> str:
    """A tick or step as Binance's filters write it (padded to 8 decimals at least)."""
    return fixed(units * 10 ** max(0, 8 - precision), max(8, precision))


def ratio(numerator: Decimal, denominator: Decimal, places: int) -> str:
    """``numerator / denominator`` to ``places`` decimals (rounded half even), for averages
    and percentages that are informative, never money."""
    if denominator == 0:
        return fixed(0, places)
    # A context of our own: a library in the same process may change the global one's rounding.
    with localcontext(Context(prec=60, rounding=ROUND_HALF_EVEN)):
        return f"{(numerator / denominator).quantize(Decimal(1).scaleb(-places)):f}"
