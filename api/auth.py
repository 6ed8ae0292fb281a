"""Who is calling: JWT access tokens, external OIDC tokens and signed API-key requests.

``verify_credentials(creds) -> Principal`` (``api.credentials``: method, path, query,
body, headers and client address of any transport; ``authenticate(req)`` for an HTTP request)
accepts one of

- ``Authorization: Bearer <jwt>``: our own access token (EdDSA/Ed25519, ``kid`` header, claims
  ``iss aud sub role iat exp sid epoch`` all required, ``auth_time`` when known), whose session
  has not ended (``api.sessions``: one Redis read), or, when ``OIDC_ISSUER`` is set and the
  token's ``iss`` names it, a token of that issuer checked against its JWKS (cached
  ``PyJWKClient``) with its own audience and pinned asymmetric algorithms;
- ``X-API-Key``, ``X-API-Timestamp`` (milliseconds since the epoch) and ``X-API-Signature``
  (lowercase hex HMAC-SHA256, keyed with the key's secret, of
  ``timestamp + METHOD + path + ("?" + query if there is one) + body``; e.g.
  ``1718000000000POST/v1/orders{"market":"ETH-USDT",...}``; the path without
  percent-encoding, the query and body bytes exactly as sent). The timestamp must be within
  ``API_KEY_WINDOW_MS`` of the server's clock, and a signature is accepted once (Redis
  ``SET NX`` for longer than the window), so a captured request cannot be replayed.

Then ``require_role(p, "admin")``, ``require_session(p)`` (JWT only, for managing
credentials) and ``require_fresh(p, cfg)`` guard a handler; a route declares the API-key
scope it needs (``api.route(..., scope="trade")``), which the ``Api`` wrapper checks
(``require_scope``, api.http) before the handler runs.

Fresh proof
-----------
Some actions need the person to have proved who they are within the last
``FRESH_AUTH_MAX_AGE_S`` (5 minutes), not merely to hold a token: creating an API key with the
``trade`` or ``withdraw`` scope, a withdrawal made with a token, a role change (and, when they
exist, turning a second factor off or adding a withdrawal address). The proof's time is the
token's ``auth_time`` claim: set at login with the password, renewed by ``POST
/v1/auth/reauth`` (the password again; a second factor is meant to renew it the same way), kept
as it was by a refresh. Older, or absent: 401 ``fresh_auth_required`` with ``WWW-Authenticate:
Bearer error="insufficient_user_authentication", max_age=...`` (RFC 9470). An external OIDC
token carries its issuer's ``auth_time`` (ask the issuer with ``max_age`` for a fresh one). An
API key needs no fresh proof: making one with ``trade`` or ``withdraw`` needed it, and its
secret signs each request; that is the standing proof a program holding it can give.

The secrets document
--------------------
One JSON document holds every secret the API needs, from Secret Manager in the cloud
(``AUTH_KEYS_SECRET=projects/P/secrets/S/versions/latest``) or ``AUTH_KEYS_FILE`` /
``AUTH_KEYS_JSON`` in development::

    {"jwt": {"current": "k2",
             "keys": {"k2": "-----BEGIN PRIVATE KEY-----...",    # signs new tokens
                      "k1": "-----BEGIN PUBLIC KEY-----..."}},   # still verifies old ones
     "api_keys": {"current": "m1", "masters": {"m1": "<base64url, 32+ bytes>"}}}

JWT keys are Ed25519 (PKCS#8 private or SubjectPublicKeyInfo public PEM). The ``current`` kid
signs; every listed key verifies, so a rotation is: add a new private key, make it current,
keep the old one (its public half is enough) for one access-token lifetime, then drop it.
Tokens of a dropped kid are refused. ``python -m api.auth new`` writes a fresh document,
``python -m api.auth rotate FILE`` rotates one, ``python -m api.auth public FILE`` writes the
verifiers' copy: the same with the JWT keys' public halves only. In the cloud only the auth
function reads the full document; every other deployable reads that copy, so none of them
can mint an access token (docs/decisions/0021).

API-key secrets are derived, not stored
---------------------------------------
To check an HMAC the server needs the key's secret. Instead of keeping it (even encrypted),
it is derived: ``secret = base64url(HMAC-SHA256(master[m], "exchange api key v1\\0" + key_id))``
with the master ``m`` current at creation, which the key's Firestore record names. Firestore
holds only the key id, owner, scopes, master id and a SHA-256 of the secret (a check that the
master behind ``m`` is still the one the key was made with), so a leak of the database gives
nothing to sign with, there is no ciphertext or encryption key to manage, and revoking is
deleting the record. The secret is shown once, at creation. The master lives with the JWT
keys in the secrets document; a new master serves new keys while old ones stay listed for the
keys made with them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets as pysecrets
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeGuard, cast

import jwt
import orjson
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.cloud import firestore

from api.credentials import ALL_SCOPES as ALL_SCOPES
from api.credentials import ROLES as ROLES
from api.credentials import Credentials
from api.credentials import Principal as Principal
from api.credentials import Role as Role
from api.credentials import Scope as Scope
from api.credentials import Via as Via
from api.http import (
    ApiError,
    ApiRequest,
    RateHit,
    RateLimiter,
    SessionDue,
    SessionEndedError,
    SessionNotCachedError,
    api_config,
    unauthorized,
    unavailable,
)
from api.http import require_scope as require_scope
from api.redis_client import connect
from api.sessions import SessionStore, session_revoked
from api.throttle import FailureLimiter
from shared.config import ApiConfig, ConfigError, OidcConfig, secret_manager_payload
from shared.instance import per_instance
from shared.redis_keys import api_signature_key

log = logging.getLogger("auth")

JWT_ALGORITHM: Final = "EdDSA"
_REQUIRED_CLAIMS: Final = ["exp", "iat", "iss", "aud", "sub"]

API_KEYS_COLLECTION: Final = "api_keys"
API_KEY_PREFIX: Final = "ak_"
_API_KEY_ID_RE: Final = re.compile(r"ak_[0-9a-f]{24}")
_API_KEY_INFO: Final = b"exchange api key v1\x00"
_SIGNATURE_RE: Final = re.compile(r"[0-9a-f]{64}")
_SESSION_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TIMESTAMP_RE: Final = re.compile(r"[0-9]{1,15}")


# --------------------------------------------------------------------------------------------
# The secrets document
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthSecrets:
    signing_kid: str
    signing_key: Ed25519PrivateKey | None = field(repr=False)
    """None in a verifier's document (public JWT keys only): it cannot issue tokens."""
    verify_keys: Mapping[str, Ed25519PublicKey] = field(repr=False)
    api_key_master_id: str
    api_key_masters: Mapping[str, bytes] = field(repr=False)


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _load_ed25519(kid: str, pem: str) -> tuple[Ed25519PrivateKey | None, Ed25519PublicKey]:
    data = pem.encode()
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            if not isinstance(private, Ed25519PrivateKey):
                raise ConfigError(f"JWT key {kid!r} is not an Ed25519 key")
            return private, private.public_key()
        public = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"JWT key {kid!r} is not a valid PEM key: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ConfigError(f"JWT key {kid!r} is not an Ed25519 key")
    return None, public


