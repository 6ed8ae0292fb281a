"""The auth function and the HTTP foundation through the local gateway, against the real
Firestore emulator and Redis: accounts, sessions, refresh rotation, API keys and their
signatures, forged tokens, an external OIDC issuer, rate limits and bad input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import flask
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask.testing import FlaskClient
from google.cloud import firestore
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from api.auth import (
    authenticate,
    new_secrets_document,
    parse_secrets,
    require_scope,
    rotate_signing_key,
    sign_request,
)
from api.http import Api, ApiRequest, Body, json_response
from functions.auth.main import FAMILIES
from infra.gateway import ROUTES, create_app
from shared.instance import reset_instance

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
ISSUER, AUDIENCE = "exchange", "exchange-api"
Configure = Callable[..., None]

# -------------------------------------------------------------------------------- a probe API
# A second function mounted on the gateway, to exercise authenticate/require_scope with
# bodies, paths and queries, and the 500 path.

probe = Api("probe")


class Note(Body):
    note: str


@probe.route("POST", "/v1/probe/trade")
def _trade(req: ApiRequest) -> flask.Response:
    principal = authenticate(req)
    require_scope(principal, "trade")
    note = req.json(Note).note
    return json_response({"user_id": principal.user_id, "via": principal.via, "note": note})


@probe.route("GET", "/v1/probe/items/{item_id}")
def _item(req: ApiRequest) -> flask.Response:
    principal = authenticate(req)
    require_scope(principal, "read")
    return json_response({"item": req.params["item_id"], "limit": req.query("limit")})


@probe.route("GET", "/v1/probe/forgets-the-session", session_in_limits=True)
def _forgets(req: ApiRequest) -> flask.Response:
    authenticate(req)  # declared to check the session with its limits, and never counts
    return json_response({"ok": True})


@probe.route("GET", "/v1/probe/boom")
def _boom(req: ApiRequest) -> flask.Response:
    raise RuntimeError("database password is hunter2")


# -------------------------------------------------------------------------------- fixtures


@pytest.fixture
def secrets_doc() -> dict[str, Any]:
    return new_secrets_document()


@pytest.fixture
def configure(
    firestore_db: firestore.Client,
    redis_db: Any,
    monkeypatch: pytest.MonkeyPatch,
    secrets_doc: dict[str, Any],
) -> Iterator[Configure]:
    """The environment of the functions; ``configure(NAME="value", ...)`` changes it."""

    def apply(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_instance()

    for name in ("AUTH_KEYS_FILE", "AUTH_KEYS_SECRET", "OIDC_ISSUER", "API_CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    apply(
        AUTH_KEYS_JSON=orjson.dumps(secrets_doc).decode(),
        API_CORS_ORIGINS="https://app.example",
    )
    yield apply
    reset_instance()


@pytest.fixture
def client(configure: Configure) -> FlaskClient:
    return create_app((*ROUTES, ("/v1/probe", probe))).test_client()


def error(resp: TestResponse) -> str:
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    code: str = body["error"]["code"]
    return code


def signup(client: FlaskClient, email: str, password: str = PASSWORD) -> TestResponse:
    return client.post("/v1/auth/signup", json={"email": email, "password": password})


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> TestResponse:
    return client.post("/v1/auth/login", json={"email": email, "password": password})


def session(client: FlaskClient, email: str = "alice@example.com") -> dict[str, Any]:
    assert signup(client, email).status_code == 201
    resp = login(client, email)
    assert resp.status_code == 200, resp.get_json()
    tokens: dict[str, Any] = resp.get_json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def me(client: FlaskClient, token: str) -> TestResponse:
    return client.get("/v1/auth/me", headers=bearer(token))


# -------------------------------------------------------------------------------- accounts


def test_signup_login_me(client: FlaskClient, firestore_db: firestore.Client) -> None:
    resp = signup(client, "  Alice@Example.COM ")
    assert resp.status_code == 201
    user_id = resp.get_json()["user_id"]
    assert resp.headers["Cache-Control"] == "no-store"

    user = firestore_db.collection("users").document(user_id).get().to_dict()
    assert user is not None
    assert user["email"] == "alice@example.com" and user["role"] == "user"
    assert user["password_hash"].startswith("$argon2id$") and PASSWORD not in str(user)

    tokens = login(client, "alice@example.com").get_json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "EdDSA" and header["kid"]
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert {"exp", "iat", "iss", "aud", "sub", "role", "sid", "epoch", "auth_time"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["auth_time"] - time.time()) < 60 and claims["epoch"] == 0

    resp = me(client, tokens["access_token"])
    assert resp.status_code == 200
    assert resp.get_json() == {
        "user_id": user_id,
        "email": "alice@example.com",
        "role": "user",
        "via": "jwt",
        "scopes": ["read", "trade", "withdraw"],
        "api_key_id": None,
        "auth_time": claims["auth_time"],
        "two_factor": False,
    }


def test_signup_rejects_duplicates_bad_emails_and_weak_passwords(client: FlaskClient) -> None:
    assert signup(client, "bob@example.com").status_code == 201
    resp = signup(client, "BOB@example.com ")
    assert resp.status_code == 409 and error(resp) == "email_taken"
    for bad in ("bob", "bob@", "@example.com", "bo b@example.com", "a/b@example.com", "x@y"):
        resp = signup(client, bad)
        assert resp.status_code == 400 and error(resp) == "invalid_email", bad
    resp = signup(client, "carol@example.com", "short")
    assert resp.status_code == 400 and error(resp) == "weak_password"


def test_concurrent_signups_of_one_email_create_one_user(
    client: FlaskClient, firestore_db: firestore.Client
) -> None:
    app = client.application
    statuses: list[int] = []

    def attempt() -> None:
        statuses.append(signup(app.test_client(), "race@example.com").status_code)

    threads = [threading.Thread(target=attempt) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 409, 409, 409, 409]
    assert len(list(firestore_db.collection("users").stream())) == 1


def test_login_failures_look_alike(client: FlaskClient) -> None:
    session(client)
    wrong = login(client, "alice@example.com", "not the password")
    unknown = login(client, "nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()
    assert error(wrong) == "invalid_credentials"


def test_me_needs_a_token(client: FlaskClient) -> None:
    resp = client.get("/v1/auth/me")
    assert resp.status_code == 401 and error(resp) == "unauthenticated"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = client.get("/v1/auth/me", headers={"Authorization": "Basic abc"})
    assert resp.status_code == 401 and error(resp) == "invalid_token"


def test_role_comes_from_the_user_record(
    client: FlaskClient, firestore_db: firestore.Client
) -> None:
    user_id = signup(client, "root@example.com").get_json()["user_id"]
    firestore_db.collection("users").document(user_id).update({"role": "admin"})
    tokens = login(client, "root@example.com").get_json()
    assert me(client, tokens["access_token"]).get_json()["role"] == "admin"


# -------------------------------------------------------------------------------- sessions


def test_refresh_rotates_and_reuse_revokes_the_family(client: FlaskClient) -> None:
    first = session(client)
    resp = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 200
    second = resp.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert me(client, second["access_token"]).status_code == 200

    # The spent token again: someone else has it. The whole family dies.
    resp = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 401 and error(resp) == "refresh_token_reused"
    resp = client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert resp.status_code == 401 and error(resp) == "invalid_refresh_token"

    # A separate login is a separate family.
    other = login(client, "alice@example.com").get_json()
    resp = client.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert resp.status_code == 200


def test_logout_revokes_the_session(client: FlaskClient) -> None:
    tokens = session(client)
    refreshed = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    current = refreshed.get_json()["refresh_token"]
    resp = client.post("/v1/auth/logout", json={"refresh_token": current})
    assert resp.status_code == 204
    resp = client.post("/v1/auth/refresh", json={"refresh_token": current})
    assert resp.status_code == 401 and error(resp) == "invalid_refresh_token"
    resp = client.post("/v1/auth/logout", json={"refresh_token": "rt_nonsense"})
    assert resp.status_code == 401


def test_logout_ends_the_sessions_access_tokens_at_once(client: FlaskClient) -> None:
    tokens = session(client)
    other = login(client, "alice@example.com").get_json()  # a second session of alice's
    refreshed = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    newer = refreshed.get_json()
    assert me(client, tokens["access_token"]).status_code == 200
    assert (
        client.post("/v1/auth/logout", json={"refresh_token": newer["refresh_token"]}).status_code
        == 204
    )
    # Every access token of the session, old and new, stops now, not when it expires.
    for token in (tokens["access_token"], newer["access_token"]):
        resp = me(client, token)
        assert resp.status_code == 401 and error(resp) == "session_revoked"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # The other session goes on.
    assert me(client, other["access_token"]).status_code == 200
    resp = client.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert resp.status_code == 200


def test_a_reused_refresh_token_ends_the_access_tokens_too(client: FlaskClient) -> None:
    first = session(client)
    second = client.post(
        "/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    ).get_json()
    resp = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert error(resp) == "refresh_token_reused"
    for token in (first["access_token"], second["access_token"]):  # the thief's, the owner's
        assert error(me(client, token)) == "session_revoked"


def test_sessions_survive_a_redis_flush(client: FlaskClient, redis_db: Any) -> None:
    """Firestore holds the sessions' state; Redis only a copy of it."""
    tokens = session(client)
    other = login(client, "alice@example.com").get_json()
    client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    redis_db.flushall()
    assert error(me(client, tokens["access_token"])) == "session_revoked"
    assert me(client, other["access_token"]).status_code == 200


