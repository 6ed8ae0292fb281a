"""The withdrawal address allow-list over HTTP, against the Firestore emulator, Redis,
Postgres and a real matcher: saving an address needs a signed-in person with a fresh proof
(and the second factor when on), an allow-listed address is refused before its waiting time
and accepted after it, switching the allow-list off waits as long."""

from __future__ import annotations

import time
from typing import Any

import pytest

from api.second_factor import code_at
from tests.integration.test_custody_two_factor import enrol, window_passed
from tests.integration.test_orders_admin import (
    PASSWORD,
    Exchange,
    bearer,
    deposit,
    error,
    list_market,
    user,
)
from tests.integration.test_wallet_api import (
    TO,
    api_key,
    matcher,
    signed,
    wallet_ex,
    withdraw,
)

__all__ = ["matcher", "wallet_ex"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def addresses(ex: Exchange, token: str) -> dict[str, Any]:
    resp = ex.client.get("/v1/withdrawal-addresses", headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def test_allow_listed_address_before_and_after_its_delay(
    wallet_ex: Exchange, matcher: None
) -> None:
    ex = wallet_ex
    ex.configure(WITHDRAWAL_ADDRESS_DELAY_S="3600")
    list_market(ex)
    alice, token = user(ex, "alice")
    assert deposit(ex, alice, "USDT", "1000").status_code == 201
    assert addresses(ex, token) == {
        "allow_list": {"on": False, "off_from": None, "enforced": False},
        "addresses": [],
    }

    # Turned on: only saved addresses, and none is saved yet.
    resp = ex.client.put("/v1/withdrawal-allow-list", json={"on": True}, headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    resp = withdraw(ex, token, "10", asset="USDT")
    assert (resp.status_code, error(resp)) == (403, "address_not_saved")
    # An API key (even a withdraw key) cannot save an address, nor get around the list.
    key = api_key(ex, token, ["withdraw", "read"])
    resp = signed(ex, key, "POST", "/v1/withdrawal-addresses", {"address": TO})
    assert (resp.status_code, error(resp)) == (403, "session_required")
    resp = signed(ex, key, "POST", "/v1/withdrawals", {"asset": "USDT", "amount": "10",
                                                        "address": TO})  # fmt: skip
    assert (resp.status_code, error(resp)) == (403, "address_not_saved")

    # Saved: listed with its waiting time, refused until then.
    resp = ex.client.post(
        "/v1/withdrawal-addresses", json={"address": TO.lower(), "label": "cold"},
        headers=bearer(token),
    )  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    saved = resp.get_json()
    assert (saved["address"], saved["label"], saved["usable"]) == (TO, "cold", False)
    again = ex.client.post("/v1/withdrawal-addresses", json={"address": TO}, headers=bearer(token))
    assert (again.status_code, error(again)) == (409, "address_saved")
    resp = withdraw(ex, token, "10", asset="USDT")
    assert (resp.status_code, error(resp)) == (403, "address_not_yet_usable")
    assert ex.sql("SELECT count(*) FROM withdrawal_requests") == [[0]]

    # With a short delay, an address saved now is usable once it has passed.
    ex.configure(WITHDRAWAL_ADDRESS_DELAY_S="1")
    resp = ex.client.post(
        "/v1/withdrawal-addresses", json={"address": OTHER}, headers=bearer(token)
    )
    assert resp.status_code == 201, resp.get_json()
    time.sleep(1.1)
    listed = addresses(ex, token)["addresses"]
    assert [(a["address"], a["usable"]) for a in listed] == [(TO, False), (OTHER, True)]
    resp = withdraw(ex, token, "10", address=OTHER, asset="USDT")
    assert resp.status_code == 201, resp.get_json()
    resp = withdraw(ex, token, "10", asset="USDT")  # TO still waits (its own delay)
    assert (resp.status_code, error(resp)) == (403, "address_not_yet_usable")

    # Removed: refused again.
    resp = ex.client.delete(f"/v1/withdrawal-addresses/{OTHER}", headers=bearer(token))
    assert resp.status_code == 204
    resp = withdraw(ex, token, "10", address=OTHER, asset="USDT")
    assert (resp.status_code, error(resp)) == (403, "address_not_saved")
    resp = ex.client.delete(f"/v1/withdrawal-addresses/{OTHER}", headers=bearer(token))
    assert (resp.status_code, error(resp)) == (404, "address_not_found")

    # Switching off waits as long as a new address would.
    ex.configure(WITHDRAWAL_ADDRESS_DELAY_S="3600")
    resp = ex.client.put("/v1/withdrawal-allow-list", json={"on": False}, headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["enforced"] is True and resp.get_json()["off_from"]
    resp = withdraw(ex, token, "10", address=OTHER, asset="USDT")
    assert (resp.status_code, error(resp)) == (403, "address_not_saved")
    assert ex.sql("SELECT count(*) FROM withdrawal_requests") == [[1]]


def test_saving_an_address_needs_fresh_proof_and_second_factor(wallet_ex: Exchange) -> None:
    ex = wallet_ex
    alice, token = user(ex, "alice")
    secret, _ = enrol(ex, alice, token)
    resp = ex.client.post("/v1/withdrawal-addresses", json={"address": TO}, headers=bearer(token))
    assert (resp.status_code, error(resp)) == (401, "totp_required")
    resp = ex.client.post(
        "/v1/withdrawal-addresses", json={"address": TO, "totp_code": code_at(secret, time.time())},
        headers=bearer(token),
    )  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    window_passed(ex, alice)

    ex.configure(FRESH_AUTH_MAX_AGE_S="1")
    time.sleep(1.1)
    resp = ex.client.post(
        "/v1/withdrawal-addresses",
        json={"address": OTHER, "totp_code": code_at(secret, time.time())},
        headers=bearer(token),
    )
    assert (resp.status_code, error(resp)) == (401, "fresh_auth_required")
    resp = ex.client.post(
        "/v1/auth/reauth", json={"password": PASSWORD, "totp_code": code_at(secret, time.time())},
        headers=bearer(token),
    )  # fmt: skip
    assert resp.status_code == 200, resp.get_json()
    window_passed(ex, alice)
    fresh = resp.get_json()["access_token"]
    ex.configure(FRESH_AUTH_MAX_AGE_S="300")  # the slow password check may outlast 1 s
    resp = ex.client.post(
        "/v1/withdrawal-addresses",
        json={"address": OTHER, "totp_code": code_at(secret, time.time())},
        headers=bearer(fresh),
    )
    assert resp.status_code == 201, resp.get_json()