def parse_secrets(payload: bytes) -> AuthSecrets:
    """The secrets document (see the module) from its bytes, wherever they were read from;
    a malformed document raises ``ConfigError`` naming what is wrong (never a key)."""
    try:
        doc = orjson.loads(payload)
        jwt_doc, api_doc = doc["jwt"], doc["api_keys"]
        current, keys = jwt_doc["current"], jwt_doc["keys"]
        master_id, masters = api_doc["current"], api_doc["masters"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"the auth secrets document is malformed ({exc!r})") from None
    if not isinstance(keys, dict) or not keys or not isinstance(masters, dict) or not masters:
        raise ConfigError("the auth secrets document needs jwt.keys and api_keys.masters")
    private: dict[str, Ed25519PrivateKey] = {}
    public: dict[str, Ed25519PublicKey] = {}
    for kid, pem in keys.items():
        if not isinstance(pem, str):
            raise ConfigError(f"JWT key {kid!r} must be a PEM string")
        priv, pub = _load_ed25519(kid, pem)
        public[kid] = pub
        if priv is not None:
            private[kid] = priv
    if private and current not in private:
        raise ConfigError(f"jwt.current {current!r} must name a private key in jwt.keys")
    if current not in public:
        raise ConfigError(f"jwt.current {current!r} must name one of jwt.keys")
    decoded: dict[str, bytes] = {}
    for mid, text in masters.items():
        try:
            raw = _b64decode(text)
        except (ValueError, TypeError):
            raise ConfigError(f"API-key master {mid!r} is not base64url") from None
        if len(raw) < 32:
            raise ConfigError(f"API-key master {mid!r} must be at least 32 bytes")
        decoded[mid] = raw
    if master_id not in decoded:
        raise ConfigError(f"api_keys.current {master_id!r} must name one of api_keys.masters")
    return AuthSecrets(
        signing_kid=current,
        signing_key=private.get(current),
        verify_keys=public,
        api_key_master_id=master_id,
        api_key_masters=decoded,
    )


