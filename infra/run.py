"""``make run``: the whole local exchange on this machine, stopped cleanly by Ctrl-C.

Starts the local services (Pub/Sub and Firestore emulators, Postgres, Redis, anvil mining a
block a second), migrates the database, creates the topics, starts the matcher, seeds the
assets and the ETH-USDT market (idempotent: seeding commands have fixed ids, and the matcher
applies a command id once), then waits. State lives in ``.state/`` so a second run starts in
seconds with everything as it was; ``make reset`` forgets it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from infra.local_stack import REPO_ROOT, Stack, StackConfig
from infra.migrate import migrate
from shared.config import PostgresConfig, PubSubConfig
from shared.db import connect
from shared.pubsub import CommandPublisher, ensure_topics
from shared.schema import AnyCommand, CreateAsset, CreateMarket

log = logging.getLogger("run")
STATE_DIR = REPO_ROOT / ".state"
MATCHER_PORT = 8090

SEED: list[AnyCommand] = [
    CreateAsset(id="seed-asset-ETH", asset="ETH", precision=8),
    CreateAsset(id="seed-asset-USDT", asset="USDT", precision=6),
    CreateMarket(
        id="seed-market-ETH-USDT", market="ETH-USDT", base="ETH", quote="USDT", tick="0.01",
        step="0.0001", min_amount="0.0001", min_notional="1", maker_fee="0.001",
        taker_fee="0.002",
    ),
]  # fmt: skip


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = Stack(StackConfig(state_dir=STATE_DIR, keep_state=True, block_time=1.0))
    children: list[subprocess.Popen[bytes]] = []
    try:
        stack.start()
        os.environ.update(stack.env())
        db = connect(PostgresConfig.load(), "run")
        migrate(db)
        db.close()
        pubsub = PubSubConfig.load()
        ensure_topics(pubsub)
        logs = STATE_DIR / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PORT": str(MATCHER_PORT), "PYTHONPATH": str(REPO_ROOT)}
        with (logs / "matcher.log").open("ab") as out:
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "matcher_service"], env=env, stdout=out, stderr=out
                )
            )
        _wait_http(f"http://127.0.0.1:{MATCHER_PORT}/readyz", 60)
        publisher = CommandPublisher(pubsub)
        for cmd in SEED:
            publisher.publish(cmd, "admin")
        print(
            "\nThe local exchange is up:\n"
            f"  matcher        http://127.0.0.1:{MATCHER_PORT}/readyz"
            f"   (log: {Path('.state/logs/matcher.log')})\n"
            + "".join(f"  {k:<24} {v}\n" for k, v in sorted(stack.env().items()))
            + "Market ETH-USDT is seeded. Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stop.is_set():
            for child in children:
                if child.poll() is not None:
                    raise RuntimeError(f"{child.args!r} exited with {child.returncode}")
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        stack.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
