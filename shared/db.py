"""Postgres connections: direct pg8000 locally, the Cloud SQL connector in the cloud.

Callers use one method, ``run(sql, **params) -> list[list]``, pg8000's native interface
(named ``:params``, explicit BEGIN/COMMIT). The connector only hands out DB-API
connections, so in the cloud a thin adapter gives them the same face.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import pg8000.dbapi
import pg8000.exceptions
import pg8000.native

from shared.config import PostgresConfig

T = TypeVar("T")


class Database(Protocol):
    def run(self, sql: str, stream: Any = None, **params: Any) -> Any: ...

    def close(self) -> None: ...


class _DbapiAdapter:
    """pg8000 DB-API connection behind the native ``run`` interface."""

    def __init__(self, conn: pg8000.dbapi.Connection) -> None:
        conn.autocommit = True  # transactions are explicit BEGIN / COMMIT, as with native
        self._conn = conn

    def run(self, sql: str, stream: Any = None, **params: Any) -> Any:
        cursor = self._conn.cursor()
        cursor.paramstyle = "named"
        cursor.execute(sql, params or None, stream=stream)
        return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        self._conn.close()


def connect(cfg: PostgresConfig, application_name: str = "exchange") -> Database:
    if cfg.instance:
        # Serverless: LAZY refresh, so no background thread fights CPU throttling.
        from google.cloud.sql.connector import Connector, IPTypes, RefreshStrategy

        connector = Connector(refresh_strategy=RefreshStrategy.LAZY)
        conn = connector.connect(
            cfg.instance, "pg8000", user=cfg.user, password=cfg.password, db=cfg.database,
            ip_type=IPTypes.PRIVATE,
        )  # fmt: skip
        return _DbapiAdapter(conn)
    # Our own socket, so Nagle's algorithm can be switched off: pg8000 leaves it on, and a
    # statement's small messages then wait on delayed ACKs (tens of ms per round trip).
    sock = socket.create_connection((cfg.host, cfg.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    native: Database = pg8000.native.Connection(
        cfg.user, sock=sock, database=cfg.database, password=cfg.password,
        application_name=application_name, timeout=30,
    )  # fmt: skip
    return native


class SharedConnection:
    """One connection per function instance, opened on first use, shared by its threads (a
    lock serialises them: pg8000 connections are not thread-safe). When the connection is
    found broken (the server restarted, an idle socket was cut), it is opened again and the
    work retried once; SQL errors are not retried.

    ``call(fn)`` runs ``fn(db)`` holding the connection, for work of several statements (a
    read-only transaction, say); ``fn`` may run twice, so it must be safe to repeat."""

    def __init__(self, cfg: PostgresConfig, application_name: str = "exchange-api") -> None:
        self._cfg = cfg
        self._name = application_name
        self._conn: Database | None = None
        self._lock = threading.Lock()

    def run(self, sql: str, **params: Any) -> Any:
        return self.call(lambda db: db.run(sql, **params))

    def call(self, fn: Callable[[Database], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = connect(self._cfg, self._name)
                try:
                    return fn(self._conn)
                except _BROKEN:
                    self._drop()
                    if attempt == 2:
                        raise
                except pg8000.exceptions.DatabaseError:
                    # A failed statement inside a transaction leaves it aborted.
                    with contextlib.suppress(Exception):
                        self._conn.run("ROLLBACK")
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


# A connection that cannot be used any more: pg8000 wraps socket failures in InterfaceError.
_BROKEN = (pg8000.exceptions.InterfaceError, OSError)
