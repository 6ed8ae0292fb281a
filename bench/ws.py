"""Live-feed benchmark: N WebSocket clients on one market while orders flow.

Starts its own local stack on free ports and ``python -m ws_service`` as a child process,
as ``make run`` does. ``--clients`` connections (default 1,000), spread over ``--procs``
client processes, each subscribe to ``depth:ETH-USDT`` and ``trades:ETH-USDT`` and keep
reading, while orders flow from one of two sources:

- ``--source engine`` (default): the matcher's own engine and market-data publisher
  (``Engine`` + ``MarketData.publish``, the code the matcher runs after each commit) in this
  process, one batch per tick at ``--updates`` per second (default 100), each batch one or
  more orders until the book's top changed: so exactly that many depth updates a second,
  plus the trades of the orders that crossed. The messages in Redis are the matcher's, byte
  for byte; Pub/Sub and Postgres are left out because on this machine the real matcher
  cannot commit 100 batches a second (see ``--source matcher``).
- ``--source matcher``: the real matcher (``python -m matcher_service``) fed on the
  ``commands`` topic with ``--orders`` per second, as the orders function publishes them
  (the HTTP gateway is left out: it is not on the feed's path and would take CPU from it).
  Its depth updates come one per committed batch, as fast as the matcher commits.

Orders: limit orders within 40 ticks of 2000 USDT, a third of them crossing, and cancels of
resting ones; ``--users`` traders, a book of ``--prefill`` resting orders built first.

Fan-out latency, from the matcher's PUBLISH to the client's receipt: depth messages carry no
publish time, so a side channel measures it. A separate process subscribes to
``live:depth:ETH-USDT`` directly on Redis and notes when each ``seq`` arrives; a client's
latency for a depth update is its receipt time minus that (``time.monotonic()``: one clock
for every process of this machine). Both ends are Redis subscribers, so the figure is what
the ws service adds (its Redis read, bookkeeping, fan-out) plus the client's socket. Second
figure, for scale: trades carry the publisher's ``ts`` (the matcher's clock when it formed
the batch), so trade receipt minus ``ts`` (wall clocks) adds, with ``--source matcher``, the
matcher's Postgres commit.

Clients are minimal asyncio protocols (an RFC 6455 client in ~60 lines: handshake, unmasked
server frames parsed, pings answered) rather than the websockets library: the library's
per-message cost would make the clients, not the service, the bottleneck at 100,000 messages
a second on two cores shared with everything else.

Usage: ``python -m bench.ws [--clients 1000] [--updates 100] [--seconds 30] [--procs 2]
[--source engine|matcher] [--orders 100]``. Prints a few lines, then one line of JSON
(``ws_clients``, ``ws_msgs_per_s``, ``ws_p50_ms``, ``ws_p99_ms`` ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing as mp
import os
import random
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import orjson
import redis

from api.auth import new_secrets_document
from infra.ports import free_port
from infra.processes import REPO_ROOT, Child, http_status, wait_until
from infra.services import Stack, StackConfig
from matcher_service.engine import Engine
from matcher_service.marketdata import MarketData
from migrations.migrate import migrate
from shared.config import PostgresConfig, PubSubConfig
from shared.db import connect
from shared.messages import AnyCommand, CancelOrder, CreateAsset, CreateMarket, Deposit, PlaceOrder
from shared.pubsub import CommandPublisher, ensure_topics
from shared.redis_keys import command_key, live_depth_channel

MARKET: Final = "ETH-USDT"
HOST: Final = "127.0.0.1"
MATCHER_ARGS: Final = ["-m", "matcher_service"]
ETH: Final = 10**8
USDT: Final = 10**6
TICK: Final = 10**4  # 0.01 USDT in units
MID_TICKS: Final = 200_000  # 2000.00
BUCKET_MS: Final = 0.1
"""Latency histogram resolution."""

log = logging.getLogger("bench.ws")


# ---------------------------------------------------------------- the exchange


@dataclass
class Running:
    ws_port: int
    redis_url: str
    pubsub: PubSubConfig
    ws: Child


@contextmanager
def exchange(log_dir: Path, ws_env: dict[str, str], with_matcher: bool) -> Iterator[Running]:
    """The services (only Redis and Firestore, which the ws service's auth needs, without
    the matcher), the ws service, and the matcher when asked for."""
    stack = Stack(StackConfig.with_free_ports())
    children: list[Child] = []
    try:
        services = ["pubsub", "firestore", "postgres", "redis"] if with_matcher else [
            "firestore", "redis",
        ]  # fmt: skip
        stack.start(services)
        print(f"local stack up in {stack.start_seconds:.1f}s", flush=True)
        os.environ.update(stack.env())
        pubsub = PubSubConfig.load()
        if with_matcher:
            db = connect(PostgresConfig.load(), "bench")
            try:
                migrate(db)
            finally:
                db.close()
            ensure_topics(pubsub)
        matcher_port, ws_port = free_port(), free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "AUTH_KEYS_JSON": orjson.dumps(new_secrets_document()).decode(),
            "PORT": str(matcher_port),
        }
        for name in ("AUTH_KEYS_FILE", "AUTH_KEYS_SECRET", "OIDC_ISSUER", "CLOUD_SQL_INSTANCE"):
            env.pop(name, None)
        ws_args = ["-m", "ws_service", "--host", HOST, "--port", str(ws_port)]
        ws = Child.python("ws", ws_args, log_dir / "ws.log", env={**env, **ws_env})
        children.append(ws)
        if with_matcher:
            matcher = Child.python(
                "matcher", ["-m", "matcher_service"], log_dir / "matcher.log", env=env
            )
            children.append(matcher)
            wait_until(
                lambda: http_status(f"http://{HOST}:{matcher_port}/readyz") == 200,
                90, "the matcher", matcher,
            )  # fmt: skip
        wait_until(lambda: http_status(f"http://{HOST}:{ws_port}/readyz") == 200, 30, "the ws", ws)
        yield Running(ws_port, stack.url("redis"), pubsub, ws)
    finally:
        for child in reversed(children):
            child.stop(20)
        stack.stop()


def key_of(cmd: AnyCommand) -> str:
    return str(getattr(cmd, "user", None) or "admin")


def apply_all(pubsub: PubSubConfig, r: redis.Redis, commands: list[AnyCommand]) -> None:
    """Publish and wait until the matcher has applied every one (its ``cmd:{id}`` key)."""
    publisher = CommandPublisher(pubsub)
    for future in [publisher.publish_async(c, key_of(c)) for c in commands]:
        future.result(timeout=60)
    keys = [command_key(c.id) for c in commands]
    deadline = time.monotonic() + 120
    while True:
        missing = [k for k, v in zip(keys, r.mget(keys), strict=True) if v is None]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} commands not applied, e.g. {missing[:3]}")
        keys = missing
        time.sleep(0.1)


def setup_commands(users: list[str]) -> list[AnyCommand]:
    cmds: list[AnyCommand] = [
        CreateAsset(id="bench-asset-eth", asset="ETH", precision=8),
        CreateAsset(id="bench-asset-usdt", asset="USDT", precision=6),
        CreateMarket(
            id="bench-market", market=MARKET, base="ETH", quote="USDT", tick="0.01",
            step="0.0001", min_amount="0.0001", min_notional="1", maker_fee="0.001",
            taker_fee="0.002",
        ),
    ]  # fmt: skip
    for u in users:
        cmds.append(Deposit(id=f"dep-eth-{u}", user=u, asset="ETH", amount=10**6 * ETH,
                            ref=f"eth-{u}"))  # fmt: skip
        cmds.append(Deposit(id=f"dep-usdt-{u}", user=u, asset="USDT", amount=10**10 * USDT,
                            ref=f"usdt-{u}"))  # fmt: skip
    return cmds


class Orders:
    """Limit orders near the middle (a third cross it) and cancels of resting ones."""

    def __init__(self, users: list[str], seed: int) -> None:
        self.users = users
        self.rng = random.Random(seed)
        self.n = 0
        self.resting: list[tuple[str, str]] = []

    def next(self) -> AnyCommand:
        rng = self.rng
        self.n += 1
        cid = f"flow-{self.n}"
        if self.resting and rng.random() < 0.3:
            user, coid = self.resting.pop(rng.randrange(len(self.resting)))
            return CancelOrder(id=cid, user=user, client_order_id=coid)
        user = rng.choice(self.users)
        buy = rng.random() < 0.5
        crossing = rng.random() < 1 / 3
        offset = rng.randint(1, 40)
        ticks = MID_TICKS + (offset if buy == crossing else -offset)
        coid = f"c{self.n}"
        if not crossing:
            self.resting.append((user, coid))
        return PlaceOrder(
            id=cid, user=user, market=MARKET, side="buy" if buy else "sell",
            price=ticks * TICK, amount=rng.randint(1, 100) * 10**5, client_order_id=coid,
        )  # fmt: skip

    def places(self, n: int) -> list[AnyCommand]:
        cmds: list[AnyCommand] = []
        while len(cmds) < n:
            cmd = self.next()
            if isinstance(cmd, PlaceOrder):
                cmds.append(cmd)
        return cmds


class Source:
    """Something that makes market data flow at a steady rate, in a thread: ``tick`` is
    called ``rate`` times a second."""

    def __init__(self) -> None:
        self.ticks = 0
        self.commands = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def start(self, rate: float) -> None:
        def run() -> None:
            start = time.monotonic()
            try:
                while not self._stop.is_set():
                    wait = start + self.ticks / rate - time.monotonic()
                    if wait > 0:
                        self._stop.wait(wait)
                    self.tick()
                    self.ticks += 1
            except BaseException as exc:
                self.errors.append(exc)

        self._thread = threading.Thread(target=run, name="orders", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.errors:
            raise self.errors[0]


class MatcherSource(Source):
    """Orders on the ``commands`` topic, for the real matcher: one per tick."""

    def __init__(self, pubsub: PubSubConfig, r: redis.Redis, orders: Orders, prefill: int):
        super().__init__()
        self.publisher = CommandPublisher(pubsub)
        self.orders = orders
        apply_all(pubsub, r, setup_commands(orders.users))
        apply_all(pubsub, r, orders.places(prefill))

    def tick(self) -> None:
        cmd = self.orders.next()
        self.publisher.publish_async(cmd, key_of(cmd))
        self.commands += 1


class EngineSource(Source):
    """The matcher's engine and market-data publisher in this process: each tick one batch
    of orders, as many as it takes (at most 10) to change the top of the book, so each tick
    is one depth update."""

    def __init__(self, redis_url: str, orders: Orders, prefill: int) -> None:
        super().__init__()
        self.engine = Engine()
        self.md = MarketData(redis.Redis.from_url(redis_url), depth_levels=50)
        self.orders = orders
        self._apply(setup_commands(orders.users))
        for start in range(0, prefill, 100):
            self._apply(orders.places(min(100, prefill - start)))

    def _apply(self, cmds: list[AnyCommand]) -> None:
        ts = time.time_ns() // 1_000_000
        batch = []
        for cmd in cmds:
            cmd.ts = ts
            batch.append((cmd, self.engine.apply(cmd)))
        self.md.publish(self.engine, batch)

    def tick(self) -> None:
        book = self.engine.books[MARKET]
        before = book.depth(50)
        ts = time.time_ns() // 1_000_000
        batch = []
        for _ in range(10):
            cmd = self.orders.next()
            cmd.ts = ts
            batch.append((cmd, self.engine.apply(cmd)))
            if book.depth(50) != before:
                break
        self.md.publish(self.engine, batch)
        self.commands += len(batch)


# ---------------------------------------------------------------- the side channel


def side_channel(redis_url: str, conn: Connection) -> None:
    """A direct Redis subscriber of the depth deltas: when each seq arrived."""
    client = redis.Redis.from_url(redis_url)
    ps = client.pubsub()  # type: ignore[no-untyped-call]
    ps.subscribe(live_depth_channel(MARKET))
    while True:
        msg = ps.get_message(timeout=1.0)
        if msg is not None and msg["type"] == "subscribe":
            break
    conn.send("ready")
    seen: dict[int, float] = {}
    while not conn.poll():
        msg = ps.get_message(timeout=0.2)
        if msg is not None and msg["type"] == "message":
            now = time.monotonic()
            seen[orjson.loads(msg["data"])["seq"]] = now
    conn.send(seen)


# ---------------------------------------------------------------- client processes

_HANDSHAKE: Final = (
    "GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455: clients mask; a zero key leaves the payload as is)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + b"\x00\x00\x00\x00" + payload


class Stats:
    """One client process's records."""

    def __init__(self) -> None:
        self.depth_seq = array("q")
        self.depth_at = array("d")
        self.trade_ts = array("q")
        self.trade_at = array("d")
        self.trade_mono = array("d")
        self.messages = 0
        self.snapshots = 0
        self.closed: dict[str, int] = {}
        self.other: dict[str, int] = {}
        self.connected = 0


