"""The scheduled audits, run by Cloud Scheduler (OIDC; the function is not public).

One call is one run of the books' conservation audit (shared/books_audit.py): its result is
stored in ``audit_runs`` and a difference raises the ``audit_difference`` alert
(shared/audit_runs.py, docs/operations.md). Answers the run's short report as JSON.
"""

from __future__ import annotations

import logging

import flask

from shared import audit_runs, logs
from shared.answers import error_response, json_response

logs.setup()
log = logging.getLogger("audits")


def audits(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    try:
        report = audit_runs.run_books_once()
    except Exception as exc:  # logged, redacted; the answer says nothing of the cause
        log.exception("audits run failed: %s", type(exc).__name__, extra={"job": "audits"})
        return error_response(500, "job_failed", "the audit run failed; see the logs")
    return json_response(report)
