"""``make run`` stopped and started again under load loses no command it answered 202 for
(docs/decisions/0008): once stopped as Ctrl-C stops it, once killed outright, every process
of it at once (``kill -9``: the Pub/Sub emulator forgets its messages either way).

The API is told to answer at once (``API_REPLY_WAIT_S=0``), so every order is a 202 and many
are still queued when the exchange stops. After each restart every one of them must be
``applied`` or ``rejected`` (``GET /v1/commands/{id}``): never 404, never ``lost``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from infra.ports import free_port
from infra.processes import REPO_ROOT, proc_alive, process_tree
from tests.integration.http_client import HttpClient
from tests.integration.test_readme import clean_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PASSWORD = "a long test password"
USERS = 4


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory Postgres (the postgres user, when we are root) can reach."""
    path = Path(tempfile.mkdtemp(prefix="run-restart-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Run:
    def __init__(self, proc: subprocess.Popen[bytes], api: HttpClient) -> None:
        self.proc = proc
        self.api = api
        self.output: list[str] = []

    def child(self, module: str) -> int:
        """The pid of the child process running ``python -m module``."""
        for pid, _ in process_tree(self.proc.pid):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if module.encode() in args and b"-m" in args:
                return pid
        raise AssertionError(f"no {module} process")


@contextmanager
def make_run(workdir: Path, stop: str) -> Iterator[Run]:
    """``python -m infra.run`` on free ports with ``workdir/.state``; at the end stopped with
    SIGINT (``stop="int"``, Ctrl-C) or every process of it killed at once (``"kill"``)."""
    api_port = free_port()
    cmd = [
        sys.executable, "-m", "infra.run", "--free-ports", "--api-port", str(api_port),
        "--state-dir", str(workdir / ".state"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=clean_env(PYTHONPATH=str(REPO_ROOT), API_REPLY_WAIT_S="0"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    run = Run(proc, HttpClient(f"http://127.0.0.1:{api_port}"))
    up = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            run.output.append(line)
            if "The local exchange is up" in line:
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    while not up.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("infra.run did not come up:\n" + "\n".join(run.output[-60:]))
    try:
        yield run
    finally:
        every = process_tree(proc.pid)
        if stop == "kill":
            for pid, _ in every:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(10)
        else:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(120) == 0, "\n".join(run.output[-40:])
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
        deadline = time.monotonic() + 15
        while (left := [p for p in every if proc_alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"processes left behind: {left}"


class Load:
    """A thread per user placing small limit orders around 2000, back to back; ``accepted``
    holds the command id (and the user's email) of every order answered 202."""

    def __init__(self, api: HttpClient, tokens: dict[str, str]) -> None:
        self.api = api
        self.accepted: dict[str, str] = {}
        self.other: dict[int, int] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i, email, token), daemon=True)
            for i, (email, token) in enumerate(tokens.items())
        ]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(40)

    def _run(self, i: int, email: str, token: str) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            side = "buy" if (n + i) % 2 else "sell"
            body = {"market": "ETH-USDT", "side": side, "type": "limit",
                    "price": str(1995 + (n * 7 + i) % 11), "amount": "0.01"}  # fmt: skip
            try:
                status, doc = self.api.call("POST", "/v1/orders", body, token)
            except OSError:  # the exchange is going away: not accepted
                status, doc = 0, None
            if status == 202:
                self.accepted[doc["command_id"]] = email
            else:
                self.other[status] = self.other.get(status, 0) + 1
            time.sleep(0.02)


def login(api: HttpClient, email: str, password: str = PASSWORD) -> str:
    tokens = api.ok("POST", "/v1/auth/login", {"email": email, "password": password})
    token: str = tokens["access_token"]
    return token


def fates(api: HttpClient, tokens: dict[str, str], owners: dict[str, str]) -> dict[str, int]:
    """What ``GET /v1/commands/{id}`` says of each accepted command once none is pending."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 90
    left = dict(owners)
    while left and time.monotonic() < deadline:
        for command_id, user in list(left.items()):
            status, doc = api.call("GET", f"/v1/commands/{command_id}", token=tokens[user])
            fate = "pending" if status == 202 else (doc or {}).get("status", str(status))
            assert status in (200, 202), (command_id, status, doc)
            if fate != "pending":
                seen[fate] = seen.get(fate, 0) + 1
                del left[command_id]
        if left:
            time.sleep(0.5)
    assert not left, f"{len(left)} accepted commands still pending"
    return seen


def test_make_run_stopped_or_killed_under_load_keeps_every_accepted_command(
    workdir: Path,
) -> None:
    emails = [f"trader{i}@example.com" for i in range(USERS)]
    report: dict[str, Any] = {}

    # 1. Users with money, a load, and Ctrl-C while it runs.
    with make_run(workdir, stop="int") as run:
        api = run.api
        admin_password = json.loads((workdir / ".state" / "admin.json").read_text())["password"]
        admin = login(api, "admin@local.test", admin_password)
        tokens = {}
        for email in emails:
            user_id = api.ok(
                "POST", "/v1/auth/signup", {"email": email, "password": PASSWORD}, None, 201
            )["user_id"]
            tokens[email] = login(api, email)
            for asset, amount in (("ETH", "100"), ("USDT", "500000")):
                api.call(
                    "POST", "/v1/admin/deposits",
                    {"user_id": user_id, "asset": asset, "amount": amount,
                     "ref": f"{email}-{asset}"},
                    admin,
                )  # fmt: skip
        first = Load(api, tokens).start()
        time.sleep(6)
    first.stop()
    report["stopped"] = {"accepted": len(first.accepted), "other": first.other}
    report["stopped"]["left_for_next_run"] = [
        line for line in run.output if "not applied yet" in line
    ]

    # 2. Every order of the first run applied; a load again, and every process killed.
    with make_run(workdir, stop="kill") as run:
        api = run.api
        tokens = {email: login(api, email) for email in emails}
        report["stopped"]["fates"] = fates(api, tokens, first.accepted)
        second = Load(api, tokens).start()
        time.sleep(4)
        # The matcher falls behind (stopped for a while), so that the kill finds accepted
        # commands it has not applied: the emulator forgets them, the outbox does not.
        matcher = run.child("matcher_service")
        os.kill(matcher, signal.SIGSTOP)
        time.sleep(2)
    second.stop()
    report["killed"] = {"accepted": len(second.accepted), "other": second.other}

    # 3. Every order of the second run applied too.
    with make_run(workdir, stop="int") as run:
        api = run.api
        tokens = {email: login(api, email) for email in emails}
        report["killed"]["fates"] = fates(api, tokens, second.accepted)
        again = [line for line in run.output if "outbox: published again" in line]
        report["killed"]["published_again"] = again
    print("restart report", json.dumps(report))
    for phase in ("stopped", "killed"):
        assert report[phase]["accepted"] > 50, report
        assert set(report[phase]["fates"]) <= {"applied", "rejected"}, report
    assert again, "the kill left accepted commands for the next run to publish again"
