"""The wallet function through the local gateway, against a real matcher (in a thread), the
Pub/Sub and Firestore emulators, Postgres and Redis: deposit addresses (deterministic, one per
user and chain, never shared under concurrency), the deposits listing (rows put into
chain_deposits directly: the watcher is tested elsewhere), withdrawal requests with their
checks, daily limit, the matcher's refusal, idempotent retries and scopes, and the admin's
chain rules."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import orjson
import pytest
import redis
from google.cloud import firestore
from werkzeug.test import TestResponse

from api.auth import sign_request
from functions.auth.main import FAMILIES
from infra.gateway import ROUTES, create_app
from shared.config import MatcherConfig
from shared.pubsub import CommandPublisher
from tests.integration.function_env import point_functions_at, reset_functions
from tests.integration.matcher_helpers import running, wait_for
from tests.integration.test_orders_admin import (
    CONTRACT,
    PASSWORD,
    Exchange,
    admin_post,
    as_admin,
    bearer,
    deposit,
    error,
    hget_json,
    list_market,
    user,
)
from wallet.keys import HdWallet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MNEMONIC = "test test test test test test test test test test test junk"
"""anvil's dev mnemonic: deposit address i is anvil's dev account i."""
ANVIL_ACCOUNTS = (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
)
CHAIN_ID = 31337
TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ETH_RULES = {"withdrawal_fee": "0.001", "min_withdrawal": "0.01", "withdrawal_daily_limit": "0.5"}


@pytest.fixture
def wallet_ex(
    firestore_db: firestore.Client,
    matcher_cfg: MatcherConfig,
    redis_db: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Exchange]:
    """Every function behind the gateway (balances come from queries), pointed at this test's
    services, with the anvil dev mnemonic as the deposit wallet."""
    configure = point_functions_at(
        monkeypatch, matcher_cfg,
        WALLET_MNEMONIC=MNEMONIC, CHAIN_ID=str(CHAIN_ID), DEPOSIT_CONFIRMATIONS="3",
    )  # fmt: skip
    client = create_app(list(ROUTES)).test_client()
    yield Exchange(client, matcher_cfg, firestore_db, redis_db, configure)
    reset_functions()


@pytest.fixture
def matcher(wallet_ex: Exchange) -> Iterator[None]:
    with running(wallet_ex.cfg):
        yield


# -------------------------------------------------------------------------------- helpers


def address_of(ex: Exchange, token: str, asset: str = "ETH") -> TestResponse:
    return ex.client.get(f"/v1/deposits/address?asset={asset}", headers=bearer(token))


def withdraw(
    ex: Exchange, token: str, amount: str, address: str = TO, asset: str = "ETH",
    headers: dict[str, str] | None = None,
) -> TestResponse:  # fmt: skip
    return ex.client.post(
        "/v1/withdrawals",
        json={"asset": asset, "amount": amount, "address": address},
        headers={**bearer(token), **(headers or {})},
    )


def api_key(ex: Exchange, token: str, scopes: list[str]) -> dict[str, Any]:
    resp = ex.client.post(
        "/v1/api-keys", json={"label": "bot", "scopes": scopes}, headers=bearer(token)
    )
    assert resp.status_code == 201, resp.get_json()
    key: dict[str, Any] = resp.get_json()
    return key


def signed(
    ex: Exchange, key: dict[str, Any], method: str, path: str, body: Any = None
) -> TestResponse:
    raw = b"" if body is None else orjson.dumps(body)
    path_only, _, query = path.partition("?")
    ts = int(time.time() * 1000)
    headers = {
        "X-API-Key": key["id"],
        "X-API-Timestamp": str(ts),
        "X-API-Signature": sign_request(key["secret"], ts, method, path_only, query.encode(), raw),
    }
    return ex.client.open(
        path, method=method, data=raw, content_type="application/json", headers=headers
    )


def fs_doc(ex: Exchange, collection: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] | None = ex.firestore.collection(collection).document(name).get().to_dict()
    assert doc is not None, (collection, name)
    return doc


def set_rules(ex: Exchange, asset: str, rules: dict[str, Any]) -> TestResponse:
    return ex.client.patch(
        f"/v1/admin/assets/{asset}/chain", json=rules, headers=bearer(as_admin(ex))
    )


def balances(ex: Exchange, token: str) -> dict[str, dict[str, str]]:
    resp = ex.client.get("/v1/balances", headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    out: dict[str, dict[str, str]] = resp.get_json()
    return out


# -------------------------------------------------------------------------------- addresses


def test_deposit_addresses_are_deterministic_and_per_user(
    wallet_ex: Exchange, matcher: None
) -> None:
    ex = wallet_ex
    list_market(ex)
    assert admin_post(ex, "/v1/admin/assets", {"asset": "DAI", "precision": 6}).status_code == 201
    alice, alice_token = user(ex, "alice")
    _, bob_token = user(ex, "bob")

    resp = address_of(ex, alice_token)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    address = body["address"]
    assert body == {
        "asset": "ETH", "chain_id": CHAIN_ID, "address": address, "kind": "native",
        "contract": None, "decimals": 18, "confirmations": 3, "min_deposit": "0.00000001",
    }  # fmt: skip
    assert resp.headers["Cache-Control"] == "no-store"
    # The first index of the sequence: anvil's first dev account; derived from the mnemonic.
    index = fs_doc(ex, "deposit_addresses", f"{CHAIN_ID}:{alice}")["index"]
    assert address == HdWallet.from_mnemonic(MNEMONIC).address(index) == ANVIL_ACCOUNTS[index]
    owner = fs_doc(ex, "deposit_address_owners", f"{CHAIN_ID}:{address.lower()}")
    assert owner["user_id"] == alice

    # Stable, and one per chain: the token shares it.
    assert address_of(ex, alice_token).get_json()["address"] == address
    usdt = address_of(ex, alice_token, "USDT").get_json()
    assert usdt["address"] == address
    assert (usdt["kind"], usdt["contract"], usdt["decimals"]) == ("erc20", CONTRACT.lower(), 6)
    # Another user, another address.
    bobs = address_of(ex, bob_token).get_json()["address"]
    assert bobs != address and bobs in ANVIL_ACCOUNTS

    # An API key with read may ask; one with trade only may not.
    resp = signed(ex, api_key(ex, alice_token, ["read"]), "GET", "/v1/deposits/address?asset=ETH")
    assert resp.status_code == 200 and resp.get_json()["address"] == address
    resp = signed(ex, api_key(ex, alice_token, ["trade"]), "GET", "/v1/deposits/address?asset=ETH")
    assert (resp.status_code, error(resp)) == (403, "insufficient_scope")

    for path, status, code in [
        ("/v1/deposits/address?asset=DOGE", 400, "unknown_asset"),
        ("/v1/deposits/address?asset=DAI", 400, "no_chain"),
        ("/v1/deposits/address", 400, "missing_parameter"),
        ("/v1/deposits/address?asset=ETH&x=1", 400, "unknown_parameter"),
    ]:
        resp = ex.client.get(path, headers=bearer(alice_token))
        assert (resp.status_code, error(resp)) == (status, code), path
    resp = ex.client.get("/v1/deposits/address?asset=ETH")
    assert (resp.status_code, error(resp)) == (401, "unauthenticated")


def test_concurrent_allocation_never_shares_an_address(wallet_ex: Exchange) -> None:
    ex = wallet_ex
    list_market_without_matcher(ex)
    tokens = [user(ex, f"user{i}")[1] for i in range(10)]
    app = ex.client.application
    results: dict[int, list[str]] = {i: [] for i in range(len(tokens))}
    failures: list[Any] = []
    start = threading.Barrier(len(tokens) + 4)

    def call(i: int) -> None:
        client = app.test_client()
        start.wait()
        resp = client.get("/v1/deposits/address?asset=ETH", headers=bearer(tokens[i]))
        if resp.status_code != 200:
            failures.append(resp.get_json())
        else:
            results[i].append(resp.get_json()["address"])

    # Ten users at once, and user 0 four more times at the same moment.
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(tokens))]
    threads += [threading.Thread(target=call, args=(0,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert len(set(results[0])) == 1 and len(results[0]) == 5
    firsts = [results[i][0] for i in range(len(tokens))]
    assert len(set(firsts)) == len(tokens)
    owners = ex.firestore.collection("deposit_address_owners").stream()
    assert sorted((o.to_dict() or {})["address"] for o in owners) == sorted(firsts)


def list_market_without_matcher(ex: Exchange) -> None:
    """ETH with chain details, straight into Redis (the address route reads nothing else)."""
    ex.redis.hset("md:assets", "ETH", orjson.dumps({"asset": "ETH", "precision": 8}))
    ex.redis.hset(
        "md:asset_chains",
        "ETH",
        orjson.dumps({"kind": "native", "contract": None, "decimals": 18}),
    )


# -------------------------------------------------------------------------------- deposits


def test_deposits_listing(wallet_ex: Exchange, matcher: None) -> None:
    ex = wallet_ex
    list_market(ex)
    alice, alice_token = user(ex, "alice")
    bob, bob_token = user(ex, "bob")
    address = address_of(ex, alice_token).get_json()["address"].lower()
    ex.sql(
        "INSERT INTO chain_cursor (chain_id, block_number, head) VALUES (:c, 101, 101)",
        c=CHAIN_ID,
    )
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    rows = [
        # (who, tx, log index, asset, token amount, units, dust, block, status, seen)
        (alice, "0xa1", -1, "ETH", 10**18 + 5, 10**8, 5, 90, "credited", t0),
        (alice, "0xa2", 3, "USDT", 2_500_000, 2_500_000, 0, 100, "pending", t0 + timedelta(1)),
        (alice, "0xa3", -1, "ETH", 10**16, 10**6, 0, 99, "orphaned", t0 + timedelta(2)),
        (alice, "0xa4", -1, "ETH", 2 * 10**16, 2 * 10**6, 0, 50, "pending", t0 + timedelta(3)),
        (bob, "0xb1", -1, "ETH", 10**18, 10**8, 0, 95, "credited", t0 + timedelta(4)),
    ]
    for who, tx, log_index, asset, token_amount, amount, dust, block, status, seen in rows:
        ex.sql(
            "INSERT INTO chain_deposits (chain_id, tx_hash, log_index, ref, user_id, asset,"
            " address, sender, token_amount, amount, dust, block_number, block_hash,"
            " confirmations_required, status, seen_at, credited_at) VALUES (:c, :tx, :li,"
            " :ref, :u, :a, :addr, '0xsender', :ta, :am, :d, :b, '0xblock', 3, :s, :seen,"
            " CASE WHEN :s = 'credited' THEN CAST(:seen AS timestamptz) END)",
            c=CHAIN_ID, tx=tx, li=log_index, ref=f"{CHAIN_ID}:{tx}:{log_index}", u=who,
            a=asset, addr=address, ta=token_amount, am=amount, d=dust, b=block, s=status,
            seen=seen,
        )  # fmt: skip

    resp = ex.client.get("/v1/deposits", headers=bearer(alice_token))
    assert resp.status_code == 200, resp.get_json()
    page = resp.get_json()
    assert page["next_cursor"] is None
    got = page["deposits"]
    assert [d["tx_hash"] for d in got] == ["0xa4", "0xa3", "0xa2", "0xa1"]
    # Pending: head - block + 1, capped at the required 3; orphaned: 0; credited: uncapped.
    assert [d["confirmations"] for d in got] == [3, 0, 2, 12]
    assert got[3] == {
        "id": f"{CHAIN_ID}:0xa1:-1", "asset": "ETH", "amount": "1", "tx_hash": "0xa1",
        "log_index": -1, "block_number": 90, "confirmations": 12,
        "confirmations_required": 3, "status": "credited", "dust": "5", "address": address,
        "created_at": "2024-05-01T00:00:00+00:00", "credited_at": "2024-05-01T00:00:00+00:00",
    }  # fmt: skip
    assert got[2]["amount"] == "2.5" and got[2]["credited_at"] is None

    # Pages of two, following next_cursor; a filter by asset.
    hashes: list[str] = []
    cursor = None
    while True:
        path = "/v1/deposits?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = ex.client.get(path, headers=bearer(alice_token)).get_json()
        hashes += [d["tx_hash"] for d in page["deposits"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert hashes == ["0xa4", "0xa3", "0xa2", "0xa1"]
    usdt = ex.client.get("/v1/deposits?asset=USDT", headers=bearer(alice_token)).get_json()
    assert [d["tx_hash"] for d in usdt["deposits"]] == ["0xa2"]
    # Bob sees his own only.
    bobs = ex.client.get("/v1/deposits", headers=bearer(bob_token)).get_json()["deposits"]
    assert [d["tx_hash"] for d in bobs] == ["0xb1"]

    for path, code in [
        ("/v1/deposits?limit=0", "invalid_limit"),
        ("/v1/deposits?limit=501", "invalid_limit"),
        ("/v1/deposits?cursor=12", "invalid_cursor"),
        ("/v1/deposits?cursor=!!", "invalid_cursor"),
        ("/v1/deposits?asset=DOGE", "unknown_asset"),
        ("/v1/deposits?market=ETH-USDT", "unknown_parameter"),
    ]:
        resp = ex.client.get(path, headers=bearer(alice_token))
        assert (resp.status_code, error(resp)) == (400, code), path


# -------------------------------------------------------------------------------- withdrawals


def test_withdrawal_checks_publish_nothing(wallet_ex: Exchange, matcher: None) -> None:
    ex = wallet_ex
    list_market(ex)
    assert set_rules(ex, "ETH", ETH_RULES).status_code == 200
    assert admin_post(ex, "/v1/admin/assets", {"asset": "DAI", "precision": 6}).status_code == 201
    alice, token = user(ex, "alice")
    assert deposit(ex, alice, "ETH", "1").status_code == 201
    before = ex.oplog_count()

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"address": TO[:-1] + "c"}, 400, "invalid_checksum"),
        ({"address": TO.replace("C", "c", 1)}, 400, "invalid_checksum"),
        ({"address": "0x" + "0" * 40}, 400, "invalid_address"),
        ({"address": "0x1234"}, 400, "invalid_address"),
        ({"address": TO[2:]}, 400, "invalid_address"),
        ({"address": TO + "00"}, 400, "invalid_address"),
        ({"amount": "0.000000001"}, 400, "bad_amount"),
        ({"amount": "0"}, 400, "bad_amount"),
        ({"amount": "-1"}, 400, "bad_amount"),
        ({"amount": "1e-2"}, 400, "bad_amount"),
        ({"amount": 0.1}, 400, "invalid_request"),
        ({"amount": "0.001"}, 400, "below_min_withdrawal"),
        ({"asset": "DOGE"}, 400, "unknown_asset"),
        ({"asset": "DAI"}, 400, "no_chain"),
        ({"fee": "0"}, 400, "invalid_request"),
    ]
    for change, status, code in cases:
        body = {"asset": "ETH", "amount": "0.1", "address": TO, **change}
        resp = ex.client.post("/v1/withdrawals", json=body, headers=bearer(token))
        assert (resp.status_code, error(resp)) == (status, code), change
    msg = withdraw(ex, token, "0.1", TO[:-1] + "c").get_json()["error"]["message"]
    assert "checksum" in msg
    assert ex.oplog_count() == before
    assert ex.sql("SELECT count(*) FROM withdrawal_requests") == [[0]]


def test_addresses_without_checksum_are_accepted_and_stored_checksummed(
    wallet_ex: Exchange, matcher: None
) -> None:
    """EIP-55: all lowercase or all uppercase hex carries no checksum; what users paste."""
    ex = wallet_ex
    list_market(ex)
    assert (
        set_rules(ex, "ETH", {"withdrawal_fee": "0.001", "min_withdrawal": "0.01"}).status_code
        == 200
    )
    alice, token = user(ex, "alice")
    assert deposit(ex, alice, "ETH", "1").status_code == 201
    for pasted in (TO.lower(), "0x" + TO[2:].upper(), TO):
        resp = withdraw(ex, token, "0.1", pasted)
        assert resp.status_code == 201, (pasted, resp.get_json())
        assert resp.get_json()["address"] == TO, pasted
    stored = ex.sql("SELECT DISTINCT address FROM withdrawal_requests WHERE user_id = :u", u=alice)
    assert stored == [[TO]]
    listed = ex.client.get("/v1/withdrawals", headers=bearer(token)).get_json()["withdrawals"]
    assert [w["address"] for w in listed] == [TO, TO, TO]


def test_withdrawals(wallet_ex: Exchange, matcher: None) -> None:
    ex = wallet_ex
    list_market(ex)
    resp = set_rules(ex, "ETH", ETH_RULES)
    assert resp.status_code == 200, resp.get_json()
    alice, token = user(ex, "alice")
    bob, bob_token = user(ex, "bob")
    assert deposit(ex, alice, "ETH", "1").status_code == 201

    resp = withdraw(ex, token, "0.3")
    assert resp.status_code == 201, resp.get_json()
    first = resp.get_json()
    wid = first["id"]
    assert first == {
        "id": wid, "asset": "ETH", "amount": "0.3", "fee": "0.001", "address": TO,
        "state": "requested", "tx_hash": None, "error": None,
        "created_at": first["created_at"], "updated_at": first["updated_at"],
    }  # fmt: skip
    assert resp.headers["Location"] == f"/v1/withdrawals/{wid}"
    assert balances(ex, token)["ETH"] == {"available": "0.699", "frozen": "0.301"}
    row = ex.sql(
        "SELECT user_id, amount, fee, token_amount, address, chain_id, state, command_id"
        " FROM withdrawal_requests WHERE withdrawal_id = :w",
        w=wid,
    )
    assert row == [[alice, 30_000_000, 100_000, 3 * 10**17, TO, CHAIN_ID, "requested",
                    resp.headers["X-Command-Id"]]]  # fmt: skip
    held = ex.sql("SELECT user_id, amount, fee, state FROM withdrawals WHERE withdrawal_id = :w",
                  w=wid)  # fmt: skip
    assert held == [[alice, 30_000_000, 100_000, "held"]]

    # The daily limit (0.5): 0.3 + 0.3 is over, 0.3 + 0.2 is exactly it.
    resp = withdraw(ex, token, "0.3")
    assert (resp.status_code, error(resp)) == (422, "daily_limit_exceeded")
    assert "0.2" in resp.get_json()["error"]["message"]
    second = withdraw(ex, token, "0.2")
    assert second.status_code == 201, second.get_json()
    assert (withdraw(ex, token, "0.01").status_code, balances(ex, token)["ETH"]) == (
        422, {"available": "0.498", "frozen": "0.502"},
    )  # fmt: skip

    # Bob has nothing: the matcher refuses, the request is rejected (and does not count).
    resp = withdraw(ex, bob_token, "0.1")
    assert (resp.status_code, error(resp)) == (422, "insufficient_funds")
    rejected = ex.sql(
        "SELECT withdrawal_id, state, error FROM withdrawal_requests WHERE user_id = :u", u=bob
    )
    assert [r[1:] for r in rejected] == [["rejected", "insufficient_funds"]]
    bob_wid = rejected[0][0]

    # Own only: lists and single ones.
    mine = ex.client.get("/v1/withdrawals", headers=bearer(token)).get_json()
    assert [w["id"] for w in mine["withdrawals"]] == [second.get_json()["id"], wid]
    assert mine["next_cursor"] is None
    paged = ex.client.get("/v1/withdrawals?limit=1", headers=bearer(token)).get_json()
    assert len(paged["withdrawals"]) == 1 and paged["next_cursor"]
    rest = ex.client.get(
        f"/v1/withdrawals?limit=1&cursor={paged['next_cursor']}", headers=bearer(token)
    ).get_json()
    assert [w["id"] for w in rest["withdrawals"]] == [wid] and rest["next_cursor"] is None
    assert ex.client.get("/v1/withdrawals?asset=USDT", headers=bearer(token)).get_json() == {
        "withdrawals": [], "next_cursor": None,
    }  # fmt: skip
    bobs = ex.client.get("/v1/withdrawals", headers=bearer(bob_token)).get_json()["withdrawals"]
    assert [(w["id"], w["state"], w["error"]) for w in bobs] == [
        (bob_wid, "rejected", "insufficient_funds")
    ]
    resp = ex.client.get(f"/v1/withdrawals/{wid}", headers=bearer(token))
    assert resp.status_code == 200 and resp.get_json() == first
    for who, path in [
        (bob_token, f"/v1/withdrawals/{wid}"),
        (token, f"/v1/withdrawals/{bob_wid}"),
        (token, "/v1/withdrawals/wd_nope"),
        (token, "/v1/withdrawals/1"),
    ]:
        resp = ex.client.get(path, headers=bearer(who))
        assert (resp.status_code, error(resp)) == (404, "withdrawal_not_found"), path

    # The audit holds: frozen == the held withdrawals.
    report = ex.client.get("/v1/admin/audit", headers=bearer(as_admin(ex))).get_json()
    assert report["ok"] is True, report

    # Mined and marked confirmed by the sender while the books still hold its amount (the
    # settle not applied yet): it reads broadcast, so whoever waits for confirmed then reads
    # final balances; once the books show it settled, it reads confirmed.
    tx_hash = "0x" + "ab" * 32
    ex.sql(
        "UPDATE withdrawal_requests SET state = 'confirmed', tx_hash = :h WHERE withdrawal_id = :w",
        h=tx_hash, w=wid,
    )  # fmt: skip

    def shown() -> list[tuple[str, str | None]]:
        one = ex.client.get(f"/v1/withdrawals/{wid}", headers=bearer(token)).get_json()
        listed = ex.client.get("/v1/withdrawals", headers=bearer(token)).get_json()
        return [(one["state"], one["tx_hash"])] + [
            (w["state"], w["tx_hash"]) for w in listed["withdrawals"] if w["id"] == wid
        ]

    assert shown() == [("broadcast", tx_hash)] * 2
    ex.sql("UPDATE withdrawals SET state = 'settled' WHERE withdrawal_id = :w", w=wid)
    assert shown() == [("confirmed", tx_hash)] * 2
    ex.sql("UPDATE withdrawals SET state = 'held' WHERE withdrawal_id = :w", w=wid)  # as before
    ex.sql(
        "UPDATE withdrawal_requests SET state = 'requested', tx_hash = NULL"
        " WHERE withdrawal_id = :w",
        w=wid,
    )


def token_proved_long_ago(ex: Exchange, email: str, age_s: int) -> str:
    """An access token of a new session of ``email`` whose password proof is ``age_s`` old:
    the session's proof time is written back, and a refresh carries it on (no clock to race)."""
    pair = ex.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).get_json()
    sid = jwt.decode(pair["access_token"], options={"verify_signature": False})["sid"]
    ex.firestore.collection(FAMILIES).document(sid).update({"auth_time": int(time.time()) - age_s})
    resp = ex.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert resp.status_code == 200, resp.get_json()
    token: str = resp.get_json()["access_token"]
    return token


