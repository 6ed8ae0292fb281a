"""redis-server, its data in ``state_dir/redis`` (an append-only file only with
``StackConfig.redis_persist``)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

from infra.services.config import Launch, StackConfig


def ping(host: str, port: int) -> bool:
    """PING answered with PONG: ready."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def launch(cfg: StackConfig, state_dir: Path, binaries: Mapping[str, Path]) -> Launch:
    host, port = cfg.host, cfg.redis_port
    redis_dir = state_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(binaries.get("redis") or "redis-server"),
        "--bind", host,
        "--port", str(port),
        "--save", "",
        "--appendonly", "yes" if cfg.redis_persist else "no",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--dir", str(redis_dir),
    ]  # fmt: skip
    return Launch(cmd, lambda: ping(host, port))
