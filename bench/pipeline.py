"""Matcher pipeline benchmark against real local services (Postgres, Redis, Pub/Sub emulator).

Starts its own local stack on free ports (Postgres with fsync ON: ``pg_fast=False``), migrates
fresh databases, and measures:

* durable path, in process (no Pub/Sub): what the matcher does per batch of 1,000 commands --
  decode, dedupe lookup (of the commands that may be redeliveries, as the matcher), engine
  apply, ``Store.prepare`` then ``write_prepared`` (one transaction, commit),
  ``MarketData.publish`` (one Redis pipeline) -- over a mixed stream (deposits for 1,000 users,
  then limit orders that rest and cross, and cancels, each numbered among its user's commands
  as the API numbers them); then the same path under cProfile;
* Pub/Sub emulator: the same stream (its first N commands) pre-published with the users as
  ordering keys, drained by a bare unary-pull consumer (pull up to 1,000, one ack per batch)
  and by the real ``Matcher`` (in a thread) on another subscription of the same topic;
* cold start: ``Matcher.start()`` with 100,000 open orders and 10,000 accounts, from a snapshot
  followed by ~10k oplog rows of replay, and from a snapshot at the head of the oplog;
* what-if (``--whatif``; labelled WHAT-IF, never the headline figures): the durable path and a
  second matcher with TCP_NODELAY forced on their Postgres socket. ``shared.db`` sets it on
  every connection since this benchmark showed Nagle + delayed ACK stalling statements by
  ~40 ms, so the what-if now only confirms that.

Usage: ``python -m bench.pipeline [--commands 50000] [--pubsub-n 20000] [--seed 1]``.
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import logging
import os
import pstats
import random
import re
import socket
import statistics
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

from bench.streams import (
    HALF_WIDTH,
    MAX_QTY,
    MID,
    MIXED_SETUP_ORDERS,
    Op,
    mixed_stream,
    place_stream,
)
from infra.services import Stack, StackConfig
from matcher_service.engine import Engine
from matcher_service.engine.snapshot import snapshot, state_hash
from matcher_service.marketdata import MarketData
from matcher_service.persistence import BatchWrites, Store
from matcher_service.sequencer import maybe_applied, user_of
from matcher_service.service import Matcher, Pulled
from migrations.migrate import migrate
from shared.config import MatcherConfig, PostgresConfig, PubSubConfig
from shared.db import Database, connect
from shared.messages import (
    AnyCommand,
    Applied,
    CancelOrder,
    CreateAsset,
    CreateMarket,
    Deposit,
    PlaceOrder,
    Trade,
    UserSeq,
    command_decoder,
    encode,
)
from shared.producers import Signer
from shared.pubsub import ensure_topics

MARKET = "ETH-USDT"
TICK = 10_000  # 0.01 USDT at precision 6: stream prices are ticks, MID = 100 USDT
STEP = 10_000  # 0.0001 ETH at precision 8: stream quantities are lots
ETH_FUNDS = 100 * 10**8  # 100 ETH per user
USDT_FUNDS = 1_000_000 * 10**6  # 1M USDT per user
DEPTH_LEVELS = 50  # MatcherConfig defaults
REPLY_TTL_S = 3600
USER_SEQ_EPOCH = 1  # when the users' command counts began (any fixed time will do)

Batch = list[tuple[AnyCommand, Applied]]


# ---------------------------------------------------------------- streams


def admin_commands() -> list[AnyCommand]:
    return [
        CreateAsset(id="asset-eth", asset="ETH", precision=8),
        CreateAsset(id="asset-usdt", asset="USDT", precision=6),
        CreateMarket(
            id="market-eth-usdt", market=MARKET, base="ETH", quote="USDT", tick="0.01",
            step="0.0001", min_amount="0.0001", min_notional="0", maker_fee="0.001",
            taker_fee="0.002",
        ),
    ]  # fmt: skip


def deposits(users: Sequence[str]) -> list[AnyCommand]:
    out: list[AnyCommand] = []
    for u in users:
        out.append(Deposit(id=f"dep-eth-{u}", user=u, asset="ETH", amount=ETH_FUNDS, ref=f"e{u}"))
        out.append(
            Deposit(id=f"dep-usdt-{u}", user=u, asset="USDT", amount=USDT_FUNDS, ref=f"u{u}")
        )
    return out


def order_commands(
    ops: Sequence[Op],
    users: Sequence[str],
    prefix: str,
    owner: dict[int, str] | None = None,
    numbers: dict[str, int] | None = None,
) -> list[AnyCommand]:
    """Stream ops as commands (as bench/ours.py): buyers and sellers are disjoint halves of
    ``users``; every order carries a client id and cancels use it, so a cancel never depends
    on the engine's order numbering (which follows delivery order across ordering keys).
    Each command is numbered among its user's commands (``user_seq``, counting on from
    ``numbers``), as the API numbers every order and cancel it accepts (api/dispatch.py)."""
    half = len(users) // 2
    owner = {} if owner is None else owner
    numbers = {} if numbers is None else numbers
    out: list[AnyCommand] = []
    cmd: AnyCommand
    for n, op in enumerate(ops):
        oid = op[1]
        if len(op) == 5:
            _, _, is_buy, price, qty = op
            user = owner[oid] = users[oid % half + (0 if is_buy else half)]
            cmd = PlaceOrder(
                id=f"{prefix}{n}", user=user, market=MARKET, side="buy" if is_buy else "sell",
                price=price * TICK, amount=qty * STEP, client_order_id=f"c{oid}",
            )  # fmt: skip
        else:
            user = owner[oid]
            cmd = CancelOrder(id=f"{prefix}{n}", user=user, client_order_id=f"c{oid}")
        numbers[user] = cmd_n = numbers.get(user, 0) + 1
        cmd.user_seq = UserSeq(USER_SEQ_EPOCH, cmd_n)
        out.append(cmd)
    return out


def key_of(cmd: AnyCommand) -> str:
    return str(getattr(cmd, "user", None) or "admin")


def durable_stream(commands: int, seed: int, users: int = 1000) -> list[AnyCommand]:
    """Admin, two deposits per user, then mixed_stream (its 10k-order book, then places that
    rest or cross and cancels): ``commands`` in all."""
    names = [f"u{i}" for i in range(users)]
    head = admin_commands() + deposits(names)
    measured_n = max(1, commands - len(head) - MIXED_SETUP_ORDERS)
    setup, measured = mixed_stream(measured_n, seed)
    return head + order_commands([*setup, *measured], names, "o")


def tail_ops(n: int, first_id: int, live: list[int], seed: int) -> list[Op]:
    """``n`` ops after a book of passive orders ``live``: 50% cancels of resting orders, 40%
    passive places, 10% marketable places (which trade)."""
    rng = random.Random(seed)
    ops: list[Op] = []
    next_id = first_id
    for _ in range(n):
        r = rng.random()
        if r < 0.5 and live:
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            ops.append(("cancel", live.pop()))
            continue
        is_buy = rng.random() < 0.5
        if r < 0.9:
            off = min(rng.randint(1, HALF_WIDTH), rng.randint(1, HALF_WIDTH))
            price = MID - off if is_buy else MID + off
            live.append(next_id)
        else:
            through = rng.randint(1, 4)
            price = MID + through if is_buy else MID - through
        ops.append(("place", next_id, is_buy, price, rng.randint(1, MAX_QTY)))
        next_id += 1
    return ops


# ---------------------------------------------------------------- instrumentation


def _label(sql: str) -> str:
    s = sql.lstrip()
    m = re.match(r"INSERT INTO (\w+)", s)
    if m:
        return f"INSERT {m.group(1)}"
    m = re.match(r"UPDATE (\w+)", s)
    if m:
        return f"UPDATE {m.group(1)}"
    if s.startswith("SELECT epoch"):
        return "SELECT lease (fence)"
    if s.startswith("SELECT command_id"):
        return "SELECT oplog (dedupe)"
    return s.split(None, 1)[0].upper()


class TimedDb:
    """A Database that adds up the wall time of each kind of statement."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seconds: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def run(self, sql: str, stream: Any = None, **params: Any) -> Any:
        t = time.perf_counter()
        try:
            return self.db.run(sql, stream=stream, **params)
        finally:
            label = _label(sql)
            self.seconds[label] += time.perf_counter() - t
            self.count[label] += 1

    def close(self) -> None:
        self.db.close()


