"""The local services the exchange runs against: their configuration, how each one is
started, when it is ready, and stopping them all without leftovers.

Services, all on 127.0.0.1 by default:

========== ============================================ ==============
name       what                                         default port
========== ============================================ ==============
pubsub     Pub/Sub emulator (gcloud)                    8681
firestore  Firestore emulator (gcloud, native mode)     8682
postgres   throwaway PostgreSQL 15 cluster              55432
redis      redis-server, kept only with redis_persist   56379
anvil      anvil Ethereum node, chain id 31337          8545
========== ============================================ ==============

Library use::

    with Stack(StackConfig.with_free_ports(), services=["postgres", "redis"]) as stack:
        env = stack.env()   # PGHOST, PGPORT, ..., REDIS_URL

Every service runs in its own session (process group). Stopping kills the whole group and every
process that was a descendant of the service when the stop began (gcloud spawns bash and java;
postgres children call setsid), so nothing is left behind. Postgres is first asked to stop with
``pg_ctl stop -m fast``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from infra.ports import free_port, port_in_use, port_open
from infra.processes import (
    NO_PROXY,
    POLL_INTERVAL,
    Child,
    LaunchError,
    ProcId,
    group_alive,
    leaves,
    proc_alive,
    process_tree,
    signal_group,
    signal_proc,
    tail,
)
from infra.tools import (
    ALL_SERVICES,
    ANVIL_CHAIN_ID,
    DEFAULT_TOOLS_DIR,
    PG_BIN_DIR,
    PG_OS_USER,
    anvil_binary,
    check_service,
    ensure_tools,
    normalize_services,
)
from shared.producers import new_keys_document

log = logging.getLogger("infra.services")

_JVM_QUICK_START: Final[str] = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


class LocalStackError(LaunchError):
    """A local service could not be started or answered an error."""


class PortInUseError(LocalStackError):
    """A service's port is already taken by another process."""


class ServiceStartError(LocalStackError):
    """A service exited early or did not become ready in time."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Readiness probes
# --------------------------------------------------------------------------------------------


def _http_ok(url: str) -> bool:
    try:
        with NO_PROXY.open(url, timeout=1.0) as resp:
            return int(resp.status) == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def eth_rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 2.0) -> Any:
    """One JSON-RPC call (no proxies); returns ``result`` or raises LocalStackError."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with NO_PROXY.open(request, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise LocalStackError(f"{method}: {reply['error']}")
    return reply["result"]


def _anvil_ready(url: str, chain_id: int) -> bool:
    try:
        return int(eth_rpc(url, "eth_chainId", timeout=1.0), 16) == chain_id
    except (OSError, urllib.error.URLError, ValueError, LocalStackError):
        return False


def _pg_ready(host: str, port: int, user: str) -> bool:
    if not port_open(port, host):
        return False
    cmd = [str(PG_BIN_DIR / "pg_isready"), "-q", "-h", host, "-p", str(port), "-U", user, "-t", "1"]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False).returncode == 0


# --------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------