def read_secrets_payload(cfg: ApiConfig) -> bytes:
    if cfg.keys_secret is not None:
        return secret_manager_payload(cfg.keys_secret)
    if cfg.keys_file is not None:
        try:
            return Path(cfg.keys_file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"AUTH_KEYS_FILE {cfg.keys_file}: {exc.strerror}") from None
    assert cfg.keys_json is not None  # ApiConfig.load checked that one source is given
    return cfg.keys_json.encode()


def new_signing_key_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}{time.strftime('%Y%m%d', time.gmtime())}-{pysecrets.token_hex(3)}"


def new_secrets_document() -> dict[str, Any]:
    """A fresh secrets document: one signing key, one API-key master."""
    kid, mid = _new_id("k"), _new_id("m")
    return {
        "jwt": {"current": kid, "keys": {kid: new_signing_key_pem()}},
        "api_keys": {"current": mid, "masters": {mid: _b64encode(pysecrets.token_bytes(32))}},
    }


def verifier_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The document every verifier reads: the same with the JWT keys' public halves only, so
    that only the auth function can sign access tokens."""
    keys = {
        kid: public_pem(pem) if "PRIVATE KEY" in pem else pem
        for kid, pem in doc["jwt"]["keys"].items()
    }
    return {**doc, "jwt": {"current": doc["jwt"]["current"], "keys": keys}}


def rotate_signing_key(doc: dict[str, Any]) -> dict[str, Any]:
    """A new current signing key; the previous ones stay, reduced to their public halves.
    Drop them by hand after one access-token lifetime."""
    keys = {
        kid: public_pem(pem) if "PRIVATE KEY" in pem else pem
        for kid, pem in doc["jwt"]["keys"].items()
    }
    kid = _new_id("k")
    keys[kid] = new_signing_key_pem()
    return {**doc, "jwt": {"current": kid, "keys": keys}}


# --------------------------------------------------------------------------------------------
# Access tokens
# --------------------------------------------------------------------------------------------


def issue_access_token(
    secrets: AuthSecrets,
    cfg: ApiConfig,
    user_id: str,
    role: Role,
    *,
    session_id: str,
    epoch: int = 0,
    auth_time: int | None = None,
    now: float | None = None,
) -> str:
    """An access token of session ``session_id``, issued at the user's session ``epoch``;
    ``auth_time``: when the person last proved who they are (None: unknown, never fresh)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": cfg.jwt_issuer,
        "aud": cfg.jwt_audience,
        "sub": user_id,
        "role": role,
        "iat": issued,
        "exp": issued + cfg.access_ttl_s,
        "jti": uuid.uuid4().hex,
        "sid": session_id,
        "epoch": epoch,
    }
    if auth_time is not None:
        claims["auth_time"] = auth_time
    if secrets.signing_key is None:
        raise ConfigError("this deployable holds only the public JWT keys: it cannot sign tokens")
    return jwt.encode(
        claims, secrets.signing_key, algorithm=JWT_ALGORITHM, headers={"kid": secrets.signing_kid}
    )


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise unauthorized("malformed token", "invalid_token") from None


