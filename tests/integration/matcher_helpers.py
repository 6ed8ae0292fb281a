"""Driving a real matcher in tests: commands for a small market, a matcher in a thread."""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NamedTuple

import orjson
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]

from api.auth import new_secrets_document
from infra import processes
from infra.ports import free_port
from infra.processes import REPO_ROOT, Child, wait_until
from infra.services import Stack, postgres
from matcher_service.engine import Engine
from matcher_service.engine.audit import audit
from matcher_service.engine.snapshot import state_hash
from matcher_service.persistence import Store
from matcher_service.service import Matcher, recover
from shared.config import MatcherConfig, PubSubConfig
from shared.db import connect
from shared.messages import (
    FEE_ACCOUNT,
    AmendOrder,
    AnyCommand,
    CancelAll,
    CancelOrder,
    CreateAsset,
    CreateMarket,
    Deposit,
    PlaceOco,
    PlaceOrder,
)
from shared.pubsub import CommandPublisher

ETH = 10**8  # one ETH in units (precision 8)
USDT = 10**6  # one USDT in units (precision 6)


def market_setup() -> list[AnyCommand]:
    return [
        CreateAsset(id="asset-eth", asset="ETH", precision=8),
        CreateAsset(id="asset-usdt", asset="USDT", precision=6),
        CreateMarket(
            id="market-eth-usdt", market="ETH-USDT", base="ETH", quote="USDT", tick="0.01",
            step="0.0001", min_amount="0.0001", min_notional="1", maker_fee="0.001",
            taker_fee="0.002",
        ),
    ]  # fmt: skip


def funded(
    users: list[str], eth: int = 100 * ETH, usdt: int = 1_000_000 * USDT
) -> list[AnyCommand]:
    out: list[AnyCommand] = []
    for u in users:
        out.append(Deposit(id=f"dep-eth-{u}", user=u, asset="ETH", amount=eth, ref=f"eth-{u}"))
        out.append(Deposit(id=f"dep-usdt-{u}", user=u, asset="USDT", amount=usdt, ref=f"usdt-{u}"))
    return out


def key_of(cmd: AnyCommand) -> str:
    return str(getattr(cmd, "user", None) or "admin")


def publish(cfg: PubSubConfig, commands: Sequence[AnyCommand]) -> None:
    publisher = CommandPublisher(cfg)
    for cmd in commands:
        publisher.publish(cmd, key_of(cmd))


def publish_many(cfg: PubSubConfig, commands: Sequence[AnyCommand]) -> None:
    """Publish all at once (the client keeps each ordering key's order) and wait until
    Pub/Sub has every one."""
    publisher = CommandPublisher(cfg)
    futures = [publisher.publish_async(cmd, key_of(cmd)) for cmd in commands]
    for future in futures:
        future.result(timeout=60)


def wait_for(pred: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    wait_until(pred, timeout, what)


def oplog_count(cfg: MatcherConfig) -> int:
    db = connect(cfg.postgres)
    try:
        return int(db.run("SELECT count(*) FROM oplog")[0][0])
    finally:
        db.close()


@contextmanager
def running(cfg: MatcherConfig) -> Iterator[Matcher]:
    matcher = Matcher(cfg)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            matcher.run()
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name="matcher", daemon=True)
    thread.start()
    try:
        wait_for(matcher.ready.is_set, 30, "matcher ready")
        yield matcher
    finally:
        matcher.stop()
        thread.join(30)
        if errors:
            raise errors[0]


# ------------------------------------------------------------ fault tests: processes, outages


