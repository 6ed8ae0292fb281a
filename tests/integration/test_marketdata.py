"""The matcher's market-data publisher against a real redis-server: exact keys, live deltas that
reproduce snapshots, private channels, and rebuild equal to incremental publishing."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import msgspec
import orjson
import pytest
import redis

from matcher_service.engine.engine import Engine
from matcher_service.marketdata import MarketData, rebuild_since
from shared.messages import (
    AmendOrder,
    AnyCommand,
    Applied,
    CancelAll,
    CancelOrder,
    CreateAsset,
    CreateMarket,
    Deposit,
    OrderAccepted,
    PlaceOco,
    PlaceOrder,
    Trade,
)
from shared.money import format_units, parse_units
from shared.redis_keys import KLINE_INTERVALS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

M = "ETH-USDT"
T0 = 1_704_067_200_000
"""2024-01-01T00:00:00Z: a UTC midnight, so every interval's candle opens at T0."""
SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR


def px(value: str) -> int:
    """A USDT price or quote value in units (precision 6)."""
    return parse_units(value, 6)


def amt(value: str) -> int:
    """An ETH amount in units (precision 8)."""
    return parse_units(value, 8)


# ---------------------------------------------------------------- a real redis-server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="md-redis-") as workdir:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            client.close()
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class CountingRedis(redis.Redis):
    """Counts pipelines and direct round trips, to hold publish to one pipeline per batch."""

    pipelines = 0
    direct = 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        self.pipelines += 1
        return super().pipeline(transaction=transaction, shard_hint=shard_hint)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.direct += 1
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


@pytest.fixture
def r(redis_port: int) -> Iterator[CountingRedis]:
    client = CountingRedis(port=redis_port)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def r1(redis_port: int) -> Iterator[redis.Redis]:
    """A second, empty database on the same server (for rebuild comparisons)."""
    client = redis.Redis(port=redis_port, db=1)
    client.flushdb()
    yield client
    client.close()


# ---------------------------------------------------------------- commands


class Exchange:
    """A real engine plus the publisher, one batch at a time, each stamped with a ts."""

    def __init__(self, client: redis.Redis, depth_levels: int = 50) -> None:
        self.engine = Engine()
        self.md = MarketData(client, depth_levels=depth_levels, reply_ttl_s=600)
        self.ids = 0
        self.trades: list[Trade] = []

    def id(self) -> str:
        self.ids += 1
        return f"cmd-{self.ids}"

    def batch(self, ts: int, *cmds: AnyCommand, publish: bool = True) -> list[Applied]:
        pairs = []
        for cmd in cmds:
            stamped = msgspec.structs.replace(cmd, id=self.id(), ts=ts)
            applied = self.engine.apply(stamped)
            self.trades += [e for e in applied.events if isinstance(e, Trade)]
            pairs.append((stamped, applied))
        if publish:
            self.md.publish(self.engine, pairs)
        return [a for _, a in pairs]

    def setup(self, ts: int = T0) -> None:
        self.batch(
            ts,
            CreateAsset(id="", asset="ETH", precision=8),
            CreateAsset(id="", asset="USDT", precision=6),
            CreateMarket(
                id="", market=M, base="ETH", quote="USDT", tick="0.01", step="0.0001",
                min_amount="0.0001", min_notional="1", maker_fee="0.001", taker_fee="0.002",
            ),
        )  # fmt: skip


def dep(user: str, asset: str, units: int) -> Deposit:
    return Deposit(id="", user=user, asset=asset, amount=units, ref=f"{user}-{asset}-{units}")


def buy(user: str, price: str, amount: str, **kw: Any) -> PlaceOrder:
    return PlaceOrder(
        id="", user=user, market=M, side="buy", price=px(price), amount=amt(amount), **kw
    )


def sell(user: str, price: str, amount: str, **kw: Any) -> PlaceOrder:
    return PlaceOrder(
        id="", user=user, market=M, side="sell", price=px(price), amount=amt(amount), **kw
    )


def get_json(client: redis.Redis, key: str) -> Any:
    raw = client.get(key)
    assert raw is not None, key
    return orjson.loads(raw)


def kline(client: redis.Redis, iv: str) -> list[Any]:
    members: list[bytes] = client.zrange(f"md:kline:{M}:{iv}", 0, -1)  # type: ignore[assignment]
    return [orjson.loads(m) for m in members]


