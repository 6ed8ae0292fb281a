"""The orders and admin functions through the local gateway, against a real matcher (in a
thread), the Pub/Sub and Firestore emulators, Postgres and Redis: placing, validating before
publishing, the engine's refusals, 202 while the matcher is away, idempotent retries,
cancelling, command status, admin routes, deposits and the audit."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
import pytest
import redis
from flask.testing import FlaskClient
from google.cloud import firestore, pubsub_v1  # type: ignore[attr-defined, unused-ignore]
from msgspec.structs import replace
from werkzeug.test import TestResponse

from api.auth import sign_request
from functions.admin.bootstrap import main as bootstrap_main
from functions.admin.bootstrap import make_admin
from functions.auth.main import FAMILIES
from infra.gateway import ROUTES, create_app
from shared import outbox
from shared.config import MatcherConfig
from shared.db import Database, connect
from shared.redis_keys import rate_limit_key
from tests.integration.function_env import point_functions_at, reset_functions
from tests.integration.matcher_helpers import running, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PASSWORD = "correct horse battery"
ADMIN_EMAIL = "root@example.com"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
MARKET = "ETH-USDT"
Configure = Callable[..., None]
Cases = list[tuple[dict[str, Any], int, str]]


# -------------------------------------------------------------------------------- fixtures


@dataclass
class Exchange:
    client: FlaskClient
    cfg: MatcherConfig
    firestore: firestore.Client
    redis: redis.Redis
    configure: Configure
    admin_token: str = ""

    def db(self) -> Database:
        return connect(self.cfg.postgres)

    def sql(self, query: str, **params: Any) -> list[list[Any]]:
        db = self.db()
        try:
            rows: list[list[Any]] = db.run(query, **params)
            return rows
        finally:
            db.close()

    def oplog_count(self) -> int:
        return int(self.sql("SELECT count(*) FROM oplog")[0][0])


@pytest.fixture
def exchange(
    firestore_db: firestore.Client,
    matcher_cfg: MatcherConfig,
    redis_db: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Exchange]:
    """The functions' environment pointed at this test's Pub/Sub names, database, Redis and
    Firestore (firestore_db comes first, so the Pub/Sub names live in its project too)."""
    ps = matcher_cfg.pubsub
    assert ps.project == os.environ["GOOGLE_CLOUD_PROJECT"]

    configure = point_functions_at(monkeypatch, matcher_cfg)
    # The functions of this work (the queries function is tested on its own).
    routes = [row for row in ROUTES if "queries" not in row[1]]
    client = create_app(routes).test_client()
    yield Exchange(client, matcher_cfg, firestore_db, redis_db, configure)
    reset_functions()


@pytest.fixture
def matcher(exchange: Exchange) -> Iterator[None]:
    with running(exchange.cfg):
        yield


# -------------------------------------------------------------------------------- helpers


def error(resp: TestResponse) -> str:
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    code: str = body["error"]["code"]
    return code


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(ex: Exchange, email: str) -> str:
    resp = ex.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.get_json()
    token: str = resp.get_json()["access_token"]
    return token


def user(ex: Exchange, name: str) -> tuple[str, str]:
    """(user id, access token) of a new user."""
    email = f"{name}@example.com"
    resp = ex.client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["user_id"], login(ex, email)


def as_admin(ex: Exchange) -> str:
    if not ex.admin_token:
        make_admin(ex.firestore, ADMIN_EMAIL, PASSWORD)
        ex.admin_token = login(ex, ADMIN_EMAIL)
    return ex.admin_token


def stale_admin_token(ex: Exchange, age_s: int) -> str:
    """An access token of a new admin session whose password proof is ``age_s`` old: the
    session's proof time is written back, and a refresh carries it on (no clock to race)."""
    as_admin(ex)
    pair = ex.client.post(
        "/v1/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}
    ).get_json()
    session = jwt.decode(pair["access_token"], options={"verify_signature": False})["sid"]
    family = ex.firestore.collection(FAMILIES).document(session)
    family.update({"auth_time": int(time.time()) - age_s})
    resp = ex.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert resp.status_code == 200, resp.get_json()
    token: str = resp.get_json()["access_token"]
    return token


def admin_post(ex: Exchange, path: str, body: dict[str, Any]) -> TestResponse:
    return ex.client.post(path, json=body, headers=bearer(as_admin(ex)))


def list_market(ex: Exchange, min_amount: str = "0.001", min_notional: str = "10") -> None:
    """ETH (native) and USDT (an ERC-20), and ETH-USDT, through the admin routes."""
    resp = admin_post(
        ex,
        "/v1/admin/assets",
        {"asset": "ETH", "precision": 8, "chain": {"kind": "native", "decimals": 18}},
    )
    assert resp.status_code == 201, resp.get_json()
    resp = admin_post(
        ex,
        "/v1/admin/assets",
        {
            "asset": "USDT",
            "precision": 6,
            "chain": {"kind": "erc20", "contract": CONTRACT, "decimals": 6},
        },
    )
    assert resp.status_code == 201, resp.get_json()
    resp = admin_post(
        ex,
        "/v1/admin/markets",
        {
            "base": "ETH", "quote": "USDT", "tick": "0.01", "step": "0.0001",
            "min_amount": min_amount, "min_notional": min_notional, "maker_fee": "0.001",
            "taker_fee": "0.002",
        },
    )  # fmt: skip
    assert resp.status_code == 201, resp.get_json()


def deposit(ex: Exchange, user_id: str, asset: str, amount: str) -> TestResponse:
    return admin_post(
        ex,
        "/v1/admin/deposits",
        {"user_id": user_id, "asset": asset, "amount": amount, "ref": uuid.uuid4().hex},
    )


def trader(ex: Exchange, name: str, eth: str = "10", usdt: str = "100000") -> tuple[str, str]:
    user_id, token = user(ex, name)
    for asset, amount in (("ETH", eth), ("USDT", usdt)):
        if amount != "0":
            resp = deposit(ex, user_id, asset, amount)
            assert resp.status_code == 201, resp.get_json()
    return user_id, token


def order(
    ex: Exchange, token: str, headers: dict[str, str] | None = None, **fields: Any
) -> TestResponse:
    body = {"market": MARKET, "type": "limit", **fields}
    return ex.client.post("/v1/orders", json=body, headers={**bearer(token), **(headers or {})})


def hget_json(ex: Exchange, key: str, field: str) -> Any:
    raw = ex.redis.hget(key, field)
    assert raw is not None, (key, field)
    return orjson.loads(raw)


