"""The OpenAPI document, generated from the routes (infra.api_spec, api.openapi), against
the code and the files made from it: every route a function registers is documented with its
method and function and every documented operation has a handler, the generated files
(functions/docs/openapi.json, the load balancer's routes.json) are what the routes make now,
the gateway sends each operation to the function the document names, and the document itself
holds together (references, path parameters)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import orjson

from api.http import Api, Body, RouteDoc, json_response
from api.openapi import DECIMAL_PATTERN, SIGNED_DECIMAL_PATTERN, build, derived_errors
from infra import api_spec
from infra.api_spec import document
from infra.gateway import ROUTES, create_app
from shared.money import format_units

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
METHODS = ("get", "post", "put", "patch", "delete")
JOBS = {"watcher", "sweep", "sender", "audits", "reserves"}
"""Scheduled wallet jobs (called by Cloud Scheduler): no routes of the public API."""


def function_apis() -> dict[str, Api]:
    """Every function's ``Api`` (``functions/<name>/main.py``, attribute ``api``)."""
    apis: dict[str, Api] = {}
    for main in sorted(FUNCTIONS.glob("*/main.py")):
        name = main.parent.name
        if name in JOBS:
            continue
        module = importlib.import_module(f"functions.{name}.main")
        api = getattr(module, "api", None)
        assert isinstance(api, Api), f"functions/{name}/main.py has no Api named api"
        apis[name] = api
    return apis


def test_the_generated_files_are_what_the_routes_make() -> None:
    stale = [str(path.relative_to(api_spec.REPO)) for path in api_spec.stale()]
    assert not stale, f"out of date (python -m infra.api_spec --write): {stale}"


