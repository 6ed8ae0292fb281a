"""Assets and markets as the engine holds them: everything pre-computed as integers."""

from __future__ import annotations

from dataclasses import dataclass

from shared.messages import (
    ASSET_RE,
    MAX_PRECISION,
    CreateMarket,
    MarketChanged,
    MarketStatus,
    Reason,
)
from shared.money import MoneyError, format_units, parse_fee_rate, parse_units


class Rejected(Exception):  # noqa: N818 - a verdict, not a fault
    """A command that cannot apply; carries the reason code. Raised before any change."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(slots=True)
class Market:
    name: str
    base: str
    quote: str
    base_scale: int
    """``10**base_precision``: quote value = price * amount // base_scale, always exact."""
    base_precision: int
    quote_precision: int
    tick: int
    step: int
    min_amount: int
    min_notional: int
    maker_fee: int
    taker_fee: int
    status: MarketStatus
    last_price: int = 0
    """The price of the market's last trade (0 before the first): what stop orders watch."""

    def event(self) -> MarketChanged:
        qp, bp = self.quote_precision, self.base_precision
        return MarketChanged(
            self.name,
            self.base,
            self.quote,
            format_units(self.tick, qp),
            format_units(self.step, bp),
            format_units(self.min_amount, bp),
            format_units(self.min_notional, qp),
            format_units(self.maker_fee, 6),
            format_units(self.taker_fee, 6),
            self.status,
        )


def check_asset(asset: str, precision: int) -> None:
    if not ASSET_RE.fullmatch(asset):
        raise Rejected(Reason.INVALID, "asset code must be 2-12 of A-Z, 0-9")
    if not 0 <= precision <= MAX_PRECISION:
        raise Rejected(Reason.INVALID, f"precision must be 0 to {MAX_PRECISION}")


def new_market(cmd: CreateMarket, precisions: dict[str, int]) -> Market:
    """Validate a market definition against the assets' precisions."""
    if cmd.base not in precisions or cmd.quote not in precisions:
        raise Rejected(Reason.UNKNOWN_ASSET)
    if cmd.base == cmd.quote or cmd.market != f"{cmd.base}-{cmd.quote}":
        raise Rejected(Reason.INVALID, "market must be named BASE-QUOTE of two assets")
    bp, qp = precisions[cmd.base], precisions[cmd.quote]
    try:
        tick = parse_units(cmd.tick, qp, "tick")
        step = parse_units(cmd.step, bp, "step")
        min_amount = parse_units(cmd.min_amount, bp, "min_amount")
        min_notional = parse_units(cmd.min_notional, qp, "min_notional")
        maker_fee = parse_fee_rate(cmd.maker_fee, "maker_fee")
        taker_fee = parse_fee_rate(cmd.taker_fee, "taker_fee")
    except MoneyError as exc:
        raise Rejected(Reason.INVALID, str(exc)) from exc
    base_scale = 10**bp
    if tick <= 0 or step <= 0:
        raise Rejected(Reason.INVALID, "tick and step must be positive")
    if (tick * step) % base_scale:
        raise Rejected(Reason.INVALID, "tick times step must fit the quote precision")
    return Market(
        cmd.market, cmd.base, cmd.quote, base_scale, bp, qp, tick, step, min_amount,
        min_notional, maker_fee, taker_fee, cmd.status,
    )  # fmt: skip