def balance(ex: Exchange, user_id: str, asset: str) -> tuple[int, int]:
    rows = ex.sql(
        "SELECT available, frozen FROM balances WHERE user_id = :u AND asset = :a",
        u=user_id,
        a=asset,
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


# -------------------------------------------------------------------------------- placing


def test_place_resting_and_filled_orders(exchange: Exchange, matcher: None) -> None:
    ex = exchange
    list_market(ex)
    bob, bob_token = trader(ex, "bob", usdt="0")
    alice, alice_token = trader(ex, "alice", eth="0")

    resp = order(ex, bob_token, side="sell", price="2000", amount="1", client_order_id="s-1")
    assert resp.status_code == 201, resp.get_json()
    resting = resp.get_json()
    assert resting == {
        "order_id": resting["order_id"], "market": MARKET, "side": "sell", "type": "limit",
        "price": "2000", "amount": "1", "quote_amount": None, "time_in_force": "GTC",
        "post_only": False, "client_order_id": "s-1", "status": "open", "filled": "0",
        "filled_quote": "0", "fee": "0", "reason": None, "ts": resting["ts"],
    }  # fmt: skip
    assert resp.headers["Location"] == f"/v1/orders/{resting['order_id']}"
    assert balance(ex, bob, "ETH") == (9 * 10**8, 10**8)

    resp = order(ex, alice_token, side="buy", price="2001.5", amount="0.4")
    assert resp.status_code == 201, resp.get_json()
    taken = resp.get_json()
    assert (taken["status"], taken["filled"], taken["filled_quote"]) == ("filled", "0.4", "800")
    assert taken["fee"] == "0.0008"  # the taker's 0.2 % of what it receives, in ETH

    resp = order(ex, alice_token, side="buy", type="market", quote_amount="100")
    assert resp.status_code == 201, resp.get_json()
    market_buy = resp.get_json()
    assert market_buy["status"] == "filled" and market_buy["filled"] == "0.05"
    assert market_buy["price"] is None and market_buy["quote_amount"] == "100"

    assert balance(ex, alice, "USDT") == ((100_000 - 800 - 100) * 10**6, 0)
    assert balance(ex, alice, "ETH") == (45_000_000 - 80_000 - 10_000, 0)
    statuses = ex.sql("SELECT order_id, status FROM orders ORDER BY order_id")
    assert statuses == [
        [resting["order_id"], "partially_filled"],
        [taken["order_id"], "filled"],
        [market_buy["order_id"], "filled"],
    ]

    # An API key with the trade scope may place; one with only read may not.
    keys = {}
    for scopes in (["trade"], ["read"]):
        resp = ex.client.post(
            "/v1/api-keys", json={"label": "bot", "scopes": scopes}, headers=bearer(bob_token)
        )
        assert resp.status_code == 201
        keys[scopes[0]] = resp.get_json()
    for scope, expected in (("trade", 201), ("read", 403)):
        body = orjson.dumps(
            {"market": MARKET, "side": "sell", "type": "limit", "price": "2100", "amount": "0.1"}
        )
        ts = int(time.time() * 1000)
        key = keys[scope]
        headers = {
            "X-API-Key": key["id"],
            "X-API-Timestamp": str(ts),
            "X-API-Signature": sign_request(key["secret"], ts, "POST", "/v1/orders", b"", body),
        }
        resp = ex.client.post(
            "/v1/orders", data=body, content_type="application/json", headers=headers
        )
        assert resp.status_code == expected, resp.get_json()
        if expected == 403:
            assert error(resp) == "insufficient_scope"


BAD_ORDERS: list[tuple[dict[str, Any] | bytes, int, str]] = [
    # decimal strings only, strict bodies
    (b'{"market":"ETH-USDT","side":"buy","type":"limit","price":2000,"amount":"1"}', 400,
     "invalid_request"),
    (b'{"market":"ETH-USDT","side":"buy","type":"limit","price":"2000","amount":1.5}', 400,
     "invalid_request"),
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "1", "leverage": "10"}, 400,
     "invalid_request"),
    ({"side": "hold", "type": "limit", "price": "2000", "amount": "1"}, 400, "invalid_request"),
    ({"side": "buy", "price": "2000", "amount": "1", "type": None}, 400, "invalid_request"),
    (b"not json", 400, "invalid_json"),
    # the market
    ({"market": "DOGE-USDT", "side": "buy", "type": "limit", "price": "1", "amount": "1"}, 400,
     "unknown_market"),
    # prices
    ({"side": "buy", "type": "limit", "amount": "1"}, 400, "bad_price"),
    ({"side": "buy", "type": "limit", "price": "0", "amount": "1"}, 400, "bad_price"),
    ({"side": "buy", "type": "limit", "price": "-1", "amount": "1"}, 400, "bad_price"),
    ({"side": "buy", "type": "limit", "price": "2e3", "amount": "1"}, 400, "bad_price"),
    ({"side": "buy", "type": "limit", "price": "2000.005", "amount": "1"}, 400, "bad_tick"),
    ({"side": "buy", "type": "limit", "price": "2000.0000001", "amount": "1"}, 400,
     "bad_tick"),
    # amounts
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "0"}, 400, "bad_amount"),
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "1.00005"}, 400, "bad_step"),
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "1.000000001"}, 400,
     "bad_step"),
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "0.0005"}, 400,
     "below_min_amount"),
    ({"side": "buy", "type": "limit", "price": "100", "amount": "0.01"}, 400,
     "below_min_notional"),
    ({"side": "buy", "type": "market", "quote_amount": "5"}, 400, "below_min_notional"),
    ({"side": "buy", "type": "market", "quote_amount": "0"}, 400, "bad_amount"),
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "9" * 45}, 400, "bad_amount"),
    # fields that do not fit together
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "1", "quote_amount": "10"},
     400, "invalid_order"),
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "1", "post_only": True,
      "time_in_force": "IOC"}, 400, "invalid_order"),
    ({"side": "buy", "type": "market", "price": "2000", "amount": "1"}, 400, "invalid_order"),
    ({"side": "buy", "type": "market", "amount": "1", "time_in_force": "FOK"}, 400,
     "invalid_order"),
    ({"side": "buy", "type": "market", "amount": "1", "post_only": True}, 400, "invalid_order"),
    ({"side": "sell", "type": "market", "quote_amount": "100"}, 400, "invalid_order"),
    ({"side": "buy", "type": "market", "amount": "1", "quote_amount": "100"}, 400,
     "invalid_order"),
    ({"side": "buy", "type": "market"}, 400, "invalid_order"),
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "1", "client_order_id": ""},
     400, "invalid_order"),
    ({"side": "buy", "type": "limit", "price": "2000", "amount": "1",
      "client_order_id": "x" * 65}, 400, "invalid_request"),
]  # fmt: skip


