"""Seeded, deterministic order streams for the order-book benchmarks.

An op is a plain tuple:

* ``("place", order_id, is_buy, price, qty)`` -- a limit order (GTC; any uncrossed rest rests);
* ``("stop", order_id, is_buy, stop_price, price, qty)`` -- a stop-loss limit order (GTC):
  pending until the last trade price reaches ``stop_price`` (only our engine runs these);
* ``("cancel", order_id)`` -- cancel a resting order. If the order no longer rests (filled,
  already cancelled, never placed) an engine must treat it as a no-op/reject and count it.

Prices are positive ints in ticks around ``MID`` (10_000 ticks); quantities are 1..100 lots.
Order ids are positive ints, unique within one stream (setup ops included), starting at 1.

Every scenario uses its own ``random.Random(seed)``, so the same ``(n, seed)`` always yields
the same ops. Scenarios:

* :func:`place_stream` -- n passive orders that never cross.
* :func:`cancel_stream` -- setup: n passive orders; measured: cancel all of them, shuffled.
* :func:`mixed_stream` -- setup: a pre-filled book; measured: n ops, ~60% place, ~40% cancel,
  with a drifting mid so that some places trade (see its docstring for the mix).
* :func:`stops_stream` -- as :func:`mixed_stream`, with a tenth of the places stop-loss orders
  that the drifting mid triggers.
"""

from __future__ import annotations

import random
from typing import TypeAlias

PlaceOp: TypeAlias = tuple[str, int, bool, int, int]
CancelOp: TypeAlias = tuple[str, int]
StopOp: TypeAlias = tuple[str, int, bool, int, int, int]
Op: TypeAlias = PlaceOp | CancelOp | StopOp

MID = 10_000
"""Centre of the price range, in ticks."""

HALF_WIDTH = 250
"""Passive orders rest 1..HALF_WIDTH ticks away from the mid (so ~500 levels in all)."""

MAX_QTY = 100
"""Quantities are drawn uniformly from 1..MAX_QTY lots."""


def _passive(rng: random.Random, order_id: int, mid: int) -> PlaceOp:
    """A limit order that does not cross ``mid``: bids below it, asks above it.

    The distance to the mid is the smaller of two uniform draws, so levels near the touch hold
    more orders than far ones (a rough shape of a real book), yet all HALF_WIDTH levels per side
    get used.
    """
    is_buy = rng.random() < 0.5
    offset = min(rng.randint(1, HALF_WIDTH), rng.randint(1, HALF_WIDTH))
    price = mid - offset if is_buy else mid + offset
    return ("place", order_id, is_buy, price, rng.randint(1, MAX_QTY))


def place_stream(n: int, seed: int) -> list[Op]:
    """``n`` non-crossing limit orders (ids 1..n): bids below ``MID``, asks above it.

    Spread over ~2 * HALF_WIDTH price levels, hundreds of orders per level when n is large.
    No op produces a fill.
    """
    rng = random.Random(seed)
    return [_passive(rng, order_id, MID) for order_id in range(1, n + 1)]


def cancel_stream(n: int, seed: int) -> tuple[list[Op], list[Op]]:
    """``(setup, measured)``: setup places ``n`` non-crossing orders (as :func:`place_stream`),
    measured cancels every one of them once, in random order.

    Every cancel hits a resting order; no op produces a fill.
    """
    rng = random.Random(seed)
    setup: list[Op] = [_passive(rng, order_id, MID) for order_id in range(1, n + 1)]
    ids = list(range(1, n + 1))
    rng.shuffle(ids)
    measured: list[Op] = [("cancel", order_id) for order_id in ids]
    return setup, measured


MIXED_SETUP_ORDERS = 10_000
"""Passive orders in the pre-filled book of :func:`mixed_stream`."""

PLACE_SHARE = 0.60
"""Share of measured ops in :func:`mixed_stream` that are places (the rest are cancels)."""

AGGRESSIVE_SHARE = 0.20
"""Share of the places in :func:`mixed_stream` priced through the mid (marketable)."""

DRIFT_PROB = 0.01
"""Per-op probability that the mid of :func:`mixed_stream` moves one tick up or down."""