def set_nodelay(db: Database) -> bool:
    """What-if only: TCP_NODELAY on a pg8000 native connection (pg8000 1.31 leaves Nagle on,
    so a statement whose message goes out in several writes can wait ~40 ms for a delayed
    ACK). Returns whether it could be set."""
    sock = getattr(db, "_usock", None)
    if not isinstance(sock, socket.socket) or sock.family == socket.AF_UNIX:
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


@dataclass
class DurableResult:
    commands: int
    seconds: float
    batches: int
    stages: dict[str, float]  # seconds in each stage, summed over batches
    commit_ms: list[float]  # write_prepared per batch
    ok: int = 0
    trades: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # this process's CPU time (all threads) over the run


def backend_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) the Postgres backends ``pids`` have used so far: the
    server's share of the work, which the machine's load does not inflate as it does wall
    time (the benchmark runs its own local cluster, so the backends are on this machine)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_durable(
    store: Store,
    reads: Store,
    md: MarketData,
    payloads: Sequence[bytes],
    batch_size: int,
    engine: Engine,
    committer_profile: cProfile.Profile | None = None,
) -> DurableResult:
    """The matcher's per-batch path without Pub/Sub, on pre-encoded commands, pipelined as
    the matcher is: a batch is decoded, deduplicated (on a second connection, ``reads``, and
    against the batch in flight), applied and its Redis pipeline and Postgres statement
    (``Store.prepare``) built on this thread, then
    handed to a committer thread (its statement, then its Redis pipeline) once the batch
    before it is done there. Stages "decode" to "wait" are this thread's time; "commit" and
    "redis" are the committer thread's (``commit_ms`` is its statement per batch)."""
    stages = dict.fromkeys(("decode", "dedupe", "apply", "publish", "rows", "wait"), 0.0)
    committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
    in_flight: Future[tuple[float, float]] | None = None
    in_flight_ids: set[str] = set()
    thread_s = {"commit (committer thread)": 0.0, "redis (committer thread)": 0.0}
    commit_ms: list[float] = []
    epoch = store.take_lease("bench")

    def commit_and_send(writes: BatchWrites, published: int, pipe: Any) -> tuple[float, float]:
        if committer_profile is not None:
            committer_profile.enable()
        t = time.perf_counter()
        store.write_prepared(epoch, writes, published)
        t_commit = time.perf_counter()
        if pipe is not None:
            pipe.execute()
        t_sent = time.perf_counter()
        if committer_profile is not None:
            committer_profile.disable()
        return t_commit - t, t_sent - t_commit

    def settle() -> None:
        if in_flight is not None:
            commit_s, redis_s = in_flight.result()
            commit_ms.append(commit_s * 1000)
            thread_s["commit (committer thread)"] += commit_s
            thread_s["redis (committer thread)"] += redis_s

    published = engine.seq
    last_ts = 0
    ok = trades = 0
    rejected: dict[str, int] = defaultdict(int)
    decode = command_decoder.decode
    t_start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(0, len(payloads), batch_size):
        t0 = time.perf_counter()
        commands: list[AnyCommand] = [decode(p) for p in payloads[i : i + batch_size]]
        t1 = time.perf_counter()
        # As the matcher: only commands that may be in the oplog already are looked up
        # (numbered at or before their user's place, or not numbered: the deposits).
        seqs = engine.user_seqs
        ids = [c.id for c in commands if maybe_applied(c, seqs.get(user_of(c) or ""))]
        known = reads.known_results(ids) if ids else {}
        t2 = time.perf_counter()
        ts = last_ts = max(now_ms(), last_ts)
        batch: Batch = []
        apply = engine.apply
        for cmd in commands:
            if cmd.id in known or cmd.id in in_flight_ids:
                continue
            cmd.ts = ts
            batch.append((cmd, apply(cmd)))
        t3 = time.perf_counter()
        pipe = md.prepare(engine, batch)
        t4 = time.perf_counter()
        writes = Store.prepare(batch)
        t4b = time.perf_counter()
        settle()
        t5 = time.perf_counter()
        in_flight = committer.submit(commit_and_send, writes, published, pipe)
        in_flight_ids = {c.id for c, _ in batch}
        published = engine.seq
        for key, dt in (
            ("decode", t1 - t0), ("dedupe", t2 - t1), ("apply", t3 - t2), ("publish", t4 - t3),
            ("rows", t4b - t4), ("wait", t5 - t4b),
        ):  # fmt: skip
            stages[key] += dt
        for _, ap in batch:
            if ap.ok:
                ok += 1
            else:
                rejected[ap.reason or "?"] += 1
            trades += sum(1 for ev in ap.events if type(ev) is Trade)
    settle()
    seconds = time.perf_counter() - t_start
    cpu_s = time.process_time() - cpu_start
    committer.shutdown()
    stages.update(thread_s)
    return DurableResult(
        len(payloads), seconds, len(commit_ms), stages, commit_ms, ok, trades, dict(rejected),
        cpu_s,
    )  # fmt: skip


def pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# ---------------------------------------------------------------- profile


def _fn_stats(stats: dict[Any, Any], file_part: str, name: str) -> list[Any]:
    return [v for k, v in stats.items() if file_part in k[0] and k[2] == name]


def _cum(stats: dict[Any, Any], file_part: str, name: str) -> float:
    return float(sum(v[3] for v in _fn_stats(stats, file_part, name)))


def _tot(stats: dict[Any, Any], file_part: str, name: str) -> float:
    return float(sum(v[2] for v in _fn_stats(stats, file_part, name)))


def _cum_from(stats: dict[Any, Any], file_part: str, name: str, callers: set[str]) -> float:
    """Cumulative time of a function counted only for calls from the named callers."""
    total = 0.0
    for v in _fn_stats(stats, file_part, name):
        for caller, cv in v[4].items():
            if caller[2] in callers:
                total += cv[3]
    return total


def profile_breakdown(
    prof: cProfile.Profile, committer: cProfile.Profile
) -> tuple[list[tuple[str, float]], list[str]]:
    """Where the profiled durable run spent its time, as (part, seconds), plus top functions:
    the main thread's parts, then the committer thread's (profiled apart)."""
    st = pstats.Stats(prof)
    stats: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    cst = pstats.Stats(committer)
    cstats: dict[Any, Any] = cst.stats  # type: ignore[attr-defined]
    total = _cum(stats, "bench/pipeline.py", "run_durable")
    decode = _cum(stats, "~", "<method 'decode' of 'msgspec.json.Decoder' objects>")
    dedupe = _cum(stats, "persistence.py", "known_results")
    engine = _cum(stats, "engine/engine.py", "apply")
    publish = _cum(stats, "marketdata.py", "prepare")
    dumps = _cum_from(
        stats, "~", "<orjson.dumps>",
        {"prepare", "_trade", "_depth", "_reply_json", "_write_ticker", "_write_klines"},
    )  # fmt: skip
    wait = _cum(stats, "bench/pipeline.py", "settle")
    rows_s = _cum(stats, "persistence.py", "prepare")
    enc = _cum_from(stats, "~", "<method 'encode' of 'msgspec.json.Encoder' objects>", {"add"})
    parts = [
        ("main: decode commands (msgspec)", decode),
        ("main: dedupe lookup (Postgres SELECT)", dedupe),
        ("main: engine apply", engine),
        ("main: build market data (Python)", publish - dumps),
        ("main: orjson encode of market data", dumps),
        ("main: build Postgres rows (Python)", rows_s - enc),
        ("main: msgspec JSON encode of rows", enc),
        ("main: wait for the batch before on the committer thread", wait),
    ]
    parts.append(("main: rest (loop, stamping, counting)", total - sum(s for _, s in parts)))
    write = _cum(cstats, "persistence.py", "write_prepared")
    pg = _cum_from(cstats, "bench/pipeline.py", "run", {"run_fenced"})
    execute = _cum(cstats, "redis/client.py", "execute")
    parts += [
        ("committer: Postgres statement + commit (pg8000 + server)", pg),
        ("committer: rest of write_prepared", write - pg),
        ("committer: Redis pipeline execute (redis-py + server)", execute),
    ]
    top: list[str] = []
    st.add(cst)
    both: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    rows = sorted(both.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    for (file, line, name), v in rows:
        where = file.split("/site-packages/")[-1].replace(os.getcwd() + "/", "")
        top.append(f"{v[2]:7.3f}s tot {v[3]:7.3f}s cum {v[1]:>8} calls  {name} ({where}:{line})")
    return parts, top


# ---------------------------------------------------------------- Pub/Sub


def publish_all(ps: PubSubConfig, commands: Sequence[AnyCommand]) -> float:
    """Publish with the users as ordering keys; returns seconds (not part of any figure)."""
    publisher = pubsub_v1.PublisherClient(
        # One batch in flight per ordering key: let each key's batch fill up (untimed anyway).
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_latency=0.5),
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
    )
    topic = publisher.topic_path(ps.project, ps.commands_topic)
    signer = Signer.load()  # the matcher applies only signed commands (shared.producers)
    t0 = time.perf_counter()
    futures = []
    for c in commands:
        data, key = encode(c), key_of(c)
        attributes = signer.attributes(type(c), data, key)
        futures.append(publisher.publish(topic, data, ordering_key=key, **attributes))
    for f in futures:
        f.result(timeout=120)
    seconds = time.perf_counter() - t0
    publisher.stop()
    return seconds