def drain(ps: Any) -> list[tuple[str, Any]]:
    """All messages a pubsub has received by now, as (channel, decoded data)."""
    out: list[tuple[str, Any]] = []
    while True:
        msg = ps.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if msg is None:
            return out
        out.append((msg["channel"].decode(), orjson.loads(msg["data"])))


def subscribed(client: redis.Redis, *patterns: str) -> Any:
    ps = client.pubsub()  # type: ignore[no-untyped-call]
    ps.psubscribe(*patterns)
    for _ in patterns:  # wait for the confirmations, so nothing published later is missed
        assert ps.get_message(timeout=5) is not None
    return ps


# ---------------------------------------------------------------- exact contents


def test_setup_writes_markets_assets_empty_depth_and_ticker(r: CountingRedis) -> None:
    ex = Exchange(r)
    ex.setup()
    assets: dict[bytes, bytes] = r.hgetall("md:assets")  # type: ignore[assignment]
    assert {k.decode(): orjson.loads(v) for k, v in assets.items()} == {
        "ETH": {"asset": "ETH", "precision": 8},
        "USDT": {"asset": "USDT", "precision": 6},
    }
    assert orjson.loads(r.hget("md:markets", M) or b"") == {
        "market": M, "base": "ETH", "quote": "USDT", "tick": "0.01", "step": "0.0001",
        "min_amount": "0.0001", "min_notional": "1", "maker_fee": "0.001",
        "taker_fee": "0.002", "status": "open",
    }  # fmt: skip
    assert get_json(r, f"md:depth:{M}") == {"market": M, "bids": [], "asks": [], "seq": 1}
    assert get_json(r, f"md:ticker:{M}") == {
        "market": M, "last": None, "open": None, "high": None, "low": None, "volume": "0",
        "quote_volume": "0", "change": None, "trades": 0, "ts": T0,
    }  # fmt: skip


def test_one_pipeline_per_batch_and_no_direct_round_trip(r: CountingRedis) -> None:
    ex = Exchange(r)
    ex.setup()
    ex.batch(T0 + SEC, dep("alice", "USDT", px("10000")), dep("bob", "ETH", amt("5")))
    before_p, before_d = r.pipelines, r.direct
    ex.batch(T0 + 2 * SEC, sell("bob", "2000", "1"), buy("alice", "2000", "0.5"))
    assert (r.pipelines - before_p, r.direct - before_d) == (1, 0)
    # A batch larger than one reply chunk: every command still gets both reply keys.
    many = ex.batch(T0 + 3 * SEC, *[dep(f"user{i}", "ETH", i + 1) for i in range(1234)])
    check = r.pipeline()
    for applied in many:
        check.llen(f"reply:{applied.command_id}")
        check.get(f"cmd:{applied.command_id}")
    results = check.execute()
    assert results[0::2] == [1] * len(many)
    assert [orjson.loads(b)["seq"] for b in results[1::2]] == [a.seq for a in many]


