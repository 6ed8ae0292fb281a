"""The live feed under test: a real exchange (matcher, gateway and ``python -m ws_service`` as
processes on this test's database, topics, Redis and Firestore project) and real websockets
clients (the library's sync client: a background thread reads, the test reads its queue)."""

from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from google.cloud import firestore
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from functions.admin.bootstrap import make_admin
from infra.ports import free_port
from infra.processes import Child, wait_until
from shared.config import MatcherConfig
from tests.integration.http_client import NO_PROXY, HttpClient
from tests.integration.matcher_helpers import gateway_and_matcher

MARKET = "ETH-USDT"
PASSWORD = "a long test password"


WS_TEST_ENV = {
    "WS_PING_INTERVAL_S": "1",
    "WS_PING_TIMEOUT_S": "2",
    "WS_IDLE_TIMEOUT_S": "3",
    "WS_MAX_SUBSCRIPTIONS": "10",
    "WS_MESSAGES_PER_S": "50",
    "WS_CLOSE_TIMEOUT_S": "5",
}
"""Short heartbeats and idle time, so the tests see dead and idle connections closed."""


# ---------------------------------------------------------------- HTTP


Http = HttpClient


def get_json(url: str) -> tuple[int, Any]:
    try:
        with NO_PROXY.open(url, timeout=5) as resp:
            return int(resp.status), orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), None


# ---------------------------------------------------------------- the exchange


@dataclass
class User:
    user_id: str
    token: str


class WsProcess(Child):
    """``python -m ws_service`` on a free port, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        args = ["-m", "ws_service", "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(log_path.stem, [sys.executable, *args], log_path, env=env)
        wait_until(self._ready, 30, "the ws service", self)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def stats(self) -> dict[str, Any]:
        status, doc = get_json(f"http://127.0.0.1:{self.port}/readyz")
        assert doc is not None, status
        return dict(doc)

    def _ready(self) -> bool:
        try:
            return get_json(f"http://127.0.0.1:{self.port}/readyz")[0] == 200
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as Cloud Run stops it; its exit code."""
        code = super().stop(timeout)
        assert code is not None, f"{self.name} did not exit"
        return code


