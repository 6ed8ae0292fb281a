"""Shared helpers of the deployment tests: cached tool virtualenvs and a Terraform reader.

Tool virtualenvs live in ``.tools/<name>-<hash>`` (git-ignored), where the hash covers the
pinned requirements and the Python version: the first run installs from PyPI (pip only, no
other downloads), later runs reuse it, and a changed requirements file makes a new one (the
old one is removed). A file lock keeps two test processes from building the same one at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools"
TERRAFORM = REPO / "terraform"
ENV_ROOT = TERRAFORM / "environments" / "prod"
MODULES = TERRAFORM / "modules"


# --------------------------------------------------------------------------------------------
# Tool virtualenvs
# --------------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment: no PYTHONPATH (the Makefile exports the repository), no venv."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_CERT", "SSL_CERT_FILE")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.update(extra)
    return env


def tool_venv(name: str, requirements: str) -> Path:
    """The virtualenv ``.tools/<name>-<hash>`` with ``requirements`` (the text of a pinned
    requirements file) installed, made on first use."""
    digest = hashlib.sha256(f"{sys.version_info[:3]}\n{requirements}".encode()).hexdigest()[:12]
    venv = TOOLS / f"{name}-{digest}"
    done = venv / ".complete"
    if done.exists():
        return venv
    TOOLS.mkdir(exist_ok=True)
    with open(TOOLS / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return venv
        for stale in TOOLS.glob(f"{name}-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True, env=clean_env())
        req_file = venv / "requirements.txt"
        req_file.write_text(requirements)
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        result = subprocess.run(
            [
                *pip,
                "install",
                "--quiet",
                "--no-compile",
                "--disable-pip-version-check",
                "-r",
                str(req_file),
            ],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise RuntimeError(f"pip install for {name} failed:\n{result.stderr[-4000:]}")
        done.write_text(requirements)
    return venv


# --------------------------------------------------------------------------------------------
# Terraform, as python-hcl2 reads it, made plain
# --------------------------------------------------------------------------------------------

_MARKERS = ("__is_block__", "__comments__", "__inline_comments__")


def _plain(value: Any) -> Any:
    """python-hcl2 8 keeps the quotes of string literals and block labels and adds markers:
    ``'"x"'`` becomes ``'x'``; expressions stay as ``'${...}'``."""
    if isinstance(value, dict):
        return {_unquote(k): _plain(v) for k, v in value.items() if k not in _MARKERS}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def load_tf(path: Path) -> dict[str, Any]:
    with open(path) as f:
        doc: dict[str, Any] = _plain(hcl2.load(f))
    return doc


def tf_files(root: Path = TERRAFORM) -> list[Path]:
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def load_dir(directory: Path) -> dict[str, list[Any]]:
    """Every top-level block kind of a module's .tf files, merged."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, blocks in load_tf(path).items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(doc: dict[str, list[Any]], rtype: str) -> dict[str, dict[str, Any]]:
    """``{name: body}`` of the resources of one type."""
    found: dict[str, dict[str, Any]] = {}
    for block in doc.get("resource", []):
        for kind, named in block.items():
            if kind == rtype:
                found.update(named)
    return found


def all_resources(doc: dict[str, list[Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for block in doc.get("resource", []):
        for kind, named in block.items():
            for name, body in named.items():
                yield kind, name, body


def named_blocks(doc: dict[str, list[Any]], kind: str) -> dict[str, dict[str, Any]]:
    """``{label: body}`` of single-label blocks: module, variable, output."""
    found: dict[str, dict[str, Any]] = {}
    for block in doc.get(kind, []):
        found.update(block)
    return found


def locals_of(doc: dict[str, list[Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in doc.get("locals", []):
        merged.update(block)
    return merged


_LOCAL_REF = re.compile(r"\$\{local\.([a-z_][a-z0-9_]*)\}")


def resolve(value: Any, local_values: dict[str, Any]) -> Any:
    """Replace whole-value references ``${local.x}`` with the local's (plain) value."""
    if isinstance(value, str):
        match = _LOCAL_REF.fullmatch(value)
        if match and match.group(1) in local_values:
            return resolve(local_values[match.group(1)], local_values)
        return value
    if isinstance(value, list):
        return [resolve(v, local_values) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, local_values) for k, v in value.items()}
    return value


def one(value: Any) -> dict[str, Any]:
    """A nested block (python-hcl2 gives a list of one)."""
    assert isinstance(value, list) and len(value) == 1, value
    block = value[0]
    assert isinstance(block, dict)
    return block


# --------------------------------------------------------------------------------------------
# The repository's own facts
# --------------------------------------------------------------------------------------------


def function_folders() -> list[str]:
    """Every folder of functions/ with a main.py: what must be deployed."""
    return sorted(
        p.name for p in (REPO / "functions").iterdir() if p.is_dir() and (p / "main.py").is_file()
    )


def gateway_routes() -> list[tuple[str, str, str]]:
    """infra/gateway.py's ``ROUTES`` as ``(method or "", prefix, function)``: the table
    infra.api_spec makes from the functions' route declarations."""
    from infra.api_spec import route_table

    return route_table()


def generated_routes() -> list[tuple[str, str, str]]:
    """The load balancer's routes as terraform reads them (``routes.json`` beside its
    locals), ``(method, prefix, backend)``."""
    rows = json.loads((ENV_ROOT / "routes.json").read_text())
    return [(r["method"], r["prefix"], r["backend"]) for r in rows]


def pinned_requirements(path: Path) -> dict[str, str]:
    """``{normalised name: version}`` of a requirements file that pins with ``==``."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.relative_to(REPO)}: {line!r} is not pinned with =="
        pins[normalise(name)] = version.strip()
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()
