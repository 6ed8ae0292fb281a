"""CPU benchmark: CPU time per placed order, per process kind, on the whole local exchange.

Starts the local exchange as ``make run`` does (``infra.run``: Pub/Sub and Firestore
emulators, Postgres with fsync on, Redis, anvil, the gateway on gunicorn, the matcher, the ws
service and the wallet jobs' scheduler) on free ports with a throwaway state dir, the trading
rate limits lifted (they are still checked on every request). Through the API it logs the
admin in, signs up ``--users`` traders and credits each with ETH and USDT (admin deposits),
then places ``--prefill`` orders to build a book (``bench.api``'s client and order mix).

It then reads every process's CPU time (user + system, ``/proc/PID/stat``) for each process
of the exchange (this process's descendants, grouped by kind) before and after:

- an idle window (``--idle`` s, nobody trading): the share of one core each kind uses;
- a window at each fixed rate (``--rates``, 50 and 200 orders/s): open-loop limit orders
  from many users over HTTP (``bench.api.run_step``), and CPU ms per placed order per kind;
- climbing windows (x1.4 from the last fixed rate) while p99 stays within ``--p99-ms`` and
  nothing fails: the highest rate held, with its CPU per order.

The load client (this process) is a kind of its own: it is reported, not hidden. CPU time per
process is meaningful on a machine shared with other work (it counts only what our processes
ran); latency and the highest rate are not (they depend on who else had the cores), which is
why each window also prints the machine's total busy share.

Usage: ``python -m bench.cpu [--quick] [--rates 50,200] [--window 20]``; ``--quick`` is 8 s
windows and fewer users (under two minutes in all); flags given with it still apply. The last
line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.api import Client, Step, make_traders, order_maker, prefill, run_step
from infra.run import Exchange, config_from_args
from infra.run import _parser as run_parser

log = logging.getLogger("bench.cpu")

TICKS: Final = os.sysconf("SC_CLK_TCK")
KINDS: Final = (
    ("functions", ("infra.gateway", "exchange-gateway", "gunicorn")),
    ("matcher", ("matcher_service",)),
    ("pubsub", ("pubsub-emulator", "cloud-pubsub-emulator", "pubsub")),
    ("firestore", ("firestore",)),
    ("postgres", ("postgres",)),
    ("redis", ("redis-server", "redis")),
    ("jobs", ("infra.scheduler",)),
    ("ws", ("ws_service",)),
    ("anvil", ("anvil",)),
)
"""A process's kind: the first whose words appear in its command line (else its parent's)."""
SHOWN: Final = (
    "functions", "matcher", "pubsub", "postgres", "redis", "jobs", "ws", "firestore", "anvil",
    "other", "client",
)  # fmt: skip
LIMITS_LIFTED: Final = {
    "AUTH_RATE_PER_IP": "1000000",
    "AUTH_RATE_PER_EMAIL": "1000000",
    "TRADE_RATE_PER_USER": "1000000",
    "TRADE_RATE_PER_IP": "1000000",
    "ACCESS_TOKEN_TTL_S": "3600",
}
"""One address sends everything and a few users send a lot: the limits are lifted (the
checks still run on every request)."""


# ---------------------------------------------------------------- CPU accounting


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # the process has gone
        return None


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks: user + system) of ``pid``."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _kind_of(cmdline: str) -> str | None:
    for kind, words in KINDS:
        if any(word in cmdline for word in words):
            return kind
    return None


def cpu_by_kind(root: int) -> dict[str, float]:
    """CPU seconds so far of every live process under ``root`` (``root`` itself: "client")."""
    stats: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            got = _stat(int(name))
            if got is not None:
                stats[int(name)] = got
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    totals: dict[str, float] = {}
    stack: list[tuple[int, str]] = [(root, "client")]
    while stack:
        pid, inherited = stack.pop()
        kind = inherited
        if pid != root:
            cmdline = (_read(f"/proc/{pid}/cmdline") or "").replace("\0", " ")
            kind = _kind_of(cmdline) or (inherited if inherited != "client" else "other")
        totals[kind] = totals.get(kind, 0.0) + stats[pid][1] / TICKS
        stack.extend((child, kind) for child in children.get(pid, []))
    return totals


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (``/proc/stat``)."""
    fields = [int(x) for x in (_read("/proc/stat") or "cpu 0 0 0 0").split("\n")[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / TICKS, total / TICKS


@dataclass
class Window:
    label: str
    seconds: float
    cpu_s: dict[str, float]
    """CPU seconds each kind used in the window."""
    machine_busy: float
    """Share of the whole machine's cores busy in the window (anyone's work)."""
    step: Step | None = None

    @property
    def placed(self) -> int:
        return 0 if self.step is None else self.step.statuses.get(201, 0)

    def ms_per_order(self, kind: str) -> float:
        return 1000 * self.cpu_s.get(kind, 0.0) / max(1, self.placed)

    @property
    def server_s(self) -> float:
        return sum(v for k, v in self.cpu_s.items() if k != "client")


def measure(label: str, root: int, run: Callable[[], Step | None], seconds: float) -> Window:
    before, busy0 = cpu_by_kind(root), machine_busy()
    t0 = time.perf_counter()
    step = run()
    elapsed = time.perf_counter() - t0 if step is None else seconds
    after, busy1 = cpu_by_kind(root), machine_busy()
    used = {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in after}
    share = (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1])
    return Window(label, elapsed, used, share, step)


# ---------------------------------------------------------------- report


def print_header() -> None:
    cols = " | ".join(SHOWN)
    print(
        f"\n| window | orders/s | placed | failed | p50 ms | p99 ms | {cols} | server "
        f"| machine busy |\n|{'---|' * (len(SHOWN) + 8)}",
        flush=True,
    )


def print_row(w: Window) -> None:
    if w.step is None:  # idle: % of one core
        cells = [f"{100 * w.cpu_s.get(k, 0.0) / w.seconds:.1f}%" for k in SHOWN]
        server = f"{100 * w.server_s / w.seconds:.1f}%"
        head = f"| {w.label} | 0 | 0 | 0 | - | - |"
    else:
        s = w.step
        cells = [f"{w.ms_per_order(k):.2f}" for k in SHOWN]
        server = f"{1000 * w.server_s / max(1, w.placed):.2f}"
        failed = s.failures + s.unanswered
        head = (
            f"| {w.label} | {s.rate:g} | {w.placed} | {failed} | {s.pct(0.5):.1f} "
            f"| {s.pct(0.99):.1f} |"
        )
    print(f"{head} {' | '.join(cells)} | {server} | {100 * w.machine_busy:.0f}% |", flush=True)


def figures(w: Window) -> dict[str, Any]:
    if w.step is None:
        return {
            "core_pct": {k: round(100 * v / w.seconds, 2) for k, v in w.cpu_s.items()},
            "server_core_pct": round(100 * w.server_s / w.seconds, 2),
            "machine_busy_pct": round(100 * w.machine_busy, 1),
        }
    s = w.step
    return {
        "rate": s.rate,
        "placed": w.placed,
        "failed": s.failures + s.unanswered,
        "p50_ms": round(s.pct(0.5), 1),
        "p99_ms": round(s.pct(0.99), 1),
        "cpu_ms_per_order": {k: round(w.ms_per_order(k), 3) for k in w.cpu_s},
        "server_cpu_ms_per_order": round(1000 * w.server_s / max(1, w.placed), 3),
        "machine_busy_pct": round(100 * w.machine_busy, 1),
    }


# ---------------------------------------------------------------- main


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="CPU per placed order, per process kind")
    parser.add_argument("--quick", action="store_true", help="8 s windows, 30 users")
    parser.add_argument("--rates", default="50,200", help="fixed rates, orders/s")
    parser.add_argument("--window", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of the idle window")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--prefill", type=int, default=500)
    parser.add_argument("--threads", type=int, default=64, help="client threads")
    parser.add_argument("--p99-ms", type=float, default=100.0, help="for the highest rate")
    parser.add_argument("--max-rate", type=float, default=2000.0)
    parser.add_argument("--climb", type=int, default=4, help="windows above the fixed rates")
    parser.add_argument("--gateway-workers", type=int, default=2)
    parser.add_argument("--gateway-threads", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:  # shorter defaults; a flag given on the command line still wins
        parser.set_defaults(window=8.0, idle=8.0, users=30, prefill=200, climb=2)
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    os.environ.update(LIMITS_LIFTED)
    t0 = time.perf_counter()
    root = os.getpid()
    windows: list[Window] = []
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        os.chmod(tmp, 0o755)  # postgres runs as its own user and must enter it
        run_args = run_parser().parse_args(
            [
                "--free-ports", "--state-dir", str(Path(tmp) / "state"),
                "--gateway-workers", str(args.gateway_workers),
                "--gateway-threads", str(args.gateway_threads),
            ]
        )  # fmt: skip
        exchange = Exchange(config_from_args(run_args))
        try:
            exchange.start()
            port = exchange.cfg.api_port
            print(f"local exchange up in {exchange.started_in:.1f}s", flush=True)
            client = Client(port)
            email, password = exchange.admin
            login = {"email": email, "password": password}
            admin_token: str = client.json("POST", "/v1/auth/login", login)["access_token"]
            client.close()
            traders = make_traders(port, admin_token, args.users, threads=8)
            prefill(port, traders, args.prefill, args.seed)
            print(f"{len(traders)} traders, {args.prefill} orders in the book", flush=True)
            make = order_maker(traders, args.seed + 1)

            def place(rate: float) -> Callable[[], Step]:
                return lambda: run_step(
                    port, "POST /v1/orders", rate, args.window, make, 201, args.threads,
                    args.p99_ms,
                )  # fmt: skip

            print_header()
            time.sleep(2.0)  # the prefill's tail drained
            idle = measure("idle", root, lambda: time.sleep(args.idle), args.idle)
            windows.append(idle)
            print_row(idle)
            for rate in rates:
                w = measure(f"{rate:g}/s", root, place(rate), args.window)
                windows.append(w)
                print_row(w)
            # The highest rate held: up by x1.4 from the last fixed rate while it holds, or
            # down by x0.7 until one does.
            best: Window | None = None
            last = windows[-1].step
            rate = last.rate if last is not None else 100.0
            going_up = last is not None and last.sustained
            if going_up:
                best = windows[-1]
            for _ in range(args.climb):
                rate = round(rate * (1.4 if going_up else 0.7))
                if rate > args.max_rate or rate < 1:
                    break
                w = measure(f"{'up' if going_up else 'down'} {rate:g}/s", root, place(rate),
                            args.window)  # fmt: skip
                windows.append(w)
                print_row(w)
                assert w.step is not None
                if w.step.sustained:
                    best = w
                if w.step.sustained != going_up:
                    break
        finally:
            exchange.stop()

    out: dict[str, Any] = {
        "cpu_idle": figures(windows[0]) if windows else None,
        **{
            f"cpu_at_{w.step.rate:g}": figures(w)
            for w in windows
            if w.step is not None and w.step.rate in rates
        },
        "cpu_max_sustained_orders_per_s": None if best is None else best.step.rate,  # type: ignore[union-attr]
        "cpu_at_max": None if best is None else figures(best),
        "cpu_p99_limit_ms": args.p99_ms,
        "cpu_window_s": args.window,
        "cpu_users": args.users,
        "cpu_seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
