"""The matcher's durable state in Postgres: one transaction per batch.

A batch's oplog rows and every effect of its events (balances, ledger, orders, trades,
deposits, withdrawals, markets) are written together with ``unnest`` over typed arrays, one
statement per table, so a batch of a thousand commands costs a handful of round trips. The
transaction first checks the matcher's fencing epoch: a matcher that lost the lease cannot
commit anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final, NamedTuple

import msgspec
import pg8000.exceptions

from matcher_service.sequencer import Parked
from shared.db import Database
from shared.messages import (
    AnyCommand,
    Applied,
    AssetCreated,
    BalanceChanged,
    DepositCredited,
    MarketChanged,
    OrderAccepted,
    OrderAmended,
    OrderListChanged,
    OrderTriggered,
    OrderUpdated,
    Trade,
    WithdrawalChanged,
    command_decoder,
)

Batch = Sequence[tuple[AnyCommand, Applied]]

_json = msgspec.json.Encoder()
HOLDS = frozenset({"order_freeze", "order_release", "withdrawal_hold"})
"""Balance changes between available and frozen: not balance history (see the ledger table)."""
NOT_LEDGER = HOLDS | {"trade_fee"}
"""Balance changes without a ledger row: the holds, and the fee account's fee of each trade,
which the trade's own row holds (``trades.maker_fee``/``taker_fee``, docs/decisions/0037)."""


ORDER_COLUMNS: Final = (
    "order_id", "user_id", "market", "side", "order_type", "price", "amount", "quote_amount",
    "time_in_force", "post_only", "client_order_id", "status", "filled", "filled_quote", "fee",
    "frozen", "reason", "created_seq", "updated_seq", "created_ts", "updated_ts", "stop",
    "stop_price", "expires_at", "list_id", "triggered_ts",
)  # fmt: skip
"""Every column of a new order's row (a row's missing keys are NULL)."""


class Known(NamedTuple):
    seq: int
    ok: bool
    reason: str | None
    order_id: int | None


class FencedError(RuntimeError):
    """Another matcher took over: this one must stop applying commands."""


class BatchWrites:
    """All of a batch's writes as ONE statement of data-modifying CTEs: one round trip
    instead of one per table. Each table's rows travel as one JSON parameter that Postgres
    unpacks (json_populate_recordset), encoded in C by msgspec; the driver's per-value array
    escaping cost five times more. Built by ``Store.prepare`` (on the thread that applied the
    batch), sent by ``Store.write_prepared`` (on the committer thread)."""

    def __init__(self, batch: Batch = ()) -> None:
        self.batch = batch  # what the writes are of
        self.parts: list[str] = []
        self.params: dict[str, str] = {}

    def add(self, rows: Sequence[dict[str, Any]], sql: str, keys: Sequence[int] = ()) -> None:
        """``sql`` reads the rows as ``:{param}``; with ``keys``, also these integers as a
        ``bigint[]`` in ``:{param}k``."""
        if rows:
            param = f"p{len(self.parts)}"
            self.params[param] = _json.encode(rows).decode()
            if keys:
                self.params[f"{param}k"] = "{" + ",".join(map(str, keys)) + "}"
            self.parts.append(sql.format(param=param))

    def add_oplog(self, rows: Sequence[dict[str, Any]], commands: Sequence[bytes]) -> None:
        """The oplog rows, their commands apart: one text of the commands' JSON joined by
        newlines (JSON has none outside its strings' escapes) that Postgres splits and zips
        with the rows, rather than each command a JSON string inside the row, escaped by the
        encoder and unescaped again by the server (an eighth less backend CPU for the insert,
        docs/benchmarks.md)."""
        if rows:
            param = f"p{len(self.parts)}"
            self.params[param] = _json.encode(rows).decode()
            self.params[f"{param}c"] = b"\n".join(commands).decode()
            self.parts.append(
                "INSERT INTO oplog (seq, command_id, ts, command, ok, reason, order_id)"
                " SELECT r.seq, r.command_id, r.ts, r.command, r.ok, r.reason, r.order_id"
                f" FROM ROWS FROM (json_populate_recordset(NULL::oplog, CAST(:{param} AS json)),"
                f" unnest(string_to_array(CAST(:{param}c AS text), chr(10))))"
                " AS r(seq, command_id, ts, no_command, ok, reason, order_id, command)"
            )

    def insert(
        self,
        table: str,
        rows: Sequence[dict[str, Any]],
        tail: str = "",
        columns: Sequence[str] = (),
    ) -> None:
        """Rows of ``table`` (their columns: ``columns``, else the first row's keys)."""
        if rows:
            cols = ", ".join(columns or rows[0])
            self.add(
                rows,
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM"
                f" json_populate_recordset(NULL::{table}, CAST(:{{param}} AS json)) {tail}",
            )

    def run_fenced(self, db: Database, epoch: int, published_seq: int | None = None) -> None:
        """Everything as one statement, so one transaction with no BEGIN or COMMIT round trip
        (it commits as it ends): its first part takes the lease row FOR SHARE and fails the
        whole statement, writing nothing, unless the lease is still at ``epoch``. With
        ``published_seq``, the events cursor moves up to it in the same statement."""
        parts, params = self.parts, self.params
        if published_seq is not None:
            parts = [*parts, _CURSOR]
            params = {**params, "published": str(published_seq)}
        ctes = "".join(f", w{i} AS ({part})" for i, part in enumerate(parts))
        db.run(f"WITH lease AS ({_FENCE}){ctes} SELECT ok FROM lease", epoch=epoch, **params)