def test_depth_trades_klines_ticker_replies(r: CountingRedis) -> None:
    ex = Exchange(r)
    ex.setup()
    ex.batch(T0 + SEC, dep("alice", "USDT", px("100000")), dep("bob", "ETH", amt("10")))
    ex.batch(
        T0 + 2 * SEC,
        sell("bob", "2000", "1"),  # order 1
        sell("bob", "2001.5", "0.5"),  # order 2
        buy("alice", "1999.99", "0.3"),  # order 3
    )
    assert get_json(r, f"md:depth:{M}") == {
        "market": M,
        "bids": [["1999.99", "0.3"]],
        "asks": [["2000", "1"], ["2001.5", "0.5"]],
        "seq": 2,
    }
    ex.batch(T0 + 10 * SEC, buy("alice", "2000", "0.4"))  # order 4; trade 1
    ex.batch(  # order 5; trade 2
        T0 + 50 * SEC,
        PlaceOrder(id="", user="alice", market=M, side="buy", type="market", amount=amt("0.1")),
    )
    ex.batch(T0 + 70 * SEC, sell("bob", "1999.99", "0.2"))  # order 6; trade 3
    [placed] = ex.batch(  # order 7; trades 4 and 5
        T0 + 301 * SEC, buy("alice", "2001.5", "0.6", client_order_id="a-7")
    )
    assert get_json(r, f"md:depth:{M}") == {
        "market": M, "bids": [["1999.99", "0.1"]], "asks": [["2001.5", "0.4"]], "seq": 6,
    }  # fmt: skip

    # The reply of a place_order: pushed for BLPOP and stored for polling.
    expected_reply = {
        "command_id": placed.command_id,
        "seq": placed.seq,
        "ok": True,
        "reason": None,
        "order": {
            "order_id": 7, "market": M, "side": "buy", "type": "limit", "price": "2001.5",
            "amount": "0.6", "quote_amount": None, "time_in_force": "GTC", "post_only": False,
            "client_order_id": "a-7", "status": "filled", "filled": "0.6",
            "filled_quote": "1200.15", "fee": "0.0012", "reason": None, "ts": T0 + 301 * SEC,
        },
    }  # fmt: skip
    assert 0 < r.ttl(f"reply:{placed.command_id}") <= 600
    assert 0 < r.ttl(f"cmd:{placed.command_id}") <= 600
    popped = r.blpop([f"reply:{placed.command_id}"], timeout=1)
    assert popped is not None and orjson.loads(popped[1]) == expected_reply
    assert get_json(r, f"cmd:{placed.command_id}") == expected_reply

    ex.batch(T0 + 3601 * SEC, sell("bob", "1999.99", "0.1"))  # order 8; trade 6
    assert get_json(r, f"md:depth:{M}") == {
        "market": M, "bids": [], "asks": [["2001.5", "0.4"]], "seq": 7,
    }  # fmt: skip

    def trade(tid: int, price: str, amount: str, quote: str, side: str, ts: int) -> Any:
        return {"trade_id": tid, "market": M, "price": price, "amount": amount,
                "quote": quote, "taker_side": side, "ts": ts}  # fmt: skip

    assert [orjson.loads(t) for t in r.lrange(f"md:trades:{M}", 0, -1)] == [
        trade(6, "1999.99", "0.1", "199.999", "sell", T0 + 3601 * SEC),
        trade(5, "2001.5", "0.1", "200.15", "buy", T0 + 301 * SEC),
        trade(4, "2000", "0.5", "1000", "buy", T0 + 301 * SEC),
        trade(3, "1999.99", "0.2", "399.998", "sell", T0 + 70 * SEC),
        trade(2, "2000", "0.1", "200", "buy", T0 + 50 * SEC),
        trade(1, "2000", "0.4", "800", "buy", T0 + 10 * SEC),
    ]

    late = [T0 + HOUR, "1999.99", "1999.99", "1999.99", "1999.99", "0.1", "199.999", 1]
    assert kline(r, "1m") == [
        [T0, "2000", "2000", "2000", "2000", "0.5", "1000", 2],
        [T0 + MIN, "1999.99", "1999.99", "1999.99", "1999.99", "0.2", "399.998", 1],
        [T0 + 5 * MIN, "2000", "2001.5", "2000", "2001.5", "0.6", "1200.15", 2],
        late,
    ]
    assert kline(r, "5m") == [
        [T0, "2000", "2000", "1999.99", "1999.99", "0.7", "1399.998", 3],
        [T0 + 5 * MIN, "2000", "2001.5", "2000", "2001.5", "0.6", "1200.15", 2],
        late,
    ]
    first_hour = [T0, "2000", "2001.5", "1999.99", "2001.5", "1.3", "2600.148", 5]
    assert kline(r, "15m") == [first_hour, late]
    assert kline(r, "1h") == [first_hour, late]
    whole = [T0, "2000", "2001.5", "1999.99", "1999.99", "1.4", "2800.147", 6]
    assert kline(r, "4h") == [whole]
    assert kline(r, "1d") == [whole]

    assert get_json(r, f"md:ticker:{M}") == {
        "market": M, "last": "1999.99", "open": "2000", "high": "2001.5", "low": "1999.99",
        "volume": "1.4", "quote_volume": "2800.147", "change": "-0.01", "trades": 6,
        "ts": T0 + 3601 * SEC,
    }  # fmt: skip

    # A day later, a command without trades slides the window: minutes T0 and T0+1m leave.
    ex.batch(T0 + DAY + 65 * SEC, dep("carol", "ETH", amt("1")))
    assert get_json(r, f"md:ticker:{M}") == {
        "market": M, "last": "1999.99", "open": "2000", "high": "2001.5", "low": "1999.99",
        "volume": "0.7", "quote_volume": "1400.149", "change": "-0.01", "trades": 3,
        "ts": T0 + DAY + 65 * SEC,
    }  # fmt: skip
    ex.batch(T0 + DAY + HOUR + MIN, dep("carol", "ETH", amt("2")))
    assert get_json(r, f"md:ticker:{M}") == {
        "market": M, "last": "1999.99", "open": "1999.99", "high": "1999.99",
        "low": "1999.99", "volume": "0", "quote_volume": "0", "change": "0", "trades": 0,
        "ts": T0 + DAY + HOUR + MIN,
    }  # fmt: skip


