"""Compile TestToken.sol into the committed TestToken.json with a pinned solc-js.

Usage::

    python -m infra.token.build            # (re)write infra/token/TestToken.json
    python -m infra.token.build --check    # recompile; exit 1 if the committed artifact differs

solc-js (the ``solc`` npm package, which bundles the compiler as soljson.js) is installed with
``npm ci`` from this directory's package-lock.json into ``.tools/solc`` when missing. The
compiler version, the settings and the source fully determine the output, so anyone can
reproduce the committed bytecode; ``make run`` only reads the artifact and needs no compiler.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from infra.token import ARTIFACT_PATH, CONTRACT_NAME, SOURCE_PATH, TOKEN_DIR
from infra.tools import DEFAULT_TOOLS_DIR

log = logging.getLogger("infra.token.build")

PACKAGE_JSON: Final[Path] = TOKEN_DIR / "package.json"
PACKAGE_LOCK: Final[Path] = TOKEN_DIR / "package-lock.json"

#: Fixed compiler settings (recorded in the artifact). evmVersion is pinned rather than left
#: to the compiler default so the bytecode runs on any Cancun-or-later chain (anvil's
#: default hardfork is newer) and does not change when the pinned solc is bumped.
SETTINGS: Final[dict[str, Any]] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "ipfs"},
}

# Reads a standard-JSON input on stdin and prints {"version", "output"}; the compiler is
# loaded from the path in SOLC_JS so that no global install or cwd matters.
_NODE_COMPILE: Final[str] = """
const solc = require(process.env.SOLC_JS);
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const output = JSON.parse(solc.compile(Buffer.concat(chunks).toString("utf8")));
  process.stdout.write(JSON.stringify({ version: solc.version(), output }));
});
"""


class BuildError(RuntimeError):
    """solc-js could not be installed, or the source did not compile."""


def pinned_solc_version() -> str:
    """The exact ``solc`` version package.json pins (the single source of truth)."""
    version = json.loads(PACKAGE_JSON.read_text())["dependencies"]["solc"]
    if not isinstance(version, str) or not version[:1].isdigit():
        raise BuildError(f"{PACKAGE_JSON}: solc must be pinned to an exact version: {version!r}")
    return version


def solc_prefix(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    return tools_dir / "solc"


def _solc_package_dir(tools_dir: Path) -> Path:
    return solc_prefix(tools_dir) / "node_modules" / "solc"


def _installed(tools_dir: Path) -> bool:
    """The pinned solc is installed from exactly the committed lock file."""
    prefix = solc_prefix(tools_dir)
    try:
        version = json.loads((_solc_package_dir(tools_dir) / "package.json").read_text())["version"]
        same_lock = (prefix / "package-lock.json").read_bytes() == PACKAGE_LOCK.read_bytes()
    except (OSError, ValueError, KeyError):
        return False
    return bool(version == pinned_solc_version() and same_lock)


@contextlib.contextmanager
def _install_lock(tools_dir: Path) -> Iterator[None]:
    """Serialize installs between concurrent builds (e.g. parallel test workers)."""
    tools_dir.mkdir(parents=True, exist_ok=True)
    with open(tools_dir / ".solc-install.lock", "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def ensure_solc(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    """Directory of the pinned solc-js package; ``npm ci``-s it into ``tools_dir/solc``."""
    if _installed(tools_dir):
        return _solc_package_dir(tools_dir)
    with _install_lock(tools_dir):
        if _installed(tools_dir):
            return _solc_package_dir(tools_dir)
        if not shutil.which("npm"):
            raise BuildError("npm is not on PATH; it is needed to install solc-js")
        prefix = solc_prefix(tools_dir)
        prefix.mkdir(parents=True, exist_ok=True)
        # npm ci needs both files in the prefix; it installs exactly the lock file's tree.
        shutil.copyfile(PACKAGE_JSON, prefix / "package.json")
        shutil.copyfile(PACKAGE_LOCK, prefix / "package-lock.json")
        cmd = [
            "npm", "ci", "--prefix", str(prefix),
            "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
        ]  # fmt: skip
        log.info("installing solc-js %s: %s", pinned_solc_version(), shlex.join(cmd))
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BuildError(
                f"{shlex.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
    if not _installed(tools_dir):
        raise BuildError(f"solc-js {pinned_solc_version()} missing after npm ci in {prefix}")
    return _solc_package_dir(tools_dir)


def compile_token(tools_dir: Path = DEFAULT_TOOLS_DIR) -> dict[str, Any]:
    """Compile TestToken.sol with the pinned compiler and settings; return the artifact."""
    solc_dir = ensure_solc(tools_dir)
    source = SOURCE_PATH.read_bytes()
    # The source key is a bare file name: it ends up in the metadata hash inside the
    # bytecode, so it must not depend on where the checkout lives.
    source_key = SOURCE_PATH.name
    standard_input = {
        "language": "Solidity",
        "sources": {source_key: {"content": source.decode("utf-8")}},
        "settings": {
            **SETTINGS,
            "outputSelection": {source_key: {CONTRACT_NAME: ["abi", "evm.bytecode.object"]}},
        },
    }
    node = shutil.which("node")
    if node is None:
        raise BuildError("node is not on PATH; it is needed to run solc-js")
    proc = subprocess.run(
        [node, "-e", _NODE_COMPILE],
        input=json.dumps(standard_input),
        capture_output=True,
        text=True,
        env={**os.environ, "SOLC_JS": str(solc_dir)},
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"solc-js failed (exit {proc.returncode}):\n{proc.stderr}")
    reply = json.loads(proc.stdout)
    version: str = reply["version"]
    output: dict[str, Any] = reply["output"]
    if not version.startswith(pinned_solc_version() + "+"):
        raise BuildError(f"solc-js reports {version}, expected {pinned_solc_version()}")
    problems = output.get("errors", [])
    for problem in problems:
        log.warning("%s", problem.get("formattedMessage", problem).rstrip())
    if any(p.get("severity") == "error" for p in problems):
        raise BuildError(f"{SOURCE_PATH.name} did not compile")
    contract = output["contracts"][source_key][CONTRACT_NAME]
    return {
        "contract": CONTRACT_NAME,
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "compiler": f"solc-js {version}",
        "settings": SETTINGS,
        "source_sha256": hashlib.sha256(source).hexdigest(),
    }


def render(artifact: dict[str, Any]) -> str:
    """The artifact file's exact text (stable formatting, so --check can compare bytes)."""
    return json.dumps(artifact, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.token.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="recompile and fail if the committed artifact differs (writes nothing)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="token build: %(message)s", stream=sys.stderr)
    try:
        text = render(compile_token())
    except BuildError as exc:
        log.error("%s", exc)
        return 2
    rel = ARTIFACT_PATH.relative_to(TOKEN_DIR.parent.parent)
    if args.check:
        try:
            committed = ARTIFACT_PATH.read_text()
        except FileNotFoundError:
            log.error("%s is missing; run python -m infra.token.build", rel)
            return 1
        if committed != text:
            log.error(
                "%s differs from a fresh compile of %s (stale or not reproducible); "
                "run python -m infra.token.build and commit the result",
                rel,
                SOURCE_PATH.name,
            )
            return 1
        log.info("%s is reproducible", rel)
        return 0
    ARTIFACT_PATH.write_text(text)
    log.info("wrote %s", rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
