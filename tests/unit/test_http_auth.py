"""The pure parts of api.http and api.auth: routing patterns, client addresses, the
signature payload, the secrets document, configuration and token round trips."""

from __future__ import annotations

from typing import Any

import flask
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.auth import (
    ALL_SCOPES,
    Principal,
    Via,
    authenticate,
    issue_access_token,
    new_secrets_document,
    parse_secrets,
    require_fresh,
    rotate_signing_key,
    sign_request,
    signature_payload,
    verify_access_token,
)
from api.http import (
    Api,
    ApiError,
    ApiRequest,
    HttpSettings,
    client_ip,
    compile_pattern,
    json_response,
)
from api.throttle import PasswordTry, limit_subject
from shared.config import ApiConfig, ConfigError


def test_patterns() -> None:
    regex = compile_pattern("/v1/orders/{id}/fills.{fmt}")
    match = regex.fullmatch("/v1/orders/42/fills.json")
    assert match is not None and match.groupdict() == {"id": "42", "fmt": "json"}
    assert regex.fullmatch("/v1/orders/4/2/fills.json") is None
    assert regex.fullmatch("/v1/orders/42/fillsXjson") is None  # "." is literal
    assert compile_pattern("/v1/time").fullmatch("/v1/time/") is None
    with pytest.raises(ValueError):
        compile_pattern("v1/time")


