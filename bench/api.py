"""API benchmark: place-order round trips and depth reads over real HTTP, at fixed rates.

Starts its own local stack on free ports (Pub/Sub and Firestore emulators, Postgres with fsync
on, Redis), migrates, creates the topics, then two child processes as ``make run`` does: the
matcher (``python -m matcher_service``) and the gateway (``python -m infra.gateway``: every
function behind one port, gunicorn's threaded workers). Through the API it lists ETH and USDT
and the ETH-USDT market (an admin made with ``functions.admin.bootstrap``), signs up and logs
in ``--users`` traders and credits each with ETH and USDT (admin deposits).

A round trip is ``POST /v1/orders`` -> the orders function (JWT, rate limits, checks against
the market) -> Pub/Sub (the user as ordering key) -> the matcher (engine, Postgres commit,
Redis market data) -> the reply in Redis -> ``201`` with the order. Orders are limit orders of
random traders on both sides: most rest near the middle of the book, the rest cross it and
trade. Depth is ``GET /v1/markets/ETH-USDT/depth`` on the book those orders built.

Load is open loop: at ``rate`` requests a second, request ``i`` is due at ``start + i/rate``,
and a pool of client threads (``RawClient``: keep-alive sockets, each request encoded before the
step) sends each when due. Latency counts from when a request was due, so a server (or client
pool) that falls behind shows it. A rate is sustained when, over the whole window, p99 is at
most ``--p99-ms`` (250), at most 1 % of requests fail (anything but the expected status) and
every request was answered. Short probe steps (``--probe`` s) climb by x1.5 to find the knee;
full windows (``--window`` s, 60) then confirm it and try one step either side. The highest
rate that held for a full window is reported, with its p50/p99.

Every step also reads the CPU time each process kind used over it (``bench.cpu``'s
accounting: the gateway is "functions", this process, the load client, is "client") and prints
it per answered request: the client's own cost is reported with the server's, never hidden.

Usage: ``python -m bench.api [--window 60] [--quick] [--users 100] [--only place|depth]``;
``--quick`` is 10 s windows. Everything runs on this machine: client, gateway, matcher and
services share its cores, so the figures are for the whole local exchange, not one piece of
it. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import math
import os
import random
import secrets
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from google.cloud import firestore

from api.auth import new_secrets_document
from functions.admin.bootstrap import make_admin
from infra.ports import free_port
from infra.processes import REPO_ROOT, Child, http_status, wait_until
from infra.services import Stack, StackConfig
from migrations.migrate import migrate
from shared.config import PostgresConfig, PubSubConfig
from shared.db import connect
from shared.pubsub import ensure_topics

MARKET: Final = "ETH-USDT"
HOST: Final = "127.0.0.1"
MATCHER_ARGS: Final = ["-m", "matcher_service"]
PASSWORD: Final = "bench password 1"
MID_CENTS: Final = 200_000
"""The middle of the book: 2000.00 USDT, in ticks of 0.01."""
ETH_FUNDS: Final = "100000"
USDT_FUNDS: Final = "500000000"
FAIL_SHARE: Final = 0.01
"""At most this share of a step's requests may fail for the rate to count as sustained."""

log = logging.getLogger("bench.api")
Request = tuple[str, str, bytes | None, dict[str, str]]
"""method, path, body, headers."""


# ---------------------------------------------------------------- HTTP client


