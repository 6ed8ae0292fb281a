"""The local stand-in for Cloud Scheduler: runs the wallet's jobs (deposit watcher, sweep,
withdrawal sender) every few seconds, in this process, as the cloud's jobs call the functions;
and the audits (the books', the on-chain one with the hot wallet's check) every
``--audit-every`` seconds, their results stored and a difference alerted (shared/audit_runs.py,
wallet/scheduled_audit.py, docs/operations.md).

    python -m infra.scheduler [--every 2] [--audit-every 30] [--once]

It needs the wallet's environment (``make run`` passes it; see infra/devchain.py). A failing
run is logged and retried at the next tick; SIGTERM stops it between runs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from shared import audit_runs, logs
from wallet.jobs import run_job, send_once, sweep_once, watch_once
from wallet.scheduled_audit import chain_audit_once

log = logging.getLogger("scheduler")

JOBS: tuple[tuple[str, Callable[[], dict[str, Any]]], ...] = (
    ("watcher", watch_once),
    ("sweep", sweep_once),
    ("sender", send_once),
)


def tick() -> list[str]:
    """One run of every job; the jobs that failed (logged by ``run_job``, redacted)."""
    return [name for name, job in JOBS if run_job(name, job) is None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.scheduler")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between runs")
    parser.add_argument(
        "--audit-every",
        type=float,
        default=30.0,
        help="seconds between the audits (books, on-chain)",
    )
    parser.add_argument("--once", action="store_true", help="one run of each job, then exit")
    args = parser.parse_args(argv)
    logs.setup()
    if args.once:
        audits = [("audit", audit_runs.run_books_once), ("chain-audit", chain_audit_once)]
        failed = tick() + [name for name, job in audits if run_job(name, job) is None]
        return 1 if failed else 0
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("scheduler up", extra={"every_s": args.every, "jobs": [n for n, _ in JOBS]})
    next_audit = time.monotonic()
    while not stop.is_set():
        tick()
        if time.monotonic() >= next_audit:
            run_job("audit", audit_runs.run_books_once)
            run_job("chain-audit", chain_audit_once)
            next_audit = time.monotonic() + args.audit_every
        stop.wait(args.every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
