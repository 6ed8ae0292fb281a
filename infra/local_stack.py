"""Start, wait for and stop the local services the exchange runs against.

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

CLI::

    python -m infra.local_stack up        # start everything, print `export` lines, wait for Ctrl-C
    python -m infra.local_stack install   # only install missing tools (redis-server, anvil)

Every service runs in its own session (process group). Stopping kills the whole group and every
process that was a descendant of the service when the stop began (gcloud spawns bash and java;
postgres children call setsid), so nothing is left behind. Postgres is first asked to stop with
``pg_ctl stop -m fast``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import pwd
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Final

log = logging.getLogger("infra.local_stack")

ALL_SERVICES: Final[tuple[str, ...]] = ("pubsub", "firestore", "postgres", "redis", "anvil")

REPO_ROOT: Final[Path] = Path(__file__).resolve().parent.parent
DEFAULT_TOOLS_DIR: Final[Path] = REPO_ROOT / ".tools"

ANVIL_NPM_PACKAGE: Final[str] = "@foundry-rs/anvil-linux-amd64"
ANVIL_VERSION: Final[str] = "1.7.1"  # `npm view @foundry-rs/anvil-linux-amd64 version`
ANVIL_CHAIN_ID: Final[int] = 31337

PG_BIN_DIR: Final[Path] = Path("/usr/lib/postgresql/15/bin")
PG_OS_USER: Final[str] = "postgres"

_JVM_QUICK_START: Final[str] = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
_LOG_TAIL_LINES: Final[int] = 30
_POLL_INTERVAL: Final[float] = 0.05


class LocalStackError(RuntimeError):
    """Base class for launcher errors."""


class PortInUseError(LocalStackError):
    """A service's port is already taken by another process."""


class ServiceStartError(LocalStackError):
    """A service exited early or did not become ready in time."""


class InstallError(LocalStackError):
    """A tool could not be installed."""


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


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
    raise LocalStackError("could not find a free port")


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
        _check_service(service)
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


def _check_service(name: str) -> None:
    if name not in ALL_SERVICES:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(ALL_SERVICES)}")


def _normalize_services(services: Iterable[str] | None) -> list[str]:
    if services is None:
        return list(ALL_SERVICES)
    wanted = list(services)
    for name in wanted:
        _check_service(name)
    return [name for name in ALL_SERVICES if name in wanted]  # canonical order, no duplicates


# --------------------------------------------------------------------------------------------
# Installing tools
# --------------------------------------------------------------------------------------------


