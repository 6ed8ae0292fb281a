"""``make run`` heals as Cloud Run does: the matcher killed outright (``kill -9``) is started
again by the launcher, which logs it as a JSON line, and the exchange keeps taking orders and
applying them, without a restart of the whole exchange. Its audits run by themselves."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from infra.supervision import RESTART_EVENT_CRASHED
from tests.integration.test_run_restart import PASSWORD, fates, login, make_run, workdir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

__all__ = ["workdir"]  # the fixture, shared with the restart test


def _restart_lines(output: list[str]) -> list[dict[str, object]]:
    found = []
    for line in output:
        if line.startswith("{") and RESTART_EVENT_CRASHED in line:
            found.append(json.loads(line))
    return found


def test_a_killed_matcher_comes_back_and_keeps_serving_orders(workdir: Path) -> None:
    with make_run(workdir, stop="int") as run:
        api = run.api
        admin_password = json.loads((workdir / ".state" / "admin.json").read_text())["password"]
        admin = login(api, "admin@local.test", admin_password)
        email = "heal@example.com"
        user_id = api.ok(
            "POST", "/v1/auth/signup", {"email": email, "password": PASSWORD}, None, 201
        )["user_id"]
        token = login(api, email)
        api.call(
            "POST", "/v1/admin/deposits",
            {"user_id": user_id, "asset": "USDT", "amount": "1000", "ref": "heal-usdt"}, admin,
        )  # fmt: skip

        first = run.child("matcher_service")
        os.kill(first, signal.SIGKILL)

        deadline = time.monotonic() + 120
        second = None
        while time.monotonic() < deadline:
            try:
                pid = run.child("matcher_service")
            except AssertionError:
                pid = None
            if pid is not None and pid != first:
                second = pid
                break
            time.sleep(0.2)
        assert second is not None, "\n".join(run.output[-40:])
        assert run.proc.poll() is None, "the exchange stopped instead of healing"

        # Served again: an order placed after the kill is applied by the new matcher.
        body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "1000",
                "amount": "0.1"}  # fmt: skip
        status, doc = api.call("POST", "/v1/orders", body, token)
        assert status == 202, (status, doc)  # make_run: the API answers at once
        seen = fates(api, {email: token}, {doc["command_id"]: email})
        assert seen == {"applied": 1}, seen

        # The audits ran by themselves (the local scheduler), stored, and found nothing.
        kinds: set[str] = set()
        deadline = time.monotonic() + 90
        while kinds != {"books", "chain"} and time.monotonic() < deadline:
            runs = api.ok("GET", "/v1/admin/audits", token=admin)["audits"]
            kinds = {r["kind"] for r in runs}
            time.sleep(1)
        assert kinds == {"books", "chain"}, run.output[-40:]
        assert all(r["ok"] for r in runs), runs

        crashed = _restart_lines(run.output)
        assert crashed, run.output[-40:]
        assert crashed[0]["component"] == "matcher"
        assert crashed[0]["severity"] == "WARNING"
