"""Resident memory of the engine holding N resting orders across 10,000 accounts.

Run as its own process (``python -m bench.memory 1000000``) so nothing else is counted.
"""

from __future__ import annotations

import gc
import json
import random
import sys

from bench.ours import STEP, TICK, new_engine
from shared.messages import PlaceOrder

ACCOUNTS = 10_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main() -> None:
    orders = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    engine = new_engine(ACCOUNTS)
    rng = random.Random(1)
    names = [f"u{i}" for i in range(ACCOUNTS)]
    gc.collect()
    before = rss_bytes()
    apply = engine.apply
    for i in range(orders):
        is_buy = i % 2 == 0
        # Bids below 10,000 ticks and asks above: nothing crosses, everything rests.
        price = (10_000 - rng.randint(1, 2_000)) if is_buy else (10_000 + rng.randint(1, 2_000))
        applied = apply(
            PlaceOrder(
                id=str(i), user=names[i % ACCOUNTS], market="ETH-USDT",
                side="buy" if is_buy else "sell", price=price * TICK,
                amount=rng.randint(1, 100) * STEP, client_order_id=None,
            )
        )  # fmt: skip
        assert applied.ok
    gc.collect()
    after = rss_bytes()
    assert len(engine.orders) == orders
    print(json.dumps({"orders": orders, "engine_bytes_per_order": (after - before) / orders}))


if __name__ == "__main__":
    main()
