"""``make run``: the whole local exchange on this machine, stopped cleanly by Ctrl-C.

    python -m infra.run [--api-port 8080] [--state-dir .state] [--free-ports] ...

What it starts:

1. the local services (``infra.local_stack``): Pub/Sub and Firestore emulators, Postgres,
   Redis, anvil mining a block a second (the emulators' JVMs tuned to start quickly);
2. the API gateway (``python -m infra.gateway``: every HTTP function under one port, on
   gunicorn) as a child process; it reads the auth keys made once in ``STATE/auth-keys.json``
   and serves the web page at ``/`` (built first, ``npm ci`` and ``npm run build`` in web/,
   when missing or stale; docs/web.md);
3. meanwhile: the database migrations, the Pub/Sub topics and the matcher (``python -m
   matcher_service``, a child process), the ws service (``python -m ws_service``, the live
   feed at ``ws://HOST:8081/v1/ws``, a child process with the same auth keys); and, in a
   thread, Firestore's documents of the last run (users, sessions, API keys) imported from
   ``STATE/firestore`` (the emulator keeps nothing on disk), then the admin user
   (``functions.admin.bootstrap``), whose random password is made once and kept in
   ``STATE/admin.json``, for local use only;
   Before the matcher starts, the commands the API accepted in the last run that it did not
   apply are published again (``shared/outbox.py``);
4. the seed: assets ETH and USDT and the market ETH-USDT (commands with fixed ids: the
   matcher applies a command id once, so seeding again changes nothing). The assets' chain
   details (``GET /v1/assets``) are left to the wallet work.

What a restart keeps (``STATE``): Postgres (every applied command and its effects), Redis
(``STATE/redis``, an append-only file: market data, sessions, idempotency keys, each user's
command count, and the outbox of accepted commands not yet applied), Firestore (exported),
the chain (anvil's state file). The Pub/Sub emulator keeps its topics and subscriptions but
forgets every message not yet acknowledged: what the API accepted (answered 201 or 202) and
the matcher had not applied comes back from the outbox at the next start, even after a
``kill -9`` of everything (up to the last second of Redis writes should the machine itself
stop). Deposits the wallet's watcher published are not in the outbox: it publishes them
again itself until they are credited.

The children's output goes to ``STATE/logs``. Then it prints where everything is and
watches: a crashed matcher, ws service, gateway or scheduler is started again after a backoff,
as Cloud Run would (each restart a JSON log line, ``"event": "child_crashed"``), while one
that crashes 5 times within a minute, or a service that dies, stops the whole exchange with
its log's tail (infra/supervision.py, docs/decisions/0022). Ctrl-C (SIGINT), SIGTERM or
SIGHUP stop everything, gateway first (nothing new is accepted), then the wallet's scheduler,
then, once the matcher has applied what was accepted (at most ``DRAIN_S``), the rest,
services last, leaving no process behind; Firestore is exported on the way (and every minute
while up). Should the launcher itself be killed
(SIGKILL), the kernel stops the matcher and the gateway (``PR_SET_PDEATHSIG``); the services
are left running then.

State lives in ``.state/`` (git-ignored) so a second run starts in seconds with everything as
it was; ``make reset`` forgets it. ``--free-ports`` picks free ports for every port not given
explicitly, so a second exchange (a test's) can run beside a developer's ``make run``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

import redis
from google.cloud import firestore

from functions.admin.bootstrap import make_admin
from infra.devchain import CONFIRMATIONS, LocalWallet, asset_chains, ensure_chain, wallet_keys
from infra.gateway import write_dev_cursor_key, write_dev_keys
from infra.ports import free_port, port_in_use
from infra.processes import NO_PROXY, REPO_ROOT, Child, LaunchError, http_status, tail, wait_until
from infra.services import Stack, StackConfig
from infra.supervision import CrashLoopError, RestartPolicy, Supervisor
from infra.tools import ALL_SERVICES, ensure_web_build
from migrations.migrate import migrate
from shared import outbox
from shared.config import PostgresConfig, PubSubConfig
from shared.db import connect
from shared.messages import AnyCommand, CreateAsset, CreateMarket
from shared.pubsub import CommandPublisher, ensure_topics
from shared.redis_keys import ASSET_CHAINS_KEY

log = logging.getLogger("run")

DEFAULT_STATE_DIR: Final = REPO_ROOT / ".state"
DEFAULT_API_PORT: Final = 8080
DEFAULT_MATCHER_PORT: Final = 8090
DEFAULT_WS_PORT: Final = 8081
DEFAULT_ADMIN_EMAIL: Final = "admin@local.test"
MARKET: Final = "ETH-USDT"
FIRESTORE_EXPORT_EVERY_S: Final = 60.0
DRAIN_S: Final = 10.0
"""At a stop, how long the matcher gets to apply what the API accepted before it stops."""
_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEFAULT_RESTART: Final = RestartPolicy()
RESTARTABLE: Final = frozenset({"gateway", "matcher", "ws", "scheduler"})
"""The children restarted after a crash, as Cloud Run restarts them (infra/supervision.py)."""
_NOT_INHERITED: Final = (
    "AUTH_KEYS_SECRET", "AUTH_KEYS_JSON", "CURSOR_KEY", "CURSOR_KEY_SECRET", "CLOUD_SQL_INSTANCE",
)  # fmt: skip
"""The shell's sources of what ``make run`` provides itself (its state dir's keys, Postgres)."""


class RunError(RuntimeError):
    """The exchange could not start, or a part of it died."""


class _Shutdown(BaseException):
    """Raised from the signal handler to unwind whatever the main thread is doing."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass(frozen=True)
