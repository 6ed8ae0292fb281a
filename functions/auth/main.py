"""The auth function: accounts, sessions and API keys.

=======  ===========================  ==========================================================
method   path                         what
=======  ===========================  ==========================================================
POST     /v1/auth/signup              ``{email, password}`` -> 201 ``{user_id}``
POST     /v1/auth/login               ``{email, password}`` -> ``{access_token, refresh_token,
                                      token_type, expires_in}``
POST     /v1/auth/refresh             ``{refresh_token}`` -> a new pair; the old one is spent
POST     /v1/auth/logout              ``{refresh_token}`` -> 204; the whole session ends
GET      /v1/auth/me                  the caller (token or API key)
POST     /v1/api-keys                 ``{label, scopes}`` -> 201 with the secret, shown once
GET      /v1/api-keys                 the caller's keys (no secrets)
DELETE   /v1/api-keys/{id}            204; someone else's or an unknown id -> 404
=======  ===========================  ==========================================================

Firestore:

- ``users/{user_id}``: email, password_hash (argon2id), role (``user`` / ``admin``), created_at;
- ``emails/{normalised email}``: user_id. Created in the same transaction as the user, so an
  address is taken once (409 for the second signup);
- ``refresh_families/{family_id}``: one login session: user_id, revoked;
- ``refresh_tokens/{sha256(token)}``: user_id, family_id, status (``active`` / ``rotated``),
  expires_at. A refresh spends the token and issues the next one of the family in one
  transaction; presenting a spent token again means it leaked, so the family is revoked and
  every token of it (the thief's and the user's) stops working;
- ``api_keys/{key_id}``: see ``shared.auth`` (no secret stored).

Signup is limited per client IP and per email address (``AUTH_RATE_*``): 429 with
``Retry-After``. Password tries are limited by their failures only, per (email, client address)
and per client address (``AUTH_FAILURES_*``, ``shared.throttle``): nobody can lock an owner out
by failing at their address, and a client that keeps failing gets 429.

Access tokens outlive a logout or a role change by at most their lifetime
(``ACCESS_TOKEN_TTL_S``, 15 minutes by default); refresh picks up the current role.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any, Final, Literal

import flask
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared import logs
from shared.auth import (
    API_KEYS_COLLECTION,
    AuthContext,
    Principal,
    Role,
    Scope,
    api_key_secret,
    authenticate,
    default_context,
    is_api_key_id,
    issue_access_token,
    new_api_key_id,
    require_session,
    secret_fingerprint,
)
from shared.http import (
    Api,
    ApiRequest,
    Body,
    bad_request,
    conflict,
    json_response,
    no_content,
    not_found,
    unauthorized,
)
from shared.throttle import PasswordTry, account_key, limit_subject

logs.setup()

USERS: Final = "users"
EMAILS: Final = "emails"
FAMILIES: Final = "refresh_families"
REFRESH_TOKENS: Final = "refresh_tokens"
MAX_API_KEYS: Final = 20
MAX_PASSWORD: Final = 256

# Lowercase after normalising; no "/" so the address is a valid Firestore document id.
_EMAIL_RE: Final = re.compile(
    r"[a-z0-9.!#$%&'*+=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"
)

api = Api("auth")
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory parameters


class Credentials(Body):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=MAX_PASSWORD)]


class RefreshBody(Body):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class NewApiKey(Body):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=3)]


def auth(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return api(request)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: Any) -> str | None:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else None


def _normalise_email(raw: str) -> str | None:
    email = raw.strip().lower()
    return email if _EMAIL_RE.fullmatch(email) else None


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so both failures take as long."""
    return _hasher.hash(secrets.token_hex(16))


def _limit(ctx: AuthContext, req: ApiRequest, action: str, email: str | None) -> None:
    cfg = ctx.config
    if email is None:
        subject = limit_subject(req.client_ip)
        ctx.limiter.hit(action + ":ip", subject, cfg.rate_per_ip, cfg.rate_window_s)
    else:
        ctx.limiter.hit(
            action + ":email", account_key(email), cfg.rate_per_email, cfg.rate_window_s
        )


def _password_try(ctx: AuthContext, req: ApiRequest, email: str) -> PasswordTry:
    cfg = ctx.config
    return PasswordTry.of(email, req.client_ip, cfg.failures_per_email_ip, cfg.failures_per_ip)


def _verify_password(
    ctx: AuthContext, attempt: PasswordTry, stored_hash: str | None, password: str
) -> bool:
    """Whether ``password`` matches ``stored_hash`` (None: no such user, still as slow), as a
    try counted by ``shared.throttle`` (429 when this client has failed too often)."""
    ctx.failures.reserve(attempt)
    try:
        ok = _password_matches(stored_hash, password)
    except BaseException:
        ctx.failures.undecided(attempt)
        raise
    if ok:
        ctx.failures.succeeded(attempt)
    return ok