def test_replies_for_rejections_cancels_and_other_commands(r: CountingRedis) -> None:
    ex = Exchange(r)
    ex.setup()
    [deposited] = ex.batch(T0 + SEC, dep("bob", "ETH", amt("10")))
    ex.batch(T0 + 2 * SEC, dep("alice", "USDT", px("10000")))
    ex.batch(T0 + 3 * SEC, sell("bob", "2001.5", "0.5"), sell("bob", "2100", "1"))
    ex.batch(T0 + 4 * SEC, buy("alice", "2001.5", "0.1"))
    rejected, cancelled, cancelled_all, not_found = ex.batch(
        T0 + 5 * SEC,
        buy("alice", "2000.001", "0.1"),
        CancelOrder(id="", user="bob", order_id=1),
        CancelAll(id="", user="bob", market=M),
        CancelOrder(id="", user="bob", order_id=1),
    )

    def reply(applied: Applied) -> Any:
        popped = r.blpop([f"reply:{applied.command_id}"], timeout=1)
        assert popped is not None
        assert get_json(r, f"cmd:{applied.command_id}") == orjson.loads(popped[1])
        return orjson.loads(popped[1])

    assert reply(deposited) == {
        "command_id": deposited.command_id, "seq": deposited.seq, "ok": True, "reason": None,
        "order": None,
    }  # fmt: skip
    assert reply(rejected) == {
        "command_id": rejected.command_id, "seq": rejected.seq, "ok": False,
        "reason": "bad_tick", "order": None,
    }  # fmt: skip
    assert reply(cancelled) == {
        "command_id": cancelled.command_id, "seq": cancelled.seq, "ok": True, "reason": None,
        "order": {
            "order_id": 1, "market": M, "side": "sell", "status": "cancelled", "filled": "0.1",
            "filled_quote": "200.15", "fee": "0.20015", "reason": "cancelled_by_user",
        },
    }  # fmt: skip
    assert reply(cancelled_all) == {
        "command_id": cancelled_all.command_id, "seq": cancelled_all.seq, "ok": True,
        "reason": None, "order": None,
        "orders": [{
            "order_id": 2, "market": M, "side": "sell", "status": "cancelled", "filled": "0",
            "filled_quote": "0", "fee": "0", "reason": "cancelled_by_user",
        }],
    }  # fmt: skip
    assert reply(not_found)["reason"] == "order_not_found"
    assert get_json(r, f"md:depth:{M}")["asks"] == []


