"""Restarting a crashed child as Cloud Run restarts a crashed container: after a backoff that
doubles with each crash, until too many crashes in a short window show a crash loop, which
stops the exchange (a restart would only hide it).

``make run`` (infra/run.py) keeps a ``Supervisor`` per restartable child (the matcher, the ws
service, the gateway, the wallet's scheduler). Each restart decision is a structured JSON log
line on stdout (logger ``run.restarts``, field ``event``: ``child_crashed`` or
``crash_loop``), the shape Cloud Logging reads. docs/decisions/0022.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from infra.processes import Child
from shared.logs import JsonFormatter

RESTART_EVENT_CRASHED: Final = "child_crashed"
RESTART_EVENT_LOOP: Final = "crash_loop"


def _json_logger() -> logging.Logger:
    """``run.restarts``: JSON lines on stdout, whatever format the launcher's own log has."""
    logger = logging.getLogger("run.restarts")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return logger


log = _json_logger()


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff ``first_delay_s`` doubling up to ``max_delay_s``; ``max_crashes`` crashes within
    ``window_s`` seconds are a crash loop."""

    first_delay_s: float = 0.5
    max_delay_s: float = 10.0
    max_crashes: int = 5
    window_s: float = 60.0

    def delay(self, crashes_in_window: int) -> float:
        """The wait before the restart that follows the ``crashes_in_window``-th crash."""
        return min(self.max_delay_s, self.first_delay_s * float(2 ** max(0, crashes_in_window - 1)))


class CrashLoopError(RuntimeError):
    """A child crashed too often within the policy's window."""


class Supervisor:
    """One restartable child: ``poll`` notices its exit, waits the backoff without blocking
    the caller, then starts it again with ``start``."""

    def __init__(
        self,
        name: str,
        start: Callable[[], Child],
        policy: RestartPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._start = start
        self.policy = policy
        self._clock = clock
        self.crashes: deque[float] = deque()
        self.restarts = 0
        self.due: float | None = None
        """When the child is down: when it starts again."""

    def crashed(self, child: Child) -> float:
        """Record that ``child`` exited; the backoff before its restart. Raises
        CrashLoopError (with its log's tail) on too many crashes within the window."""
        now = self._clock()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > self.policy.window_s:
            self.crashes.popleft()
        fields = {
            "component": self.name,
            "exit_code": child.returncode,
            "crashes_in_window": len(self.crashes),
            "window_s": self.policy.window_s,
            "log_path": str(child.log_path),
        }
        if len(self.crashes) >= self.policy.max_crashes:
            log.error(
                "%s crashed %d times within %gs: a crash loop, stopping the exchange",
                self.name,
                len(self.crashes),
                self.policy.window_s,
                extra={"event": RESTART_EVENT_LOOP, **fields},
            )
            raise CrashLoopError(
                f"{self.name} crashed {len(self.crashes)} times within "
                f"{self.policy.window_s:g}s (exit code {child.returncode}). "
                f"Last lines of {child.log_path}:\n{child.tail()}"
            )
        delay = self.policy.delay(len(self.crashes))
        self.due = now + delay
        log.warning(
            "%s exited with code %s: restarting in %.1fs",
            self.name,
            child.returncode,
            delay,
            extra={"event": RESTART_EVENT_CRASHED, "restart_in_s": delay, **fields},
        )
        return delay

    def restart_if_due(self) -> Child | None:
        """The child started again once its backoff has passed, else None."""
        if self.due is None or self._clock() < self.due:
            return None
        self.due = None
        self.restarts += 1
        return self._start()