def test_validation_errors_publish_nothing(exchange: Exchange, matcher: None) -> None:
    ex = exchange
    list_market(ex)
    _, token = trader(ex, "alice")
    before = ex.oplog_count()

    for body, status, code in BAD_ORDERS:
        if isinstance(body, bytes):
            resp = ex.client.post(
                "/v1/orders", data=body, content_type="application/json", headers=bearer(token)
            )
        else:
            resp = order(ex, token, **body)
        assert (resp.status_code, error(resp)) == (status, code), (body, resp.get_json())

    resp = ex.client.post(
        "/v1/orders", data=b"{}", content_type="text/plain", headers=bearer(token)
    )
    assert (resp.status_code, error(resp)) == (415, "unsupported_media_type")
    resp = ex.client.post("/v1/orders", json={"market": MARKET})
    assert (resp.status_code, error(resp)) == (401, "unauthenticated")
    resp = order(ex, token, headers={"Idempotency-Key": "é"}, side="buy", price="1", amount="1")
    assert (resp.status_code, error(resp)) == (400, "invalid_idempotency_key")

    # A halted market refuses orders up front.
    halt = ex.client.patch(
        f"/v1/admin/markets/{MARKET}", json={"status": "halted"}, headers=bearer(as_admin(ex))
    )
    assert halt.status_code == 200 and halt.get_json()["status"] == "halted"
    halted_at = ex.oplog_count()
    resp = order(ex, token, side="buy", price="2000", amount="1")
    assert (resp.status_code, error(resp)) == (409, "market_halted")
    resume = ex.client.patch(
        f"/v1/admin/markets/{MARKET}", json={"status": "open"}, headers=bearer(as_admin(ex))
    )
    assert resume.status_code == 200

    # Then a good order of the same user (the same ordering key: anything published before
    # it would be applied before it): the oplog holds it, the two admin commands, nothing more.
    resp = order(ex, token, side="buy", price="2000", amount="1")
    assert resp.status_code == 201, resp.get_json()
    assert halted_at == before + 1
    assert ex.oplog_count() == before + 3
    kinds = ex.sql(
        "SELECT command::json->>'command' FROM oplog WHERE seq > :s ORDER BY seq", s=before
    )
    assert [k[0] for k in kinds] == ["update_market", "update_market", "place_order"]


def test_the_engines_refusals(exchange: Exchange, matcher: None) -> None:
    ex = exchange
    list_market(ex)
    carol, carol_token = user(ex, "carol")  # no funds
    _, bob_token = trader(ex, "bob")

    resp = order(ex, carol_token, side="buy", price="2000", amount="1")
    assert (resp.status_code, error(resp)) == (422, "insufficient_funds")
    assert "refused command" in resp.get_json()["error"]["message"]

    resp = order(ex, bob_token, side="sell", price="2000", amount="1", client_order_id="c")
    assert resp.status_code == 201
    resp = order(ex, bob_token, side="sell", price="2100", amount="1", client_order_id="c")
    assert (resp.status_code, error(resp)) == (409, "duplicate_client_order_id")
    _, alice_token = trader(ex, "alice")
    resp = order(ex, alice_token, side="buy", price="2000", amount="1", post_only=True)
    assert (resp.status_code, error(resp)) == (422, "would_take")
    resp = order(ex, alice_token, side="buy", price="2000", amount="2", time_in_force="FOK")
    assert (resp.status_code, error(resp)) == (422, "fok_not_filled")
    rejected = ex.sql("SELECT reason FROM oplog WHERE NOT ok ORDER BY seq")
    assert [r[0] for r in rejected] == [
        "insufficient_funds", "duplicate_client_order_id", "would_take", "fok_not_filled",
    ]  # fmt: skip
    assert balance(ex, carol, "USDT") == (0, 0)


# -------------------------------------------------------------------------------- 202, retries


def test_pending_while_the_matcher_is_away_then_applied(exchange: Exchange) -> None:
    ex = exchange
    with running(ex.cfg):
        list_market(ex)
        alice, alice_token = trader(ex, "alice")
        _, bob_token = user(ex, "bob")
    ex.configure(API_REPLY_WAIT_S="0.3")

    headers = {"Idempotency-Key": "k-away"}
    resp = order(ex, alice_token, headers, side="buy", price="1999", amount="1")
    assert resp.status_code == 202, resp.get_json()
    command_id = resp.get_json()["command_id"]
    assert resp.get_json() == {"command_id": command_id, "status": "pending"}
    assert resp.headers["Location"] == f"/v1/commands/{command_id}"
    # A retry finds the same command, still pending; nothing new is published.
    again = order(ex, alice_token, headers, side="buy", price="1999", amount="1")
    assert again.status_code == 202 and again.get_json()["command_id"] == command_id

    status = ex.client.get(f"/v1/commands/{command_id}", headers=bearer(alice_token))
    assert status.status_code == 202 and status.get_json()["status"] == "pending"
    other = ex.client.get(f"/v1/commands/{command_id}", headers=bearer(bob_token))
    assert (other.status_code, error(other)) == (404, "command_not_found")

    with running(ex.cfg):
        wait_for(
            lambda: (
                ex.client.get(f"/v1/commands/{command_id}", headers=bearer(alice_token)).status_code
                == 200
            ),
            what="the command applied",
        )
    done = ex.client.get(f"/v1/commands/{command_id}", headers=bearer(alice_token)).get_json()
    assert done["status"] == "applied" and done["ok"] is True
    assert done["order"]["status"] == "open" and done["order"]["price"] == "1999"
    # The retry now answers with the order, and there is one order.
    final = order(ex, alice_token, headers, side="buy", price="1999", amount="1")
    assert final.status_code == 201 and final.get_json()["order_id"] == done["order"]["order_id"]
    assert ex.sql("SELECT count(*) FROM orders WHERE user_id = :u", u=alice) == [[1]]