@dataclass
class DrainResult:
    messages: int
    seconds: float
    pulls: int


def raw_drain(subscription: str, n: int, timeout: float = 120.0) -> DrainResult:
    """The bare consumer: unary pull of up to 1,000, one acknowledge per pull, nothing else."""
    sub = pubsub_v1.SubscriberClient()
    seen: set[str] = set()
    pulls = 0
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while len(seen) < n and time.perf_counter() < deadline:
        try:
            resp = sub.pull(request={"subscription": subscription, "max_messages": 1000}, timeout=5)
        except gexc.DeadlineExceeded:
            continue
        pulls += 1
        msgs = resp.received_messages
        if not msgs:
            continue
        sub.acknowledge(request={"subscription": subscription, "ack_ids": [m.ack_id for m in msgs]})
        seen.update(m.message.message_id for m in msgs)
    seconds = time.perf_counter() - t0
    sub.close()
    return DrainResult(len(seen), seconds, pulls)


class BatchLog(logging.Handler):
    """Collects the matcher's per-batch log fields (apply/commit/publish ms, size)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.batches: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "batch":
            f = record.__dict__
            self.batches.append(
                {k: float(f[k]) for k in ("size", "apply_ms", "commit_ms", "publish_ms")}
            )


class TimedMatcher(Matcher):
    """The real matcher, noting its first pull, time spent in pull, and when it reached n."""

    def __init__(self, cfg: MatcherConfig, target: int, nodelay: bool = False) -> None:
        super().__init__(cfg, holder="bench")
        self.target = target
        self.nodelay = nodelay
        self.t_first_pull: float | None = None
        self.t_done: float | None = None
        self.cpu_first = self.cpu_done = 0.0  # this process's CPU time at both ends
        self.pull_seconds = 0.0  # in pull(), on whichever thread
        self.check_seconds = 0.0  # decoding and signature checks, on whichever thread
        self.next_seconds = 0.0  # the main thread's wait for its next batch (pulled, checked)
        self.main_seconds = 0.0  # the main thread in step(), all of it
        self.done = threading.Event()
        self.batch_log: list[dict[str, float]] = []
        self.timed_db: TimedDb | None = None

    def _connect(self) -> None:
        """The matcher's own connection, wrapped to time each statement."""
        super()._connect()
        assert self.db is not None
        if self.nodelay:
            set_nodelay(self.db)
        self.timed_db = TimedDb(self.db)
        self.db = self.timed_db
        self.store = Store(self.timed_db)

    def pull(self, on_part: Callable[[list[Any]], None] | None = None) -> list[Any]:
        t = time.perf_counter()
        if self.t_first_pull is None:
            self.t_first_pull = t
            self.cpu_first = time.process_time()
        try:
            return super().pull(on_part)
        finally:
            self.pull_seconds += time.perf_counter() - t

    def _check_part(self, messages: list[Any]) -> Pulled:
        t = time.perf_counter()
        try:
            return super()._check_part(messages)
        finally:
            self.check_seconds += time.perf_counter() - t

    def _next_pulled(self) -> Pulled:
        t = time.perf_counter()
        try:
            return super()._next_pulled()
        finally:
            self.next_seconds += time.perf_counter() - t

    def step(self) -> int:
        t = time.perf_counter()
        n = super().step()
        if self.t_done is None:
            self.main_seconds += time.perf_counter() - t
        if self.t_done is None and self.stats["commands"] + self.stats["duplicates"] >= self.target:
            self.t_done = time.perf_counter()
            self.cpu_done = time.process_time()
            self.done.set()
        return n


def run_matcher(
    cfg: MatcherConfig, n: int, nodelay: bool = False, timeout: float = 180.0
) -> tuple[TimedMatcher, float]:
    handler = BatchLog()
    mlog = logging.getLogger("matcher")
    mlog.addHandler(handler)
    mlog.setLevel(logging.INFO)
    mlog.propagate = False
    matcher = TimedMatcher(cfg, n, nodelay)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            matcher.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="matcher", daemon=True)
    thread.start()
    finished = matcher.done.wait(timeout)
    matcher.stop()
    thread.join(30)
    mlog.removeHandler(handler)
    matcher.batch_log = handler.batches
    if errors:
        raise errors[0]
    if not finished or matcher.t_first_pull is None or matcher.t_done is None:
        raise RuntimeError(f"matcher applied {matcher.stats} of {n} in {timeout}s")
    return matcher, matcher.t_done - matcher.t_first_pull


# ---------------------------------------------------------------- databases


def fresh_db(name: str) -> PostgresConfig:
    admin = connect(PostgresConfig.load())
    admin.run(f"CREATE DATABASE {name}")
    admin.close()
    cfg = msgspec.structs.replace(PostgresConfig.load(), database=name)
    db = connect(cfg)
    migrate(db)
    db.close()
    return cfg


