"""The OpenAPI 3.1 document of the whole public API, built from the routes themselves.

Each route declares what the document says of it where it is declared
(``api.route("GET", "/v1/orders", summary=..., scope="read", params=..., responses=...,
errors=...)``, a ``api.http.RouteDoc``); the errors every route of its kind may answer are
derived (``derived_errors``), so ``errors`` names only the route's own. ``build(apis)`` walks
every function's ``Api`` and makes the document: request-body schemas from the bodies' msgspec
structs (``msgspec.json.schema_components``), answers from the named schemas of
``api.openapi_schemas``, and the conventions below (decimals, errors, parameters,
security). ``python -m infra.api_spec --write`` writes it to ``functions/docs/openapi.json``,
which the docs function serves at ``GET /v1/openapi.json``; tests/unit/test_openapi.py keeps
that file equal to what the routes make.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from api.http import DECIMAL_PATTERN as DECIMAL_PATTERN  # one definition, used below
from api.http import Api, RouteDoc
from api.params import TIME_MS_MAX
from shared.order_rules import MAX_CLIENT_ORDER_ID

JSON = dict[str, Any]

SIGNED_DECIMAL_PATTERN: Final = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
MARKET_PATTERN: Final = r"^[A-Z0-9]{2,12}-[A-Z0-9]{2,12}$"
ASSET_PATTERN: Final = r"^[A-Z0-9]{2,12}$"


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: JSON) -> JSON:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(
    required: dict[str, JSON],
    optional: dict[str, JSON] | None = None,
    *,
    closed: bool = False,
    description: str | None = None,
    examples: list[JSON] | None = None,
) -> JSON:
    """An object schema; ``closed`` (request bodies) refuses unknown fields, as the API does."""
    out: JSON = {"type": "object", "properties": {**required, **(optional or {})}}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    if examples:
        out["examples"] = examples
    return out


def array(items: JSON) -> JSON:
    return {"type": "array", "items": items}


STR: Final[JSON] = {"type": "string"}
INT: Final[JSON] = {"type": "integer"}
BOOL: Final[JSON] = {"type": "boolean"}
MS: Final[JSON] = {"type": "integer", "description": "milliseconds since the epoch (UTC)"}
DEC: Final[JSON] = ref("Decimal")
SDEC: Final[JSON] = ref("SignedDecimal")


DATETIME: Final[JSON] = {"type": "string", "format": "date-time"}
ADDRESS: Final[JSON] = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}
TIME_MS: Final[JSON] = {"type": "integer", "minimum": 0, "maximum": TIME_MS_MAX}
CHAIN_RULES: Final[dict[str, JSON]] = {
    "confirmations": {
        "type": "integer",
        "minimum": 1,
        "maximum": 10000,
        "description": "blocks before a deposit is credited (default: DEPOSIT_CONFIRMATIONS)",
    },
    "min_deposit": {**DEC, "description": "smaller deposits are recorded, never credited"},
    "withdrawal_fee": {**DEC, "description": "charged on top of each withdrawal's amount"},
    "min_withdrawal": DEC,
    "withdrawal_daily_limit": {**DEC, "description": "per user, rolling 24 h; none if absent"},
    "sweep_threshold": {**DEC, "description": "a deposit address holding this much is swept"},
    "withdrawal_review_threshold": {
        **DEC,
        "description": "a withdrawal of more than this waits for an admin's review",
    },
}
"""The wallet's rules of an asset (wallet.assets), in the asset's precision."""
WITHDRAWAL_STATES: Final = [
    "review", "requested", "rejected", "signed", "broadcast", "confirmed", "failed", "refunded",
]  # fmt: skip
DEPOSIT_STATUSES: Final = [
    "pending", "crediting", "credited", "orphaned", "below_minimum", "rejected",
]  # fmt: skip


# ------------------------------------------------------------------------------------------
# operations
# ------------------------------------------------------------------------------------------

SECURITY: Final[dict[str, list[JSON]]] = {
    "none": [],
    "user": [{"bearerAuth": []}, {"apiKey": [], "apiTimestamp": [], "apiSignature": []}],
    "session": [{"bearerAuth": []}],
    "admin": [{"bearerAuth": []}],
    "binance_key": [{"mbxApiKey": []}],
    "binance_signed": [{"mbxApiKey": []}],
}
"""A route's ``auth`` as OpenAPI security requirements (an admin is a session's role)."""


def security(doc: RouteDoc) -> list[JSON]:
    """The route's security requirements: a token, or an API key holding one of the route's
    scopes (OpenAPI 3.1 lets a non-OAuth scheme name the roles it needs; one requirement per
    scope, since any one of them will do)."""
    if not doc.scopes:
        return SECURITY[doc.auth]
    keys = [{"apiKey": [scope], "apiTimestamp": [], "apiSignature": []} for scope in doc.scopes]
    return [{"bearerAuth": []}, *keys]


def derived_errors(doc: RouteDoc) -> set[int]:
    """What every route like this one may answer, whatever its handler does: 401 when it
    authenticates, 403 when it checks a scope or needs a session or an admin, 400, 413 and 415
    when it reads a body (api.http), and 503 when a backing service is down (the ``Api``
    wrapper). A route's ``errors`` add its own; a status it documents in ``responses`` (a
    dialect's own error shape) is left as it is."""
    out = {503}
    if doc.auth != "none":
        out.add(401)
    if doc.scopes or doc.auth in ("session", "admin"):
        out.add(403)
    if doc.body is not None:
        out |= {400, 413, 415}
    return out


