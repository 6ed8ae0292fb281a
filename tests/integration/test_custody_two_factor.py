"""Two-factor authentication over HTTP, through the local gateway, against the Firestore
emulator, Redis, Postgres and a real matcher: enrol (otpauth URI, confirm with a code),
recovery codes shown once and stored hashed, login and reauth asking for the code, a
withdrawal and a withdraw-scope API key needing it, codes refused when replayed, and
turning it off with a code."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from werkzeug.test import TestResponse

from api.second_factor import code_at
from tests.integration.test_orders_admin import (
    PASSWORD,
    Exchange,
    bearer,
    deposit,
    error,
    list_market,
    user,
)
from tests.integration.test_wallet_api import TO, fs_doc, matcher, signed, wallet_ex, withdraw

__all__ = ["matcher", "wallet_ex"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ALICE = "alice@example.com"


def login(ex: Exchange, email: str, code: str | None = None) -> TestResponse:
    body: dict[str, Any] = {"email": email, "password": PASSWORD}
    if code is not None:
        body["totp_code"] = code
    return ex.client.post("/v1/auth/login", json=body)


def window_passed(ex: Exchange, user_id: str) -> None:
    """As if the last accepted code's 30-second window were over: the next code is new."""
    ref = ex.firestore.collection("users").document(user_id)
    ref.update({"totp.last_step": -1})