def apply_and_write(
    store: Store, engine: Engine, commands: Sequence[AnyCommand], batch_size: int, epoch: int
) -> None:
    """Build state quickly: apply in process and write batches (published_seq kept current)."""
    for i in range(0, len(commands), batch_size):
        ts = now_ms()
        batch: Batch = []
        for cmd in commands[i : i + batch_size]:
            cmd.ts = ts
            batch.append((cmd, engine.apply(cmd)))
        store.write_batch(epoch, batch, engine.seq)


# ---------------------------------------------------------------- phases


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def row(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))
        print(f"  {what}: {value} {note}".rstrip(), flush=True)


def phase_durable(args: argparse.Namespace, rep: Report, redis_url: str) -> None:
    commands = durable_stream(args.commands, args.seed)
    payloads = [encode(c) for c in commands]
    r = redis.Redis.from_url(redis_url)
    r.flushall()
    pg = fresh_db("bench_durable")
    timed = TimedDb(connect(pg, "bench"))
    timed_reads = TimedDb(connect(pg, "bench-reads"))
    store = Store(timed)
    engine = Engine()
    md = MarketData(r, DEPTH_LEVELS, REPLY_TTL_S)
    md.rebuild(engine, [], now_ms=now_ms())
    backends = [int(db.run("SELECT pg_backend_pid()")[0][0]) for db in (timed, timed_reads)]
    pg_cpu = backend_cpu_s(backends)
    res = run_durable(store, Store(timed_reads), md, payloads, args.batch, engine)
    pg_cpu = backend_cpu_s(backends) - pg_cpu
    timed.close()
    timed_reads.close()
    for label, sec in timed_reads.seconds.items():
        timed.seconds[label] += sec
        timed.count[label] += timed_reads.count[label]
    rate = res.commands / res.seconds
    p50, p99 = pct(res.commit_ms, 0.5), pct(res.commit_ms, 0.99)
    per_batch = {k: v * 1000 / res.batches for k, v in res.stages.items()}
    places = sum(1 for c in commands if type(c) is PlaceOrder)
    cancels = sum(1 for c in commands if type(c) is CancelOrder)
    print(
        f"durable stream: {res.commands:,} commands ({places:,} places, {cancels:,} cancels,"
        f" {res.commands - places - cancels:,} admin/deposits), {res.trades:,} trades,"
        f" {len(engine.orders):,} open at the end, rejected {res.rejected}"
    )
    rep.row("durable cmds/s (Postgres fsync on)", f"{rate:,.0f}", f"{res.batches} batches")
    cpu_us = res.cpu_s * 1e6 / res.commands
    rep.row("  CPU of this process, us per command", f"{cpu_us:.1f}", "all threads")
    pg_us = pg_cpu * 1e6 / res.commands
    rep.row("  CPU of its Postgres backends, us per command", f"{pg_us:.1f}", "both connections")
    rep.row("  commit (write_prepared) p50 / p99 ms", f"{p50:.1f} / {p99:.1f}")
    main_ms = sum(v for k, v in per_batch.items() if "thread" not in k)
    for k, v in per_batch.items():
        note = "" if "thread" in k else f"{100 * v / main_ms:.0f}% of the main thread"
        rep.row(f"  stage {k}, ms per batch", f"{v:.1f}", note)
    for label in sorted(timed.seconds, key=lambda k: -timed.seconds[k]):
        ms = timed.seconds[label] * 1000 / res.batches
        rep.row(f"    pg {label}, ms per batch", f"{ms:.2f}", f"x{timed.count[label]}")
    rep.figures.update(
        durable_cmds_per_s=round(rate), durable_cpu_us_per_cmd=round(cpu_us, 1),
        durable_pg_cpu_us_per_cmd=round(pg_us, 1),
        p50_commit_ms=round(p50, 2), p99_commit_ms=round(p99, 2),
        durable_commands=res.commands, durable_trades=res.trades,
        durable_stage_ms_per_batch={k: round(v, 2) for k, v in per_batch.items()},
        durable_pg_ms_per_batch={
            k: round(v * 1000 / res.batches, 2) for k, v in timed.seconds.items()
        },
    )  # fmt: skip

    # The same path under cProfile, on a fresh database and Redis.
    r.flushall()
    pg = fresh_db("bench_profile")
    db, reads_db = connect(pg, "bench"), connect(pg, "bench-reads")
    store = Store(TimedDb(db))
    engine = Engine()
    md = MarketData(r, DEPTH_LEVELS, REPLY_TTL_S)
    md.rebuild(engine, [], now_ms=now_ms())
    prof, committer_prof = cProfile.Profile(), cProfile.Profile()
    prof.enable()
    run_durable(
        store, Store(reads_db), md, payloads[: args.profile_n], args.batch, engine, committer_prof
    )
    prof.disable()
    db.close()
    reads_db.close()
    r.close()
    parts, top = profile_breakdown(prof, committer_prof)
    total = sum(s for _, s in parts)
    print(f"\ncProfile of the durable path ({min(args.profile_n, len(payloads)):,} commands):")
    for name, s in parts:
        print(f"  {100 * s / total:5.1f}%  {s:6.2f}s  {name}")
    print("  top functions by own time:")
    for line in top:
        print(f"    {line}")
    rep.figures["profile_share_pct"] = {name: round(100 * s / total, 1) for name, s in parts}

    if args.whatif:
        # The same durable run once more with TCP_NODELAY on the Postgres socket.
        r = redis.Redis.from_url(redis_url)
        r.flushall()
        pg = fresh_db("bench_durable_nd")
        db, reads_db = connect(pg, "bench"), connect(pg, "bench-reads")
        set_nodelay(db)
        set_nodelay(reads_db)
        engine = Engine()
        md = MarketData(r, DEPTH_LEVELS, REPLY_TTL_S)
        md.rebuild(engine, [], now_ms=now_ms())
        nd = run_durable(Store(db), Store(reads_db), md, payloads, args.batch, engine)
        db.close()
        reads_db.close()
        r.close()
        nd_rate = nd.commands / nd.seconds
        nd50, nd99 = pct(nd.commit_ms, 0.5), pct(nd.commit_ms, 0.99)
        rep.row(
            "WHAT-IF durable + TCP_NODELAY cmds/s", f"{nd_rate:,.0f}",
            f"commit p50 / p99 {nd50:.1f} / {nd99:.1f} ms",
        )  # fmt: skip
        rep.figures.update(
            whatif_nodelay_durable_cmds_per_s=round(nd_rate),
            whatif_nodelay_p50_commit_ms=round(nd50, 2),
            whatif_nodelay_p99_commit_ms=round(nd99, 2),
        )