_ERRORS: Final = {
    400: ("BadRequest", "The request does not fit the rules (the code names the rule)."),
    401: (
        "Unauthorized",
        "No valid token or API-key signature (invalid_token, token_expired; session_revoked: "
        "the token's session ended: a logout, a password or role change), or a sensitive "
        "action without a recent proof of who the caller is (fresh_auth_required: POST "
        "/v1/auth/reauth, then retry with the new token).",
    ),
    403: ("Forbidden", "Authenticated, but not allowed (scope, role)."),
    404: ("NotFound", "No such thing, or someone else's."),
    409: ("Conflict", "Clashes with the current state (duplicates, a halted market)."),
    413: ("PayloadTooLarge", "The body is over the size limit (API_MAX_BODY_BYTES, 64 KiB)."),
    415: ("UnsupportedMediaType", "The body must be application/json."),
    422: (
        "Unprocessable",
        "Well formed, but refused now (insufficient_funds, would_take, fok_not_filled, "
        "daily_limit_exceeded, idempotency_key_reused).",
    ),
    429: ("TooManyRequests", "Over a rate limit; retry after Retry-After seconds."),
    503: (
        "Unavailable",
        "A backing service (the database, market data, the queue, an identity provider's "
        "keys) is unavailable; nothing was done. Retry.",
    ),
}


def _responses() -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for status, (name, description) in _ERRORS.items():
        response: JSON = {
            "description": description,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        if status == 429:
            response["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}
            }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "schema": {"type": "string"},
                    "description": (
                        'Bearer realm="api"; for fresh_auth_required also '
                        'error="insufficient_user_authentication" and max_age (RFC 9470)'
                    ),
                }
            }
        out[name] = response
    return out


def ok(description: str, schema: JSON | str | None = None, headers: JSON | None = None) -> JSON:
    """A success answer; ``schema`` a schema or the name of one of api.openapi_schemas."""
    out: JSON = {"description": description}
    if schema is not None:
        body = ref(schema) if isinstance(schema, str) else schema
        out["content"] = {"application/json": {"schema": body}}
    if headers:
        out["headers"] = headers
    return out


