"""The auth function: accounts, sessions and API keys.

Its routes, with their parameters, bodies and answers, are declared below with ``api.route``;
the OpenAPI document made from them (``GET /v1/openapi.json``, functions/docs/openapi.json) is
where to read them.

Firestore:

- ``users/{user_id}``: email, password_hash (argon2id), role (``user`` / ``admin``), created_at,
  the sessions' state (``session_epoch``, ``ended_sessions``: ``api.sessions``) and the second
  factor (``totp``: ``api.second_factor``; login, reauth and withdraw-scope API keys ask for
  its code when it is on);
- ``emails/{normalised email}``: user_id. Created in the same transaction as the user, so an
  address is taken once (409 for the second signup);
- ``refresh_families/{family_id}``: one login session: user_id, revoked, the user's session
  epoch at login (a later epoch refuses its refresh tokens) and auth_time (when the password
  was last given in it: at login, at reauth);
- ``refresh_tokens/{sha256(token)}``: user_id, family_id, status (``active`` / ``rotated``),
  expires_at. A refresh spends the token and issues the next one of the family in one
  transaction; presenting a spent token again means it leaked, so the family is revoked and
  every token of it (the thief's and the user's, access tokens included) stops working;
- ``api_keys/{key_id}``: see ``api.auth`` (no secret stored).

Access tokens carry their session (``sid``), the user's session epoch (``epoch``) and
``auth_time``; each request checks the session is still on (``api.sessions``): a logout ends
its session's access tokens at once, a password change or a role change all of the user's.
Sensitive actions need a recent ``auth_time`` (``api.auth.require_fresh``); ``reauth``
renews it with the password.

Signup is limited per client IP and per email address (``AUTH_RATE_*``): 429 with
``Retry-After``. Password tries (login, reauth, password change) are limited by their failures
only, per (email, client address) and per client address (``AUTH_FAILURES_*``,
``api.throttle``): nobody can lock an owner out by failing at their address, and a client
that keeps failing gets 429.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from datetime import timedelta
from functools import cache
from typing import Annotated, Any, ClassVar, Final, Literal

import flask
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from google.api_core import exceptions as gexc
from google.cloud import firestore

from api import second_factor, sessions
from api.auth import (
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
    require_fresh,
    require_session,
    secret_fingerprint,
)
from api.http import (
    Api,
    ApiError,
    ApiRequest,
    Body,
    bad_request,
    conflict,
    forbidden,
    json_response,
    no_content,
    not_found,
    unauthorized,
)
from api.openapi import ok, path_param
from api.sessions import session_revoked
from api.throttle import PasswordTry, account_key, limit_subject
from shared import logs
from shared.times import iso, utc_now

logs.setup()

USERS: Final = "users"
EMAILS: Final = "emails"
FAMILIES: Final = sessions.FAMILIES
REFRESH_TOKENS: Final = sessions.REFRESH_TOKENS
REFRESH_COOKIE: Final = "refresh_token"
REFRESH_COOKIE_PATH: Final = "/v1/auth"
"""The browser page's refresh token (docs/web.md): sent only to the auth routes."""
MAX_API_KEYS: Final = 20
MAX_PASSWORD: Final = 256
SENSITIVE_SCOPES: Final = frozenset({"trade", "withdraw"})
"""API keys with these need a fresh proof to be made (api.auth.require_fresh)."""

# Lowercase after normalising; no "/" so the address is a valid Firestore document id.
_EMAIL_RE: Final = re.compile(
    r"[a-z0-9.!#$%&'*+=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"
)

api = Api("auth")
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory parameters


class Credentials(Body):
    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [{"email": "alice@example.com", "password": "correct horse battery"}]
    }

    email: Annotated[str, msgspec.Meta(max_length=254, extra_json_schema={"format": "email"})]
    password: Annotated[str, msgspec.Meta(max_length=MAX_PASSWORD)]


