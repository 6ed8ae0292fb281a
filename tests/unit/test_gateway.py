"""The local gateway's routing table: longest prefix first, and method-qualified prefixes
("GET /v1/orders") ahead of plain ones of the same path, CORS preflights included."""

from __future__ import annotations

import flask
import pytest
from flask.testing import FlaskClient

from api.http import REQUEST_ID_HEADER, SECURITY_HEADERS
from functions.docs.main import docs
from infra.gateway import ROUTES, Endpoint, create_app


def _answer(name: str) -> Endpoint:
    def endpoint(request: flask.Request) -> flask.Response:
        return flask.Response(f"{name} {request.method} {request.path}", status=200)

    return endpoint


@pytest.fixture
def client() -> FlaskClient:
    return create_app(
        [
            ("/v1/orders", _answer("orders")),
            ("GET /v1/orders", _answer("queries")),
            ("/v1", _answer("fallback")),
        ]
    ).test_client()


def test_method_qualified_prefix_wins_for_its_method(client: FlaskClient) -> None:
    assert client.get("/v1/orders").text == "queries GET /v1/orders"
    assert client.get("/v1/orders/42").text == "queries GET /v1/orders/42"
    assert client.post("/v1/orders").text == "orders POST /v1/orders"
    assert client.delete("/v1/orders/42").text == "orders DELETE /v1/orders/42"
    assert client.get("/v1/orders2").text == "fallback GET /v1/orders2"


def test_preflight_goes_where_its_request_will(client: FlaskClient) -> None:
    asks_get = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    asks_delete = {"Origin": "https://app.example", "Access-Control-Request-Method": "DELETE"}
    assert client.options("/v1/orders/42", headers=asks_get).text.startswith("queries")
    assert client.options("/v1/orders/42", headers=asks_delete).text.startswith("orders")
    assert client.options("/v1/orders/42").text.startswith("orders")


def test_unknown_path_and_bad_method_prefix() -> None:
    resp = create_app([]).test_client().get("/v1/nothing")
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"
    with pytest.raises(ValueError, match="unknown method"):
        create_app([("FETCH /v1/x", _answer("x"))])


def test_the_gateways_own_404_carries_the_functions_security_headers() -> None:
    client = create_app([("/v1/openapi.json", docs)]).test_client()
    from_function = client.get("/v1/openapi.json/nothing")  # the docs function's own 404
    from_gateway = client.get("/v1/nothing")  # no function serves it
    assert (from_function.status_code, from_gateway.status_code) == (404, 404)
    for name, value in SECURITY_HEADERS:
        assert from_function.headers.get(name) == value, (name, from_function.headers)
        assert from_gateway.headers.get(name) == value, (name, from_gateway.headers)
    assert from_gateway.headers.get(REQUEST_ID_HEADER)


def test_every_read_of_orders_is_routed_to_queries() -> None:
    rows = dict(ROUTES)
    assert rows["GET /v1/orders"] == "functions.queries.main:queries"
    for prefix in ("/v1/time", "/v1/assets", "/v1/markets", "/v1/tickers", "/v1/balances"):
        assert rows[prefix] == "functions.queries.main:queries"
    for prefix in ("/v1/trades", "/v1/ledger"):
        assert rows[prefix] == "functions.queries.main:queries"
