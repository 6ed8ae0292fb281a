"""Withdrawal review over HTTP, against a real matcher, Postgres, Redis and the emulators: above
the asset's review threshold a withdrawal waits in ``review`` (funds held), the withdrawal
sender does not sign it, an admin approves one (it goes on to the sender) and rejects another
(refunded through the matcher)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from api.second_factor import code_at
from shared.config import SecretSource, WalletConfig
from shared.db import connect
from tests.integration.test_custody_two_factor import enrol
from tests.integration.test_orders_admin import (
    Exchange,
    as_admin,
    bearer,
    deposit,
    error,
    list_market,
    user,
)
from tests.integration.test_wallet_api import (
    CHAIN_ID,
    balances,
    matcher,
    set_rules,
    wallet_ex,
    withdraw,
)
from wallet.assets import load_asset_chains
from wallet.sender import Steps, run_sender

__all__ = ["matcher", "wallet_ex"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def state_of(ex: Exchange, wid: str) -> list[Any]:
    rows = ex.sql(
        "SELECT r.state, r.error, w.state FROM withdrawal_requests r"
        " LEFT JOIN withdrawals w USING (withdrawal_id) WHERE withdrawal_id = :w",
        w=wid,
    )
    return list(rows[0])


def sign_step(ex: Exchange) -> list[str]:
    """One signing step of the withdrawal sender; the ids it signed. Its node is not reachable:
    a withdrawal it tried to sign would fail the run, so an empty answer means none was tried."""
    hot = Account.create()
    cfg = WalletConfig(
        rpc_url="http://127.0.0.1:9", chain_id=CHAIN_ID,
        mnemonic=SecretSource("WALLET_MNEMONIC", value="unused"),
        hot_wallet_key=SecretSource("HOT_WALLET_KEY", value=hot.key.hex()),
        gas_wallet_key=SecretSource("GAS_WALLET_KEY", value=hot.key.hex()),
    )  # fmt: skip
    db = connect(ex.cfg.postgres)
    try:
        report = run_sender(
            db, Web3(Web3.HTTPProvider(cfg.rpc_url)), cfg, load_asset_chains(ex.redis, 3), hot,
            publish=lambda cmd, key: None, verdict=lambda cid: None, now=time.time,
            steps=Steps(sign=True, broadcast=False, follow=False),
        )  # fmt: skip
    finally:
        db.close()
    return report.signed


def test_review_approve_and_reject(wallet_ex: Exchange, matcher: None) -> None:
    ex = wallet_ex
    list_market(ex)
    admin = as_admin(ex)
    resp = set_rules(ex, "USDT", {"withdrawal_fee": "1", "withdrawal_review_threshold": "100"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["chain"]["withdrawal_review_threshold"] == "100"
    alice, token = user(ex, "alice")
    assert deposit(ex, alice, "USDT", "1000").status_code == 201

    small = withdraw(ex, token, "100", asset="USDT")  # at the threshold: no review
    assert small.status_code == 201 and small.get_json()["state"] == "requested"
    big = withdraw(ex, token, "300", asset="USDT")
    assert big.status_code == 201, big.get_json()
    assert big.get_json()["state"] == "review"
    other = withdraw(ex, token, "200", asset="USDT")
    assert other.get_json()["state"] == "review"
    big_id, other_id = big.get_json()["id"], other.get_json()["id"]
    # Held by the matcher all the same: the user cannot spend it meanwhile.
    assert balances(ex, token)["USDT"] == {"available": "397", "frozen": "603"}
    assert state_of(ex, big_id) == ["review", None, "held"]

    # The sender signs none of those in review (only the small one is tried).
    small_id = small.get_json()["id"]
    ex.sql("UPDATE withdrawal_requests SET state = 'failed' WHERE withdrawal_id = :w", w=small_id)
    assert sign_step(ex) == []

    # The admin's queue, oldest first; users cannot see it.
    queue = ex.client.get("/v1/admin/withdrawals", headers=bearer(admin)).get_json()
    assert [(w["id"], w["amount"], w["held"]) for w in queue["withdrawals"]] == [
        (big_id, "300", True), (other_id, "200", True),
    ]  # fmt: skip
    resp = ex.client.get("/v1/admin/withdrawals", headers=bearer(token))
    assert (resp.status_code, error(resp)) == (403, "forbidden")
    resp = ex.client.post(f"/v1/admin/withdrawals/{big_id}/approve", headers=bearer(token))
    assert (resp.status_code, error(resp)) == (403, "forbidden")

    # Approved: it goes on to the sender as any other request.
    resp = ex.client.post(f"/v1/admin/withdrawals/{big_id}/approve", headers=bearer(admin))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["state"] == "requested" and resp.get_json()["reviewed_by"]
    assert state_of(ex, big_id) == ["requested", None, "held"]
    again = ex.client.post(f"/v1/admin/withdrawals/{big_id}/reject", headers=bearer(admin))
    assert (again.status_code, error(again)) == (409, "not_in_review")

    # Rejected: refunded through the matcher, amount and fee.
    resp = ex.client.post(f"/v1/admin/withdrawals/{other_id}/reject", headers=bearer(admin))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["state"] == "refunded", resp.get_json()
    assert state_of(ex, other_id) == ["refunded", "rejected_in_review", "refunded"]
    assert balances(ex, token)["USDT"] == {"available": "598", "frozen": "402"}
    mine = ex.client.get(f"/v1/withdrawals/{other_id}", headers=bearer(token)).get_json()
    assert (mine["state"], mine["error"]) == ("refunded", "rejected_in_review")
    resp = ex.client.post(f"/v1/admin/withdrawals/{other_id}/approve", headers=bearer(admin))
    assert (resp.status_code, error(resp)) == (409, "not_in_review")
    resp = ex.client.post("/v1/admin/withdrawals/wd_nope/approve", headers=bearer(admin))
    assert (resp.status_code, error(resp)) == (404, "withdrawal_not_found")

    report = ex.client.get("/v1/admin/audit", headers=bearer(admin)).get_json()
    assert report["ok"] is True, report


def test_an_admin_with_two_factor_reviews_with_a_code(wallet_ex: Exchange, matcher: None) -> None:
    ex = wallet_ex
    list_market(ex)
    admin = as_admin(ex)
    admin_id = ex.client.get("/v1/auth/me", headers=bearer(admin)).get_json()["user_id"]
    secret, _ = enrol(ex, admin_id, admin)
    set_rules_resp = ex.client.patch(
        "/v1/admin/assets/USDT/chain", json={"withdrawal_review_threshold": "10"},
        headers=bearer(admin),
    )  # fmt: skip
    assert set_rules_resp.status_code == 200
    alice, token = user(ex, "alice")
    assert deposit(ex, alice, "USDT", "100").status_code == 201
    wid = withdraw(ex, token, "50", asset="USDT").get_json()["id"]

    resp = ex.client.post(f"/v1/admin/withdrawals/{wid}/approve", headers=bearer(admin))
    assert (resp.status_code, error(resp)) == (401, "totp_required")
    resp = ex.client.post(
        f"/v1/admin/withdrawals/{wid}/approve", json={"totp_code": code_at(secret, time.time())},
        headers=bearer(admin),
    )  # fmt: skip
    assert resp.status_code == 200, resp.get_json()
