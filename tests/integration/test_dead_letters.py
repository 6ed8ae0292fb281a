"""The dead letters through the admin function (on the local gateway, against a real matcher,
Postgres and the emulators): a command the matcher refuses is listed with its reason and can
only be discarded; a genuine command Pub/Sub gave up on is re-driven once however often it is
asked, applied once even when it comes twice; every decision is in the admin action log. And
a user's live sessions, as an operator sees them, until disabling ends them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]

from shared.messages import Deposit, encode
from shared.producers import parse_keys, signature_attributes
from shared.pubsub import DELIVERY_COUNT_ATTR
from tests.integration.matcher_helpers import wait_for
from tests.integration.test_orders_admin import (
    Exchange,
    admin_post,
    as_admin,
    balance,
    bearer,
    error,
    exchange,
    list_market,
    login,
    matcher,
    user,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

__all__ = ["exchange", "matcher"]  # the fixtures

USDT = 10**6  # USDT's precision in the engine: 6


def letters(ex: Exchange, **query: str) -> list[dict[str, Any]]:
    args = "&".join(f"{k}={v}" for k, v in query.items())
    resp = ex.client.get(f"/v1/admin/dead-letters?{args}", headers=bearer(as_admin(ex)))
    assert resp.status_code == 200, resp.get_json()
    found: list[dict[str, Any]] = resp.get_json()["dead_letters"]
    return found


def letter_of(ex: Exchange, command_id: str) -> dict[str, Any] | None:
    return next((x for x in letters(ex) if x["command_id"] == command_id), None)


def test_dead_letters_are_listed_discarded_and_redriven_once(
    exchange: Exchange, matcher: None
) -> None:
    ex = exchange
    ps = ex.cfg.pubsub
    list_market(ex)
    alice, _ = user(ex, "alice")
    admin_key = parse_keys(Path(os.environ["COMMAND_KEYS_FILE"]).read_text())[0]["admin"]
    raw = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )

    # Unsigned, straight onto the commands topic: the matcher refuses it and says why.
    forged = encode(Deposit(id="forged-1", user=alice, asset="USDT", amount=USDT, ref="f1"))
    commands = raw.topic_path(ps.project, ps.commands_topic)
    raw.publish(commands, forged, ordering_key=alice).result(timeout=30)
    wait_for(lambda: letter_of(ex, "forged-1") is not None, 60, "the refusal dead-lettered")
    refused = letter_of(ex, "forged-1")
    assert refused is not None
    assert (refused["reason"], refused["state"], refused["redrivable"]) == (
        "unsigned", "held", False
    )  # fmt: skip
    assert refused["command_type"] == "deposit" and refused["ordering_key"] == alice
    assert refused["producer"] is None and "not signed" in refused["error"]
    assert '"forged-1"' in refused["preview"]
    resp = admin_post(ex, f"/v1/admin/dead-letters/{refused['id']}/redrive", {})
    assert (resp.status_code, error(resp)) == (409, "not_redrivable")
    resp = admin_post(ex, f"/v1/admin/dead-letters/{refused['id']}/discard", {})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["state"] == "discarded"
    resp = admin_post(ex, f"/v1/admin/dead-letters/{refused['id']}/discard", {})
    assert (resp.status_code, error(resp)) == (409, "not_held")

    # A genuine deposit Pub/Sub gave up on (as its dead-letter policy forwards it), twice.
    genuine = encode(Deposit(id="lost-1", user=alice, asset="USDT", amount=7 * USDT, ref="l1"))
    signed = signature_attributes("admin", admin_key, genuine, alice)
    dead_topic = raw.topic_path(ps.project, ps.dead_letter_topic)
    for _ in range(2):
        raw.publish(
            dead_topic, genuine, ordering_key=alice, **signed, **{DELIVERY_COUNT_ATTR: "5"}
        ).result(timeout=30)
    raw.stop()
    lost = [x for x in letters(ex, state="held") if x["command_id"] == "lost-1"]
    assert len(lost) == 2, lost
    first, second = lost
    assert (first["reason"], first["delivery_count"], first["redrivable"]) == (
        "delivery_attempts", 5, True
    )  # fmt: skip
    assert first["producer"] == "admin"

    # A double click publishes once.
    resp = admin_post(ex, f"/v1/admin/dead-letters/{first['id']}/redrive", {})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["state"] == "redriven" and resp.get_json()["redrive_message_id"]
    again = admin_post(ex, f"/v1/admin/dead-letters/{first['id']}/redrive", {})
    assert (again.status_code, error(again)) == (409, "not_held")
    wait_for(lambda: balance(ex, alice, "USDT") == (7 * USDT, 0), 30, "the deposit applied")

    # The same command once more: the matcher knows its id and applies nothing.
    resp = admin_post(ex, f"/v1/admin/dead-letters/{second['id']}/redrive", {})
    assert resp.status_code == 200, resp.get_json()
    count = ex.sql("SELECT count(*) FROM oplog WHERE command_id = 'lost-1'")[0][0]
    assert count == 1
    assert balance(ex, alice, "USDT") == (7 * USDT, 0)
    assert ex.client.post(
        "/v1/admin/dead-letters/nothing-here/discard", headers=bearer(as_admin(ex))
    ).status_code == 404  # fmt: skip

    # Each decision (the refused ones too) in the admin action log.
    resp = ex.client.get("/v1/admin/actions", headers=bearer(as_admin(ex)))
    logged = [(a["action"], a["target"]) for a in resp.get_json()["actions"]]
    for letter, verb in ((refused, "discard"), (first, "redrive"), (second, "redrive")):
        assert (f"POST /v1/admin/dead-letters/{letter['id']}/{verb}", letter["id"]) in logged


def test_a_users_live_sessions_end_when_disabled(exchange: Exchange) -> None:
    ex = exchange
    alice, first = user(ex, "alice")
    login(ex, "alice@example.com")
    admin = as_admin(ex)

    def live() -> list[str]:
        resp = ex.client.get("/v1/admin/users/alice@example.com/sessions", headers=bearer(admin))
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["user_id"] == alice
        return [s["id"] for s in resp.get_json()["sessions"]]

    assert len(live()) == 2
    resp = ex.client.get("/v1/admin/users/alice@example.com/sessions", headers=bearer(first))
    assert (resp.status_code, error(resp)) == (403, "forbidden")
    resp = ex.client.get("/v1/admin/users/nobody@example.com/sessions", headers=bearer(admin))
    assert (resp.status_code, error(resp)) == (404, "user_not_found")

    resp = admin_post(ex, f"/v1/admin/users/{alice}/disable", {})
    assert resp.status_code == 200, resp.get_json()
    assert live() == []