class Login(Credentials):
    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [
            {"email": "alice@example.com", "password": "correct horse battery"},
            {"email": "alice@example.com", "password": "correct horse battery",
             "totp_code": "123456"},
        ]
    }  # fmt: skip

    totp_code: second_factor.TotpCode = None
    refresh_cookie: Annotated[
        bool,
        msgspec.Meta(
            description=(
                "true: the refresh token comes as an HttpOnly SameSite=Strict cookie (path "
                "/v1/auth), not in the body, for a browser page (docs/web.md)"
            )
        ),
    ] = False


class TotpProof(Body):
    schema_extra: ClassVar[dict[str, Any]] = {"examples": [{"totp_code": "123456"}]}

    totp_code: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=32,
            description="the 6-digit code of the authenticator app (or a recovery code)",
        ),
    ]  # fmt: skip


class RefreshRequest(Body):
    refresh_token: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=200,
                description="absent or null: the refresh_token cookie login set (refresh_cookie)",
            ),
        ]
        | None
    ) = None


class Reauth(Body):
    schema_extra: ClassVar[dict[str, Any]] = {"examples": [{"password": "correct horse battery"}]}

    password: Annotated[str, msgspec.Meta(max_length=MAX_PASSWORD)]
    totp_code: second_factor.TotpCode = None


class PasswordChange(Body):
    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [{"password": "correct horse battery", "new_password": "a new long phrase"}]
    }

    password: Annotated[
        str, msgspec.Meta(max_length=MAX_PASSWORD, description="the current password: the proof")
    ]
    new_password: Annotated[str, msgspec.Meta(max_length=MAX_PASSWORD)]


class NewApiKey(Body):
    schema_extra: ClassVar[dict[str, Any]] = {
        "examples": [{"label": "my bot", "scopes": ["read", "trade"]}]
    }

    label: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=3)]
    totp_code: second_factor.TotpCode = None


