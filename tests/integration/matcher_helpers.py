"""Driving a real matcher in tests: commands for a small market, a matcher in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from matcher_service.service import Matcher
from shared.config import MatcherConfig, PubSubConfig
from shared.db import connect
from shared.pubsub import CommandPublisher
from shared.schema import AnyCommand, CreateAsset, CreateMarket, Deposit

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


def publish(cfg: PubSubConfig, commands: list[AnyCommand]) -> None:
    publisher = CommandPublisher(cfg)
    for cmd in commands:
        publisher.publish(cmd, key_of(cmd))


def wait_for(pred: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


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