def _decode(
    token: str, key: Any, algorithms: list[str], audience: str, issuer: str, leeway: int
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("token expired", "token_expired") from None
    except jwt.InvalidTokenError as exc:
        raise unauthorized(f"invalid token: {exc}", "invalid_token") from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise unauthorized("invalid token: sub must be a non-empty string", "invalid_token")
    return claims


_VERIFIED_MAX: Final = 10_000
_verified: dict[tuple[str, str, str], tuple[str, Any, Principal]] = {}
"""Access tokens this instance has verified, by (token, audience, issuer): the kid, the key
that verified it, the caller. A trader sends the same token for many requests: its signature
and claims are checked once per instance, its expiry and key at every use (and the caller
checks its session every time)."""


def verify_access_token(token: str, secrets: AuthSecrets, cfg: ApiConfig) -> Principal:
    """One of our access tokens, or 401: algorithm pinned to EdDSA, a known kid, a valid
    signature, our issuer and audience, not expired, and every required claim present."""
    cache_key = (token, cfg.jwt_audience, cfg.jwt_issuer)
    known = _verified.get(cache_key)
    if known is not None:
        kid, key, principal = known
        # PyJWT's own test: expired once exp <= now - leeway.
        expires = principal.expires_at
        fresh = expires is not None and expires > time.time() - cfg.jwt_leeway_s
        if fresh and secrets.verify_keys.get(kid) is key:
            return principal
        _verified.pop(cache_key, None)
    principal = _verify_access_token(token, secrets, cfg)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    kid = str(_unverified_header(token)["kid"])
    _verified[cache_key] = (kid, secrets.verify_keys[kid], principal)
    return principal


def _verify_access_token(token: str, secrets: AuthSecrets, cfg: ApiConfig) -> Principal:
    header = _unverified_header(token)
    if header.get("alg") != JWT_ALGORITHM:
        raise unauthorized("invalid token: algorithm not allowed", "invalid_token")
    kid = header.get("kid")
    key = secrets.verify_keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise unauthorized("invalid token: unknown key id", "invalid_token")
    claims = _decode(
        token, key, [JWT_ALGORITHM], cfg.jwt_audience, cfg.jwt_issuer, cfg.jwt_leeway_s
    )
    role, sid, epoch = claims.get("role"), claims.get("sid"), claims.get("epoch")
    if not isinstance(role, str) or role not in ROLES:
        raise unauthorized("invalid token: role missing or unknown", "invalid_token")
    if not isinstance(sid, str) or not _SESSION_ID_RE.fullmatch(sid):
        raise unauthorized("invalid token: sid missing or malformed", "invalid_token")
    if not _is_count(epoch):
        raise unauthorized("invalid token: epoch missing or malformed", "invalid_token")
    auth_time = claims.get("auth_time")
    return Principal(
        user_id=claims["sub"],
        role=cast(Role, role),
        scopes=ALL_SCOPES,
        via="jwt",
        expires_at=float(claims["exp"]),
        session_id=sid,
        epoch=epoch,
        auth_time=auth_time if _is_count(auth_time) else None,
    )


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


class OidcVerifier:
    """Access tokens of an external OpenID Connect issuer (e.g. Auth0), checked against its
    JWKS (fetched on first use, cached for ``jwks_cache_s``, refetched for a new kid)."""

    def __init__(self, cfg: OidcConfig, leeway_s: int) -> None:
        self.config = cfg
        self._leeway = leeway_s
        self._jwks = jwt.PyJWKClient(
            cfg.jwks_url, cache_keys=True, lifespan=cfg.jwks_cache_s, timeout=5
        )

    def verify(self, token: str) -> Principal:
        cfg = self.config
        header = _unverified_header(token)
        if header.get("alg") not in cfg.algorithms:
            raise unauthorized("invalid token: algorithm not allowed", "invalid_token")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise unauthorized("invalid token: no key id", "invalid_token")
        try:
            key = self._jwks.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            log.warning("could not fetch the JWKS of %s", cfg.issuer)
            raise unavailable("the identity provider's keys could not be fetched") from None
        except jwt.PyJWKClientError:
            raise unauthorized("invalid token: unknown key id", "invalid_token") from None
        claims = _decode(
            token, key.key, list(cfg.algorithms), cfg.audience, cfg.issuer, self._leeway
        )
        return Principal(
            user_id=oidc_user_id(cfg.issuer, claims["sub"]),
            role=self._role(claims),
            scopes=ALL_SCOPES,
            via="oidc",
            expires_at=float(claims["exp"]),
            auth_time=claims["auth_time"] if _is_count(claims.get("auth_time")) else None,
        )

    def _role(self, claims: Mapping[str, Any]) -> Role:
        if self.config.role_claim is None:
            return "user"
        value = claims.get(self.config.role_claim)
        admin = value == "admin" or (isinstance(value, list) and "admin" in value)
        return "admin" if admin else "user"


def oidc_user_id(issuer: str, subject: str) -> str:
    """Our user id for an external identity: stable, opaque, safe as a key anywhere."""
    return "oidc_" + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# API keys
# --------------------------------------------------------------------------------------------


def new_api_key_id() -> str:
    return API_KEY_PREFIX + pysecrets.token_hex(12)


def is_api_key_id(text: str) -> bool:
    return _API_KEY_ID_RE.fullmatch(text) is not None


def api_key_secret(secrets: AuthSecrets, master_id: str, key_id: str) -> str:
    """The secret of API key ``key_id`` made under master ``master_id`` (see the module)."""
    master = secrets.api_key_masters[master_id]
    return _b64encode(hmac.new(master, _API_KEY_INFO + key_id.encode(), hashlib.sha256).digest())


def secret_fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def signature_payload(
    timestamp_ms: int | str, method: str, path: str, query: bytes | str, body: bytes
) -> bytes:
    query_bytes = query.encode() if isinstance(query, str) else query
    return (
        f"{timestamp_ms}{method.upper()}{path}".encode()
        + (b"?" + query_bytes if query_bytes else b"")
        + body
    )


def sign_request(
    secret: str,
    timestamp_ms: int | str,
    method: str,
    path: str,
    query: bytes | str = b"",
    body: bytes = b"",
) -> str:
    """The ``X-API-Signature`` a client sends (also what the server expects)."""
    payload = signature_payload(timestamp_ms, method, path, query, body)
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def _authenticate_api_key(creds: Credentials, ctx: AuthContext) -> Principal:
    key_id = creds.header("X-API-Key") or ""
    timestamp = creds.header("X-API-Timestamp") or ""
    signature = (creds.header("X-API-Signature") or "").lower()
    if not (key_id and timestamp and signature):
        raise unauthorized(
            "X-API-Key, X-API-Timestamp and X-API-Signature are all required", "invalid_api_key"
        )
    if not is_api_key_id(key_id):
        raise unauthorized("unknown API key", "invalid_api_key")
    if not _SIGNATURE_RE.fullmatch(signature):
        raise unauthorized("X-API-Signature must be 64 hex digits", "invalid_signature")
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise unauthorized(
            "X-API-Timestamp must be milliseconds since the epoch", "invalid_timestamp"
        )
    window = ctx.config.api_key_window_ms
    if abs(time.time() * 1000 - int(timestamp)) > window:
        raise unauthorized(
            f"X-API-Timestamp is more than {window} ms from the server's time",
            "timestamp_out_of_window",
        )
    key = load_api_key(ctx, key_id)
    if key is None:
        raise unauthorized("unknown API key", "invalid_api_key")
    expected = sign_request(
        key.secret, timestamp, creds.method, creds.path, creds.query, creds.body
    )
    if not hmac.compare_digest(expected, signature):
        raise unauthorized("signature does not match the request", "invalid_signature")
    # Remembered for longer than a timestamp stays acceptable (2 windows plus slack).
    if not first_use(ctx, key_id, signature, 2 * window + 1000):
        raise unauthorized("this signed request was already used", "replayed_request")
    return key.principal()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A live API key: its owner, scopes and (derived) secret."""

    key_id: str
    user_id: str
    scopes: frozenset[str]
    secret: str = field(repr=False)

    def principal(self) -> Principal:
        return Principal(
            user_id=self.user_id, role="user", scopes=self.scopes, via="api_key",
            key_id=self.key_id,
        )  # fmt: skip


def load_api_key(ctx: AuthContext, key_id: str) -> ApiKey | None:
    """The key ``key_id`` (one Firestore read), or None when it is unknown, revoked or made
    with a master that is gone. Any dialect's signature check starts here (the Binance
    dialect signs differently, with the same secret)."""
    if not is_api_key_id(key_id):
        return None
    snap = ctx.firestore.collection(API_KEYS_COLLECTION).document(key_id).get()
    record = snap.to_dict() if snap.exists else None
    if record is None or record.get("master_id") not in ctx.secrets.api_key_masters:
        return None
    secret = api_key_secret(ctx.secrets, record["master_id"], key_id)
    if not hmac.compare_digest(secret_fingerprint(secret), str(record.get("secret_sha256"))):
        log.error("API key %s does not match its master %s", key_id, record["master_id"])
        return None
    scopes = frozenset(s for s in record.get("scopes", []) if s in ALL_SCOPES)
    return ApiKey(key_id, str(record["user_id"]), scopes, secret)


def first_use(ctx: AuthContext, key_id: str, signature: str, keep_ms: int) -> bool:
    """Whether this is the first request with ``signature`` (remembered ``keep_ms``), so a
    captured request cannot be replayed."""
    return bool(ctx.redis.set(api_signature_key(key_id, signature), b"1", nx=True, px=keep_ms))


# --------------------------------------------------------------------------------------------
# authenticate and its guards
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What authentication needs, built once per function instance."""

    config: ApiConfig
    secrets: AuthSecrets
    redis: redis.Redis
    firestore: Any  # google.cloud.firestore.Client (untyped)
    oidc: OidcVerifier | None
    limiter: RateLimiter
    failures: FailureLimiter
    sessions: SessionStore

    def close(self) -> None:
        """Release the Redis connections (``shared.instance.reset_instance``)."""
        self.redis.close()

    @staticmethod
    def from_config(cfg: ApiConfig) -> AuthContext:
        client = connect(cfg.redis_url)
        db = firestore.Client(project=cfg.project)
        return AuthContext(
            config=cfg,
            secrets=parse_secrets(read_secrets_payload(cfg)),
            redis=client,
            firestore=db,
            oidc=OidcVerifier(cfg.oidc, cfg.jwt_leeway_s) if cfg.oidc is not None else None,
            limiter=RateLimiter(client),
            failures=FailureLimiter(client, cfg.failure_window_s),
            # An ended session is refused as long as one of its tokens could be valid.
            sessions=SessionStore(client, db, cfg.access_ttl_s + cfg.jwt_leeway_s),
        )


