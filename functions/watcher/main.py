"""The deposit watcher, run by Cloud Scheduler (OIDC; the function is not public).

One call is one run (shared/wallet/watcher.py): scan new blocks, follow reorganisations,
credit confirmed deposits. Answers the run's report as JSON; overlapping calls are safe.
"""

from __future__ import annotations

import logging

import flask

from shared import logs
from shared.http import json_response
from shared.wallet.jobs import watch_once

logs.setup()
log = logging.getLogger("wallet.watcher")


def watcher(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return json_response(watch_once())