def test_private_messages_reach_only_the_involved_users(r: CountingRedis) -> None:
    ex = Exchange(r)
    ex.setup()
    ex.batch(T0 + SEC, dep("alice", "USDT", px("100000")), dep("bob", "ETH", amt("10")))
    ex.batch(T0 + 2 * SEC, sell("bob", "2000", "1"))
    ps = subscribed(r, "live:user:*")
    ex.batch(
        T0 + 3 * SEC, buy("alice", "2000", "0.4", client_order_id="x1"), dep("carol", "ETH", 5)
    )
    got = dict(drain(ps))
    ps.close()
    assert sorted(got) == ["live:user:alice", "live:user:bob", "live:user:carol"]
    ts = T0 + 3 * SEC
    assert got["live:user:alice"] == [
        {"channel": "orders", "event": "order_accepted", "order_id": 2, "market": M,
         "side": "buy", "type": "limit", "price": "2000", "amount": "0.4",
         "quote_amount": None, "time_in_force": "GTC", "post_only": False,
         "client_order_id": "x1", "ts": ts},
        {"channel": "orders", "event": "trade", "trade_id": 1, "market": M, "order_id": 2,
         "side": "buy", "role": "taker", "price": "2000", "amount": "0.4", "quote": "800",
         "fee": "0.0008", "fee_asset": "ETH", "ts": ts},
        {"channel": "balances", "asset": "USDT", "available": "99200", "frozen": "0",
         "delta_available": "-800", "delta_frozen": "0", "reason": "trade", "ref": "1"},
        {"channel": "balances", "asset": "ETH", "available": "0.3992", "frozen": "0",
         "delta_available": "0.3992", "delta_frozen": "0", "reason": "trade", "ref": "1"},
        {"channel": "orders", "event": "order_updated", "order_id": 2, "market": M,
         "side": "buy", "status": "filled", "filled": "0.4", "filled_quote": "800",
         "fee": "0.0008", "frozen": "0", "reason": None},
    ]  # fmt: skip
    assert got["live:user:bob"] == [
        {"channel": "orders", "event": "trade", "trade_id": 1, "market": M, "order_id": 1,
         "side": "sell", "role": "maker", "price": "2000", "amount": "0.4", "quote": "800",
         "fee": "0.8", "fee_asset": "USDT", "ts": ts},
        {"channel": "balances", "asset": "ETH", "available": "9", "frozen": "0.6",
         "delta_available": "0", "delta_frozen": "-0.4", "reason": "trade", "ref": "1"},
        {"channel": "balances", "asset": "USDT", "available": "799.2", "frozen": "0",
         "delta_available": "799.2", "delta_frozen": "0", "reason": "trade", "ref": "1"},
        {"channel": "orders", "event": "order_updated", "order_id": 1, "market": M,
         "side": "sell", "status": "partially_filled", "filled": "0.4", "filled_quote": "800",
         "fee": "0.8", "frozen": "0.6", "reason": None},
    ]  # fmt: skip
    assert got["live:user:carol"] == [
        {"channel": "balances", "asset": "ETH", "available": "0.00000005", "frozen": "0",
         "delta_available": "0.00000005", "delta_frozen": "0", "reason": "deposit",
         "ref": "carol-ETH-5"},
    ]  # fmt: skip

    # A rejection and a cancel reach only their owner.
    ps = subscribed(r, "live:user:*")
    [rej] = ex.batch(T0 + 4 * SEC, buy("alice", "1", "0.0001"))
    ex.batch(T0 + 5 * SEC, CancelOrder(id="", user="bob", order_id=1))
    got = dict(drain(ps))
    ps.close()
    assert got == {
        "live:user:alice": [
            {"channel": "orders", "event": "order_rejected", "command_id": rej.command_id,
             "market": M, "client_order_id": None, "reason": "below_min_notional"},
        ],
        "live:user:bob": [
            {"channel": "balances", "asset": "ETH", "available": "9.6", "frozen": "0",
             "delta_available": "0.6", "delta_frozen": "-0.6", "reason": "order_release",
             "ref": "1"},
            {"channel": "orders", "event": "order_updated", "order_id": 1, "market": M,
             "side": "sell", "status": "cancelled", "filled": "0.4", "filled_quote": "800",
             "fee": "0.8", "frozen": "0", "reason": "cancelled_by_user"},
        ],
    }  # fmt: skip


# ---------------------------------------------------------------- live depth deltas


class DepthClient:
    """What a ws client does: hold a snapshot, apply each delta, check the chain of seqs."""

    def __init__(self, snapshot: Any) -> None:
        self.seq: int = snapshot["seq"]
        self.bids: dict[str, str] = dict(snapshot["bids"])
        self.asks: dict[str, str] = dict(snapshot["asks"])

    def apply(self, delta: Any) -> None:
        assert delta["prev_seq"] == self.seq, "a gap in the depth sequence"
        self.seq = delta["seq"]
        for levels, changes in ((self.bids, delta["bids"]), (self.asks, delta["asks"])):
            for p, a in changes:
                if a == "0":
                    del levels[p]
                else:
                    levels[p] = a

    def view(self) -> Any:
        def ordered(levels: dict[str, str], high_first: bool) -> list[list[str]]:
            keys = sorted(levels, key=Decimal, reverse=high_first)
            return [[p, levels[p]] for p in keys]

        return {"market": M, "bids": ordered(self.bids, True), "asks": ordered(self.asks, False),
                "seq": self.seq}  # fmt: skip


