"""Our engine driven by the same op streams as the peers, with its full feature set:
funds checked and frozen, fees charged, every event produced."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from bench.peers import PeerResult, now
from matcher_service.engine import Engine
from shared.messages import (
    AnyCommand,
    CancelOrder,
    CreateAsset,
    CreateMarket,
    Deposit,
    PlaceOrder,
    Side,
    Trade,
)

TICK = 10_000  # 0.01 USDT at precision 6
STEP = 10_000  # 0.0001 ETH at precision 8
USERS = 1_000
FUNDS = 10**30  # every account can afford any order in the stream


def new_engine(users: int = USERS) -> Engine:
    e = Engine()
    setup: list[AnyCommand] = [
        CreateAsset(id="a1", asset="ETH", precision=8),
        CreateAsset(id="a2", asset="USDT", precision=6),
        CreateMarket(
            id="m1", market="ETH-USDT", base="ETH", quote="USDT", tick="0.01", step="0.0001",
            min_amount="0.0001", min_notional="0", maker_fee="0.001", taker_fee="0.002",
        ),
    ]  # fmt: skip
    for i in range(users):
        for asset in ("ETH", "USDT"):
            setup.append(Deposit(id=f"d{asset}{i}", user=f"u{i}", asset=asset, amount=FUNDS,
                                 ref=f"{asset}{i}"))  # fmt: skip
    for cmd in setup:
        assert e.apply(cmd).ok
    return e


def run_ours(setup_ops: Sequence[tuple[Any, ...]], ops: Sequence[tuple[Any, ...]]) -> PeerResult:
    e = new_engine()
    apply = e.apply
    owner: dict[int, str] = {}
    names = [f"u{i}" for i in range(USERS)]
    half = USERS // 2  # buyers and sellers in disjoint halves: no self-trade prevention
    counter = [0, 0, 0]  # fills, filled lots, cancels of orders that no longer rest

    def run(stream: Sequence[tuple[Any, ...]]) -> None:
        for n, op in enumerate(stream, 1):
            if op[0] == "place":
                oid, is_buy = op[1], op[2]
                user = names[oid % half + (0 if is_buy else half)]
                owner[oid] = user
                r = apply(
                    PlaceOrder(
                        id=str(n), user=user, market="ETH-USDT", side="buy" if is_buy else "sell",
                        price=op[3] * TICK, amount=op[4] * STEP,
                    )
                )  # fmt: skip
                for ev in r.events:
                    if type(ev) is Trade:
                        counter[0] += 1
                        counter[1] += ev.amount // STEP
            elif not apply(CancelOrder(id=str(n), user=owner.get(op[1], "u0"), order_id=op[1])).ok:
                counter[2] += 1

    run(setup_ops)
    counter[0] = counter[1] = counter[2] = 0
    gc.collect()
    start = now()
    run(ops)
    seconds = now() - start
    return PeerResult("ours", len(ops), seconds, counter[0], counter[1], counter[2])


def run_ours_stops(
    setup_ops: Sequence[tuple[Any, ...]], ops: Sequence[tuple[Any, ...]]
) -> PeerResult:
    """``run_ours`` for streams with stop orders (``bench.streams.stops_stream``), which only
    our engine runs. A stop the last price already triggers is refused and takes no order id,
    so the stream's ids are mapped to the engine's as they are given out. ``cancel_noops``
    counts refused stops too."""
    e = new_engine()
    apply = e.apply
    owner: dict[int, tuple[str, int]] = {}
    names = [f"u{i}" for i in range(USERS)]
    half = USERS // 2
    counter = [0, 0, 0]

    def run(stream: Sequence[tuple[Any, ...]]) -> None:
        for n, op in enumerate(stream, 1):
            kind = op[0]
            if kind == "cancel":
                user, oid = owner.get(op[1], ("u0", 0))
                if not apply(CancelOrder(id=str(n), user=user, order_id=oid)).ok:
                    counter[2] += 1
                continue
            is_buy = op[2]
            user = names[op[1] % half + (0 if is_buy else half)]
            side: Side = "buy" if is_buy else "sell"
            if kind == "place":
                cmd = PlaceOrder(
                    id=str(n), user=user, market="ETH-USDT", side=side, price=op[3] * TICK,
                    amount=op[4] * STEP,
                )  # fmt: skip
            else:
                cmd = PlaceOrder(
                    id=str(n), user=user, market="ETH-USDT", side=side, price=op[4] * TICK,
                    amount=op[5] * STEP, stop="stop_loss", stop_price=op[3] * TICK,
                )  # fmt: skip
            r = apply(cmd)
            if not r.ok:
                counter[2] += 1
                continue
            owner[op[1]] = (user, r.events[0].order_id)  # type: ignore[union-attr]
            for ev in r.events:
                if type(ev) is Trade:
                    counter[0] += 1
                    counter[1] += ev.amount // STEP

    run(setup_ops)
    counter[0] = counter[1] = counter[2] = 0
    gc.collect()
    start = now()
    run(ops)
    seconds = now() - start
    return PeerResult("ours", len(ops), seconds, counter[0], counter[1], counter[2])