@per_instance
def default_context() -> AuthContext:
    """The environment's context, built on first use and kept for the instance's life."""
    return AuthContext.from_config(api_config())


def _unverified_issuer(token: str) -> Any:
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.InvalidTokenError:
        return None


def verify_credentials(creds: Credentials, ctx: AuthContext | None = None) -> Principal:
    """The caller presenting ``creds`` (bearer JWT or signed API-key request), or 401. Any
    transport: HTTP through ``authenticate``, the ws service from its handshake."""
    principal, _ = _verify(creds, ctx if ctx is not None else default_context(), True)
    return principal


def _verify(
    creds: Credentials, ctx: AuthContext, check_session: bool
) -> tuple[Principal, SessionDue | None]:
    """``verify_credentials``; without ``check_session``, an access token's session is
    returned to be checked by the caller (``count_hits``) instead of checked here."""
    due: SessionDue | None = None
    authorization = creds.header("Authorization")
    has_key = creds.header("X-API-Key") is not None
    if authorization is not None and has_key:
        raise unauthorized("send either Authorization or X-API-Key, not both", "invalid_request")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("Authorization must be 'Bearer <token>'", "invalid_token")
        if ctx.oidc is not None and _unverified_issuer(token) == ctx.oidc.config.issuer:
            principal = ctx.oidc.verify(token)
        else:
            principal = verify_access_token(token, ctx.secrets, ctx.config)
            assert principal.session_id is not None  # verify_access_token requires it
            if check_session:
                ctx.sessions.check(principal.user_id, principal.session_id, principal.epoch)
            else:
                due = SessionDue(principal.user_id, principal.session_id, principal.epoch)
    elif has_key:
        principal = _authenticate_api_key(creds, ctx)
    else:
        raise unauthorized("authentication required")
    return principal, due


