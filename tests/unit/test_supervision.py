"""The restart policy of ``make run``'s children: backoff that doubles up to a cap, a restart
only once the backoff has passed, and a crash loop stopping with the log's tail. Real child
processes; the clock is the test's so that no assertion depends on timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.processes import Child
from infra.supervision import CrashLoopError, RestartPolicy, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _crashing(tmp_path: Path) -> Child:
    code = "print('boom'); raise SystemExit(3)"
    child = Child.python("crasher", ["-c", code], tmp_path / "c.log")
    child.proc.wait(30)
    return child


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_delay_s=0.5, max_delay_s=3.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_restarts_after_the_backoff_and_stops_a_crash_loop(tmp_path: Path) -> None:
    clock = Clock()
    started: list[Child] = []

    def start() -> Child:
        started.append(_crashing(tmp_path))
        return started[-1]

    policy = RestartPolicy(first_delay_s=1.0, max_delay_s=8.0, max_crashes=3, window_s=60.0)
    supervisor = Supervisor("matcher", start, policy, clock)
    child = start()

    assert supervisor.crashed(child) == 1.0
    assert supervisor.restart_if_due() is None  # the backoff has not passed
    clock.now += 1.0
    child = supervisor.restart_if_due() or pytest.fail("not restarted")
    assert supervisor.restart_if_due() is None  # once

    # A crash long after the last ones starts the count again.
    clock.now += 120.0
    assert supervisor.crashed(child) == 1.0
    clock.now += 1.0
    child = supervisor.restart_if_due() or pytest.fail("not restarted")
    assert supervisor.crashed(child) == 2.0
    clock.now += 2.0
    child = supervisor.restart_if_due() or pytest.fail("not restarted")
    with pytest.raises(CrashLoopError, match="crashed 3 times") as raised:
        supervisor.crashed(child)
    assert "boom" in str(raised.value)  # the log's tail
    assert supervisor.restarts == 3
