"""shared/ and api/ import without cycles, counting imports inside functions too: a module can
be imported on its own, first, in a fresh interpreter, and each layer stands on the ones below
(shared/, what every deployable uses, on nothing of api/). The wallet's scheduled jobs import
nothing of api/, so staging does not ship it to them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from infra.stage_functions import packages_of

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "api", "wallet")

KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each module of shared/, api/ and wallet/ -> the modules of those it imports (anywhere)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from shared import logs" imports the module shared.logs
                targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in graph]
                targets = targets or [base]
            for target in targets:
                if target in graph and target != name and target not in PACKAGES:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_deferred_imports() -> None:
    graph = import_graph()
    assert "shared.db" in graph["api.http"]  # imported inside infrastructure_failures()
    assert "shared.logs" in graph["shared.config"]  # "from shared import logs"


def test_shared_imports_nothing_of_api() -> None:
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("shared"):
            assert not {t for t in targets if t.startswith("api.")}, name


def test_the_wallet_domain_imports_nothing_of_api() -> None:
    """The wallet's domain is not an HTTP layer: its jobs and the wallet API are shells over it."""
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("wallet"):
            assert not {t for t in targets if t.startswith("api.")}, name


SCHEDULED_JOBS = ("watcher", "sweep", "sender", "reserves")
"""The wallet's jobs: Cloud Scheduler calls them; they serve no route of the API."""


def test_the_scheduled_jobs_ship_nothing_of_api() -> None:
    """What infra/stage_functions.py ships each job: the packages it imports, followed through
    their own imports (shared.answers gives them the API's JSON and error shape)."""
    for name in SCHEDULED_JOBS:
        assert packages_of(name) == ["shared", "wallet"], name
    # The scheduled audits read the books in Postgres only.
    assert packages_of("audits") == ["shared"]


def test_shared_and_api_have_no_import_cycle() -> None:
    found = [c for c in cycles(import_graph()) if frozenset(c) not in KNOWN_CYCLES]
    assert found == []


def test_config_auth_and_http_are_layered() -> None:
    graph = import_graph()
    assert "api.auth" not in graph["shared.config"]
    assert "api.auth" not in graph["api.http"]
    assert not graph["api.credentials"]  # every transport may build credentials


def test_each_of_config_auth_and_http_imports_first() -> None:
    code = "; ".join(
        f"import {m}" for m in ("api.credentials", "shared.config", "api.http", "api.auth")
    )
    for first in ("shared.config", "api.http", "api.auth", "api.credentials"):
        proc = subprocess.run(
            [sys.executable, "-c", f"import {first}; {code}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
