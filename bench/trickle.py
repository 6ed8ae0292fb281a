"""The matcher's CPU per command at a fixed, low rate (a trickle), without the rest of the
exchange: ``python -m bench.trickle [--rate 100] [--seconds 10]``.

Starts its own Pub/Sub emulator, Postgres (fsync on) and Redis, seeds a market and 30 funded
users, runs the real ``Matcher`` in this process and publishes limit orders at ``--rate`` from
a child process (one unary publish per command, the user as ordering key and a ``user_seq``,
as the orders function does). After a warm-up it reads the CPU time of each of this
process's threads (``/proc/self/task``) over a window and reports the matcher's CPU per
command and per batch, and how many commands a batch held. ``bench.cpu`` measures the same
inside the whole local exchange; this isolates the matcher, whose threads it can tell apart.
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.pipeline import admin_commands, apply_and_write, deposits, fresh_db
from infra.services import Stack, StackConfig
from matcher_service.engine import Engine
from matcher_service.persistence import Store
from matcher_service.service import Matcher
from shared.config import MatcherConfig, PubSubConfig
from shared.db import connect
from shared.messages import PlaceOrder, UserSeq
from shared.pubsub import CommandPublisher, ensure_topics

USERS = [f"t{i}" for i in range(30)]
WARM_UP_S = 3.0
TICKS_MS = 1000 / os.sysconf("SC_CLK_TCK")


def publish(rate: float, seconds: float, seed: int) -> None:
    """The child process: limit orders around a mid price, ``rate`` a second."""
    publisher = CommandPublisher(PubSubConfig.load())
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    tick = 10_000  # 0.01 USDT at precision 6
    t0 = time.perf_counter()
    for i in range(int(rate * (seconds + WARM_UP_S + 2))):
        user = USERS[i % len(USERS)]
        counts[user] = counts.get(user, 0) + 1
        buy = rng.random() < 0.5
        offset = rng.randint(-30, 5) if buy else rng.randint(-5, 30)
        cmd = PlaceOrder(
            id=f"trickle-{seed}-{i}", user=user, market="ETH-USDT",
            side="buy" if buy else "sell", price=(10_000 + offset) * tick,
            amount=10_000 * rng.randint(1, 20), user_seq=UserSeq(1, counts[user]),
        )  # fmt: skip
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        publisher.publish_one(cmd, user)


def thread_cpu_ms() -> dict[str, float]:
    """CPU ms (user + system) of each of this process's threads, by Python thread name (a
    pool's threads together)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # ended meanwhile
        name = names.get(int(tid), "native")
        name = name.rsplit("_", 1)[0] if "_" in name else name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) * TICKS_MS
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="matcher CPU per command at a fixed rate")
    parser.add_argument("--rate", type=float, default=100.0, help="commands/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.publisher:
        publish(args.rate, args.seconds, args.seed)
        return 0

    stack = Stack(StackConfig.with_free_ports(pg_fast=False))
    stack.start(["pubsub", "postgres", "redis"])
    try:
        os.environ.update(stack.env())
        ps = PubSubConfig.load()
        ensure_topics(ps)
        pg = fresh_db("trickle")
        db = connect(pg)
        store = Store(db)
        setup = admin_commands() + deposits(USERS)
        apply_and_write(store, Engine(), setup, 1000, store.take_lease("setup"))
        db.close()
        cfg = MatcherConfig(postgres=pg, pubsub=ps, redis_url=os.environ["REDIS_URL"], port=0)
        matcher = Matcher(cfg, holder="trickle")
        runner = threading.Thread(target=matcher.run, name="matcher", daemon=True)
        runner.start()
        if not matcher.ready.wait(60):
            raise RuntimeError("the matcher did not get ready")
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.trickle", "--publisher", f"--rate={args.rate}",
             f"--seconds={args.seconds}", f"--seed={args.seed}"],
        )  # fmt: skip
        time.sleep(WARM_UP_S)
        cpu0, stats0 = thread_cpu_ms(), dict(matcher.stats)
        time.sleep(args.seconds)
        cpu1, stats1 = thread_cpu_ms(), dict(matcher.stats)
        child.wait(60)
        matcher.stop()
        runner.join(30)
    finally:
        stack.stop()
    commands = stats1["commands"] - stats0["commands"]
    batches = stats1["batches"] - stats0["batches"]
    threads = {k: round(v - cpu0.get(k, 0.0), 1) for k, v in cpu1.items()}
    total = sum(threads.values()) - threads.get("MainThread", 0.0)  # the harness's own
    figures = {
        "trickle_rate": args.rate, "trickle_commands": commands, "trickle_batches": batches,
        "trickle_commands_per_batch": round(commands / max(1, batches), 2),
        "trickle_matcher_cpu_ms_per_command": round(total / max(1, commands), 3),
        "trickle_matcher_cpu_ms_per_batch": round(total / max(1, batches), 3),
        "trickle_thread_cpu_ms": threads, "loadavg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