class RunConfig:
    state_dir: Path
    stack: StackConfig
    api_port: int
    matcher_port: int
    admin_email: str
    gateway_workers: int = 2
    gateway_threads: int = 16
    ws_port: int = DEFAULT_WS_PORT
    restart: RestartPolicy = DEFAULT_RESTART

    @property
    def host(self) -> str:
        return self.stack.host

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/v1/ws"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


class _Background:
    """A function run in a daemon thread; ``join`` re-raises what it raised."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # handed to join()
            self._error = exc

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RunError(f"{self._thread.name} did not finish within {timeout:.0f}s")
        if self._error is not None:
            raise self._error


# --------------------------------------------------------------------------------------------
# Firestore: the emulator keeps nothing on disk, so the launcher exports and imports
# --------------------------------------------------------------------------------------------


def _firestore_call(host: str, project: str, action: str, directory: str) -> None:
    body = json.dumps(
        {"database": f"projects/{project}/databases/(default)", "export_directory": directory}
    ).encode()
    request = urllib.request.Request(
        f"http://{host}/emulator/v1/projects/{project}:{action}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with NO_PROXY.open(request, timeout=30) as resp:
        resp.read()


def firestore_export(host: str, project: str, state_dir: Path) -> None:
    """Export the project's documents to ``STATE/firestore`` (replaced only once the new
    export is complete)."""
    target = state_dir / "firestore"
    tmp = state_dir / f"firestore.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _firestore_call(host, project, "export", str(tmp))
        old = state_dir / f"firestore.{os.getpid()}.old"
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def firestore_import(host: str, project: str, state_dir: Path) -> bool:
    """Import the last export, if there is one (or the one before, should the launcher have
    died while swapping them)."""
    for pattern in (
        "firestore/*/*.overall_export_metadata",
        "firestore.*.old/*/*.overall_export_metadata",
    ):
        found = sorted(state_dir.glob(pattern))
        if found:
            _firestore_call(host, project, "import", str(found[-1]))
            return True
    return False


# --------------------------------------------------------------------------------------------
# State made once: auth keys, the admin's password
# --------------------------------------------------------------------------------------------


def admin_credentials(state_dir: Path, email: str) -> tuple[str, str]:
    """(email, password) of the local admin; the password is random, made once per email and
    kept in ``STATE/admin.json`` (owner-only)."""
    path = state_dir / "admin.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        stored = json.loads(path.read_text())
        if stored["email"] == email and isinstance(stored["password"], str):
            return email, stored["password"]
    password = secrets.token_urlsafe(18)
    note = "local use only: the admin of this machine's exchange (make run)"
    doc = {"email": email, "password": password, "note": note}
    _write_private(path, json.dumps(doc, indent=2).encode() + b"\n")
    return email, password


def ensure_admin(email: str, password: str) -> str:
    """The admin user (created, or promoted and given the stored password); its user id."""
    db = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    try:
        user_id, _created = make_admin(db, email, password, reset_password=True)
    finally:
        db.close()  # type: ignore[no-untyped-call]
    return user_id


# --------------------------------------------------------------------------------------------
# The exchange
# --------------------------------------------------------------------------------------------


class Exchange:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.stack = Stack(cfg.stack)
        self.children: dict[str, Child] = {}
        self.supervisors: dict[str, Supervisor] = {}
        self.env: dict[str, str] = {}
        self.admin: tuple[str, str] = ("", "")
        self._firestore_ready = False
        self._last_export = 0.0
        self._t = 0.0
        self.phases: list[tuple[str, float]] = []
        self._background: _Background | None = None
        self.started_in = 0.0
        self.wallet: LocalWallet | None = None
        self.usdt = ""

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        t0 = time.monotonic()
        cfg = self.cfg
        ports = (cfg.api_port, cfg.matcher_port, cfg.ws_port)
        busy = [p for p in ports if port_in_use(p, cfg.host)]
        if busy:
            raise RunError(
                f"port {', '.join(map(str, busy))} is already in use on {cfg.host} (another "
                "make run?). Stop it, or choose others: --api-port, --matcher-port, --ws-port, "
                "--free-ports"
            )
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self._t = time.monotonic()
        # The web page is built (when missing or stale) while the services start.
        web = _Background(self._build_web)
        self.stack.start()
        self._phase("services")
        self.env = self._child_env()
        os.environ.update(self.env)
        web.join(600)
        self._phase("web page built")
        # The gateway needs nothing but the services to boot (importing the functions takes
        # seconds): it starts now, in parallel with the rest.
        gateway_args = [
            "-m", "infra.gateway", "--host", cfg.host, "--port", str(cfg.api_port),
            "--workers", str(cfg.gateway_workers), "--threads", str(cfg.gateway_threads),
        ]  # fmt: skip
        self.children["gateway"] = self._child("gateway", gateway_args)
        # Firestore's documents and the admin (the emulator's first requests are slow while its
        # JVM warms up) while Postgres and Pub/Sub are set up and the children boot.
        self._background = accounts = _Background(self._accounts)
        db = connect(PostgresConfig.load(), "run")
        try:
            migrate(db)
        finally:
            db.close()
        pubsub = PubSubConfig.load()
        ensure_topics(pubsub)
        self._republish(pubsub)
        self.children["matcher"] = self._child("matcher", ["-m", "matcher_service"])
        ws_args = ["-m", "ws_service", "--host", cfg.host, "--port", str(cfg.ws_port)]
        self.children["ws"] = self._child("ws", ws_args)
        self._phase("migrations and topics")
        accounts.join(60)
        self._phase("firestore import and admin")

        matcher_url = f"http://{cfg.host}:{cfg.matcher_port}/readyz"
        self._wait_ok(matcher_url, 90, "the matcher")
        self._phase("matcher ready")
        self._seed(pubsub)
        time_url = f"{cfg.api_url}/v1/time"
        self._wait_ok(time_url, 60, "the gateway")
        self._phase("gateway ready")
        market_url = f"{cfg.api_url}/v1/markets/{MARKET}"
        self._wait_ok(market_url, 30, f"market {MARKET}")
        self._phase("market seeded")
        ws_ready = f"http://{cfg.host}:{cfg.ws_port}/readyz"
        self._wait_ok(ws_ready, 30, "the ws service")
        self._phase("ws ready")
        self._chain()
        self._phase("chain: token, wallet, scheduler")
        self.started_in = time.monotonic() - t0
        log.info(
            "up in %.1fs: %s",
            self.started_in,
            ", ".join(f"{what} {seconds:.1f}s" for what, seconds in self.phases),
        )

    def _chain(self) -> None:
        """The USDT token on anvil, the wallet funded, the assets' chain details (as the admin
        route stores them), then the local scheduler of the wallet's jobs."""
        assert self.wallet is not None
        self.usdt = ensure_chain(self.stack.url("anvil"), self.cfg.state_dir, self.wallet)
        chains = asset_chains(self.usdt)
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            client.hset(ASSET_CHAINS_KEY, mapping={a: json.dumps(c) for a, c in chains.items()})
        finally:
            client.close()
        fs = firestore.Client(project=self.env["GOOGLE_CLOUD_PROJECT"])
        for asset, chain in chains.items():
            fs.collection("assets").document(asset).set(
                {"asset": asset, "chain": chain}, merge=True
            )
        self.children["scheduler"] = self._child(
            "scheduler", ["-m", "infra.scheduler", "--every", "2"]
        )

    def _wait_ok(self, url: str, timeout: float, what: str) -> None:
        """Wait until ``url`` answers 200, raising as soon as a child or a service dies."""
        wait_until(lambda: http_status(url) == 200, timeout, what, check=self.check, interval=0.1)

    def _child(self, name: str, args: list[str]) -> Child:
        """A Python module of the exchange as a child process, stopped by the kernel should
        this launcher die, its output appended to ``logs/NAME.log``; the restartable ones get
        a supervisor that starts them again after a crash."""
        log_path = self.cfg.logs_dir / f"{name}.log"

        def start() -> Child:
            return Child.python(
                name, args, log_path, env=self.env, die_with_parent=True, append=True
            )

        if name in RESTARTABLE:
            self.supervisors[name] = Supervisor(name, start, self.cfg.restart)
        return start()

    def _accounts(self) -> None:
        cfg = self.cfg
        host, project = self.env["FIRESTORE_EMULATOR_HOST"], self.env["GOOGLE_CLOUD_PROJECT"]
        if firestore_import(host, project, cfg.state_dir):
            log.info("firestore: imported the documents of the last run")
        self._firestore_ready = True
        self.admin = admin_credentials(cfg.state_dir, cfg.admin_email)
        ensure_admin(*self.admin)
        self._export_firestore()  # the admin survives even a hard kill of this launcher

    def _republish(self, pubsub: PubSubConfig) -> None:
        """The commands the last run accepted and did not apply, published again (the
        emulator forgot them): in the order they were accepted, before the matcher starts."""
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        db = connect(PostgresConfig.load(), "run")
        publisher = CommandPublisher(pubsub)

        def durable(ids: list[str]) -> set[str]:
            rows = db.run(
                "SELECT command_id FROM oplog WHERE command_id = ANY(CAST(:ids AS text[]))",
                ids=ids,
            )
            return {str(r[0]) for r in rows}

        try:
            published, done = outbox.republish(client, publisher.publish_raw, durable)
        finally:
            db.close()
            client.close()
        if published or done:
            log.info(
                "outbox: published again %d accepted commands the last run did not apply "
                "(%d more were applied)",
                published,
                done,
            )

    def _drain(self) -> None:
        """Wait (at most DRAIN_S) until the matcher has applied what the API accepted."""
        matcher = self.children.get("matcher")
        if matcher is None or matcher.proc.poll() is not None or "REDIS_URL" not in self.env:
            return
        client = redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=2)
        deadline = time.monotonic() + DRAIN_S
        try:
            left = -1
            while time.monotonic() < deadline and matcher.proc.poll() is None:
                left = outbox.size(client)
                if not left:
                    return
                time.sleep(0.1)
            log.info("%d accepted commands not applied yet: sent again at the next start", left)
        except redis.RedisError as exc:
            log.warning("could not see the outbox: %s", exc)
        finally:
            client.close()

    @staticmethod
    def _build_web() -> None:
        ensure_web_build()

    def _phase(self, what: str) -> None:
        """Note how long the step that just ended took (shown once the exchange is up)."""
        now = time.monotonic()
        self.phases.append((what, now - self._t))
        self._t = now

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        env.update(self.stack.env())
        keys = write_dev_keys(self.cfg.state_dir / "auth-keys.json")
        cursor_key = write_dev_cursor_key(self.cfg.state_dir / "cursor-key")
        self.wallet = wallet_keys(self.cfg.state_dir)
        env.update(self.wallet.env(), CHAIN_ID=str(self.stack.config.chain_id))
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            COMMANDS_OUTBOX="1",
            PORT=str(self.cfg.matcher_port),
            MATCHER_HOST=self.cfg.host,
            AUTH_KEYS_FILE=str(keys),
            CURSOR_KEY_FILE=str(cursor_key),
            PYTHONUNBUFFERED="1",
            WEB_WS_URL=self.cfg.ws_url,  # the gateway's /config.json: where the page's feed is
        )
        return env

    def _seed(self, pubsub: PubSubConfig) -> None:
        """Assets and the market, as commands with fixed ids (applied once, ever)."""
        seed: list[AnyCommand] = [
            CreateAsset(id="seed-asset-ETH", asset="ETH", precision=8),
            CreateAsset(id="seed-asset-USDT", asset="USDT", precision=6),
            CreateMarket(
                id="seed-market-ETH-USDT", market=MARKET, base="ETH", quote="USDT",
                tick="0.01", step="0.0001", min_amount="0.0001", min_notional="1",
                maker_fee="0.001", taker_fee="0.002",
            ),
        ]  # fmt: skip
        publisher = CommandPublisher(pubsub)
        for cmd in seed:
            publisher.publish(cmd, "admin")

    def _export_firestore(self) -> None:
        if not self._firestore_ready:
            return
        self._last_export = time.monotonic()
        try:
            firestore_export(
                self.env["FIRESTORE_EMULATOR_HOST"], self.env["GOOGLE_CLOUD_PROJECT"],
                self.cfg.state_dir,
            )  # fmt: skip
        except (OSError, urllib.error.URLError) as exc:
            log.warning("firestore export failed: %s", exc)

    # -- while up ----------------------------------------------------------------------------

    def check(self) -> None:
        """Restart a crashed child when its backoff has passed; raise when a child that is not
        restartable, a crash-looping one or a service has died."""
        for name, child in list(self.children.items()):
            supervisor = self.supervisors.get(name)
            if supervisor is None or child.alive():
                child.check()
                continue
            if supervisor.due is None:
                child.kill()  # what it left in its process group goes with it
                try:
                    supervisor.crashed(child)
                except CrashLoopError as exc:
                    raise RunError(str(exc)) from None
            restarted = supervisor.restart_if_due()
            if restarted is not None:
                self.children[name] = restarted
        dead = self.stack.dead_services()
        if dead:
            name = dead[0]
            raise RunError(
                f"{name} exited unexpectedly. Last lines of {self.stack.log_path(name)}:\n"
                f"{tail(self.stack.log_path(name))}"
            )

    def watch(self) -> None:
        while True:
            self.check()
            if time.monotonic() - self._last_export > FIRESTORE_EXPORT_EVERY_S:
                self._export_firestore()
            time.sleep(0.5)

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        t0 = time.monotonic()
        if self._background is not None:  # interrupted while it ran: let it finish first
            with contextlib.suppress(BaseException):
                self._background.join(30)
        # Nothing new comes in (the gateway, the wallet's jobs); the matcher applies what was
        # accepted; then the rest, the last started first.
        for name in ("gateway", "scheduler"):
            child = self.children.pop(name, None)
            if child is not None:
                child.stop()
        self._drain()
        for name in reversed(list(self.children)):
            child = self.children.pop(name, None)
            if child is not None:
                child.stop()
        if self._firestore_ready and "firestore" not in self.stack.dead_services():
            self._export_firestore()
        self._firestore_ready = False
        self.stack.stop()
        log.info("stopped everything in %.1fs", time.monotonic() - t0)

    # -- what to tell the user ---------------------------------------------------------------

    def summary(self) -> str:
        cfg, st = self.cfg, self.stack.config
        try:
            shown_state = cfg.state_dir.relative_to(Path.cwd())
        except ValueError:
            shown_state = cfg.state_dir
        email, password = self.admin
        rows = [
            ("web page", f"{cfg.api_url}/", "open it in a browser: sign up, deposit, trade"),
            ("API base URL", cfg.api_url, f"try: curl {cfg.api_url}/v1/markets"),
            ("OpenAPI", f"{cfg.api_url}/v1/openapi.json", ""),
            ("admin", f"{email} / {password}", f"LOCAL USE ONLY; in {shown_state}/admin.json"),
            ("market", f"{MARKET} (assets ETH, USDT)", "maker fee 0.1%, taker fee 0.2%"),
            ("matcher", f"http://{cfg.host}:{cfg.matcher_port}/readyz", ""),
            ("live feed", cfg.ws_url, "WebSocket; docs/ws.md, examples/ws_client.py"),
            ("Pub/Sub", f"{cfg.host}:{st.pubsub_port}", "emulator"),
            ("Firestore", f"{cfg.host}:{st.firestore_port}", "emulator"),
            ("Postgres", self.stack.url("postgres"), ""),
            ("Redis", self.stack.url("redis"), ""),
            ("anvil", self.stack.url("anvil"), f"chain id {st.chain_id}, a block a second"),
            ("USDT", self.usdt, "ERC-20, 6 decimals; python -m infra.devchain faucet ADDR"),
            (
                "wallet jobs",
                "watcher, sweep, sender every 2 s",
                f"deposits confirm after {CONFIRMATIONS} blocks",
            ),
            ("logs", f"{shown_state}/logs/", ""),
            ("environment", f"source {shown_state}/env", "for python -m matcher_service.replay"),
        ]
        width = max(len(r[1]) for r in rows)
        lines = [f"  {name:<13} {value:<{width}}  {note}".rstrip() for name, value, note in rows]
        return (
            f"\nThe local exchange is up (started in {self.started_in:.1f}s):\n"
            + "\n".join(lines)
            + "\n\nYour first trade: README.md, 'Your first trade'. Ctrl-C stops everything.\n"
        )

    def write_env_file(self) -> None:
        env = {**self.stack.env(), "API": self.cfg.api_url, "WS": self.cfg.ws_url}
        text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        (self.cfg.state_dir / "env").write_text(text)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.run", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="default: .state/ here"
    )
    parser.add_argument("--api-port", type=int, help=f"the gateway (default {DEFAULT_API_PORT})")
    parser.add_argument("--matcher-port", type=int, help=f"default {DEFAULT_MATCHER_PORT}")
    parser.add_argument("--ws-port", type=int, help=f"the ws service (default {DEFAULT_WS_PORT})")
    defaults = StackConfig()
    for name in ALL_SERVICES:
        parser.add_argument(f"--{name}-port", type=int, help=f"default {defaults.port(name)}")
    parser.add_argument(
        "--free-ports", action="store_true", help="free ports for every port not given"
    )
    parser.add_argument("--admin-email", default=DEFAULT_ADMIN_EMAIL)
    parser.add_argument("--gateway-workers", type=int, default=2)
    parser.add_argument("--gateway-threads", type=int, default=16)
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    defaults = StackConfig()
    taken: list[int] = [
        p
        for p in [args.api_port, args.matcher_port, args.ws_port]
        + [getattr(args, f"{n}_port") for n in ALL_SERVICES]
        if p is not None
    ]

    def port(given: int | None, default: int) -> int:
        if given is not None:
            return given
        if not args.free_ports:
            return default
        chosen = free_port(defaults.host, exclude=taken)
        taken.append(chosen)
        return chosen

    stack_ports = {
        f"{n}_port": port(getattr(args, f"{n}_port"), defaults.port(n)) for n in ALL_SERVICES
    }
    state_dir = Path(args.state_dir).resolve()
    return RunConfig(
        state_dir=state_dir,
        stack=StackConfig(
            state_dir=state_dir,
            keep_state=True,
            block_time=1.0,
            jvm_quick_start=True,
            anvil_state=state_dir / "anvil-state.json",
            redis_persist=True,
        ).replace(**stack_ports),
        api_port=port(args.api_port, DEFAULT_API_PORT),
        matcher_port=port(args.matcher_port, DEFAULT_MATCHER_PORT),
        ws_port=port(args.ws_port, DEFAULT_WS_PORT),
        admin_email=args.admin_email,
        gateway_workers=args.gateway_workers,
        gateway_threads=args.gateway_threads,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    exchange = Exchange(cfg)
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stopping:
            raise _Shutdown(signum)

    for sig in _SIGNALS:
        signal.signal(sig, on_signal)
    code = 0
    try:
        exchange.start()
        exchange.write_env_file()
        print(exchange.summary(), flush=True)
        exchange.watch()
    except _Shutdown as exc:
        log.info("received %s, stopping", signal.Signals(exc.signum).name)
    except (RunError, LaunchError) as exc:
        log.error("%s", exc)
        code = 1
    finally:
        stopping = True
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        exchange.stop()
        print("stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