def authenticate(req: ApiRequest, ctx: AuthContext | None = None) -> Principal:
    """The caller of an HTTP request (``verify_credentials`` of its credentials), or 401;
    names the user in the request's access log. A request is verified once (a signature is
    accepted once): the caller found before (``ApiRequest.principal``, the ``Api`` wrapper's
    for a route with a scope) is the answer after."""
    if req.principal is not None:
        return req.principal
    ctx = ctx if ctx is not None else default_context()
    principal, req.session_due = _verify(req.credentials(), ctx, not req.session_in_limits)
    req.principal = principal
    req.user_id = principal.user_id
    return principal


def count_hits(
    req: ApiRequest,
    ctx: AuthContext,
    hits: list[RateHit],
    also: Callable[[Any], None] | None = None,
) -> list[Any]:
    """``ctx.limiter.hit_many(hits, also)`` for an authenticated request; for a route with
    ``session_in_limits``, the caller's session is checked first in the same round trip (a
    session that ended: 401 ``session_revoked``, nothing counted). When Redis holds no copy
    of the user's sessions, they are read from Firestore (``SessionStore.check``, which
    writes the copy) and the hits counted after, in a second round trip."""
    due = req.session_due
    if due is None:
        return ctx.limiter.hit_many(hits, also)
    try:
        rest = ctx.limiter.hit_many(hits, also, session=due)
    except SessionEndedError:
        raise session_revoked() from None
    except SessionNotCachedError:
        ctx.sessions.check(due.user_id, due.session_id, due.epoch)
        rest = ctx.limiter.hit_many(hits, also)
    req.session_due = None
    return rest


