"""The API's route declarations as the files made from them: the OpenAPI document and the
route tables of the local gateway and the cloud's load balancer.

    python -m infra.api_spec --write    # (re)write the generated files
    python -m infra.api_spec --check    # exit 1 when one differs from what the routes make

Every HTTP function (``functions/<name>/main.py``, its ``api``) declares its routes with
their documentation (``api.http.Api.route``). From them:

- ``functions/docs/openapi.json``: the OpenAPI document (``api.openapi.build``), served by
  the docs function at ``GET /v1/openapi.json`` (the deployed docs function has only its own
  folder, shared/ and api/, so it serves the file rather than importing the other functions);
- ``terraform/environments/prod/routes.json``: the load balancer's route table, which
  terraform reads (``jsondecode(file(...))``); infra/gateway.py computes the same table
  (``gateway_routes``) when it starts.

tests/unit/test_openapi.py fails when a generated file is not what the routes make.

A route table sends a path prefix (``/v1/<first segment>``) to the function serving every
route under it. Where two functions share a prefix (``/v1/orders``: reads in queries, writes
in orders) each method must belong to one function: the function with the most methods takes
the plain prefix, the others a route per method (``GET /v1/orders``), ahead of it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final

import orjson

from api.http import Api
from api.openapi import JSON, build
from api.openapi_schemas import schemas

REPO: Final = Path(__file__).resolve().parents[1]
FUNCTIONS: Final = REPO / "functions"
DOCUMENT_FILE: Final = FUNCTIONS / "docs" / "openapi.json"
ROUTES_FILE: Final = REPO / "terraform" / "environments" / "prod" / "routes.json"
JOBS: Final = frozenset({"watcher", "sweep", "sender", "audits", "reserves"})
"""Scheduled functions (Cloud Scheduler calls them): no routes of the public API."""
EXTRA_ROUTES: Final[tuple[tuple[str, str, str], ...]] = (
    ("", "/v1/ws", "ws"),
    ("", "/ws", "ws"),
    ("", "/stream", "ws"),
    ("", "/ws-api/v3", "ws"),
)
"""The load balancer's routes to what is not a function: the ws service, its native feed and
Binance's stream paths (locally on its own port, not behind the gateway)."""


@cache
def apis() -> dict[str, Api]:
    """Every HTTP function's ``Api`` by function name (each ``functions/<name>/main.py``)."""
    found: dict[str, Api] = {}
    for main in sorted(FUNCTIONS.glob("*/main.py")):
        name = main.parent.name
        if name in JOBS:
            continue
        api = getattr(importlib.import_module(f"functions.{name}.main"), "api", None)
        if not isinstance(api, Api):
            raise TypeError(f"functions/{name}/main.py has no Api named api")
        found[name] = api
    return found


def document() -> JSON:
    """The OpenAPI document the routes make."""
    return build(apis(), schemas())


BINANCE_PREFIX: Final = "/api/v3"
"""The Binance dialect's paths: one prefix, one function (functions/binance)."""


def _prefix(pattern: str) -> str:
    if pattern.startswith(BINANCE_PREFIX + "/"):
        return BINANCE_PREFIX
    parts = pattern.split("/")
    if len(parts) < 3 or parts[1] != "v1" or "{" in parts[2]:
        raise ValueError(f"a route outside /v1/<name>: {pattern}")
    return "/".join(parts[:3])


def route_table() -> list[tuple[str, str, str]]:
    """``(method or "", prefix, function)`` in precedence order: per prefix, the method
    routes first, then the plain one; prefixes in the order of their first route."""
    owners: dict[str, dict[str, set[str]]] = {}  # prefix -> function -> methods
    for function, api in apis().items():
        for method, pattern in api.routes:
            owners.setdefault(_prefix(pattern), {}).setdefault(function, set()).add(method)
    table: list[tuple[str, str, str]] = []
    for prefix, by_function in owners.items():
        taken: dict[str, str] = {}
        for function, methods in by_function.items():
            for method in methods:
                if taken.setdefault(method, function) != function:
                    raise ValueError(f"{method} {prefix}: both {taken[method]} and {function}")
        ranked = sorted(by_function, key=lambda f: (-len(by_function[f]), f))
        plain, others = ranked[0], ranked[1:]
        for function in others:
            table.extend((m, prefix, function) for m in sorted(by_function[function]))
        table.append(("", prefix, plain))
    return table


def gateway_routes() -> tuple[tuple[str, str], ...]:
    """infra/gateway.py's ``ROUTES``: ``("[METHOD ]prefix", "functions.<f>.main:<f>")``."""
    return tuple(
        (f"{method} {prefix}" if method else prefix, f"functions.{function}.main:{function}")
        for method, prefix, function in route_table()
    )


def load_balancer_routes() -> list[dict[str, str]]:
    """terraform's ``local.routes`` (modules/api_entry's ``routes``): the gateway's and the
    routes to the ws service."""
    return [
        {"prefix": prefix, "method": method, "backend": backend}
        for method, prefix, backend in (*route_table(), *EXTRA_ROUTES)
    ]


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def generated() -> dict[Path, bytes]:
    """Each generated file's path and the content the routes make."""
    return {DOCUMENT_FILE: _json(document()), ROUTES_FILE: _json(load_balancer_routes())}


def stale() -> list[Path]:
    """The generated files that differ from what the routes make."""
    return [
        path
        for path, content in generated().items()
        if not path.exists() or path.read_bytes() != content
    ]


def main(argv: Sequence[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m infra.api_spec", description=summary)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="write the generated files")
    action.add_argument("--check", action="store_true", help="exit 1 if one is out of date")
    args = parser.parse_args(argv)
    if args.write:
        for path, content in generated().items():
            path.write_bytes(content)
            print(f"wrote {path.relative_to(REPO)}")
        return 0
    out_of_date = stale()
    for path in out_of_date:
        print(f"{path.relative_to(REPO)} is out of date: python -m infra.api_spec --write")
    return 1 if out_of_date else 0


if __name__ == "__main__":
    sys.exit(main())