def enrol(ex: Exchange, user_id: str, token: str) -> tuple[str, list[str]]:
    """Two-factor turned on for the user: (secret, recovery codes)."""
    resp = ex.client.post("/v1/auth/2fa/enrol", headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    assert resp.headers["Cache-Control"] == "no-store"
    secret = resp.get_json()["secret"]
    resp = ex.client.post(
        "/v1/auth/2fa/confirm", json={"totp_code": code_at(secret, time.time())},
        headers=bearer(token),
    )  # fmt: skip
    assert resp.status_code == 200, resp.get_json()
    codes: list[str] = resp.get_json()["recovery_codes"]
    window_passed(ex, user_id)
    return secret, codes


def test_enrol_login_withdraw_and_disable(wallet_ex: Exchange, matcher: None) -> None:
    ex = wallet_ex
    list_market(ex)
    alice, token = user(ex, "alice")
    assert deposit(ex, alice, "USDT", "1000").status_code == 201
    me = ex.client.get("/v1/auth/me", headers=bearer(token)).get_json()
    assert me["two_factor"] is False
    state = ex.client.get("/v1/auth/2fa", headers=bearer(token)).get_json()
    assert state == {"enabled": False, "pending": False, "recovery_codes_left": 0}

    # Enrol: a secret and its otpauth URI; nothing is on until a code confirms it.
    resp = ex.client.post("/v1/auth/2fa/enrol", headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    secret = resp.get_json()["secret"]
    uri = urlparse(resp.get_json()["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert parse_qs(uri.query)["secret"] == [secret] and "alice" in uri.path
    assert ex.client.get("/v1/auth/2fa", headers=bearer(token)).get_json()["pending"] is True
    assert login(ex, ALICE).status_code == 200  # not on yet

    wrong = ex.client.post(
        "/v1/auth/2fa/confirm", json={"totp_code": "000000"}, headers=bearer(token)
    )
    if code_at(secret, time.time()) != "000000":
        assert (wrong.status_code, error(wrong)) == (401, "invalid_totp_code")
    resp = ex.client.post(
        "/v1/auth/2fa/confirm", json={"totp_code": code_at(secret, time.time())},
        headers=bearer(token),
    )  # fmt: skip
    assert resp.status_code == 200, resp.get_json()
    codes = resp.get_json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    # Stored hashed (argon2id), never in clear; the secret is no longer pending.
    stored = fs_doc(ex, "users", alice)["totp"]
    assert stored["secret"] == secret and "pending" not in stored
    assert all(h.startswith("$argon2id$") for h in stored["recovery"])
    assert not any(c in str(stored) for c in codes)
    again = ex.client.post("/v1/auth/2fa/enrol", headers=bearer(token))
    assert (again.status_code, error(again)) == (409, "two_factor_enabled")
    window_passed(ex, alice)

    # Login: the password alone answers totp_required (the web page asks for the code).
    resp = login(ex, ALICE)
    assert (resp.status_code, error(resp)) == (401, "totp_required")
    code = code_at(secret, time.time())
    resp = login(ex, ALICE, code)
    assert resp.status_code == 200, resp.get_json()
    token = resp.get_json()["access_token"]
    # The same code again, within its window: refused (replay), and so is an older one.
    resp = login(ex, ALICE, code)
    assert (resp.status_code, error(resp)) == (401, "invalid_totp_code")
    resp = login(ex, ALICE, code_at(secret, time.time() - 30))
    assert (resp.status_code, error(resp)) == (401, "invalid_totp_code")
    assert ex.client.get("/v1/auth/me", headers=bearer(token)).get_json()["two_factor"] is True

    # A withdrawal with a token needs the code too.
    resp = withdraw(ex, token, "10", asset="USDT")
    assert (resp.status_code, error(resp)) == (401, "totp_required")
    assert ex.sql("SELECT count(*) FROM withdrawal_requests") == [[0]]
    window_passed(ex, alice)
    body = {"asset": "USDT", "amount": "10", "address": TO}
    resp = ex.client.post(
        "/v1/withdrawals", json={**body, "totp_code": code_at(secret, time.time())},
        headers=bearer(token),
    )  # fmt: skip
    assert resp.status_code == 201, resp.get_json()

    # A withdraw-scope API key needs it; a read key does not.
    keys = {"label": "bot", "scopes": ["withdraw"]}
    resp = ex.client.post("/v1/api-keys", json=keys, headers=bearer(token))
    assert (resp.status_code, error(resp)) == (401, "totp_required")
    resp = ex.client.post(
        "/v1/api-keys", json={"label": "ro", "scopes": ["read"]}, headers=bearer(token)
    )
    assert resp.status_code == 201, resp.get_json()
    window_passed(ex, alice)
    resp = ex.client.post(
        "/v1/api-keys", json={**keys, "totp_code": code_at(secret, time.time())},
        headers=bearer(token),
    )  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    key = resp.get_json()
    # The key is its own proof: it withdraws without a code.
    resp = signed(ex, key, "POST", "/v1/withdrawals", body)
    assert resp.status_code == 201, resp.get_json()

    # A recovery code stands for one code, once.
    resp = login(ex, ALICE, codes[0].upper())
    assert resp.status_code == 200, resp.get_json()
    resp = login(ex, ALICE, codes[0])
    assert (resp.status_code, error(resp)) == (401, "invalid_totp_code")
    state = ex.client.get("/v1/auth/2fa", headers=bearer(token)).get_json()
    assert state == {"enabled": True, "pending": False, "recovery_codes_left": 9}

    # Reauth is two-factor too.
    resp = ex.client.post("/v1/auth/reauth", json={"password": PASSWORD}, headers=bearer(token))
    assert (resp.status_code, error(resp)) == (401, "totp_required")

    # Turning it off needs a code.
    resp = ex.client.post("/v1/auth/2fa/disable", json={"totp_code": "12"}, headers=bearer(token))
    assert (resp.status_code, error(resp)) == (401, "invalid_totp_code")
    resp = ex.client.post(
        "/v1/auth/2fa/disable", json={"totp_code": codes[1]}, headers=bearer(token)
    )
    assert resp.status_code == 204, resp.get_json()
    assert "totp" not in fs_doc(ex, "users", alice)
    assert login(ex, ALICE).status_code == 200
    assert ex.sql("SELECT count(*) FROM withdrawal_requests WHERE state <> 'rejected'") == [[2]]


def test_wrong_codes_are_limited(wallet_ex: Exchange) -> None:
    """Six digits cannot be guessed: wrong codes count as password failures (429)."""
    ex = wallet_ex
    ex.configure(AUTH_FAILURES_PER_EMAIL_IP="3")
    alice, token = user(ex, "alice")
    secret, _ = enrol(ex, alice, token)
    right = code_at(secret, time.time())
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    statuses = [login(ex, ALICE, wrong).status_code for _ in range(4)]
    assert statuses[:3] == [401, 401, 401] and statuses[3] == 429
