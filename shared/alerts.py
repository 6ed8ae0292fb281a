"""The alerts the code raises: a structured log line with a stable field, ``alert``, that the
log-based metrics of terraform/modules/monitoring count (a message's wording may change, the
field's value does not). docs/operations.md says what each one means and what to do."""

from __future__ import annotations

import logging
from typing import Any, Final

ALERT_FIELD: Final = "alert"
AUDIT_DIFFERENCE: Final = "audit_difference"
HOT_WALLET_LOW: Final = "hot_wallet_low"
WITHDRAWAL_STUCK: Final = "withdrawal_stuck"
ALERTS: Final = (AUDIT_DIFFERENCE, HOT_WALLET_LOW, WITHDRAWAL_STUCK)


def alert(
    logger: logging.Logger, name: str, message: str, level: int = logging.ERROR, **fields: Any
) -> None:
    """Log ``message`` as the alert ``name`` (an ERROR unless told), with ``fields``."""
    assert name in ALERTS, name
    logger.log(level, message, extra={ALERT_FIELD: name, **fields})