def _random_batch(rng: random.Random, ex: Exchange) -> list[AnyCommand]:
    cmds: list[AnyCommand] = []
    for _ in range(rng.randint(1, 6)):
        user = rng.choice(["u1", "u2", "u3", "u4"])
        roll = rng.random()
        if roll < 0.2 and ex.engine.open_orders(user):
            oid = rng.choice(ex.engine.open_orders(user)).order_id
            cmds.append(CancelOrder(id="", user=user, order_id=oid))
        elif roll < 0.25:
            cmds.append(CancelAll(id="", user=user))
        else:
            side = rng.choice(["buy", "sell"])
            p = 2000 + rng.randint(-8, 8) * 0.25 + (-1 if side == "buy" else 1)
            a = rng.choice(["0.01", "0.05", "0.1", "0.25", "1"])
            order = buy if side == "buy" else sell
            cmds.append(order(user, f"{p:.2f}", a, stp="cancel_maker"))
    return cmds


def _expected_depth(ex: Exchange, seq: int, levels: int) -> Any:
    bids, asks = ex.engine.books[M].depth(levels)
    return {
        "market": M,
        "bids": [[format_units(p, 6), format_units(a, 8)] for p, a in bids],
        "asks": [[format_units(p, 6), format_units(a, 8)] for p, a in asks],
        "seq": seq,
    }


def test_depth_deltas_rebuild_each_snapshot(r: CountingRedis) -> None:
    levels = 4
    ex = Exchange(r, depth_levels=levels)
    ex.setup()
    ex.batch(
        T0 + SEC,
        *[dep(u, a, px("1000000")) for u in ("u1", "u2", "u3", "u4") for a in ("ETH", "USDT")],
    )
    ps = subscribed(r, f"live:depth:{M}")
    client = DepthClient(get_json(r, f"md:depth:{M}"))
    rng = random.Random(7)
    messages = 0
    for step in range(150):
        ex.batch(T0 + 2 * SEC + step * SEC, *_random_batch(rng, ex))
        for channel, delta in drain(ps) if step % 10 == 9 else []:
            assert channel == f"live:depth:{M}"
            client.apply(delta)
            messages += 1
            assert delta["seq"] == client.seq
        if step % 10 == 9:
            snapshot = get_json(r, f"md:depth:{M}")
            assert client.view() == snapshot
            assert snapshot == _expected_depth(ex, snapshot["seq"], levels)
    ps.close()
    assert messages > 100  # most batches change the top levels


# ---------------------------------------------------------------- rebuild


def _workload(ex: Exchange, rng: random.Random) -> int:
    """About a day and a half of trading with irregular gaps; returns the last ts."""
    ex.setup(T0 - 5 * HOUR)
    users = ("u1", "u2", "u3", "u4", "u5", "u6")
    ex.batch(T0 - 5 * HOUR, *[dep(u, a, px("1000000")) for u in users for a in ("ETH", "USDT")])
    ts = T0 - 4 * HOUR - 17 * SEC
    for _ in range(200):
        ts += rng.choice([2 * SEC, 30 * SEC, 4 * MIN, 11 * MIN, 47 * MIN])
        ex.batch(ts, *_random_batch(rng, ex))
    # End on a trade: u6 buys at market from an ask that u5 makes sure exists.
    ts += 13 * SEC
    ex.batch(
        ts,
        sell("u5", "2050", "0.01"),
        PlaceOrder(id="", user="u6", market=M, side="buy", type="market", amount=amt("0.01")),
    )
    return ts


def _market_data(client: redis.Redis) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ticker": get_json(client, f"md:ticker:{M}"),
        "trades": client.lrange(f"md:trades:{M}", 0, -1),
        "markets": client.hgetall("md:markets"),
        "assets": client.hgetall("md:assets"),
    }
    for iv, _ in KLINE_INTERVALS:
        out[iv] = client.zrange(f"md:kline:{M}:{iv}", 0, -1, withscores=True)
    depth = get_json(client, f"md:depth:{M}")
    out["depth"] = (depth["bids"], depth["asks"])
    return out


def test_rebuild_from_trades_equals_incremental_publishing(
    r: CountingRedis, r1: redis.Redis
) -> None:
    rng = random.Random(11)
    ex = Exchange(r)
    last = _workload(ex, rng)
    assert len(ex.trades) > 150
    assert ex.trades[-1].ts == last, "the workload must end on a trade"
    incremental = _market_data(r)
    assert incremental["ticker"]["trades"] < len(ex.trades)  # the window really slid
    assert len(incremental["1d"]) >= 2 and len(incremental["1m"]) > 50

    # The trades the matcher would read from Postgres: everything since rebuild_since(now).
    since = rebuild_since(last)
    assert since % DAY == 0 and since <= last - DAY
    recent = [t for t in ex.trades if t.ts >= since]
    fresh = MarketData(r1)
    fresh.rebuild(ex.engine, recent, now_ms=last, since_ms=since)
    rebuilt = _market_data(r1)
    for key in ("ticker", "markets", "assets", "depth"):
        assert rebuilt[key] == incremental[key], key
    # Trades and candles before `since` are not rebuilt (they stay when Redis survives).
    assert rebuilt["trades"] == [t for t in incremental["trades"] if orjson.loads(t)["ts"] >= since]
    for iv, _ in KLINE_INTERVALS:
        assert rebuilt[iv] == [c for c in incremental[iv] if c[1] >= since], iv