_CURSOR: Final = (
    "UPDATE outbox_cursor SET seq = CAST(:published AS bigint)"
    " WHERE name = 'events' AND seq < CAST(:published AS bigint)"
)
_FENCED: Final = "fenced:"
# One row, always: 1 when the lease is at :epoch, else an error that names both epochs (a
# failed cast is how plain SQL raises).
_FENCE: Final = (
    "SELECT CASE WHEN l.epoch = CAST(:epoch AS bigint) THEN 1 ELSE CAST("
    f"'{_FENCED} the lease epoch is ' || coalesce(CAST(l.epoch AS text), 'gone')"
    " || ', mine is ' || CAST(:epoch AS text) AS int) END AS ok"
    " FROM (SELECT NULL) AS one"
    " LEFT JOIN (SELECT epoch FROM matcher_lease WHERE id = 1 FOR SHARE) AS l ON true"
)


class _Rows(NamedTuple):
    """One batch's rows by table (Store._rows); dicts are keyed by the row's primary key."""

    oplog: list[dict[str, Any]]
    commands: list[bytes]  # the oplog rows' commands (JSON), in the same order
    ledger: list[dict[str, Any]]
    balances: dict[tuple[str, str], dict[str, Any]]
    new_orders: dict[int, dict[str, Any]]
    updates: dict[int, dict[str, Any]]
    trades: list[dict[str, Any]]
    deposits: list[dict[str, Any]]
    withdrawals: dict[str, dict[str, Any]]
    assets: list[dict[str, Any]]
    markets: dict[str, dict[str, Any]]
    lists: dict[int, dict[str, Any]]


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------ the batch

    def write_batch(
        self,
        epoch: int,
        batch: Batch,
        published_seq: int | None = None,
        parked: Sequence[Parked] = (),
        unparked: Sequence[str] = (),
    ) -> None:
        """Everything the batch did, in one statement (one transaction, one round trip), or
        nothing; a lease taken over since ``epoch`` fails it (``FencedError``). ``published_seq``
        records how far the events topic has been fed (by the batches before this one);
        ``parked`` are the commands the batch held back (matcher_service/sequencer.py),
        ``unparked`` the ids of those held back before that it applied."""
        self.write_prepared(epoch, self.prepare(batch, parked, unparked), published_seq)

    @classmethod
    def prepare(
        cls, batch: Batch, parked: Sequence[Parked] = (), unparked: Sequence[str] = ()
    ) -> BatchWrites:
        """``write_batch``'s writes, built but not sent: pure Python, so the matcher builds
        them while the batch before is still being written."""
        return cls._statements(cls._rows(batch), parked, unparked, batch)

    def write_prepared(
        self, epoch: int, writes: BatchWrites, published_seq: int | None = None
    ) -> None:
        """Run writes from ``prepare`` as ``write_batch`` does (the events cursor added now:
        it is known only when the batch before has been sent)."""
        try:
            writes.run_fenced(self.db, epoch, published_seq)
        except pg8000.exceptions.DatabaseError as exc:
            if _FENCED in str(exc):
                raise FencedError(str(exc)) from None
            raise

    @staticmethod
    def _rows(batch: Batch) -> _Rows:
        """The batch's rows, table by table: every command's oplog entry and the effects of its
        events, each row keyed so that a later change in the batch replaces an earlier one."""
        oplog: list[dict[str, Any]] = []
        commands: list[bytes] = []
        ledger: list[dict[str, Any]] = []
        balances: dict[tuple[str, str], dict[str, Any]] = {}
        new_orders: dict[int, dict[str, Any]] = {}
        updates: dict[int, dict[str, Any]] = {}
        trades: list[dict[str, Any]] = []
        deposits: list[dict[str, Any]] = []
        withdrawals: dict[str, dict[str, Any]] = {}
        assets: list[dict[str, Any]] = []
        markets: dict[str, dict[str, Any]] = {}
        lists: dict[int, dict[str, Any]] = {}

        for cmd, applied in batch:
            seq, ts = applied.seq, cmd.ts
            entry = {
                "seq": seq, "command_id": cmd.id, "ts": ts, "ok": applied.ok,
                "reason": applied.reason, "order_id": None,
            }  # fmt: skip
            oplog.append(entry)
            commands.append(_json.encode(cmd))
            for ev in applied.events:
                kind = type(ev)
                if kind is BalanceChanged:
                    assert isinstance(ev, BalanceChanged)
                    if ev.reason not in NOT_LEDGER:
                        ledger.append(
                            {
                                "seq": seq, "ts": ts, "user_id": ev.user, "asset": ev.asset,
                                "delta_available": ev.delta_available,
                                "delta_frozen": ev.delta_frozen, "available": ev.available,
                                "frozen": ev.frozen, "reason": ev.reason, "ref": ev.ref,
                            }
                        )  # fmt: skip
                    balances[(ev.user, ev.asset)] = {
                        "user_id": ev.user, "asset": ev.asset, "available": ev.available,
                        "frozen": ev.frozen, "seq": seq,
                    }  # fmt: skip
                    if ev.reason == "order_freeze":
                        # The hold of an order that rests (or of a pending stop); of an
                        # older order, one that triggered or was amended in this batch.
                        ref = int(ev.ref)
                        order = new_orders.get(ref) or updates.get(ref)
                        if order is not None:
                            order["frozen"] = order.get("frozen", 0) + ev.delta_frozen
                elif kind is OrderAccepted:
                    assert isinstance(ev, OrderAccepted)
                    entry["order_id"] = ev.order_id
                    # Only the fields it has: a missing key is a NULL column, and the
                    # server unpacks each key of each row (a plain order has ten empty).
                    new = new_orders[ev.order_id] = {
                        "order_id": ev.order_id, "user_id": ev.user, "market": ev.market,
                        "side": ev.side, "order_type": ev.order_type,
                        "time_in_force": ev.time_in_force, "post_only": ev.post_only,
                        "status": "open", "filled": 0, "filled_quote": 0, "fee": 0, "frozen": 0,
                        "created_seq": seq, "updated_seq": seq, "created_ts": ts,
                        "updated_ts": ts,
                    }  # fmt: skip
                    for key, value in (
                        ("price", ev.price), ("amount", ev.amount),
                        ("quote_amount", ev.quote_amount), ("client_order_id", ev.client_order_id),
                        ("stop", ev.stop), ("stop_price", ev.stop_price),
                        ("expires_at", ev.expires_at), ("list_id", ev.list_id),
                    ):  # fmt: skip
                        if value is not None:
                            new[key] = value
                elif kind is OrderUpdated:
                    assert isinstance(ev, OrderUpdated)
                    row = new_orders.get(ev.order_id) or updates.setdefault(
                        ev.order_id, {"order_id": ev.order_id}
                    )
                    row.update(
                        status=ev.status, filled=ev.filled, filled_quote=ev.filled_quote,
                        fee=ev.fee, frozen=ev.frozen, reason=ev.reason, updated_seq=seq,
                        updated_ts=ts,
                    )  # fmt: skip
                elif kind is OrderTriggered or kind is OrderAmended:
                    assert isinstance(ev, OrderTriggered | OrderAmended)
                    row = new_orders.get(ev.order_id) or updates.setdefault(
                        ev.order_id, {"order_id": ev.order_id}
                    )
                    row.update(updated_seq=seq, updated_ts=ts)
                    if isinstance(ev, OrderTriggered):
                        # Its hold is released now; a freeze follows if it rests.
                        row.update(triggered_ts=ts, frozen=0)
                    else:
                        row.update(price=ev.price, amount=ev.amount, frozen=ev.frozen)
                elif kind is OrderListChanged:
                    assert isinstance(ev, OrderListChanged)
                    lists.setdefault(ev.list_id, {"created_seq": seq}).update(
                        list_id=ev.list_id, user_id=ev.user, market=ev.market, side=ev.side,
                        status=ev.status,
                        limit_order_id=ev.limit_order_id, stop_order_id=ev.stop_order_id,
                        reason=ev.reason, updated_seq=seq, updated_ts=ts,
                    )  # fmt: skip
                elif kind is Trade:
                    assert isinstance(ev, Trade)
                    trades.append(
                        {
                            "trade_id": ev.trade_id, "seq": seq, "ts": ev.ts,
                            "market": ev.market, "price": ev.price, "amount": ev.amount,
                            "quote": ev.quote, "taker_side": ev.taker_side,
                            "maker_order_id": ev.maker_order_id,
                            "taker_order_id": ev.taker_order_id, "maker_user": ev.maker_user,
                            "taker_user": ev.taker_user, "maker_fee": ev.maker_fee,
                            "taker_fee": ev.taker_fee,
                        }
                    )  # fmt: skip
                elif kind is DepositCredited:
                    assert isinstance(ev, DepositCredited)
                    deposits.append(
                        {
                            "ref": ev.ref, "user_id": ev.user, "asset": ev.asset,
                            "amount": ev.amount, "seq": seq, "ts": ts,
                        }
                    )  # fmt: skip
                elif kind is WithdrawalChanged:
                    assert isinstance(ev, WithdrawalChanged)
                    withdrawals[ev.withdrawal_id] = {
                        "withdrawal_id": ev.withdrawal_id, "user_id": ev.user,
                        "asset": ev.asset, "amount": ev.amount, "fee": ev.fee,
                        "state": ev.state, "seq": seq, "ts": ts,
                    }  # fmt: skip
                elif kind is AssetCreated:
                    assert isinstance(ev, AssetCreated)
                    assets.append({"asset": ev.asset, "precision": ev.precision, "seq": seq})
                elif kind is MarketChanged:
                    assert isinstance(ev, MarketChanged)
                    markets[ev.market] = {**msgspec.structs.asdict(ev), "seq": seq}
        return _Rows(
            oplog, commands, ledger, balances, new_orders, updates, trades, deposits, withdrawals,
            assets, markets, lists,
        )  # fmt: skip

    @staticmethod
    def _statements(
        rows: _Rows, parked: Sequence[Parked], unparked: Sequence[str], batch: Batch = ()
    ) -> BatchWrites:
        """One statement for all of it: each table's rows inserted, upserted or applied as
        updates, then the parked commands held back and those released."""
        writes = BatchWrites(batch)
        writes.add_oplog(rows.oplog, rows.commands)
        writes.insert("assets", rows.assets, "ON CONFLICT (asset) DO NOTHING")
        writes.insert(
            "markets",
            list(rows.markets.values()),
            "ON CONFLICT (market) DO UPDATE SET maker_fee = EXCLUDED.maker_fee,"
            " taker_fee = EXCLUDED.taker_fee, status = EXCLUDED.status, seq = EXCLUDED.seq",
        )
        writes.insert("ledger", rows.ledger)
        writes.insert(
            "balances",
            list(rows.balances.values()),
            "ON CONFLICT (user_id, asset) DO UPDATE SET available = EXCLUDED.available,"
            " frozen = EXCLUDED.frozen, seq = EXCLUDED.seq",
        )
        # New orders carry their state at the end of the batch; updates touch older orders
        # only, so the two never meet in one statement.
        writes.insert("orders", list(rows.new_orders.values()), columns=ORDER_COLUMNS)
        # An update carries what its events said: the fields it lacks stay as they were. The
        # orders are also named by an array: the planner, which takes a function's rows for
        # a hundred, otherwise hash-joins them against a scan of the whole table (a cost
        # that grows with every order ever placed) rather than looking each one up.
        writes.add(
            list(rows.updates.values()),
            "UPDATE orders SET status = COALESCE(u.status, orders.status),"
            " filled = COALESCE(u.filled, orders.filled),"
            " filled_quote = COALESCE(u.filled_quote, orders.filled_quote),"
            " fee = COALESCE(u.fee, orders.fee), frozen = COALESCE(u.frozen, orders.frozen),"
            " reason = COALESCE(u.reason, orders.reason),"
            " price = COALESCE(u.price, orders.price), amount = COALESCE(u.amount, orders.amount),"
            " triggered_ts = COALESCE(u.triggered_ts, orders.triggered_ts),"
            " updated_seq = u.updated_seq, updated_ts = u.updated_ts"
            " FROM json_populate_recordset(NULL::orders, CAST(:{param} AS json)) AS u"
            " WHERE orders.order_id = u.order_id"
            " AND orders.order_id = ANY(CAST(:{param}k AS bigint[]))",
            keys=list(rows.updates),
        )
        writes.insert(
            "order_lists",
            list(rows.lists.values()),
            "ON CONFLICT (list_id) DO UPDATE SET status = EXCLUDED.status,"
            " reason = EXCLUDED.reason, updated_seq = EXCLUDED.updated_seq,"
            " updated_ts = EXCLUDED.updated_ts",
        )
        writes.insert("trades", rows.trades)
        writes.insert("deposits", rows.deposits)
        writes.insert(
            "withdrawals",
            list(rows.withdrawals.values()),
            "ON CONFLICT (withdrawal_id) DO UPDATE SET state = EXCLUDED.state,"
            " seq = EXCLUDED.seq, ts = EXCLUDED.ts",
        )
        writes.insert(
            "parked",
            [
                {
                    "command_id": p.cmd.id, "user_id": p.user, "parked_at": p.parked_at,
                    "command": _json.encode(p.cmd).decode(),
                }
                for p in parked
            ],
            "ON CONFLICT (command_id) DO NOTHING",
        )  # fmt: skip
        writes.add(
            [{"command_id": cid} for cid in unparked],
            "DELETE FROM parked USING json_populate_recordset(NULL::parked, CAST(:{param} AS json))"
            " AS u WHERE parked.command_id = u.command_id",
        )
        return writes

    # ------------------------------------------------------------ reads for the matcher

    def known_results(self, command_ids: Sequence[str]) -> dict[str, Known]:
        """What became of commands already applied (a redelivery gets the same reply)."""
        if not command_ids:
            return {}
        rows = self.db.run(
            "SELECT command_id, seq, ok, reason, order_id FROM oplog WHERE command_id IN"
            " (SELECT json_array_elements_text(CAST(:ids AS json)))",
            ids=_json.encode(list(command_ids)).decode(),
        )
        return {cid: Known(int(seq), ok, reason, oid) for cid, seq, ok, reason, oid in rows}

    def parked(self) -> list[tuple[AnyCommand, int]]:
        """The commands held back for a missing earlier one, with when (ms)."""
        rows = self.db.run("SELECT command, parked_at FROM parked ORDER BY parked_at, command_id")
        return [(command_decoder.decode(text), int(at)) for text, at in rows]

    def published_seq(self) -> int:
        return int(self.db.run("SELECT seq FROM outbox_cursor WHERE name = 'events'")[0][0])

    def last_seq(self) -> int:
        rows = self.db.run("SELECT coalesce(max(seq), 0) FROM oplog")
        return int(rows[0][0])

    def latest_snapshot(self, max_seq: int | None = None) -> tuple[int, str, bytes] | None:
        """The newest snapshot (at or before ``max_seq`` when given)."""
        rows = self.db.run(
            "SELECT seq, state_hash, data FROM snapshots WHERE seq <= :m ORDER BY seq DESC LIMIT 1",
            m=(1 << 62) if max_seq is None else max_seq,
        )
        return (int(rows[0][0]), rows[0][1], bytes(rows[0][2])) if rows else None

    def save_snapshot(self, seq: int, state_hash: str, data: bytes) -> None:
        self.db.run(
            "INSERT INTO snapshots (seq, state_hash, data) VALUES (:s, :h, :d)"
            " ON CONFLICT (seq) DO NOTHING",
            s=seq, h=state_hash, d=data,
        )  # fmt: skip

    def commands_after(self, seq: int, page: int = 10_000) -> Iterator[tuple[int, AnyCommand]]:
        """The oplog after ``seq``, in order, page by page."""
        while True:
            rows = self.db.run(
                "SELECT seq, command::text FROM oplog WHERE seq > :s ORDER BY seq LIMIT :n",
                s=seq, n=page,
            )  # fmt: skip
            for row_seq, text in rows:
                yield int(row_seq), command_decoder.decode(text)
            if len(rows) < page:
                return
            seq = int(rows[-1][0])

    def trades_since(self, ts: int) -> list[Trade]:
        rows = self.db.run(
            "SELECT trade_id, market, price::text, amount::text, quote::text, taker_side,"
            " maker_order_id, taker_order_id, maker_user, taker_user, maker_fee::text,"
            " taker_fee::text, ts FROM trades WHERE ts >= :t ORDER BY trade_id",
            t=ts,
        )
        return [
            Trade(
                r[0],
                r[1],
                int(r[2]),
                int(r[3]),
                int(r[4]),
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                int(r[10]),
                int(r[11]),
                r[12],
            )
            for r in rows
        ]

    def take_lease(self, holder: str) -> int:
        """Bump the fencing epoch (the caller holds the advisory lock); returns the new one."""
        rows = self.db.run(
            "UPDATE matcher_lease SET epoch = epoch + 1, holder = :h, acquired_at = now()"
            " WHERE id = 1 RETURNING epoch",
            h=holder,
        )
        return int(rows[0][0])
