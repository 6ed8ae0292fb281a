"""The WebSocket server: ``/v1/ws`` for clients, Binance's stream paths (``/ws``, ``/stream``,
``/ws-api/v3``: ``ws_service.binance``), ``/healthz`` and ``/readyz`` for probes.

One asyncio loop per process runs the websockets server, the hub (the Redis feed) and every
session. Plain HTTP ``GET /healthz`` answers 200 while the process runs; ``/readyz`` 200 while
the market-data feed is connected (new WebSocket connections are refused with 503 until it
is), with a JSON body of counters (connections, topics, messages, slow consumers cut off,
feed losses). SIGTERM (Cloud Run's stop) closes every connection with 1001 and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from http import HTTPStatus
from typing import Any, Final, cast

import orjson
from google.api_core.exceptions import GoogleAPIError
from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from api.auth import AuthContext
from api.http import ApiError
from shared.config import ApiConfig, WsConfig
from ws_service import binance
from ws_service.auth import WS_PATH, SocketAuth, has_credentials
from ws_service.hub import Hub
from ws_service.session import FeedConnection, Session

log = logging.getLogger("ws.server")

STATS_EVERY_S: Final = 60.0
CLOSE_SHUTDOWN: Final = (1001, "server shutting down: reconnect")


def _peer(conn: FeedConnection) -> str:
    try:
        host, port = conn.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError, OSError):
        return "unknown"


class WsServer:
    def __init__(self, cfg: WsConfig, auth: SocketAuth) -> None:
        self.cfg = cfg
        self.auth = auth
        self.hub = Hub(cfg.redis_url, cfg.subscribe_timeout_s)
        self.catalog = binance.Catalog(auth.ctx)
        self.server: Server | None = None
        self.connections = 0
        self._hub_task: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None

    @staticmethod
    def from_environment(cfg: WsConfig) -> WsServer:
        """Config checked, auth keys and clients built: failing here fails the start."""
        return WsServer(cfg, SocketAuth(AuthContext.from_config(ApiConfig.load())))

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Listen (``port`` 0: a free one) and start the feed; the port listened on."""
        cfg = self.cfg
        self._hub_task = asyncio.get_running_loop().create_task(self.hub.run())
        self.server = await serve(
            self._handler,
            host if host is not None else cfg.host,
            port if port is not None else cfg.port,
            process_request=self._process_request,
            create_connection=FeedConnection,
            compression=None,  # frames are built once for all clients, uncompressed
            max_size=cfg.max_message_bytes,
            max_queue=16,
            write_limit=cfg.write_limit_bytes,
            ping_interval=cfg.ping_interval_s,
            ping_timeout=cfg.ping_timeout_s,
            close_timeout=cfg.close_timeout_s,
            server_header=None,
        )
        self._stats_task = asyncio.get_running_loop().create_task(self._log_stats())
        sock = next(iter(self.server.sockets))
        bound: int = sock.getsockname()[1]
        log.info("listening", extra={"port": bound, "path": WS_PATH})
        return bound

    async def stop(self) -> None:
        """Close every connection (1001), stop the feed."""
        if self.server is not None:
            code, reason = CLOSE_SHUTDOWN
            self.server.close(close_connections=True, code=code, reason=reason)
            await self.server.wait_closed()
        self.hub.stop()
        for task in (self._hub_task, self._stats_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def serve_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        gc.freeze()  # what start-up made lives for good: the collector need not walk it again
        await stop.wait()
        log.info("stopping", extra={"connections": self.connections})
        await self.stop()
        log.info("stopped", extra=self.stats())

    def stats(self) -> dict[str, Any]:
        """What ``/readyz`` shows and the log says every minute."""
        return {
            "ready": self.hub.ready,
            "connections": self.connections,
            "topics": len(self.hub.topics),
            **self.hub.stats,
        }

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            log.info("stats", extra=self.stats())

    # -- HTTP: probes, routing, limits, handshake auth -----------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        conn = cast(FeedConnection, connection)
        path, _, query = request.path.partition("?")
        if path == "/healthz":
            return conn.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            status = HTTPStatus.OK if self.hub.ready else HTTPStatus.SERVICE_UNAVAILABLE
            return _json(status, self.stats())
        dialect = binance.route(path, query)
        if path != WS_PATH and dialect is None:
            return _json_error(HTTPStatus.NOT_FOUND, "not_found", f"no such path; use {WS_PATH}")
        if not self.hub.ready:
            return _json_error(
                HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", "market data feed down: retry"
            )
        if self.connections >= self.cfg.max_connections:
            return _json_error(
                HTTPStatus.SERVICE_UNAVAILABLE, "too_many_connections", "server full: retry"
            )
        if dialect is not None:
            return await self._binance_handshake(conn, dialect)
        if has_credentials(request.headers.keys()):
            headers = list(request.headers.raw_items())
            try:
                conn.principal, conn.token_expires = await asyncio.to_thread(
                    self.auth.verify, headers, _peer(conn), path, query
                )
            except ApiError as exc:
                return _json_error(HTTPStatus(exc.status), exc.code, exc.message)
            except (RedisError, GoogleAPIError, OSError) as exc:
                log.warning("handshake auth: a backing service failed: %r", exc)
                text = "credentials cannot be checked now: retry"
                return _json_error(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", text)
            except Exception:  # a bug: answered in the API's format, logged with its trace
                log.exception("handshake auth failed")
                return _json_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "internal error")
        return None

    async def _binance_handshake(
        self, conn: FeedConnection, route: binance.Route
    ) -> Response | None:
        """A Binance path: its route kept for the session; a listen key must be live."""
        if route.listen_key is not None:
            try:
                resolved = await binance.resolve_listen_key(self.auth.ctx, route)
            except (RedisError, OSError) as exc:
                log.warning("listen key lookup failed: %r", exc)
                text = "listenKey cannot be checked now: retry"
                return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"code": -1001, "msg": text})
            if resolved is None:
                doc = {"code": -1125, "msg": "This listenKey does not exist."}
                return _json(HTTPStatus.BAD_REQUEST, doc)
            route = resolved
        conn.binance_route = route
        return None

    # -- WebSocket -------------------------------------------------------------------------------

    async def _handler(self, connection: ServerConnection) -> None:
        conn = cast(FeedConnection, connection)
        route = conn.binance_route
        session: Session
        if route is not None:
            session = binance.BinanceSession(
                conn, self.hub, self.auth, self.cfg, _peer(conn), route, self.catalog
            )
        else:
            session = Session(conn, self.hub, self.auth, self.cfg, _peer(conn))
        conn.session = session
        self.hub.sessions.add(session)
        self.connections += 1
        try:
            if isinstance(session, binance.BinanceSession):
                await session.start()
            async for raw in conn:
                await session.handle(raw)
        except ConnectionClosed:
            pass
        finally:
            self.connections -= 1
            self.hub.sessions.discard(session)
            conn.session = None
            await session.drop()


def _json_error(status: HTTPStatus, code: str, text: str) -> Response:
    return _json(status, {"error": {"code": code, "message": text}})


def _json(status: HTTPStatus, doc: dict[str, Any]) -> Response:
    body = orjson.dumps(doc)
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)