def test_rebuild_then_publish_matches_uninterrupted_run(r: CountingRedis, r1: redis.Redis) -> None:
    rng_a, rng_b = random.Random(5), random.Random(5)
    a, b = Exchange(r), Exchange(r1)
    last = _workload(a, rng_a)
    _workload(b, rng_b)
    # b's matcher restarts: a new publisher rebuilt from Postgres's trades, Redis intact.
    b.md = MarketData(r1)
    b.md.rebuild(b.engine, [t for t in b.trades if t.ts >= rebuild_since(last)], now_ms=last)
    assert _market_data(r1) == _market_data(r)
    # The same with a window that does not start at a midnight, as the matcher reads it.
    b.md = MarketData(r1)
    b.md.rebuild(
        b.engine, [t for t in b.trades if t.ts >= last - DAY], now_ms=last, since_ms=last - DAY
    )
    assert _market_data(r1) == _market_data(r)
    b.md = MarketData(r1)
    b.md.rebuild(b.engine, [t for t in b.trades if t.ts >= last - 3 * HOUR], now_ms=last)
    rebuilt = _market_data(r1)
    assert rebuilt["ticker"] != _market_data(r)["ticker"]  # 3 hours are not a day
    assert {k: v for k, v in rebuilt.items() if k != "ticker"} == {
        k: v for k, v in _market_data(r).items() if k != "ticker"
    }
    b.md = MarketData(r1)
    b.md.rebuild(b.engine, [t for t in b.trades if t.ts >= last - DAY], now_ms=last)
    for ex in (a, b):
        ex.batch(last + 90 * SEC, buy("u1", "2003", "0.5"), sell("u2", "1997", "0.7"))
        ex.batch(last + 5 * HOUR, sell("u3", "1990", "0.3"), buy("u4", "2010", "0.3"))
        ex.batch(last + DAY + MIN, dep("u1", "ETH", 1))
    assert _market_data(r1) == _market_data(r)
    assert get_json(r1, f"md:depth:{M}")["seq"] == get_json(r, f"md:depth:{M}")["seq"]


def test_rebuild_continues_the_depth_sequence_with_a_delta(r: CountingRedis) -> None:
    ex = Exchange(r)
    ex.setup()
    ex.batch(T0 + SEC, dep("alice", "USDT", px("100000")), dep("bob", "ETH", amt("10")))
    ex.batch(T0 + 2 * SEC, sell("bob", "2000", "1"), sell("bob", "2001", "1"))
    ex.batch(T0 + 3 * SEC, buy("alice", "1999", "1"), buy("alice", "2000", "0.5"))
    before = get_json(r, f"md:depth:{M}")
    client = DepthClient(before)
    # Committed but never published (the matcher died); a new matcher rebuilds.
    ex.batch(T0 + 4 * SEC, sell("bob", "1998", "0.25"), buy("alice", "1995", "2"), publish=False)
    ps = subscribed(r, f"live:depth:{M}", f"live:ticker:{M}")
    md = MarketData(r)
    md.rebuild(ex.engine, ex.trades, now_ms=T0 + 5 * SEC)
    got = drain(ps)
    ps.close()
    [delta] = [d for c, d in got if c == f"live:depth:{M}"]
    client.apply(delta)
    after = get_json(r, f"md:depth:{M}")
    assert after["seq"] == before["seq"] + 1
    assert client.view() == after == _expected_depth(ex, after["seq"], 50)
    [ticker] = [d for c, d in got if c == f"live:ticker:{M}"]
    assert ticker == get_json(r, f"md:ticker:{M}")
    assert ticker["last"] == "1999" and ticker["trades"] == 2

    # A rebuild with nothing new to say keeps the version.
    MarketData(r).rebuild(ex.engine, ex.trades, now_ms=T0 + 5 * SEC)
    assert get_json(r, f"md:depth:{M}") == after


