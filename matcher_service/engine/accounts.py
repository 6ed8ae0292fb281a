"""Balances: per user and asset, ``[available, frozen]`` in asset units.

A balance is a two-item list rather than an object so the matching loop can update it in
place with plain indexing, the cheapest mutation CPython offers.
"""

from __future__ import annotations

from shared.messages import FEE_ACCOUNT, BalanceChanged

AVAILABLE, FROZEN = 0, 1


class Accounts:
    __slots__ = ("deposits", "fees", "users", "withdrawals")

    def __init__(self) -> None:
        self.users: dict[str, dict[str, list[int]]] = {}
        self.fees: dict[str, int] = {}
        self.deposits: dict[str, int] = {}
        self.withdrawals: dict[str, int] = {}

    def get(self, user: str, asset: str) -> list[int]:
        """The live balance list of ``user`` in ``asset``, created at zero when missing."""
        assets = self.users.get(user)
        if assets is None:
            assets = self.users[user] = {}
        bal = assets.get(asset)
        if bal is None:
            bal = assets[asset] = [0, 0]
        return bal

    def peek(self, user: str, asset: str) -> tuple[int, int]:
        bal = self.users.get(user, {}).get(asset)
        return (bal[0], bal[1]) if bal else (0, 0)

    def add_fee(self, asset: str, amount: int, reason: str, ref: str) -> BalanceChanged:
        total = self.fees[asset] = self.fees.get(asset, 0) + amount
        return BalanceChanged(FEE_ACCOUNT, asset, total, 0, amount, 0, reason, ref)

    def move(
        self, user: str, asset: str, d_avail: int, d_frozen: int, reason: str, ref: str
    ) -> BalanceChanged:
        """Apply a change the caller has checked leaves nothing negative."""
        bal = self.get(user, asset)
        bal[0] += d_avail
        bal[1] += d_frozen
        return BalanceChanged(user, asset, bal[0], bal[1], d_avail, d_frozen, reason, ref)