def err(*statuses: int) -> dict[str, JSON]:
    return {str(s): {"$ref": f"#/components/responses/{_ERRORS[s][0]}"} for s in sorted(statuses)}


PENDING: Final[JSON] = ok(
    "Queued; the matcher has not answered in time. Poll GET /v1/commands/{id}.",
    ref("Pending"),
    {"Location": {"schema": {"type": "string"}, "description": "/v1/commands/{id}"}},
)


def path_param(
    name: str, schema: JSON | None = None, description: str | None = None, example: str = ""
) -> JSON:
    out: JSON = {"name": name, "in": "path", "required": True, "schema": schema or STR}
    if description:
        out["description"] = description
    if example:
        out["examples"] = {"example": {"value": example}}
    return out


def query(name: str, schema: JSON, description: str | None = None, required: bool = False) -> JSON:
    out: JSON = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        out["description"] = description
    return out


MARKET_PARAM: Final = path_param(
    "market", {"type": "string", "pattern": MARKET_PATTERN}, example="ETH-USDT"
)
CLIENT_ORDER_ID: Final = path_param(
    "client_order_id",
    {"type": "string", "minLength": 1, "maxLength": MAX_CLIENT_ORDER_ID},
    example="my-order-1",
)
LIMIT: Final = {"$ref": "#/components/parameters/Limit"}
CURSOR: Final = {"$ref": "#/components/parameters/Cursor"}
IDEMPOTENCY: Final = {"$ref": "#/components/parameters/IdempotencyKey"}


_DESCRIPTION: Final = """\
The public API of the exchange: JSON over HTTPS under one base URL.

- **Money** is always an exact decimal string (`"0.15"`), never a JSON number; a number where a
  decimal string belongs is refused (400). Amounts are in the market's base asset, prices and
  quote values in its quote asset, each with at most the asset's precision.
- **Errors** are `{"error": {"code", "message"}}` with a fitting status; `code` is stable.
  Someone else's ids answer 404, as unknown ones do.
- **Authentication**: `Authorization: Bearer <access token>` (from `/v1/auth/login`), or an API
  key: `X-API-Key`, `X-API-Timestamp` (ms since the epoch) and `X-API-Signature`, the lowercase
  hex HMAC-SHA256 with the key's secret of `timestamp + METHOD + path + ("?" + query) + body`.
  A signature is accepted once and within a few seconds of the server's clock. API keys carry
  scopes: `read`, `trade`, `withdraw`; an operation's `apiKey` security requirements name the
  scopes of which a key needs one (403 `insufficient_scope`). Admin routes need an admin's
  access token.
- **Sessions end at once**: a logout ends its session's tokens, a password or role change all of
  the user's (401 `session_revoked`). **Sensitive actions** (an API key with `trade` or
  `withdraw`, a withdrawal with a token, a role change) need a proof of who you are from the
  last few minutes: the token's `auth_time` (login, or `POST /v1/auth/reauth` with the
  password); else 401 `fresh_auth_required`.
- **Orders are asynchronous underneath**: a write answers 201/200 with the matcher's verdict
  when it comes within a short wait, else 202 with a `command_id` to poll at
  `/v1/commands/{id}`. An `Idempotency-Key` header makes a retry return the first attempt's
  result instead of placing a second order.
- Every response carries `X-Request-Id`. Rate limits answer 429 with `Retry-After`.
"""


def operation(function: str, doc: RouteDoc) -> JSON:
    """One operation of the document: what ``doc`` says, served by ``function``."""
    out: JSON = {
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "tags": [doc.tag],
        "x-function": function,
        "security": security(doc),
    }
    description = [doc.description] if doc.description else []
    if doc.scopes:
        named = " or ".join(f"`{scope}`" for scope in doc.scopes)
        description.insert(0, f"An API key needs the {named} scope.")
    if description:
        out["description"] = " ".join(description)
    if doc.params:
        out["parameters"] = [dict(p) for p in doc.params]
    if doc.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(doc.body.__name__)}},
        }
    responses: JSON = {str(status): dict(r) for status, r in doc.responses.items()}
    for status, answer in err(*derived_errors(doc), *doc.errors).items():
        responses.setdefault(status, answer)  # what a route documents itself stays (a dialect's)
    out["responses"] = dict(sorted(responses.items()))
    return out