def _ordered_subscription(ps: PubSubConfig, name: str) -> str:
    """Another subscription of the commands topic with the matcher's settings."""
    sub = pubsub_v1.SubscriberClient()
    path: str = sub.subscription_path(ps.project, name)
    sub.create_subscription(
        request={
            "name": path, "topic": sub.topic_path(ps.project, ps.commands_topic),
            "enable_message_ordering": True, "ack_deadline_seconds": 60,
            "dead_letter_policy": {
                "dead_letter_topic": sub.topic_path(ps.project, ps.dead_letter_topic),
                "max_delivery_attempts": ps.max_delivery_attempts,
            },
        }
    )  # fmt: skip
    sub.close()
    return path


@dataclass
class MatcherRun:
    rate: float
    seconds: float
    sizes: list[float]
    busy: dict[str, float]  # seconds in the matcher's own apply/commit/publish timers
    pull_s: float
    check_s: float
    next_s: float
    main_s: float
    duplicates: int
    pg_ms_per_batch: dict[str, float]
    cpu_us_per_command: float


def matcher_run(
    ps: PubSubConfig, db_name: str, admin: Sequence[AnyCommand], n: int, redis_url: str,
    nodelay: bool,
) -> MatcherRun:  # fmt: skip
    """The real Matcher on ``ps.commands_subscription``, from its first pull to the n-th
    command applied. Its database holds the market already (admin commands are keyed
    "admin" and would race the users' keys on Pub/Sub)."""
    r = redis.Redis.from_url(redis_url)
    r.flushall()
    r.close()
    pg = fresh_db(db_name)
    db = connect(pg, "bench")
    store = Store(db)
    apply_and_write(store, Engine(), admin, 1000, store.take_lease("bench-setup"))
    db.close()
    cfg = MatcherConfig(
        postgres=pg, pubsub=ps, redis_url=redis_url, port=0, batch_max=1000, batch_wait_ms=5,
        snapshot_every=0, snapshot_seconds=3600.0, reply_ttl_s=REPLY_TTL_S,
        depth_levels=DEPTH_LEVELS,
    )  # fmt: skip
    matcher, seconds = run_matcher(cfg, n, nodelay)
    log = matcher.batch_log
    sizes = [b["size"] for b in log if b["size"]]
    busy = {k: sum(b[k] for b in log) / 1000 for k in ("apply_ms", "commit_ms", "publish_ms")}
    tdb = matcher.timed_db
    pg_ms = {k: v * 1000 / max(1, len(sizes)) for k, v in tdb.seconds.items()} if tdb else {}
    return MatcherRun(
        n / seconds,
        seconds,
        sizes,
        busy,
        matcher.pull_seconds,
        matcher.check_seconds,
        matcher.next_seconds,
        matcher.main_seconds,
        matcher.stats["duplicates"],
        pg_ms,
        (matcher.cpu_done - matcher.cpu_first) * 1e6 / n,
    )


