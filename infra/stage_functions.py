"""Stage every Cloud Function for upload: one folder and one zip per function, and a manifest.

    python -m infra.stage_functions --out build/functions [--only auth --only orders]

A function's upload is what Cloud Functions builds on its own: ``functions/<name>/`` (its
``main.py`` with the entry point ``<name>``, its other modules and its ``requirements.txt``),
plus, beside ``main.py``, each of the project's packages the function imports (``shared/``,
``api/``, ``wallet/``), followed through their own imports, so that ``from shared import ...``
works when the runtime imports ``main.py`` from the folder alone, and a function carries no
package it does not load (the HTTP functions no wallet, the wallet's jobs no api). Only the
packages in ``LIBRARIES`` can be shipped: a function that imports another of the repository's
packages (``infra``, ``matcher_service``, ...) is an error.

The requirements are the function's own ``functions/<name>/requirements.txt`` (pinned, the same
pins as the root ``requirements.txt``), not the root file: a function installs only what it
imports, which keeps builds and cold starts short (the root file carries web3 for the wallet
and sortedcontainers for the matcher). A function without one is an error, not a silent
fallback. tests/deploy/test_staging.py imports every staged ``main.py`` in a clean virtualenv
and checks that every third-party module it loads comes from a distribution its requirements
name.

The zip is deterministic (sorted entries, fixed timestamps and modes), so its SHA-256 depends
on the content only; the object name carries it (``functions/<name>-<sha256[:16]>.zip``), so
Terraform uploads a new object and redeploys a function exactly when its content changed.

Output in ``--out``::

    <name>/                    the staged folder (what the zip holds)
    <name>-<hash>.zip          the upload
    manifest.json              {"runtime", "functions": {name: {entry_point, zip, object,
                               sha256, files}}} (read by terraform/modules/functions)

Standard library only: Cloud Build runs it in a bare Python image.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import re
import shutil
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
RUNTIME: Final = "python311"
"""The Cloud Functions runtime (the Python the project is developed and tested with)."""
OBJECT_PREFIX: Final = "functions/"
HASH_CHARS: Final = 16
_ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS: Final = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_SKIP_SUFFIXES: Final = (".pyc", ".pyo")
_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,30}")
LIBRARIES: Final = ("api", "shared", "wallet")
"""The project's packages a function may import; each is shipped whole to the functions that
import it (directly or through another of them)."""


class StageError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Staged:
    name: str
    folder: Path
    zip_path: Path
    sha256: str
    files: tuple[str, ...]

    @property
    def object_name(self) -> str:
        return f"{OBJECT_PREFIX}{self.zip_path.name}"


def discover(functions_dir: Path) -> list[str]:
    """The functions: every folder of ``functions/`` with a ``main.py``, sorted."""
    return sorted(
        p.name for p in functions_dir.iterdir() if p.is_dir() and (p / "main.py").is_file()
    )


def _files(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and not path.name.endswith(_SKIP_SUFFIXES):
            yield path


def _contents(name: str, repo: Path) -> dict[str, Path]:
    """Archive path -> source file for one function."""
    source = repo / "functions" / name
    if not (source / "main.py").is_file():
        raise StageError(f"functions/{name}/main.py does not exist")
    if not (source / "requirements.txt").is_file():
        raise StageError(
            f"functions/{name}/requirements.txt does not exist: every function declares "
            "its own pinned runtime dependencies"
        )
    entries: dict[str, Path] = {}
    for path in _files(source):
        entries[path.relative_to(source).as_posix()] = path
    for package in packages_of(name, repo):
        for path in _files(repo / package):
            arcname = f"{package}/" + path.relative_to(repo / package).as_posix()
            if arcname in entries:
                raise StageError(f"functions/{name}/{arcname} would shadow the project's {arcname}")
            entries[arcname] = path
    return dict(sorted(entries.items()))


def _imported(root: Path) -> set[str]:
    """The top-level names every ``.py`` file under ``root`` imports (absolute imports, at any
    depth of the code: a lazy import inside a function counts)."""
    names: set[str] = set()
    for path in _files(root):
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def packages_of(name: str, repo: Path = REPO_ROOT) -> list[str]:
    """The project's packages function ``name`` imports, directly or through one another,
    sorted. Importing one of the repository's packages that is not a library is an error."""
    source = repo / "functions" / name
    own = {p.stem for p in source.glob("*.py")} | {p.name for p in source.iterdir() if p.is_dir()}
    project = {p.parent.name for p in repo.glob("*/__init__.py")}
    found: set[str] = set()
    todo = [source]
    while todo:
        for imported in _imported(todo.pop()) - own - found:
            if imported in LIBRARIES:
                found.add(imported)
                todo.append(repo / imported)
            elif imported in project:
                raise StageError(
                    f"functions/{name} imports {imported}, which is not shipped to functions "
                    f"(they get {', '.join(LIBRARIES)})"
                )
    return sorted(found)


def _zip_bytes(entries: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for arcname, path in entries.items():
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, so the mode above is honoured
            zf.writestr(info, path.read_bytes())
    return buffer.getvalue()


def stage_one(name: str, out: Path, repo: Path = REPO_ROOT) -> Staged:
    if not _NAME_RE.fullmatch(name):
        raise StageError(f"function name {name!r} must match {_NAME_RE.pattern}")
    entries = _contents(name, repo)
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    for arcname, path in entries.items():
        target = folder / arcname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    data = _zip_bytes(entries)
    digest = hashlib.sha256(data).hexdigest()
    for old in out.glob(f"{name}-*.zip"):
        old.unlink()
    zip_path = out / f"{name}-{digest[:HASH_CHARS]}.zip"
    zip_path.write_bytes(data)
    return Staged(name, folder, zip_path, digest, tuple(entries))


def manifest(staged: Sequence[Staged]) -> dict[str, object]:
    return {
        "runtime": RUNTIME,
        "functions": {
            s.name: {
                "entry_point": s.name,
                "zip": s.zip_path.name,
                "object": s.object_name,
                "sha256": s.sha256,
                "files": list(s.files),
            }
            for s in staged
        },
    }


def stage(out: Path, only: Sequence[str] = (), repo: Path = REPO_ROOT) -> list[Staged]:
    """Stage ``only`` (default: every function) into ``out`` and write its manifest."""
    available = discover(repo / "functions")
    names = list(only) or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise StageError(f"no such function: {', '.join(unknown)} (have {', '.join(available)})")
    out.mkdir(parents=True, exist_ok=True)
    staged = [stage_one(name, out, repo) for name in names]
    (out / "manifest.json").write_text(json.dumps(manifest(staged), indent=2) + "\n")
    return staged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.stage_functions", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "functions")
    parser.add_argument("--only", action="append", default=[], help="one function (repeatable)")
    args = parser.parse_args(argv)
    try:
        staged = stage(args.out, args.only)
    except StageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    for s in staged:
        sys.stdout.write(f"{s.name:10} {len(s.files):3} files  {s.zip_path}\n")
    sys.stdout.write(f"manifest: {args.out / 'manifest.json'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
