"""The launcher toolkit: child processes with their output in a log file, waiting until
something is ready, the tail of a log, and the process tree (to stop without leftovers).

Used by ``make run`` (infra/run.py), the local services (infra/services/), the benchmarks
and the tests. A child runs in a session of its own (its own process group), so a terminal's
Ctrl-C reaches only the launcher, which then stops the children in order; stopping signals the
whole group and, when SIGTERM is not enough, SIGKILLs the group and every process that
descended from the child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Final

log = logging.getLogger("infra.processes")

REPO_ROOT: Final[Path] = Path(__file__).resolve().parent.parent
LOG_TAIL_LINES: Final[int] = 30
POLL_INTERVAL: Final[float] = 0.05
STOP_TIMEOUT: Final[float] = 15.0

NO_PROXY: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""An opener that ignores proxy settings: everything the launchers probe is on loopback."""


class LaunchError(RuntimeError):
    """Base class for launcher errors: a child died, something was not ready in time."""


class ChildExitedError(LaunchError):
    """A child process exited while it was expected to run."""


class NotReadyError(LaunchError):
    """What was waited for did not become ready in time."""


# --------------------------------------------------------------------------------------------
# Logs and probes
# --------------------------------------------------------------------------------------------


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file (read from its end, so big logs are cheap)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max(16384, lines * 512)))
            data = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    text = "\n".join(data.splitlines()[-lines:])
    return text or "(log is empty)"


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status ``url`` answers a GET with, or None when nothing answers."""
    try:
        with NO_PROXY.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError, ValueError):
        return None


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    *children: Child,
    check: Callable[[], None] | None = None,
    interval: float = POLL_INTERVAL,
) -> None:
    """Poll ``ready`` until it is true. Raises ChildExitedError as soon as one of ``children`` has
    exited (``check`` may raise too), and NotReadyError after ``timeout`` seconds; both name
    ``what`` and carry the tail of the children's logs."""
    deadline = time.monotonic() + timeout
    while not ready():
        for child in children:
            child.check()
        if check is not None:
            check()
        if time.monotonic() > deadline:
            logs = "".join(f"\nLast lines of {c.log_path}:\n{c.tail()}" for c in children)
            raise NotReadyError(f"{what} was not ready within {timeout:g}s{logs}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# The process tree
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


def leaves(procs: set[ProcId]) -> list[ProcId]:
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


def group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[2] == pgid and stat[0] not in "ZX":
                return True
    return False


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def signal_proc(proc: ProcId, sig: signal.Signals) -> None:
    if proc_alive(proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc[0], sig)


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------

# Run first in a Python child: ask the kernel to SIGTERM it when the launcher dies (a SIGKILL
# gives the launcher no chance to stop it), then exec the real command. A wrapper rather than a
# preexec_fn: forking while gRPC threads run is safe only when nothing runs before the exec.
_DIE_WITH_PARENT: Final = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass  # not Linux: the launcher's stop() still stops it
if os.getppid() != int(sys.argv[1]):
    sys.exit("the launcher is gone")
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


class Child:
    """A command run as a child process in a session of its own, its output in a log file."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = REPO_ROOT,
        append: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab" if append else "wb")  # noqa: SIM115 - closed in stop()
        log.debug("%s: %s", name, " ".join(cmd))
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                list(cmd),
                env=None if env is None else dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    @classmethod
    def python(
        cls,
        name: str,
        args: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = False,
        append: bool = False,
    ) -> Child:
        """``python ARGS`` (this interpreter) at the repository's root; with
        ``die_with_parent``, the kernel stops it when this process dies."""
        head = [sys.executable]
        if die_with_parent:
            head += ["-c", _DIE_WITH_PARENT, str(os.getpid())]
        return cls(name, [*head, *args], log_path, env=env, append=append)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session: the leader's pid is the group id

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log_path, lines)

    def check(self) -> None:
        """Raise ChildExitedError, with the log's tail, when the child has exited."""
        if self.proc.poll() is not None:
            raise ChildExitedError(
                f"{self.name} exited with code {self.proc.returncode}. "
                f"Last lines of {self.log_path}:\n{self.tail()}"
            )

    def close_log(self) -> None:
        self._log.close()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM to its process group, then, after ``timeout``, SIGKILL to the group and
        every process that descended from it. Returns the exit code."""
        procs = process_tree(self.proc.pid)
        if self.proc.poll() is None:
            signal_group(self.pgid, signal.SIGTERM)
        if not self._wait_gone(procs, timeout):
            log.warning("%s: still running after SIGTERM, sending SIGKILL", self.name)
            self._kill(procs)
        return self._reap()

    def kill(self) -> int | None:
        """SIGKILL to the group and its descendants: no chance to clean up."""
        self._kill(process_tree(self.proc.pid))
        return self._reap()

    def _kill(self, procs: set[ProcId]) -> None:
        signal_group(self.pgid, signal.SIGKILL)
        for proc in procs:
            signal_proc(proc, signal.SIGKILL)

    def _wait_gone(self, procs: set[ProcId], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.proc.poll()
            if not any(proc_alive(p) for p in procs):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_INTERVAL)

    def _reap(self) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
