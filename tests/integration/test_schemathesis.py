"""The OpenAPI document against the running code, by schemathesis, and bad input by hand.

Schemathesis reads the document the routes make (``infra.api_spec``, what
``GET /v1/openapi.json`` must serve) and sends generated requests to every operation of the
local gateway (every function behind it):
the document's examples, its coverage cases (boundaries, each constraint broken in turn) and a
modest number of random ones, valid and invalid, derandomized so that a run is repeatable.
Each answer must not be a 5xx, must have a documented status code, a documented content type,
documented headers and a body that fits the documented schema; an invalid request must be
refused with a 4xx, and an operation that needs credentials must refuse a request without
them. Requests carry a real user's access token (an admin's on the admin routes), against a
real matcher (in a thread), the Pub/Sub and Firestore emulators, Postgres and Redis, so a
valid order is placed and matched.

Then bad input on the two routes that move money, placing an order and crediting a deposit:
JSON numbers for amounts, negative, zero, too many decimals, 10^60, unknown fields, wrong
types. Each is 400 in the error format, and nothing reaches the oplog.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis
import schemathesis
from flask import Flask
from google.cloud import firestore
from hypothesis import HealthCheck, settings
from msgspec.structs import replace
from schemathesis import Case as GenericCase
from schemathesis.config import SchemathesisConfig

from infra.api_spec import document
from infra.gateway import create_app
from infra.services import Stack
from shared.config import MatcherConfig, PostgresConfig, PubSubConfig
from shared.db import connect
from shared.pubsub import ensure_topics
from tests.integration import test_orders_admin as ex
from tests.integration.conftest import TEMPLATE_DB
from tests.integration.function_env import point_functions_at, reset_functions
from tests.integration.matcher_helpers import running

Case = GenericCase[Any]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MAX_EXAMPLES = 50
"""Random cases per operation (the fuzzing phase), after its examples and coverage cases."""
SEED = 20240101

CONFIG: dict[str, Any] = {
    "seed": SEED,
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
        # Our own bearer token on every request, no generated API-key headers beside it.
        "with-security-parameters": False,
    },
    "phases": {"stateful": {"enabled": False}},
    "checks": {
        # Valid by the schema is not the same as acceptable: an unknown market or a price off
        # the tick fits the document and is rightly refused (400).
        "positive_data_acceptance": {"enabled": False},
    },
}


class Gateway:
    """A WSGI app that passes every request to the gateway of the running test module (the
    schema is made when the module is imported, the gateway only once the services run)."""

    def __init__(self) -> None:
        self.app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "the live fixture sets the gateway"
        return self.app(environ, start_response)


gateway = Gateway()
schema = schemathesis.openapi.from_dict(
    orjson.loads(orjson.dumps(document())),  # a copy: the loader may change what it is given
    config=SchemathesisConfig.from_dict(CONFIG),
)
schema.app = gateway  # requests (and the checks' own probes) go to the gateway in-process


@dataclass
class Live:
    """The exchange as the tests see it: the gateway app, the callers' tokens."""

    app: Flask
    exchange: ex.Exchange
    user_id: str
    user_token: str
    admin_token: str

    def headers_for(self, case: Case) -> dict[str, str]:
        path: str = case.operation.path
        token = self.admin_token if path.startswith("/v1/admin") else self.user_token
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def live(stack: Stack) -> Iterator[Live]:
    """Every function behind the gateway and a matcher, on a database, Firestore project,
    Pub/Sub names and Redis of this module's own; the ETH-USDT market with a book, two
    traders who have traded, and an admin."""
    suffix = uuid.uuid4().hex[:12]
    project = f"st-{suffix}"
    admin_db = connect(PostgresConfig.load())
    admin_db.run(f"CREATE DATABASE st_{suffix} TEMPLATE {TEMPLATE_DB}")
    pg = replace(PostgresConfig.load(), database=f"st_{suffix}")
    rds = redis.Redis.from_url(os.environ["REDIS_URL"])
    rds.flushall()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOOGLE_CLOUD_PROJECT", project)
        fs = firestore.Client(project=project)
        ps = PubSubConfig(
            project=project, commands_topic=f"commands-{suffix}",
            commands_subscription=f"commands-matcher-{suffix}", events_topic=f"events-{suffix}",
            dead_letter_topic=f"commands-dl-{suffix}", max_delivery_attempts=5,
        )  # fmt: skip
        ensure_topics(ps)
        cfg = MatcherConfig(
            postgres=pg, pubsub=ps, redis_url=os.environ["REDIS_URL"], port=0, batch_max=1000,
            batch_wait_ms=5, snapshot_every=0, snapshot_seconds=3600.0, reply_ttl_s=600,
            depth_levels=20,
        )  # fmt: skip

        configure = point_functions_at(
            mp, cfg,
            # Schemathesis sends many requests from one address, as one user.
            AUTH_RATE_PER_IP="100000", AUTH_RATE_PER_EMAIL="100000",
            AUTH_FAILURES_PER_IP="100000", AUTH_FAILURES_PER_EMAIL_IP="100000",
            TRADE_RATE_PER_USER="100000", TRADE_RATE_PER_IP="100000",
            # The wallet routes: anvil's dev mnemonic (deposit addresses are its accounts).
            WALLET_MNEMONIC="test test test test test test test test test test test junk",
            CHAIN_ID="31337",
        )  # fmt: skip
        app = create_app()
        exchange = ex.Exchange(app.test_client(), cfg, fs, rds, configure)
        try:
            with running(cfg):
                ex.list_market(exchange)
                alice, alice_token = ex.trader(exchange, "alice")
                _, bob_token = ex.trader(exchange, "bob")
                # Order 1 is alice's, as the document's example order id.
                for token, fields in (
                    (alice_token, {"side": "buy", "price": "1990", "amount": "1",
                                   "client_order_id": "bid-1"}),
                    (bob_token, {"side": "sell", "price": "2010", "amount": "1",
                                 "client_order_id": "ask-1"}),
                    (bob_token, {"side": "sell", "price": "2005.5", "amount": "0.5"}),
                    (alice_token, {"side": "buy", "price": "2006", "amount": "0.2"}),  # a trade
                ):  # fmt: skip
                    resp = ex.order(exchange, token, None, **fields)
                    assert resp.status_code == 201, resp.get_json()
                gateway.app = app
                yield Live(app, exchange, alice, alice_token, ex.as_admin(exchange))
        finally:
            gateway.app = None
            reset_functions()
            fs.close()  # type: ignore[no-untyped-call]
            host = os.environ["FIRESTORE_EMULATOR_HOST"]
            url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
            with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10):
                pass
            rds.close()
            admin_db.run(f"DROP DATABASE IF EXISTS st_{suffix} WITH (FORCE)")
            admin_db.close()