def test_a_withdrawal_with_a_token_needs_a_fresh_proof(wallet_ex: Exchange, matcher: None) -> None:
    """A stolen access token must not move funds out: a withdrawal made with a token needs the
    password within FRESH_AUTH_MAX_AGE_S (login, or reauth). A withdraw key is its own proof."""
    ex = wallet_ex
    list_market(ex)
    alice, token = user(ex, "alice")
    assert deposit(ex, alice, "USDT", "1000").status_code == 201
    ex.configure(FRESH_AUTH_MAX_AGE_S="300")
    key = api_key(ex, token, ["withdraw"])  # made while the login is fresh
    token = token_proved_long_ago(ex, "alice@example.com", age_s=3600)

    resp = withdraw(ex, token, "10", asset="USDT")
    assert (resp.status_code, error(resp)) == (401, "fresh_auth_required")
    assert "max_age=300" in resp.headers["WWW-Authenticate"]
    assert ex.sql("SELECT count(*) FROM withdrawal_requests") == [[0]]
    resp = ex.client.post(
        "/v1/api-keys", json={"label": "late", "scopes": ["withdraw"]}, headers=bearer(token)
    )
    assert (resp.status_code, error(resp)) == (401, "fresh_auth_required")

    body = {"asset": "USDT", "amount": "10", "address": TO}
    resp = signed(ex, key, "POST", "/v1/withdrawals", body)
    assert resp.status_code == 201, resp.get_json()

    fresh = ex.client.post(
        "/v1/auth/reauth", json={"password": PASSWORD}, headers=bearer(token)
    ).get_json()["access_token"]
    resp = withdraw(ex, fresh, "10", asset="USDT")
    assert resp.status_code == 201, resp.get_json()
    assert ex.sql("SELECT count(*) FROM withdrawal_requests") == [[2]]