def test_trading_routes_check_the_session_with_their_limits(
    client: FlaskClient, configure: Configure, redis_db: Any
) -> None:
    """The order routes check the token's session in the rate limits' round trip: an ended
    session is refused there, whether Redis has the user's copy or not, and its requests
    spend nothing of the user's budget."""
    configure(TRADE_RATE_PER_USER="2", TRADE_RATE_WINDOW_S="60")
    ended = session(client)
    alive = login(client, "alice@example.com").get_json()
    assert client.post("/v1/auth/logout", json={"refresh_token": ended["refresh_token"]})
    for flush in (False, True, False):
        if flush:
            redis_db.flushall()  # no copy: read from Firestore, the copy written again
        resp = client.post("/v1/orders", json={}, headers=bearer(ended["access_token"]))
        assert (resp.status_code, error(resp)) == (401, "session_revoked")
        resp = client.delete("/v1/orders/1", headers=bearer(ended["access_token"]))
        assert (resp.status_code, error(resp)) == (401, "session_revoked")
    # Six refusals, none counted: the live session still has its two requests.
    for _ in range(2):
        resp = client.post("/v1/orders", json={}, headers=bearer(alive["access_token"]))
        assert resp.status_code == 400, resp.get_json()
    resp = client.post("/v1/orders", json={}, headers=bearer(alive["access_token"]))
    assert (resp.status_code, error(resp)) == (429, "rate_limited")


def test_a_route_that_skips_its_session_check_answers_500(client: FlaskClient) -> None:
    tokens = session(client)
    resp = client.get("/v1/probe/forgets-the-session", headers=bearer(tokens["access_token"]))
    assert (resp.status_code, error(resp)) == (500, "internal")