def test_every_route_is_declared_with_its_documentation() -> None:
    for name, api in function_apis().items():
        for method, pattern, doc in api.documented:
            assert doc is not None, f"{method} {pattern} ({name}): no summary, responses, ..."


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document()["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method.upper(), op


def test_every_route_is_documented_with_its_function() -> None:
    doc_paths = document()["paths"]
    missing = []
    for name, api in function_apis().items():
        for method, pattern in api.routes:
            op = doc_paths.get(pattern, {}).get(method.lower())
            if op is None:
                missing.append(f"{method} {pattern} ({name})")
            else:
                assert op["x-function"] == name, f"{method} {pattern}: served by {name}"
    assert not missing, "routes missing from the document: " + ", ".join(missing)


def test_every_documented_operation_has_a_handler() -> None:
    apis = function_apis()
    for path, method, op in operations():
        name = op["x-function"]
        assert name in apis, f"{method} {path}: no function {name}"
        assert (method, path) in apis[name].routes, f"{method} {path}: no handler in {name}"


def _stub(target: str) -> Any:
    def endpoint(request: flask.Request) -> flask.Response:
        return flask.Response(orjson.dumps({"target": target}), mimetype="application/json")

    return endpoint


def test_the_gateway_sends_each_operation_to_its_function() -> None:
    app = create_app([(prefix, _stub(target)) for prefix, target in ROUTES])
    client = app.test_client()
    for path, method, op in operations():
        concrete = re.sub(r"\{[^}]+\}", "X1", path)
        resp = client.open(concrete, method=method)
        assert resp.status_code == 200, f"{method} {path}: the gateway has no route"
        module = resp.get_json()["target"].partition(":")[0]
        assert module == f"functions.{op['x-function']}.main", f"{method} {path} -> {module}"
        # A CORS preflight for it goes to the same function.
        pre = client.options(concrete, headers={"Access-Control-Request-Method": method})
        assert pre.get_json()["target"].partition(":")[0] == module, f"OPTIONS {path}"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = doc
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_holds_together() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    orjson.dumps(doc)  # plain JSON
    for pointer in set(_refs(doc)):
        _resolve(doc, pointer)  # KeyError when dangling
    schemes = set(doc["components"]["securitySchemes"])
    ids: set[str] = set()
    for path, method, op in operations():
        where = f"{method} {path}"
        assert op["operationId"] not in ids, where
        ids.add(op["operationId"])
        assert any(code.startswith("2") for code in op["responses"]), where
        for requirement in op["security"]:
            assert set(requirement) <= schemes, where
        params = [_resolve(doc, p["$ref"]) if "$ref" in p else p for p in op.get("parameters", [])]
        in_path = sorted(p["name"] for p in params if p["in"] == "path")
        assert in_path == sorted(re.findall(r"\{([^}]+)\}", path)), where
        assert all(p["required"] for p in params if p["in"] == "path"), where
        templated = re.sub(r"\{[^}]+\}", "{}", path)
        twins = [p for p in doc["paths"] if re.sub(r"\{[^}]+\}", "{}", p) == templated]
        assert twins == [path], f"{path}: the same path under other parameter names: {twins}"


def test_decimal_patterns() -> None:
    plain, signed = re.compile(DECIMAL_PATTERN), re.compile(SIGNED_DECIMAL_PATTERN)
    for units, precision in ((0, 8), (150_000_000, 8), (1, 18), (2_000_010_000, 6)):
        assert plain.fullmatch(format_units(units, precision))
        assert signed.fullmatch(format_units(-units, precision))
    for bad in ("1e5", "-1", "+1", ".5", "1.", "01", " 1", "NaN", ""):
        assert not plain.fullmatch(bad), bad


def test_served_by_the_docs_function() -> None:
    from functions.docs.main import docs

    client = create_app([("/v1/openapi.json", docs)]).test_client()
    resp = client.get("/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.get_json() == orjson.loads(orjson.dumps(document()))
    assert resp.get_json() == orjson.loads(api_spec.DOCUMENT_FILE.read_bytes())
    assert client.post("/v1/openapi.json").status_code == 405


def test_the_common_errors_and_the_scope_come_from_the_declaration() -> None:
    """401/403 from authentication and scope, 400/413/415 from a body, 503 always; the
    route's own ``errors`` are added (an explicit list naming derived ones still works)."""

    class Thing(Body):
        name: str

    def principal(req: Any) -> Any:
        raise AssertionError("not called")

    api = Api("t", authenticate=principal)
    declared = {
        "public": RouteDoc(summary="s", operation_id="public", tag="t", auth="none"),
        "mine": RouteDoc(summary="s", operation_id="mine", tag="t", scope="read", errors=(404,)),
        "make": RouteDoc(
            summary="s", operation_id="make", tag="t", scope=("read", "trade"), body=Thing,
            errors=(400, 401, 403, 409, 415, 503),  # the old, explicit way
        ),
        "admin": RouteDoc(summary="s", operation_id="admin", tag="t", auth="admin"),
        "dialect": RouteDoc(
            summary="s", operation_id="dialect", tag="t", auth="binance_key",
            responses={200: {"description": "ok"}, 401: {"description": "its own shape"}},
        ),
    }  # fmt: skip
    for name, doc in declared.items():
        api.route("POST", f"/v1/{name}", doc)(lambda req: json_response({}))
    assert derived_errors(declared["public"]) == {503}
    assert derived_errors(declared["mine"]) == {401, 403, 503}
    assert derived_errors(declared["make"]) == {400, 401, 403, 413, 415, 503}
    assert derived_errors(declared["admin"]) == {401, 403, 503}
    paths = build({"t": api}, {})["paths"]

    def answers(name: str) -> list[str]:
        return [s for s in paths[f"/v1/{name}"]["post"]["responses"] if s.startswith(("4", "5"))]

    assert answers("public") == ["503"]
    assert answers("mine") == ["401", "403", "404", "503"]
    assert answers("make") == ["400", "401", "403", "409", "413", "415", "503"]
    own = paths["/v1/dialect"]["post"]["responses"]
    assert own["401"] == {"description": "its own shape"} and "$ref" in own["503"]
    make = paths["/v1/make"]["post"]
    assert make["security"] == [
        {"bearerAuth": []},
        {"apiKey": ["read"], "apiTimestamp": [], "apiSignature": []},
        {"apiKey": ["trade"], "apiTimestamp": [], "apiSignature": []},
    ]
    assert make["description"] == "An API key needs the `read` or `trade` scope."
    assert "description" not in paths["/v1/public"]["post"]
