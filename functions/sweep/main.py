"""The sweep, run by Cloud Scheduler (OIDC; the function is not public).

One call is one run (shared/wallet/sweep.py): deposit addresses' ETH and tokens to the hot
wallet, gas top-ups for token sweeps. Answers the run's report as JSON.
"""

from __future__ import annotations

import logging

import flask

from shared import logs
from shared.http import json_response
from shared.wallet.jobs import sweep_once

logs.setup()
log = logging.getLogger("wallet.sweep")


def sweep(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return json_response(sweep_once())