def test_password_change_ends_every_session(client: FlaskClient) -> None:
    a = session(client)
    b = login(client, "alice@example.com").get_json()

    def change(token: str, current: str, new: str) -> TestResponse:
        return client.post(
            "/v1/auth/password",
            json={"password": current, "new_password": new},
            headers=bearer(token),
        )

    resp = change(a["access_token"], "not the password", "a new long password")
    assert resp.status_code == 401 and error(resp) == "invalid_credentials"
    resp = change(a["access_token"], PASSWORD, "short")
    assert resp.status_code == 400 and error(resp) == "weak_password"
    resp = change(a["access_token"], PASSWORD, "a new long password")
    assert resp.status_code == 200, resp.get_json()
    fresh = resp.get_json()
    assert set(fresh) == {"access_token", "refresh_token", "token_type", "expires_in"}
    # Both earlier sessions are over, access and refresh tokens alike; the new one works.
    for old in (a, b):
        assert error(me(client, old["access_token"])) == "session_revoked"
        resp = client.post("/v1/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert resp.status_code == 401 and error(resp) == "invalid_refresh_token"
    assert me(client, fresh["access_token"]).status_code == 200
    resp = client.post("/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert resp.status_code == 200
    assert login(client, "alice@example.com").status_code == 401
    assert login(client, "alice@example.com", "a new long password").status_code == 200


def test_password_checks_need_a_person_with_a_password(
    client: FlaskClient, trade_key: dict[str, Any]
) -> None:
    body = orjson.dumps({"password": PASSWORD})
    for path in ("/v1/auth/reauth", "/v1/auth/password"):
        resp = client.post(path, data=body, content_type=JSON)
        assert resp.status_code == 401, path
        headers = signed(trade_key, "POST", path, body=body)
        resp = client.post(path, data=body, headers=headers, content_type=JSON)
        assert resp.status_code == 403 and error(resp) == "session_required", path
    resp = client.post("/v1/auth/reauth", json={"password": 1}, headers=bearer(trade_key["token"]))
    assert resp.status_code == 400


def test_refresh_with_unknown_token(client: FlaskClient) -> None:
    resp = client.post("/v1/auth/refresh", json={"refresh_token": "rt_" + "A" * 43})
    assert resp.status_code == 401 and error(resp) == "invalid_refresh_token"


# -------------------------------------------------------------------------------- JWT forgery


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(user_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id,
        "role": "user",
        "iat": now,
        "exp": now + 600,
        "sid": "forged-session",
        "epoch": 0,
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


class Forge:
    def __init__(self, doc: dict[str, Any], user_id: str) -> None:
        self.secrets = parse_secrets(orjson.dumps(doc))
        self.kid = self.secrets.signing_kid
        key = self.secrets.signing_key
        assert key is not None  # the full document: it signs
        self.key = key
        self.user_id = user_id

    def sign(self, claims: dict[str, Any] | None = None, kid: str | None = None) -> str:
        return jwt.encode(
            claims if claims is not None else _claims(self.user_id),
            self.key,
            algorithm="EdDSA",
            headers={"kid": kid or self.kid},
        )

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture
def forge(client: FlaskClient, secrets_doc: dict[str, Any]) -> Forge:
    user_id = signup(client, "mallory@example.com").get_json()["user_id"]
    f = Forge(secrets_doc, user_id)
    assert me(client, f.sign()).status_code == 200  # the control: a proper token passes
    return f


def _refused(client: FlaskClient, token: str, code: str = "invalid_token") -> None:
    resp = me(client, token)
    assert resp.status_code == 401, resp.get_json()
    assert error(resp) == code


def test_alg_none_is_refused(client: FlaskClient, forge: Forge) -> None:
    token = _unsigned({"alg": "none", "typ": "JWT", "kid": forge.kid}, _claims(forge.user_id))
    _refused(client, token + ".")
    _refused(client, token)


def test_hs256_with_the_public_key_as_secret_is_refused(client: FlaskClient, forge: Forge) -> None:
    for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
        signing_input = _unsigned(
            {"alg": alg, "typ": "JWT", "kid": forge.kid}, _claims(forge.user_id)
        )
        signature = hmac.new(forge.public_pem(), signing_input.encode(), digest).digest()
        _refused(client, signing_input + "." + _b64(signature))


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub", "role", "sid", "epoch"])
def test_missing_claims_are_refused(client: FlaskClient, forge: Forge, missing: str) -> None:
    _refused(client, forge.sign(_claims(forge.user_id, **{missing: None})))


def test_expired_token_is_refused(client: FlaskClient, forge: Forge) -> None:
    now = int(time.time())
    expired = _claims(forge.user_id, iat=now - 3600, exp=now - 120)
    _refused(client, forge.sign(expired), "token_expired")


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "https://evil.example"},
        {"aud": "another-api"},
        {"role": "superuser"},
        {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},  # issued in the future
        {"sid": ""},
        {"sid": ["s"]},
        {"sid": "a/b"},
        {"epoch": "0"},
        {"epoch": -1},
        {"epoch": True},
        {"role": ["admin"]},
    ],
)
def test_wrong_claims_are_refused(client: FlaskClient, forge: Forge, changes: Any) -> None:
    _refused(client, forge.sign(_claims(forge.user_id, **changes)))


def test_unknown_or_missing_kid_is_refused(client: FlaskClient, forge: Forge) -> None:
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(_claims(forge.user_id), stranger, algorithm="EdDSA", headers={"kid": "k0"})
    _refused(client, token)
    # Our kid on a stranger's signature.
    token = jwt.encode(
        _claims(forge.user_id), stranger, algorithm="EdDSA", headers={"kid": forge.kid}
    )
    _refused(client, token)
    _refused(client, jwt.encode(_claims(forge.user_id), forge.key, algorithm="EdDSA"))


def test_tampered_payload_is_refused(client: FlaskClient, forge: Forge) -> None:
    header, _, signature = forge.sign().split(".")
    evil = _b64(json.dumps(_claims(forge.user_id, role="admin")).encode())
    _refused(client, f"{header}.{evil}.{signature}")
    _refused(client, "not.a.jwt")


def test_key_rotation(
    client: FlaskClient, configure: Configure, secrets_doc: dict[str, Any]
) -> None:
    old = session(client)
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]

    rotated = rotate_signing_key(secrets_doc)
    assert "PRIVATE" not in rotated["jwt"]["keys"][old_kid]
    configure(AUTH_KEYS_JSON=orjson.dumps(rotated).decode())
    assert me(client, old["access_token"]).status_code == 200  # still verifies
    new = login(client, "alice@example.com").get_json()
    new_kid = jwt.get_unverified_header(new["access_token"])["kid"]
    assert new_kid == rotated["jwt"]["current"] != old_kid

    del rotated["jwt"]["keys"][old_kid]  # rotated out
    configure(AUTH_KEYS_JSON=orjson.dumps(rotated).decode())
    _refused(client, old["access_token"])
    assert me(client, new["access_token"]).status_code == 200


# -------------------------------------------------------------------------------- OIDC


