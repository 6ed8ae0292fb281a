"""Postgres connections: direct pg8000 locally, the Cloud SQL connector in the cloud.

Callers use one method, ``run(sql, **params) -> list[list]``, pg8000's native interface
(named ``:params``, explicit BEGIN/COMMIT). The connector only hands out DB-API
connections, so in the cloud a thin adapter gives them the same face.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

import pg8000.dbapi
import pg8000.native

from shared.config import PostgresConfig


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