def test_local_outbox_pending_then_lost_and_a_retry_sends_it_again(exchange: Exchange) -> None:
    """Locally the outbox keeps an accepted command until it is in the oplog: pending while
    it is there; gone from both (the emulator and the outbox forgot it) it is lost, never
    404; a retry with its Idempotency-Key sends the request again."""
    ex = exchange
    ex.configure(COMMANDS_OUTBOX="1")
    cfg = replace(ex.cfg, pubsub=replace(ex.cfg.pubsub, outbox=True), seq_hold_ms=200)
    with running(cfg):
        list_market(ex)
        alice, alice_token = trader(ex, "alice")
    ex.configure(COMMANDS_OUTBOX="1", API_REPLY_WAIT_S="0.3")

    headers = {"Idempotency-Key": "k-lost"}
    resp = order(ex, alice_token, headers, side="buy", price="1999", amount="1")
    assert resp.status_code == 202, resp.get_json()
    lost_id = resp.get_json()["command_id"]
    assert outbox.holds(ex.redis, lost_id)
    status = ex.client.get(f"/v1/commands/{lost_id}", headers=bearer(alice_token))
    assert status.status_code == 202 and status.get_json()["status"] == "pending"

    # The emulator forgets it (its message consumed, never applied), and so does the outbox.
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(ex.cfg.pubsub.project, ex.cfg.pubsub.commands_subscription)
    got = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=10)
    subscriber.acknowledge(
        request={"subscription": path, "ack_ids": [m.ack_id for m in got.received_messages]}
    )
    subscriber.close()
    outbox.remove(ex.redis, [lost_id])
    status = ex.client.get(f"/v1/commands/{lost_id}", headers=bearer(alice_token))
    assert status.status_code == 200, status.get_json()
    body = status.get_json()
    assert (body["status"], body["ok"], body["reason"]) == ("lost", False, "no_longer_queued")
    assert body["command_id"] == lost_id and "outbox" in body["message"]

    retry = order(ex, alice_token, headers, side="buy", price="1999", amount="1")
    assert retry.status_code == 202, retry.get_json()
    sent_id = retry.get_json()["command_id"]
    assert sent_id != lost_id and outbox.holds(ex.redis, sent_id)
    with running(cfg) as matcher:
        matcher.sequencer.hold_floor = 0  # its user_seq comes after the lost one's: a gap
        wait_for(lambda: not outbox.holds(ex.redis, sent_id), 15, "the retry applied")
    done = ex.client.get(f"/v1/commands/{sent_id}", headers=bearer(alice_token)).get_json()
    assert done["status"] == "applied" and done["order"]["price"] == "1999"
    # Alice's second command (the first was lost): applied past the gap the lost one left.
    [[command]] = ex.sql("SELECT command FROM oplog WHERE command_id = :c", c=sent_id)
    assert orjson.loads(command)["user_seq"][1] == 2
    final = order(ex, alice_token, headers, side="buy", price="1999", amount="1")
    assert final.status_code == 201 and final.headers["X-Command-Id"] == sent_id
    assert ex.sql("SELECT count(*) FROM orders WHERE user_id = :u", u=alice) == [[1]]
    assert outbox.size(ex.redis) == 0


def test_idempotency_key_retries_return_the_same_order(exchange: Exchange, matcher: None) -> None:
    ex = exchange
    list_market(ex)
    alice, token = trader(ex, "alice")
    headers = {"Idempotency-Key": "order-1"}
    first = order(ex, token, headers, side="buy", price="1900", amount="0.5")
    assert first.status_code == 201
    second = order(ex, token, headers, side="buy", price="1900", amount="0.5")
    assert second.status_code == 201 and second.get_json() == first.get_json()
    assert second.headers["X-Command-Id"] == first.headers["X-Command-Id"]
    # Key order and spacing do not matter; another request with the key does.
    raw = b'{ "amount": "0.5", "price": "1900", "type": "limit", "side": "buy",'
    raw += b' "market": "ETH-USDT" }'
    third = ex.client.post(
        "/v1/orders",
        data=raw,
        content_type="application/json",
        headers={**bearer(token), **headers},
    )
    assert third.status_code == 201 and third.get_json() == first.get_json()
    changed = order(ex, token, headers, side="buy", price="1901", amount="0.5")
    assert (changed.status_code, error(changed)) == (422, "idempotency_key_reused")
    assert ex.sql("SELECT count(*) FROM orders WHERE user_id = :u", u=alice) == [[1]]
    # Keys are per user: bob's "order-1" is his own.
    _, bob_token = trader(ex, "bob")
    bobs = order(ex, bob_token, headers, side="buy", price="1901", amount="0.5")
    assert bobs.status_code == 201 and bobs.get_json()["order_id"] != first.get_json()["order_id"]
    # A refusal is remembered as well.
    broke = order(ex, bob_token, {"Idempotency-Key": "big"}, side="buy", price="1900", amount="999")
    again = order(ex, bob_token, {"Idempotency-Key": "big"}, side="buy", price="1900", amount="999")
    assert (broke.status_code, again.status_code) == (422, 422)
    assert ex.sql("SELECT count(*) FROM oplog WHERE NOT ok") == [[1]]


# -------------------------------------------------------------------------------- cancelling


def test_cancel_own_not_others_and_cancel_all(exchange: Exchange, matcher: None) -> None:
    ex = exchange
    list_market(ex)
    alice, alice_token = trader(ex, "alice")
    _, bob_token = trader(ex, "bob")
    oid = order(ex, alice_token, side="buy", price="1500", amount="1").get_json()["order_id"]

    for path in (f"/v1/orders/{oid}", "/v1/orders/999999", "/v1/orders/abc", "/v1/orders/-1"):
        resp = ex.client.delete(path, headers=bearer(bob_token))
        assert (resp.status_code, error(resp)) == (404, "order_not_found"), path
    assert balance(ex, alice, "USDT")[1] == 1500 * 10**6

    resp = ex.client.delete(f"/v1/orders/{oid}", headers=bearer(alice_token))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "cancelled"
    assert resp.get_json()["reason"] == "cancelled_by_user"
    assert balance(ex, alice, "USDT") == (100_000 * 10**6, 0)
    again = ex.client.delete(f"/v1/orders/{oid}", headers=bearer(alice_token))
    assert (again.status_code, error(again)) == (404, "order_not_found")

    # By client order id.
    order(ex, alice_token, side="sell", price="2500", amount="1", client_order_id="mine")
    resp = ex.client.delete("/v1/orders/by-client-id/mine", headers=bearer(bob_token))
    assert resp.status_code == 404
    resp = ex.client.delete("/v1/orders/by-client-id/mine", headers=bearer(alice_token))
    assert resp.status_code == 200 and resp.get_json()["status"] == "cancelled"

    ids = {
        order(ex, alice_token, side="buy", price=p, amount="1").get_json()["order_id"]
        for p in ("1000", "1100")
    }
    bobs = order(ex, bob_token, side="sell", price="3000", amount="1").get_json()["order_id"]
    resp = ex.client.delete(f"/v1/orders?market={MARKET}", headers=bearer(alice_token))
    assert resp.status_code == 200, resp.get_json()
    cancelled = resp.get_json()["orders"]
    assert {o["order_id"] for o in cancelled} == ids
    assert all(o["status"] == "cancelled" for o in cancelled)
    assert ex.sql("SELECT status FROM orders WHERE order_id = :o", o=bobs) == [["open"]]
    resp = ex.client.delete("/v1/orders", headers=bearer(alice_token))
    assert resp.status_code == 200 and resp.get_json() == {"orders": []}
    resp = ex.client.delete("/v1/orders?market=DOGE-USDT", headers=bearer(alice_token))
    assert (resp.status_code, error(resp)) == (400, "unknown_market")


