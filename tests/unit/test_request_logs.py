"""Every log line of a request carries its id (and Cloud Trace's field), whatever logger
writes it; a line outside a request carries neither."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import flask
import orjson
import pytest
from werkzeug.test import EnvironBuilder

from api.http import Api, ApiRequest, HttpSettings, json_response
from shared import logs


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("handler_code")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def _api() -> Api:
    api = Api("t", settings=lambda: HttpSettings(project="proj"))

    @api.route("GET", "/v1/ping")
    def ping(req: ApiRequest) -> flask.Response:
        logging.getLogger("handler_code").info("inside")
        return json_response({"ok": True})

    return api


def _call(api: Api, headers: dict[str, str]) -> flask.Response:
    environ = EnvironBuilder(
        path="/v1/ping", method="GET", headers=list(headers.items())
    ).get_environ()
    return api(flask.Request(environ))


def _entries(out: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_inside_a_handler_carries_the_request_id(lines: io.StringIO) -> None:
    response = _call(_api(), {"X-Request-Id": "req-42"})
    assert response.status_code == 200
    logging.getLogger("handler_code").info("outside")
    inside, outside = _entries(lines)
    assert inside["message"] == "inside" and inside["request_id"] == "req-42"
    assert logs.TRACE_FIELD not in inside
    assert outside["message"] == "outside"
    assert "request_id" not in outside and logs.TRACE_FIELD not in outside
    assert logs.current_request_id() is None


def test_a_line_inside_a_handler_carries_the_cloud_trace(lines: io.StringIO) -> None:
    _call(_api(), {"X-Request-Id": "req-7", "X-Cloud-Trace-Context": "abc123/456;o=1"})
    (inside,) = _entries(lines)
    assert inside["request_id"] == "req-7"
    assert inside[logs.TRACE_FIELD] == "projects/proj/traces/abc123"


def test_a_generated_request_id_is_the_one_echoed() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    access = logging.getLogger("api.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        response = _call(_api(), {})
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    (entry,) = _entries(out)
    assert entry["request_id"] == response.headers["X-Request-Id"]


def test_a_listen_key_in_the_query_never_reaches_the_access_log() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    access = logging.getLogger("api.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        environ = EnvironBuilder(
            path="/v1/ping", method="GET", query_string="listenKey=s3cret&limit=5"
        ).get_environ()
        assert _api()(flask.Request(environ)).status_code == 200
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    (entry,) = _entries(out)
    assert "s3cret" not in out.getvalue()
    http_request = entry["httpRequest"]
    assert isinstance(http_request, dict)
    assert http_request["requestUrl"] == "/v1/ping?listenKey=REDACTED&limit=5"
