"""The on-chain audit of the exchange's reserves, run by Cloud Scheduler (OIDC; the function is
not public).

One call is one run (wallet/scheduled_audit.py): what the deposit addresses and the hot
wallet hold on chain against what the books owe, every term as of one block, deposits the
watcher has not credited yet counted as in flight (wallet/audit.py). The result is stored in
``audit_runs`` (kind ``chain``) and a difference raises the ``audit_difference`` alert; the
hot wallet short of what waiting withdrawals need raises ``hot_wallet_low``
(docs/operations.md). A function of its own, not the books' ``audits``: it needs the wallet's
runtime (the chain's RPC, Firestore's deposit addresses), which the books' audit does not
(docs/decisions/0028). Answers the run's short report as JSON.
"""

from __future__ import annotations

import logging

import flask

from shared import logs
from shared.answers import error_response, json_response
from wallet.jobs import run_job
from wallet.scheduled_audit import chain_audit_once

logs.setup()
log = logging.getLogger("wallet.audit")


def reserves(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    report = run_job("chain-audit", chain_audit_once)
    if report is None:  # logged, redacted; the answer says nothing of the cause
        return error_response(500, "job_failed", "the on-chain audit run failed; see the logs")
    return json_response(report)
