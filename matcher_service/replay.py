"""Rebuild the engine from the oplog and print its state hash, balances and books.

For audits and debugging:

    python -m matcher_service.replay                 # from Postgres (PG* variables)
    python -m matcher_service.replay --from-snapshot # latest snapshot + the oplog after it
    python -m matcher_service.replay --file cmds.jsonl   # one command (JSON) per line
    python -m matcher_service.replay --export cmds.jsonl # write the oplog as JSON lines

Replaying from scratch and from a snapshot must print the same hash.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from matcher_service.engine import Engine
from matcher_service.engine.audit import audit
from matcher_service.engine.snapshot import state_hash
from matcher_service.persistence import Store
from matcher_service.service import recover
from shared.config import DEFAULT_MAX_OPEN_ORDERS, PostgresConfig
from shared.db import connect
from shared.messages import AnyCommand, decode_command, encode
from shared.money import format_units


def from_file(path: Path) -> Iterator[AnyCommand]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield decode_command(line)
                except ValueError as exc:
                    raise SystemExit(f"{path}:{number}: {exc}") from exc


def replay(commands: Iterable[AnyCommand], engine: Engine | None = None) -> Engine:
    engine = engine or Engine()
    for cmd in commands:
        engine.apply(cmd)
    return engine


def summary(engine: Engine, depth: int = 5) -> dict[str, object]:
    def fmt(asset: str, units: int) -> str:
        return format_units(units, engine.assets[asset])

    balances: dict[str, dict[str, dict[str, str]]] = {}
    for (user, asset), (avail, frozen) in sorted(engine.balances().items()):
        balances.setdefault(user, {})[asset] = {
            "available": fmt(asset, avail),
            "frozen": fmt(asset, frozen),
        }
    books = {}
    for name, book in sorted(engine.books.items()):
        m = engine.markets[name]
        bids, asks = book.depth(depth)
        books[name] = {
            "status": m.status,
            "bids": [[fmt(m.quote, p), fmt(m.base, a)] for p, a in bids],
            "asks": [[fmt(m.quote, p), fmt(m.base, a)] for p, a in asks],
            "open_orders": sum(1 for o in engine.orders.values() if o.market is m),
            "pending_stops": sum(1 for s in engine.stops.values() if s.market is m),
        }
    return {
        "seq": engine.seq,
        "state_hash": state_hash(engine),
        "audit": audit(engine),
        "fees": {a: fmt(a, engine.fees(a)) for a in sorted(engine.assets)},
        "balances": balances,
        "books": books,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="rebuild state from the oplog")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", type=Path, help="JSON lines of commands instead of Postgres")
    source.add_argument("--from-snapshot", action="store_true", help="start at the latest snapshot")
    source.add_argument("--export", type=Path, help="write the oplog as JSON lines and stop")
    parser.add_argument("--depth", type=int, default=5, help="book levels to print")
    parser.add_argument(
        "--max-open-orders", type=int, default=DEFAULT_MAX_OPEN_ORDERS,
        help="the matcher's MAX_OPEN_ORDERS (0: no limit); a replay needs the same",
    )  # fmt: skip
    args = parser.parse_args(argv)
    limit = args.max_open_orders or None

    if args.file:
        engine = replay(from_file(args.file), Engine(limit))
    else:
        db = connect(PostgresConfig.load(), "replay")
        store = Store(db)
        try:
            if args.export:
                with args.export.open("wb") as out:
                    for _, cmd in store.commands_after(0):
                        out.write(encode(cmd) + b"\n")
                return 0
            if args.from_snapshot:
                engine = recover(store, max_open_orders=limit).engine
            else:
                engine = replay((cmd for _, cmd in store.commands_after(0)), Engine(limit))
        finally:
            db.close()
    report = summary(engine, args.depth)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 1 if report["audit"] else 0


if __name__ == "__main__":
    sys.exit(main())
