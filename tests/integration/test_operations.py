"""What operators read: the audits' stored results (run as the schedule runs them, and on
request), an alert on a difference, and the append-only log of admin actions, through the
admin function on the local gateway against a real matcher, Postgres and the emulators."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from functions_framework import create_app

from infra.processes import REPO_ROOT
from shared import alerts, audit_runs
from tests.integration.test_orders_admin import (
    Exchange,
    admin_post,
    as_admin,
    bearer,
    deposit,
    error,
    exchange,
    list_market,
    matcher,
    user,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

__all__ = ["exchange", "matcher"]  # the fixtures


def _get(ex: Exchange, path: str, token: str) -> Any:
    resp = ex.client.get(path, headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_every_admin_action_is_logged_and_the_log_cannot_be_changed(
    exchange: Exchange, matcher: None
) -> None:
    ex = exchange
    list_market(ex)
    alice, alice_token = user(ex, "alice")
    assert deposit(ex, alice, "USDT", "10").status_code == 201
    admin = as_admin(ex)
    _get(ex, "/v1/admin/audit", admin)  # a read is not an action

    actions = _get(ex, "/v1/admin/actions", admin)["actions"]
    assert [a["action"] for a in actions] == [
        "POST /v1/admin/deposits", "POST /v1/admin/markets", "POST /v1/admin/assets",
        "POST /v1/admin/assets",
    ]  # fmt: skip
    newest = actions[0]
    assert newest["details"]["user_id"] == alice and newest["details"]["amount"] == "10"
    assert newest["admin_id"] and newest["client_ip"] and newest["request_id"] and newest["at"]
    page = _get(ex, f"/v1/admin/actions?before={newest['id']}&limit=1", admin)["actions"]
    assert [a["id"] for a in page] == [actions[1]["id"]]

    # Not for users; nothing in the database changes or removes an entry either.
    resp = ex.client.get("/v1/admin/actions", headers=bearer(alice_token))
    assert (resp.status_code, error(resp)) == (403, "forbidden")
    resp = ex.client.get("/v1/admin/actions?limit=0", headers=bearer(admin))
    assert resp.status_code == 400
    for sql in (
        "UPDATE admin_actions SET admin_id = 'someone else'",
        "DELETE FROM admin_actions",
        "TRUNCATE admin_actions",
    ):
        with pytest.raises(Exception, match="append-only"):
            ex.sql(sql)
    assert len(_get(ex, "/v1/admin/actions", admin)["actions"]) == len(actions)


def test_audits_are_stored_and_a_difference_alerts(
    exchange: Exchange, matcher: None, caplog: pytest.LogCaptureFixture
) -> None:
    ex = exchange
    list_market(ex)
    alice, _ = user(ex, "alice")
    assert deposit(ex, alice, "USDT", "100").status_code == 201
    admin = as_admin(ex)

    resp = admin_post(ex, "/v1/admin/audits/books", {})
    assert resp.status_code == 201, resp.get_json()
    first = resp.get_json()
    assert first["kind"] == "books" and first["ok"] is True and first["differences"] == 0
    assert first["report"]["assets"]["USDT"]["deposits"] == "100"

    # A unit appears from nowhere: the scheduled run (what infra/scheduler.py runs) sees it,
    # stores it and raises the alert the log-based metric counts.
    ex.sql("UPDATE balances SET available = available + 1 WHERE user_id = :u", u=alice)
    caplog.set_level(logging.ERROR, logger="audits")
    db = ex.db()
    try:
        report = audit_runs.run_books(db)
    finally:
        db.close()
    assert report["ok"] is False
    raised = [r for r in caplog.records if getattr(r, alerts.ALERT_FIELD, None)]
    assert [getattr(r, alerts.ALERT_FIELD) for r in raised] == [alerts.AUDIT_DIFFERENCE]
    assert raised[0].levelno == logging.ERROR

    runs = _get(ex, "/v1/admin/audits?kind=books", admin)["audits"]
    assert [r["id"] for r in runs] == [report["run_id"], first["id"]]
    assert runs[0]["ok"] is False and runs[0]["differences"] == 1
    assert runs[0]["report"]["mismatches"][0]["kind"] == "conservation"
    assert _get(ex, "/v1/admin/audits?kind=chain", admin)["audits"] == []
    resp = ex.client.get("/v1/admin/audits?kind=other", headers=bearer(admin))
    assert resp.status_code == 400


def test_the_scheduled_audits_function_stores_a_run(exchange: Exchange, matcher: None) -> None:
    """As Cloud Scheduler calls it: functions-framework serving functions/audits/main.py."""
    ex = exchange
    list_market(ex)
    source = str(REPO_ROOT / "functions" / "audits" / "main.py")
    app = create_app(target="audits", source=source)  # type: ignore[no-untyped-call]
    resp = app.test_client().post("/")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    report = resp.get_json()
    assert report["ok"] is True
    runs = _get(ex, "/v1/admin/audits", as_admin(ex))["audits"]
    assert [(r["id"], r["kind"], r["ok"]) for r in runs] == [(report["run_id"], "books", True)]
