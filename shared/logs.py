"""Structured JSON logs on stdout with Cloud Logging's field names.

Cloud Run and Cloud Functions parse one JSON object per line: ``severity`` sets the level,
``message`` the summary, and every other field lands in ``jsonPayload`` for queries.

Secrets never reach a line: whatever registers a secret (``hide``, ``hide_url``; the wallet
jobs their RPC URL, Redis URL and Postgres password, ``SecretSource.read`` every secret it
reads) has it replaced by ``[redacted]`` in the message, the stack trace and every field. A
node provider's URL carries its API key, and web3 and requests put the URL, or its path
alone, into their exceptions' messages.

Every line logged while a request is handled carries its ``request_id`` (and, behind Google's
front end, ``logging.googleapis.com/trace``): ``api.http.Api`` sets them with
``request_context`` for the length of the request, whatever logger the line comes from.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import orjson

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
REDACTED: Final = "[redacted]"
_MIN_SECRET: Final = 8
"""Shorter strings are not taken as secrets: replacing them would mangle every line."""
_secrets: tuple[str, ...] = ()
_hidden: tuple[tuple[str, ...], tuple[bytes, ...]] = ((), ())
"""The secrets, and each as it reads inside a JSON string (one object: a line is checked
against the secrets it is scrubbed of)."""
_secrets_lock = threading.Lock()


def hide(*secrets: str | None) -> None:
    """Never log these strings (those of at least 8 characters)."""
    global _secrets, _hidden
    with _secrets_lock:
        known = {*_secrets, *(s for s in secrets if s and len(s) >= _MIN_SECRET)}
        _secrets = tuple(sorted(known, key=len, reverse=True))  # a longer one first
        # JSON escapes character by character: a secret anywhere in a line's strings shows
        # as its own escaped form in the line.
        _hidden = (_secrets, tuple(orjson.dumps(s)[1:-1] for s in _secrets))


def hide_url(url: str | None) -> None:
    """Never log this URL, nor the parts of it that carry a key when they appear alone: the
    password, the path's segments and the query's values (a provider's API key sits in one;
    the host and a short path are no secret and stay readable)."""
    if not url:
        return
    parts = urlsplit(url)
    hide(
        url,
        parts.username,
        parts.password,
        parts.path if len(parts.path.strip("/")) >= _MIN_SECRET else None,
        parts.query,
        *parts.path.split("/"),
        *(value for _, value in parse_qsl(parts.query)),
    )


def redact(text: str, secrets: tuple[str, ...] | None = None) -> str:
    for secret in _secrets if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value


_request_fields: ContextVar[Mapping[str, str] | None] = ContextVar(
    "request_log_fields", default=None
)
"""The fields every log line of the current request carries (empty outside a request)."""

TRACE_FIELD: Final = "logging.googleapis.com/trace"


def trace_of(header: str | None, project: str | None) -> str | None:
    """Cloud Logging's trace name from an ``X-Cloud-Trace-Context`` header
    (``TRACE_ID/SPAN_ID;o=1``), or None without a header or a project."""
    trace_id = (header or "").split("/", 1)[0].strip()
    if not trace_id or not project:
        return None
    return f"projects/{project}/traces/{trace_id}"


@contextmanager
def request_context(request_id: str, trace: str | None = None) -> Iterator[None]:
    """Within it, every log line carries ``request_id`` (and ``trace`` when given)."""
    fields = {"request_id": request_id}
    if trace:
        fields[TRACE_FIELD] = trace
    token = _request_fields.set(fields)
    try:
        yield
    finally:
        _request_fields.reset(token)


def current_request_id() -> str | None:
    """The id of the request being handled, or None outside one."""
    fields = _request_fields.get()
    return fields.get("request_id") if fields else None


def _fallback(value: Any) -> str:
    """What orjson cannot encode, as text (an exception in ``extra``, say), redacted."""
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]  # UTC, as the trailing "Z" says
    _second: tuple[int, str] = (-1, "")
    """The last second formatted, and its text: most lines share their second."""

    def format(self, record: logging.LogRecord) -> str:
        second, text = self._second
        if int(record.created) != second:
            second = int(record.created)
            text = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "time": f"{text}.{int(record.msecs):03d}Z",
        }
        entry.update(_request_fields.get() or {})
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        secrets, escaped = _hidden
        line = orjson.dumps(entry, default=_fallback)
        # Scrubbed only when a secret shows: walking every field of every line costs more
        # than writing it (an API request's access line).
        if secrets and any(e in line for e in escaped):
            line = orjson.dumps(_scrub(entry, secrets), default=_fallback)
        return line.decode()


def setup(level: str = "INFO") -> None:
    """Route the root logger to stdout as JSON lines (idempotent)."""
    # A line carries none of the caller's file, line, thread or process (``JsonFormatter``
    # leaves the record's own attributes out): logging need not look them up for each record
    # (the stack walk to find the caller, the thread's and process's names), which is work
    # at every request (the API's access line). The switches are logging's documented ones.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_exchange_json", False):
            return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler._exchange_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
