"""The sweep, run by Cloud Scheduler (OIDC; the function is not public).

One call is one run (wallet/sweep.py): deposit addresses' ETH and tokens to the hot
wallet, gas top-ups for token sweeps. Answers the run's report as JSON.
"""

from __future__ import annotations

import logging

import flask

from shared import logs
from shared.answers import error_response, json_response
from wallet.jobs import run_job, sweep_once

logs.setup()
log = logging.getLogger("wallet.sweep")


def sweep(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    report = run_job("sweep", sweep_once)
    if report is None:  # logged, redacted; the answer says nothing of the cause
        return error_response(500, "job_failed", "the sweep run failed; see the logs")
    return json_response(report)