def test_command_status_own_and_others(exchange: Exchange, matcher: None) -> None:
    ex = exchange
    list_market(ex)
    _, alice_token = trader(ex, "alice")
    _, bob_token = trader(ex, "bob")
    placed = order(ex, alice_token, side="buy", price="1800", amount="1")
    command_id = placed.headers["X-Command-Id"]

    mine = ex.client.get(f"/v1/commands/{command_id}", headers=bearer(alice_token))
    assert mine.status_code == 200
    body = mine.get_json()
    assert body["status"] == "applied" and body["ok"] is True and body["reason"] is None
    assert body["command_id"] == command_id and body["order"] == placed.get_json()
    for token, cid in ((bob_token, command_id), (alice_token, "nope"), (alice_token, "a b")):
        resp = ex.client.get(f"/v1/commands/{cid}", headers=bearer(token))
        assert (resp.status_code, error(resp)) == (404, "command_not_found")

    # Once Redis has forgotten it, the oplog still knows (and still only tells its owner).
    ex.redis.delete(f"cmd:{command_id}", f"cmdowner:{command_id}")
    old = ex.client.get(f"/v1/commands/{command_id}", headers=bearer(alice_token))
    assert old.status_code == 200
    assert old.get_json()["order"] == placed.get_json()
    assert old.get_json()["seq"] == body["seq"]
    resp = ex.client.get(f"/v1/commands/{command_id}", headers=bearer(bob_token))
    assert resp.status_code == 404

    refused = order(ex, alice_token, side="buy", price="1800", amount="1000")
    assert refused.status_code == 422
    cid = ex.sql("SELECT command_id FROM oplog WHERE NOT ok")[0][0]
    resp = ex.client.get(f"/v1/commands/{cid}", headers=bearer(alice_token))
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "rejected"
    assert resp.get_json()["reason"] == "insufficient_funds"


# -------------------------------------------------------------------------------- admin


ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/admin/assets", {"asset": "BTC", "precision": 8}),
    ("POST", "/v1/admin/markets", {"base": "ETH", "quote": "USDT", "tick": "0.01",
                                   "step": "0.0001", "min_amount": "0.0001",
                                   "min_notional": "1", "maker_fee": "0", "taker_fee": "0"}),
    ("PATCH", f"/v1/admin/markets/{MARKET}", {"status": "halted"}),
    ("POST", "/v1/admin/deposits", {"user_id": "x", "asset": "ETH", "amount": "1",
                                    "ref": "r"}),
    ("GET", f"/v1/admin/users/{ADMIN_EMAIL}", None),
    ("PATCH", f"/v1/admin/users/{ADMIN_EMAIL}", {"role": "user"}),
    ("GET", "/v1/admin/audit", None),
]  # fmt: skip


def test_admin_routes_need_a_current_admin(exchange: Exchange, matcher: None) -> None:
    ex = exchange
    list_market(ex)
    _, user_token = user(ex, "mallory")
    admin_token = as_admin(ex)
    resp = ex.client.post(
        "/v1/api-keys",
        json={"label": "ops", "scopes": ["read", "trade", "withdraw"]},
        headers=bearer(admin_token),
    )
    key = resp.get_json()
    before = ex.oplog_count()

    for method, path, body in ADMIN_CALLS:
        resp = ex.client.open(path, method=method, json=body)
        assert (resp.status_code, error(resp)) == (401, "unauthenticated"), path
        resp = ex.client.open(path, method=method, json=body, headers=bearer(user_token))
        assert (resp.status_code, error(resp)) == (403, "forbidden"), path
        # An admin's API key is never enough.
        raw = b"" if body is None else orjson.dumps(body)
        ts = int(time.time() * 1000)
        signed = {
            "X-API-Key": key["id"],
            "X-API-Timestamp": str(ts),
            "X-API-Signature": sign_request(key["secret"], ts, method, path, b"", raw),
        }
        resp = ex.client.open(
            path, method=method, data=raw, content_type="application/json", headers=signed
        )
        assert resp.status_code == 403, path

    # A demoted admin's token stops working before it expires.
    assert ex.client.get("/v1/admin/audit", headers=bearer(admin_token)).status_code == 200
    root = ex.client.get(f"/v1/admin/users/{ADMIN_EMAIL}", headers=bearer(admin_token))
    ex.firestore.collection("users").document(root.get_json()["user_id"]).update({"role": "user"})
    resp = ex.client.get("/v1/admin/audit", headers=bearer(admin_token))
    assert (resp.status_code, error(resp)) == (403, "forbidden")
    assert ex.oplog_count() == before


