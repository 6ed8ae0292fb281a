"""The withdrawal sender, run by Cloud Scheduler (OIDC; the function is not public).

One call is one run (shared/wallet/sender.py): sign held withdrawals from the hot wallet
(stored before broadcast), broadcast, follow to confirmations, settle or refund. Answers the
run's report as JSON; a crash at any point and a retry never send a second transaction.
"""

from __future__ import annotations

import logging

import flask

from shared import logs
from shared.http import json_response
from shared.wallet.jobs import send_once

logs.setup()
log = logging.getLogger("wallet.sender")


def sender(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return json_response(send_once())