def test_withdrawal_scopes_and_idempotency(wallet_ex: Exchange, matcher: None) -> None:
    ex = wallet_ex
    list_market(ex)
    alice, token = user(ex, "alice")
    assert deposit(ex, alice, "USDT", "1000").status_code == 201
    body = {"asset": "USDT", "amount": "10", "address": TO}

    resp = signed(ex, api_key(ex, token, ["read", "trade"]), "POST", "/v1/withdrawals", body)
    assert (resp.status_code, error(resp)) == (403, "insufficient_scope")
    key = api_key(ex, token, ["withdraw"])
    resp = signed(ex, key, "POST", "/v1/withdrawals", body)
    assert resp.status_code == 201, resp.get_json()
    wid = resp.get_json()["id"]
    # A withdraw key may follow what it sent.
    assert signed(ex, key, "GET", f"/v1/withdrawals/{wid}").status_code == 200

    headers = {"Idempotency-Key": "w-1"}
    one = withdraw(ex, token, "5", asset="USDT", headers=headers)
    assert one.status_code == 201, one.get_json()
    two = withdraw(ex, token, "5", asset="USDT", headers=headers)
    assert two.status_code == 201 and two.get_json() == one.get_json()
    assert two.headers["X-Command-Id"] == one.headers["X-Command-Id"]
    other = withdraw(ex, token, "6", asset="USDT", headers=headers)
    assert (other.status_code, error(other)) == (422, "idempotency_key_reused")
    bad = withdraw(ex, token, "5", asset="USDT", headers={"Idempotency-Key": "é"})
    assert (bad.status_code, error(bad)) == (400, "invalid_idempotency_key")
    assert ex.sql("SELECT count(*) FROM withdrawal_requests") == [[2]]
    assert balances(ex, token)["USDT"] == {"available": "985", "frozen": "15"}
    # A refusal is remembered too.
    big = {"Idempotency-Key": "w-big"}
    refused = withdraw(ex, token, "5000", asset="USDT", headers=big)
    again = withdraw(ex, token, "5000", asset="USDT", headers=big)
    assert (refused.status_code, error(refused)) == (422, "insufficient_funds")
    assert (again.status_code, error(again)) == (422, "insufficient_funds")
    assert ex.sql("SELECT count(*) FROM withdrawal_requests WHERE state = 'rejected'") == [[1]]