class Client:
    """One keep-alive HTTP/1.1 connection to the gateway (one per client thread), for requests
    made as they come (``RawClient`` underneath)."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self._raw = RawClient(port, timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None
        = None
    ) -> tuple[int, bytes]:  # fmt: skip
        return self._raw.request(RawClient.encode(self.port, (method, path, body, headers or {})))

    def json(
        self, method: str, path: str, body: Any = None, token: str | None = None,
        expect: int = 200,
    ) -> Any:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        raw = None if body is None else orjson.dumps(body)
        status, data = self.request(method, path, raw, headers)
        if status != expect:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return orjson.loads(data) if data else None

    def close(self) -> None:
        self._raw.close()


class RawClient:
    """The load client's connection: one keep-alive HTTP/1.1 connection on a plain socket,
    sending requests encoded ahead (``encode``) and reading just the status and the body.

    ``http.client`` costs ~0.15-0.25 ms of CPU per request here (its header parsing goes
    through the email package); at thousands of requests a second that is a good part of one
    of the machine's two cores, taken from the server under test. This one reads the status
    line, ``Content-Length`` (or a chunked body) and ``Connection: close``, nothing else."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    @staticmethod
    def encode(port: int, request: Request) -> bytes:
        method, path, body, headers = request
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def request(self, raw: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            reused = self._sock is not None
            if self._sock is None:
                self._sock = socket.create_connection((HOST, self.port), self.timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._buf = b""
            try:
                self._sock.sendall(raw)
                return self._response()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection before reading this request:
                # once, on a fresh connection (nothing was processed).
                self.close()
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _recv(self) -> bytes:
        assert self._sock is not None
        data = self._sock.recv(65536)
        if not data:
            raise http.client.RemoteDisconnected("the server closed the connection")
        return data

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._buf += self._recv()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _line(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            self._buf += self._recv()
        line, self._buf = self._buf[:end], self._buf[end + 2 :]
        return line

    def _response(self) -> tuple[int, bytes]:
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            self._buf += self._recv()
        head, self._buf = self._buf[:end], self._buf[end + 4 :]
        status_line, _, fields = head.partition(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = None, False, False
        for field_line in fields.lower().split(b"\r\n"):
            name, _, value = field_line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = b"close" in value
        if chunked:
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._take(2)
            while self._line():  # trailers, then the empty line
                pass
            body = b"".join(parts)
        elif length is not None:
            body = self._take(length)
        else:  # delimited by the end of the connection
            close = True
            with contextlib.suppress(http.client.RemoteDisconnected):
                while True:
                    self._buf += self._recv()
            body, self._buf = self._buf, b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf = b""


# ---------------------------------------------------------------- fixed-rate load


@dataclass
class Step:
    kind: str
    rate: float
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    """Per answered request, from when it was due to when its answer was read."""
    failures: int = 0
    unanswered: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    p99_limit_ms: float = 250.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds each process kind used over the step (``bench.cpu.cpu_by_kind``; "client"
    is this process, the load client): filled in by ``measured``."""

    def cpu_ms_per_request(self, kind: str) -> float:
        return 1000 * self.cpu_s.get(kind, 0.0) / max(1, self.answered)

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return math.inf
        s = sorted(self.latencies_ms)
        return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]

    @property
    def achieved(self) -> float:
        return (self.answered - self.failures) / self.seconds

    @property
    def sustained(self) -> bool:
        return (
            self.sent > 0
            and self.unanswered == 0
            and self.failures <= FAIL_SHARE * self.sent
            and self.pct(0.99) <= self.p99_limit_ms
        )


def run_step(
    port: int,
    kind: str,
    rate: float,
    seconds: float,
    make: Callable[[int], Request],
    expect: int,
    threads: int,
    p99_limit_ms: float,
) -> Step:
    """``rate`` requests a second for ``seconds``: request ``i`` due at ``start + i/rate``."""
    total = max(1, round(rate * seconds))
    step = Step(kind, rate, seconds, p99_limit_ms=p99_limit_ms)
    # Built and encoded ahead: no client work on the clock.
    requests = [RawClient.encode(port, make(i)) for i in range(total)]
    lock = threading.Lock()
    next_index = [0]
    start = time.perf_counter() + 0.2
    deadline = start + seconds + 15.0  # answers later than this count as unanswered

    def worker() -> None:
        client = RawClient(port, timeout=15.0)
        try:
            while True:
                with lock:
                    i = next_index[0]
                    if i >= total:
                        return
                    next_index[0] = i + 1
                due = start + i / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                if time.perf_counter() > deadline:
                    with lock:
                        step.unanswered += 1
                    continue
                try:
                    status, _ = client.request(requests[i])
                except (OSError, ValueError, http.client.HTTPException):
                    status = 0
                    client.close()
                done = time.perf_counter()
                with lock:
                    step.sent += 1
                    step.statuses[status] = step.statuses.get(status, 0) + 1
                    if status == 0:
                        step.unanswered += 1
                        continue
                    step.latencies_ms.append((done - due) * 1000)
                    if status != expect:
                        step.failures += 1
        finally:
            client.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return step


def measured(run: Callable[[], Step]) -> Step:
    """``run()`` with the CPU time every process of the benchmark used over it in its
    ``cpu_s``: the load client's own (this process) is reported with the server's, not hidden."""
    from bench.cpu import cpu_by_kind  # bench.cpu builds on this module

    root = os.getpid()
    before = cpu_by_kind(root)
    step = run()
    after = cpu_by_kind(root)
    step.cpu_s = {k: max(0.0, v - before.get(k, 0.0)) for k, v in after.items()}
    return step


def find_max_rate(
    label: str,
    run: Callable[[float, float], Step],
    start_rate: float,
    probe_s: float,
    window_s: float,
    max_rate: float,
    steps: list[Step],
) -> Step | None:
    """The highest rate sustained for a full window (None if not even the lowest was).

    Probes of ``probe_s`` climb by x1.5 from ``start_rate`` to the first that fails; the last
    passing probe rate is then run for ``window_s``: if it holds, one step 15 % higher is
    tried, else lower ones (x0.8) until one holds (two at most): three windows at most."""

    def do(rate: float, seconds: float) -> Step:
        step = measured(lambda: run(rate, seconds))
        steps.append(step)
        print_row(step, "probe" if seconds == probe_s and probe_s != window_s else "window")
        return step

    rate, best_probe = start_rate, 0.0
    while rate <= max_rate:
        if not do(rate, probe_s).sustained:
            break
        best_probe = rate
        rate = round(rate * 1.5)
    if best_probe == 0.0:
        best_probe = start_rate / 2
    first = do(best_probe, window_s)
    if first.sustained:
        higher = do(round(best_probe * 1.15), window_s)
        return higher if higher.sustained else first
    rate = best_probe
    for _ in range(2):
        rate = max(1.0, round(rate * 0.8))
        step = do(rate, window_s)
        if step.sustained:
            return step
    log.warning("%s: no rate held for a full window", label)
    return None


# ---------------------------------------------------------------- the exchange


@dataclass
class Trader:
    user_id: str
    token: str


@contextmanager
def exchange(args: argparse.Namespace, log_dir: Path) -> Iterator[int]:
    """The local stack, the matcher and the gateway; yields the gateway's port."""
    stack = Stack(StackConfig.with_free_ports(pg_fast=False))
    children: list[Child] = []
    try:
        stack.start(["pubsub", "firestore", "postgres", "redis"])
        print(f"local stack up in {stack.start_seconds:.1f}s", flush=True)
        os.environ.update(stack.env())
        db = connect(PostgresConfig.load(), "bench")
        try:
            migrate(db)
        finally:
            db.close()
        ensure_topics(PubSubConfig.load())
        matcher_port, api_port = free_port(), free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "AUTH_KEYS_JSON": orjson.dumps(new_secrets_document()).decode(),
            "CURSOR_KEY": secrets.token_urlsafe(32),
            "PORT": str(matcher_port),
            # One address sends everything, a few users send a lot: lift the limits.
            "AUTH_RATE_PER_IP": "1000000",
            "AUTH_RATE_PER_EMAIL": "1000000",
            "TRADE_RATE_PER_USER": "1000000",
            "TRADE_RATE_PER_IP": "1000000",
            "ACCESS_TOKEN_TTL_S": "3600",
        }
        for name in (
            "AUTH_KEYS_FILE", "AUTH_KEYS_SECRET", "OIDC_ISSUER", "CLOUD_SQL_INSTANCE",
            "CURSOR_KEY_FILE", "CURSOR_KEY_SECRET",
        ):  # fmt: skip
            env.pop(name, None)
        os.environ["AUTH_KEYS_JSON"] = env["AUTH_KEYS_JSON"]
        os.environ["CURSOR_KEY"] = env["CURSOR_KEY"]
        matcher = Child.python(
            "matcher", ["-m", "matcher_service"], log_dir / "matcher.log", env=env
        )
        children.append(matcher)
        gateway_args = [
            "-m", "infra.gateway", "--host", HOST, "--port", str(api_port),
            "--workers", str(args.gateway_workers), "--threads", str(args.gateway_threads),
        ]  # fmt: skip
        gateway = Child.python("gateway", gateway_args, log_dir / "gateway.log", env=env)
        children.append(gateway)
        wait_until(
            lambda: http_status(f"http://{HOST}:{matcher_port}/readyz") == 200,
            90,
            "the matcher",
            matcher,
        )
        wait_until(
            lambda: http_status(f"http://{HOST}:{api_port}/v1/time") == 200,
            90,
            "the gateway",
            gateway,
        )
        yield api_port
    finally:
        for child in reversed(children):
            child.stop(20)
        stack.stop()


def set_up_market(port: int) -> str:
    """ETH, USDT and ETH-USDT through the admin routes; the admin's access token."""
    email = "bench-admin@example.com"
    fs = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    try:
        make_admin(fs, email, PASSWORD)
    finally:
        fs.close()  # type: ignore[no-untyped-call]
    client = Client(port)
    try:
        login = {"email": email, "password": PASSWORD}
        token: str = client.json("POST", "/v1/auth/login", login)["access_token"]
        for asset in ({"asset": "ETH", "precision": 8}, {"asset": "USDT", "precision": 6}):
            client.json("POST", "/v1/admin/assets", asset, token, expect=201)
        market = {
            "base": "ETH", "quote": "USDT", "tick": "0.01", "step": "0.0001",
            "min_amount": "0.0001", "min_notional": "1", "maker_fee": "0.001",
            "taker_fee": "0.002",
        }  # fmt: skip
        client.json("POST", "/v1/admin/markets", market, token, expect=201)
        return token
    finally:
        client.close()


def make_traders(port: int, admin_token: str, n: int, threads: int) -> list[Trader]:
    """``n`` users signed up and logged in through the API, each credited ETH and USDT."""
    local = threading.local()

    def client() -> Client:
        if not hasattr(local, "client"):
            local.client = Client(port)
        c: Client = local.client
        return c

    def one(i: int) -> Trader:
        c = client()
        creds = {"email": f"trader{i}@example.com", "password": PASSWORD}
        user_id: str = c.json("POST", "/v1/auth/signup", creds, expect=201)["user_id"]
        token: str = c.json("POST", "/v1/auth/login", creds)["access_token"]
        for asset, amount in (("ETH", ETH_FUNDS), ("USDT", USDT_FUNDS)):
            deposit = {"user_id": user_id, "asset": asset, "amount": amount,
                       "ref": f"bench-{uuid.uuid4().hex}"}  # fmt: skip
            c.json("POST", "/v1/admin/deposits", deposit, admin_token, expect=201)
        return Trader(user_id, token)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def order_maker(traders: list[Trader], seed: int) -> Callable[[int], Request]:
    """Limit orders of random traders, both sides: 70 % rest within 5 USDT of the middle,
    30 % cross it by up to 5 USDT (they trade, and what is left of them rests)."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def make(_: int) -> Request:
        with lock:
            trader = rng.choice(traders)
            buy = rng.random() < 0.5
            offset = rng.randint(1, 500)  # ticks of 0.01
            crossing = rng.random() < 0.3
            amount = rng.randint(10, 5000)  # 0.001 to 0.5 ETH, in steps of 0.0001
        cents = MID_CENTS + (offset if buy == crossing else -offset)
        body = {
            "market": MARKET, "side": "buy" if buy else "sell", "type": "limit",
            "price": f"{cents // 100}.{cents % 100:02d}", "amount": f"{amount / 10_000:.4f}",
        }  # fmt: skip
        headers = {"Authorization": f"Bearer {trader.token}"}
        return "POST", "/v1/orders", orjson.dumps(body), headers

    return make


def prefill(port: int, traders: list[Trader], n: int, seed: int) -> None:
    """A book to cross and to read: ``n`` orders, 8 at a time, not timed."""
    make = order_maker(traders, seed)
    local = threading.local()

    def one(i: int) -> int:
        if not hasattr(local, "client"):
            local.client = Client(port)
        client: Client = local.client
        method, path, body, headers = make(i)
        status, _ = client.request(method, path, body, headers)
        return status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(n)))
    bad = sum(1 for s in statuses if s != 201)
    if bad:
        raise RuntimeError(f"prefill: {bad} of {n} orders were not placed (201)")


# ---------------------------------------------------------------- report


def print_header() -> None:
    print(
        "\n| request | rate/s | window s | sent | ok/s | failed | p50 ms | p90 ms | p99 ms "
        "| max ms | held | CPU ms/request: client | gateway | redis | all |"
        "\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )


def _ms(value: float) -> str:
    return "-" if math.isinf(value) else f"{value:.1f}"


def print_row(step: Step, phase: str) -> None:
    failed = step.failures + step.unanswered
    held = "yes" if step.sustained else "no"
    print(
        f"| {step.kind} ({phase}) | {step.rate:g} | {step.seconds:g} | {step.sent} "
        f"| {step.achieved:.1f} | {failed} | {_ms(step.pct(0.5))} | {_ms(step.pct(0.9))} "
        f"| {_ms(step.pct(0.99))} | {_ms(step.pct(1.0))} | {held} "
        f"| {step.cpu_ms_per_request('client'):.3f} "
        f"| {step.cpu_ms_per_request('functions'):.3f} "
        f"| {step.cpu_ms_per_request('redis'):.3f} "
        f"| {1000 * sum(step.cpu_s.values()) / max(1, step.answered):.3f} |",
        flush=True,
    )


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="API round trips at fixed rates")
    parser.add_argument("--window", type=float, default=60.0, help="seconds a rate must hold")
    parser.add_argument("--quick", action="store_true", help="10 s windows")
    parser.add_argument("--probe", type=float, default=5.0, help="seconds of a probe step")
    parser.add_argument("--p99-ms", type=float, default=250.0)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--prefill", type=int, default=1000, help="orders placed before")
    parser.add_argument("--threads", type=int, default=64, help="client threads")
    parser.add_argument("--place-start", type=float, default=20.0, help="first rate, per s")
    parser.add_argument("--depth-start", type=float, default=50.0, help="first rate, per s")
    parser.add_argument("--max-rate", type=float, default=5000.0)
    parser.add_argument("--gateway-workers", type=int, default=2)
    parser.add_argument("--gateway-threads", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only", choices=("place", "depth"), default=None, help="climb one kind of request only"
    )
    args = parser.parse_args(argv)
    if args.quick:  # a shorter default; --window given on the command line still wins
        parser.set_defaults(window=10.0)
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, exchange(args, Path(tmp)) as port:
        admin_token = set_up_market(port)
        t = time.perf_counter()
        traders = make_traders(port, admin_token, args.users, threads=8)
        print(f"{len(traders)} traders signed up and funded in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        prefill(port, traders, args.prefill, args.seed)
        print(f"{args.prefill} orders placed before measuring in {time.perf_counter() - t:.1f}s")

        place_make = order_maker(traders, args.seed + 1)
        depth_req: Request = ("GET", f"/v1/markets/{MARKET}/depth", None, {})

        def place(rate: float, seconds: float) -> Step:
            return run_step(
                port, "POST /v1/orders", rate, seconds, place_make, 201, args.threads,
                args.p99_ms,
            )  # fmt: skip

        def depth(rate: float, seconds: float) -> Step:
            return run_step(
                port, "GET depth", rate, seconds, lambda _: depth_req, 200, args.threads,
                args.p99_ms,
            )  # fmt: skip

        print_header()
        best_place = best_depth = None
        if args.only in (None, "place"):
            best_place = find_max_rate(
                "place", place, args.place_start, args.probe, args.window, args.max_rate, steps
            )
        if args.only in (None, "depth"):
            best_depth = find_max_rate(
                "depth", depth, args.depth_start, args.probe, args.window, args.max_rate, steps
            )

    def figures(prefix: str, best: Step | None, unit: str) -> dict[str, Any]:
        if best is None:
            return {f"{prefix}_p50_ms": None, f"{prefix}_p99_ms": None, unit: 0}
        return {
            f"{prefix}_p50_ms": round(best.pct(0.5), 1),
            f"{prefix}_p99_ms": round(best.pct(0.99), 1),
            unit: best.rate,
            # At the rate held: the load client's CPU ("client") next to the server's.
            f"{prefix}_cpu_ms_per_request": {
                k: round(best.cpu_ms_per_request(k), 3) for k in sorted(best.cpu_s)
            },
        }

    out: dict[str, Any] = {
        **figures("place", best_place, "max_sustained_orders_per_s"),
        **figures("depth", best_depth, "max_sustained_depth_per_s"),
        "window_s": args.window,
        "p99_limit_ms": args.p99_ms,
        "users": args.users,
        "gateway": f"gunicorn {args.gateway_workers}x{args.gateway_threads} threads",
        "client_threads": args.threads,
        "seconds": round(time.perf_counter() - t0, 1),
        # Other processes on this 2-core box skew every figure: say how busy it was.
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
