"""Audits that run by themselves: each run's result kept in ``audit_runs`` (migrations/0005),
and an alert (shared/alerts.py, ``audit_difference``) on any difference.

The books' audit (shared/books_audit.py) runs here, on a schedule: functions/audits in the
cloud (Cloud Scheduler), infra/scheduler.py locally; the on-chain audit's runs are recorded
with the same ``record``. Read by ``GET /v1/admin/audits``."""

from __future__ import annotations

import logging
from typing import Any, Final, Literal

import orjson

from shared import alerts, books_audit
from shared.config import PostgresConfig
from shared.db import Database, connect

log = logging.getLogger("audits")

Kind = Literal["books", "chain"]
KINDS: Final = ("books", "chain")
MAX_HISTORY: Final = 200


def record(db: Database, kind: Kind, report: dict[str, Any]) -> int:
    """Keep ``report`` (``ok``, ``mismatches``, maybe ``seq``); alert when it is not ok.
    The run's id."""
    differences = len(report.get("mismatches", []))
    rows = db.run(
        "INSERT INTO audit_runs (kind, ok, differences, seq, report)"
        " VALUES (:k, :ok, :d, :seq, CAST(:r AS jsonb)) RETURNING id",
        k=kind, ok=bool(report["ok"]), d=differences, seq=report.get("seq"),
        r=orjson.dumps(report).decode(),
    )  # fmt: skip
    run_id = int(rows[0][0])
    if not report["ok"]:
        alerts.alert(
            log, alerts.AUDIT_DIFFERENCE, f"the {kind} audit found {differences} differences",
            audit=kind, audit_run=run_id, differences=differences,
            first=report.get("mismatches", [None])[0],
        )  # fmt: skip
    else:
        log.info(f"the {kind} audit found no difference", extra={"audit": kind, "run": run_id})
    return run_id


def run_books(db: Database) -> dict[str, Any]:
    """One run of the books' audit, recorded; its report with the run's id."""
    report = books_audit.audit(db)
    return {**report, "run_id": record(db, "books", report)}


_COLUMNS: Final = "id, kind, ran_at, ok, differences, seq, report"


def run_books_once() -> dict[str, Any]:
    """One scheduled run of the books' audit on the database of the environment (PG*,
    CLOUD_SQL_INSTANCE), stored; a short report."""
    db = connect(PostgresConfig.load(), "audits")
    try:
        report = run_books(db)
    finally:
        db.close()
    return {"ok": report["ok"], "run_id": report["run_id"], "seq": report["seq"]}


def history(db: Database, kind: str | None, limit: int) -> list[dict[str, Any]]:
    """The latest runs, newest first (of one kind, or of all)."""
    rows = db.run(
        f"SELECT {_COLUMNS} FROM audit_runs"
        " WHERE CAST(:k AS text) IS NULL OR kind = :k ORDER BY id DESC LIMIT :n",
        k=kind, n=min(limit, MAX_HISTORY),
    )  # fmt: skip
    return _runs(rows)


def get(db: Database, run_id: int) -> dict[str, Any]:
    """One stored run."""
    return _runs(db.run(f"SELECT {_COLUMNS} FROM audit_runs WHERE id = :i", i=run_id))[0]


def _runs(rows: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": int(r[0]),
            "kind": r[1],
            "ran_at": r[2].isoformat(),
            "ok": bool(r[3]),
            "differences": int(r[4]),
            "seq": None if r[5] is None else int(r[5]),
            "report": r[6],  # jsonb: decoded by the driver
        }
        for r in rows
    ]
