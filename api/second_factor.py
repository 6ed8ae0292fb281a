"""Two-factor authentication: TOTP codes (RFC 6238, pyotp) and one-time recovery codes.

A user's second factor lives in their Firestore document (``users/{id}``), field ``totp``:

- ``pending``: the secret of an enrolment not confirmed yet (``POST /v1/auth/2fa/enrol``);
- ``secret``: the confirmed secret (base32); present means two-factor is on;
- ``last_step``: the last 30-second time step a code was accepted for. A code is accepted
  only for a later step, in a transaction on the document, so a code seen once (shoulder,
  phishing proxy, log) cannot be used again, not even within its window;
- ``recovery``: argon2id hashes of the unused recovery codes (shown once, at confirmation);
  using one removes it.

Codes are checked with one step of clock drift either way. Wrong codes count against the
password-failure budgets (``api.throttle``) of the pair (``totp:`` + user id, client address),
so six digits cannot be guessed.

Where a code is asked for (``totp_code`` in the body): login and reauth (the fresh proof is
then two-factor), a withdrawal made with a token, a new API key with the ``withdraw`` scope,
turning two-factor off, a new withdrawal address. Missing: 401 ``totp_required``; wrong or
already used: 401 ``invalid_totp_code``. After sign-in, those actions ask for it with
``require_second_factor`` (the fresh proof, then the code); login and reauth, which are the
proof, with ``require_code``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

import msgspec
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from google.cloud import firestore

from api.auth import AuthContext, Principal, require_fresh
from api.http import ApiError, ApiRequest, unauthorized
from api.throttle import FailureLimiter, PasswordTry
from shared.config import ApiConfig

USERS: Final = "users"
FIELD: Final = "totp"
DIGITS: Final = 6
PERIOD_S: Final = 30
DRIFT_STEPS: Final = 1
RECOVERY_CODES: Final = 10
_RECOVERY_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
_RECOVERY_GROUPS: Final = (5, 5)  # ~49 bits each: argon2id makes a stolen hash list useless
TOTP_REQUIRED: Final = "totp_required"
INVALID_TOTP: Final = "invalid_totp_code"

# Recovery codes carry ~49 random bits, not a person's password: a light argon2id is plenty
# against a stolen hash list, and ten of them are hashed (and may be tried) per request.
_hasher = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)

Used = Literal["totp", "recovery"]

TotpCode = (
    Annotated[
        str,
        msgspec.Meta(
            max_length=32,
            description=(
                "with two-factor on: the 6-digit code of the authenticator app, or one of the "
                "recovery codes (used up)"
            ),
        ),
    ]
    | None
)


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (as a QR code or pasted)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_S).provisioning_uri(
        name=account, issuer_name=issuer
    )


def code_at(secret: str, when: float) -> str:
    """The code of ``secret`` at ``when`` (tests stand for an authenticator app with it)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_S).at(when)


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step ``code`` belongs to (within the allowed drift), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_S)
    current = totp.timecode(int(now))
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared, in constant time, so the timing tells nothing.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def new_recovery_codes() -> tuple[list[str], list[str]]:
    """Fresh recovery codes and their argon2id hashes."""
    codes = [
        "-".join(
            "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(n)) for n in _RECOVERY_GROUPS
        )
        for _ in range(RECOVERY_CODES)
    ]
    return codes, [_hasher.hash(c) for c in codes]


def _normal_recovery(code: str) -> str:
    raw = code.strip().lower().replace("-", "").replace(" ", "")
    first = _RECOVERY_GROUPS[0]
    return raw[:first] + "-" + raw[first:]


def _recovery_match(hashes: list[str], code: str) -> str | None:
    candidate = _normal_recovery(code)
    for stored in hashes:
        try:
            if _hasher.verify(stored, candidate):
                return stored
        except (VerificationError, InvalidHashError):
            continue
    return None


def code_try(user_id: str, client_ip: str, cfg: ApiConfig) -> PasswordTry:
    """The failure budgets a code try of ``user_id`` counts against (``api.throttle``)."""
    return PasswordTry.of(
        "totp:" + user_id, client_ip, cfg.failures_per_email_ip, cfg.failures_per_ip
    )


def is_enabled(user: Mapping[str, Any] | None) -> bool:
    return bool(user and (user.get(FIELD) or {}).get("secret"))


