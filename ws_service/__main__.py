"""``python -m ws_service [--host 0.0.0.0] [--port $PORT]``: the live feed (docs/ws.md).

Configuration comes from the environment (``shared.config.WsConfig`` and, for
authentication, ``ApiConfig``: ``AUTH_KEYS_*``, ``REDIS_URL``, Firestore for API keys); a
missing or malformed variable stops it at once. SIGTERM or SIGINT stop it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import msgspec

from shared import logs
from shared.config import ConfigError, WsConfig
from ws_service.server import WsServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ws_service", description=__doc__)
    parser.add_argument("--host", help="default: WS_HOST, else 0.0.0.0")
    parser.add_argument("--port", type=int, help="default: PORT, else 8081")
    args = parser.parse_args(argv)
    logs.setup()
    # websockets logs every connection opened and closed at INFO: too much at thousands of
    # clients; the service logs its own counters every minute.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        cfg = WsConfig.load()
        server = WsServer.from_environment(cfg)
    except ConfigError as exc:
        print(f"ws_service: {exc}", file=sys.stderr)
        return 2
    if args.host is not None or args.port is not None:
        cfg = msgspec.structs.replace(
            cfg,
            host=args.host if args.host is not None else cfg.host,
            port=args.port if args.port is not None else cfg.port,
        )
        server.cfg = cfg
    asyncio.run(server.serve_until_signalled())
    return 0


if __name__ == "__main__":
    sys.exit(main())
