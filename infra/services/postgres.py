"""The throwaway PostgreSQL 15 cluster in ``state_dir/postgres``: made once by initdb (in the
background: it takes seconds, while the other services boot), then started with the same
command each time; run as the postgres OS user when we are root.

``pg_fast`` turns off fsync, synchronous commits and full-page writes (fine for a throwaway
cluster: only an OS crash could lose data)."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from infra.ports import port_open
from infra.processes import signal_group, tail
from infra.services.config import Launch, StackConfig
from infra.services.errors import ServiceStartError
from infra.tools import PG_BIN_DIR, PG_OS_USER

log = logging.getLogger("infra.services")


def as_postgres(cmd: list[str]) -> list[str]:
    """Run as the postgres OS user when we are root (postgres refuses to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_OS_USER, "--", *cmd]
    return cmd


def pg_ctl(data: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``pg_ctl <args> -D data`` as the postgres user; its output in ``stdout``."""
    cmd = [str(PG_BIN_DIR / "pg_ctl"), *args, "-D", str(data)]
    return subprocess.run(
        as_postgres(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )


def ready(host: str, port: int, user: str) -> bool:
    """The port is open and ``pg_isready`` says the server accepts connections."""
    if not port_open(port, host):
        return False
    cmd = [str(PG_BIN_DIR / "pg_isready"), "-q", "-h", host, "-p", str(port), "-U", user, "-t", "1"]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False).returncode == 0


def clear_stale_pid_file(data: Path) -> None:
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


def data_dir(state_dir: Path) -> Path:
    return state_dir / "postgres"


def log_path(state_dir: Path) -> Path:
    """The server's own log, inside its data directory (written by the postgres user)."""
    return data_dir(state_dir) / "server.log"


class Cluster:
    """The cluster of one stack: ``launch`` starts it (or its initdb), ``poll`` until the
    postmaster can start, ``stop_server`` asks it to stop (``pg_ctl stop -m fast``)."""

    def __init__(self, cfg: StackConfig, state_dir: Path) -> None:
        self.cfg = cfg
        self.data = data_dir(state_dir)
        self.initdb_log = state_dir / "logs" / "initdb.log"
        self._marker = state_dir / "postgres.initialized"
        self._initdb: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0

    @property
    def initializing(self) -> bool:
        """initdb is running."""
        return self._initdb is not None

    def launch(self) -> Launch | None:
        """The postmaster's launch when the cluster exists; else initdb starts in the
        background and this is None (``poll`` until the postmaster can start)."""
        self.launched_at = time.monotonic()
        if self._marker.is_file() and (self.data / "PG_VERSION").is_file():
            return self._postmaster()
        shutil.rmtree(self.data, ignore_errors=True)  # leftovers of an interrupted initdb
        self.data.mkdir(parents=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_OS_USER)
            os.chown(self.data, pw.pw_uid, pw.pw_gid)
        initdb = [
            str(PG_BIN_DIR / "initdb"),
            "-D", str(self.data),
            "-U", self.cfg.pg_user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]  # fmt: skip
        self.initdb_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.initdb_log, "wb") as log_file:
            self._initdb = subprocess.Popen(
                as_postgres(initdb),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return None

    def poll(self) -> Launch | None:
        """The postmaster's launch once a background initdb has succeeded (once); raises
        ServiceStartError when it failed."""
        initdb = self._initdb
        if initdb is None or initdb.poll() is None:
            return None
        self._initdb = None
        if initdb.returncode != 0:
            raise ServiceStartError(
                f"postgres: initdb failed (exit {initdb.returncode}) in {self.data}. "
                f"Last lines of {self.initdb_log}:\n{tail(self.initdb_log)}"
            )
        self._marker.touch()
        return self._postmaster()

    def _postmaster(self) -> Launch:
        cfg = self.cfg
        clear_stale_pid_file(self.data)
        settings = {
            "listen_addresses": cfg.host,
            "port": str(cfg.postgres_port),
            "unix_socket_directories": str(self.data),
        }
        if cfg.pg_fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings |= dict(cfg.pg_settings)
        cmd = [str(PG_BIN_DIR / "postgres"), "-D", str(self.data)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return Launch(
            as_postgres(cmd),
            lambda: ready(cfg.host, cfg.postgres_port, cfg.pg_user),
            cwd=self.data,
        )

    def interrupt(self) -> None:
        """Stop an initdb still running (SIGTERM lets it clean up)."""
        initdb, self._initdb = self._initdb, None
        if initdb is None:
            return
        signal_group(initdb.pid, signal.SIGTERM)
        try:
            initdb.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            signal_group(initdb.pid, signal.SIGKILL)
            initdb.wait(timeout=5.0)

    def stop_server(self) -> None:
        """``pg_ctl stop -m fast``: every connection cut, the server gone when it returns."""
        timeout = str(int(self.cfg.stop_timeout))
        proc = pg_ctl(self.data, "stop", "-m", "fast", "-w", "-t", timeout)
        if proc.returncode != 0:
            log.warning("pg_ctl stop failed: %s", proc.stdout.decode(errors="replace").strip())