# -------------------------------------------------------------------------------- bad input

BIG = "1" + "0" * 60
"""10^60: far beyond any amount (decimal strings are at most 41 characters)."""
LIMIT: dict[str, Any] = {"market": "ETH-USDT", "side": "buy", "type": "limit"}
NOT_DECIMALS = [
    "1e3", "1E3", "NaN", "Infinity", "-0", " 1", "1 ", "1\n", "+1", ".5", "5.", "0x10",
    "1_000", "1,5", "\u0661", "00.1", "", "1.2.3",
]  # fmt: skip
"""Strings that are not plain decimals (exponents, signs, spaces, a final newline, digit
separators, an Arabic-Indic one, ...), each refused although Python's Decimal or int would
read most of them."""

BAD_ORDERS: list[tuple[str, dict[str, Any] | bytes, str]] = [
    # JSON numbers where a decimal string belongs
    ("float amount", {**LIMIT, "price": "2000", "amount": 0.1}, "invalid_request"),
    ("float price", {**LIMIT, "price": 1999.99, "amount": "0.1"}, "invalid_request"),
    ("integer amount", {**LIMIT, "price": "2000", "amount": 1}, "invalid_request"),
    ("float quote_amount", {"market": "ETH-USDT", "side": "buy", "type": "market",
                            "quote_amount": 100.5}, "invalid_request"),
    ("huge JSON number", b'{"market":"ETH-USDT","side":"buy","type":"limit","price":"2000",'
                         b'"amount":1e60}', "invalid_request"),
    ("huge JSON integer", b'{"market":"ETH-USDT","side":"buy","type":"limit","price":"2000",'
                          b'"amount":1' + b"0" * 60 + b"}", "invalid_request"),
    # negative and zero
    ("negative amount", {**LIMIT, "price": "2000", "amount": "-1"}, "bad_amount"),
    ("negative price", {**LIMIT, "price": "-2000", "amount": "1"}, "bad_price"),
    ("negative quote_amount", {"market": "ETH-USDT", "side": "buy", "type": "market",
                               "quote_amount": "-100"}, "bad_amount"),
    ("zero amount", {**LIMIT, "price": "2000", "amount": "0.0000"}, "bad_amount"),
    ("zero price", {**LIMIT, "price": "0.00", "amount": "1"}, "bad_price"),
    # more decimals than the asset (ETH 8, USDT 6) or the market (tick 0.01, step 0.0001)
    ("amount past ETH's precision", {**LIMIT, "price": "2000", "amount": "0.123456789"},
     "bad_step"),
    ("price past USDT's precision", {**LIMIT, "price": "2000.0000001", "amount": "1"},
     "bad_tick"),
    ("quote_amount past USDT's precision", {"market": "ETH-USDT", "side": "buy",
                                            "type": "market", "quote_amount": "100.0000001"},
     "bad_amount"),
    # huge
    ("amount 10^60", {**LIMIT, "price": "2000", "amount": BIG}, "bad_amount"),
    ("price 10^60", {**LIMIT, "price": BIG, "amount": "1"}, "bad_price"),
    ("quote_amount 10^60", {"market": "ETH-USDT", "side": "buy", "type": "market",
                            "quote_amount": BIG}, "bad_amount"),
    ("price 10^60 with decimals", {**LIMIT, "price": BIG + ".5", "amount": "1"}, "bad_price"),
    # unknown fields
    ("someone else's user", {**LIMIT, "price": "2000", "amount": "1", "user": "bob"},
     "invalid_request"),
    ("a fee of our own", {**LIMIT, "price": "2000", "amount": "1", "fee": "0"},
     "invalid_request"),
    ("a field in another case", {**LIMIT, "Price": "2000", "amount": "1"}, "invalid_request"),
    # wrong types
    ("market a number", {**LIMIT, "market": 1, "price": "2000", "amount": "1"},
     "invalid_request"),
    ("side a boolean", {**LIMIT, "side": True, "price": "2000", "amount": "1"},
     "invalid_request"),
    ("type a list", {**LIMIT, "type": ["limit"], "price": "2000", "amount": "1"},
     "invalid_request"),
    ("post_only a string", {**LIMIT, "price": "2000", "amount": "1", "post_only": "true"},
     "invalid_request"),
    ("time_in_force a number", {**LIMIT, "price": "2000", "amount": "1", "time_in_force": 1},
     "invalid_request"),
    ("client_order_id a number", {**LIMIT, "price": "2000", "amount": "1",
                                  "client_order_id": 7}, "invalid_request"),
    ("price an object", {**LIMIT, "price": {"value": "2000"}, "amount": "1"},
     "invalid_request"),
    ("amount a list", {**LIMIT, "price": "2000", "amount": ["1"]}, "invalid_request"),
    ("stp null", {**LIMIT, "price": "2000", "amount": "1", "stp": None}, "invalid_request"),
    ("a list body", b'[{"market":"ETH-USDT"}]', "invalid_request"),
    ("a string body", b'"buy"', "invalid_request"),
    ("a null body", b"null", "invalid_request"),
    ("an empty body", b"", "invalid_json"),
    ("deeply nested", b'{"market":' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_request"),
    *((f"amount {v!r}", {**LIMIT, "price": "2000", "amount": v}, "bad_amount")
      for v in NOT_DECIMALS),
    *((f"price {v!r}", {**LIMIT, "price": v, "amount": "1"}, "bad_price")
      for v in NOT_DECIMALS),
]  # fmt: skip

FILL = "<fill>"
"""Stands for alice's user id, or a new unique ref."""
DEPOSIT: dict[str, Any] = {"user_id": FILL, "asset": "USDT", "amount": "1", "ref": FILL}
BAD_DEPOSITS: list[tuple[str, dict[str, Any] | bytes, str]] = [
    ("float amount", {**DEPOSIT, "amount": 1.5}, "invalid_request"),
    ("integer amount", {**DEPOSIT, "amount": 1}, "invalid_request"),
    ("huge JSON number", {**DEPOSIT, "amount": 1e60}, "invalid_request"),
    ("huge JSON integer", {**DEPOSIT, "amount": 10**60}, "invalid_request"),
    ("negative amount", {**DEPOSIT, "amount": "-1"}, "bad_amount"),
    ("zero amount", {**DEPOSIT, "amount": "0"}, "bad_amount"),
    ("zero with decimals", {**DEPOSIT, "amount": "0.000000"}, "bad_amount"),
    ("amount past USDT's precision", {**DEPOSIT, "amount": "1.0000001"}, "bad_amount"),
    ("amount 10^60", {**DEPOSIT, "amount": BIG}, "bad_amount"),
    ("unknown field", {**DEPOSIT, "fee": "0"}, "invalid_request"),
    ("unknown field: a balance", {**DEPOSIT, "available": "1000000"}, "invalid_request"),
    ("user_id a number", {**DEPOSIT, "user_id": 1}, "invalid_request"),
    ("asset null", {**DEPOSIT, "asset": None}, "invalid_request"),
    ("ref a number", {**DEPOSIT, "ref": 5}, "invalid_request"),
    ("ref null", {**DEPOSIT, "ref": None}, "invalid_request"),
    ("empty ref", {**DEPOSIT, "ref": ""}, "invalid_request"),
    ("empty user_id", {**DEPOSIT, "user_id": ""}, "invalid_request"),
    ("asset in lower case", {**DEPOSIT, "asset": "usdt"}, "unknown_asset"),
    ("a list body", b'[{"asset":"USDT"}]', "invalid_request"),
    ("not JSON", b"amount=1", "invalid_json"),
    *((f"amount {v!r}", {**DEPOSIT, "amount": v}, "bad_amount") for v in NOT_DECIMALS),
]  # fmt: skip


def _error_code(body: bytes) -> str:
    """The code of an answer in the API's one error format (and nothing else in it)."""
    error = orjson.loads(body)
    assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}, error
    assert isinstance(error["error"]["message"], str) and error["error"]["message"]
    code: str = error["error"]["code"]
    return code