class FeedClient(asyncio.Protocol):
    def __init__(self, stats: Stats, subscribe: list[bytes], port: int) -> None:
        self.stats = stats
        self.subscribe = subscribe
        self.port = port
        self.buf = bytearray()
        self.open = False
        self.snapshots = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(_HANDSHAKE.format(host=HOST, port=self.port).encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            reason = "lost" if exc is None else type(exc).__name__
            self.stats.closed[reason] = self.stats.closed.get(reason, 0) + 1
        self.open = False

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                key = f"refused: {bytes(buf[:40])!r}"
                self.stats.closed[key] = self.stats.closed.get(key, 0) + 1
                assert self.transport is not None
                self.transport.close()
                return
            del buf[: end + 4]
            self.open = True
            self.stats.connected += 1
            assert self.transport is not None
            self.transport.write(b"".join(self.subscribe))
        stats = self.stats
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, off = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, off = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < off + n:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[off : off + n])
            del buf[: off + n]
            if opcode == 1:
                stats.messages += 1
                if payload.startswith(b'{"type":"update","channel":"depth'):
                    i = payload.index(b'"seq":') + 6
                    stats.depth_seq.append(int(payload[i : payload.index(b",", i)]))
                    stats.depth_at.append(now)
                elif payload.startswith(b'{"type":"update","channel":"trades'):
                    i = payload.index(b'"ts":') + 5
                    stats.trade_ts.append(int(payload[i : payload.index(b"}", i)]))
                    stats.trade_at.append(time.time())
                    stats.trade_mono.append(now)
                elif payload.startswith(b'{"type":"snapshot"'):
                    stats.snapshots += 1
                    self.snapshots += 1
                else:
                    key = payload[:120].decode(errors="replace")
                    stats.other[key] = stats.other.get(key, 0) + 1
            elif opcode == 9 and self.transport is not None:  # ping: pong
                self.transport.write(client_frame(0xA, payload))
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                key = f"{code} {payload[2:].decode(errors='replace')}"
                stats.closed[key] = stats.closed.get(key, 0) + 1
                self.open = False


