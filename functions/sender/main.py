"""The withdrawal sender, run by Cloud Scheduler (OIDC; the function is not public).

One call is one run (wallet/sender.py): sign held withdrawals from the hot wallet
(stored before broadcast), broadcast, follow to confirmations, settle or refund. Answers the
run's report as JSON; a crash at any point and a retry never send a second transaction.
"""

from __future__ import annotations

import logging

import flask

from shared import logs
from shared.answers import error_response, json_response
from wallet.jobs import run_job, send_once

logs.setup()
log = logging.getLogger("wallet.sender")


def sender(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    report = run_job("sender", send_once)
    if report is None:  # logged, redacted; the answer says nothing of the cause
        return error_response(500, "job_failed", "the sender run failed; see the logs")
    return json_response(report)