def test_client_ip() -> None:
    app = flask.Flask("t")
    headers = {"X-Forwarded-For": "6.6.6.6, 1.2.3.4"}
    with app.test_request_context(headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.1"}):
        assert client_ip(flask.request, 0) == "10.0.0.1"  # nothing trusted: the peer
        assert client_ip(flask.request, 1) == "1.2.3.4"  # what our proxy saw
        assert client_ip(flask.request, 2) == "6.6.6.6"
        assert client_ip(flask.request, 3) == "10.0.0.1"  # fewer entries than proxies


def test_client_ip_reads_every_forwarded_line_in_order() -> None:
    app = flask.Flask("t")
    env = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.2.3.4, 35.191.0.1"}
    with app.test_request_context(environ_base=env):
        assert client_ip(flask.request, 2) == "1.2.3.4"
    # Two header lines (a client's and the balancer's) read as one list.
    headers = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4, 35.191.0.1")]
    with app.test_request_context(headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.1"}):
        assert client_ip(flask.request, 2) == "1.2.3.4"


def test_limit_subjects() -> None:
    assert limit_subject("203.0.113.7") == "203.0.113.7"
    assert limit_subject("2001:db8:1:2::7") == limit_subject("2001:db8:1:2:ffff::1")
    assert limit_subject("2001:db8:1:2::7") == "2001:db8:1:2::/64"
    assert limit_subject("2001:db8:1:3::7") != limit_subject("2001:db8:1:2::7")
    assert limit_subject("::ffff:203.0.113.7") == "203.0.113.7"
    assert limit_subject("unknown") == "unknown"
    a = PasswordTry.of("alice@example.com", "203.0.113.7", 3, 5)
    assert "alice" not in a.pair_key and a.address_key == "authfail:ip:203.0.113.7"
    assert a.pair_key != PasswordTry.of("bob@example.com", "203.0.113.7", 3, 5).pair_key


def test_signature_payload() -> None:
    assert signature_payload(1718000000000, "post", "/v1/orders", b"", b'{"a":1}') == (
        b'1718000000000POST/v1/orders{"a":1}'
    )
    assert signature_payload(1, "GET", "/v1/orders", "market=ETH-USDT", b"") == (
        b"1GET/v1/orders?market=ETH-USDT"
    )
    assert len(sign_request("s", 1, "GET", "/")) == 64


def test_secrets_document() -> None:
    doc = new_secrets_document()
    secrets = parse_secrets(orjson.dumps(doc))
    assert secrets.signing_kid == doc["jwt"]["current"]
    assert "PRIVATE" not in repr(secrets)
    rotated = parse_secrets(orjson.dumps(rotate_signing_key(doc)))
    assert set(rotated.verify_keys) == {doc["jwt"]["current"], rotated.signing_kid}

    def broken(change: Any) -> None:
        bad = orjson.loads(orjson.dumps(doc))
        change(bad)
        with pytest.raises(ConfigError):
            parse_secrets(orjson.dumps(bad))

    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    broken(lambda d: d["jwt"]["keys"].update({d["jwt"]["current"]: rsa_pem}))  # not Ed25519
    broken(lambda d: d["jwt"].update(current="nope"))
    broken(lambda d: d["jwt"]["keys"].update({d["jwt"]["current"]: "garbage"}))
    broken(lambda d: d["api_keys"]["masters"].update({d["api_keys"]["current"]: "c2hvcnQ"}))
    broken(lambda d: d.pop("api_keys"))
    with pytest.raises(ConfigError):
        parse_secrets(b"not json")
    # The public half alone cannot sign.
    public_only = rotate_signing_key(doc)
    public_only["jwt"]["current"] = doc["jwt"]["current"]
    with pytest.raises(ConfigError):
        parse_secrets(orjson.dumps(public_only))


def _env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name in ("AUTH_KEYS_SECRET", "AUTH_KEYS_FILE", "AUTH_KEYS_JSON", "OIDC_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_api_config(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch)
    with pytest.raises(ConfigError, match="exactly one"):
        ApiConfig.load()
    _env(monkeypatch, AUTH_KEYS_JSON="{}", AUTH_KEYS_FILE="/x")
    with pytest.raises(ConfigError, match="exactly one"):
        ApiConfig.load()
    _env(monkeypatch, AUTH_KEYS_JSON='{"hunter2": 1}', API_CORS_ORIGINS="https://a, https://b")
    cfg = ApiConfig.load()
    assert cfg.cors_origins == ("https://a", "https://b") and cfg.oidc is None
    assert "hunter2" not in repr(cfg)
    _env(monkeypatch, AUTH_KEYS_JSON="{}", OIDC_ISSUER="https://idp/", OIDC_AUDIENCE="a")
    oidc = ApiConfig.load().oidc
    assert oidc is not None and oidc.jwks_url == "https://idp/.well-known/jwks.json"
    _env(monkeypatch, AUTH_KEYS_JSON="{}", OIDC_ISSUER="https://idp/", OIDC_ALGORITHMS="HS256")
    with pytest.raises(ConfigError):
        ApiConfig.load()
    _env(monkeypatch, AUTH_KEYS_JSON="{}", API_KEY_WINDOW_MS="0")
    with pytest.raises(ConfigError):
        ApiConfig.load()


def test_token_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, AUTH_KEYS_JSON="{}")
    cfg = ApiConfig.load()
    secrets = parse_secrets(orjson.dumps(new_secrets_document()))
    token = issue_access_token(secrets, cfg, "u1", "admin", session_id="s1", epoch=3, auth_time=7)
    principal = verify_access_token(token, secrets, cfg)
    assert (principal.user_id, principal.role, principal.via) == ("u1", "admin", "jwt")
    assert (principal.session_id, principal.epoch, principal.auth_time) == ("s1", 3, 7)
    assert principal.scopes == ALL_SCOPES
    unproved = issue_access_token(secrets, cfg, "u1", "user", session_id="s1")
    assert verify_access_token(unproved, secrets, cfg).auth_time is None
    assert jwt.get_unverified_header(token)["kid"] == secrets.signing_kid
    other = parse_secrets(orjson.dumps(new_secrets_document()))
    with pytest.raises(ApiError) as caught:
        verify_access_token(token, other, cfg)
    assert caught.value.status == 401


def test_fresh_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, AUTH_KEYS_JSON="{}", FRESH_AUTH_MAX_AGE_S="300")
    cfg = ApiConfig.load()
    now = 1_000_000.0

    def person(auth_time: int | None, via: Via = "jwt") -> Principal:
        return Principal("u1", "user", ALL_SCOPES, via, session_id="s1", auth_time=auth_time)

    require_fresh(person(int(now) - 300), cfg, now)
    require_fresh(person(int(now) - 10, "oidc"), cfg, now)
    for stale in (person(int(now) - 301), person(None), person(None, "oidc")):
        with pytest.raises(ApiError) as caught:
            require_fresh(stale, cfg, now)
        assert (caught.value.status, caught.value.code) == (401, "fresh_auth_required")
        challenge = caught.value.headers["WWW-Authenticate"]
        assert 'error="insufficient_user_authentication"' in challenge
        assert "max_age=300" in challenge
    # An API key (made with a fresh proof, its secret signing each request) needs none.
    key = Principal("u1", "user", frozenset({"withdraw"}), "api_key", key_id="ak_1")
    require_fresh(key, cfg, now)


def test_api_without_services() -> None:
    api = Api("t", settings=lambda: HttpSettings(cors_origins=("*",)))

    @api.route("GET", "/v1/things/{id}")
    def thing(req: ApiRequest) -> flask.Response:
        if req.params["id"] == "boom":
            raise KeyError("x")
        return json_response({"id": req.params["id"]})

    with pytest.raises(ValueError, match="duplicate"):
        api.route("GET", "/v1/things/{id}")(thing)
    app = flask.Flask("t")
    with app.test_request_context("/v1/things/7", headers={"Origin": "https://x"}):
        resp = api(flask.request)
        assert resp.status_code == 200 and resp.get_json() == {"id": "7"}
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    with app.test_request_context("/v1/things/boom"):
        resp = api(flask.request)
        assert resp.status_code == 500 and resp.get_json()["error"]["code"] == "internal"
    assert api.routes == [("GET", "/v1/things/{id}")]


def _scoped_api(callers: list[str]) -> tuple[Api, list[Principal]]:
    """An Api whose authenticator knows two API keys by their X-API-Key header: ``ak_read``
    (read) and ``ak_trade`` (trade); no header is 401. ``callers`` records each call."""
    keys = {"ak_read": frozenset({"read"}), "ak_trade": frozenset({"trade"})}

    def authenticate(req: ApiRequest) -> Principal:
        callers.append(req.path)
        key = req.header("X-API-Key")
        if key not in keys:
            raise ApiError(401, "unauthenticated", "authentication required")
        return Principal("u1", "user", keys[key], "api_key", key_id=key)

    api = Api("t", settings=lambda: HttpSettings(), authenticate=authenticate)
    seen: list[Principal] = []

    def doc(scope: Any) -> dict[str, Any]:
        return {"summary": "s", "operation_id": f"op{len(api.routes)}", "tag": "t", "scope": scope}

    @api.route("POST", "/v1/trade", **doc("trade"))
    def trade(req: ApiRequest) -> flask.Response:
        assert req.principal is not None
        seen.append(req.principal)
        return json_response({"user": req.principal.user_id})

    @api.route("GET", "/v1/either", **doc(("read", "trade")))
    def either(req: ApiRequest) -> flask.Response:
        return json_response({})

    @api.route("GET", "/v1/open", summary="s", operation_id="open", tag="t", auth="none")
    def open_(req: ApiRequest) -> flask.Response:
        assert req.principal is None  # no scope declared: nobody authenticated
        return json_response({})

    return api, seen


def test_a_declared_scope_is_checked_before_the_handler() -> None:
    callers: list[str] = []
    api, seen = _scoped_api(callers)
    app = flask.Flask("t")

    def call(method: str, path: str, key: str | None = None) -> flask.Response:
        headers = {"X-API-Key": key} if key else {}
        with app.test_request_context(path, method=method, headers=headers):
            return api(flask.request)

    resp = call("POST", "/v1/trade")
    assert (resp.status_code, resp.get_json()["error"]["code"]) == (401, "unauthenticated")
    resp = call("POST", "/v1/trade", "ak_read")
    assert (resp.status_code, resp.get_json()["error"]["code"]) == (403, "insufficient_scope")
    assert "'trade'" in resp.get_json()["error"]["message"]
    assert seen == []  # the handler never ran
    resp = call("POST", "/v1/trade", "ak_trade")
    assert resp.status_code == 200 and [p.key_id for p in seen] == ["ak_trade"]
    for key in ("ak_read", "ak_trade"):  # one of them will do
        assert call("GET", "/v1/either", key).status_code == 200
    assert call("GET", "/v1/open").status_code == 200
    assert "/v1/open" not in callers


def test_a_scope_is_declared_where_it_can_be_checked() -> None:
    with pytest.raises(TypeError, match="authenticate="):
        Api("t").route("GET", "/v1/x", summary="s", operation_id="x", tag="t", scope="read")
    authenticated = Api("t", authenticate=lambda req: Principal("u", "user", ALL_SCOPES, "jwt"))
    with pytest.raises(ValueError, match="auth='user'"):
        authenticated.route(
            "GET", "/v1/x", summary="s", operation_id="x", tag="t", auth="admin", scope="read"
        )
    with pytest.raises(ValueError, match="unknown scopes"):
        authenticated.route("GET", "/v1/x", summary="s", operation_id="x", tag="t", scope="all")


def test_authenticate_verifies_a_request_once() -> None:
    """The wrapper's caller is the handler's: a signed request is not verified twice (its
    signature is accepted once)."""
    app = flask.Flask("t")
    found = Principal("u1", "user", frozenset({"read"}), "api_key", key_id="ak_1")
    with app.test_request_context("/v1/x"):
        req = ApiRequest(raw=flask.request, request_id="r", client_ip="")
        req.principal = found
        assert authenticate(req) is found


def test_a_user_route_that_declares_no_scope_gets_the_functions() -> None:
    """``Api(..., scope=...)``: a route added without a scope is not left open."""
    reader = Principal("u1", "user", frozenset({"read"}), "api_key", key_id="ak_r")
    api = Api("t", settings=lambda: HttpSettings(), authenticate=lambda req: reader, scope="trade")
    ok: dict[str, Any] = {"summary": "s", "tag": "t"}
    api.route("POST", "/v1/plain", operation_id="plain", **ok)(lambda req: json_response({}))
    api.route("GET", "/v1/own", operation_id="own", scope="read", **ok)(
        lambda req: json_response({})
    )
    api.route("GET", "/v1/open", operation_id="open", auth="none", **ok)(
        lambda req: json_response({})
    )
    scopes = {pattern: doc.scopes for _, pattern, doc in api.documented if doc is not None}
    assert scopes == {"/v1/plain": ("trade",), "/v1/own": ("read",), "/v1/open": ()}
    app = flask.Flask("t")
    for method, path, status in (("POST", "/v1/plain", 403), ("GET", "/v1/own", 200)):
        with app.test_request_context(path, method=method):
            assert api(flask.request).status_code == status, path
    with pytest.raises(TypeError, match="authenticate="):
        Api("t", scope="read")