def phase_pubsub(args: argparse.Namespace, rep: Report, redis_url: str) -> None:
    stream = durable_stream(args.commands, args.seed)
    admin = [c for c in stream if key_of(c) == "admin"]
    published = [c for c in stream if key_of(c) != "admin"][: args.pubsub_n]
    n = len(published)
    suffix = uuid.uuid4().hex[:8]
    ps = PubSubConfig(
        project=os.environ["GOOGLE_CLOUD_PROJECT"], commands_topic=f"commands-{suffix}",
        commands_subscription=f"commands-matcher-{suffix}", events_topic=f"events-{suffix}",
        dead_letter_topic=f"commands-dl-{suffix}", max_delivery_attempts=5,
    )  # fmt: skip
    ensure_topics(ps)  # topic, the matcher's subscription (ordering on), events, dead letters
    # Every subscription exists before the publish, so each gets the same messages.
    raw_sub = _ordered_subscription(ps, f"commands-raw-{suffix}")
    nd_name = f"commands-nodelay-{suffix}"
    if args.whatif:
        _ordered_subscription(ps, nd_name)
    keys = len({key_of(c) for c in published})
    pub_s = publish_all(ps, published)
    print(f"published {n:,} messages over {keys:,} ordering keys in {pub_s:.1f}s (not timed)")

    raw = raw_drain(raw_sub, n)
    raw_rate = raw.messages / raw.seconds
    rep.row(
        "emulator raw pull msg/s", f"{raw_rate:,.0f}",
        f"{raw.messages:,} in {raw.seconds:.2f}s, {raw.pulls} pulls,"
        f" {raw.messages / max(1, raw.pulls):.0f}/pull",
    )  # fmt: skip

    m = matcher_run(ps, "bench_matcher", admin, n, redis_url, nodelay=False)
    rep.row(
        "emulator matcher cmds/s", f"{m.rate:,.0f}",
        f"{n:,} in {m.seconds:.2f}s, {len(m.sizes)} batches of {statistics.mean(m.sizes):.0f}"
        f" avg (max {max(m.sizes):.0f}), duplicates {m.duplicates}",
    )  # fmt: skip
    rep.row(
        "  matcher time split", f"pull {m.pull_s:.2f}s",
        f"apply+dedupe {m.busy['apply_ms']:.2f}s, commit {m.busy['commit_ms']:.2f}s,"
        f" ack+redis {m.busy['publish_ms']:.2f}s",
    )  # fmt: skip
    rep.row(
        "  the main thread", f"{m.main_s:.2f}s in step()",
        f"{m.next_s:.2f}s waiting for its next batch; pull() {m.pull_s:.2f}s and decode +"
        f" signature checks {m.check_s:.2f}s on whichever thread",
    )  # fmt: skip
    top = sorted(m.pg_ms_per_batch.items(), key=lambda kv: -kv[1])[:6]
    print("    matcher's Postgres, ms per batch: " + ", ".join(f"{k} {v:.1f}" for k, v in top))
    rep.row(
        "  matcher CPU per command", f"{m.cpu_us_per_command:.0f} us",
        "this process (the matcher's threads) from its first pull to the last command",
    )  # fmt: skip
    rep.row("matcher / raw", f"{m.rate / raw_rate:.2f}", "target >= 0.9")
    rep.figures.update(
        emulator_messages=n, emulator_ordering_keys=keys,
        emulator_raw_pull_per_s=round(raw_rate), emulator_raw_msgs_per_pull=round(
            raw.messages / max(1, raw.pulls), 1),
        emulator_matcher_per_s=round(m.rate), matcher_vs_raw=round(m.rate / raw_rate, 3),
        matcher_batches=len(m.sizes), matcher_avg_batch=round(statistics.mean(m.sizes), 1),
        matcher_pull_s=round(m.pull_s, 2), matcher_commit_s=round(m.busy["commit_ms"], 2),
        matcher_check_s=round(m.check_s, 2), matcher_next_s=round(m.next_s, 2),
        matcher_step_s=round(m.main_s, 2), matcher_cpu_us_per_command=round(m.cpu_us_per_command),
        matcher_apply_s=round(m.busy["apply_ms"], 2),
        matcher_ack_publish_s=round(m.busy["publish_ms"], 2),
        matcher_pg_ms_per_batch={k: round(v, 2) for k, v in m.pg_ms_per_batch.items()},
    )  # fmt: skip

    if args.whatif:
        nd_ps = msgspec.structs.replace(ps, commands_subscription=nd_name)
        w = matcher_run(nd_ps, "bench_matcher_nd", admin, n, redis_url, nodelay=True)
        rep.row(
            "WHAT-IF matcher + TCP_NODELAY cmds/s", f"{w.rate:,.0f}",
            f"{w.rate / raw_rate:.2f} of raw; {len(w.sizes)} batches of"
            f" {statistics.mean(w.sizes):.0f} avg; commit {w.busy['commit_ms']:.2f}s",
        )  # fmt: skip
        rep.figures.update(
            whatif_nodelay_matcher_per_s=round(w.rate),
            whatif_nodelay_matcher_vs_raw=round(w.rate / raw_rate, 3),
        )


def _start_once(cfg: MatcherConfig, prof: cProfile.Profile | None = None) -> tuple[float, Matcher]:
    """Seconds of ``Matcher.start()`` (after acquire) until ready; the matcher is left open."""
    m = Matcher(cfg, holder="bench-cold")
    m.acquire()
    if prof is not None:
        prof.enable()
    t = time.perf_counter()
    m.start()
    seconds = time.perf_counter() - t
    if prof is not None:
        prof.disable()
    if not m.ready.is_set():
        raise RuntimeError("matcher not ready after start()")
    return seconds, m


def best_start(cfg: MatcherConfig, repeat: int) -> tuple[float, Matcher]:
    """The fastest of ``repeat`` starts; returns the last matcher (open) for checks."""
    times: list[float] = []
    m: Matcher | None = None
    for _ in range(max(1, repeat)):
        if m is not None:
            m.close()
            m = None  # drop its engine before the next start
            gc.collect()
        seconds, m = _start_once(cfg)
        times.append(seconds)
    assert m is not None
    return min(times), m


def start_breakdown(prof: cProfile.Profile, total: float) -> list[tuple[str, float]]:
    """Where a profiled ``start()`` spent its time."""
    stats: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    restore_s = _cum_from(stats, "engine/snapshot.py", "restore", {"recover"})
    hash_s = _cum_from(stats, "engine/snapshot.py", "state_hash", {"recover"})
    parts = [
        ("read snapshot row", _cum(stats, "persistence.py", "latest_snapshot")),
        ("restore (msgpack -> engine)", restore_s),
        ("state_hash check (re-encode + sha256)", hash_s),
        ("read + decode oplog", _cum(stats, "persistence.py", "commands_after")),
        ("replay (engine apply)", _cum_from(stats, "engine/engine.py", "apply", {"recover"})),
        ("read trades of the last day", _cum(stats, "persistence.py", "trades_since")),
        ("market data rebuild (Redis)", _cum(stats, "marketdata.py", "rebuild")),
    ]
    parts.append(("rest", total - sum(v for _, v in parts)))
    return parts


