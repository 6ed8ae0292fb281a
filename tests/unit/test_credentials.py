"""Transport-neutral credentials: headers in any case, and an HTTP request's own."""

from __future__ import annotations

import flask
from werkzeug.test import EnvironBuilder

from api.credentials import Credentials, Headers
from api.http import ApiRequest
from ws_service.auth import credentials


def test_headers_are_case_insensitive_and_join_repeats() -> None:
    h = Headers([("X-API-Key", "ak_1"), ("x-forwarded-for", "a"), ("X-Forwarded-For", "b")])
    assert h["x-api-key"] == h["X-API-KEY"] == "ak_1"
    assert h.get("X-Forwarded-For") == "a, b"
    assert "AUTHORIZATION" not in h and h.get("Authorization") is None
    assert list(h) == ["X-API-Key", "x-forwarded-for"] and len(h) == 2
    assert object() not in h
    assert "ak_1" not in repr(h)


def test_an_http_request_gives_what_it_was_sent() -> None:
    environ = EnvironBuilder(
        method="POST",
        path="/v1/orders/a%20b",
        query_string="x=1&y=%20",
        headers=[("authorization", "Bearer t"), ("X-Api-Key", "ak_2")],
        data=b'{"a":1}',
    ).get_environ()
    req = ApiRequest(raw=flask.Request(environ), request_id="r", client_ip="10.0.0.1", body=b"{}")
    creds = req.credentials()
    assert (creds.method, creds.path, creds.query, creds.body, creds.client_ip) == (
        "POST", "/v1/orders/a b", b"x=1&y=%20", b"{}", "10.0.0.1",
    )  # fmt: skip
    assert creds.header("Authorization") == "Bearer t"
    assert creds.header("x-api-key") == "ak_2"


def test_a_handshake_gives_a_get_without_body() -> None:
    creds = credentials("/v1/ws", "a=1", [("AUTHORIZATION", "Bearer t")], "127.0.0.1")
    assert creds == Credentials(
        method="GET",
        path="/v1/ws",
        query=b"a=1",
        headers=creds.headers,
        client_ip="127.0.0.1",
    )
    assert creds.header("authorization") == "Bearer t" and creds.body == b""