def auth(request: flask.Request) -> flask.Response:
    """The functions-framework entry point."""
    return api(request)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


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
    try counted by ``api.throttle`` (429 when this client has failed too often)."""
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
    ctx: AuthContext,
    writer: Any,
    user_id: str,
    role: Role,
    session: dict[str, Any],
) -> dict[str, Any]:
    """A new access token of the session (its family document's ``family_id``, ``epoch``,
    ``auth_time``), and a new refresh token of it written with ``writer`` (a transaction or
    batch)."""
    refresh_token = "rt_" + secrets.token_urlsafe(32)
    now = utc_now()
    writer.create(
        ctx.firestore.collection(REFRESH_TOKENS).document(_hash_token(refresh_token)),
        {
            "user_id": user_id,
            "family_id": session["family_id"],
            "status": "active",
            "created_at": now,
            "expires_at": now + timedelta(seconds=ctx.config.refresh_ttl_s),
        },
    )
    access = issue_access_token(
        ctx.secrets, ctx.config, user_id, role, session_id=session["family_id"],
        epoch=session["epoch"], auth_time=session.get("auth_time"),
    )  # fmt: skip
    return {
        "access_token": access,
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": ctx.config.access_ttl_s,
    }


def _new_session(
    ctx: AuthContext, user_id: str, user: dict[str, Any], epoch: int | None = None
) -> dict[str, Any]:
    """A new login session (a refresh family) of ``user``, proved with the password now: its
    first token pair."""
    db = ctx.firestore
    session = {
        "family_id": uuid.uuid4().hex,
        "user_id": user_id,
        "revoked": False,
        "created_at": utc_now(),
        "epoch": ctx.sessions.epoch(user) if epoch is None else epoch,
        "auth_time": int(time.time()),
    }
    batch = db.batch()
    batch.create(db.collection(FAMILIES).document(session["family_id"]), session)
    pair = _token_pair(ctx, batch, user_id, _role_of(user), session)
    batch.commit()
    return pair


def _role_of(user: dict[str, Any]) -> Role:
    return "admin" if user.get("role") == "admin" else "user"


# --------------------------------------------------------------------------------------------
# accounts and sessions
# --------------------------------------------------------------------------------------------


@api.route(
    "POST",
    "/v1/auth/signup",
    summary="Create an account",
    operation_id="signup",
    tag="auth",
    auth="none",
    body=Credentials,
    responses={201: ok("Created", "SignedUp")},
    errors=(409, 429),
)
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
    now = utc_now()
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


@api.route(
    "POST",
    "/v1/auth/login",
    summary="Log in: an access token and a refresh token",
    operation_id="login",
    tag="auth",
    auth="none",
    body=Login,
    responses={200: ok("Tokens", "TokenPair")},
    errors=(401, 403, 429),
    description=(
        "Wrong passwords are limited per (email, client address) and per client address "
        "(AUTH_FAILURES_*): a client that keeps failing gets 429 with Retry-After; a client that "
        "has not been failing is never refused. The access token carries sid (its session), epoch"
        " and auth_time (now). With two-factor on, a right password without totp_code answers "
        "401 totp_required: send the same request again with totp_code (the authenticator "
        "app's code, or a recovery code); a wrong or already used code answers 401 "
        "invalid_totp_code (counted as a password failure). An account an admin disabled: 403 "
        "account_disabled."
    ),
)
def login(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    body = req.json(Login)
    email = _normalise_email(body.email)
    # Only failures count, per (email, client) and per client (api.throttle): nobody can
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
    if user.get("disabled"):  # by an admin (functions/admin): no new session
        raise forbidden("this account is disabled", "account_disabled")
    second_factor.require_code(ctx, req, user_id, body.totp_code)
    if _hasher.check_needs_rehash(user["password_hash"]):
        db.collection(USERS).document(user_id).update(
            {"password_hash": _hasher.hash(body.password)}
        )
    # The second factor (TOTP) goes here: with one set up, answer a challenge, not tokens.
    return _tokens_response(req, _new_session(ctx, user_id, user), body.refresh_cookie)


def _secure_request(req: ApiRequest) -> bool:
    """Whether the browser reached us over HTTPS (the load balancer says so in
    X-Forwarded-Proto); plain HTTP is only the local gateway, where a Secure cookie would
    not come back."""
    proto = req.header("X-Forwarded-Proto") or req.raw.scheme
    return proto.split(",")[0].strip().lower() != "http"


def _tokens_response(req: ApiRequest, pair: dict[str, Any], cookie: bool) -> flask.Response:
    """The token pair; with ``cookie`` its refresh token goes in an HttpOnly cookie instead of
    the body, where no script of the page can read it (docs/web.md)."""
    if not cookie:
        return json_response(pair)
    body = {k: v for k, v in pair.items() if k != "refresh_token"}
    response = json_response(body)
    response.set_cookie(
        REFRESH_COOKIE, pair["refresh_token"], max_age=default_context().config.refresh_ttl_s,
        path=REFRESH_COOKIE_PATH, secure=_secure_request(req), httponly=True, samesite="Strict",
    )  # fmt: skip
    return response


def _clear_cookie(req: ApiRequest, response: flask.Response) -> flask.Response:
    response.delete_cookie(
        REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, secure=_secure_request(req), httponly=True,
        samesite="Strict",
    )  # fmt: skip
    return response


def _refresh_token_of(req: ApiRequest, body: RefreshRequest) -> tuple[str, bool]:
    """(the refresh token, whether it came in the cookie): the body's, else the cookie's."""
    if body.refresh_token is not None:
        return body.refresh_token, False
    token = req.raw.cookies.get(REFRESH_COOKIE)
    if not token or len(token) > 200:
        raise unauthorized("no refresh token: log in again", "invalid_refresh_token")
    return token, True


RefreshOutcome = Literal["ok", "invalid", "reused", "expired"]


@api.route(
    "POST",
    "/v1/auth/refresh",
    summary="Trade a refresh token for a new pair (it is spent)",
    operation_id="refresh",
    tag="auth",
    auth="none",
    body=RefreshRequest,
    responses={200: ok("Tokens", "TokenPair")},
    errors=(401,),
    description=(
        "The refresh token in the body, or, for a browser page, none there and the HttpOnly "
        "cookie login set (refresh_cookie): the new one then comes as that cookie again. The body"
        " is JSON either way, so another site cannot send it without CORS' leave; the cookie is "
        "SameSite=Strict besides."
    ),
)
def refresh(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    body = req.json(RefreshRequest)
    presented, from_cookie = _refresh_token_of(req, body)
    db = ctx.firestore
    token_ref = db.collection(REFRESH_TOKENS).document(_hash_token(presented))

    @firestore.transactional
    def rotate(tx: Any) -> tuple[RefreshOutcome, dict[str, Any] | None]:
        snap = token_ref.get(transaction=tx)
        if not snap.exists:
            return "invalid", None
        token = snap.to_dict()
        family_ref = db.collection(FAMILIES).document(token["family_id"])
        family = family_ref.get(transaction=tx)
        user_snap = db.collection(USERS).document(token["user_id"]).get(transaction=tx)
        if not family.exists or family.get("revoked") or not user_snap.exists:
            return "invalid", None
        user = user_snap.to_dict() or {}
        epoch = ctx.sessions.epoch(user)
        if (family.to_dict() or {}).get("epoch", 0) < epoch:  # every session ended since
            return "invalid", None
        if token["status"] != "active":  # spent before: it leaked; end the whole session
            tx.update(
                family_ref, {"revoked": True, "revoked_reason": "reuse", "revoked_at": utc_now()}
            )
            return "reused", token
        if token["expires_at"] <= utc_now():
            return "expired", None
        tx.update(token_ref, {"status": "rotated", "rotated_at": utc_now()})
        # The session's proof of who the person is stays as old as it was: a refresh is none.
        session = {
            "family_id": token["family_id"],
            "epoch": epoch,
            "auth_time": (family.to_dict() or {}).get("auth_time"),
        }
        return "ok", _token_pair(ctx, tx, token["user_id"], _role_of(user), session)

    outcome, pair = rotate(db.transaction())
    if outcome == "reused":
        assert pair is not None  # the spent token's record
        # Its access tokens end too: the thief's as well as the owner's.
        ctx.sessions.end_session(pair["user_id"], pair["family_id"])
        raise unauthorized(
            "refresh token already used; the session is revoked", "refresh_token_reused"
        )
    if outcome == "expired":
        raise unauthorized("refresh token expired", "refresh_token_expired")
    if pair is None:
        raise unauthorized("invalid or revoked refresh token", "invalid_refresh_token")
    return _tokens_response(req, pair, from_cookie)


@api.route(
    "POST",
    "/v1/auth/logout",
    summary="End the session of a refresh token",
    operation_id="logout",
    tag="auth",
    auth="none",
    body=RefreshRequest,
    responses={204: ok("Logged out")},
    errors=(401,),
    description=(
        "Its refresh tokens and its access tokens stop working at once (401 session_revoked), on "
        "the HTTP API and the live feed. The refresh token in the body, or none there and the "
        "cookie login set (refresh_cookie), which the answer then clears."
    ),
)
def logout(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    body = req.json(RefreshRequest)
    presented, from_cookie = _refresh_token_of(req, body)
    db = ctx.firestore
    snap = db.collection(REFRESH_TOKENS).document(_hash_token(presented)).get()
    if not snap.exists:
        if from_cookie:  # a stale cookie: forget it all the same
            return _clear_cookie(req, no_content())
        raise unauthorized("invalid refresh token", "invalid_refresh_token")
    family_id, user_id = snap.get("family_id"), snap.get("user_id")
    db.collection(FAMILIES).document(family_id).update(
        {"revoked": True, "revoked_reason": "logout", "revoked_at": utc_now()}
    )
    # The session's access tokens stop now, not when they expire (api.sessions).
    ctx.sessions.end_session(user_id, family_id)
    return _clear_cookie(req, no_content()) if from_cookie else no_content()


@api.route(
    "GET",
    "/v1/auth/me",
    summary="Who is calling",
    operation_id="me",
    tag="auth",
    responses={200: ok("The caller", "Me")},
)
def me(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = authenticate(req, ctx)
    email = None
    two_factor = False
    if principal.via != "oidc":
        snap = ctx.firestore.collection(USERS).document(principal.user_id).get()
        if not snap.exists:
            raise unauthorized("this user no longer exists", "invalid_token")
        email = snap.get("email")
        two_factor = second_factor.is_enabled(snap.to_dict())
    return json_response(
        {
            "user_id": principal.user_id,
            "email": email,
            "role": principal.role,
            "via": principal.via,
            "scopes": sorted(principal.scopes),
            "api_key_id": principal.key_id,
            "auth_time": principal.auth_time,
            "two_factor": two_factor,
        }
    )


def _password_user(ctx: AuthContext, principal: Principal) -> dict[str, Any]:
    """The signed-in caller's user document, for a password check (403 for an API key or an
    external identity, which have no password here)."""
    require_session(principal)
    if principal.via != "jwt":
        raise ApiError(403, "external_identity", "this account signs in at its identity provider")
    snap = ctx.firestore.collection(USERS).document(principal.user_id).get()
    if not snap.exists:
        raise unauthorized("this user no longer exists", "invalid_token")
    return snap.to_dict() or {}


@api.route(
    "POST",
    "/v1/auth/reauth",
    summary="Prove who you are again: a fresh access token",
    operation_id="reauth",
    tag="auth",
    auth="session",
    body=Reauth,
    responses={200: ok("A fresh token", "FreshToken")},
    errors=(429,),
    description=(
        "The password again, for the actions that need a proof from the last few minutes "
        "(FRESH_AUTH_MAX_AGE_S, 5 by default): creating an API key with trade or withdraw, a "
        "withdrawal with a token, a role change. With two-factor on it needs totp_code too "
        "(401 totp_required / invalid_totp_code), so the fresh proof is two-factor. Answers an "
        "access token of the same session whose auth_time is now; later refreshes of the "
        "session keep that auth_time. Wrong "
        "passwords count as login failures do (429). 403 for an API key, or for an external "
        "identity (external_identity: prove it at the identity provider)."
    ),
)
def reauth(req: ApiRequest) -> flask.Response:
    """The password again: a new access token of the same session, fresh (``auth_time`` now),
    for the actions that need a recent proof (``api.auth.require_fresh``)."""
    ctx = default_context()
    principal = authenticate(req, ctx)
    user = _password_user(ctx, principal)
    body = req.json(Reauth)
    attempt = _password_try(ctx, req, str(user.get("email")))
    if not _verify_password(ctx, attempt, user.get("password_hash"), body.password):
        raise unauthorized("wrong password", "invalid_credentials")
    second_factor.require_code(ctx, req, principal.user_id, body.totp_code)
    assert principal.session_id is not None  # our token: it has one
    auth_time = int(time.time())
    # Later refreshes of the session carry this proof (until it is too old to count).
    try:
        ctx.firestore.collection(FAMILIES).document(principal.session_id).update(
            {"auth_time": auth_time}
        )
    except gexc.NotFound:  # no such session (any more)
        raise session_revoked() from None
    # The session's own epoch, not the user's latest: a session ended meanwhile stays ended.
    access = issue_access_token(
        ctx.secrets, ctx.config, principal.user_id, _role_of(user),
        session_id=principal.session_id, epoch=principal.epoch, auth_time=auth_time,
    )  # fmt: skip
    return json_response(
        {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ctx.config.access_ttl_s,
            "auth_time": auth_time,
        }
    )


@api.route(
    "POST",
    "/v1/auth/password",
    summary="Change the password; every session ends",
    operation_id="changePassword",
    tag="auth",
    auth="session",
    body=PasswordChange,
    responses={200: ok("A new session", "TokenPair")},
    errors=(429,),
    description=(
        "The current password is the proof (wrong: 401 invalid_credentials, counted as login "
        "failures: 429). Every session of the user ends at once (this one too: its tokens answer "
        "401 session_revoked); the answer is a new session's pair. 400 weak_password for a short "
        "new one."
    ),
)
def change_password(req: ApiRequest) -> flask.Response:
    """A new password, proved with the current one: every session of the user ends (this
    one too) and the caller gets a new one."""
    ctx = default_context()
    principal = authenticate(req, ctx)
    user = _password_user(ctx, principal)
    body = req.json(PasswordChange)
    attempt = _password_try(ctx, req, str(user.get("email")))
    if not _verify_password(ctx, attempt, user.get("password_hash"), body.password):
        raise unauthorized("wrong password", "invalid_credentials")
    if len(body.new_password) < ctx.config.password_min_length:
        raise bad_request(
            f"password must have at least {ctx.config.password_min_length} characters",
            "weak_password",
        )
    ref = ctx.firestore.collection(USERS).document(principal.user_id)
    ref.update({"password_hash": _hasher.hash(body.new_password), "password_changed_at": utc_now()})
    epoch = ctx.sessions.end_all(principal.user_id)
    return json_response(_new_session(ctx, principal.user_id, user, epoch))


# --------------------------------------------------------------------------------------------
# two-factor authentication (api.second_factor)
# --------------------------------------------------------------------------------------------


def _totp_state(user: dict[str, Any]) -> dict[str, Any]:
    state = user.get(second_factor.FIELD) or {}
    return {
        "enabled": bool(state.get("secret")),
        "pending": bool(state.get("pending")) and not state.get("secret"),
        "recovery_codes_left": len(state.get("recovery", [])) if state.get("secret") else 0,
    }


@api.route(
    "GET",
    "/v1/auth/2fa",
    summary="Whether two-factor authentication is on",
    operation_id="getTwoFactor",
    tag="auth",
    auth="session",
    responses={200: ok("The state", "TwoFactorState")},
)
def get_two_factor(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = authenticate(req, ctx)
    return json_response(_totp_state(_password_user(ctx, principal)))


@api.route(
    "POST",
    "/v1/auth/2fa/enrol",
    summary="Start turning two-factor on: a new TOTP secret",
    operation_id="enrolTwoFactor",
    tag="auth",
    auth="session",
    responses={200: ok("The secret to put in an authenticator app", "TwoFactorEnrolment")},
    errors=(409,),
    description=(
        "Needs a recent proof (401 fresh_auth_required: POST /v1/auth/reauth). Answers the "
        "secret and its otpauth:// URI (show it as a QR code); nothing changes until POST "
        "/v1/auth/2fa/confirm with a code of it. Enrolling again before confirming replaces the "
        "secret. 409 two_factor_enabled when it is already on (turn it off first)."
    ),
)
def enrol_two_factor(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = authenticate(req, ctx)
    user = _password_user(ctx, principal)
    require_fresh(principal, ctx.config)
    if second_factor.is_enabled(user):
        raise conflict("two-factor authentication is already on", "two_factor_enabled")
    secret = second_factor.new_secret()
    ref = ctx.firestore.collection(USERS).document(principal.user_id)
    ref.update({second_factor.FIELD: {"pending": secret}})
    uri = second_factor.provisioning_uri(secret, str(user.get("email")), ctx.config.totp_issuer)
    return json_response(
        {"secret": secret, "otpauth_uri": uri}, headers={"Cache-Control": "no-store"}
    )


@api.route(
    "POST",
    "/v1/auth/2fa/confirm",
    summary="Turn two-factor on with a code of the new secret: the recovery codes",
    operation_id="confirmTwoFactor",
    tag="auth",
    auth="session",
    body=TotpProof,
    responses={200: ok("On; the recovery codes, shown once", "TwoFactorRecoveryCodes")},
    errors=(409,),
    description=(
        "A code of the secret from POST /v1/auth/2fa/enrol turns two-factor on (401 "
        "invalid_totp_code when it is wrong or nothing is pending). The answer holds ten "
        "recovery codes, shown this once and stored hashed: each stands for one code of the "
        "app, once. From now on login, reauth, withdrawals with a token, withdraw-scope API "
        "keys and new withdrawal addresses need totp_code."
    ),
)
def confirm_two_factor(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = authenticate(req, ctx)
    user = _password_user(ctx, principal)
    body = req.json(TotpProof)
    if second_factor.is_enabled(user):
        raise conflict("two-factor authentication is already on", "two_factor_enabled")
    attempt = second_factor.code_try(principal.user_id, req.client_ip, ctx.config)
    ctx.failures.reserve(attempt)
    codes = second_factor.confirm(ctx.firestore, principal.user_id, body.totp_code)
    if codes is None:
        raise unauthorized(
            "the code does not match the secret being enrolled (or none is)",
            second_factor.INVALID_TOTP,
        )
    ctx.failures.succeeded(attempt)
    return json_response({"recovery_codes": codes}, headers={"Cache-Control": "no-store"})


@api.route(
    "POST",
    "/v1/auth/2fa/disable",
    summary="Turn two-factor off (needs a code)",
    operation_id="disableTwoFactor",
    tag="auth",
    auth="session",
    body=TotpProof,
    responses={204: ok("Off")},
    errors=(409, 429),
    description=(
        "Needs a recent proof (401 fresh_auth_required) and a code of the app or a recovery "
        "code (401 invalid_totp_code; wrong codes count as password failures: 429). 409 "
        "two_factor_disabled when it is not on."
    ),
)
def disable_two_factor(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = authenticate(req, ctx)
    user = _password_user(ctx, principal)
    body = req.json(TotpProof)
    # Off, the second factor asks for nothing: the fresh proof still comes before the 409.
    second_factor.require_second_factor(ctx, req, principal, body.totp_code)
    if not second_factor.is_enabled(user):
        raise conflict("two-factor authentication is not on", "two_factor_disabled")
    ref = ctx.firestore.collection(USERS).document(principal.user_id)
    ref.update({second_factor.FIELD: firestore.DELETE_FIELD})
    return no_content()


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
        "created_at": iso(record.get("created_at")),
    }


def _own_keys(ctx: AuthContext, user_id: str) -> list[Any]:
    query = ctx.firestore.collection(API_KEYS_COLLECTION).where(
        filter=firestore.FieldFilter("user_id", "==", user_id)
    )
    return list(query.stream())


@api.route(
    "POST",
    "/v1/api-keys",
    summary="Create an API key (its secret is shown once)",
    operation_id="createApiKey",
    tag="api-keys",
    auth="session",
    body=NewApiKey,
    responses={201: ok("Created", "ApiKeyCreated")},
    errors=(409,),
    description=(
        "A key with the trade or withdraw scope outlives any token: making one needs a recent "
        "proof (401 fresh_auth_required: POST /v1/auth/reauth). With two-factor on, a key with "
        "the withdraw scope also needs totp_code (401 totp_required / invalid_totp_code)."
    ),
)
def create_api_key(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = _session(req, ctx)
    body = req.json(NewApiKey)
    label = body.label.strip()
    if not label:
        raise bad_request("label must not be blank")
    # A key that trades or withdraws outlives any token: a stolen token must not make one;
    # one that can move funds out is made only with the second factor too, when it is on.
    if "withdraw" in body.scopes:
        second_factor.require_second_factor(ctx, req, principal, body.totp_code)
    elif SENSITIVE_SCOPES & set(body.scopes):
        require_fresh(principal, ctx.config)
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
        "created_at": utc_now(),
    }
    ctx.firestore.collection(API_KEYS_COLLECTION).document(key_id).create(record)
    return json_response({**_key_view(key_id, record), "secret": secret}, status=201)


@api.route(
    "GET",
    "/v1/api-keys",
    summary="The caller's API keys",
    operation_id="listApiKeys",
    tag="api-keys",
    auth="session",
    responses={200: ok("Keys", "ApiKeyList")},
)
def list_api_keys(req: ApiRequest) -> flask.Response:
    ctx = default_context()
    principal = _session(req, ctx)
    keys = [_key_view(snap.id, snap.to_dict()) for snap in _own_keys(ctx, principal.user_id)]
    keys.sort(key=lambda k: (k["created_at"] or "", k["id"]))
    return json_response({"api_keys": keys})


@api.route(
    "DELETE",
    "/v1/api-keys/{id}",
    summary="Revoke an API key",
    operation_id="deleteApiKey",
    tag="api-keys",
    auth="session",
    params=(path_param("id", example="ak_0123456789abcdef01234567"),),
    responses={204: ok("Revoked")},
    errors=(404,),
)
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
    ref.delete()  # HTTP requests read the key each time: refused from now on
    ctx.sessions.api_key_deleted(principal.user_id, key_id)  # and live sockets are told
    return no_content()
