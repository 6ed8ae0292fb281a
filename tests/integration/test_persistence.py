"""What a batch's statement writes: the oplog keeps each command as it was applied, and the
projected rows say what the events said (docs/decisions/0037)."""

from __future__ import annotations

import pytest

from matcher_service.engine import Engine
from matcher_service.persistence import Store
from shared.books_audit import audit
from shared.config import PostgresConfig
from shared.db import connect
from shared.messages import (
    FEE_ACCOUNT,
    AnyCommand,
    Applied,
    CancelOrder,
    PlaceOrder,
    UserSeq,
    encode,
)
from tests.integration.matcher_helpers import ETH, USDT, funded, market_setup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _apply(engine: Engine, commands: list[AnyCommand], ts: int) -> list[tuple[AnyCommand, Applied]]:
    batch: list[tuple[AnyCommand, Applied]] = []
    for cmd in commands:
        cmd.ts = ts
        batch.append((cmd, engine.apply(cmd)))
    return batch


def test_oplog_commands_and_projection(pg: PostgresConfig) -> None:
    """Commands whose JSON holds newlines, quotes and backslashes in a string (refused, still
    journaled) come back from the oplog byte for byte, in order, next to the commands
    around them; a trade's fees reach the fee account's balance and the trade's row, and the
    ledger holds the traders' changes only."""
    engine = Engine()
    awkward = 'line\none "quoted" back\\slash\r\ttab'
    orders: list[AnyCommand] = [
        PlaceOrder(id="sell", user="u0", market="ETH-USDT", side="sell", price=2000 * USDT,
                   amount=ETH, client_order_id="s1", user_seq=UserSeq(1, 1)),
        # Off the price tick: refused.
        PlaceOrder(id="odd\nid", user="u1", market="ETH-USDT", side="buy",
                   price=2000 * USDT + 1, amount=ETH, client_order_id=awkward,
                   user_seq=UserSeq(1, 1)),
        PlaceOrder(id="buy", user="u1", market="ETH-USDT", side="buy", price=2000 * USDT,
                   amount=ETH // 2, user_seq=UserSeq(1, 2)),
        CancelOrder(id="cancel", user="u0", client_order_id="s1", user_seq=UserSeq(1, 2)),
    ]  # fmt: skip
    db = connect(pg, "test")
    try:
        store = Store(db)
        epoch = store.take_lease("test")
        first = _apply(engine, [*market_setup(), *funded(["u0", "u1"])], 1_000)
        store.write_batch(epoch, first, engine.seq)
        second = _apply(engine, orders, 2_000)
        assert not second[1][1].ok  # the awkward one is refused, and journaled all the same
        assert second[2][1].ok  # the buy trades half of the sell, the cancel ends the rest
        store.write_batch(epoch, second, engine.seq)

        logged = list(store.commands_after(0))
        assert [seq for seq, _ in logged] == list(range(1, engine.seq + 1))
        assert [encode(cmd) for _, cmd in logged] == [encode(c) for c, _ in first + second]

        fees = db.run("SELECT sum(maker_fee), sum(taker_fee) FROM trades WHERE maker_user = 'u0'")[
            0
        ]
        assert [int(f) for f in fees] == [2000 * USDT // 2 // 1000, ETH // 2 * 2 // 1000]
        fee_balances = dict(
            db.run("SELECT asset, available FROM balances WHERE user_id = :u", u=FEE_ACCOUNT)
        )
        assert {a: int(v) for a, v in fee_balances.items()} == {
            "USDT": 2000 * USDT // 2 // 1000,
            "ETH": ETH // 2 * 2 // 1000,
        }
        assert db.run("SELECT count(*) FROM ledger WHERE user_id = :u", u=FEE_ACCOUNT) == [[0]]
        reasons = db.run("SELECT user_id, asset, reason FROM ledger WHERE seq = :s", s=7 + 3)
        assert sorted(map(tuple, reasons)) == [
            ("u0", "ETH", "trade"),
            ("u0", "USDT", "trade"),
            ("u1", "ETH", "trade"),
            ("u1", "USDT", "trade"),
        ]
        status = db.run("SELECT user_id, status, filled FROM orders ORDER BY order_id")
        assert [(u, s, int(f)) for u, s, f in status] == [
            ("u0", "cancelled", ETH // 2),
            ("u1", "filled", ETH // 2),
        ]
        assert audit(db)["ok"]
    finally:
        db.close()