def matcher_env(cfg: MatcherConfig, port: int, snapshot_every: int = 200) -> dict[str, str]:
    """The environment of ``python -m matcher_service`` for ``cfg`` (see shared/config.py)."""
    pg, ps = cfg.postgres, cfg.pubsub
    env = {k: v for k, v in os.environ.items() if k not in ("CLOUD_SQL_INSTANCE", "PGPASSWORD")}
    env.update(
        PYTHONPATH=str(REPO_ROOT), PGHOST=pg.host, PGPORT=str(pg.port), PGUSER=pg.user,
        PGDATABASE=pg.database, GOOGLE_CLOUD_PROJECT=ps.project,
        COMMANDS_TOPIC=ps.commands_topic, COMMANDS_SUBSCRIPTION=ps.commands_subscription,
        EVENTS_TOPIC=ps.events_topic, DEAD_LETTER_TOPIC=ps.dead_letter_topic,
        MAX_DELIVERY_ATTEMPTS=str(ps.max_delivery_attempts), REDIS_URL=cfg.redis_url,
        PORT=str(port), BATCH_MAX=str(cfg.batch_max), BATCH_WAIT_MS=str(cfg.batch_wait_ms),
        SNAPSHOT_EVERY=str(snapshot_every), SNAPSHOT_SECONDS="3600",
        REPLY_TTL_S=str(cfg.reply_ttl_s), DEPTH_LEVELS=str(cfg.depth_levels),
        SEQ_HOLD_MS=str(cfg.seq_hold_ms), COMMANDS_OUTBOX="1" if ps.outbox else "",
        PUBSUB_EMULATOR_HOST=os.environ["PUBSUB_EMULATOR_HOST"],
    )  # fmt: skip
    if pg.password:
        env["PGPASSWORD"] = pg.password
    return env


def http_status(port: int, path: str) -> int | None:
    """The status the matcher's health server answers, or None when nothing answers."""
    return processes.http_status(f"http://127.0.0.1:{port}{path}", timeout=2.0)


class MatcherProcess(Child):
    """``python -m matcher_service`` as a child process, its output in a log file."""

    def __init__(self, cfg: MatcherConfig, log_dir: Path, name: str) -> None:
        self.port = free_port()
        args = ["-m", "matcher_service"]
        super().__init__(
            name, [sys.executable, *args], log_dir / f"{name}.log", env=matcher_env(cfg, self.port)
        )

    @property
    def holder(self) -> str:
        """What the matcher writes into matcher_lease.holder."""
        return f"{socket.gethostname()}:{self.proc.pid}"

    def answers(self) -> bool:
        """The health server is up (from just before the matcher takes the lock)."""
        return http_status(self.port, "/healthz") == 200

    def readyz(self) -> int | None:
        return http_status(self.port, "/readyz")

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(lambda: self.readyz() == 200, timeout, f"matcher {self.proc.pid}", self)

    def kill(self, frozen_for: float = 0.0) -> int | None:
        """SIGKILL: no chance to finish the batch, commit, ack or close anything. With
        ``frozen_for``, SIGSTOP first and SIGKILL that much later: meanwhile Pub/Sub hands
        the pull the matcher was waiting on a batch (leased to it) that it never reads, as
        when a matcher dies right after a pull returned."""
        if self.alive() and frozen_for > 0:
            os.kill(self.proc.pid, signal.SIGSTOP)
            time.sleep(frozen_for)
        return super().kill()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (as Cloud Run does), SIGKILL if it does not end in time."""
        return super().stop(timeout)


@contextmanager
def gateway_and_matcher(
    matcher_cfg: MatcherConfig, tmp_path: Path, **extra_env: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """The matcher and the gateway as processes, on ``matcher_cfg``'s database, topics and
    Redis and the current Firestore project; the gateway's URL and environment."""
    from tests.integration.function_env import FOREIGN  # imports the functions: only here

    assert matcher_cfg.pubsub.project == os.environ["GOOGLE_CLOUD_PROJECT"]
    matcher = MatcherProcess(matcher_cfg, tmp_path, "matcher")
    port = free_port()
    env = matcher_env(matcher_cfg, port)
    for name in ("PORT", *FOREIGN):
        env.pop(name, None)
    env.update(
        AUTH_KEYS_JSON=orjson.dumps(new_secrets_document()).decode(),
        CURSOR_KEY=secrets.token_urlsafe(32),
        API_REPLY_WAIT_S="15",
        FIRESTORE_EMULATOR_HOST=os.environ["FIRESTORE_EMULATOR_HOST"],
        **extra_env,
    )
    url = f"http://127.0.0.1:{port}"
    gateway = Child.python(
        "gateway", ["-m", "infra.gateway", "--port", str(port)], tmp_path / "gateway.log", env=env
    )
    try:
        matcher.wait_ready(60)
        wait_until(lambda: http_status(port, "/v1/time") == 200, 60, "the gateway", gateway)
        yield url, env
    finally:
        gateway.stop(20)  # gunicorn: graceful stop, workers included
        matcher.stop()