MAX_DRIFT = 200
"""The mid stays within MID +/- MAX_DRIFT (it is reflected at the bounds)."""


STOP_SHARE = 0.10
"""Share of the places in :func:`stops_stream` that are stop-loss orders."""


def stops_stream(n: int, seed: int) -> tuple[list[Op], list[Op]]:
    """:func:`mixed_stream` with ``STOP_SHARE`` of its places stop-loss limit orders: a buy
    1..20 ticks above the mid (its limit 2 ticks above the stop), a sell as far below it. The
    mid's drift triggers some; some are refused as already triggered, some cancelled."""
    return _mixed(n, seed, STOP_SHARE)


def mixed_stream(n: int, seed: int) -> tuple[list[Op], list[Op]]:
    """``(setup, measured)``: a pre-filled book, then ``n`` mixed ops.

    Setup: ``MIXED_SETUP_ORDERS`` passive orders around ``MID`` (ids 1..MIXED_SETUP_ORDERS).

    Measured, per op (ids keep counting from the setup):

    * with probability ``DRIFT_PROB`` the generator's mid first moves by +/-1 tick (a random
      walk kept within ``MID +/- MAX_DRIFT``), so that new orders follow a moving price and the
      book neither empties nor keeps one frozen shape;
    * ~60% (``PLACE_SHARE``) place a limit order:

      - ~80% passive: 1..HALF_WIDTH ticks away from the current mid, on its own side. After
        the mid has moved, a passive order near the touch can still cross orders resting from
        before; that is intended and adds to the trades;
      - ~20% (``AGGRESSIVE_SHARE``) marketable: a buy priced 1..4 ticks above the mid or a sell
        1..4 ticks below it, with qty 1..2*MAX_QTY, usually sweeping one or more makers; any
        remainder rests (and is never cancelled: the generator assumes it traded away);

    * ~40% cancel a uniformly chosen order the generator believes is still resting (every
      passive order it placed and has not yet cancelled). It does not simulate matching, so the
      target may have been filled in the meantime: engines must treat that as a no-op and count
      it. When the generator believes nothing rests, it places instead.

    Measured with ``bench.peers.run_floor`` at n=200_000: ~7.5% of the ops produce at least one
    fill (~0.15 fills per op), ~8% of the cancels are no-ops, and the book grows from 10k to
    ~25k resting orders (it never empties). Over n=1_000_000: ~9% of ops fill, ~14% no-ops.
    """
    return _mixed(n, seed, 0.0)


def _mixed(n: int, seed: int, stop_share: float) -> tuple[list[Op], list[Op]]:
    rng = random.Random(seed)
    setup: list[Op] = [
        _passive(rng, order_id, MID) for order_id in range(1, MIXED_SETUP_ORDERS + 1)
    ]
    live: list[int] = list(range(1, MIXED_SETUP_ORDERS + 1))
    next_id = MIXED_SETUP_ORDERS + 1
    mid = MID
    measured: list[Op] = []
    for _ in range(n):
        if rng.random() < DRIFT_PROB:
            step = 1 if rng.random() < 0.5 else -1
            if abs(mid + step - MID) > MAX_DRIFT:
                step = -step
            mid += step
        if live and rng.random() >= PLACE_SHARE:
            # swap-remove a random believed-resting id: O(1), deterministic
            index = rng.randrange(len(live))
            live[index], live[-1] = live[-1], live[index]
            measured.append(("cancel", live.pop()))
            continue
        order_id = next_id
        next_id += 1
        if stop_share and rng.random() < stop_share:  # no draw at all without stops
            is_buy = rng.random() < 0.5
            away = rng.randint(1, 20)
            stop = mid + away if is_buy else mid - away
            limit = stop + 2 if is_buy else stop - 2
            measured.append(("stop", order_id, is_buy, stop, limit, rng.randint(1, MAX_QTY)))
            live.append(order_id)
        elif rng.random() < AGGRESSIVE_SHARE:
            is_buy = rng.random() < 0.5
            through = rng.randint(1, 4)
            price = mid + through if is_buy else mid - through
            measured.append(("place", order_id, is_buy, price, rng.randint(1, 2 * MAX_QTY)))
        else:
            measured.append(_passive(rng, order_id, mid))
            live.append(order_id)
    return setup, measured