def _password_matches(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _token_pair(
    ctx: AuthContext, writer: Any, user_id: str, role: Role, family_id: str
) -> dict[str, Any]:
    """A new access token, and a new refresh token of ``family_id`` written with ``writer``
    (a transaction or batch)."""
    refresh_token = "rt_" + secrets.token_urlsafe(32)
    now = _now()
    writer.create(
        ctx.firestore.collection(REFRESH_TOKENS).document(_hash_token(refresh_token)),
        {
            "user_id": user_id,
            "family_id": family_id,
            "status": "active",
            "created_at": now,
            "expires_at": now + timedelta(seconds=ctx.config.refresh_ttl_s),
        },
    )
    return {
        "access_token": issue_access_token(ctx.secrets, ctx.config, user_id, role),
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": ctx.config.access_ttl_s,
    }


# --------------------------------------------------------------------------------------------
# accounts and sessions
# --------------------------------------------------------------------------------------------


@api.route("POST", "/v1/auth/signup")
def signup(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    _limit(ctx, req, "signup", None)
    body = req.json(Credentials)
    email = _normalise_email(body.email)
    if email is None:
        raise bad_request("email is not a valid address", "invalid_email")
    _limit(ctx, req, "signup", email)
    if len(body.password) < ctx.config.password_min_length:
        raise bad_request(
            f"password must have at least {ctx.config.password_min_length} characters",
            "weak_password",
        )
    user_id = uuid.uuid4().hex
    password_hash = _hasher.hash(body.password)
    db = ctx.firestore
    email_ref = db.collection(EMAILS).document(email)
    user_ref = db.collection(USERS).document(user_id)

    # One atomic batch of two creates: the email document's create fails if the email is
    # taken, and then nothing is written. No read, so no transaction lock for concurrent
    # signups to contend on.
    now = _now()
    batch = db.batch()
    batch.create(email_ref, {"user_id": user_id, "created_at": now})
    batch.create(
        user_ref,
        {"email": email, "password_hash": password_hash, "role": "user", "created_at": now},
    )
    try:
        batch.commit()
    except gexc.AlreadyExists:
        raise conflict("this email is already registered", "email_taken") from None
    return json_response({"user_id": user_id}, status=201)


@api.route("POST", "/v1/auth/login")
def login(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    body = req.json(Credentials)
    email = _normalise_email(body.email)
    # Only failures count, per (email, client) and per client (shared.throttle): nobody can
    # lock the owner out by failing at their address.
    attempt = _password_try(ctx, req, email or body.email.strip().lower())
    db = ctx.firestore
    user: dict[str, Any] | None = None
    user_id = ""
    if email is not None:
        link = db.collection(EMAILS).document(email).get()
        if link.exists:
            user_id = link.get("user_id")
            snap = db.collection(USERS).document(user_id).get()
            user = snap.to_dict() if snap.exists else None
    stored = user.get("password_hash") if user else None
    # Verified (and counted) even for an unknown email: both failures look and take alike.
    if not _verify_password(ctx, attempt, stored, body.password) or user is None:
        raise unauthorized("wrong email or password", "invalid_credentials")
    if _hasher.check_needs_rehash(user["password_hash"]):
        db.collection(USERS).document(user_id).update(
            {"password_hash": _hasher.hash(body.password)}
        )
    family_id = uuid.uuid4().hex
    batch = db.batch()
    batch.create(
        db.collection(FAMILIES).document(family_id),
        {"user_id": user_id, "revoked": False, "created_at": _now()},
    )
    role: Role = "admin" if user.get("role") == "admin" else "user"
    pair = _token_pair(ctx, batch, user_id, role, family_id)
    batch.commit()
    return json_response(pair)


RefreshOutcome = Literal["ok", "invalid", "reused", "expired"]


@api.route("POST", "/v1/auth/refresh")
def refresh(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    body = req.json(RefreshBody)
    db = ctx.firestore
    token_ref = db.collection(REFRESH_TOKENS).document(_hash_token(body.refresh_token))

    @firestore.transactional
    def rotate(tx: Any) -> tuple[RefreshOutcome, dict[str, Any] | None]:
        snap = token_ref.get(transaction=tx)
        if not snap.exists:
            return "invalid", None
        token = snap.to_dict()
        family_ref = db.collection(FAMILIES).document(token["family_id"])
        family = family_ref.get(transaction=tx)
        user = db.collection(USERS).document(token["user_id"]).get(transaction=tx)
        if not family.exists or family.get("revoked") or not user.exists:
            return "invalid", None
        if token["status"] != "active":  # spent before: it leaked; end the whole session
            tx.update(
                family_ref, {"revoked": True, "revoked_reason": "reuse", "revoked_at": _now()}
            )
            return "reused", None
        if token["expires_at"] <= _now():
            return "expired", None
        tx.update(token_ref, {"status": "rotated", "rotated_at": _now()})
        role: Role = "admin" if user.get("role") == "admin" else "user"
        return "ok", _token_pair(ctx, tx, token["user_id"], role, token["family_id"])

    outcome, pair = rotate(db.transaction())
    if outcome == "reused":
        raise unauthorized(
            "refresh token already used; the session is revoked", "refresh_token_reused"
        )
    if outcome == "expired":
        raise unauthorized("refresh token expired", "refresh_token_expired")
    if pair is None:
        raise unauthorized("invalid or revoked refresh token", "invalid_refresh_token")
    return json_response(pair)


@api.route("POST", "/v1/auth/logout")
def logout(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    body = req.json(RefreshBody)
    db = ctx.firestore
    snap = db.collection(REFRESH_TOKENS).document(_hash_token(body.refresh_token)).get()
    if not snap.exists:
        raise unauthorized("invalid refresh token", "invalid_refresh_token")
    db.collection(FAMILIES).document(snap.get("family_id")).update(
        {"revoked": True, "revoked_reason": "logout", "revoked_at": _now()}
    )
    return no_content()


@api.route("GET", "/v1/auth/me")
def me(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = authenticate(req, ctx)
    email = None
    if principal.via != "oidc":
        snap = ctx.firestore.collection(USERS).document(principal.user_id).get()
        if not snap.exists:
            raise unauthorized("this user no longer exists", "invalid_token")
        email = snap.get("email")
    return json_response(
        {
            "user_id": principal.user_id,
            "email": email,
            "role": principal.role,
            "via": principal.via,
            "scopes": sorted(principal.scopes),
            "api_key_id": principal.key_id,
        }
    )


# --------------------------------------------------------------------------------------------
# API keys
# --------------------------------------------------------------------------------------------


def _session(req: ApiRequest, ctx: AuthContext) -> Principal:
    principal = authenticate(req, ctx)
    require_session(principal)
    return principal


def _key_view(key_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": key_id,
        "label": record["label"],
        "scopes": record["scopes"],
        "created_at": _iso(record.get("created_at")),
    }


def _own_keys(ctx: AuthContext, user_id: str) -> list[Any]:
    query = ctx.firestore.collection(API_KEYS_COLLECTION).where(
        filter=firestore.FieldFilter("user_id", "==", user_id)
    )
    return list(query.stream())


@api.route("POST", "/v1/api-keys")
def create_api_key(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = _session(req, ctx)
    body = req.json(NewApiKey)
    label = body.label.strip()
    if not label:
        raise bad_request("label must not be blank")
    if len(_own_keys(ctx, principal.user_id)) >= MAX_API_KEYS:
        raise conflict(f"at most {MAX_API_KEYS} API keys per user", "too_many_api_keys")
    key_id = new_api_key_id()
    master_id = ctx.secrets.api_key_master_id
    secret = api_key_secret(ctx.secrets, master_id, key_id)
    record = {
        "user_id": principal.user_id,
        "label": label,
        "scopes": sorted(set(body.scopes)),
        "master_id": master_id,
        "secret_sha256": secret_fingerprint(secret),
        "created_at": _now(),
    }
    ctx.firestore.collection(API_KEYS_COLLECTION).document(key_id).create(record)
    return json_response({**_key_view(key_id, record), "secret": secret}, status=201)


@api.route("GET", "/v1/api-keys")
def list_api_keys(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = _session(req, ctx)
    keys = [_key_view(snap.id, snap.to_dict()) for snap in _own_keys(ctx, principal.user_id)]
    keys.sort(key=lambda k: (k["created_at"] or "", k["id"]))
    return json_response({"api_keys": keys})


@api.route("DELETE", "/v1/api-keys/{id}")
def delete_api_key(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = _session(req, ctx)
    key_id = req.params["id"]
    if not is_api_key_id(key_id):
        raise not_found("no such API key")
    ref = ctx.firestore.collection(API_KEYS_COLLECTION).document(key_id)
    snap = ref.get()
    if not snap.exists or snap.get("user_id") != principal.user_id:
        raise not_found("no such API key")
    ref.delete()
    return no_content()