@contextmanager
def matcher_processes(cfg: MatcherConfig, log_dir: Path) -> Iterator[Callable[[], MatcherProcess]]:
    """A factory of matcher processes; every one still running at the end is killed."""
    started: list[MatcherProcess] = []

    def start() -> MatcherProcess:
        proc = MatcherProcess(cfg, log_dir, f"matcher-{len(started)}")
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.alive():
                proc.kill()


def set_ack_deadline(cfg: PubSubConfig, seconds: int) -> None:
    """Shorten the subscription's ack deadline (60 s by default), so that the messages a
    killed matcher held come back within a test's time."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(cfg.project, cfg.commands_subscription)
    subscriber.update_subscription(
        request={
            "subscription": {"name": path, "ack_deadline_seconds": seconds},
            "update_mask": {"paths": ["ack_deadline_seconds"]},
        }
    )
    subscriber.close()


def dead_letters(cfg: PubSubConfig) -> list[bytes]:
    """What reached the dead-letter topic (its hold subscription), without acking it."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(cfg.project, f"{cfg.dead_letter_topic}-hold")
    try:
        resp = subscriber.pull(request={"subscription": path, "max_messages": 100}, timeout=2.0)
        return [m.message.data for m in resp.received_messages]
    except gexc.DeadlineExceeded:
        return []
    finally:
        subscriber.close()


def stop_postgres(stack: Stack) -> None:
    """``pg_ctl stop -m fast``: every connection is cut, the server is gone until started."""
    stopped = postgres.pg_ctl(stack.pg_data_dir, "stop", "-m", "fast", "-w", "-t", "20")
    assert stopped.returncode == 0, stopped.stdout.decode(errors="replace")
    # The stack still holds the postmaster it launched; it has exited now.
    running = stack._running.pop("postgres")
    running.popen.wait(10)
    running.child.close_log()


def start_postgres(stack: Stack) -> None:
    """Start the cluster again with the very command the stack used (postgres.Cluster),
    as one of the stack's services, so that the session's teardown stops it."""
    stack.start(["postgres"])


@contextmanager
def postgres_down(stack: Stack) -> Iterator[None]:
    """Postgres stopped for the body of the block; started again however the block ends."""
    stop_postgres(stack)
    try:
        yield
    finally:
        start_postgres(stack)


def restart_postgres(stack: Stack, down_for: float = 0.0) -> None:
    with postgres_down(stack):
        time.sleep(down_for)


# ------------------------------------------------------------ fault tests: a command stream


class Chunk(NamedTuple):
    started: float  # time.monotonic() when its publishing began
    confirmed: float  # when Pub/Sub had confirmed all of it
    ids: list[str]


