"""The wallet's scheduled jobs wired to the environment: what functions/{watcher,sweep,sender}
run on each Cloud Scheduler call (and what ``make run``'s local scheduler runs).

Each run opens its own Postgres connection (its advisory lock dies with it if the instance
does), reads the assets' chain details from Redis (the sender: from Firestore and Postgres,
their durable sources) and the deposit addresses from Firestore,
and returns a report that is logged and answered as JSON.

``run_job`` is the boundary every caller goes through: a run that fails is logged there, with
``ETH_RPC_URL`` (a provider's URL carries its API key; web3's exceptions quote the URL or its
path), the Redis URL and the Postgres password redacted (shared.logs), and answered without
any detail.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import redis
from web3 import Web3

from shared import logs
from shared.config import PostgresConfig, PubSubConfig, WalletConfig
from shared.db import Database, connect
from shared.instance import close_members, lazy, per_instance
from shared.messages import AnyCommand
from shared.pubsub import CommandPublisher
from shared.redis_keys import command_key
from wallet import addresses, chain
from wallet.assets import (
    AssetChain,
    load_asset_chains,
    load_durable_asset_chains,
    restore_asset_chains,
)
from wallet.keys import HdWallet, single_key
from wallet.sender import run_sender
from wallet.sweep import run_sweep
from wallet.watcher import run_watcher

T = TypeVar("T")
log = logging.getLogger("wallet.jobs")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What the jobs hold for the instance's life (shared.instance); the Pub/Sub publisher
    and the HD wallet are built on their first use."""

    cfg: WalletConfig
    postgres: PostgresConfig
    pubsub: PubSubConfig
    redis: redis.Redis
    firestore: Any

    @lazy
    def publisher(self) -> CommandPublisher:
        return CommandPublisher(self.pubsub)

    @lazy
    def w3(self) -> Web3:
        """The chain, connected (and its chain id checked) once: a ``Web3`` is costly to
        build, and the local scheduler runs the jobs every 2 s (docs/benchmarks.md)."""
        return chain.connect(self.cfg)

    @lazy
    def hd(self) -> HdWallet:
        """The deposit addresses' HD wallet (its seed is derived once: PBKDF2 is slow)."""
        return HdWallet.from_source(self.cfg.mnemonic)

    def publish(self, cmd: AnyCommand, ordering_key: str) -> None:
        self.publisher.publish(cmd, ordering_key)

    def verdict(self, command_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(command_key(command_id))
        return None if raw is None else dict(orjson.loads(raw))

    def close(self) -> None:
        close_members(self)
        self.redis.close()


@per_instance
def runtime() -> Runtime:
    from google.cloud import firestore  # type: ignore[attr-defined, unused-ignore]

    cfg = WalletConfig.load()
    postgres = PostgresConfig.load()
    logs.hide_url(cfg.rpc_url)
    logs.hide_url(cfg.redis_url)
    logs.hide(postgres.password)
    pubsub = PubSubConfig.load()
    return Runtime(
        cfg=cfg,
        postgres=postgres,
        pubsub=pubsub,
        redis=redis.Redis.from_url(cfg.redis_url),
        firestore=firestore.Client(project=pubsub.project),
    )


def _with_db(rt: Runtime, name: str, fn: Callable[[Database], T]) -> T:
    db = connect(rt.postgres, f"wallet-{name}")
    try:
        return fn(db)
    finally:
        db.close()


def _assets(rt: Runtime) -> dict[str, AssetChain]:
    restore_asset_chains(rt.redis, rt.firestore)
    return load_asset_chains(rt.redis, rt.cfg.confirmations)


def report_json(report: Any) -> dict[str, Any]:
    return dataclasses.asdict(report)


def watch_once(rt: Runtime | None = None) -> dict[str, Any]:
    rt = rt or runtime()
    w3 = rt.w3
    assets = _assets(rt)
    owners = addresses.owners(rt.firestore, rt.cfg.chain_id)
    return report_json(
        _with_db(
            rt, "watcher",
            lambda db: run_watcher(
                db, w3, rt.cfg, assets, owners, lambda c: rt.publish(c, c.user), rt.verdict
            ),
        )
    )  # fmt: skip


def sweep_once(rt: Runtime | None = None) -> dict[str, Any]:
    rt = rt or runtime()
    if rt.cfg.hot_wallet_address is None:
        from shared.config import ConfigError

        raise ConfigError("environment variable HOT_WALLET_ADDRESS is required by the sweep")
    w3 = rt.w3
    assets = _assets(rt)

    def owners() -> dict[str, addresses.Owner]:
        return addresses.owners(rt.firestore, rt.cfg.chain_id)

    hd = rt.hd
    gas = single_key(rt.cfg.gas_wallet_key)
    hot = rt.cfg.hot_wallet_address
    return report_json(
        _with_db(rt, "sweep", lambda db: run_sweep(db, w3, rt.cfg, assets, owners, hd, gas, hot))
    )


def send_once(rt: Runtime | None = None) -> dict[str, Any]:
    rt = rt or runtime()
    w3 = rt.w3
    hot = single_key(rt.cfg.hot_wallet_key)

    def send(db: Database) -> Any:
        # Payout contracts and decimals from their durable sources, never from Redis.
        assets = load_durable_asset_chains(rt.firestore, db, rt.cfg.confirmations)
        return run_sender(db, w3, rt.cfg, assets, hot, rt.publish, rt.verdict, time.time)

    return report_json(_with_db(rt, "sender", send))


def run_job(name: str, job: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """One run of ``job``: its report, or None when it failed (logged, secrets redacted)."""
    try:
        return job()
    except Exception as exc:
        log.exception(
            "%s run failed: %s", name, type(exc).__name__, extra={"job": name, "error": str(exc)}
        )
        return None