def test_admin_assets_markets_and_users(exchange: Exchange, matcher: None) -> None:
    ex = exchange
    list_market(ex)
    # Chain details: Firestore and Redis, where GET /v1/assets reads them.
    usdt = ex.firestore.collection("assets").document("USDT").get().to_dict()
    assert usdt is not None and usdt["precision"] == 6
    assert usdt["chain"] == {"kind": "erc20", "contract": CONTRACT.lower(), "decimals": 6}
    assert hget_json(ex, "md:asset_chains", "ETH") == {
        "kind": "native", "contract": None, "decimals": 18,
    }  # fmt: skip
    assert hget_json(ex, "md:assets", "USDT") == {"asset": "USDT", "precision": 6}

    asset_cases: Cases = [
        ({"asset": "ETH", "precision": 8}, 409, "duplicate_asset"),
        ({"asset": "eth", "precision": 8}, 400, "invalid_asset"),
        ({"asset": "DAI", "precision": 19}, 400, "invalid_request"),
        ({"asset": "DAI", "precision": 6, "chain": {"kind": "erc20", "decimals": 18}}, 400,
         "invalid_chain"),
        ({"asset": "DAI", "precision": 8, "chain": {"kind": "erc20", "contract": CONTRACT,
                                                    "decimals": 6}}, 400, "invalid_chain"),
    ]  # fmt: skip
    for body, status, code in asset_cases:
        resp = admin_post(ex, "/v1/admin/assets", body)
        assert (resp.status_code, error(resp)) == (status, code), body
    resp = admin_post(ex, "/v1/admin/assets", {"asset": "DAI", "precision": 6})
    assert resp.status_code == 201
    assert resp.get_json() == {"asset": "DAI", "precision": 6, "chain": None}

    market: dict[str, Any] = {
        "base": "ETH", "quote": "DAI", "tick": "0.01", "step": "0.0001", "min_amount": "0.0001",
        "min_notional": "1", "maker_fee": "0.001", "taker_fee": "0.002",
    }  # fmt: skip
    market_cases: Cases = [
        ({"quote": "NOPE"}, 400, "unknown_asset"),
        ({"quote": "ETH"}, 400, "invalid_market"),
        ({"tick": "0.001", "step": "0.00000001"}, 400, "invalid_market"),
        ({"tick": "0.0000001"}, 400, "invalid_market"),
        ({"maker_fee": "0.5"}, 400, "invalid_market"),
        ({"market": "DAI-ETH"}, 400, "invalid_market"),
        ({"tick": 0.01}, 400, "invalid_request"),
        ({"quote": "USDT"}, 409, "duplicate_market"),
    ]
    for change, status, code in market_cases:
        resp = admin_post(ex, "/v1/admin/markets", {**market, **change})
        assert (resp.status_code, error(resp)) == (status, code), change
    resp = admin_post(ex, "/v1/admin/markets", market)
    assert resp.status_code == 201
    assert resp.get_json() == {"market": "ETH-DAI", **market, "status": "open"}

    token = as_admin(ex)
    resp = ex.client.patch(
        "/v1/admin/markets/ETH-DAI", json={"taker_fee": "0.003"}, headers=bearer(token)
    )
    assert resp.status_code == 200 and resp.get_json()["taker_fee"] == "0.003"
    for path, body, status, code in [
        ("/v1/admin/markets/NOPE-DAI", {"status": "halted"}, 404, "market_not_found"),
        ("/v1/admin/markets/ETH-DAI", {}, 400, "invalid_request"),
        ("/v1/admin/markets/ETH-DAI", {"maker_fee": "0.1"}, 400, "invalid_fee"),
        ("/v1/admin/markets/ETH-DAI", {"status": "closed"}, 400, "invalid_request"),
    ]:
        resp = ex.client.patch(path, json=body, headers=bearer(token))
        assert (resp.status_code, error(resp)) == (status, code), (path, body)

    alice, _ = user(ex, "alice")
    for who in (alice, "alice@example.com", "ALICE@example.com"):
        resp = ex.client.get(f"/v1/admin/users/{who}", headers=bearer(token))
        assert resp.status_code == 200, who
        found = resp.get_json()
        assert (found["user_id"], found["email"], found["role"], found["balances"]) == (
            alice, "alice@example.com", "user", {},
        )  # fmt: skip
    for who in ("nobody@example.com", "nobody", "__x__"):
        resp = ex.client.get(f"/v1/admin/users/{who}", headers=bearer(token))
        assert (resp.status_code, error(resp)) == (404, "user_not_found"), who


def test_admin_deposit_and_the_audit(exchange: Exchange, matcher: None) -> None:
    ex = exchange
    list_market(ex)
    alice, alice_token = user(ex, "alice")
    resp = admin_post(
        ex,
        "/v1/admin/deposits",
        {"user_id": alice, "asset": "USDT", "amount": "2500.50", "ref": "tx-1"},
    )
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["amount"] == "2500.5"
    assert balance(ex, alice, "USDT") == (2_500_500_000, 0)
    assert ex.sql("SELECT user_id, amount FROM deposits WHERE ref = 'tx-1'") == [
        [alice, 2_500_500_000]
    ]

    deposit_cases: Cases = [
        ({"user_id": alice, "asset": "USDT", "amount": "1", "ref": "tx-1"}, 409,
         "duplicate_deposit"),
        ({"user_id": "ghost", "asset": "USDT", "amount": "1", "ref": "tx-2"}, 400,
         "unknown_user"),
        ({"user_id": "@fees", "asset": "USDT", "amount": "1", "ref": "tx-2"}, 400,
         "unknown_user"),
        # Not a Firestore document name: no user of ours, not a server error.
        ({"user_id": "text/plain", "asset": "USDT", "amount": "1", "ref": "tx-2"}, 400,
         "unknown_user"),
        ({"user_id": "__all__", "asset": "USDT", "amount": "1", "ref": "tx-2"}, 400,
         "unknown_user"),
        ({"user_id": "..", "asset": "USDT", "amount": "1", "ref": "tx-2"}, 400,
         "unknown_user"),
        ({"user_id": alice, "asset": "DOGE", "amount": "1", "ref": "tx-2"}, 400,
         "unknown_asset"),
        ({"user_id": alice, "asset": "USDT", "amount": "0.0000001", "ref": "tx-2"}, 400,
         "bad_amount"),
        ({"user_id": alice, "asset": "USDT", "amount": "0", "ref": "tx-2"}, 400, "bad_amount"),
        ({"user_id": alice, "asset": "USDT", "amount": 1, "ref": "tx-2"}, 400,
         "invalid_request"),
    ]  # fmt: skip
    for body, status, code in deposit_cases:
        resp = admin_post(ex, "/v1/admin/deposits", body)
        assert (resp.status_code, error(resp)) == (status, code), body
    assert balance(ex, alice, "USDT") == (2_500_500_000, 0)
    # The user's lookup shows the ledger's balances, in the asset's decimals.
    resp = ex.client.get("/v1/admin/users/alice@example.com", headers=bearer(as_admin(ex)))
    assert resp.status_code == 200
    found = resp.get_json()
    assert found["balances"] == {"USDT": {"available": "2500.5", "frozen": "0"}}
    assert [(d["ref"], d["asset"], d["amount"]) for d in found["deposits"]] == [
        ("tx-1", "USDT", "2500.5")
    ]
    assert (found["open_orders"], found["withdrawals"]) == ([], [])

    # Trading moves money between accounts and to the fee account; the audit stays ok.
    _, bob_token = trader(ex, "bob")
    assert order(ex, bob_token, side="sell", price="2000", amount="1").status_code == 201
    assert order(ex, alice_token, side="buy", price="2000", amount="0.5").status_code == 201
    assert order(ex, alice_token, side="buy", price="1000", amount="1").status_code == 201
    resp = ex.client.get(f"/v1/admin/users/{alice}", headers=bearer(as_admin(ex)))
    found = resp.get_json()
    assert found["balances"]["USDT"]["frozen"] == "1000"
    assert [(o["side"], o["price"], o["amount"], o["status"]) for o in found["open_orders"]] == [
        ("buy", "1000", "1", "open")
    ]

    def audit() -> dict[str, Any]:
        resp = ex.client.get("/v1/admin/audit", headers=bearer(as_admin(ex)))
        assert resp.status_code == 200
        report: dict[str, Any] = resp.get_json()
        return report

    report = audit()
    assert report["ok"] is True and report["mismatches"] == [], report
    assert report["seq"] == ex.oplog_count()
    assert report["assets"]["USDT"] == {
        "balances": "102500.5", "fees": "1", "deposits": "102500.5", "withdrawals": "0",
        "ok": True,
    }  # fmt: skip
    assert report["assets"]["ETH"]["fees"] == "0.001" and report["assets"]["ETH"]["ok"]

    # A balance row changed behind the engine's back breaks conservation ...
    ex.sql(
        "UPDATE balances SET available = available + 1 WHERE user_id = :u AND asset = 'USDT'",
        u=alice,
    )
    report = audit()
    assert report["ok"] is False and report["assets"]["USDT"]["ok"] is False
    assert report["mismatches"] == [
        {
            "kind": "conservation", "asset": "USDT", "actual": "102500.500001",
            "expected": "102500.5",
            "message": "sum of balances (fees included) != deposits - settled withdrawals",
        }
    ]  # fmt: skip
    # ... and moving funds between available and frozen breaks the holds.
    ex.sql(
        "UPDATE balances SET available = available - 1 - 5000000, frozen = frozen + 5000000 "
        "WHERE user_id = :u AND asset = 'USDT'",
        u=alice,
    )
    report = audit()
    assert report["ok"] is False and report["assets"]["USDT"]["ok"] is True
    assert [m["kind"] for m in report["mismatches"]] == ["frozen"]
    frozen = report["mismatches"][0]
    assert (frozen["user_id"], frozen["actual"], frozen["expected"]) == (alice, "1005", "1000")


