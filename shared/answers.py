"""The JSON answers of every HTTP function: the API's (through api.http) and the wallet's
scheduled jobs, which import nothing of the API layer and so do not ship it.

Errors have one shape everywhere: ``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flask
import orjson


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> flask.Response:
    """``body`` as JSON (orjson: dicts, lists, str, int, bool, None; no floats for money)."""
    # content_type, not mimetype: the same header without werkzeug working it out per answer
    return flask.Response(
        orjson.dumps(body),
        status=status,
        headers=dict(headers) if headers else None,
        content_type="application/json",
    )


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> flask.Response:
    """The error shape of every answer: ``code`` a stable snake_case string clients may branch
    on, ``message`` for people."""
    return json_response({"error": {"code": code, "message": message}}, status, headers)
