"""A backing service down is answered 503 ``unavailable`` by the Api wrapper, once for
every function; any other failure stays a 500."""

from __future__ import annotations

import flask
import pytest
import redis
from google.api_core import exceptions as google_exceptions
from werkzeug.test import EnvironBuilder

from api.http import Api, ApiRequest, HttpSettings
from shared.db import DatabaseUnavailableError


def _google(kind: type[Exception], message: str) -> Exception:
    """google.api_core's exceptions are untyped: built without a typed call."""
    if issubclass(kind, google_exceptions.RetryError):
        return kind(message, None)
    return kind(message)


def _call(failure: Exception) -> flask.Response:
    api = Api("t", settings=lambda: HttpSettings())

    @api.route("GET", "/v1/fail")
    def fail(req: ApiRequest) -> flask.Response:
        raise failure

    environ = EnvironBuilder(path="/v1/fail", headers=[("X-Request-Id", "r-1")]).get_environ()
    return api(flask.Request(environ))


@pytest.mark.parametrize(
    "failure",
    [
        redis.ConnectionError("refused"),
        redis.TimeoutError("timed out"),
        redis.BusyLoadingError("loading"),
        DatabaseUnavailableError("connection lost twice"),
        _google(google_exceptions.ServiceUnavailable, "firestore down"),
        _google(google_exceptions.DeadlineExceeded, "too slow"),
        _google(google_exceptions.RetryError, "gave up"),
    ],
)
def test_infrastructure_failures_are_503(failure: Exception) -> None:
    response = _call(failure)
    assert response.status_code == 503
    assert response.get_json() == {
        "error": {"code": "unavailable", "message": "a backing service is unavailable; try again"}
    }
    assert response.headers["X-Request-Id"] == "r-1"


@pytest.mark.parametrize(
    "failure",
    [
        redis.ResponseError("WRONGTYPE"),
        _google(google_exceptions.NotFound, "no doc"),
        ValueError("bug"),
    ],
)
def test_other_failures_stay_500(failure: Exception) -> None:
    response = _call(failure)
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal"