def _clear_stale_pid_file(data: Path) -> None:
    """Remove the ``postmaster.pid`` a postmaster killed outright (kill -9) left behind,
    unless its pid still runs a postgres on ``data``: postgres itself refuses to start when
    that pid has since been given to another process of the postgres user."""
    lock = data / "postmaster.pid"
    try:
        pid = int(lock.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        args = []
    if str(data).encode() not in args:
        log.info("postgres: removing the stale %s of pid %d", lock, pid)
        lock.unlink(missing_ok=True)


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run as the postgres OS user when we are root (postgres refuses to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_OS_USER, "--", *cmd]
    return cmd


def write_command_keys(path: Path) -> Path:
    """Make a development command-keys document at ``path`` (owner-only) unless one is
    there: a key for every producer (shared.producers)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made by a concurrent start
            return path
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(new_keys_document(), indent=2).encode())
    return path


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
        self._initdb: subprocess.Popen[bytes] | None = None
        self._pg_launch_at = 0.0
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
        return self.state_dir / "postgres"

    def log_path(self, service: str) -> Path:
        check_service(service)
        if service == "postgres":
            return self.pg_data_dir / "server.log"
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

    def _spawn(
        self,
        name: str,
        cmd: list[str],
        ready_check: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        started_at: float | None = None,
    ) -> None:
        child = Child(name, cmd, self.log_path(name), env=env, cwd=cwd, append=True)
        self._running[name] = _Running(
            name=name,
            port=self.config.port(name),
            child=child,
            ready_check=ready_check,
            started_at=time.monotonic() if started_at is None else started_at,
        )

    def _launch(self, name: str, binaries: Mapping[str, Path]) -> None:
        cfg = self.config
        host, port = cfg.host, cfg.port(name)
        if name in ("pubsub", "firestore"):
            gcloud = str(binaries.get("gcloud") or "gcloud")
            cmd = [gcloud, "beta", "emulators", name, "start", f"--host-port={host}:{port}"]
            if name == "pubsub":
                data_dir = self.state_dir / "pubsub"
                data_dir.mkdir(parents=True, exist_ok=True)  # gcloud does not create it
                cmd += [f"--project={cfg.project}", f"--data-dir={data_dir}"]
            env = {
                **os.environ,
                "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
                "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
            }
            if cfg.jvm_quick_start:
                given = os.environ.get("JAVA_TOOL_OPTIONS", "")
                env["JAVA_TOOL_OPTIONS"] = f"{given} {_JVM_QUICK_START}".strip()
            self._spawn(name, cmd, lambda: _http_ok(f"http://{host}:{port}/"), env=env)
        elif name == "redis":
            redis_dir = self.state_dir / "redis"
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
            self._spawn(name, cmd, lambda: _redis_ping(host, port))
        elif name == "anvil":
            cmd = [
                str(binaries.get("anvil") or anvil_binary(cfg.tools_dir)),
                "--host", host,
                "--port", str(port),
                "--chain-id", str(cfg.chain_id),
            ]  # fmt: skip
            if cfg.block_time is not None:
                cmd += ["--block-time", f"{cfg.block_time:g}"]
            if cfg.no_mining:
                cmd.append("--no-mining")
            if cfg.anvil_state is not None:
                cmd += ["--state", str(cfg.anvil_state), "--state-interval", "5"]
            url = f"http://{host}:{port}"
            self._spawn(name, cmd, lambda: _anvil_ready(url, cfg.chain_id))
        elif name == "postgres":
            self._launch_postgres()
        else:  # pragma: no cover - guarded by _normalize_services
            raise ValueError(name)

    def _launch_postgres(self) -> None:
        """initdb (in the background, it takes seconds) unless the cluster exists; the server
        itself is started by ``_wait_ready`` once initdb has finished."""
        cfg = self.config
        data = self.pg_data_dir
        self._pg_launch_at = time.monotonic()
        if self._pg_initialized_marker.is_file() and (data / "PG_VERSION").is_file():
            self._start_postmaster()
            return
        shutil.rmtree(data, ignore_errors=True)  # leftovers of an interrupted initdb
        data.mkdir(parents=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_OS_USER)
            os.chown(data, pw.pw_uid, pw.pw_gid)
        initdb = [
            str(PG_BIN_DIR / "initdb"),
            "-D", str(data),
            "-U", cfg.pg_user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]  # fmt: skip
        log_path = self._initdb_log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log_file:
            self._initdb = subprocess.Popen(
                _as_postgres(initdb),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def _pg_initialized_marker(self) -> Path:
        return self.state_dir / "postgres.initialized"

    @property
    def _initdb_log_path(self) -> Path:
        return self.state_dir / "logs" / "initdb.log"

    def _start_postmaster(self) -> None:
        cfg = self.config
        data = self.pg_data_dir
        _clear_stale_pid_file(data)
        settings = {
            "listen_addresses": cfg.host,
            "port": str(cfg.postgres_port),
            "unix_socket_directories": str(data),
        }
        if cfg.pg_fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings |= dict(cfg.pg_settings)
        cmd = [str(PG_BIN_DIR / "postgres"), "-D", str(data)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        self._spawn(
            "postgres",
            _as_postgres(cmd),
            lambda: _pg_ready(cfg.host, cfg.postgres_port, cfg.pg_user),
            cwd=data,
            started_at=self._pg_launch_at,
        )

    def _poll_initdb(self) -> None:
        """Start the postmaster once a background initdb has succeeded."""
        initdb = self._initdb
        if initdb is None or initdb.poll() is None:
            return
        self._initdb = None
        if initdb.returncode != 0:
            raise ServiceStartError(
                f"postgres: initdb failed (exit {initdb.returncode}) in {self.pg_data_dir}. "
                f"Last lines of {self._initdb_log_path}:\n{tail(self._initdb_log_path)}"
            )
        self._pg_initialized_marker.touch()
        self._start_postmaster()

    def _wait_ready(self, names: Sequence[str]) -> None:
        cfg = self.config
        deadline = time.monotonic() + cfg.startup_timeout
        pending = list(names)
        while pending:
            self._poll_initdb()
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
                log_path = self._initdb_log_path if self._initdb else self.log_path(name)
                raise ServiceStartError(
                    f"{name} did not become ready on {cfg.host}:{cfg.port(name)} within "
                    f"{cfg.startup_timeout:g}s. Last lines of {log_path}:\n{tail(log_path)}"
                )
            time.sleep(POLL_INTERVAL)

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every running service and wait until all their processes are gone. Idempotent."""
        initdb, self._initdb = self._initdb, None
        if initdb is not None:  # interrupted while initdb ran: SIGTERM lets it clean up
            signal_group(initdb.pid, signal.SIGTERM)
            try:
                initdb.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                signal_group(initdb.pid, signal.SIGKILL)
                initdb.wait(timeout=5.0)
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
            if r.name == "postgres" and r.popen.poll() is None:
                self._pg_ctl_stop()
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

    def _pg_ctl_stop(self) -> None:
        cmd = [
            str(PG_BIN_DIR / "pg_ctl"),
            "stop",
            "-D", str(self.pg_data_dir),
            "-m", "fast",
            "-w",
            "-t", str(int(self.config.stop_timeout)),
        ]  # fmt: skip
        proc = subprocess.run(
            _as_postgres(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if proc.returncode != 0:
            log.warning("pg_ctl stop failed: %s", proc.stdout.decode(errors="replace").strip())

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