def histogram(values: list[float]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in values:
        b = max(0, int(v / BUCKET_MS))
        out[b] = out.get(b, 0) + 1
    return out


def client_process(
    port: int, n: int, channels: list[str], conn: Connection, stagger: int = 50
) -> None:
    asyncio.run(_client_main(port, n, channels, conn, stagger))


async def _client_main(
    port: int, n: int, channels: list[str], conn: Connection, stagger: int
) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    subscribe = [client_frame(1, orjson.dumps({"op": "subscribe", "channel": c})) for c in channels]
    transports: list[asyncio.BaseTransport] = []
    clients: list[FeedClient] = []
    t0 = time.monotonic()
    for start in range(0, n, stagger):
        batch = await asyncio.gather(
            *(
                loop.create_connection(lambda: FeedClient(stats, subscribe, port), HOST, port)
                for _ in range(start, min(n, start + stagger))
            )
        )
        transports += [t for t, _ in batch]
        clients += [c for _, c in batch]
    while stats.snapshots < n * len(channels):
        if time.monotonic() - t0 > 60:
            short = [(c.open, c.snapshots, bytes(c.buf[:60])) for c in clients
                     if c.snapshots < len(channels)]  # fmt: skip
            raise RuntimeError(
                f"{stats.snapshots} snapshots of {n * len(channels)} after 60 s; "
                f"{stats.connected} of {n} connected; closed: {stats.closed}; other "
                f"messages: {stats.other}; clients short of snapshots: {short[:5]}"
            )
        await asyncio.sleep(0.05)
    conn.send(("ready", stats.connected, time.monotonic() - t0))
    cpu0, wall0 = time.process_time(), time.monotonic()
    command = await asyncio.to_thread(conn.recv)
    cpu_share = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    _, window_start, window_end, published = command
    depth_lat = [
        (at - published[seq]) * 1000
        for seq, at in zip(stats.depth_seq, stats.depth_at, strict=True)
        if seq in published and window_start <= published[seq] <= window_end
    ]
    trade_lat = [
        at * 1000 - ts
        for ts, at, mono in zip(stats.trade_ts, stats.trade_at, stats.trade_mono, strict=True)
        if window_start <= mono <= window_end
    ]
    result = {
        "depth_hist": histogram(depth_lat),
        "depth_n": len(depth_lat),
        "trade_hist": histogram(trade_lat),
        "trade_n": len(trade_lat),
        "messages": stats.messages,
        "closed": stats.closed,
        "connected": stats.connected,
        "still_open": sum(1 for t in transports if not t.is_closing()),
        "cpu_share": cpu_share,
    }
    conn.send(result)
    for t in transports:
        t.close()


def percentile(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return math.nan
    rank = math.ceil(q * total)
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 1) * BUCKET_MS
    return math.nan


def merge(hists: list[dict[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hists:
        for b, c in h.items():
            out[b] = out.get(b, 0) + c
    return out


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="live-feed fan-out to N WebSocket clients")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--source", choices=("engine", "matcher"), default="engine")
    parser.add_argument("--updates", type=float, default=100.0,
                        help="depth updates per second (--source engine)")  # fmt: skip
    parser.add_argument("--orders", type=float, default=100.0,
                        help="orders per second (--source matcher)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--prefill", type=int, default=300, help="resting orders before")
    parser.add_argument("--depth-only", action="store_true", help="no trades subscription")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    channels = [f"depth:{MARKET}"] + ([] if args.depth_only else [f"trades:{MARKET}"])
    t_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    spawn = mp.get_context("spawn")
    ws_env = {"WS_MAX_CONNECTIONS": str(args.clients + 100)}

    with (
        tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp,
        exchange(Path(tmp), ws_env, with_matcher=args.source == "matcher") as ex,
    ):
        r = redis.Redis.from_url(ex.redis_url)
        orders = Orders([f"u{i}" for i in range(args.users)], args.seed)
        source: Source
        if args.source == "matcher":
            source = MatcherSource(ex.pubsub, r, orders, args.prefill)
            rate = args.orders
        else:
            source = EngineSource(ex.redis_url, orders, args.prefill)
            rate = args.updates
        print(f"market, {args.users} traders and {args.prefill} resting orders set up "
              f"(source: {args.source})")  # fmt: skip

        side_parent, side_child = spawn.Pipe()
        side = spawn.Process(target=side_channel, args=(ex.redis_url, side_child), daemon=True)
        side.start()
        if not side_parent.poll(30):
            raise RuntimeError("the side channel did not subscribe")
        side_parent.recv()

        pipes: list[Connection] = []
        procs = []
        share = [args.clients // args.procs + (i < args.clients % args.procs)
                 for i in range(args.procs)]  # fmt: skip
        for n in share:
            parent, child = spawn.Pipe()
            proc = spawn.Process(
                target=client_process, args=(ex.ws_port, n, channels, child), daemon=True
            )
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        connected, slowest = 0, 0.0
        for pipe in pipes:
            if not pipe.poll(180):
                ex.ws.check()
                raise RuntimeError("a client process did not get its snapshots")
            _, ok, seconds = pipe.recv()
            connected += ok
            slowest = max(slowest, seconds)
        print(f"{connected} clients connected and subscribed to {', '.join(channels)} "
              f"in {slowest:.1f}s ({args.procs} client processes)", flush=True)  # fmt: skip

        source.start(rate)
        time.sleep(args.warmup)
        window_start = time.monotonic()
        sent0 = source.commands
        cpu0 = _cpu_seconds(ex.ws.proc.pid)
        time.sleep(args.seconds)
        window_end = time.monotonic()
        cpu1 = _cpu_seconds(ex.ws.proc.pid)
        commands = source.commands - sent0
        source.stop()
        time.sleep(2.0)  # the last updates reach the clients
        side_parent.send("stop")
        published: dict[int, float] = side_parent.recv()
        side.join(10)
        in_window = {s: t for s, t in published.items() if window_start <= t <= window_end}
        for pipe in pipes:
            pipe.send(("stop", window_start, window_end, in_window))
        results = [pipe.recv() for pipe in pipes]
        for proc in procs:
            proc.join(30)
        stats = _ws_stats(ex.ws_port)

    seconds = window_end - window_start
    depth_hist = merge([res["depth_hist"] for res in results])
    trade_hist = merge([res["trade_hist"] for res in results])
    delivered = sum(res["depth_n"] for res in results)
    expected = len(in_window) * connected
    messages_total = sum(res["messages"] for res in results)
    closed: dict[str, int] = {}
    for res in results:
        for k, v in res["closed"].items():
            closed[k] = closed.get(k, 0) + v
    updates_per_s = len(in_window) / seconds
    # Depth updates published in the window, and trades messages received in it.
    msgs_per_s = (delivered + sum(res["trade_n"] for res in results)) / seconds
    p50, p99 = percentile(depth_hist, 0.5), percentile(depth_hist, 0.99)
    p999, pmax = percentile(depth_hist, 0.999), percentile(depth_hist, 1.0)
    t50, t99 = percentile(trade_hist, 0.5), percentile(trade_hist, 0.99)
    ws_cpu = (cpu1 - cpu0) / seconds if cpu0 is not None and cpu1 is not None else None

    print(f"orders and cancels: {commands} in {seconds:.1f}s ({commands / seconds:.1f}/s)")
    print(f"depth updates published: {len(in_window)} ({updates_per_s:.1f}/s)")
    print(f"depth updates delivered: {delivered} of {expected} "
          f"({delivered / max(expected, 1):.2%}); all messages delivered in total: "
          f"{messages_total}")  # fmt: skip
    print(f"delivered messages/s (depth + trades): {msgs_per_s:,.0f}")
    print(f"fan-out latency, Redis PUBLISH -> client (depth): p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
          f" p99.9 {p999:.1f} ms, max {pmax:.1f} ms")  # fmt: skip
    commit = ", includes the Postgres commit" if args.source == "matcher" else ""
    print(f"batch stamp -> client (trades{commit}): p50 {t50:.1f} ms, p99 {t99:.1f} ms")
    client_cpu = [res["cpu_share"] for res in results]
    if ws_cpu is not None:
        print(f"CPU: ws service {ws_cpu:.0%} of one core; client processes "
              f"{', '.join(f'{c:.0%}' for c in client_cpu)} (this machine: {os.cpu_count()} "
              "cores for everything)")  # fmt: skip
    print(f"connections closed by the server: {closed or 'none'}; ws stats: {stats}")
    if connected < 1000 or updates_per_s < 95:
        target = f"not measured by this run ({connected} clients, {updates_per_s:.0f} updates/s)"
    else:
        target = "met" if p99 < 100 else "not met"
    print(f"target (1,000 clients, p99 < 100 ms at 100 updates/s): {target}")
    out: dict[str, Any] = {
        "ws_clients": connected,
        "ws_source": args.source,
        "ws_msgs_per_s": round(msgs_per_s),
        "ws_p50_ms": round(p50, 1),
        "ws_p99_ms": round(p99, 1),
        "ws_p999_ms": round(p999, 1),
        "ws_updates_per_s": round(updates_per_s, 1),
        "ws_delivered_share": round(delivered / max(expected, 1), 4),
        "ws_trade_p99_ms": round(t99, 1),
        "ws_cpu_share": None if ws_cpu is None else round(ws_cpu, 2),
        "ws_client_cpu_shares": [round(c, 2) for c in client_cpu],
        "ws_window_s": round(seconds, 1),
        "ws_client_procs": args.procs,
        "seconds": round(time.perf_counter() - t_start, 1),
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(out))
    return 0


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ws_stats(port: int) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{HOST}:{port}/readyz", timeout=5) as resp:
            doc: dict[str, Any] = orjson.loads(resp.read())
            return doc
    except (OSError, urllib.error.URLError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
