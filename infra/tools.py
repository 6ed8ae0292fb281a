"""The local services' names and the tools they need: gcloud and java (emulators),
PostgreSQL 15, redis-server (``apt-get install``-ed when missing) and a pinned anvil
(``npm install``-ed into ``.tools/eth``); the web page's build (``npm ci`` and ``npm run build``
in web/ when it is missing or stale) and, for the browser tests, Debian's chromium
(``apt-get install``-ed when missing)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from infra.processes import LOG_TAIL_LINES, REPO_ROOT, LaunchError

log = logging.getLogger("infra.tools")

ALL_SERVICES: Final[tuple[str, ...]] = ("pubsub", "firestore", "postgres", "redis", "anvil")

DEFAULT_TOOLS_DIR: Final[Path] = REPO_ROOT / ".tools"

ANVIL_NPM_PACKAGE: Final[str] = "@foundry-rs/anvil-linux-amd64"
ANVIL_VERSION: Final[str] = "1.7.1"  # `npm view @foundry-rs/anvil-linux-amd64 version`
ANVIL_CHAIN_ID: Final[int] = 31337

WEB_DIR: Final[Path] = REPO_ROOT / "web"
WEB_BUILD_INPUTS: Final = (
    "package.json", "package-lock.json", "index.html", "vite.config.ts", "tsconfig.json",
)  # fmt: skip
"""What the page's build reads besides ``src/``."""
CHROMIUM: Final[Path] = Path("/usr/bin/chromium")

PG_BIN_DIR: Final[Path] = Path("/usr/lib/postgresql/15/bin")
PG_OS_USER: Final[str] = "postgres"


class InstallError(LaunchError):
    """A tool could not be installed."""


def check_service(name: str) -> None:
    if name not in ALL_SERVICES:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(ALL_SERVICES)}")


def normalize_services(services: Iterable[str] | None) -> list[str]:
    if services is None:
        return list(ALL_SERVICES)
    wanted = list(services)
    for name in wanted:
        check_service(name)
    return [name for name in ALL_SERVICES if name in wanted]  # canonical order, no duplicates


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
        output = proc.stdout.decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
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


def _apt_install(package: str, binary: str, tools_dir: Path) -> Path:
    """Path of ``binary``; ``apt-get install``-s ``package`` when it is not on PATH."""
    found = shutil.which(binary)
    if found:
        return Path(found)
    with _install_lock(tools_dir):
        found = shutil.which(binary)
        if found:
            return Path(found)
        if os.geteuid() != 0:
            raise InstallError(
                f"{binary} is not on PATH; install it (apt-get install -y {package})"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run_install(["apt-get", "update", "-q"], "apt package lists", env)
        _run_install(["apt-get", "install", "-y", "-q", package], package, env)
    found = shutil.which(binary)
    if not found:
        raise InstallError(f"{binary} still not on PATH after apt-get install {package}")
    return Path(found)


def ensure_chromium(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    """Path of Debian's chromium (the browser tests drive it with Playwright, whose own browser
    downloads are not used); ``apt-get install``-s it when missing."""
    if CHROMIUM.is_file():
        return CHROMIUM
    _apt_install("chromium", "chromium", tools_dir)
    if not CHROMIUM.is_file():
        raise InstallError(f"{CHROMIUM} missing after apt-get install chromium")
    return CHROMIUM


def _web_sources_digest(web_dir: Path) -> str:
    """A digest of everything the page's build reads: a change to any of it makes it stale."""
    digest = hashlib.sha256()
    files = [web_dir / name for name in WEB_BUILD_INPUTS]
    files += sorted(p for p in (web_dir / "src").rglob("*") if p.is_file())
    for file in files:
        if file.is_file():
            digest.update(str(file.relative_to(web_dir)).encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def ensure_web_build(web_dir: Path = WEB_DIR, tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    """The built web page (``web_dir/dist``): ``npm ci`` when its dependencies do not match the
    lock file, ``npm run build`` when the build is missing or older than its sources."""
    dist = web_dir / "dist"
    stamp = dist / ".sources"
    lock = web_dir / "package-lock.json"
    installed = web_dir / "node_modules" / ".lock-digest"

    def digest_of(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    def read(path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except OSError:
            return None

    def built() -> bool:
        return (dist / "index.html").is_file() and read(stamp) == _web_sources_digest(web_dir)

    if built():
        return dist
    with _install_lock(tools_dir):
        if built():
            return dist
        if not shutil.which("npm"):
            raise InstallError("npm is not on PATH; it is needed to build the web page")
        npm = ["npm", "--prefix", str(web_dir), "--no-audit", "--no-fund", "--loglevel=error"]
        if read(installed) != digest_of(lock):
            _run_install([*npm, "ci"], "the web page's dependencies (npm ci)")
            installed.write_text(digest_of(lock) + "\n")
        sources = _web_sources_digest(web_dir)
        _run_install([*npm, "run", "build"], "the web page (npm run build)")
        stamp.write_text(sources + "\n")
    return dist


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
        raise LaunchError(f"{service}: {name!r} is not on PATH")
    return found


def ensure_tools(
    services: Iterable[str] | None = None, tools_dir: Path = DEFAULT_TOOLS_DIR
) -> dict[str, Path]:
    """Install what the given services need and is missing; return the binaries used."""
    wanted = normalize_services(services)
    binaries: dict[str, Path] = {}
    if "pubsub" in wanted or "firestore" in wanted:
        binaries["gcloud"] = Path(_require_executable("gcloud", "emulators"))
        _require_executable("java", "emulators")
    if "postgres" in wanted:
        for tool in ("initdb", "postgres", "pg_ctl", "pg_isready"):
            if not (PG_BIN_DIR / tool).is_file():
                raise LaunchError(f"postgres: {PG_BIN_DIR / tool} not found (PostgreSQL 15)")
        binaries["postgres"] = PG_BIN_DIR / "postgres"
    if "redis" in wanted:
        binaries["redis"] = ensure_redis(tools_dir)
    if "anvil" in wanted:
        binaries["anvil"] = ensure_anvil(tools_dir)
    return binaries