def _open_market(live: Live) -> None:
    """ETH-USDT open (the schemathesis run may have halted it: it tries the examples)."""
    if live.exchange.client.get("/v1/markets/ETH-USDT").get_json()["status"] == "open":
        return
    resp = live.exchange.client.patch(
        "/v1/admin/markets/ETH-USDT",
        json={"status": "open"},
        headers={"Authorization": f"Bearer {live.admin_token}"},
    )
    assert resp.status_code == 200, resp.get_json()


def _last_commands(live: Live, since: int) -> list[list[Any]]:
    return live.exchange.sql(
        "SELECT command::json->>'command', command::json->>'user' FROM oplog "
        "WHERE seq > :s ORDER BY seq",
        s=since,
    )


@pytest.mark.parametrize(
    ("body", "code"), [(b, c) for _, b, c in BAD_ORDERS], ids=[n for n, _, _ in BAD_ORDERS]
)
def test_bad_orders_are_400_and_publish_nothing(
    live: Live, body: dict[str, Any] | bytes, code: str
) -> None:
    _open_market(live)
    client, bearer = live.exchange.client, {"Authorization": f"Bearer {live.user_token}"}
    before = live.exchange.oplog_count()
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = client.post("/v1/orders", data=raw, content_type="application/json", headers=bearer)
    assert (resp.status_code, _error_code(resp.get_data())) == (400, code), resp.get_json()
    # A good order of the same user after it (the same ordering key: anything the bad one
    # had published would be applied first) is the only new command.
    good = client.post(
        "/v1/orders",
        json={**LIMIT, "price": "1500", "amount": "0.01"},
        headers=bearer,
    )
    assert good.status_code == 201, good.get_json()
    assert _last_commands(live, before) == [["place_order", live.user_id]]


