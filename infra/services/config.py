"""The local stack's configuration: its ports and options (``StackConfig``), and what starting
one service takes (``Launch``, made by each service's module)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.ports import free_port
from infra.tools import ALL_SERVICES, ANVIL_CHAIN_ID, DEFAULT_TOOLS_DIR, check_service


@dataclass(frozen=True)
class StackConfig:
    """Ports and options of the local stack. Immutable: derive variants with ``replace``."""

    host: str = "127.0.0.1"
    pubsub_port: int = 8681
    firestore_port: int = 8682
    postgres_port: int = 55432
    redis_port: int = 56379
    anvil_port: int = 8545
    project: str = "local-exchange"
    #: Where data and logs go. ``None``: a fresh temp dir, removed on stop (unless keep_state).
    state_dir: Path | None = None
    keep_state: bool = False
    #: anvil: seconds between blocks; ``None`` = automine (one block per transaction).
    block_time: float | None = None
    #: anvil: never mine on its own, only on ``evm_mine``.
    no_mining: bool = False
    #: anvil: keep the chain (blocks, accounts, contracts) in this file, written every few
    #: seconds and on exit, loaded at start; ``None``: a new chain each time.
    anvil_state: Path | None = None
    chain_id: int = ANVIL_CHAIN_ID
    #: postgres: fsync=off, synchronous_commit=off, full_page_writes=off (fine for a
    #: throwaway cluster: only an OS crash could lose data).
    pg_fast: bool = True
    pg_user: str = "postgres"
    pg_database: str = "postgres"
    #: redis: keep the data in the state dir (append-only file, written every second and on
    #: exit), so a restart finds it again; otherwise Redis starts empty.
    redis_persist: bool = False
    #: extra ``-c name=value`` settings for postgres.
    pg_settings: Mapping[str, str] = field(default_factory=dict)
    #: emulators (JVMs): only the C1 JIT and the serial GC, so they start and warm up in about
    #: half the time, at some cost in peak throughput (right for ``make run``, not for
    #: benchmarks).
    jvm_quick_start: bool = False
    startup_timeout: float = 60.0
    stop_timeout: float = 10.0
    #: install missing tools (redis-server, anvil) when starting.
    install: bool = True
    tools_dir: Path = DEFAULT_TOOLS_DIR

    def __post_init__(self) -> None:
        if self.block_time is not None and self.no_mining:
            raise ValueError("block_time and no_mining are mutually exclusive")
        if self.block_time is not None and self.block_time <= 0:
            raise ValueError("block_time must be positive (use None for automine)")
        ports = [self.port(name) for name in ALL_SERVICES]
        if len(set(ports)) != len(ports):
            raise ValueError(
                f"service ports must be distinct: {dict(zip(ALL_SERVICES, ports, strict=True))}"
            )

    def port(self, service: str) -> int:
        check_service(service)
        port: int = getattr(self, f"{service}_port")
        return port

    def replace(self, **changes: Any) -> StackConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def with_free_ports(cls, host: str = "127.0.0.1", **options: Any) -> StackConfig:
        """A config whose five ports are distinct and free right now."""
        ports: list[int] = []
        for _ in ALL_SERVICES:
            ports.append(free_port(host, exclude=ports))
        by_name = {f"{name}_port": port for name, port in zip(ALL_SERVICES, ports, strict=True)}
        return cls(host=host, **{**by_name, **options})


@dataclass(frozen=True)
class Launch:
    """How one service is started: the command, when it answers, and where it runs."""

    cmd: list[str]
    ready: Callable[[], bool]
    env: Mapping[str, str] | None = None
    """The process's whole environment; ``None``: this process's."""
    cwd: Path | None = None