def test_a_role_change_ends_every_session(exchange: Exchange) -> None:
    ex = exchange
    admin_token = as_admin(ex)
    carol, carol_token = user(ex, "carol")
    other = login(ex, "carol@example.com")
    refresh = ex.client.post(
        "/v1/auth/login", json={"email": "carol@example.com", "password": PASSWORD}
    ).get_json()["refresh_token"]

    def set_role(target: str, role: Any, token: str = admin_token) -> TestResponse:
        return ex.client.patch(
            f"/v1/admin/users/{target}", json={"role": role}, headers=bearer(token)
        )

    for bad in ("root", None, 1):
        assert set_role(carol, bad).status_code == 400
    assert error(set_role("nobody@example.com", "admin")) == "user_not_found"
    # Unchanged: nothing ends.
    resp = set_role("carol@example.com", "user")
    assert resp.status_code == 200 and resp.get_json()["role"] == "user"
    assert ex.client.get("/v1/auth/me", headers=bearer(carol_token)).status_code == 200

    resp = set_role(carol, "admin")
    assert resp.status_code == 200, resp.get_json()
    assert (resp.get_json()["user_id"], resp.get_json()["role"]) == (carol, "admin")
    # Every session of carol's ends at once: tokens naming the old role, refresh tokens.
    for token in (carol_token, other):
        resp = ex.client.get("/v1/auth/me", headers=bearer(token))
        assert (resp.status_code, error(resp)) == (401, "session_revoked")
    resp = ex.client.post("/v1/auth/refresh", json={"refresh_token": refresh})
    assert (resp.status_code, error(resp)) == (401, "invalid_refresh_token")
    carol_admin = login(ex, "carol@example.com")
    assert ex.client.get("/v1/admin/audit", headers=bearer(carol_admin)).status_code == 200

    # Demoted again by the first admin: carol's admin token stops everywhere, at once.
    assert set_role(carol, "user").status_code == 200
    resp = ex.client.get("/v1/auth/me", headers=bearer(carol_admin))
    assert (resp.status_code, error(resp)) == (401, "session_revoked")

    # A role change needs the admin's recent proof of who they are: refused to a session
    # whose password was proved an hour ago, granted once the admin proves it again.
    stale = stale_admin_token(ex, age_s=3600)
    resp = set_role(carol, "admin", stale)
    assert (resp.status_code, error(resp)) == (401, "fresh_auth_required")
    fresh = ex.client.post(
        "/v1/auth/reauth", json={"password": PASSWORD}, headers=bearer(stale)
    ).get_json()["access_token"]
    assert set_role(carol, "admin", fresh).status_code == 200


def test_disabling_a_user_ends_their_access(exchange: Exchange) -> None:
    ex = exchange
    admin_token = as_admin(ex)
    dan, dan_token = user(ex, "dan")
    refresh = ex.client.post(
        "/v1/auth/login", json={"email": "dan@example.com", "password": PASSWORD}
    ).get_json()["refresh_token"]
    key = ex.client.post(
        "/v1/api-keys", json={"label": "bot", "scopes": ["read"]}, headers=bearer(dan_token)
    )
    assert key.status_code == 201, key.get_json()

    def act(target: str, what: str, token: str = admin_token) -> TestResponse:
        return ex.client.post(f"/v1/admin/users/{target}/{what}", headers=bearer(token))

    resp = act(dan, "disable", dan_token)
    assert (resp.status_code, error(resp)) == (403, "forbidden")
    assert error(act("nobody@example.com", "disable")) == "user_not_found"
    admin_id = ex.client.get("/v1/auth/me", headers=bearer(admin_token)).get_json()["user_id"]
    resp = act(admin_id, "disable")
    assert (resp.status_code, error(resp)) == (400, "cannot_disable_self")

    resp = act("dan@example.com", "disable")
    assert resp.status_code == 200, resp.get_json()
    assert (resp.get_json()["user_id"], resp.get_json()["disabled"]) == (dan, True)
    # At once: his access token, his refresh token and his API keys stop; login is refused.
    resp = ex.client.get("/v1/auth/me", headers=bearer(dan_token))
    assert (resp.status_code, error(resp)) == (401, "session_revoked")
    resp = ex.client.post("/v1/auth/refresh", json={"refresh_token": refresh})
    assert (resp.status_code, error(resp)) == (401, "invalid_refresh_token")
    keys = ex.firestore.collection("api_keys").where(
        filter=firestore.FieldFilter("user_id", "==", dan)
    )
    assert list(keys.stream()) == []
    resp = ex.client.post("/v1/auth/login", json={"email": "dan@example.com", "password": PASSWORD})
    assert (resp.status_code, error(resp)) == (403, "account_disabled")
    # A wrong password still says only that.
    resp = ex.client.post("/v1/auth/login", json={"email": "dan@example.com", "password": "no"})
    assert (resp.status_code, error(resp)) == (401, "invalid_credentials")
    found = ex.client.get(f"/v1/admin/users/{dan}", headers=bearer(admin_token)).get_json()
    assert found["disabled"] is True

    resp = act(dan, "enable")
    assert (resp.status_code, resp.get_json()["disabled"]) == (200, False)
    assert (
        ex.client.get("/v1/auth/me", headers=bearer(login(ex, "dan@example.com"))).status_code
        == 200
    )

    # Both need the admin's recent proof of who they are.
    ex.configure(FRESH_AUTH_MAX_AGE_S="1")
    time.sleep(1.1)
    resp = act(dan, "disable")
    assert (resp.status_code, error(resp)) == (401, "fresh_auth_required")


