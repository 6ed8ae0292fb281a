"""The HTTP foundation every API function stands on.

One function serves a few routes::

    api = Api("orders")

    class PlaceOrder(Body):              # strict JSON body: unknown fields and wrong types -> 400
        market: str
        amount: str

    @api.route("POST", "/v1/orders", scope="trade")   # with its documentation (RouteDoc)
    def place(req: ApiRequest) -> flask.Response:
        principal = authenticate(req)    # api.auth: who the wrapper found (the scope's check)
        body = req.json(PlaceOrder)
        if ...: raise not_found("no such order")
        return json_response({...}, status=201)

    def orders(request: flask.Request) -> flask.Response:   # the functions-framework entry point
        return api(request)

with ``api = Api("orders", authenticate=..., scope="trade")``: how the function authenticates
a request (api.auth's ``authenticate``), which a route with a scope needs, and the scope of the
function's user routes that declare none.

What ``Api`` does for every request, so handlers need not:

- a request id: the caller's ``X-Request-Id`` when it is sane, else a new one; echoed in the
  response header and in every log line of the request;
- CORS: preflight ``OPTIONS`` answered from the route table; ``Access-Control-Allow-Origin``
  only for the configured origins (``API_CORS_ORIGINS``);
- the body read once, at most ``API_MAX_BODY_BYTES`` (else 413), kept in ``ApiRequest.body``
  (the API-key signature covers these exact bytes);
- routing by method and path pattern (``/v1/orders/{id}``): 404 for an unknown path, 405 with
  ``Allow`` for a known path and another method;
- a route's declared ``scope``: the caller authenticated (401) and, with an API key, holding
  the scope (or one of them; 403 ``insufficient_scope``) before the handler runs, which finds
  the caller in ``ApiRequest.principal``;
- infrastructure failures (Redis unreachable or timing out, Postgres unreachable after the
  shared connection's retry, Google APIs unavailable or out of time) are answered 503
  ``unavailable`` (retry), logged as a warning, never a 500;
- errors: a raised ``ApiError`` becomes ``{"error": {"code", "message"}}`` with its status;
  any other exception is logged with its stack trace and answered 500 ``internal`` naming the
  request id, never with the trace;
- one structured access log line (Cloud Logging's ``httpRequest`` fields) per request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar

import flask
import msgspec
import redis

from api.credentials import ALL_SCOPES, Credentials, Headers, Principal, Scope
from api.redis_client import batch_of
from api.redis_scripts import HITS
from shared import logs
from shared.answers import error_response as error_response
from shared.answers import json_response as json_response
from shared.config import ApiConfig, HttpConfig
from shared.instance import per_instance
from shared.redis_keys import SESSION_ENDED_FIELD_PREFIX, rate_limit_key, session_key

log = logging.getLogger("api")
access_log = logging.getLogger("api.access")

T = TypeVar("T")

REQUEST_ID_HEADER: Final = "X-Request-Id"
_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_PARAM_RE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CORS_ALLOW_HEADERS: Final = ", ".join(
    (
        "Authorization",
        "Content-Type",
        "Idempotency-Key",
        "X-Request-Id",
        "X-API-Key",
        "X-API-Timestamp",
        "X-API-Signature",
    )
)
_CORS_EXPOSE_HEADERS: Final = "X-Request-Id, Retry-After"
_SECRET_PARAM_RE: Final = re.compile(r"(?<![^&])(listenKey)=[^&]*")
"""Query parameters that are credentials (the Binance dialect's user-data-stream key): their
values never reach the access log."""


@cache
def infrastructure_failures() -> tuple[type[BaseException], ...]:
    """What a handler may raise when a backing service is down: ``Api`` answers 503 (retry).

    A function ships only the clients it uses (auth and docs have no Postgres driver), and
    one that lacks a client cannot raise its errors: those are left out, not imported."""
    failures: list[type[BaseException]] = [
        redis.ConnectionError,  # BusyLoadingError too
        redis.TimeoutError,
    ]
    with contextlib.suppress(ImportError):
        from shared.db import DatabaseUnavailableError

        failures.append(DatabaseUnavailableError)
    with contextlib.suppress(ImportError):
        from google.api_core import exceptions as google_exceptions

        failures += [
            google_exceptions.ServiceUnavailable,
            google_exceptions.DeadlineExceeded,
            google_exceptions.RetryError,
        ]
    return tuple(failures)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An answer other than success: raise it anywhere below a handler.

    ``code`` is a stable snake_case string clients may branch on; ``message`` is for people.
    """

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


def bad_request(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message)


def unauthorized(message: str, code: str = "unauthenticated") -> ApiError:
    return ApiError(401, code, message, {"WWW-Authenticate": 'Bearer realm="api"'})


def forbidden(message: str, code: str = "forbidden") -> ApiError:
    return ApiError(403, code, message)


def require_scope(principal: Principal, scope: Scope, *alternatives: Scope) -> None:
    """403 ``insufficient_scope`` unless the principal may act with ``scope`` or one of the
    ``alternatives`` (tokens carry every scope)."""
    wanted = (scope, *alternatives)
    if principal.scopes.isdisjoint(wanted):
        named = " or ".join(repr(s) for s in wanted)
        raise ApiError(403, "insufficient_scope", f"this API key lacks the {named} scope")


def not_found(message: str = "not found", code: str = "not_found") -> ApiError:
    """Also the answer for someone else's ids: never reveal that they exist."""
    return ApiError(404, code, message)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)