@pytest.mark.parametrize(
    ("body", "code"), [(b, c) for _, b, c in BAD_DEPOSITS], ids=[n for n, _, _ in BAD_DEPOSITS]
)
def test_bad_deposits_are_400_and_publish_nothing(
    live: Live, body: dict[str, Any] | bytes, code: str
) -> None:
    client, bearer = live.exchange.client, {"Authorization": f"Bearer {live.admin_token}"}
    balance = ex.balance(live.exchange, live.user_id, "USDT")
    before = live.exchange.oplog_count()
    if isinstance(body, dict):
        filled = {"user_id": live.user_id, "ref": uuid.uuid4().hex}
        # The standard library's encoder: orjson refuses integers beyond 64 bits.
        body = json.dumps({k: filled[k] if v == FILL else v for k, v in body.items()}).encode()
    resp = client.post(
        "/v1/admin/deposits", data=body, content_type="application/json", headers=bearer
    )
    assert (resp.status_code, _error_code(resp.get_data())) == (400, code), resp.get_json()
    assert ex.balance(live.exchange, live.user_id, "USDT") == balance
    # A good deposit to the same user (its ordering key) after it is the only new command.
    good = client.post(
        "/v1/admin/deposits",
        json={"user_id": live.user_id, "asset": "USDT", "amount": "1", "ref": uuid.uuid4().hex},
        headers=bearer,
    )
    assert good.status_code == 201, good.get_json()
    assert _last_commands(live, before) == [["deposit", live.user_id]]


# -------------------------------------------------------------------------------- schemathesis


def test_the_served_document_is_the_one_tested(live: Live) -> None:
    resp = live.exchange.client.get("/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert orjson.loads(resp.get_data()) == orjson.loads(orjson.dumps(document()))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_document(case: Case, live: Live) -> None:
    case.call_and_validate(headers=live.headers_for(case))