def test_bootstrap_creates_then_promotes(
    exchange: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    ex = exchange
    assert bootstrap_main(["--email", "Boss@Example.com", "--password", PASSWORD]) == 0
    assert "created admin boss@example.com" in capsys.readouterr().out
    boss = ex.client.post(
        "/v1/auth/login", json={"email": "boss@example.com", "password": PASSWORD}
    )
    assert boss.status_code == 200
    me = ex.client.get("/v1/auth/me", headers=bearer(boss.get_json()["access_token"]))
    assert me.get_json()["role"] == "admin"

    user_id, before = user(ex, "dave")
    assert bootstrap_main(["--email", "dave@example.com"]) == 0
    assert f"promoted admin dave@example.com (user id {user_id})" in capsys.readouterr().out
    # The promotion ended dave's sessions (their tokens say "user"): he logs in again.
    resp = ex.client.get("/v1/auth/me", headers=bearer(before))
    assert (resp.status_code, error(resp)) == (401, "session_revoked")
    token = login(ex, "dave@example.com")
    resp = ex.client.get("/v1/admin/users/dave@example.com", headers=bearer(token))
    assert resp.status_code == 200
    # A reset to the password he has changes nothing (make run resets its admin's each
    # start); a new one ends his sessions.
    assert bootstrap_main(["--email", "dave@example.com", "--password", PASSWORD,
                           "--reset-password"]) == 0  # fmt: skip
    assert ex.client.get("/v1/auth/me", headers=bearer(token)).status_code == 200
    assert bootstrap_main(["--email", "dave@example.com", "--password", "another long one",
                           "--reset-password"]) == 0  # fmt: skip
    resp = ex.client.get("/v1/auth/me", headers=bearer(token))
    assert (resp.status_code, error(resp)) == (401, "session_revoked")
    assert bootstrap_main(["--email", "nobody@example.com"]) == 2
    assert bootstrap_main(["--email", "x@example.com", "--password", "short"]) == 2


def test_trading_is_rate_limited_per_user(exchange: Exchange) -> None:
    ex = exchange
    ex.configure(TRADE_RATE_PER_USER="3", TRADE_RATE_WINDOW_S="60")
    _, alice_token = user(ex, "alice")
    _, bob_token = user(ex, "bob")
    for _ in range(3):  # refused for their bodies, but counted
        resp = ex.client.post("/v1/orders", json={}, headers=bearer(alice_token))
        assert resp.status_code == 400
    resp = ex.client.post("/v1/orders", json={}, headers=bearer(alice_token))
    assert (resp.status_code, error(resp)) == (429, "rate_limited")
    assert 0 < int(resp.headers["Retry-After"]) <= 60
    resp = ex.client.delete("/v1/orders/1", headers=bearer(alice_token))
    assert resp.status_code == 429
    # Another user has a limit of their own.
    assert ex.client.post("/v1/orders", json={}, headers=bearer(bob_token)).status_code == 400


def test_an_order_is_checked_against_the_market_as_it_is_now(
    exchange: Exchange, matcher: None
) -> None:
    """An order on a market the instance has read is checked against that copy and numbered
    in the limits' round trip only while Redis still holds the same definition
    (api.placing): a market halted since is refused, each request counted once, and only
    the orders that were placed took a number."""
    ex = exchange
    list_market(ex)
    alice, token = trader(ex, "alice")
    for price in ("1990", "1991"):  # the first reads the market, the second uses the copy
        resp = order(ex, token, side="buy", price=price, amount="0.1")
        assert resp.status_code == 201, resp.get_json()
    admin = bearer(as_admin(ex))
    halt = ex.client.patch(f"/v1/admin/markets/{MARKET}", json={"status": "halted"}, headers=admin)
    assert halt.status_code == 200
    resp = order(ex, token, side="buy", price="1992", amount="0.1")
    assert (resp.status_code, error(resp)) == (409, "market_halted")
    resume = ex.client.patch(f"/v1/admin/markets/{MARKET}", json={"status": "open"}, headers=admin)
    assert resume.status_code == 200
    # A finer tick than the copy's is refused by the copy, then checked anew: still refused.
    resp = order(ex, token, side="buy", price="1993.123", amount="0.1")
    assert (resp.status_code, error(resp)) == (400, "bad_tick")
    resp = order(ex, token, side="buy", price="1994", amount="0.1")
    assert resp.status_code == 201, resp.get_json()

    assert int(ex.redis.get(rate_limit_key("trade:user", alice)) or 0) == 5
    rows = ex.sql(
        "SELECT command FROM oplog WHERE command::json->>'user' = :u ORDER BY seq", u=alice
    )
    placed = [orjson.loads(r[0]) for r in rows if orjson.loads(r[0])["command"] == "place_order"]
    assert [c["user_seq"][1] for c in placed] == [1, 2, 3]


def test_local_outbox_keeps_orders_numbered_in_one_trip(exchange: Exchange) -> None:
    """With the outbox (locally), an order numbered in the limits' round trip is kept there
    with its number, exactly as published, before it is published."""
    ex = exchange
    ex.configure(COMMANDS_OUTBOX="1")
    cfg = replace(ex.cfg, pubsub=replace(ex.cfg.pubsub, outbox=True))
    with running(cfg):
        list_market(ex)
        _, token = trader(ex, "alice")
    ex.configure(COMMANDS_OUTBOX="1", API_REPLY_WAIT_S="0.2")
    ids = []
    for price in ("1990", "1991", "1992"):
        resp = order(ex, token, side="buy", price=price, amount="0.1")
        assert resp.status_code == 202, resp.get_json()
        ids.append(resp.get_json()["command_id"])
    kept = {e.command_id: orjson.loads(e.data) for e in outbox.entries(ex.redis)}
    assert sorted(kept) == sorted(ids)
    assert [kept[i]["user_seq"][1] for i in ids] == [1, 2, 3]
    with running(cfg):
        wait_for(lambda: outbox.size(ex.redis) == 0, 15, "the orders applied")
    for command_id in ids:
        [[applied]] = ex.sql("SELECT command FROM oplog WHERE command_id = :c", c=command_id)
        assert orjson.loads(applied)["user_seq"] == kept[command_id]["user_seq"]
