"""The books' conservation audit, over Postgres alone: per asset, the sum of all balances (the
fee account's included) == deposits - settled withdrawals; no negative balance; every
account's frozen == its open orders' holds + its held withdrawals.

Served by ``GET /v1/admin/audit`` and run on a schedule (shared/audit_runs.py)."""

from __future__ import annotations

from typing import Any, Final

from shared.db import Database
from shared.messages import FEE_ACCOUNT
from shared.money import format_units
from shared.times import utc_now

_TOTALS_SQL: Final = """
SELECT a.asset, a.precision,
       coalesce(b.total, 0), coalesce(b.fees, 0),
       coalesce(d.total, 0), coalesce(w.total, 0)
FROM assets a
LEFT JOIN (SELECT asset, sum(available + frozen) AS total,
                  sum(CASE WHEN user_id = :fees THEN available + frozen ELSE 0 END) AS fees
           FROM balances GROUP BY asset) b ON b.asset = a.asset
LEFT JOIN (SELECT asset, sum(amount) AS total FROM deposits GROUP BY asset) d
       ON d.asset = a.asset
LEFT JOIN (SELECT asset, sum(amount) AS total FROM withdrawals
           WHERE state = 'settled' GROUP BY asset) w ON w.asset = a.asset
ORDER BY a.asset
"""
_NEGATIVE_SQL: Final = """
SELECT user_id, asset, available, frozen FROM balances
WHERE available < 0 OR frozen < 0 ORDER BY user_id, asset LIMIT :limit
"""
# What each account must hold frozen: the open orders' holds (quote for a buy, base for a
# sell) plus withdrawals held (amount and fee).
_FROZEN_SQL: Final = """
WITH holds AS (
    SELECT o.user_id, CASE WHEN o.side = 'buy' THEN m.quote ELSE m.base END AS asset,
           o.frozen AS amount
    FROM orders o JOIN markets m ON m.market = o.market
    WHERE o.status IN ('open', 'partially_filled')
    UNION ALL
    SELECT user_id, asset, amount + fee FROM withdrawals WHERE state = 'held'
), expected AS (
    SELECT user_id, asset, sum(amount) AS frozen FROM holds GROUP BY user_id, asset
)
SELECT coalesce(b.user_id, e.user_id), coalesce(b.asset, e.asset),
       coalesce(b.frozen, 0), coalesce(e.frozen, 0)
FROM balances b FULL JOIN expected e ON e.user_id = b.user_id AND e.asset = b.asset
WHERE coalesce(b.frozen, 0) <> coalesce(e.frozen, 0)
ORDER BY 1, 2 LIMIT :limit
"""
_MAX_LISTED: Final = 1000


def audit(db: Database) -> dict[str, Any]:
    """The report: ``ok`` false when anything differs, each difference in ``mismatches``."""
    # One snapshot for every query (an error rolls it back: shared.db.SharedConnection).
    db.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    seq = db.run("SELECT coalesce(max(seq), 0) FROM oplog")[0][0]
    totals = db.run(_TOTALS_SQL, fees=FEE_ACCOUNT)
    negative = db.run(_NEGATIVE_SQL, limit=_MAX_LISTED)
    frozen = db.run(_FROZEN_SQL, limit=_MAX_LISTED)
    db.run("COMMIT")
    precisions: dict[str, int] = {}
    assets: dict[str, Any] = {}
    mismatches: list[dict[str, Any]] = []
    for asset, precision, balances, fees, deposits, withdrawals in totals:
        p = precisions[asset] = int(precision)
        expected = int(deposits) - int(withdrawals)
        ok = int(balances) == expected
        assets[asset] = {
            "balances": format_units(int(balances), p),
            "fees": format_units(int(fees), p),
            "deposits": format_units(int(deposits), p),
            "withdrawals": format_units(int(withdrawals), p),
            "ok": ok,
        }
        if not ok:
            mismatches.append(
                {
                    "kind": "conservation",
                    "asset": asset,
                    "actual": format_units(int(balances), p),
                    "expected": format_units(expected, p),
                    "message": "sum of balances (fees included) != deposits - settled withdrawals",
                }
            )
    for user, asset, available, frozen_now in negative:
        p = precisions.get(asset, 0)
        mismatches.append(
            {
                "kind": "negative_balance",
                "asset": asset,
                "user_id": user,
                "available": format_units(int(available), p),
                "frozen": format_units(int(frozen_now), p),
                "message": "a balance is negative",
            }
        )
    for user, asset, actual, expected_frozen in frozen:
        p = precisions.get(asset, 0)
        mismatches.append(
            {
                "kind": "frozen",
                "asset": asset,
                "user_id": user,
                "actual": format_units(int(actual), p),
                "expected": format_units(int(expected_frozen), p),
                "message": "frozen != open orders' holds + held withdrawals",
            }
        )
    return {
        "ok": not mismatches,
        "checked_at": utc_now().isoformat(),
        "seq": int(seq),
        "assets": assets,
        "mismatches": mismatches,
    }