def too_many_requests(retry_after_s: int, message: str = "too many requests") -> ApiError:
    return ApiError(429, "rate_limited", message, {"Retry-After": str(max(1, retry_after_s))})


def unavailable(message: str) -> ApiError:
    return ApiError(503, "unavailable", message)


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def no_content() -> flask.Response:
    return flask.Response(status=204)


SECURITY_HEADERS: Final[tuple[tuple[str, str], ...]] = (
    ("Cache-Control", "no-store"),  # the default; public market data sets its own max-age
    ("X-Content-Type-Options", "nosniff"),
)
"""What every answer of the API carries unless it set the header itself: the functions' and
the local gateway's own (its 404 for a path no function serves)."""


def add_security_headers(response: flask.Response) -> None:
    for name, value in SECURITY_HEADERS:
        response.headers.setdefault(name, value)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpSettings:
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024
    trusted_proxy_hops: int = 0
    project: str | None = None
    """For the Cloud Trace field of log lines."""

    @staticmethod
    def from_config(cfg: HttpConfig) -> HttpSettings:
        return HttpSettings(
            cors_origins=cfg.cors_origins,
            max_body_bytes=cfg.max_body_bytes,
            trusted_proxy_hops=cfg.trusted_proxy_hops,
            project=cfg.project,
        )


@per_instance
def api_config() -> ApiConfig:
    """The environment's ``ApiConfig``, loaded once per instance."""
    return ApiConfig.load()


def default_settings() -> HttpSettings:
    return HttpSettings.from_config(api_config())


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


DECIMAL_PATTERN: Final = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"
"""An exact non-negative decimal as the API writes it (no sign, exponent or leading zero)."""

DecimalText = Annotated[
    str, msgspec.Meta(max_length=64, extra_json_schema={"pattern": DECIMAL_PATTERN})
]
"""A decimal string field of a body. The decoder bounds only its length; the handler parses
it (shared.money) and answers its own error codes; the document shows the pattern."""


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: a JSON object whose fields have exactly these types (no
    coercion: ``1`` is not a string, ``1.5`` is not an integer); unknown fields are refused.
    Bound strings and lists with ``Annotated[str, msgspec.Meta(max_length=...)]``.

    Its JSON schema in the API's document comes from msgspec (``description``s and examples
    of fields in their ``msgspec.Meta``); ``schema_extra`` adds keywords to the struct's own
    (examples of a whole body)."""

    schema_extra: ClassVar[dict[str, Any]] = {}


@dataclass(slots=True)
class ApiRequest:
    """One request as a handler sees it."""

    raw: flask.Request
    request_id: str
    client_ip: str
    params: dict[str, str] = field(default_factory=dict)
    """The path pattern's ``{name}`` parts."""
    body: bytes = b""
    """The raw body, read once (what an API-key signature covers)."""
    principal: Principal | None = None
    """The caller, once authenticated: by the ``Api`` wrapper for a route that declares a
    scope, else when the handler calls ``api.auth.authenticate`` (which answers this one when
    set: a signed request is verified once)."""
    user_id: str | None = None
    """Set by ``api.auth.authenticate`` (the HTTP entry to ``verify_credentials``), for the
    access log."""
    session_in_limits: bool = False
    """The route checks an access token's session with its rate limits (``Api.route``)."""
    session_due: SessionDue | None = None
    """Set by ``api.auth.authenticate`` for such a route: the session still to check, in the
    handler's first round trip (``api.auth.count_hits``)."""

    @property
    def method(self) -> str:
        return self.raw.method

    @property
    def path(self) -> str:
        return self.raw.path

    @property
    def query_string(self) -> bytes:
        """The query exactly as sent, undecoded, without the ``?``."""
        return self.raw.query_string

    def header(self, name: str) -> str | None:
        return self.raw.headers.get(name)

    def credentials(self) -> Credentials:
        """What this request presents to ``api.auth`` (transport-neutral)."""
        return Credentials(
            method=self.method,
            path=self.path,
            query=self.query_string,
            body=self.body,
            headers=Headers(self.raw.headers.items()),
            client_ip=self.client_ip,
        )

    def query(self, name: str) -> str | None:
        return self.raw.args.get(name)

    def json(self, type_: type[T]) -> T:
        """The body decoded strictly into ``type_`` (usually a ``Body`` subclass), else 400."""
        if self.raw.mimetype != "application/json":
            raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
        try:
            return msgspec.json.decode(self.body, type=type_, strict=True)
        except msgspec.ValidationError as exc:
            raise bad_request(f"invalid request body: {exc}") from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            raise bad_request("request body is not valid JSON", "invalid_json") from None