class Stream:
    """A publisher thread: a steady random stream of commands over many users (the ordering
    keys): limit orders that rest or cross, IOC and market orders, cancels, deposits.
    ``published`` holds the ids Pub/Sub confirmed, in publish order; ``rate`` (commands per
    second) may be changed while it runs. ``stamp`` is called on each command just before it
    is published (the functions' per-user sequence numbers); ``sent_at`` holds when each
    command was handed to the publisher (``time.time()``)."""

    def __init__(
        self, cfg: PubSubConfig, users: list[str], seed: int, rate: float = 250.0,
        chunk: int = 50, limit: int = 6000, prefix: str = "s",
        stamp: Callable[[AnyCommand], None] | None = None,
    ) -> None:  # fmt: skip
        self.publisher = CommandPublisher(cfg)
        self.users = users
        self.rng = random.Random(seed)
        self.rate, self.chunk_size, self.limit, self.prefix = rate, chunk, limit, prefix
        self.chunks: list[Chunk] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._n = 0
        self._placed: dict[str, list[str]] = {u: [] for u in users}
        self._stamp = stamp
        self.sent_at: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)

    @property
    def published(self) -> list[str]:
        return [cid for c in list(self.chunks) for cid in c.ids]

    def count(self) -> int:
        return sum(len(c.ids) for c in list(self.chunks))

    def start(self) -> Stream:
        self._thread.start()
        return self

    def stop(self) -> list[str]:
        """Stop publishing; every id Pub/Sub confirmed."""
        self._stop.set()
        self._thread.join(60)
        if self.errors:
            raise self.errors[0]
        return self.published

    def wait_count(self, n: int, timeout: float = 60.0) -> None:
        def enough() -> bool:
            if self.errors:
                raise self.errors[0]
            return self.count() >= n

        wait_for(enough, timeout, f"{n} commands published")

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and self._n < self.limit:
                t0 = time.monotonic()
                size = max(1, min(self.chunk_size, round(self.rate / 5)))  # rate may change
                period = size / self.rate
                cmds = [self._next() for _ in range(size)]
                futures = []
                for c in cmds:
                    if self._stamp is not None:
                        self._stamp(c)
                    self.sent_at[c.id] = time.time()
                    futures.append(self.publisher.publish_async(c, key_of(c)))
                for future in futures:
                    future.result(timeout=30)  # an error stops the stream and fails the test
                self.chunks.append(Chunk(t0, time.monotonic(), [c.id for c in cmds]))
                self._stop.wait(max(0.0, period - (time.monotonic() - t0)))
        except BaseException as exc:
            self.errors.append(exc)

    def _next(self) -> AnyCommand:
        rng, self._n = self.rng, self._n + 1
        cid, user = f"{self.prefix}-{self._n}", rng.choice(self.users)
        side: Literal["buy", "sell"] = rng.choice(("buy", "sell"))
        amount = rng.randint(100, 3000) * 10**4  # 0.01 to 0.3 ETH
        r = rng.random()
        if r < 0.05:  # a stop-loss (limit or market) that the price may reach, some GTD
            away = rng.randint(3, 15) * (1 if side == "buy" else -1)
            stop = (2000 + away) * USDT
            gtd = None
            if rng.random() < 0.3:
                gtd = int(time.time() * 1000) + rng.randint(1, 20) * 1000
            if rng.random() < 0.5:
                spend = rng.randint(20, 500) * USDT
                return PlaceOrder(id=cid, user=user, market="ETH-USDT", side=side, type="market",
                                  amount=None if side == "buy" else amount,
                                  quote_amount=spend if side == "buy" else None,
                                  stop="stop_loss", stop_price=stop, expires_at=gtd)  # fmt: skip
            return PlaceOrder(id=cid, user=user, market="ETH-USDT", side=side, price=stop,
                              amount=amount, stop="stop_loss", stop_price=stop,
                              expires_at=gtd)  # fmt: skip
        if r < 0.07:  # an OCO list: a take-profit limit away from the middle and a stop
            sign = 1 if side == "sell" else -1
            return PlaceOco(id=cid, user=user, market="ETH-USDT", side=side, amount=amount,
                            price=(2000 + sign * 20) * USDT,
                            stop_price=(2000 - sign * rng.randint(3, 15)) * USDT,
                            stop_limit_price=2030 * USDT if side == "buy" else None)  # fmt: skip
        if r < 0.09 and self._placed[user]:  # amend one of mine (it may be gone: rejected)
            new_price = (2000 + rng.randint(-12, 12)) * USDT if rng.random() < 0.5 else None
            return AmendOrder(id=cid, user=user, client_order_id=rng.choice(self._placed[user]),
                              price=new_price, amount=None if new_price else amount)  # fmt: skip
        if r < 0.55:  # a limit order near the middle: rests, or crosses what rests
            coid = f"{cid}-{user}"
            self._placed[user].append(coid)
            price = (2000 + rng.randint(-12, 12)) * USDT
            return PlaceOrder(id=cid, user=user, market="ETH-USDT", side=side, price=price,
                              amount=amount, client_order_id=coid)  # fmt: skip
        if r < 0.65:  # an IOC that takes what it can
            price = (2000 + (15 if side == "buy" else -15)) * USDT
            return PlaceOrder(id=cid, user=user, market="ETH-USDT", side=side, price=price,
                              amount=amount, time_in_force="IOC")  # fmt: skip
        if r < 0.70:  # a market order: a buy spends quote, a sell gives base
            spend = rng.randint(20, 500) * USDT
            return PlaceOrder(id=cid, user=user, market="ETH-USDT", side=side, type="market",
                              amount=None if side == "buy" else amount,
                              quote_amount=spend if side == "buy" else None)  # fmt: skip
        if r < 0.88 and self._placed[user]:  # cancel one of mine (it may be gone: rejected)
            return CancelOrder(id=cid, user=user, client_order_id=rng.choice(self._placed[user]))
        if r < 0.92:
            return CancelAll(id=cid, user=user, market="ETH-USDT")
        asset = rng.choice(("ETH", "USDT"))
        units = rng.randint(1, 5) * (ETH if asset == "ETH" else 10_000 * USDT)
        return Deposit(id=cid, user=user, asset=asset, amount=units, ref=f"ref-{cid}")


