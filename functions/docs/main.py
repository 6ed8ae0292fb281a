"""The docs function: the OpenAPI 3.1 document of the whole API at ``GET /v1/openapi.json``
(public, cacheable for five minutes).

The document is ``openapi.json`` beside this file, generated from every function's route
declarations (``python -m infra.api_spec --write``; api.openapi builds it).

It needs no secrets: only the HTTP settings of the environment (shared.config.HttpConfig:
``API_CORS_ORIGINS``, ...).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

import flask
import orjson

from api.http import Api, ApiRequest, HttpSettings
from api.openapi import ok
from shared import logs
from shared.config import HttpConfig
from shared.instance import per_instance

logs.setup()


@per_instance
def _settings() -> HttpSettings:
    """The HTTP settings alone (``HttpConfig``): no auth keys, no Redis."""
    return HttpSettings.from_config(HttpConfig.load())


api = Api("docs", settings=_settings)


DOCUMENT: Final = Path(__file__).resolve().parent / "openapi.json"
"""The document, generated from every function's routes (python -m infra.api_spec --write):
this function, deployed alone, cannot import the others."""


@cache
def _body() -> bytes:
    return orjson.dumps(orjson.loads(DOCUMENT.read_bytes()))


def docs(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return api(request)


@api.route(
    "GET",
    "/v1/openapi.json",
    summary="This document",
    operation_id="openapi",
    tag="meta",
    auth="none",
    responses={200: ok("OpenAPI 3.1", {"type": "object"})},
)
def openapi_json(req: ApiRequest) -> flask.Response:
    return flask.Response(
        _body(),
        mimetype="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
