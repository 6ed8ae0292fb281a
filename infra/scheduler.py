"""The local stand-in for Cloud Scheduler: runs the wallet's jobs (deposit watcher, sweep,
withdrawal sender) every few seconds, in this process, as the cloud's jobs call the functions.

    python -m infra.scheduler [--every 2] [--once]

It needs the wallet's environment (``make run`` passes it; see infra/devchain.py). A failing
run is logged and retried at the next tick; SIGTERM stops it between runs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from shared import logs
from wallet.jobs import run_job, send_once, sweep_once, watch_once

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
    parser.add_argument("--once", action="store_true", help="one run of each job, then exit")
    args = parser.parse_args(argv)
    logs.setup()
    if args.once:
        return 1 if tick() else 0
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("scheduler up", extra={"every_s": args.every, "jobs": [n for n, _ in JOBS]})
    while not stop.is_set():
        tick()
        stop.wait(args.every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
