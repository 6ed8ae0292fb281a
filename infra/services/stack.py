"""The ``Stack``: starts a set of the local services (each service's module says how), waits
until they answer, and stops them without leftovers (infra/services/__init__.py)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from infra.ports import port_in_use
from infra.processes import (
    POLL_INTERVAL,
    Child,
    ProcId,
    group_alive,
    leaves,
    proc_alive,
    process_tree,
    signal_group,
    signal_proc,
    tail,
)
from infra.services import anvil, emulators, postgres, redis
from infra.services.command_keys import write_command_keys
from infra.services.config import Launch, StackConfig
from infra.services.errors import PortInUseError, ServiceStartError
from infra.tools import ALL_SERVICES, check_service, ensure_tools, normalize_services

log = logging.getLogger("infra.services")

LAUNCHERS: Final[dict[str, Callable[[StackConfig, Path, Mapping[str, Path]], Launch]]] = {
    "pubsub": emulators.pubsub,
    "firestore": emulators.firestore,
    "redis": redis.launch,
    "anvil": anvil.launch,
}
"""The services started by one command; postgres (initdb first) has its ``Cluster``."""


@dataclass
class _Running:
    name: str
    port: int
    child: Child
    ready_check: Callable[[], bool]
    started_at: float
    ready_after: float | None = None

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        return self.child.proc

    @property
    def log_path(self) -> Path:
        return self.child.log_path

    @property
    def pgid(self) -> int:
        return self.child.pgid


class Stack:
    """Start a set of local services, wait until they answer, stop them without leftovers.

    Usable as a context manager (``__enter__`` starts ``services``; ``__exit__`` stops all).
    """

    def __init__(
        self,
        config: StackConfig | None = None,
        services: Iterable[str] | None = None,
        **overrides: Any,
    ) -> None:
        base = config if config is not None else StackConfig()
        self.config: StackConfig = base.replace(**overrides) if overrides else base
        self.services: list[str] = normalize_services(services)
        self._running: dict[str, _Running] = {}
        self._state_dir: Path | None = None
        self._owns_state_dir = False
        self._atexit_registered = False
        self._postgres: postgres.Cluster | None = None
        self.install_seconds: float = 0.0
        self.start_seconds: float = 0.0

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- properties --------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        if self._state_dir is None:
            if self.config.state_dir is None:
                self._state_dir = Path(tempfile.mkdtemp(prefix="local-stack-"))
                self._owns_state_dir = True
            else:
                self._state_dir = Path(self.config.state_dir).resolve()
                self._state_dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                # postgres runs as the postgres user and must traverse into its data dir.
                self._state_dir.chmod(self._state_dir.stat().st_mode | 0o755)
        return self._state_dir

    @property
    def running(self) -> list[str]:
        return [name for name in ALL_SERVICES if name in self._running]

    @property
    def pg_data_dir(self) -> Path:
        return postgres.data_dir(self.state_dir)

    def log_path(self, service: str) -> Path:
        check_service(service)
        if service == "postgres":
            return postgres.log_path(self.state_dir)
        return self.state_dir / "logs" / f"{service}.log"

    def ready_seconds(self) -> dict[str, float]:
        """Seconds from launch until each running service answered."""
        return {
            name: r.ready_after for name, r in self._running.items() if r.ready_after is not None
        }

    def process_groups(self) -> dict[str, int]:
        return {name: r.pgid for name, r in self._running.items()}

    def processes(self) -> set[ProcId]:
        """Every live process belonging to the running services."""
        procs: set[ProcId] = set()
        for r in self._running.values():
            procs |= process_tree(r.popen.pid)
        return procs

    def dead_services(self) -> list[str]:
        """Running services whose main process has exited."""
        return [name for name, r in self._running.items() if r.popen.poll() is not None]

    def url(self, service: str) -> str:
        host, port = self.config.host, self.config.port(service)
        if service == "postgres":
            return f"postgresql://{self.config.pg_user}@{host}:{port}/{self.config.pg_database}"
        if service == "redis":
            return f"redis://{host}:{port}/0"
        if service == "anvil":
            return f"http://{host}:{port}"
        return f"{host}:{port}"

    def env(self) -> dict[str, str]:
        """Environment variables clients need for the running services."""
        cfg = self.config
        env = {"GOOGLE_CLOUD_PROJECT": cfg.project}
        if "pubsub" in self._running:
            env["PUBSUB_EMULATOR_HOST"] = self.url("pubsub")
            env["PUBSUB_PROJECT_ID"] = cfg.project
            # Every local producer and the matcher read one document of all the producers'
            # keys (shared.producers); in the cloud each has its own.
            keys = write_command_keys(self.state_dir / "command-keys.json")
            env["COMMAND_KEYS_FILE"] = str(keys)
        if "firestore" in self._running:
            env["FIRESTORE_EMULATOR_HOST"] = self.url("firestore")
        if "postgres" in self._running:
            env["DATABASE_URL"] = self.url("postgres")
            env["PGHOST"] = cfg.host
            env["PGPORT"] = str(cfg.postgres_port)
            env["PGUSER"] = cfg.pg_user
            env["PGDATABASE"] = cfg.pg_database
        if "redis" in self._running:
            env["REDIS_URL"] = self.url("redis")
        if "anvil" in self._running:
            env["ETH_RPC_URL"] = self.url("anvil")
            env["ETH_CHAIN_ID"] = str(cfg.chain_id)
        return env

    # -- start -------------------------------------------------------------------------------

    def start(self, services: Iterable[str] | None = None) -> Stack:
        """Start ``services`` (default: those given to the constructor) and wait until ready.

        Already running services are skipped. On any failure (including Ctrl-C) everything
        started so far is stopped before the exception propagates.
        """
        wanted = [
            s
            for s in normalize_services(self.services if services is None else services)
            if s not in self._running
        ]
        if not wanted:
            return self
        cfg = self.config
        busy = [(s, cfg.port(s)) for s in wanted if port_in_use(cfg.port(s), cfg.host)]
        if busy:
            detail = ", ".join(f"{name} -> {cfg.host}:{port}" for name, port in busy)
            raise PortInUseError(
                f"port already in use: {detail}. Stop whatever listens there (an earlier stack?) "
                "or choose other ports (StackConfig(...port=...), free_port())."
            )
        t0 = time.monotonic()
        try:
            binaries = ensure_tools(wanted, cfg.tools_dir) if cfg.install else {}
            self.install_seconds = time.monotonic() - t0
            self._register_atexit()
            t1 = time.monotonic()
            # Slow starters first (JVMs), so initdb overlaps with their boot.
            for name in ("pubsub", "firestore", "redis", "anvil", "postgres"):
                if name in wanted:
                    self._launch(name, binaries)
            self._wait_ready(wanted)
            self.start_seconds = time.monotonic() - t1
        except BaseException:
            self.stop()
            raise
        log.info(
            "ready in %.1fs (installs %.1fs): %s",
            self.start_seconds,
            self.install_seconds,
            ", ".join(f"{n} {t:.1f}s" for n, t in self.ready_seconds().items()),
        )
        return self

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True

    def _spawn(self, name: str, launch: Launch, started_at: float | None = None) -> None:
        child = Child(
            name, launch.cmd, self.log_path(name), env=launch.env, cwd=launch.cwd, append=True
        )
        self._running[name] = _Running(
            name=name,
            port=self.config.port(name),
            child=child,
            ready_check=launch.ready,
            started_at=time.monotonic() if started_at is None else started_at,
        )

    def _launch(self, name: str, binaries: Mapping[str, Path]) -> None:
        if name != "postgres":
            self._spawn(name, LAUNCHERS[name](self.config, self.state_dir, binaries))
            return
        self._postgres = postgres.Cluster(self.config, self.state_dir)
        self._spawn_postmaster(self._postgres.launch())

    def _spawn_postmaster(self, launch: Launch | None) -> None:
        """Once the cluster can start (None: its initdb still runs)."""
        if launch is not None:
            assert self._postgres is not None
            self._spawn("postgres", launch, started_at=self._postgres.launched_at)

    def _wait_ready(self, names: Sequence[str]) -> None:
        cfg = self.config
        deadline = time.monotonic() + cfg.startup_timeout
        pending = list(names)
        while pending:
            if self._postgres is not None:
                self._spawn_postmaster(self._postgres.poll())
            for name in list(pending):
                r = self._running.get(name)
                if r is None:  # postgres while initdb runs
                    continue
                if r.ready_check():
                    r.ready_after = time.monotonic() - r.started_at
                    log.info("%s ready on %s:%d (%.1fs)", name, cfg.host, r.port, r.ready_after)
                    pending.remove(name)
                elif r.popen.poll() is not None:
                    raise ServiceStartError(
                        f"{name} exited with code {r.popen.returncode} before it was ready on "
                        f"{cfg.host}:{r.port}. Last lines of {r.log_path}:\n{tail(r.log_path)}"
                    )
            if not pending:
                break
            if time.monotonic() > deadline:
                name = pending[0]
                cluster = self._postgres
                initializing = cluster is not None and cluster.initializing
                log_path = cluster.initdb_log if cluster and initializing else self.log_path(name)
                raise ServiceStartError(
                    f"{name} did not become ready on {cfg.host}:{cfg.port(name)} within "
                    f"{cfg.startup_timeout:g}s. Last lines of {log_path}:\n{tail(log_path)}"
                )
            time.sleep(POLL_INTERVAL)

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every running service and wait until all their processes are gone. Idempotent."""
        if self._postgres is not None:  # interrupted while initdb ran
            self._postgres.interrupt()
        running = list(self._running.values())
        if running:
            t0 = time.monotonic()
            self._stop_all(running)
            self._running.clear()
            log.info(
                "stopped %s in %.1fs", ", ".join(r.name for r in running), time.monotonic() - t0
            )
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if self._owns_state_dir and self._state_dir is not None and not self.config.keep_state:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None
            self._owns_state_dir = False

    def _stop_all(self, running: list[_Running]) -> None:
        # Snapshot every process first: postgres children setsid() and gcloud's java outlives
        # gcloud, so the process group alone does not name them all.
        procs: dict[str, set[ProcId]] = {r.name: process_tree(r.popen.pid) for r in running}
        for r in running:
            if r.name == "postgres" and r.popen.poll() is None and self._postgres is not None:
                self._postgres.stop_server()
        # Innermost processes first (java under gcloud/bash): the wrappers then reap them and
        # exit on their own, so no orphan is left for init to reap.
        for r in running:
            for proc in leaves(procs[r.name]):
                signal_proc(proc, signal.SIGTERM)
        if not self._wait_gone(running, procs, min(3.0, self.config.stop_timeout)):
            for r in running:
                signal_group(r.pgid, signal.SIGTERM)
            if not self._wait_gone(running, procs, self.config.stop_timeout):
                self._kill_all(running, procs)
        for r in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.popen.wait(timeout=1.0)
            r.child.close_log()

    def _kill_all(self, running: list[_Running], procs: Mapping[str, set[ProcId]]) -> None:
        for r in running:
            alive = [p for p in procs[r.name] if proc_alive(p)]
            if alive or group_alive(r.pgid):
                log.warning("%s: still running after SIGTERM, sending SIGKILL", r.name)
            signal_group(r.pgid, signal.SIGKILL)
            for proc in alive:
                signal_proc(proc, signal.SIGKILL)
        if not self._wait_gone(running, procs, 5.0):
            left = sorted(p[0] for ps in procs.values() for p in ps if proc_alive(p))
            log.error("processes still alive after SIGKILL: %s", left)

    @staticmethod
    def _wait_gone(
        running: list[_Running], procs: Mapping[str, set[ProcId]], timeout: float
    ) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            for r in running:
                r.popen.poll()  # reap our direct children
            alive = any(proc_alive(p) for ps in procs.values() for p in ps) or any(
                group_alive(r.pgid) for r in running
            )
            if not alive:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_INTERVAL)