class JwksServer:
    """A local OIDC issuer's JWKS endpoint, counting its fetches."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.fetches = 0
        body = orjson.dumps(jwks)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                outer.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def idp(configure: Configure) -> Iterator[tuple[JwksServer, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    server = JwksServer({"keys": [{**jwk, "kid": "idp-1", "alg": "RS256", "use": "sig"}]})
    configure(
        OIDC_ISSUER=server.issuer,
        OIDC_AUDIENCE="https://api.exchange.test",
        OIDC_ROLE_CLAIM="https://exchange.test/roles",
    )
    yield server, key
    server.close()


def _idp_claims(issuer: str, **changes: Any) -> dict[str, Any]:
    claims = _claims("auth0|42", iss=issuer, aud=["https://api.exchange.test", "userinfo"])
    for ours in ("role", "sid", "epoch"):
        claims.pop(ours)
    claims.update(changes)
    return claims


def test_oidc_tokens_verified_against_the_jwks(
    client: FlaskClient, idp: tuple[JwksServer, rsa.RSAPrivateKey]
) -> None:
    server, key = idp

    def idp_token(
        kid: str = "idp-1",
        signer: Any = key,
        extra: dict[str, Any] | None = None,
        **changes: Any,
    ) -> str:
        claims = {**_idp_claims(server.issuer, **changes), **(extra or {})}
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": kid})

    resp = me(client, idp_token())
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["via"] == "oidc" and body["role"] == "user" and body["email"] is None
    assert body["user_id"].startswith("oidc_")
    assert me(client, idp_token()).get_json()["user_id"] == body["user_id"]  # stable
    assert server.fetches == 1  # the JWKS is cached

    admin = me(client, idp_token(extra={"https://exchange.test/roles": ["admin"]}))
    assert admin.get_json()["role"] == "admin"

    _refused(client, idp_token(aud="https://other.api"))
    _refused(client, idp_token(exp=int(time.time()) - 120), "token_expired")
    _refused(client, idp_token(exp=None))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _refused(client, idp_token(kid="idp-2", signer=stranger))  # unknown kid
    _refused(client, idp_token(signer=stranger))  # known kid, wrong signature
    # HS256 keyed with the issuer's public key (alg confusion), under the issuer's name.
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _unsigned(
        {"alg": "HS256", "typ": "JWT", "kid": "idp-1"}, _idp_claims(server.issuer)
    )
    forged = signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), "sha256").digest())
    _refused(client, forged)
    # Our own tokens still work next to the issuer's.
    assert me(client, session(client)["access_token"]).status_code == 200


def test_oidc_issuer_unreachable_is_503_not_500(client: FlaskClient, configure: Configure) -> None:
    configure(
        OIDC_ISSUER="http://127.0.0.1:9/",  # discard port: nothing listens
        OIDC_AUDIENCE="https://api.exchange.test",
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        _idp_claims("http://127.0.0.1:9/"), key, algorithm="RS256", headers={"kid": "x"}
    )
    resp = me(client, token)
    assert resp.status_code == 503 and error(resp) == "unavailable"


# -------------------------------------------------------------------------------- API keys


def create_key(client: FlaskClient, token: str, scopes: list[str]) -> dict[str, Any]:
    resp = client.post(
        "/v1/api-keys", json={"label": "bot", "scopes": scopes}, headers=bearer(token)
    )
    assert resp.status_code == 201, resp.get_json()
    key: dict[str, Any] = resp.get_json()
    return key


def signed(
    key: dict[str, Any],
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    timestamp: int | None = None,
) -> dict[str, str]:
    ts = timestamp if timestamp is not None else int(time.time() * 1000)
    return {
        "X-API-Key": key["id"],
        "X-API-Timestamp": str(ts),
        "X-API-Signature": sign_request(key["secret"], ts, method, path, query, body),
    }


JSON = "application/json"


def test_api_key_lifecycle(client: FlaskClient, firestore_db: firestore.Client) -> None:
    token = session(client)["access_token"]
    key = create_key(client, token, ["trade", "read", "trade"])
    assert key["id"].startswith("ak_") and key["scopes"] == ["read", "trade"]
    assert len(key["secret"]) >= 43

    record = firestore_db.collection("api_keys").document(key["id"]).get().to_dict()
    assert record is not None
    assert key["secret"] not in str(record)
    assert record["secret_sha256"] == hashlib.sha256(key["secret"].encode()).hexdigest()

    listed = client.get("/v1/api-keys", headers=bearer(token)).get_json()["api_keys"]
    assert listed == [
        {"id": key["id"], "label": "bot", "scopes": ["read", "trade"], "created_at": ANY_STR}
    ]

    # Someone else's id is 404, as is an unknown one.
    other = session(client, "eve@example.com")["access_token"]
    for attacker_id in (key["id"], "ak_" + "0" * 24, "nonsense"):
        resp = client.delete(f"/v1/api-keys/{attacker_id}", headers=bearer(other))
        assert resp.status_code == 404 and error(resp) == "not_found"
    assert client.get("/v1/api-keys", headers=bearer(other)).get_json() == {"api_keys": []}

    body = b'{"note":"hi"}'
    headers = signed(key, "POST", "/v1/probe/trade", body=body)
    assert (
        client.post("/v1/probe/trade", data=body, headers=headers, content_type=JSON).status_code
        == 200
    )

    assert client.delete(f"/v1/api-keys/{key['id']}", headers=bearer(token)).status_code == 204
    headers = signed(key, "POST", "/v1/probe/trade", body=body)
    resp = client.post("/v1/probe/trade", data=body, headers=headers, content_type=JSON)
    assert resp.status_code == 401 and error(resp) == "invalid_api_key"


class _AnyStr:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)


ANY_STR: Any = _AnyStr()


@pytest.fixture
def trade_key(client: FlaskClient) -> dict[str, Any]:
    key = create_key(client, session(client)["access_token"], ["read", "trade"])
    key["token"] = login(client, "alice@example.com").get_json()["access_token"]
    return key


def test_signed_request_accepted_once(client: FlaskClient, trade_key: dict[str, Any]) -> None:
    body = b'{"note": "buy"}'
    headers = signed(trade_key, "POST", "/v1/probe/trade", body=body)
    resp = client.post("/v1/probe/trade", data=body, headers=headers, content_type=JSON)
    assert resp.status_code == 200
    assert resp.get_json()["via"] == "api_key" and resp.get_json()["note"] == "buy"

    resp = client.post("/v1/probe/trade", data=body, headers=headers, content_type=JSON)
    assert resp.status_code == 401 and error(resp) == "replayed_request"

    headers = signed(trade_key, "GET", "/v1/probe/items/7", query="limit=5")
    resp = client.get("/v1/probe/items/7?limit=5", headers=headers)
    assert resp.status_code == 200 and resp.get_json() == {"item": "7", "limit": "5"}
    me_resp = client.get("/v1/auth/me", headers=signed(trade_key, "GET", "/v1/auth/me"))
    assert me_resp.get_json()["via"] == "api_key"
    assert me_resp.get_json()["api_key_id"] == trade_key["id"]


def test_tampered_requests_are_refused(client: FlaskClient, trade_key: dict[str, Any]) -> None:
    body = b'{"note": "buy 1"}'
    headers = signed(trade_key, "POST", "/v1/probe/trade", body=body)
    resp = client.post(
        "/v1/probe/trade", data=b'{"note": "buy 9"}', headers=headers, content_type=JSON
    )
    assert resp.status_code == 401 and error(resp) == "invalid_signature"

    headers = signed(trade_key, "GET", "/v1/probe/items/1")
    resp = client.get("/v1/probe/items/2", headers=headers)
    assert resp.status_code == 401 and error(resp) == "invalid_signature"

    headers = signed(trade_key, "GET", "/v1/probe/items/1", query="limit=1")
    resp = client.get("/v1/probe/items/1?limit=1000", headers=headers)
    assert resp.status_code == 401 and error(resp) == "invalid_signature"

    headers = signed(trade_key, "POST", "/v1/probe/trade", body=body)
    headers["X-API-Timestamp"] = str(int(headers["X-API-Timestamp"]) + 1)
    resp = client.post("/v1/probe/trade", data=body, headers=headers, content_type=JSON)
    assert resp.status_code == 401 and error(resp) == "invalid_signature"

    headers = signed(trade_key, "POST", "/v1/probe/trade", body=body)
    headers["X-API-Signature"] = "0" * 64
    resp = client.post("/v1/probe/trade", data=body, headers=headers, content_type=JSON)
    assert resp.status_code == 401 and error(resp) == "invalid_signature"

    wrong_secret = {**trade_key, "secret": trade_key["secret"][:-2] + "AA"}
    headers = signed(wrong_secret, "POST", "/v1/probe/trade", body=body)
    resp = client.post("/v1/probe/trade", data=body, headers=headers, content_type=JSON)
    assert resp.status_code == 401 and error(resp) == "invalid_signature"

    for drop in ("X-API-Timestamp", "X-API-Signature"):
        headers = signed(trade_key, "GET", "/v1/auth/me")
        del headers[drop]
        assert client.get("/v1/auth/me", headers=headers).status_code == 401
    headers = signed({**trade_key, "id": "ak_" + "f" * 24}, "GET", "/v1/auth/me")
    resp = client.get("/v1/auth/me", headers=headers)
    assert resp.status_code == 401 and error(resp) == "invalid_api_key"
    headers = {**signed(trade_key, "GET", "/v1/auth/me"), **bearer(trade_key["token"])}
    assert client.get("/v1/auth/me", headers=headers).status_code == 401


def test_receive_window(client: FlaskClient, trade_key: dict[str, Any]) -> None:
    now = int(time.time() * 1000)
    for ts in (now - 6000, now + 6000, 0):
        headers = signed(trade_key, "GET", "/v1/auth/me", timestamp=ts)
        resp = client.get("/v1/auth/me", headers=headers)
        assert resp.status_code == 401 and error(resp) == "timestamp_out_of_window", ts
    headers = signed(trade_key, "GET", "/v1/auth/me", timestamp=now - 3000)
    assert client.get("/v1/auth/me", headers=headers).status_code == 200
    headers = signed(trade_key, "GET", "/v1/auth/me")
    headers["X-API-Timestamp"] = "12.5"
    assert error(client.get("/v1/auth/me", headers=headers)) == "invalid_timestamp"


def test_scopes(client: FlaskClient, trade_key: dict[str, Any]) -> None:
    read_key = create_key(client, trade_key["token"], ["read"])
    body = b'{"note": "buy"}'
    headers = signed(read_key, "POST", "/v1/probe/trade", body=body)
    resp = client.post("/v1/probe/trade", data=body, headers=headers, content_type=JSON)
    assert resp.status_code == 403 and error(resp) == "insufficient_scope"
    headers = signed(read_key, "GET", "/v1/probe/items/1")
    assert client.get("/v1/probe/items/1", headers=headers).status_code == 200

    # An API key cannot mint or list API keys: that needs a signed-in session.
    payload = orjson.dumps({"label": "x", "scopes": ["withdraw"]})
    headers = signed(trade_key, "POST", "/v1/api-keys", body=payload)
    resp = client.post("/v1/api-keys", data=payload, headers=headers, content_type=JSON)
    assert resp.status_code == 403 and error(resp) == "session_required"
    resp = client.get("/v1/api-keys", headers=signed(trade_key, "GET", "/v1/api-keys"))
    assert resp.status_code == 403


# -------------------------------------------------------------------------------- fresh proof


def test_a_stolen_token_cannot_make_a_trading_or_withdrawing_key(
    client: FlaskClient, forge: Forge, configure: Configure
) -> None:
    """A token whose password proof is older than FRESH_AUTH_MAX_AGE_S (a stolen one, say)
    may make a read-only key but not one that trades or withdraws; the password again
    (reauth) makes it fresh."""
    configure(FRESH_AUTH_MAX_AGE_S="300")
    real = login(client, "mallory@example.com").get_json()["access_token"]
    sid = jwt.decode(real, options={"verify_signature": False})["sid"]
    stale = forge.sign(_claims(forge.user_id, sid=sid, auth_time=int(time.time()) - 301))
    unproved = forge.sign(_claims(forge.user_id, sid=sid))  # no auth_time at all
    for token in (stale, unproved):
        for scopes in (["withdraw"], ["read", "trade"], ["trade", "withdraw"]):
            resp = client.post(
                "/v1/api-keys", json={"label": "x", "scopes": scopes}, headers=bearer(token)
            )
            assert resp.status_code == 401 and error(resp) == "fresh_auth_required", scopes
            challenge = resp.headers["WWW-Authenticate"]
            assert 'error="insufficient_user_authentication"' in challenge
            assert "max_age=300" in challenge
        assert create_key(client, token, ["read"])["scopes"] == ["read"]

    resp = client.post("/v1/auth/reauth", json={"password": "guess"}, headers=bearer(stale))
    assert resp.status_code == 401 and error(resp) == "invalid_credentials"
    resp = client.post("/v1/auth/reauth", json={"password": PASSWORD}, headers=bearer(stale))
    assert resp.status_code == 200, resp.get_json()
    fresh = resp.get_json()
    assert set(fresh) == {"access_token", "token_type", "expires_in", "auth_time"}
    assert abs(fresh["auth_time"] - time.time()) < 60
    claims = jwt.decode(fresh["access_token"], options={"verify_signature": False})
    assert (claims["sid"], claims["auth_time"]) == (sid, fresh["auth_time"])
    assert create_key(client, fresh["access_token"], ["read", "withdraw"])["scopes"] == [
        "read", "withdraw",
    ]  # fmt: skip
    # A session that does not exist cannot be made fresh.
    ghost = forge.sign(_claims(forge.user_id, auth_time=int(time.time()) - 301))
    resp = client.post("/v1/auth/reauth", json={"password": PASSWORD}, headers=bearer(ghost))
    assert resp.status_code == 401 and error(resp) == "session_revoked"


def test_a_refresh_keeps_the_proofs_age_and_reauth_renews_it(
    client: FlaskClient, configure: Configure, firestore_db: firestore.Client
) -> None:
    configure(FRESH_AUTH_MAX_AGE_S="300")
    tokens = session(client)
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    # The password was proved an hour ago: the session's proof time is written back (no
    # clock to race), and a refresh carries it on.
    auth_time = int(time.time()) - 3600
    firestore_db.collection(FAMILIES).document(sid).update({"auth_time": auth_time})
    refreshed = client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    ).get_json()
    claims = jwt.decode(refreshed["access_token"], options={"verify_signature": False})
    assert claims["auth_time"] == auth_time  # a refresh proves nothing
    assert me(client, refreshed["access_token"]).get_json()["auth_time"] == auth_time
    # Stale after FRESH_AUTH_MAX_AGE_S: a refresh does not help, reauth does, and later
    # refreshes of the session carry the new proof.
    resp = client.post(
        "/v1/api-keys", json={"label": "x", "scopes": ["trade"]},
        headers=bearer(refreshed["access_token"]),
    )  # fmt: skip
    assert error(resp) == "fresh_auth_required"
    resp = client.post(
        "/v1/auth/reauth", json={"password": PASSWORD}, headers=bearer(refreshed["access_token"])
    )
    renewed = resp.get_json()["auth_time"]
    assert renewed > auth_time
    again = client.post(
        "/v1/auth/refresh", json={"refresh_token": refreshed["refresh_token"]}
    ).get_json()
    claims = jwt.decode(again["access_token"], options={"verify_signature": False})
    assert (claims["auth_time"], claims["sid"]) == (renewed, sid)
    assert create_key(client, again["access_token"], ["trade"])["scopes"] == ["trade"]


def test_reauth_guesses_count_as_login_failures(client: FlaskClient, configure: Configure) -> None:
    """A stolen token is no way around the password's limits."""
    configure(AUTH_FAILURES_PER_EMAIL_IP="3", AUTH_FAILURES_PER_IP="100")
    token = session(client)["access_token"]
    statuses = [
        client.post(
            "/v1/auth/reauth", json={"password": f"guess {i}"}, headers=bearer(token)
        ).status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    assert login(client, "alice@example.com").status_code == 429  # the same (email, address)
    assert login(_from(client, "10.0.0.2"), "alice@example.com").status_code == 200


# -------------------------------------------------------------------------------- rate limits


def _from(client: FlaskClient, address: str, **headers: str) -> FlaskClient:
    client.environ_base["REMOTE_ADDR"] = address
    client.environ_base.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return client


WRONG = "not the password"


def test_failing_at_an_address_does_not_lock_its_owner_out(
    client: FlaskClient, configure: Configure
) -> None:
    configure(AUTH_FAILURES_PER_EMAIL_IP="3", AUTH_FAILURES_PER_IP="5")
    signup(client, "alice@example.com")
    # One guesser: three wrong passwords, then refused (even the right one: it has been
    # failing), with a Retry-After within the window.
    guesser = _from(client.application.test_client(), "10.6.6.6")
    assert [login(guesser, "alice@example.com", WRONG).status_code for _ in range(3)] == [401] * 3
    resp = login(guesser, "alice@example.com", WRONG)
    assert resp.status_code == 429 and error(resp) == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 900
    assert login(guesser, "alice@example.com").status_code == 429
    # Many guessers, two tries each: 40 failures at alice's address in all.
    for i in range(20):
        other = _from(client.application.test_client(), f"10.7.0.{i + 1}")
        assert [login(other, "alice@example.com", WRONG).status_code for _ in range(2)] == [401] * 2
    # Alice, from her own address, with her password: in.
    owner = _from(client.application.test_client(), "10.0.0.9")
    assert login(owner, "alice@example.com").status_code == 200
    # And a typo of hers counts against her address only.
    assert login(owner, "alice@example.com", WRONG).status_code == 401
    assert login(owner, "alice@example.com").status_code == 200


def test_right_passwords_never_count_and_forgive_the_pair(
    client: FlaskClient, configure: Configure
) -> None:
    configure(AUTH_FAILURES_PER_EMAIL_IP="3", AUTH_FAILURES_PER_IP="7")
    signup(client, "alice@example.com")
    me_ = _from(client, "10.0.0.9")
    assert [login(me_, "alice@example.com").status_code for _ in range(8)] == [200] * 8
    for _ in range(3):  # two typos then the password, three times over: never refused
        assert login(me_, "alice@example.com", WRONG).status_code == 401
        assert login(me_, "alice@example.com", WRONG).status_code == 401
        assert login(me_, "alice@example.com").status_code == 200
    # The address's own budget (7) still counts every failure: the 8th try is refused.
    assert login(me_, "alice@example.com", WRONG).status_code == 401
    assert login(me_, "alice@example.com", WRONG).status_code == 429


def test_failures_per_address_across_emails(client: FlaskClient, configure: Configure) -> None:
    configure(AUTH_FAILURES_PER_EMAIL_IP="3", AUTH_FAILURES_PER_IP="5")
    signup(client, "alice@example.com")
    sprayer = _from(client.application.test_client(), "10.9.9.9")
    statuses = [login(sprayer, f"u{i}@example.com").status_code for i in range(6)]
    assert statuses == [401] * 5 + [429]
    assert login(sprayer, "alice@example.com").status_code == 429
    # Invalid emails are failures too (no cheap probing around the limit).
    other = _from(client.application.test_client(), "10.9.9.10")
    statuses = [login(other, f"not-an-email-{i}").status_code for i in range(6)]
    assert statuses == [401] * 5 + [429]
    # Another address is not concerned.
    assert login(_from(client, "10.9.9.11"), "alice@example.com").status_code == 200


def test_concurrent_guesses_cannot_pass_the_limit(
    client: FlaskClient, configure: Configure
) -> None:
    configure(AUTH_FAILURES_PER_EMAIL_IP="3", AUTH_FAILURES_PER_IP="50")
    signup(client, "alice@example.com")
    statuses: list[int] = []

    def guess() -> None:
        c = _from(client.application.test_client(), "10.6.6.6")
        statuses.append(login(c, "alice@example.com", WRONG).status_code)

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [401] * 3 + [429] * 9


def test_forwarded_for_cannot_dodge_the_address_limit(
    client: FlaskClient, configure: Configure
) -> None:
    """Locally nothing in front appends X-Forwarded-For: it is ignored. Behind the cloud's
    load balancer (two entries appended: the client, the balancer) only the client's entry
    the balancer wrote counts, never one the client wrote further left."""
    configure(AUTH_FAILURES_PER_EMAIL_IP="3", AUTH_FAILURES_PER_IP="5")
    statuses = [
        login(
            _from(client, "10.6.6.6", X_Forwarded_For=f"192.0.2.{i}"), f"u{i}@example.com"
        ).status_code
        for i in range(6)
    ]
    assert statuses == [401] * 5 + [429]

    configure(API_TRUSTED_PROXY_HOPS="2")
    lb = "35.191.0.1"
    statuses = [
        login(
            _from(client, lb, X_Forwarded_For=f"192.0.2.{i}, 198.51.100.7, {lb}"),
            f"v{i}@example.com",
        ).status_code
        for i in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    # Another client behind the same balancer has its own budget.
    resp = login(_from(client, lb, X_Forwarded_For=f"198.51.100.8, {lb}"), "w@example.com")
    assert resp.status_code == 401


def test_ipv6_clients_count_per_64(client: FlaskClient, configure: Configure) -> None:
    configure(AUTH_FAILURES_PER_EMAIL_IP="3", AUTH_FAILURES_PER_IP="5")
    statuses = [
        login(_from(client, f"2001:db8:1:2::{i:x}"), "alice@example.com").status_code
        for i in range(1, 5)
    ]
    assert statuses == [401] * 3 + [429]
    assert login(_from(client, "2001:db8:1:3::1"), "alice@example.com").status_code == 401


def test_signup_rate_limited_per_ip(client: FlaskClient, configure: Configure) -> None:
    configure(AUTH_RATE_PER_IP="3")
    statuses = [signup(client, f"s{i}@example.com").status_code for i in range(4)]
    assert statuses == [201, 201, 201, 429]
    resp = signup(client, "s9@example.com")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1


# -------------------------------------------------------------------------------- bad input

BAD_BODIES: list[tuple[bytes, str]] = [
    (b'{"email": 1, "password": "correct horse battery"}', "invalid_request"),
    (b'{"email": "a@example.com", "password": 123456789012}', "invalid_request"),
    (b'{"email": "a@example.com", "password": 1.5}', "invalid_request"),
    (b'{"email": "a@example.com", "password": true}', "invalid_request"),
    (b'{"email": "a@example.com", "password": null}', "invalid_request"),
    (b'{"email": ["a@example.com"], "password": "correct horse battery"}', "invalid_request"),
    (
        b'{"email": "a@example.com", "password": "correct horse", "role": "admin"}',
        "invalid_request",
    ),
    (b'{"email": "a@example.com"}', "invalid_request"),
    (b"[]", "invalid_request"),
    (b'"a@example.com"', "invalid_request"),
    (b"null", "invalid_request"),
    (b"1e999", "invalid_request"),
    (b"{}", "invalid_request"),
    (b"", "invalid_json"),
    (b'{"email": ', "invalid_json"),
    (b'{"email": "\xff\xfe", "password": "x"}', "invalid_json"),
    (b'{"email": NaN}', "invalid_json"),
    (b'{"x": ' + b"[" * 30000 + b"]" * 30000 + b"}", "invalid_request"),
    (b'{"email": "' + b"a" * 5000 + b'@example.com", "password": "p"}', "invalid_request"),
    (b'{"email": "a@example.com", "password": "' + b"p" * 10000 + b'"}', "invalid_request"),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES, ids=range(len(BAD_BODIES)))
@pytest.mark.parametrize("path", ["/v1/auth/signup", "/v1/auth/login"])
def test_bad_bodies_are_400(client: FlaskClient, path: str, body: bytes, code: str) -> None:
    resp = client.post(path, data=body, content_type=JSON)
    assert resp.status_code == 400, resp.get_json()
    assert error(resp) in (code, "invalid_json", "invalid_request")


def test_bad_api_key_bodies_are_400(client: FlaskClient) -> None:
    token = session(client)["access_token"]
    for body in (
        {"label": "x", "scopes": ["admin"]},
        {"label": "x", "scopes": "read"},
        {"label": "x", "scopes": []},
        {"label": "x", "scopes": ["read", "trade", "withdraw", "read"]},
        {"label": 1, "scopes": ["read"]},
        {"label": "   ", "scopes": ["read"]},
        {"label": "x" * 65, "scopes": ["read"]},
        {"label": "x", "scopes": ["read"], "expires": 3},
    ):
        resp = client.post("/v1/api-keys", json=body, headers=bearer(token))
        assert resp.status_code == 400, (body, resp.get_json())
    resp = client.post("/v1/auth/refresh", json={"refresh_token": 42})
    assert resp.status_code == 400


def test_huge_body_and_wrong_media_type(client: FlaskClient) -> None:
    huge = b'{"email": "' + b"a" * 100_000 + b'"}'
    resp = client.post("/v1/auth/signup", data=huge, content_type=JSON)
    assert resp.status_code == 413 and error(resp) == "payload_too_large"

    # No Content-Length (a chunked upload): the limit still holds while reading.
    resp = client.post(
        "/v1/auth/signup",
        input_stream=io.BytesIO(huge),
        content_type=JSON,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert resp.request.content_length is None
    assert resp.status_code == 413
    resp = client.post("/v1/auth/signup", data="email=a&password=b", content_type="text/plain")
    assert resp.status_code == 415 and error(resp) == "unsupported_media_type"


# -------------------------------------------------------------------------------- foundation


def test_unexpected_errors_are_500_without_a_trace(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        resp = client.get("/v1/probe/boom", headers={"X-Request-Id": "req-123"})
    assert resp.status_code == 500 and error(resp) == "internal"
    assert "req-123" in resp.get_json()["error"]["message"]
    assert b"hunter2" not in resp.data and b"Traceback" not in resp.data
    failure = next(r for r in caplog.records if r.name == "api" and r.exc_info)
    assert getattr(failure, "request_id", None) == "req-123"
    access = next(r for r in caplog.records if r.name == "api.access")
    assert access.levelno == logging.ERROR


def test_request_ids_and_access_log(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="api.access"):
        resp = client.get("/v1/auth/me", headers={"X-Request-Id": "abc-1"})
        assert resp.headers["X-Request-Id"] == "abc-1"
        generated = client.get("/v1/auth/me", headers={"X-Request-Id": "bad id <script>"})
    assert generated.headers["X-Request-Id"] != "bad id <script>"
    assert len(generated.headers["X-Request-Id"]) == 32
    record = next(r for r in caplog.records if getattr(r, "request_id", None) == "abc-1")
    http = record.__dict__["httpRequest"]
    assert http["requestMethod"] == "GET" and http["status"] == 401
    assert http["requestUrl"] == "/v1/auth/me" and http["latency"].endswith("s")
    assert record.__dict__["function"] == "auth"

    token = session(client)["access_token"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="api.access"):
        user_id = me(client, token).get_json()["user_id"]
    assert any(getattr(r, "user_id", None) == user_id for r in caplog.records)
    assert all(token not in r.getMessage() for r in caplog.records)


def test_cors(client: FlaskClient) -> None:
    preflight = client.options(
        "/v1/api-keys",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert "X-API-Signature" in preflight.headers["Access-Control-Allow-Headers"]
    resp = client.get("/v1/auth/me", headers={"Origin": "https://app.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in resp.headers.get_all("Vary")

    other = client.options(
        "/v1/api-keys",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    resp = client.get("/v1/auth/me", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_routing_errors(client: FlaskClient) -> None:
    for path in ("/v1/nothing", "/nothing", "/v1/api-keysx", "/v1/auth/nope", "/v1/auth"):
        resp = client.get(path)
        assert resp.status_code == 404 and error(resp) == "not_found", path
        assert resp.headers["X-Request-Id"]
    resp = client.put("/v1/auth/signup", json={})
    assert resp.status_code == 405 and error(resp) == "method_not_allowed"
    assert resp.headers["Allow"] == "POST, OPTIONS"
    resp = client.delete("/v1/api-keys")
    assert resp.status_code == 405


def test_missing_configuration_is_500_not_a_crash(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTH_KEYS_JSON")
    reset_instance()
    resp = signup(client, "a@example.com")
    assert resp.status_code == 500 and error(resp) == "internal"
    assert b"AUTH_KEYS" not in resp.data


def test_over_real_http(configure: Configure) -> None:
    """The gateway behind a real HTTP server: what curl and the SDKs see."""
    app = create_app((*ROUTES, ("/v1/probe", probe)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.socket.getsockname()[1]

    def call(
        method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], Any]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, path, body=body, headers={"Content-Type": JSON, **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, dict(resp.headers), orjson.loads(data) if data else None

    try:
        credentials = orjson.dumps({"email": "net@example.com", "password": PASSWORD})
        assert call("POST", "/v1/auth/signup", credentials)[0] == 201
        status, headers, tokens = call("POST", "/v1/auth/login", credentials)
        assert status == 200 and headers["X-Request-Id"]
        auth = bearer(tokens["access_token"])
        status, _, key = call("POST", "/v1/api-keys", b'{"label":"n","scopes":["trade"]}', auth)
        assert status == 201
        body = b'{"note": "over the wire"}'
        status, _, answer = call(
            "POST", "/v1/probe/trade", body, signed(key, "POST", "/v1/probe/trade", body=body)
        )
        assert status == 200 and answer["note"] == "over the wire"
        status, _, answer = call("POST", "/v1/auth/signup", b"x" * 200_000)
        assert status == 413 and answer["error"]["code"] == "payload_too_large"
    finally:
        server.shutdown()
        thread.join()


def test_header_names_in_any_case_over_real_http(configure: Configure) -> None:
    """HTTP/2 proxies send header names in lower case: every header the API reads (the
    bearer token, the API-key trio, the request id, CORS's Origin) is found in any case."""
    app = create_app((*ROUTES, ("/v1/probe", probe)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.socket.getsockname()[1]

    def call(method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest(method, path)
        for name, value in [("content-type", JSON), ("content-length", str(len(body))),
                            *headers]:  # fmt: skip
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, resp.headers, orjson.loads(data) if data else None

    try:
        credentials = orjson.dumps({"email": "case@example.com", "password": PASSWORD})
        assert call("POST", "/v1/auth/signup", [], credentials)[0] == 201
        status, _, tokens = call("POST", "/v1/auth/login", [], credentials)
        assert status == 200
        token = tokens["access_token"]
        for name in ("authorization", "AUTHORIZATION"):
            status, _, who = call("GET", "/v1/auth/me", [(name, f"bearer {token}")])
            assert status == 200 and who["via"] == "jwt", name
        auth = [("authorization", f"Bearer {token}")]
        status, _, key = call("POST", "/v1/api-keys", auth, b'{"label":"n","scopes":["read"]}')
        assert status == 201, key
        lower = [(n.lower(), v) for n, v in signed(key, "GET", "/v1/auth/me").items()]
        status, _, who = call("GET", "/v1/auth/me", lower)
        assert status == 200 and who["via"] == "api_key"
        status, headers, _ = call(
            "GET", "/v1/auth/me", [("x-request-id", "case-1"), ("origin", "https://app.example")]
        )
        assert status == 401 and headers["X-Request-Id"] == "case-1"
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    finally:
        server.shutdown()
        thread.join()