@dataclass
class Exchange:
    http: Http
    env: dict[str, str]
    log_dir: Path
    firestore: firestore.Client
    admin: str = ""
    ws: list[WsProcess] = field(default_factory=list)

    def start_ws(self, **overrides: str) -> WsProcess:
        env = {**self.env, **WS_TEST_ENV, **overrides}
        proc = WsProcess(env, self.log_dir / f"ws-{len(self.ws)}.log")
        self.ws.append(proc)
        return proc

    def list_market(self) -> None:
        """ETH, USDT and ETH-USDT through the admin routes."""
        make_admin(self.firestore, "admin@example.com", PASSWORD)
        self.admin = self.login("admin@example.com")
        self.http.ok("POST", "/v1/admin/assets", {"asset": "ETH", "precision": 8},
                     self.admin, 201)  # fmt: skip
        self.http.ok("POST", "/v1/admin/assets", {"asset": "USDT", "precision": 6},
                     self.admin, 201)  # fmt: skip
        definition = {
            "base": "ETH", "quote": "USDT", "tick": "0.01", "step": "0.0001",
            "min_amount": "0.0001", "min_notional": "1", "maker_fee": "0.001",
            "taker_fee": "0.002",
        }  # fmt: skip
        self.http.ok("POST", "/v1/admin/markets", definition, self.admin, 201)

    def login(self, email: str) -> str:
        tokens = self.http.ok("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
        token: str = tokens["access_token"]
        return token

    def user(self, name: str, eth: str = "100", usdt: str = "1000000") -> User:
        """A new user, signed up, logged in and credited."""
        email = f"{name}@example.com"
        created = self.http.ok(
            "POST", "/v1/auth/signup", {"email": email, "password": PASSWORD}, None, 201
        )
        user = User(created["user_id"], self.login(email))
        for asset, amount in (("ETH", eth), ("USDT", usdt)):
            if Decimal(amount):
                self.deposit(user, asset, amount)
        return user

    def deposit(self, user: User, asset: str, amount: str) -> None:
        body = {"user_id": user.user_id, "asset": asset, "amount": amount,
                "ref": f"{user.user_id}-{asset}-{time.monotonic_ns()}"}  # fmt: skip
        self.http.ok("POST", "/v1/admin/deposits", body, self.admin, 201)

    def order(self, user: User, **fields: Any) -> dict[str, Any]:
        placed: dict[str, Any] = self.http.ok(
            "POST", "/v1/orders", {"market": MARKET, "type": "limit", **fields}, user.token, 201
        )
        return placed

    def depth(self, limit: int = 20) -> dict[str, Any]:
        doc: dict[str, Any] = self.http.get(f"/v1/markets/{MARKET}/depth?limit={limit}")
        return doc


@contextmanager
def exchange(
    matcher_cfg: MatcherConfig, firestore_db: firestore.Client, tmp_path: Path
) -> Iterator[Exchange]:
    """The matcher and the gateway as processes (as tests/integration/test_e2e.py starts
    them; firestore_db before matcher_cfg in a test's arguments: the Pub/Sub names live in
    its project); ``start_ws`` adds ws services with the same environment and auth keys."""
    limits = {"TRADE_RATE_PER_USER": "100000", "TRADE_RATE_PER_IP": "100000"}
    with gateway_and_matcher(matcher_cfg, tmp_path, **limits, AUTH_RATE_PER_IP="100000") as (
        url,
        env,
    ):
        ex = Exchange(Http(url), env, tmp_path, firestore_db)
        try:
            yield ex
        finally:
            for ws in ex.ws:
                ws.stop()


# ---------------------------------------------------------------- clients


class Feed:
    """A websockets client of the live feed. ``next`` returns the first message that matches,
    keeping the others, in order, for later calls."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        kwargs.setdefault("max_queue", None)  # read all the time: pings are always answered
        self.ws: ClientConnection = connect(url, open_timeout=10, legacy=True, **kwargs)
        self.backlog: list[dict[str, Any]] = []

    def send(self, **op: Any) -> None:
        self.ws.send(orjson.dumps(op).decode())

    def recv(self, timeout: float = 30.0) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        raw = self.ws.recv(timeout)
        doc: dict[str, Any] = orjson.loads(raw)
        return doc

    def next(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0, what: str = "message"
    ) -> dict[str, Any]:
        for i, doc in enumerate(self.backlog):
            if pred(doc):
                del self.backlog[i]
                return doc
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; kept: {self.backlog[-5:]}")
            try:
                doc = self._read(left)
            except TimeoutError:
                continue
            if pred(doc):
                return doc
            self.backlog.append(doc)

    def of(self, type_: str, channel: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        return self.next(
            lambda d: d["type"] == type_ and (channel is None or d.get("channel") == channel),
            timeout,
            f"{type_} {channel or ''}",
        )

    def subscribe(self, channel: str) -> Any:
        """Subscribe; the snapshot's data (None for orders and balances)."""
        self.send(op="subscribe", channel=channel)
        got = self.next(
            lambda d: d.get("channel") == channel and d["type"] in ("subscribed", "error"),
            what=f"subscribed {channel}",
        )
        assert got["type"] == "subscribed", got
        if channel in ("orders", "balances"):
            return None
        return self.of("snapshot", channel)["data"]

    def call(self, **op: Any) -> dict[str, Any]:
        """Send an op with an id; the answer bearing that id."""
        ident = f"r{time.monotonic_ns()}"
        self.send(id=ident, **op)
        return self.next(lambda d: d.get("id") == ident, what=f"answer to {op}")

    def closed(self, timeout: float = 30.0) -> ConnectionClosed:
        """Read until the server closes; the close (its ``rcvd`` code and reason)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.backlog.append(self._read(deadline - time.monotonic()))
            except ConnectionClosed as exc:
                return exc
            except TimeoutError:
                break
        raise AssertionError("the server did not close the connection")

    def close(self) -> None:
        self.ws.close()


def slow_socket(port: int, rcvbuf: int = 4096) -> socket.socket:
    """A TCP connection with a small receive buffer, for a client that stops reading."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    return sock


class DepthBook:
    """A client's copy of the book, built from a snapshot and the updates that follow."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.reset(snapshot)

    def reset(self, snapshot: dict[str, Any]) -> None:
        self.seq: int = snapshot["seq"]
        self.bids = dict(snapshot["bids"])
        self.asks = dict(snapshot["asks"])

    def continues(self, update: dict[str, Any]) -> bool:
        """Whether ``update`` follows this book (else there is a gap: resubscribe)."""
        return bool(update["prev_seq"] == self.seq)

    def apply(self, update: dict[str, Any]) -> None:
        assert self.continues(update), (self.seq, update)
        for side, levels in ((self.bids, update["bids"]), (self.asks, update["asks"])):
            for price, amount in levels:
                if amount == "0":
                    side.pop(price, None)
                else:
                    side[price] = amount
        self.seq = update["seq"]

    def view(self, limit: int) -> dict[str, Any]:
        """As ``GET /v1/markets/{m}/depth?limit=`` shows it."""
        bids = sorted(self.bids.items(), key=lambda lv: Decimal(lv[0]), reverse=True)
        asks = sorted(self.asks.items(), key=lambda lv: Decimal(lv[0]))
        return {
            "bids": [list(lv) for lv in bids[:limit]],
            "asks": [list(lv) for lv in asks[:limit]],
            "seq": self.seq,
        }