def test_rebuild_keeps_older_trades_and_last_price(r: CountingRedis) -> None:
    ex = Exchange(r)
    ex.setup()
    ex.batch(T0 + SEC, dep("alice", "USDT", px("100000")), dep("bob", "ETH", amt("10")))
    ex.batch(T0 + 2 * SEC, sell("bob", "2000", "1"))
    ex.batch(T0 + 3 * SEC, buy("alice", "2000", "0.1"))
    ex.batch(T0 + 4 * SEC, buy("alice", "2000", "0.2"))
    stored = r.lrange(f"md:trades:{M}", 0, -1)
    # Only the second trade is given: the first stays, newest first.
    MarketData(r).rebuild(ex.engine, ex.trades[1:], now_ms=T0 + 5 * SEC)
    assert r.lrange(f"md:trades:{M}", 0, -1) == stored
    # No trade given at all, days later: the last price still comes from md:trades.
    MarketData(r).rebuild(ex.engine, [], now_ms=T0 + 3 * DAY)
    assert get_json(r, f"md:ticker:{M}") == {
        "market": M, "last": "2000", "open": "2000", "high": "2000", "low": "2000",
        "volume": "0", "quote_volume": "0", "change": "0", "trades": 0, "ts": T0 + 3 * DAY,
    }  # fmt: skip
    assert r.lrange(f"md:trades:{M}", 0, -1) == stored


def test_stop_orders_lists_and_amends_on_the_private_orders_channel(r: CountingRedis) -> None:
    """A stop order's acceptance and trigger, an OCO list's open and done, an amend: each on
    its owner's ``orders`` channel, and the replies of a list and an amend say what they did."""
    ex = Exchange(r)
    ex.setup()
    ex.batch(T0 + SEC, dep("alice", "USDT", px("100000")), dep("bob", "ETH", amt("10")))
    ex.batch(T0 + 2 * SEC, sell("bob", "2000", "0.1"), buy("alice", "2000", "0.1"))
    ps = subscribed(r, "live:user:*")
    stop, oco, bid = ex.batch(
        T0 + 3 * SEC,
        sell("bob", "1940", "1", stop="stop_loss", stop_price=px("1950")),
        PlaceOco(id="", user="alice", market=M, side="buy", amount=amt("0.5"),
                 price=px("1900"), stop_price=px("2050"), stop_limit_price=px("2060")),
        buy("alice", "1980", "1", client_order_id="b1"),
    )  # fmt: skip
    assert stop.ok and oco.ok and bid.ok
    bid_id = next(e.order_id for e in bid.events if isinstance(e, OrderAccepted))
    [amended] = ex.batch(
        T0 + 4 * SEC, AmendOrder(id="", user="alice", order_id=bid_id, amount=amt("0.5"))
    )
    ex.batch(T0 + 5 * SEC, PlaceOrder(id="", user="bob", market=M, side="sell", type="market",
                                      amount=amt("0.7")))  # fmt: skip
    got: dict[str, list[Any]] = {}
    for channel, messages in drain(ps):  # one publish per batch
        got.setdefault(channel, []).extend(messages)
    ps.close()
    bob = [(m["event"], m.get("status"), m.get("reason")) for m in got["live:user:bob"]
           if m["channel"] == "orders"]  # fmt: skip
    assert bob[0] == ("order_accepted", None, None)
    accepted = next(m for m in got["live:user:bob"] if m.get("event") == "order_accepted")
    assert (accepted["stop"], accepted["stop_price"]) == ("stop_loss", "1950")
    assert ("order_triggered", None, None) in bob  # 1900 reached its 1950
    alice = [(m["event"], m.get("status"), m.get("reason")) for m in got["live:user:alice"]
             if m["channel"] == "orders"]  # fmt: skip
    assert ("order_list", "open", None) in alice
    assert ("order_amended", None, None) in alice
    assert ("order_updated", "cancelled", "oco") in alice  # its bid at 1900 traded
    assert ("order_list", "done", "traded") in alice
    listed = get_json(r, f"cmd:{oco.command_id}")["list"]
    assert (listed["status"], listed["market"]) == ("open", M)
    amend_reply = get_json(r, f"cmd:{amended.command_id}")["order"]
    assert (amend_reply["amount"], amend_reply["kept_priority"], amend_reply["side"]) == (
        "0.5", True, "buy",
    )  # fmt: skip
