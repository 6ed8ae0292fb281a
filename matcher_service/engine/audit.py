"""The invariants of the engine, checked over its whole state: a test helper and an audit.

Returns a list of human-readable problems; an empty list means every rule holds.
"""

from __future__ import annotations

from collections import defaultdict

from matcher_service.engine.engine import Engine


def audit(engine: Engine) -> list[str]:
    problems: list[str] = []
    acc = engine.accounts
    held: dict[tuple[str, str], int] = defaultdict(int)
    for o in engine.orders.values():
        m = o.market
        held[(o.user, m.quote if o.is_buy else m.base)] += o.hold()
        if o.remaining <= 0 or o.remaining > o.amount:
            problems.append(f"order {o.id} has remaining {o.remaining} of {o.amount}")
    for s in engine.stops.values():
        m = s.market
        held[(s.user, m.quote if s.is_buy else m.base)] += s.hold
        triggers = engine.triggers[m.name]
        if s.key not in (triggers.rising if s.rising else triggers.falling):
            problems.append(f"stop {s.id} is not in its market's triggers")
        if m.last_price and s.triggered_at(m.last_price):
            problems.append(f"stop {s.id} is pending though the last price reached it")
        if s.id in engine.orders:
            problems.append(f"stop {s.id} is also in a book")
    for name, triggers in engine.triggers.items():
        if len(triggers.rising) + len(triggers.falling) != sum(
            1 for s in engine.stops.values() if s.market.name == name
        ):
            problems.append(f"{name} triggers hold stale entries")
    for lst in engine.lists.values():
        limit, stop = engine.orders.get(lst.limit_id), engine.stops.get(lst.stop_id)
        if limit is None or stop is None or limit.list_id != lst.list_id != stop.list_id:
            problems.append(f"list {lst.list_id} lacks an open order")
    for w in engine.pending.values():
        held[(w.user, w.asset)] += w.amount + w.fee

    total: dict[str, int] = defaultdict(int)
    for user, assets in acc.users.items():
        for asset, (avail, frozen) in assets.items():
            total[asset] += avail + frozen
            if avail < 0 or frozen < 0:
                problems.append(f"{user} {asset} is negative: {avail} / {frozen}")
            if frozen != held.get((user, asset), 0):
                problems.append(
                    f"{user} {asset} frozen {frozen} != held {held.get((user, asset), 0)}"
                )
    for (user, asset), amount in held.items():
        if amount and acc.users.get(user, {}).get(asset) is None:
            problems.append(f"{user} {asset} holds {amount} without an account")
    for asset in engine.assets:
        fees = acc.fees.get(asset, 0)
        if fees < 0:
            problems.append(f"fee account {asset} is negative: {fees}")
        expected = acc.deposits.get(asset, 0) - acc.withdrawals.get(asset, 0)
        if total[asset] + fees != expected:
            problems.append(
                f"{asset}: accounts {total[asset]} + fees {fees} != "
                f"deposits - withdrawals {expected}"
            )

    live = 0
    for name, book in engine.books.items():
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None and bid >= ask:
            problems.append(f"{name} is crossed: bid {bid} >= ask {ask}")
        for is_buy in (True, False):
            for level in book.levels(is_buy):
                orders = list(level.live())
                live += len(orders)
                if not orders or level.count != len(orders):
                    problems.append(f"{name} level {level.price} count {level.count} is wrong")
                if level.qty != sum(o.remaining for o in orders):
                    problems.append(f"{name} level {level.price} quantity is wrong")
                for o in orders:
                    if engine.orders.get(o.id) is not o or o.price != level.price:
                        problems.append(f"order {o.id} is misplaced in {name}")
    if live != len(engine.orders):
        problems.append(f"{live} orders on books but {len(engine.orders)} indexed as open")
    return problems