def client_ip(request: flask.Request, trusted_proxy_hops: int) -> str:
    """The caller's address: behind ``n`` trusted proxies, the n-th address from the right of
    X-Forwarded-For (entries further left are whatever the client claimed).

    Only what the deployment itself puts there is trusted. Locally (``n`` = 0) the gateway is
    the server: the TCP peer, and X-Forwarded-For is ignored. In the cloud the load balancer
    appends ``<client address>, <its own address>`` to whatever the client sent, so the
    second from the right (``API_TRUSTED_PROXY_HOPS=2``) is the address it saw; the functions
    take traffic from the load balancer only (ingress ``ALLOW_INTERNAL_AND_GCLB``). Several
    X-Forwarded-For lines count as one list, in order; fewer entries than ``n`` (not through
    the load balancer) fall back to the peer."""
    if trusted_proxy_hops > 0:
        forwarded = [
            part.strip()
            for line in request.headers.getlist("X-Forwarded-For")
            for part in line.split(",")
            if part.strip()
        ]
        if len(forwarded) >= trusted_proxy_hops:
            return forwarded[-trusted_proxy_hops]
    return request.remote_addr or "unknown"


def request_id_of(request: flask.Request) -> str:
    """The caller's ``X-Request-Id`` when it is sane (no log injection), else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex


def _read_body(request: flask.Request, limit: int) -> bytes:
    environ = request.environ
    if not environ.get("CONTENT_LENGTH") and not environ.get("HTTP_TRANSFER_ENCODING"):
        # Neither header: no body was sent (RFC 9112, 6.3), nothing to read. gunicorn marks
        # every request's input terminated, so reading would cost each GET a body reader.
        return b""
    length = request.content_length
    too_large = ApiError(413, "payload_too_large", f"request body exceeds {limit} bytes")
    if length is not None and length > limit:
        raise too_large
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large
    return data


# --------------------------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionDue:
    """An access token's session, still to be checked (``api.sessions``): a route declared
    with ``session_in_limits`` checks it in its first Redis round trip, with its rate limits
    (``api.auth.count_hits``), before anything else is done."""

    user_id: str
    session_id: str
    epoch: int


class SessionNotCachedError(Exception):
    """``hit_many`` with a session: Redis holds no copy of the user's sessions (nothing was
    counted); check it the long way (``api.sessions``), then count."""


class SessionEndedError(Exception):
    """``hit_many`` with a session: it has ended (nothing was counted)."""


RateHit = tuple[str, str, int, int]
"""One hit to count: (scope, subject, limit, window in seconds)."""


def raise_over_limits(hits: Sequence[RateHit], counted: Sequence[Any]) -> None:
    """429 with ``Retry-After`` (the window's time left, in seconds) for the first of ``hits``
    whose count in ``counted`` (``(count, ms to reset)`` each, as the scripts answer) is over
    its limit."""
    for (_, _, limit, window_s), (count, ttl_ms) in zip(hits, counted, strict=True):
        if int(count) > limit:
            retry_after = math.ceil(int(ttl_ms) / 1000) if int(ttl_ms) > 0 else window_s
            raise too_many_requests(retry_after)


class RateLimiter:
    """At most ``limit`` hits per subject in a window that opens at the subject's first hit
    (a fixed window per subject, so no boundary where two windows' worth pass at once). One
    Redis round trip: INCR, PEXPIRE NX, PTTL in a MULTI (``hit_many``: in one script, for
    several subjects, with the caller's own reads in the same round trip)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def hit_many(
        self,
        hits: list[RateHit],
        also: Callable[[Any], None] | None = None,
        session: SessionDue | None = None,
    ) -> list[Any]:
        """Count one hit of each; raise 429 with ``Retry-After`` once any is over its limit.
        ``also`` queues more commands on the same pipeline (one round trip for all); their
        results are returned (read them only when no limit was passed). With ``session``, the
        session is checked first, in the same script: ``SessionEndedError`` or
        ``SessionNotCachedError`` (then nothing is counted)."""
        pipe = batch_of(self._redis)
        keys = [rate_limit_key(scope, subject) for scope, subject, _, _ in hits]
        args: list[Any] = [w * 1000 for _, _, _, w in hits]
        if session is not None:
            keys.append(session_key(session.user_id))
            args += [SESSION_ENDED_FIELD_PREFIX + session.session_id, session.epoch]
        # EVAL, not a registered script: a pipeline holding one asks SCRIPT EXISTS first,
        # a second round trip; Redis caches the script by its digest either way.
        pipe.eval(HITS, len(keys), *keys, *args)
        if also is not None:
            also(pipe)
        (state, *counted), *rest = pipe.execute()
        if int(state) == 1:
            raise SessionNotCachedError
        if int(state) == 2:
            raise SessionEndedError
        raise_over_limits(hits, counted)
        return list(rest)

    def hit(self, scope: str, subject: str, limit: int, window_s: int) -> None:
        """Count one hit; raise 429 with ``Retry-After`` (seconds) once over the limit."""
        key = rate_limit_key(scope, subject)
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.pexpire(key, window_s * 1000, nx=True)
        pipe.pttl(key)
        count, _, ttl_ms = pipe.execute()
        raise_over_limits([(scope, subject, limit, window_s)], [(count, ttl_ms)])


# --------------------------------------------------------------------------------------------
# The router
# --------------------------------------------------------------------------------------------

Handler = Callable[[ApiRequest], flask.Response]
Authenticator = Callable[[ApiRequest], Principal]
"""Who sent a request, or 401 (api.auth's ``authenticate`` with a function's context)."""
ErrorFormat = Callable[[int, str, str, Mapping[str, str] | None], flask.Response]
"""(status, code, message, headers) -> the answer: ``error_response`` for the native API; a
dialect (api/binance) answers its errors in its own shape."""


Auth = Literal["none", "user", "session", "admin", "binance_key", "binance_signed"]
"""Who may call a route: anyone; a user (an access token or a signed API key); a user's
access token only (no API key); an admin's access token; in the Binance dialect, an API key in
``X-MBX-APIKEY`` alone or with Binance's signed parameters."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDoc:
    """What the API's document says of one route, declared with it (``Api.route``'s keywords;
    api.openapi builds the OpenAPI operation from it)."""

    summary: str
    operation_id: str
    tag: str
    auth: Auth = "user"
    scope: Scope | tuple[Scope, ...] = ()
    """The API-key scope the route needs, or the scopes of which it needs one (``auth`` is
    "user"); the ``Api`` wrapper checks it before the handler runs."""
    body: type[Body] | None = None
    """The request body's struct: its JSON schema comes from msgspec."""
    params: tuple[Mapping[str, Any], ...] = ()
    """OpenAPI parameter objects (path, query, header) or references to shared ones."""
    responses: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    """The success answers by status (api.openapi.ok)."""
    errors: tuple[int, ...] = ()
    """The error statuses it may answer beyond those api.openapi derives from the rest of
    the declaration (``derived_errors``: authentication, scope, body, 503)."""
    description: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.scopes) - ALL_SCOPES)
        if unknown:
            raise ValueError(f"{self.operation_id}: unknown scopes {unknown}")
        if self.scopes and self.auth != "user":
            raise ValueError(f"{self.operation_id}: a scope is for auth='user' routes")

    @property
    def scopes(self) -> tuple[Scope, ...]:
        """The scopes of which the route needs one (none: no scope is checked)."""
        return (self.scope,) if isinstance(self.scope, str) else self.scope


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler
    doc: RouteDoc | None = None
    session_in_limits: bool = False


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``/v1/orders/{id}`` -> a regex matching the whole path, ``{id}`` one non-empty segment."""
    if not pattern.startswith("/"):
        raise ValueError(f"a path pattern starts with '/': {pattern!r}")
    parts: list[str] = []
    pos = 0
    for match in _PARAM_RE.finditer(pattern):
        parts.append(re.escape(pattern[pos : match.start()]))
        parts.append(f"(?P<{match.group(1)}>[^/]+)")
        pos = match.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("".join(parts))


class Api:
    """The routes of one function, and the request handling around them (see the module)."""

    def __init__(
        self,
        name: str,
        settings: Callable[[], HttpSettings] = default_settings,
        errors: ErrorFormat = error_response,
        authenticate: Authenticator | None = None,
        scope: Scope | tuple[Scope, ...] = (),
    ) -> None:
        """``authenticate``: how the wrapper finds the caller of a route with a scope;
        ``scope``: the scope of every ``auth="user"`` route that declares none (a route added
        without one is not left open)."""
        if scope and authenticate is None:
            raise TypeError(f"Api({name!r}) with a scope needs authenticate=")
        self.name = name
        self._settings = settings
        self._error = errors
        self._authenticate = authenticate
        self._scope = scope
        self._routes: list[_Route] = []

    def route(
        self,
        method: str,
        pattern: str,
        doc: RouteDoc | None = None,
        *,
        session_in_limits: bool = False,
        **described: Any,
    ) -> Callable[[Handler], Handler]:
        """Decorator: ``handler`` answers ``method`` on paths matching ``pattern``. The
        keywords (or ``doc``) are the route's ``RouteDoc``: what the API's document says.

        ``session_in_limits``: the handler's first step is ``api.auth.count_hits``, which
        checks an access token's session in the same Redis round trip as the rate limits
        (one round trip instead of two); a handler that returns without that check is a bug
        and answers 500."""
        method = method.upper()
        regex = compile_pattern(pattern)
        if described:
            if doc is not None:
                raise TypeError("give a RouteDoc or its keywords, not both")
            doc = RouteDoc(**described)
        if doc is not None and doc.auth == "user" and not doc.scopes and self._scope:
            doc = dataclasses.replace(doc, scope=self._scope)
        if doc is not None and doc.scopes and self._authenticate is None:
            raise TypeError(
                f"{method} {pattern} declares a scope: Api({self.name!r}) needs authenticate="
            )

        def register(handler: Handler) -> Handler:
            if any(r.method == method and r.pattern == pattern for r in self._routes):
                raise ValueError(f"duplicate route {method} {pattern}")
            self._routes.append(_Route(method, pattern, regex, handler, doc, session_in_limits))
            return handler

        return register

    @property
    def routes(self) -> list[tuple[str, str]]:
        """(method, pattern) of every route, for the OpenAPI check and the gateway."""
        return [(r.method, r.pattern) for r in self._routes]

    @property
    def documented(self) -> list[tuple[str, str, RouteDoc | None]]:
        """(method, pattern, doc) of every route, in the order they were declared."""
        return [(r.method, r.pattern, r.doc) for r in self._routes]

    def __call__(self, request: flask.Request) -> flask.Response:
        """The functions-framework entry point: never raises, never leaks a stack trace."""
        started = time.perf_counter()
        request_id = request_id_of(request)
        req = ApiRequest(raw=request, request_id=request_id, client_ip=request.remote_addr or "")
        settings: HttpSettings | None = None
        try:
            settings = self._settings()
        except Exception:
            log.exception("no settings for %s", self.name, extra={"request_id": request_id})
        trace = logs.trace_of(
            request.headers.get("X-Cloud-Trace-Context"), settings.project if settings else None
        )
        with logs.request_context(request_id, trace):
            response = self._handle(req, settings)
            self._finish(req, response, settings)
            self._log_access(req, response, time.perf_counter() - started)
        return response

    def _handle(self, req: ApiRequest, settings: HttpSettings | None) -> flask.Response:
        request = req.raw
        try:
            if settings is None:  # logged where it failed
                return self._error(
                    500, "internal", f"internal error; request id {req.request_id}", None
                )
            req.client_ip = client_ip(request, settings.trusted_proxy_hops)
            return self._dispatch(req, settings)
        except ApiError as exc:
            return self._error(exc.status, exc.code, exc.message, exc.headers)
        except infrastructure_failures() as exc:
            log.warning(
                "a backing service is unavailable: %r",
                exc,
                extra={"request_id": req.request_id, "function": self.name},
            )
            failed = unavailable("a backing service is unavailable; try again")
            return self._error(failed.status, failed.code, failed.message, None)
        except Exception:
            log.exception(
                "unhandled error in %s %s",
                request.method,
                request.path,
                extra={"request_id": req.request_id, "function": self.name},
            )
            return self._error(
                500, "internal", f"internal error; request id {req.request_id}", None
            )

    def _dispatch(self, req: ApiRequest, settings: HttpSettings) -> flask.Response:
        path, method = req.path, req.method.upper()
        matches = [(r, m) for r in self._routes if (m := r.regex.fullmatch(path)) is not None]
        if not matches:
            raise not_found(f"no route for {path}")
        allowed = sorted({r.method for r, _ in matches})
        if method == "OPTIONS":
            return self._preflight(req, settings, allowed)
        for route, match in matches:
            if route.method == method:
                req.params = match.groupdict()
                req.body = _read_body(req.raw, settings.max_body_bytes)
                req.session_in_limits = route.session_in_limits
                if route.doc is not None and route.doc.scopes:
                    self._authorize(req, route.doc.scopes)
                response = route.handler(req)
                if req.session_due is not None:
                    log.error("%s %s answered without checking the session", method, path)
                    raise ApiError(500, "internal", f"internal error; request id {req.request_id}")
                return response
        raise ApiError(
            405,
            "method_not_allowed",
            f"{method} is not allowed on {path}",
            {"Allow": ", ".join([*allowed, "OPTIONS"])},
        )

    def _authorize(self, req: ApiRequest, scopes: tuple[Scope, ...]) -> None:
        """The caller (401) and its scope (403), before the handler (``RouteDoc.scope``)."""
        assert self._authenticate is not None  # checked when the route was declared
        req.principal = self._authenticate(req)
        require_scope(req.principal, *scopes)

    @staticmethod
    def _preflight(req: ApiRequest, settings: HttpSettings, allowed: list[str]) -> flask.Response:
        response = no_content()
        if _cors_origin(req.header("Origin"), settings) is not None:
            response.headers["Access-Control-Allow-Methods"] = ", ".join([*allowed, "OPTIONS"])
            response.headers["Access-Control-Allow-Headers"] = _CORS_ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response

    @staticmethod
    def _finish(req: ApiRequest, response: flask.Response, settings: HttpSettings | None) -> None:
        headers = response.headers
        headers[REQUEST_ID_HEADER] = req.request_id
        add_security_headers(response)
        if settings is None:
            return
        allow = _cors_origin(req.header("Origin"), settings)
        if allow is not None:
            headers["Access-Control-Allow-Origin"] = allow
            headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE_HEADERS
            if allow != "*":
                headers.add("Vary", "Origin")

    def _log_access(self, req: ApiRequest, response: flask.Response, seconds: float) -> None:
        """(The trace field comes from ``logs.request_context``.)"""
        raw = req.raw
        query = _SECRET_PARAM_RE.sub(r"\1=REDACTED", raw.query_string.decode("latin-1"))
        url = raw.path + ("?" + query if query else "")
        extra: dict[str, Any] = {
            "httpRequest": {
                "requestMethod": raw.method,
                "requestUrl": url,
                "status": response.status_code,
                "latency": f"{seconds:.6f}s",
                "remoteIp": req.client_ip,
                "userAgent": raw.headers.get("User-Agent", ""),
                "requestSize": str(len(req.body)),
                "responseSize": str(response.calculate_content_length() or 0),
            },
            "request_id": req.request_id,
            "function": self.name,
            "user_id": req.user_id,
        }
        level = logging.ERROR if response.status_code >= 500 else logging.INFO
        access_log.log(level, "%s %s %d", raw.method, raw.path, response.status_code, extra=extra)


def _cors_origin(origin: str | None, settings: HttpSettings) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for ``origin``, or None (not allowed)."""
    if not origin or not settings.cors_origins:
        return None
    if "*" in settings.cors_origins:
        return "*"
    return origin if origin in settings.cors_origins else None