def test_withdrawal_pending_then_held_and_publish_failure(
    wallet_ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = wallet_ex
    with running(ex.cfg):
        list_market(ex)
        alice, token = user(ex, "alice")
        assert deposit(ex, alice, "ETH", "1").status_code == 201
    ex.configure(API_REPLY_WAIT_S="0.3")

    resp = withdraw(ex, token, "0.25")
    assert resp.status_code == 202, resp.get_json()
    pending = resp.get_json()
    wid = pending["withdrawal_id"]
    assert pending == {"withdrawal_id": wid, "command_id": pending["command_id"],
                       "state": "requested"}  # fmt: skip
    assert resp.headers["Location"] == f"/v1/withdrawals/{wid}"
    with running(ex.cfg):
        wait_for(
            lambda: bool(ex.sql("SELECT 1 FROM withdrawals WHERE withdrawal_id = :w", w=wid)),
            what="the withdrawal held",
        )
    got = ex.client.get(f"/v1/withdrawals/{wid}", headers=bearer(token)).get_json()
    assert got["state"] == "requested" and got["amount"] == "0.25"

    # Pub/Sub refuses: 503, the request is kept as rejected, nothing was held.
    def refuse(self: Any, cmd: Any, ordering_key: str, timeout: float = 10.0) -> str:
        raise RuntimeError("pubsub down")

    monkeypatch.setattr(CommandPublisher, "publish", refuse)
    monkeypatch.setattr(CommandPublisher, "publish_one", refuse)  # an API request's (0016)
    resp = withdraw(ex, token, "0.1", headers={"Idempotency-Key": "down"})
    assert (resp.status_code, error(resp)) == (503, "unavailable")
    rows = ex.sql("SELECT state, error FROM withdrawal_requests ORDER BY created_at")
    assert rows == [["requested", None], ["rejected", "not_queued"]]


# -------------------------------------------------------------------------------- admin rules


def test_admin_chain_rules(wallet_ex: Exchange, matcher: None) -> None:
    ex = wallet_ex
    list_market(ex)
    # Only the keys given are kept: ETH's entry is what it was.
    assert hget_json(ex, "md:asset_chains", "ETH") == {
        "kind": "native", "contract": None, "decimals": 18,
    }  # fmt: skip
    link: dict[str, Any] = {
        "asset": "LINK", "precision": 8,
        "chain": {"kind": "erc20", "contract": CONTRACT, "decimals": 18, "confirmations": 6,
                  "min_deposit": "0.1", "withdrawal_fee": "0.05", "min_withdrawal": "1",
                  "withdrawal_daily_limit": "1000", "sweep_threshold": "5"},
    }  # fmt: skip
    bad: list[tuple[dict[str, Any], str]] = [
        ({"min_deposit": "0.123456789"}, "invalid_chain"),
        ({"withdrawal_fee": "-1"}, "invalid_chain"),
        ({"sweep_threshold": "1e3"}, "invalid_chain"),
        ({"confirmations": 0}, "invalid_request"),
        ({"confirmations": 10001}, "invalid_request"),
        ({"min_withdrawal": 1}, "invalid_request"),
    ]
    for change, code in bad:
        body = {**link, "chain": {**link["chain"], **change}}
        resp = admin_post(ex, "/v1/admin/assets", body)
        assert (resp.status_code, error(resp)) == (400, code), change
    resp = admin_post(ex, "/v1/admin/assets", link)
    assert resp.status_code == 201, resp.get_json()
    stored = {**link["chain"], "contract": CONTRACT.lower()}
    assert resp.get_json()["chain"] == stored
    assert hget_json(ex, "md:asset_chains", "LINK") == stored
    assert fs_doc(ex, "assets", "LINK")["chain"] == stored
    _, token = user(ex, "alice")
    got = address_of(ex, token, "LINK").get_json()
    assert (got["confirmations"], got["min_deposit"]) == (6, "0.1")

    # PATCH: a value replaces, null removes, absent keeps.
    resp = set_rules(ex, "LINK", {"withdrawal_fee": "0.07", "withdrawal_daily_limit": None})
    assert resp.status_code == 200, resp.get_json()
    changed = {**stored, "withdrawal_fee": "0.07"}
    del changed["withdrawal_daily_limit"]
    assert resp.get_json() == {"asset": "LINK", "precision": 8, "chain": changed}
    assert hget_json(ex, "md:asset_chains", "LINK") == changed
    assert fs_doc(ex, "assets", "LINK")["chain"] == changed
    assert admin_post(ex, "/v1/admin/assets", {"asset": "DAI", "precision": 6}).status_code == 201
    patches: list[tuple[str, dict[str, Any], int, str]] = [
        ("NOPE", {"confirmations": 2}, 404, "asset_not_found"),
        ("DAI", {"confirmations": 2}, 404, "no_chain"),
        ("LINK", {}, 400, "invalid_request"),
        ("LINK", {"min_deposit": "0.000000001"}, 400, "invalid_chain"),
        ("LINK", {"kind": "native"}, 400, "invalid_request"),
    ]
    for asset, rules, status, code in patches:
        resp = set_rules(ex, asset, rules)
        assert (resp.status_code, error(resp)) == (status, code), (asset, rules)
    resp = ex.client.patch(
        "/v1/admin/assets/LINK/chain", json={"confirmations": 2}, headers=bearer(token)
    )
    assert (resp.status_code, error(resp)) == (403, "forbidden")