def body_schemas(bodies: list[type[Any]]) -> dict[str, JSON]:
    """The request bodies' schemas (and those of the structs inside them), from msgspec."""
    _, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    for schema in components.values():
        schema.pop("title", None)
        if schema.get("required") == []:
            del schema["required"]
    for body in bodies:
        components[body.__name__].update(getattr(body, "schema_extra", {}))
    return components


def build(apis: Mapping[str, Api], named: Mapping[str, JSON]) -> JSON:
    """The document of every route of ``apis`` (function name -> its ``Api``), with the named
    answer schemas ``named`` (api.openapi_schemas, which is written with this module's helpers,
    so it is handed in rather than imported)."""
    paths: dict[str, dict[str, JSON]] = {}
    bodies: list[type[Any]] = []
    for function, api in apis.items():
        for method, pattern, doc in api.documented:
            if doc is None:
                raise ValueError(f"{method} {pattern} ({function}) is not documented")
            if doc.body is not None and doc.body not in bodies:
                bodies.append(doc.body)
            paths.setdefault(pattern, {})[method.lower()] = operation(function, doc)
    generated = body_schemas(bodies)
    clash = set(named) & set(generated)
    if clash:
        raise ValueError(f"body structs named as answer schemas: {sorted(clash)}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Exchange API",
            "version": "1.0.0",
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "the local exchange"}],
        "tags": [
            {"name": "auth", "description": "accounts and sessions"},
            {"name": "api-keys", "description": "scoped keys for programs"},
            {"name": "market data", "description": "public, from the matcher's market data"},
            {"name": "account", "description": "the caller's balances and history"},
            {"name": "orders", "description": "placing, cancelling, following orders"},
            {"name": "wallet", "description": "deposit addresses, deposits, withdrawals"},
            {"name": "admin", "description": "operators only"},
            {"name": "meta", "description": "this document"},
            {
                "name": "binance",
                "description": "Binance's spot API under /api/v3 (docs/binance-api.md)",
            },
        ],
        "security": SECURITY["user"],
        "paths": paths,
        "components": {
            "schemas": {**named, **generated},
            "responses": _responses(),
            "parameters": {
                "Limit": query("limit", {"type": "integer", "minimum": 1}, "page size"),
                "Cursor": query(
                    "cursor",
                    {
                        "type": "string",
                        "maxLength": 512,
                        "pattern": "^[A-Za-z0-9_-]+[.][A-Za-z0-9_-]{22}$",
                    },
                    "next_cursor of the previous page: opaque and signed, valid only for the "
                    "listing and the user it was made for (else 400 invalid_cursor)",
                ),
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                    "description": (
                        "Retrying with the same key and the same request answers with the "
                        "first attempt's command (kept 24 h); another request with the key: "
                        "422 idempotency_key_reused."
                    ),
                },
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "An access token: EdDSA, claims iss aud sub role iat exp, sid (its "
                        "session), epoch (the user's session epoch at issue) and auth_time "
                        "(when the password was last given; absent when unknown)."
                    ),
                },
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "mbxApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-MBX-APIKEY",
                    "description": (
                        "The Binance dialect: the API key's id; signed routes add timestamp, "
                        "recvWindow and signature (hex HMAC-SHA256 of query + body)"
                    ),
                },
                "apiTimestamp": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Timestamp",
                    "description": "milliseconds since the epoch; part of the signature",
                },
                "apiSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Signature",
                    "description": "hex HMAC-SHA256 of timestamp + METHOD + path[?query] + body",
                },
            },
        },
    }