def totp_required() -> ApiError:
    return unauthorized(
        "this account has two-factor authentication: send totp_code (the 6-digit code of the "
        "authenticator app, or a recovery code)",
        TOTP_REQUIRED,
    )


def _invalid() -> ApiError:
    return unauthorized("the two-factor code is wrong or was already used", INVALID_TOTP)


def verify(
    db: Any,
    user_id: str,
    code: str | None,
    *,
    failures: FailureLimiter,
    client_ip: str,
    cfg: ApiConfig,
    now: float | None = None,
) -> Used | None:
    """Check the user's second factor, when they have one: None when two-factor is off;
    else which kind of code was accepted (and now spent), or 401 ``totp_required`` /
    ``invalid_totp_code`` (a wrong code counts as a password failure: 429 when too many)."""
    ref = db.collection(USERS).document(user_id)
    snap = ref.get()
    user = snap.to_dict() if snap.exists else None
    if not is_enabled(user):
        return None
    if code is None or not code.strip():
        raise totp_required()
    attempt = code_try(user_id, client_ip, cfg)
    failures.reserve(attempt)
    try:
        used = _spend(db, ref, user or {}, code, time.time() if now is None else now)
    except BaseException:
        failures.undecided(attempt)
        raise
    if used is None:
        raise _invalid()
    failures.succeeded(attempt)
    return used


def require_code(ctx: AuthContext, req: ApiRequest, user_id: str, code: str | None) -> None:
    """401 unless the user's second factor, when on, is proved by ``code`` (``verify``, with
    the request's failure budgets)."""
    verify(
        ctx.firestore, user_id, code, failures=ctx.failures, client_ip=req.client_ip,
        cfg=ctx.config,
    )  # fmt: skip


def require_second_factor(
    ctx: AuthContext, req: ApiRequest, principal: Principal, code: str | None
) -> None:
    """What an action that moves funds or guards them needs: a recent proof
    (``api.auth.require_fresh``) and, when it is on, the second factor. Only our own tokens
    carry one here: an API key is its own proof (making one with the withdraw scope needed
    it), an external identity proves itself at its provider."""
    require_fresh(principal, ctx.config)
    if principal.via == "jwt":
        require_code(ctx, req, principal.user_id, code)


def _spend(db: Any, ref: Any, user: Mapping[str, Any], code: str, now: float) -> Used | None:
    secret = str(user[FIELD]["secret"])
    step = matching_step(secret, code, now)
    # A recovery code is checked outside the transaction (argon2 is slow on purpose), then
    # removed in it only if still there: used once, even by two requests at the same time.
    recovery = None if step is not None else _recovery_match(user[FIELD].get("recovery", []), code)
    if step is None and recovery is None:
        return None

    @firestore.transactional
    def spend(tx: Any) -> bool:
        current = (ref.get(transaction=tx).to_dict() or {}).get(FIELD) or {}
        if current.get("secret") != secret:
            return False  # turned off or re-enrolled meanwhile
        if step is not None:
            if step <= int(current.get("last_step", -1)):
                return False  # this code, or a later one, was already accepted
            tx.update(ref, {f"{FIELD}.last_step": step})
            return True
        left = list(current.get("recovery", []))
        if recovery not in left:
            return False
        left.remove(recovery)
        tx.update(ref, {f"{FIELD}.recovery": left})
        return True

    if not spend(db.transaction()):
        return None
    return "totp" if step is not None else "recovery"


def confirm(db: Any, user_id: str, code: str, now: float | None = None) -> list[str] | None:
    """Turn two-factor on with the pending secret, proved by a code of it: the recovery
    codes (to be shown once), or None when the code is wrong or nothing is pending."""
    ref = db.collection(USERS).document(user_id)
    pending = ((ref.get().to_dict() or {}).get(FIELD) or {}).get("pending")
    if not pending:
        return None
    step = matching_step(str(pending), code, time.time() if now is None else now)
    if step is None:
        return None
    codes, hashes = new_recovery_codes()

    @firestore.transactional
    def enable(tx: Any) -> bool:
        current = (ref.get(transaction=tx).to_dict() or {}).get(FIELD) or {}
        if current.get("pending") != pending or current.get("secret"):
            return False
        tx.update(ref, {FIELD: {"secret": pending, "last_step": step, "recovery": hashes}})
        return True

    return codes if enable(db.transaction()) else None
