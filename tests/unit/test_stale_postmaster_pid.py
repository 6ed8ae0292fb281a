"""A postmaster killed outright leaves ``postmaster.pid``; the stack removes it before the
next start unless that pid still runs a postgres on the same data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from infra.services.postgres import clear_stale_pid_file


def lock_file(data: Path, pid: int) -> Path:
    lock = data / "postmaster.pid"
    lock.write_text(f"{pid}\n{data}\n1700000000\n5432\n")
    return lock


def test_a_pid_given_to_another_process_is_stale(tmp_path: Path) -> None:
    lock = lock_file(tmp_path, os.getpid())  # alive, but not a postgres on tmp_path
    clear_stale_pid_file(tmp_path)
    assert not lock.exists()


def test_a_gone_pid_is_stale_and_no_file_is_fine(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lock = lock_file(tmp_path, int(done.stdout))
    clear_stale_pid_file(tmp_path)
    assert not lock.exists()
    clear_stale_pid_file(tmp_path)


def test_a_live_postmaster_of_the_directory_keeps_its_file(tmp_path: Path) -> None:
    code = "import time; time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code, "-D", str(tmp_path)])
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        deadline = time.monotonic() + 10
        while str(tmp_path).encode() not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)  # until it has exec'd
        lock = lock_file(tmp_path, proc.pid)
        clear_stale_pid_file(tmp_path)
        assert lock.exists()
    finally:
        proc.kill()
        proc.wait()
