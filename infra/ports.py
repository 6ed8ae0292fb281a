"""Ports on the loopback: is one taken, does one answer, which one is free."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable
from pathlib import Path

from infra.processes import Child, LaunchError, wait_until


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could not bind ``host:port`` (another process listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option servers use, so sockets lingering in TIME_WAIT do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1", exclude: Iterable[int] = ()) -> int:
    """A port that is free right now.

    Picked at random below the kernel's ephemeral range, so that it cannot be handed out to an
    outgoing connection (or to a server binding port 0) before the service binds it.
    """
    excluded = set(exclude)
    low, _high = _ephemeral_range()
    upper = min(low - 1, 32767)
    rng = random.SystemRandom()
    if upper > 20000:
        for _ in range(200):
            port = rng.randint(20000, upper)
            if port not in excluded and not port_in_use(port, host):
                return port
    for _ in range(50):  # fall back to whatever the kernel gives
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in excluded:
            return port
    raise LaunchError("could not find a free port")


def wait_for_port(
    port: int, timeout: float, what: str, *children: Child, host: str = "127.0.0.1"
) -> None:
    """Wait until something accepts connections on ``host:port`` (see ``wait_until``)."""
    wait_until(lambda: port_open(port, host), timeout, what, *children)
