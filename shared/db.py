"""Postgres connections: direct pg8000 locally, the Cloud SQL connector in the cloud.

Callers use one method, ``run(sql, **params) -> list[list]``, pg8000's native interface
(named ``:params``, explicit BEGIN/COMMIT). The connector only hands out DB-API
connections, so in the cloud a thin adapter gives them the same face.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import struct
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

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


_statement = functools.lru_cache(maxsize=1024)(pg8000.native.to_statement)
"""pg8000's translation of named ``:params`` to ``$n``: a pure function of the SQL text,
which it would otherwise parse character by character at every call."""


class _NativeConnection(pg8000.native.Connection):  # type: ignore[misc]
    """pg8000's native connection, each SQL text translated once (``run`` as pg8000 1.31's,
    with the translation cached)."""

    def run(self, sql: str, stream: Any = None, types: Any = None, **params: Any) -> Any:
        if not params and stream is None:
            return super().run(sql)
        statement, make_vals = _statement(sql)
        oids = () if types is None else make_vals(defaultdict(lambda: None, types))
        self._context = self.execute_unnamed(statement, make_vals(params), oids=oids, stream=stream)
        return self._context.rows


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
    try:
        sock = _prefer_ssl(sock, cfg.host)
    except BaseException:
        sock.close()
        raise
    native: Database = _NativeConnection(
        cfg.user, sock=sock, database=cfg.database, password=cfg.password,
        application_name=application_name, timeout=30, ssl_context=False,
    )  # fmt: skip
    return native


_SSL_REQUEST: Final = struct.pack("!ii", 8, 80877103)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The context of pg8000's default ("prefer": no verification), made once per process:
    pg8000 makes one per connection, and loading the default certificates costs tens of ms
    of CPU (most of a wallet job's run)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _prefer_ssl(sock: socket.socket, host: str) -> socket.socket:
    """pg8000's default negotiation: TLS when the server offers it, else the plain socket."""
    sock.sendall(_SSL_REQUEST)
    if sock.recv(1) == b"S":
        return _ssl_context().wrap_socket(sock, server_hostname=host)
    return sock


class DatabaseUnavailableError(RuntimeError):
    """Postgres cannot be reached, or the connection broke again on the retry (an HTTP
    function answers 503)."""


class SharedConnection:
    """One connection per function instance, opened on first use, shared by its threads (a
    lock serialises them: pg8000 connections are not thread-safe).

    ``call(fn)`` runs ``fn(db)`` holding the connection, for work of several statements (a
    read-only transaction, say); ``fn`` may run twice, so it must be safe to repeat. What
    becomes of the connection when ``fn`` fails:

    - a clean server-side error (pg8000's ``DatabaseError`` with an SQLSTATE outside classes
      08 and 57P: pg8000 has read the server's answer up to ReadyForQuery) keeps it, after a
      ROLLBACK in case a transaction was open; the error is raised;
    - a connection-level error (``InterfaceError``, ``OSError``, SQLSTATE 08xxx or 57Pxx: the
      server restarted, an idle socket was cut, the backend was terminated) discards it; the
      work is retried once on a new one, then ``DatabaseUnavailableError``;
    - anything else (``OverflowError`` or ``UnicodeEncodeError`` while pg8000 encodes a
      parameter, a row it cannot decode, an interrupt, a bug in ``fn``) discards it too and is
      raised: it may have struck between two messages of one exchange with the server, after
      which the next statement would read the previous one's answer. No exception but the
      first kind leaves a connection in use.
    """

    def __init__(
        self,
        cfg: PostgresConfig,
        application_name: str = "exchange-api",
        connector: Callable[[], Database] | None = None,
    ) -> None:
        self._connect = connector or (lambda: connect(cfg, application_name))
        self._conn: Database | None = None
        self._lock = threading.Lock()

    def run(self, sql: str, **params: Any) -> Any:
        return self.call(lambda db: db.run(sql, **params))

    def call(self, fn: Callable[[Database], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    return fn(self._conn)
                except Exception as exc:
                    if server_error(exc) and not connection_failed(exc):
                        self._rollback()
                        raise
                    self._drop()
                    if not connection_failed(exc):
                        raise
                    if attempt == 2:
                        raise DatabaseUnavailableError(str(exc)) from exc
                except BaseException:
                    self._drop()
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _rollback(self) -> None:
        """End a transaction a failed statement left aborted; a connection that cannot even
        do that is dropped (the statement's error is the one worth raising)."""
        if self._conn is None:
            return
        try:
            self._conn.run("ROLLBACK")
        except BaseException as exc:
            self._drop()
            if not isinstance(exc, Exception):
                raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken one may fail to close cleanly
                conn.close()


def server_error(exc: BaseException) -> bool:
    """An error the server answered (pg8000 raises those with the server's fields, SQLSTATE
    under ``C``, and has read the rest of the exchange); client-side ``DatabaseError``
    subclasses (pg8000.dbapi's ``ProgrammingError``, ...) carry a plain message."""
    if not isinstance(exc, pg8000.exceptions.DatabaseError) or not exc.args:
        return False
    info = exc.args[0]
    return isinstance(info, dict) and isinstance(info.get("C"), str)


def connection_failed(exc: BaseException) -> bool:
    """The connection is gone, not just the statement: a network failure (pg8000 wraps them
    in ``InterfaceError``), or a server error of class 08 (connection exception) or 57P
    (operator intervention: shutdown, terminated backend)."""
    if isinstance(exc, pg8000.exceptions.InterfaceError | OSError):
        return True
    return server_error(exc) and str(exc.args[0]["C"]).startswith(("08", "57P"))
