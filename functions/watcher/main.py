"""The deposit watcher, run by Cloud Scheduler (OIDC; the function is not public).

One call is one run (wallet/watcher.py): scan new blocks, follow reorganisations,
credit confirmed deposits. Answers the run's report as JSON; overlapping calls are safe.
"""

from __future__ import annotations

import logging

import flask

from shared import logs
from shared.answers import error_response, json_response
from wallet.jobs import run_job, watch_once

logs.setup()
log = logging.getLogger("wallet.watcher")


def watcher(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    report = run_job("watcher", watch_once)
    if report is None:  # logged, redacted; the answer says nothing of the cause
        return error_response(500, "job_failed", "the watcher run failed; see the logs")
    return json_response(report)