# ------------------------------------------------------------ fault tests: the verdict


def applied_ids(cfg: MatcherConfig, ids: list[str]) -> int:
    """How many of ``ids`` the oplog holds."""
    db = connect(cfg.postgres)
    try:
        rows = db.run(
            "SELECT count(*) FROM oplog WHERE command_id = ANY(CAST(:ids AS text[]))", ids=ids
        )
        return int(rows[0][0])
    finally:
        db.close()


def wait_applied(cfg: MatcherConfig, ids: list[str], timeout: float = 60.0) -> None:
    def done() -> bool:
        try:
            return applied_ids(cfg, ids) == len(ids)
        except Exception:  # Postgres may be coming back
            return False

    wait_for(done, timeout, f"all {len(ids)} commands in the oplog")


class Verdict(NamedTuple):
    commands: int
    snapshots: int
    snapshot_seq: int
    open_orders: int
    trades: int
    state_hash: str
    stops_triggered: int
    """Stop orders the stream's trades triggered (the rest were pending throughout)."""


def check_exactly_once_and_consistent(cfg: MatcherConfig, published: list[str]) -> Verdict:
    """Every published command applied exactly once, gapless seq, and Postgres agrees with a
    clean replay of its oplog: the same state hash as recovery (snapshot + replay), every
    snapshot's hash at its seq, balances, fees, open orders; the engine's invariants hold."""
    db = connect(cfg.postgres)
    try:
        count, distinct, low, high = db.run(
            "SELECT count(*), count(DISTINCT command_id), min(seq), max(seq) FROM oplog"
        )[0]
        # The matcher's own expire_orders commands (good-till-date orders) were not published.
        expiries = int(db.run("SELECT count(*) FROM oplog WHERE command_id LIKE 'expire:%'")[0][0])
        assert len(set(published)) == len(published)
        assert (count - expiries, distinct - expiries) == (len(published), len(published))
        assert (low, high) == (1, count), f"seq runs {low}..{high} over {count} rows"
        in_log = {
            row[0]
            for row in db.run("SELECT command_id FROM oplog WHERE command_id NOT LIKE 'expire:%'")
        }
        assert in_log == set(published)

        store = Store(db)
        snapshots = {int(s): h for s, h in db.run("SELECT seq, state_hash FROM snapshots")}
        limit = cfg.max_open_orders or None
        engine = Engine(limit)
        for seq, cmd in store.commands_after(0):
            assert engine.apply(cmd).seq == seq
            if seq in snapshots:
                assert state_hash(engine) == snapshots[seq], f"snapshot at {seq}"
        rec = recover(store, max_open_orders=limit)
        assert state_hash(rec.engine) == state_hash(engine)
        assert audit(engine) == []

        balances = {
            (u, a): (int(av), int(fr))
            for u, a, av, fr in db.run("SELECT user_id, asset, available, frozen FROM balances")
        }
        for key, value in engine.balances().items():
            assert balances.get(key) == value, f"{key}: {value} vs {balances.get(key)}"
        for (user, asset), value in balances.items():
            if user == FEE_ACCOUNT:
                assert value == (engine.fees(asset), 0), f"fees {asset}"
            elif value != (0, 0):
                assert engine.balance(user, asset) == value, f"{user} {asset}"
        for asset in engine.assets:
            assert balances.get((FEE_ACCOUNT, asset), (0, 0)) == (engine.fees(asset), 0)
        open_ids = {
            int(r[0])
            for r in db.run(
                "SELECT order_id FROM orders WHERE status IN ('open', 'partially_filled')"
            )
        }
        assert open_ids == set(engine.orders) | set(engine.stops)
        pending = {
            int(r[0])
            for r in db.run(
                "SELECT order_id FROM orders WHERE status = 'open' AND stop_price IS NOT NULL"
                " AND triggered_ts IS NULL"
            )
        }
        assert pending == set(engine.stops)
        trades = int(db.run("SELECT count(*) FROM trades")[0][0])
        assert trades == engine.next_trade_id - 1
        triggered = int(db.run("SELECT count(*) FROM orders WHERE triggered_ts IS NOT NULL")[0][0])
        return Verdict(
            count, len(snapshots), rec.snapshot_seq, len(open_ids), trades, state_hash(engine),
            triggered,
        )  # fmt: skip
    finally:
        db.close()