def phase_cold(args: argparse.Namespace, rep: Report, redis_url: str) -> None:
    users = [f"u{i}" for i in range(args.cold_accounts)]
    book = place_stream(args.cold_orders, args.seed)
    live = list(range(1, args.cold_orders + 1))
    tail = tail_ops(args.cold_replay, args.cold_orders + 1, live, args.seed)
    owner: dict[int, str] = {}
    numbers: dict[str, int] = {}
    head = admin_commands() + deposits(users) + order_commands(book, users, "b", owner, numbers)
    tail_cmds = order_commands(tail, users, "t", owner, numbers)
    r = redis.Redis.from_url(redis_url)
    r.flushall()
    r.close()
    pg = fresh_db("bench_cold")
    db = connect(pg, "bench")
    store = Store(db)
    engine = Engine()
    epoch = store.take_lease("bench-build")
    t0 = time.perf_counter()
    apply_and_write(store, engine, head, 5000, epoch)
    snap_seq = engine.seq
    data = snapshot(engine)
    store.save_snapshot(snap_seq, state_hash(engine), data)
    apply_and_write(store, engine, tail_cmds, 5000, epoch)
    db.close()
    build_s = time.perf_counter() - t0
    print(
        f"cold-start state built in {build_s:.1f}s: {len(engine.accounts.users):,} accounts,"
        f" {len(engine.orders):,} open orders, snapshot at seq {snap_seq:,} ({len(data) / 1e6:.1f}"
        f" MB), oplog head {engine.seq:,}"
    )
    # Keep only what the checks need, so the starts below do not pay for this process's heap.
    head_seq, accounts = engine.seq, len(engine.accounts.users)
    head_hash, head_snapshot = state_hash(engine), snapshot(engine)
    del engine, head, tail_cmds, book, owner, live, tail
    gc.collect()
    cfg = MatcherConfig(
        postgres=pg, pubsub=PubSubConfig.load(), redis_url=redis_url, port=0, batch_max=1000,
        batch_wait_ms=5, snapshot_every=0, snapshot_seconds=3600.0, reply_ttl_s=REPLY_TTL_S,
        depth_levels=DEPTH_LEVELS,
    )  # fmt: skip
    replay_s, m = best_start(cfg, args.start_repeat)
    same = state_hash(m.engine) == head_hash
    open_orders = len(m.engine.orders)
    m.close()
    rep.row(
        "cold start: snapshot + replay s", f"{replay_s:.2f}",
        f"best of {args.start_repeat}; {head_seq - snap_seq:,} oplog rows replayed,"
        f" {open_orders:,} open orders, state equal: {same}",
    )  # fmt: skip
    prof = cProfile.Profile()
    prof_s, m = _start_once(cfg, prof)
    m.close()
    print(f"  profiled start() with replay ({prof_s:.2f}s under cProfile):")
    for name, sec in start_breakdown(prof, prof_s):
        print(f"    {100 * sec / prof_s:5.1f}%  {sec:5.2f}s  {name}")

    db = connect(pg, "bench")
    Store(db).save_snapshot(head_seq, head_hash, head_snapshot)
    db.close()
    snap_only_s, m = best_start(cfg, args.start_repeat)
    m.close()
    rep.row(
        "cold start: snapshot only s", f"{snap_only_s:.2f}",
        f"best of {args.start_repeat}; snapshot at the oplog head",
    )  # fmt: skip
    rep.figures.update(
        cold_start_s=round(replay_s, 2), cold_start_snapshot_only_s=round(snap_only_s, 2),
        cold_start_replayed=head_seq - snap_seq, cold_start_open_orders=open_orders,
        cold_start_accounts=accounts, cold_start_state_equal=same,
        cold_start_snapshot_mb=round(len(data) / 1e6, 1),
    )  # fmt: skip


def _settings() -> dict[str, str]:
    db = connect(PostgresConfig.load())
    out = {
        k: str(db.run(f"SHOW {k}")[0][0])
        for k in ("fsync", "synchronous_commit", "full_page_writes")
    }
    db.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="matcher pipeline vs local services")
    parser.add_argument("--commands", type=int, default=50_000, help="durable stream length")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--profile-n", type=int, default=20_000)
    parser.add_argument("--pubsub-n", type=int, default=20_000)
    parser.add_argument("--cold-orders", type=int, default=100_000)
    parser.add_argument("--cold-accounts", type=int, default=10_000)
    parser.add_argument("--cold-replay", type=int, default=10_000)
    parser.add_argument("--start-repeat", type=int, default=2, help="cold starts, best of")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--whatif",
        action="store_true",
        help="also run the TCP_NODELAY what-if (shared.db sets it now: expect no change)",
    )
    parser.add_argument("--skip", default="", help="comma list of: durable,pubsub,cold")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    stack = Stack(StackConfig.with_free_ports(pg_fast=False))
    stack.start(["pubsub", "postgres", "redis"])
    rep = Report()
    try:
        os.environ.update(stack.env())
        settings = _settings()
        print(f"local stack up in {stack.start_seconds:.1f}s; postgres {settings}")
        rep.figures["postgres"] = settings
        redis_url = os.environ["REDIS_URL"]
        phases: list[tuple[str, Callable[[argparse.Namespace, Report, str], None]]] = [
            ("durable", phase_durable), ("pubsub", phase_pubsub), ("cold", phase_cold),
        ]  # fmt: skip
        for name, phase in phases:
            if name not in skip:
                print(f"\n== {name}", flush=True)
                phase(args, rep, redis_url)
    finally:
        stack.stop()

    print("\n| measure | value | notes |\n|---|---|---|")
    for what, value, note in rep.rows:
        print(f"| {what.strip()} | {value} | {note} |")
    rep.figures["seconds"] = round(time.perf_counter() - t0, 1)
    # Other processes on this 2-core box skew every figure: say how busy it was.
    rep.figures["loadavg_1m_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(rep.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