def anvil_binary(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    return tools_dir / "eth" / "node_modules" / ANVIL_NPM_PACKAGE / "bin" / "anvil"


def _installed_anvil_version(tools_dir: Path) -> str | None:
    package_json = tools_dir / "eth" / "node_modules" / ANVIL_NPM_PACKAGE / "package.json"
    try:
        version = json.loads(package_json.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version if isinstance(version, str) else None


@contextlib.contextmanager
def _install_lock(tools_dir: Path) -> Iterator[None]:
    """Serialize installs between concurrent launchers (e.g. parallel test workers)."""
    tools_dir.mkdir(parents=True, exist_ok=True)
    with open(tools_dir / ".install.lock", "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _run_install(cmd: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
    log.info("installing %s: %s", what, shlex.join(cmd))
    proc = subprocess.run(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=None if env is None else dict(env),
        check=False,
    )
    if proc.returncode != 0:
        output = proc.stdout.decode(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        raise InstallError(
            f"installing {what} failed ({shlex.join(cmd)} exited {proc.returncode}):\n"
            + "\n".join(output)
        )


def ensure_redis(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    """Path of redis-server; ``apt-get install``-s it when missing."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    with _install_lock(tools_dir):
        found = shutil.which("redis-server")
        if found:
            return Path(found)
        if os.geteuid() != 0:
            raise InstallError(
                "redis-server is not on PATH; install it (apt-get install -y redis-server)"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run_install(["apt-get", "update", "-q"], "apt package lists", env)
        _run_install(["apt-get", "install", "-y", "-q", "redis-server"], "redis-server", env)
    found = shutil.which("redis-server")
    if not found:
        raise InstallError("redis-server still not on PATH after apt-get install")
    return Path(found)


def ensure_anvil(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    """Path of the pinned anvil binary; ``npm install``-s it into ``tools_dir/eth`` if needed."""
    binary = anvil_binary(tools_dir)

    def ok() -> bool:
        return binary.is_file() and _installed_anvil_version(tools_dir) == ANVIL_VERSION

    if ok():
        return binary
    with _install_lock(tools_dir):
        if ok():
            return binary
        if not shutil.which("npm"):
            raise InstallError("npm is not on PATH; it is needed to install anvil")
        prefix = tools_dir / "eth"
        prefix.mkdir(parents=True, exist_ok=True)
        cmd = [
            "npm",
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"{ANVIL_NPM_PACKAGE}@{ANVIL_VERSION}",
        ]
        _run_install(cmd, f"anvil {ANVIL_VERSION}")
    if not ok():
        raise InstallError(f"anvil binary missing after npm install: {binary}")
    binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def _require_executable(name: str, service: str) -> str:
    found = shutil.which(name)
    if not found:
        raise LocalStackError(f"{service}: {name!r} is not on PATH")
    return found


def ensure_tools(
    services: Iterable[str] | None = None, tools_dir: Path = DEFAULT_TOOLS_DIR
) -> dict[str, Path]:
    """Install what the given services need and is missing; return the binaries used."""
    wanted = _normalize_services(services)
    binaries: dict[str, Path] = {}
    if "pubsub" in wanted or "firestore" in wanted:
        binaries["gcloud"] = Path(_require_executable("gcloud", "emulators"))
        _require_executable("java", "emulators")
    if "postgres" in wanted:
        for tool in ("initdb", "postgres", "pg_ctl", "pg_isready"):
            if not (PG_BIN_DIR / tool).is_file():
                raise LocalStackError(f"postgres: {PG_BIN_DIR / tool} not found (PostgreSQL 15)")
        binaries["postgres"] = PG_BIN_DIR / "postgres"
    if "redis" in wanted:
        binaries["redis"] = ensure_redis(tools_dir)
    if "anvil" in wanted:
        binaries["anvil"] = ensure_anvil(tools_dir)
    return binaries


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

ProcId = tuple[int, int]  # (pid, start time in clock ticks): survives pid reuse


def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, starttime) of a process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def process_tree(root: int) -> set[ProcId]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[str, int, int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
                children.setdefault(stat[1], []).append(int(entry.name))
    tree: set[ProcId] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        stat = stats.get(pid)
        if stat is None or stat[0] in "ZX":
            continue
        tree.add((pid, stat[3]))
        todo.extend(children.get(pid, []))
    return tree


def _leaves(procs: set[ProcId]) -> list[ProcId]:
    """The processes in ``procs`` that have no child in ``procs``."""
    parents = set()
    for pid, _start in procs:
        stat = _proc_stat(pid)
        if stat is not None:
            parents.add(stat[1])
    return [p for p in procs if p[0] not in parents]


def proc_alive(proc: ProcId) -> bool:
    """True while the process exists, is not a zombie, and is the same process (start time)."""
    stat = _proc_stat(proc[0])
    return stat is not None and stat[0] not in "ZX" and stat[3] == proc[1]


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[2] == pgid and stat[0] not in "ZX":
                return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_proc(proc: ProcId, sig: signal.Signals) -> None:
    if proc_alive(proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc[0], sig)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    text = "\n".join(data.splitlines()[-lines:])
    return text or "(log is empty)"


@dataclass
class _Running:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    ready_check: Callable[[], bool]
    started_at: float
    ready_after: float | None = None

    @property
    def pgid(self) -> int:
        return self.popen.pid  # start_new_session: the leader's pid is the group id


# --------------------------------------------------------------------------------------------
# Readiness probes
# --------------------------------------------------------------------------------------------

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_ok(url: str) -> bool:
    try:
        with _NO_PROXY_OPENER.open(url, timeout=1.0) as resp:
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
    with _NO_PROXY_OPENER.open(request, timeout=timeout) as resp:
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
        self.services: list[str] = _normalize_services(services)
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
        _check_service(service)
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
            for s in _normalize_services(self.services if services is None else services)
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
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        log.debug("%s: %s", name, shlex.join(cmd))
        try:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=None if env is None else dict(env),
                cwd=cwd,
            )
        except BaseException:
            log_file.close()
            raise
        self._running[name] = _Running(
            name=name,
            port=self.config.port(name),
            popen=popen,
            log_path=log_path,
            log_file=log_file,
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
                f"Last lines of {self._initdb_log_path}:\n{_tail(self._initdb_log_path)}"
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
                        f"{cfg.host}:{r.port}. Last lines of {r.log_path}:\n{_tail(r.log_path)}"
                    )
            if not pending:
                break
            if time.monotonic() > deadline:
                name = pending[0]
                log_path = self._initdb_log_path if self._initdb else self.log_path(name)
                raise ServiceStartError(
                    f"{name} did not become ready on {cfg.host}:{cfg.port(name)} within "
                    f"{cfg.startup_timeout:g}s. Last lines of {log_path}:\n{_tail(log_path)}"
                )
            time.sleep(_POLL_INTERVAL)

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every running service and wait until all their processes are gone. Idempotent."""
        initdb, self._initdb = self._initdb, None
        if initdb is not None:  # interrupted while initdb ran: SIGTERM lets it clean up
            _signal_group(initdb.pid, signal.SIGTERM)
            try:
                initdb.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                _signal_group(initdb.pid, signal.SIGKILL)
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
            for proc in _leaves(procs[r.name]):
                _signal_proc(proc, signal.SIGTERM)
        if not self._wait_gone(running, procs, min(3.0, self.config.stop_timeout)):
            for r in running:
                _signal_group(r.pgid, signal.SIGTERM)
            if not self._wait_gone(running, procs, self.config.stop_timeout):
                self._kill_all(running, procs)
        for r in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.popen.wait(timeout=1.0)
            r.log_file.close()

    def _kill_all(self, running: list[_Running], procs: Mapping[str, set[ProcId]]) -> None:
        for r in running:
            alive = [p for p in procs[r.name] if proc_alive(p)]
            if alive or _group_alive(r.pgid):
                log.warning("%s: still running after SIGTERM, sending SIGKILL", r.name)
            _signal_group(r.pgid, signal.SIGKILL)
            for proc in alive:
                _signal_proc(proc, signal.SIGKILL)
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
                _group_alive(r.pgid) for r in running
            )
            if not alive:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_INTERVAL)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


class _Shutdown(BaseException):
    """Raised from the signal handler to unwind the CLI's foreground loop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _parse_services(value: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    try:
        return _normalize_services(names)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local_stack", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start services, print env, stay in the foreground")
    install = sub.add_parser("install", help="install missing tools and exit")
    for p in (up, install):
        p.add_argument(
            "--services",
            type=_parse_services,
            default=list(ALL_SERVICES),
            help=f"comma-separated subset of: {','.join(ALL_SERVICES)}",
        )
    defaults = StackConfig()
    for name in ALL_SERVICES:
        up.add_argument(f"--{name}-port", type=int, default=defaults.port(name))
    up.add_argument("--host", default=defaults.host)
    up.add_argument("--project", default=defaults.project)
    up.add_argument("--state-dir", type=Path, help="data and logs (default: a temp dir)")
    up.add_argument("--keep-state", action="store_true", help="keep the temp state dir on exit")
    mining = up.add_mutually_exclusive_group()
    mining.add_argument(
        "--block-time", type=float, default=1.0, help="anvil seconds per block (default 1)"
    )
    mining.add_argument("--automine", action="store_true", help="anvil: one block per tx")
    mining.add_argument("--no-mining", action="store_true", help="anvil: mine only on evm_mine")
    up.add_argument("--pg-durable", action="store_true", help="keep postgres fsync on")
    up.add_argument("--no-install", action="store_true", help="do not install missing tools")
    up.add_argument("--env-file", type=Path, help="also write the export lines to this file")
    up.add_argument("--startup-timeout", type=float, default=defaults.startup_timeout)
    return parser


def _export_lines(env: Mapping[str, str]) -> str:
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def _cmd_install(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    binaries = ensure_tools(args.services)
    for name, path in binaries.items():
        log.info("%s: %s", name, path)
    log.info("tools ready in %.1fs", time.monotonic() - t0)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    config = StackConfig(
        host=args.host,
        project=args.project,
        state_dir=args.state_dir,
        keep_state=args.keep_state,
        block_time=None if (args.automine or args.no_mining) else args.block_time,
        no_mining=args.no_mining,
        pg_fast=not args.pg_durable,
        install=not args.no_install,
        startup_timeout=args.startup_timeout,
        **{f"{name}_port": getattr(args, f"{name}_port") for name in ALL_SERVICES},
    )
    stack = Stack(config, services=args.services)
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stopping:
            raise _Shutdown(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(stack.stop)
    exit_code = 0
    try:
        stack.start()
        exports = _export_lines(stack.env())
        sys.stdout.write(exports)
        sys.stdout.flush()
        if args.env_file is not None:
            args.env_file.write_text(exports)
        log.info("state dir: %s", stack.state_dir)
        log.info("local stack is up; Ctrl-C to stop")
        while True:
            time.sleep(0.5)
            dead = stack.dead_services()
            if dead:
                for name in dead:
                    log.error(
                        "%s exited unexpectedly. Last lines of %s:\n%s",
                        name,
                        stack.log_path(name),
                        _tail(stack.log_path(name)),
                    )
                exit_code = 1
                break
    except _Shutdown as exc:
        log.info("received %s, stopping", signal.Signals(exc.signum).name)
        exit_code = 0 if exc.signum in (signal.SIGINT, signal.SIGTERM) else 128 + exc.signum
    except LocalStackError as exc:
        log.error("%s", exc)
        exit_code = 1
    finally:
        stopping = True
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        log.info("stopped")
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="local_stack: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "install":
        try:
            return _cmd_install(args)
        except LocalStackError as exc:
            log.error("%s", exc)
            return 1
    return _cmd_up(args)


if __name__ == "__main__":
    sys.exit(main())
