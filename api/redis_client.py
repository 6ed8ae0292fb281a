"""The API functions' Redis client: redis-py's, with a lean path for the requests' own reads
and writes.

redis-py spends more CPU around a command than on it: a connection taken from its pool and put
back (a lock, a poll of the socket, metrics hooks), a retry wrapper, per-command option
filtering and reply callbacks; an order's four round trips cost ~0.5 ms of CPU that way, the
socket calls a quarter of it (docs/benchmarks.md, "Functions, round 3"). ``batch()`` queues
commands and sends them in one write on the calling thread's own connection, then reads the
replies back in order::

    client = connect(url)
    exists, raw = client.batch().hexists(MARKETS_KEY, m).get(depth_key(m)).execute()

Everything else goes through redis-py as before (``client`` is a ``redis.Redis``), and code
written for a pipeline works with a batch for the commands it has (``batch_of``).

A thread keeps its connection for its life (gunicorn's threads and functions-framework's live
as long as the instance). Any failure while a batch is in flight drops the connection, so a
reply is never left unread for the next batch to take as its own; a batch that fails because
its reused connection had gone (Redis restarted) is sent once more on a new one, as redis-py
retries a command. Redis may have run it already (the connection failed after the commands
reached it): what must not happen twice is written to be sent again, as the numbering scripts
are (decision 0041).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, Final, Self

import redis
from redis.connection import AbstractConnection

RETRY_WITHIN_S: Final = 5.0
"""A batch is sent once more only when its connection failed within this long of sending it: a
connection gone while idle fails at once, and the record that makes a numbering safe to send
again outlives this by far (``api.redis_scripts.NUMBER_RECORD_TTL_S``)."""


class ApiRedis(redis.Redis):
    """``redis.Redis`` plus ``batch()`` (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._threads = threading.local()
        self._opened: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()
        self._opened_lock = threading.Lock()

    def batch(self) -> Batch:
        return Batch(self)

    def thread_connection(self) -> AbstractConnection:
        """The calling thread's own connection (connected on its first use)."""
        local = self._threads
        conn: AbstractConnection | None = getattr(local, "conn", None)
        pid = os.getpid()
        if conn is not None and local.pid == pid:
            return conn
        # Made as the pool makes its connections (the URL's host, port, database, password,
        # timeouts, TLS), but owned by this thread alone: no checkout per command.
        pool = self.connection_pool
        conn = pool.connection_class(**pool.connection_kwargs)
        local.conn, local.pid = conn, pid
        with self._opened_lock:
            self._opened.add(conn)
        return conn

    def close(self) -> None:
        super().close()
        with self._opened_lock:
            opened: list[Any] = list(self._opened)
        for conn in opened:
            conn.disconnect()


def connect(url: str, **kwargs: Any) -> ApiRedis:
    """The client for ``url`` (``redis.Redis.from_url``'s keywords)."""
    client = ApiRedis.from_url(url, **kwargs)
    assert isinstance(client, ApiRedis)
    return client


def batch_of(client: redis.Redis) -> Any:
    """A batch on ``client`` when it is an ``ApiRedis``, else a pipeline without MULTI (the
    same methods, the same results)."""
    if isinstance(client, ApiRedis):
        return client.batch()
    return client.pipeline(transaction=False)


def _pairs(reply: Any) -> dict[Any, Any]:
    if isinstance(reply, dict):  # RESP3's map
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _ok(reply: Any) -> bool | None:
    return None if reply is None else reply == b"OK" or reply == "OK"


def _popped(reply: Any) -> tuple[Any, Any] | None:
    return None if reply is None else (reply[0], reply[1])


class Batch:
    """Commands queued, then sent in one write and answered in order by ``execute()``: what
    redis-py's pipeline without MULTI does, for the commands the API's hot paths use, with
    the same results (``HGETALL`` a dict, ``HEXISTS`` a bool, ``SET`` True or None, ``BLPOP``
    a (key, value) tuple or None, the rest as Redis answers them)."""

    __slots__ = ("_client", "_commands", "_parsers")

    def __init__(self, client: ApiRedis) -> None:
        self._client = client
        self._commands: list[tuple[Any, ...]] = []
        self._parsers: list[Any] = []

    def __len__(self) -> int:
        return len(self._commands)

    def _queue(self, parse: Any, *args: Any) -> Self:
        self._commands.append(args)
        self._parsers.append(parse)
        return self

    def get(self, name: Any) -> Self:
        return self._queue(None, "GET", name)

    def set(self, name: Any, value: Any, ex: int | None = None, nx: bool = False) -> Self:
        args: tuple[Any, ...] = ("SET", name, value)
        if ex is not None:
            args += ("EX", int(ex))
        if nx:
            args += ("NX",)
        return self._queue(_ok, *args)

    def delete(self, *names: Any) -> Self:
        return self._queue(None, "DEL", *names)

    def hget(self, name: Any, key: Any) -> Self:
        return self._queue(None, "HGET", name, key)

    def hgetall(self, name: Any) -> Self:
        return self._queue(_pairs, "HGETALL", name)

    def hexists(self, name: Any, key: Any) -> Self:
        return self._queue(bool, "HEXISTS", name, key)

    def hset(self, name: Any, key: Any, value: Any) -> Self:
        return self._queue(None, "HSET", name, key, value)

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Self:
        return self._queue(None, "EVAL", script, numkeys, *keys_and_args)

    def blpop(self, keys: list[Any], timeout: float = 0) -> Self:
        return self._queue(_popped, "BLPOP", *keys, timeout)

    def execute(self) -> list[Any]:
        """The replies, in order; a Redis error reply is raised (``redis.ResponseError``)."""
        commands, parsers = self._commands, self._parsers
        self._commands, self._parsers = [], []
        if not commands:
            return []
        replies = self._send(commands, retry=True)
        return [r if p is None else p(r) for r, p in zip(replies, parsers, strict=True)]

    def _send(self, commands: list[tuple[Any, ...]], retry: bool) -> list[Any]:
        conn: Any = self._client.thread_connection()
        reused = conn.is_connected
        sent = time.monotonic()
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            return [conn.read_response() for _ in commands]
        except redis.ConnectionError:
            conn.disconnect()
            if not (reused and retry and time.monotonic() - sent < RETRY_WITHIN_S):
                raise
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse it
            raise
        # The connection had gone while it was idle (Redis restarted, an idle timeout): once
        # more, on a new one.
        return self._send(commands, retry=False)