def require_role(principal: Principal, role: Role) -> None:
    """403 unless the principal has ``role`` (admin routes: ``require_role(p, "admin")``)."""
    if principal.role != role:
        raise ApiError(403, "forbidden", f"this needs the {role!r} role")


def require_session(principal: Principal) -> None:
    """403 for API keys: managing credentials needs a signed-in person (a token)."""
    if principal.via == "api_key":
        raise ApiError(403, "session_required", "this needs a signed-in session, not an API key")


def require_fresh(principal: Principal, cfg: ApiConfig, now: float | None = None) -> None:
    """401 ``fresh_auth_required`` unless the person proved who they are within
    ``FRESH_AUTH_MAX_AGE_S`` (see the module); an API key is its own proof."""
    if principal.via == "api_key":
        return
    max_age = cfg.fresh_auth_max_age_s
    current = time.time() if now is None else now
    if principal.auth_time is not None and current - principal.auth_time <= max_age:
        return
    how = (
        "POST /v1/auth/reauth with your password, then retry with the access token it returns"
        if principal.via == "jwt"
        else f"sign in again at your identity provider (max_age={max_age})"
    )
    raise ApiError(
        401,
        "fresh_auth_required",
        f"this needs a proof of who you are from the last {max_age} seconds: {how}",
        {
            "WWW-Authenticate": 'Bearer realm="api", error="insufficient_user_authentication", '
            f'error_description="a more recent authentication is required", max_age={max_age}'
        },
    )


# --------------------------------------------------------------------------------------------
# CLI: python -m api.auth new | rotate FILE | public FILE
# --------------------------------------------------------------------------------------------


def _main(argv: list[str]) -> int:
    if argv[:1] == ["new"] and len(argv) == 1:
        sys.stdout.write(orjson.dumps(new_secrets_document(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return 0
    if argv[:1] == ["rotate"] and len(argv) == 2:
        path = Path(argv[1])
        doc = rotate_signing_key(orjson.loads(path.read_bytes()))
        parse_secrets(orjson.dumps(doc))  # still valid
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        sys.stderr.write(f"new signing key {doc['jwt']['current']} in {path}\n")
        return 0
    if argv[:1] == ["public"] and len(argv) == 2:
        doc = verifier_document(orjson.loads(Path(argv[1]).read_bytes()))
        parse_secrets(orjson.dumps(doc))  # still valid
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return 0
    sys.stderr.write(
        "usage: python -m api.auth new > keys.json | rotate keys.json"
        " | public keys.json > verify-keys.json\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
