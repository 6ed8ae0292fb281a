"""The matcher: the one writer of balances, orders and trades.

Loop: pull a batch of commands (unary pull: many times faster than streaming pull with
ordering keys, see docs/matcher.md), drop the ones already applied, put each user's commands
in the user's order (``sequencer.py``: one that comes ahead of a missing one is parked),
stamp the time, apply them to the engine, write the batch to Postgres in one transaction,
and only then publish events, market data and replies, and acknowledge the messages. The
messages in hand are leased for ``LEASE_S`` at a time and the lease is extended while they
are, so a successor sees a dead matcher's messages again within seconds. If Postgres fails
nothing is acknowledged: the engine is rebuilt from Postgres (snapshot + oplog) and the
batch, kept leased meanwhile, is retried as it was. A second matcher waits on a Postgres
advisory lock; a fencing epoch, checked in every batch's transaction, stops a matcher that
lost its lease.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import msgspec
import redis
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]

from matcher_service.engine import Engine
from matcher_service.engine.snapshot import restore, snapshot, state_hash
from matcher_service.marketdata import MarketData
from matcher_service.persistence import Batch, BatchWrites, FencedError, Known, Store
from matcher_service.pubsub_raw import PubsubMessage, Subscription, Topic
from matcher_service.sequencer import Parked, Sequencer, maybe_applied, user_of
from shared import outbox
from shared.config import MatcherConfig
from shared.db import Database, connect
from shared.messages import (
    AnyCommand,
    Applied,
    ExpireOrders,
    OrderAccepted,
    Reason,
    command_decoder,
    encode,
)
from shared.producers import REFUSALS, RefusedCommandError, Verifier
from shared.pubsub import (
    COMMANDS_ACK_DEADLINE_S,
    ERROR_ATTR,
    ORDERING_KEY_ATTR,
    REASON_ATTR,
    SOURCE_MESSAGE_ATTR,
)
from shared.redis_keys import command_key, reply_key

log = logging.getLogger("matcher")

LOCK_KEY = 7002  # the advisory lock only one matcher holds
DAY_MS = 86_400_000
HOLD_ATTEMPTS = 3
"""A failed batch is retried as it was (in hand, leased) this many times with Postgres
reachable, then handed back to Pub/Sub, whose dead-letter policy deals with a poison message."""
BACKLOG_PULL = 50  # a pull this full means more are waiting: keep filling the batch
LEASE_S = COMMANDS_ACK_DEADLINE_S
"""How long Pub/Sub leaves the messages in hand to this matcher (the ack deadline, the least
Pub/Sub allows; the subscription's own deadline is the same). Should the matcher die, its
messages, and with them every later message of their users, go to the next one after this."""
LEASE_EVERY_S = 3.0
"""How often the lease of the messages in hand (a batch, a failed batch held) is renewed."""
GATHER_S = 0.03
"""Without a backlog, a batch is committed before the next pull, and pulls start at least
this far apart, so that the commands of a trickle (a hundred a second) share batches rather
than each paying for its own pull, acknowledgement, statement and Redis pipeline: at most
this much more latency (less the batch's own time), a fraction of the CPU per command
(docs/decisions/0032; 30 ms rather than 20 since decision 0036: three commands a batch at a
hundred a second instead of two). With a backlog the next pull starts at once, while a batch
commits. A command that arrives while a pull waits for work is answered at once."""
SWITCH_INTERVAL_S = 0.0005
VERIFY_THREADS = 2
VERIFY_SPLIT = 64
"""A pull of at least VERIFY_SPLIT messages has its signatures checked on VERIFY_THREADS
threads: on two cores (Terraform's ``matcher_cpu``) in parallel."""
EVENTS_EVERY_S = 0.1
DEAD_LETTER_WAIT_S = 10.0
"""How long a batch's acknowledgement waits for the dead-letter copies of its bad messages
(published while it was applied and committed, so mostly done by then). A message whose copy
is not confirmed by then is not acknowledged: Pub/Sub hands it out again after its lease."""
EVENTS_EVERY_S = 0.1
"""Events messages go out at most this often; the batches committed in between share one.
At a hundred small batches a second, one unary publish per batch cost the matcher more CPU
than anything but the pull (docs/decisions/0032); the topic feeds durable consumers, for
whom a tenth of a second is nothing."""
EVENTS_MAX = 1000
"""The most commands' events in one message (a message stays well under Pub/Sub's 10 MB)."""
QUIET_AFTER_S = 2.0
QUIET_PAUSE_S = 0.2
"""After QUIET_AFTER_S of empty pulls, a pause this long before each pull: an empty pull
comes back within tens of ms, so an idle matcher (and Pub/Sub) would pull some 20 times a
second. The first command after a quiet spell waits up to this much longer
(docs/decisions/0017)."""


class Pulled(NamedTuple):
    """A pull, decoded and checked: the messages (raw protobuf ``ReceivedMessage``s, not
    proto-plus wrappers, whose field access cost ~30 us a message), each good message with
    its command, and the bad ones with why."""

    messages: list[Any]
    commands: list[AnyCommand]
    bad: list[tuple[Any, str, str]]

    @staticmethod
    def joined(messages: list[Any], parts: Iterable[Pulled]) -> Pulled:
        """``messages`` with the commands and bad messages of ``parts`` (checked pieces of
        them), in the parts' order."""
        commands: list[AnyCommand] = []
        bad: list[tuple[Any, str, str]] = []
        for part in parts:
            commands += part.commands
            bad += part.bad
        return Pulled(messages, commands, bad)


class InFlight:
    """A batch applied to the engine and handed to the committer thread: its statement, then
    (only once that has returned) its acknowledgement and publication."""

    __slots__ = ("batch", "dead_letters", "duplicates", "durable", "future", "in_log",
                 "messages", "parked", "pipe", "published_seq", "unparked", "writes")  # fmt: skip

    def __init__(
        self,
        messages: list[Any],
        batch: Batch,
        duplicates: list[tuple[str, Known | None]],
        parked: list[Parked],
        unparked: list[str],
        published_seq: int,
        pipe: Any,
        in_log: list[str],
        dead_letters: list[tuple[Any, Future[str]]],
    ) -> None:
        self.messages = messages
        self.batch = batch
        self.duplicates = duplicates
        self.parked = parked
        self.unparked = unparked
        self.published_seq = published_seq
        self.pipe = pipe
        self.in_log = in_log
        self.dead_letters = dead_letters  # each bad message, with its dead-letter publish
        self.durable = False
        self.future: Future[None] | None = None
        self.writes: BatchWrites | None = None  # its statement, built by the main thread

    def known(self) -> dict[str, Applied]:
        return {cmd.id: applied for cmd, applied in self.batch}


class _Outgoing:
    """One message for the events topic: the events of one or more consecutive batches."""

    __slots__ = ("applied", "future", "run", "started")

    def __init__(self, applied: list[Applied], run: int) -> None:
        self.applied = applied
        self.run = run
        self.started = False  # from then on, nothing joins it
        self.future: Future[None] | None = None

    @property
    def last(self) -> int:
        return self.applied[-1].seq


def _known(applied: Applied) -> Known:
    """What a command applied in the batch in flight became, as the oplog will say."""
    order_id = next((e.order_id for e in applied.events if type(e) is OrderAccepted), None)
    return Known(applied.seq, applied.ok, applied.reason, order_id)


def _seq_of(cmd: AnyCommand) -> list[int] | None:
    us = cmd.user_seq
    return None if us is None else [us.epoch, us.n]


class Recovered(NamedTuple):
    engine: Engine
    replayed: int
    snapshot_seq: int


def recover(
    store: Store,
    on_replayed: Callable[[Batch], None] | None = None,
    published_seq: int | None = None,
    max_open_orders: int | None = None,
) -> Recovered:
    """The engine as Postgres knows it: the latest snapshot, then the oplog after it. The
    snapshot's hash is checked before replay. ``on_replayed`` gets each replayed chunk, so
    the events of commands the events topic may have missed (after ``published_seq``; the
    snapshot is chosen at or before it) are published again."""
    snap = store.latest_snapshot(published_seq)
    if snap is None:
        engine, base = Engine(max_open_orders), 0
    else:
        base, expected, data = snap
        engine = restore(data, max_open_orders)
        if state_hash(engine) != expected:
            raise RuntimeError(f"snapshot at seq {base} does not match its hash")
    chunk: list[tuple[AnyCommand, Applied]] = []
    replayed = 0
    for seq, cmd in store.commands_after(base):
        applied = engine.apply(cmd)
        if applied.seq != seq:
            raise RuntimeError(f"oplog seq {seq} replayed as {applied.seq}: the log has a gap")
        replayed += 1
        if on_replayed is not None:
            chunk.append((cmd, applied))
            if len(chunk) >= 1000:
                on_replayed(chunk)
                chunk = []
    if on_replayed is not None and chunk:
        on_replayed(chunk)
    return Recovered(engine, replayed, base)


class Matcher:
    def __init__(self, cfg: MatcherConfig, holder: str | None = None) -> None:
        # The threads that wait on sockets (pull, commit, acknowledge, Redis) need the GIL for
        # a moment at each step of a call; with the default 5 ms switch interval each of those
        # moments can wait 5 ms behind the thread applying a batch.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self.cfg = cfg
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.max_open_orders = cfg.max_open_orders or None
        self.engine = Engine(self.max_open_orders)
        self.epoch = 0
        self._lock_db: Database | None = None
        self._reads_db: Database | None = None
        self.db: Database | None = None
        self.store: Store | None = None
        self.redis = redis.Redis.from_url(cfg.redis_url)
        self.market_data = MarketData(self.redis, cfg.depth_levels, cfg.reply_ttl_s)
        ps = cfg.pubsub
        self.subscriber = pubsub_v1.SubscriberClient()
        self.subscription = self.subscriber.subscription_path(ps.project, ps.commands_subscription)
        # Pull, acknowledge and lease in raw protobuf on the client's channel, the generated
        # client only to retry (docs/decisions/0036).
        self.commands = Subscription(self.subscriber, self.subscription)
        self.publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self.events_topic = self.publisher.topic_path(ps.project, ps.events_topic)
        self.events = Topic(self.publisher, self.events_topic)
        self.dead_letter_topic = self.publisher.topic_path(ps.project, ps.dead_letter_topic)
        self.published_seq = 0  # the events topic has everything up to here
        self._pending_events: list[_Outgoing] = []
        self._events_sent = 0.0  # when the last events message went out (monotonic)
        # Events go out one message per batch, in order, from one thread: one unary Publish
        # each, without the batching client's commit thread and batch delay per message.
        self._events_out = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")
        self._events_run = 0  # a failed publish fails the rest of its run, as a paused key
        self._events_failed_run = -1
        self._held: list[Any] = []  # the batch in hand (messages); retried first after a failure
        # A batch's statement, then its acknowledgement and publication, run on the committer
        # thread while the main thread applies the next batch; meanwhile the pull after that
        # (with its decoding and signature checks, which run without the GIL) is under way on
        # the puller thread. One batch in flight at a time; nothing is acknowledged or shown
        # before its statement has returned (docs/decisions/0031).
        self._puller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pull")
        self._prefetched: Future[Pulled] | None = None
        self._verifiers = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="verify")
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._inflight: InFlight | None = None
        self._events_lock = threading.Lock()
        self.reads: Store | None = None  # a second connection: the dedupe read of the next
        # batch while the last one commits
        self._failures = 0  # failed attempts at the batch in hand
        self._leased: dict[str, None] = {}  # ack ids of the messages in hand, kept leased
        self._lease_lock = threading.Lock()
        self.sequencer = self._new_sequencer()
        # Only commands signed by a producer allowed to send their type are applied.
        self.verifier = Verifier.load()
        self._last_ts = 0
        self._quiet_since: float | None = None  # since when every pull came back empty
        self._backlog = False  # the last pull brought a backlog's worth
        self._last_pull = 0.0  # when the last pull started (monotonic)
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        self.stats = {
            "batches": 0, "commands": 0, "duplicates": 0, "parked": 0, "gaps": 0,
            "out_of_order": 0, "refused": 0,
        }  # fmt: skip

    def _new_sequencer(self) -> Sequencer:
        return Sequencer(lambda user: self.engine.user_seqs.get(user), self.cfg.seq_hold_ms)

    # ------------------------------------------------------------ lifecycle

    def acquire(self) -> None:
        """Wait until this matcher holds the advisory lock, then take the lease."""
        while not self.stopping.is_set():
            try:
                if self._lock_db is None:
                    self._lock_db = connect(self.cfg.postgres, "matcher-lock")
                got = self._lock_db.run("SELECT pg_try_advisory_lock(:k)", k=LOCK_KEY)[0][0]
            except Exception as exc:
                log.warning("lock attempt failed", extra={"error": str(exc)})
                self._lock_db = None
                got = False
            if got:
                break
            self.stopping.wait(1.0)
        if self.stopping.is_set():
            return
        self._connect()
        assert self.store is not None
        self.epoch = self.store.take_lease(self.holder)
        log.info("lease taken", extra={"epoch": self.epoch, "holder": self.holder})

    def _connect(self) -> None:
        for db in (self.db, self._reads_db):
            if db is not None:
                with contextlib.suppress(Exception):  # the old connection is gone either way
                    db.close()
        self.db = connect(self.cfg.postgres, "matcher")
        self.store = Store(self.db)
        self._reads_db = connect(self.cfg.postgres, "matcher-reads")
        self.reads = Store(self._reads_db)

    def start(self) -> None:
        """Recover state and market data; after this the matcher is ready to consume."""
        assert self.store is not None
        t0 = time.monotonic()
        self.published_seq = self.store.published_seq()
        rec = recover(self.store, self._republish, self.published_seq, self.max_open_orders)
        self.engine = rec.engine
        self.sequencer = self._new_sequencer()
        self.sequencer.load(self.store.parked())
        # A predecessor's messages come back when its lease runs out: no gap is applied past
        # before then, or a command of its batch would be refused as out of order.
        self.sequencer.hold_floor = self._now() + (LEASE_S + 2) * 1000
        self._flush_events(wait=True)
        self.published_seq = max(self.published_seq, self.engine.seq)
        self._rebuild_market_data()
        self._last_ts = self._now()
        self.ready.set()
        log.info(
            "matcher ready",
            extra={
                "seq": self.engine.seq, "snapshot_seq": rec.snapshot_seq,
                "replayed": rec.replayed, "open_orders": len(self.engine.orders),
                "parked": len(self.sequencer),
                "seconds": round(time.monotonic() - t0, 3),
            },
        )  # fmt: skip

    def run(self) -> None:
        """Acquire, recover, consume until stopped. Survives Postgres outages."""
        done = threading.Event()  # the lease is renewed until the batch in hand is let go
        lease = threading.Thread(target=self._keep_leased, args=(done,), name="lease", daemon=True)
        lease.start()
        try:
            self.acquire()
            if not self.stopping.is_set():
                self.start()
                self._consume()
        finally:
            done.set()
            lease.join(LEASE_EVERY_S + 5)
            self.close()

    def _consume(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            if not self.ready.is_set():
                # After a failure nothing is pulled until the engine is rebuilt from Postgres:
                # every delivery counts toward the dead-letter limit, and a nack lets Pub/Sub
                # hand out later messages of a key before the failed ones (the emulator does,
                # and so may Pub/Sub with a dead-letter policy). The batch stays in hand,
                # leased (``_keep_leased``), and is retried first, in its order.
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                if not self.stopping.is_set():
                    self._reload()
                continue
            try:
                self.step()
                backoff = 0.5
            except FencedError:
                log.error("lease lost to another matcher: stopping")
                self.ready.clear()
                self._settle()
                self._nack()
                raise
            except Exception as exc:
                self._settle()
                self._failures += 1
                log.warning(
                    "batch failed; rebuilding from Postgres",
                    extra={
                        "error": repr(exc), "retry_in_s": backoff, "held": len(self._held),
                        "attempt": self._failures,
                    },
                )  # fmt: skip
                if self._failures >= HOLD_ATTEMPTS:
                    self._nack()
                self.ready.clear()
        self._settle()
        self._nack()  # a batch still in hand goes back at once, for the next matcher
        self._flush_events(wait=True)
        log.info("matcher stopped", extra=self.stats)

    def close(self) -> None:
        """Drop the connections; closing the lock's connection hands the lease on."""
        self.ready.clear()
        for db in (self.db, self._reads_db, self._lock_db):
            if db is not None:
                with contextlib.suppress(Exception):
                    db.close()
        self.db = self._reads_db = self._lock_db = None
        self.store = self.reads = None

    def _nack(self) -> None:
        """Hand the batch in hand back to Pub/Sub now rather than at its deadline."""
        self._hold_prefetched()
        held, self._held, self._failures = self._held, [], 0
        self._unlease(held)
        self._set_deadline([m.ack_id for m in held], 0)

    # ------------------------------------------------------------ the lease

    def _lease(self, messages: list[Any]) -> None:
        with self._lease_lock:
            for m in messages:
                self._leased[m.ack_id] = None

    def _unlease(self, messages: list[Any]) -> None:
        with self._lease_lock:
            for m in messages:
                self._leased.pop(m.ack_id, None)

    def _keep_leased(self, done: threading.Event) -> None:
        """Every LEASE_EVERY_S, lease the messages in hand for LEASE_S more: a batch being
        applied, or a failed batch held for its retry. Pub/Sub gives a pulled message the
        subscription's deadline (LEASE_S too), so a dead matcher's messages are free again
        within LEASE_S, while a live one keeps what it holds as long as it needs."""
        while not done.wait(LEASE_EVERY_S):
            with self._lease_lock:
                ids = list(self._leased)
            if ids:
                self._set_deadline(ids, LEASE_S)
        with self._lease_lock:
            self._leased.clear()

    def _set_deadline(self, ids: list[str], seconds: int) -> None:
        try:
            self.commands.modify_ack_deadline(ids, seconds)
        except Exception as exc:
            log.warning("modify ack deadline failed", extra={"error": repr(exc), "s": seconds})

    def _reload(self) -> None:
        """After a failure: reconnect and rebuild the engine from what Postgres holds; ready
        again only when that worked."""
        try:
            self._connect()
            assert self.store is not None
            self.engine = recover(self.store, max_open_orders=self.max_open_orders).engine
            floor = self.sequencer.hold_floor
            self.sequencer = self._new_sequencer()
            self.sequencer.load(self.store.parked())
            self.sequencer.hold_floor = floor
            self._rebuild_market_data()
            self.ready.set()
        except Exception as exc:
            log.warning("rebuild failed", extra={"error": repr(exc)})

    def _rebuild_market_data(self) -> None:
        assert self.store is not None
        now = self._now()
        trades = self.store.trades_since(now - DAY_MS)
        self.market_data.rebuild(self.engine, trades, now_ms=now, since_ms=now - DAY_MS)

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    # ------------------------------------------------------------ one batch

    def _now(self) -> int:
        return time.time_ns() // 1_000_000

    def pull(self, on_part: Callable[[list[Any]], None] | None = None) -> list[Any]:
        """Up to batch_max messages. The first pull waits for work; more pulls follow only
        while they come back full-ish (a backlog: one pull returns at most a few hundred)
        and for at most batch_wait_ms, so a quiet stream is answered at once and a busy one
        is committed in large batches. ``on_part`` gets each pull's messages as they come."""
        cfg = self.cfg
        got: list[Any] = []
        deadline = 0.0
        quiet = self._quiet_since
        if quiet is not None and time.monotonic() - quiet >= QUIET_AFTER_S:
            self.stopping.wait(QUIET_PAUSE_S)
        elif not self._backlog:
            # A trickle: let a few commands gather rather than pay a batch for each.
            self.stopping.wait(self._last_pull + GATHER_S - time.monotonic())
        self._last_pull = time.monotonic()
        while len(got) < cfg.batch_max:
            try:
                received = self.commands.pull(
                    cfg.batch_max - len(got),
                    timeout=1.0 if not got else max(0.05, deadline - time.monotonic()),
                )
            except Exception:
                if not got:
                    raise
                # What is in hand is leased: take it rather than lose it until a restart.
                log.warning("pull failed; going on with the messages in hand", exc_info=True)
                break
            n = len(received)
            if not n:
                break
            self._lease(received)
            got.extend(received)
            if on_part is not None:
                on_part(received)
            if not deadline:
                deadline = time.monotonic() + cfg.batch_wait_ms / 1000
            if n < BACKLOG_PULL or time.monotonic() >= deadline:
                break
        if got:
            self._quiet_since = None
        elif quiet is None:
            self._quiet_since = time.monotonic()
        self._backlog = len(got) >= BACKLOG_PULL
        return got

    def fetch(self) -> Pulled:
        """Pull (``pull``), decoding each message and checking who signed it: a large pull's
        messages on a verify thread while the next pull is under way (at full load the checks
        had taken as long as the pulls, after them: docs/benchmarks.md), a small one's here
        (a trickle's: handing it over would cost more than checking it)."""
        parts: list[Future[Pulled] | Pulled] = []

        def check(received: list[Any]) -> None:
            if len(received) >= VERIFY_SPLIT:
                parts.append(self._verifiers.submit(self._check_part, received))
            else:
                parts.append(self._check_part(received))

        messages = self.pull(check)
        return Pulled.joined(messages, (p.result() if isinstance(p, Future) else p for p in parts))

    def _check(self, messages: list[Any]) -> Pulled:
        """Each message decoded and its producer's signature checked (``_permitted``). A large
        pull is checked in VERIFY_THREADS parts at once: Ed25519 verification, most of the
        work, runs without the GIL."""
        if len(messages) < VERIFY_SPLIT:
            return self._check_part(messages)
        size = -(-len(messages) // VERIFY_THREADS)
        parts = [messages[i : i + size] for i in range(0, len(messages), size)]
        return Pulled.joined(messages, self._verifiers.map(self._check_part, parts))

    def _check_part(self, messages: list[Any]) -> Pulled:
        commands: list[AnyCommand] = []
        bad: list[tuple[Any, str, str]] = []
        for m in messages:
            try:
                cmd = command_decoder.decode(m.message.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                bad.append((m, "undecodable", str(exc)))
                continue
            refusal = self._refusal(m, cmd)
            if refusal is None:
                commands.append(cmd)
            else:
                bad.append((m, refusal, "refused: " + REFUSALS.get(refusal, refusal)))
        return Pulled(messages, commands, bad)

    def _next_pulled(self) -> Pulled:
        """The batch to work on: the one in hand after a failure (retried first, as it was),
        else the pull started while the last batch committed, else a pull now."""
        if self._held:
            return self._check(self._held)
        ahead, self._prefetched = self._prefetched, None
        if ahead is not None:
            return ahead.result()
        return self.fetch()

    def _prefetch(self) -> None:
        """Start the next pull on the puller thread (it mostly waits on sockets)."""
        if self._prefetched is None and not self.stopping.is_set():
            self._prefetched = self._puller.submit(self.fetch)

    def _hold_prefetched(self) -> None:
        """After a failure, or when stopping: what the pull under way brought joins the batch
        in hand, behind it, so it is retried (or handed back) in the order it came."""
        ahead, self._prefetched = self._prefetched, None
        if ahead is None:
            return
        try:
            messages = ahead.result(timeout=LEASE_S).messages
        except Exception as exc:
            log.warning("pull failed", extra={"error": repr(exc)})
            return
        self._held = [*self._held, *messages]

    def step(self) -> int:
        """Pull, order and apply one batch, then hand it to the committer thread (statement,
        then acknowledgement and publication) once the batch before it is done there. Returns
        the commands applied."""
        pulled = self._next_pulled()
        messages = pulled.messages
        expiry = self.engine.next_expiry()
        now = self._now()
        expiring = expiry is not None and expiry <= max(now, self._last_ts)
        if not messages and not self.sequencer.waiting(now) and not expiring:
            self._wait_committed()
            self._maybe_snapshot()
            return 0
        assert self.reads is not None
        t0 = time.monotonic()
        self._held = messages
        commands, bad = pulled.commands, pulled.bad
        dead_letters = self._dead_letter(bad) if bad else []
        # Only commands that may have been applied already are looked up (docs/decisions/0032).
        seqs = self.engine.user_seqs
        ids = [c.id for c in commands if maybe_applied(c, seqs.get(user_of(c) or ""))]
        known = self.reads.known_results(ids) if ids else {}
        inflight = self._inflight
        if inflight is not None and ids:  # applied, their statement not yet returned
            pending = inflight.known()
            for cid in ids:
                ap = pending.get(cid)
                if ap is not None:
                    known[cid] = _known(ap)
        seen: set[str] = set()
        batch: list[tuple[AnyCommand, Applied]] = []
        duplicates: list[tuple[str, Known | None]] = []
        ts = max(self._now(), self._last_ts)  # never goes back, whatever the clock does
        self._last_ts = ts
        sequencer = self.sequencer
        parked = 0

        def apply(cmd: AnyCommand) -> None:
            cmd.ts = ts
            applied = self.engine.apply(cmd)
            batch.append((cmd, applied))
            if applied.reason == Reason.OUT_OF_ORDER:
                self.stats["out_of_order"] += 1
                log.warning(
                    "command refused: a later command of its user went first",
                    extra={"command_id": cmd.id, "user": user_of(cmd), "user_seq": _seq_of(cmd)},
                )

        if expiry is not None and expiry <= ts:
            # Good-till-date orders end at the head of the first batch at or after their
            # expiry, stamped with its time like every command (docs/engine.md).
            apply(ExpireOrders(id=f"expire:{self.engine.seq + 1}"))
        for cmd in commands:
            if cmd.id in known or cmd.id in seen or sequencer.is_parked(cmd.id):
                duplicates.append((cmd.id, known.get(cmd.id)))
                continue
            seen.add(cmd.id)
            if sequencer.offer(cmd, ts):  # ahead of a missing command of its user
                parked += 1
                continue
            apply(cmd)
            user = user_of(cmd)
            if user is not None:
                self._release(user, ts, apply)  # the user's parked ones that follow it
        for user in sequencer.waiting(ts):  # gaps held long enough: apply past them
            self._release(user, ts, apply)
        newly_parked, unparked = sequencer.changes()
        sequencer.committed()  # they are in this batch's statement (a failure reloads them)
        # Built now, from the engine as this batch left it; sent only after the commit.
        pipe = self.market_data.prepare(self.engine, batch) if batch else None
        # Its statement too, while the batch before may still be on the committer thread.
        writes = (
            Store.prepare(batch, newly_parked, unparked)
            if batch or newly_parked or unparked
            else None
        )
        in_log: list[str] = []
        if self.cfg.pubsub.outbox:  # local: in the oplog then, no need to publish it again
            in_log = [c.id for c, _ in batch] + [c for c, known in duplicates if known]
        t_apply = time.monotonic()
        self._wait_committed()  # the batch before this one: raises its failure
        t_commit = time.monotonic()
        self._flush_events(wait=False)
        job = InFlight(
            messages, batch, duplicates, newly_parked, unparked, self.published_seq, pipe, in_log,
            dead_letters,
        )  # fmt: skip
        job.writes = writes
        if self._backlog:
            self._prefetch()  # the next pull goes on while this batch commits
        job.future = self._committer.submit(self._commit_and_publish, job)
        self._inflight, self._held = job, []  # the committer holds them now
        if not self._backlog:
            # A trickle: what arrives while this batch commits joins the next one, rather
            # than each command paying for a batch of its own (docs/decisions/0032).
            self._wait_committed()
        t_done = time.monotonic()
        self.stats["batches"] += 1
        self.stats["commands"] += len(batch)
        self.stats["duplicates"] += len(duplicates)
        self.stats["parked"] += parked
        self._since_snapshot += len(batch)
        oldest = min(
            (m.message.publish_time.seconds + m.message.publish_time.nanos / 1e9 for m in messages),
            default=None,
        )
        log.info(
            "batch",
            extra={
                "size": len(batch), "duplicates": len(duplicates), "bad": len(bad),
                "parked": parked, "held_back": len(sequencer),
                "seq": self.engine.seq, "apply_ms": round((t_apply - t0) * 1000, 2),
                "commit_ms": round((t_commit - t_apply) * 1000, 2),
                "publish_ms": round((t_done - t_commit) * 1000, 2),
                "lag_ms": None if oldest is None else round((time.time() - oldest) * 1000, 1),
            },
        )  # fmt: skip
        if self._snapshot_due():
            self._wait_committed()  # a snapshot holds committed state only
            self._maybe_snapshot()
        return len(batch)

    def _commit_and_publish(self, job: InFlight) -> None:
        """On the committer thread: the batch's statement; once it has returned (durable),
        its events, its market data and replies, and last the acknowledgement of its
        messages. A Redis error leaves them unacknowledged and handed back (``_hand_back``):
        they come back as duplicates of commands in the oplog once the matcher, having
        rebuilt the market data from Postgres, pulls again, and get their replies then. An
        acknowledgement that fails is not retried: the messages come back after their lease,
        the same way. A bad message is acknowledged only once its dead-letter copy is
        published (``_unconfirmed``). Errors reach the matcher's loop through
        ``_wait_committed``."""
        assert self.store is not None
        if job.writes is not None:
            self.store.write_prepared(self.epoch, job.writes, job.published_seq)
        job.durable = True
        if job.batch:
            self._queue_events(job.batch)
        messages = job.messages
        try:
            if job.pipe is not None:
                job.pipe.execute()
            for command_id, result in job.duplicates:
                self._reply_again(command_id, result)
            if job.in_log:
                outbox.remove(self.redis, job.in_log)
        except BaseException:
            self._hand_back(messages)
            raise
        ack_ids = [m.ack_id for m in messages]
        if job.dead_letters:
            unconfirmed = self._unconfirmed(job.dead_letters)
            if unconfirmed:
                ack_ids = [a for a in ack_ids if a not in unconfirmed]
        try:
            self.commands.acknowledge(ack_ids)
        except Exception as exc:
            log.warning("acknowledge failed", extra={"error": repr(exc), "n": len(ack_ids)})
        self._unlease(messages)

    def _hand_back(self, messages: list[Any]) -> None:
        """A committed batch whose replies were not sent: its messages go back to Pub/Sub
        now, unacknowledged, rather than at their lease's end (up to a minute after a pull),
        so that they come back, as duplicates replied again, as soon as the matcher pulls."""
        self._unlease(messages)
        self._set_deadline([m.ack_id for m in messages], 0)

    def _wait_committed(self) -> None:
        """Until the batch in flight is done on the committer thread. If its statement
        failed, its messages rejoin the batch in hand, ahead of it, and the error is raised;
        if it failed after its commit (Redis), only the error is raised."""
        job, self._inflight = self._inflight, None
        if job is None or job.future is None:
            return
        try:
            job.future.result()
        except BaseException:
            if not job.durable:
                self._held = [*job.messages, *self._held]
            raise

    def _settle(self) -> None:
        """After a failure or when stopping: the batch in flight is finished (or, if its
        statement failed, held again), and what a pull under way brought joins the batch in
        hand, behind it."""
        try:
            self._wait_committed()
        except Exception as exc:
            log.warning("the batch in flight failed", extra={"error": repr(exc)})
        self._hold_prefetched()

    def _release(self, user: str, now: int, apply: Callable[[AnyCommand], None]) -> None:
        """Apply the user's parked commands that may go now, in the user's order."""
        while (taken := self.sequencer.take(user, now)) is not None:
            cmd, waited = taken
            if waited:
                self.stats["gaps"] += 1
                log.warning(
                    "applied past a gap in a user's commands",
                    extra={"command_id": cmd.id, "user": user, "user_seq": _seq_of(cmd),
                           "held_ms": waited},
                )  # fmt: skip
            apply(cmd)

    # ------------------------------------------------------------ side outputs

    def _refusal(self, m: Any, cmd: AnyCommand) -> str | None:
        """None when ``cmd`` was signed by a producer allowed to send it (shared.producers),
        else why not (a stable code); a refusal is a security event."""
        msg = m.message
        try:
            self.verifier.check(cmd, msg.data, msg.ordering_key, msg.attributes)
        except RefusedCommandError as exc:
            self.stats["refused"] += 1
            log.error(
                "security: command refused",
                extra={"event": "security", "reason": exc.reason, "producer": exc.producer,
                       "command": type(cmd).__name__, "command_id": cmd.id,
                       "ordering_key": msg.ordering_key, "message_id": msg.message_id},
            )  # fmt: skip
            if self.cfg.pubsub.outbox:  # never applied: the local outbox must not resend it
                outbox.remove(self.redis, [cmd.id])
            return exc.reason
        return None

    def _dead_letter(self, bad: list[Any]) -> list[tuple[Any, Future[str]]]:
        """Undecodable or refused messages can never apply: park them on the dead-letter
        topic, for an operator to inspect, with their own attributes (the signature, to see
        who claims to have sent it), why, and their ordering key (shared.pubsub). Returns
        each message with its publish, which its batch's acknowledgement waits for."""
        sent: list[tuple[Any, Future[str]]] = []
        for m, reason, error in bad:
            msg = m.message
            log.error(
                "command dead-lettered",
                extra={"reason": reason, "error": error, "message_id": msg.message_id},
            )
            attributes = {
                **{k: v[:1024] for k, v in msg.attributes.items()},
                REASON_ATTR: reason, ERROR_ATTR: error[:1000],
                ORDERING_KEY_ATTR: msg.ordering_key, SOURCE_MESSAGE_ATTR: msg.message_id,
            }  # fmt: skip
            try:
                future: Future[str] = self.publisher.publish(
                    self.dead_letter_topic, msg.data, **attributes
                )
            except Exception as exc:  # e.g. the client already stopped: a failed publish
                future = Future()
                future.set_exception(exc)
            sent.append((m, future))
        return sent

    def _unconfirmed(self, sent: list[tuple[Any, Future[str]]]) -> set[str]:
        """The ack ids of the bad messages whose dead-letter copy Pub/Sub has not confirmed
        within DEAD_LETTER_WAIT_S. They are not acknowledged, so not lost: Pub/Sub hands them
        out again after their lease (and its own dead-letter policy takes them at last)."""
        deadline = time.monotonic() + DEAD_LETTER_WAIT_S
        unconfirmed: set[str] = set()
        for m, future in sent:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                unconfirmed.add(m.ack_id)
                log.error(
                    "dead-letter publish failed: the message is left to come back",
                    extra={"error": repr(exc), "message_id": m.message.message_id},
                )
        return unconfirmed

    def _reply_again(self, command_id: str, known: Known | None) -> None:
        """A redelivered command gets the reply it got the first time; one whose first reply
        was never written (Redis failed) gets its verdict from the oplog, kept for polling
        too."""
        stored = self.redis.get(command_key(command_id))
        pipe = self.redis.pipeline(transaction=False)
        if stored is None and known is not None:
            stored = encode(
                {
                    "command_id": command_id, "seq": known.seq, "ok": known.ok,
                    "reason": known.reason, "order": None, "order_id": known.order_id,
                }
            )  # fmt: skip
            pipe.set(command_key(command_id), stored, ex=self.cfg.reply_ttl_s)
        if stored is not None:
            pipe.rpush(reply_key(command_id), stored)
            pipe.expire(reply_key(command_id), self.cfg.reply_ttl_s)
            pipe.execute()

    def _queue_events(self, batch: Batch) -> None:
        """The batch's events to the events topic, in sequence order: they join the message
        not yet started, if any (see ``EVENTS_EVERY_S``), else start one."""
        applied = [a for _, a in batch]
        with self._events_lock:  # the committer thread queues, the main thread flushes
            tail = self._pending_events[-1] if self._pending_events else None
            if (
                tail is not None
                and not tail.started
                and len(tail.applied) + len(applied) <= EVENTS_MAX
            ):
                tail.applied += applied
                return
            out = _Outgoing(applied, self._events_run)
            out.future = self._events_out.submit(self._publish_events, out)
            self._pending_events.append(out)

    def _publish_events(self, out: _Outgoing) -> None:
        """One events message (on the events thread), at least EVENTS_EVERY_S after the last
        one: batches committed meanwhile join it. After a failure, the messages queued behind
        it fail too, until ``_flush_events`` starts a new run: none is published out of order
        past a missing one (recovery publishes them again, in order)."""
        wait = self._events_sent + EVENTS_EVERY_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        with self._events_lock:
            out.started = True
        if out.run == self._events_failed_run:
            raise RuntimeError("an earlier events message of this run was not published")
        message = PubsubMessage(
            data=encode(out.applied), ordering_key="matcher",
            attributes={"first_seq": str(out.applied[0].seq), "last_seq": str(out.last)},
        )  # fmt: skip
        try:
            self.events.publish([message], timeout=30)  # one unary call, raw protobuf
        except Exception:
            self._events_failed_run = out.run
            raise
        finally:
            self._events_sent = time.monotonic()

    def _republish(self, chunk: Batch) -> None:
        """During recovery: events of commands the events topic may not have seen."""
        fresh = [(c, a) for c, a in chunk if a.seq > self.published_seq]
        if fresh:
            self._queue_events(fresh)

    def _flush_events(self, wait: bool) -> None:
        """Advance published_seq over the event messages Pub/Sub has confirmed, in order."""
        while True:
            with self._events_lock:
                if not self._pending_events:
                    return
                head = self._pending_events[0]
            future = head.future
            assert future is not None
            if not wait and not future.done():
                return
            try:
                future.result(timeout=30)
            except Exception as exc:
                # Not confirmed: resume the key; recovery will publish these again.
                log.warning("events publish failed", extra={"error": repr(exc), "seq": head.last})
                with self._events_lock:
                    self._events_failed_run = self._events_run  # the rest of the run fails fast
                    self._events_run += 1
                    self._pending_events.clear()
                return
            with self._events_lock:
                self._pending_events.pop(0)
            self.published_seq = head.last

    def _snapshot_due(self) -> bool:
        cfg = self.cfg
        return bool(
            (cfg.snapshot_every and self._since_snapshot >= cfg.snapshot_every)
            or (
                self._since_snapshot
                and time.monotonic() - self._last_snapshot >= cfg.snapshot_seconds
            )
        )

    def _maybe_snapshot(self) -> None:
        """A snapshot when one is due; only with no batch in flight (it holds the engine's
        state, which must be the committed one)."""
        if self._inflight is None and self._snapshot_due():
            self.write_snapshot()

    def write_snapshot(self) -> None:
        assert self.store is not None
        t0 = time.monotonic()
        data = snapshot(self.engine)
        digest = state_hash(self.engine)
        self.store.save_snapshot(self.engine.seq, digest, data)
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        log.info(
            "snapshot written",
            extra={
                "seq": self.engine.seq, "bytes": len(data), "state_hash": digest,
                "ms": round((time.monotonic() - t0) * 1000, 1),
            },
        )  # fmt: skip


def install_signal_handlers(matcher: Matcher) -> None:
    # Cloud Run sends SIGTERM and allows a grace period: finish the batch, commit, ack, exit.
    signal.signal(signal.SIGTERM, matcher.stop)
    signal.signal(signal.SIGINT, matcher.stop)
