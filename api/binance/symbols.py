"""Binance symbols (``ETHUSDT``) and the exchange's markets (``ETH-USDT``).

A symbol is the market's name without its dash. Two listed markets that would make the same
symbol (``AB-CDE`` and ``ABC-DE``) are left out of the mapping: neither is reachable under a
symbol that could mean both.
"""

from __future__ import annotations

from collections.abc import Iterable


def symbol_of(market: str) -> str:
    """``ETH-USDT`` -> ``ETHUSDT``."""
    return market.replace("-", "")


def symbol_map(markets: Iterable[str]) -> dict[str, str]:
    """Symbol -> market for the listed ``markets`` (ambiguous symbols left out)."""
    out: dict[str, str] = {}
    clashes: set[str] = set()
    for market in markets:
        symbol = symbol_of(market)
        if symbol in out and out[symbol] != market:
            clashes.add(symbol)
        out[symbol] = market
    for symbol in clashes:
        del out[symbol]
    return out


def market_of(symbol: str, markets: Iterable[str]) -> str | None:
    """The listed market ``symbol`` names, or None."""
    return symbol_map(markets).get(symbol)
