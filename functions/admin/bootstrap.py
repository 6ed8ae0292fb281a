"""Make an admin: create the user with the role ``admin``, or promote an existing one.

    python -m functions.admin.bootstrap --email admin@example.com --password '...'
    python -m functions.admin.bootstrap --email alice@example.com          # promote Alice

It talks to the Firestore of ``GOOGLE_CLOUD_PROJECT`` (locally the emulator named by
``FIRESTORE_EMULATOR_HOST``: the environment ``python -m infra.local_stack up`` prints), and
writes the same documents as ``POST /v1/auth/signup`` (``emails/{email}``, ``users/{id}``;
password hashed with argon2id). An existing user keeps their password unless
``--reset-password`` is given. A promotion or a new password ends every session of the user
at once (``api.sessions``; with ``REDIS_URL`` set, as the services' environment has it;
without, within ``api.sessions.CACHE_TTL_S``): they log in again. Its environment is
``shared.config.AdminBootstrapConfig``: a malformed variable stops it before it does anything.
"""

from __future__ import annotations

import argparse
import re
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from google.api_core import exceptions as gexc
from google.cloud import firestore

from api.sessions import SessionStore
from shared.config import PASSWORD_MIN_LENGTH, AdminBootstrapConfig, ConfigError

USERS: Final = "users"
EMAILS: Final = "emails"
_EMAIL_RE: Final = re.compile(
    r"[a-z0-9.!#$%&'*+=?^_`{|}~-]{1,64}@[a-z0-9.-]{1,253}\.[a-z0-9-]{1,63}"
)


class BootstrapError(RuntimeError):
    pass


def make_admin(
    db: Any,
    email: str,
    password: str | None,
    *,
    reset_password: bool = False,
    sessions: SessionStore | None = None,
    password_min_length: int = PASSWORD_MIN_LENGTH,
) -> tuple[str, bool]:
    """(user id, created?) for the admin ``email``; creates the user when missing. A change
    of an existing user's role or password ends their sessions (through ``sessions`` when
    given, else in Firestore alone)."""
    email = email.strip().lower()
    if not _EMAIL_RE.fullmatch(email):
        raise BootstrapError(f"not an email address: {email!r}")
    if password is not None and len(password) < password_min_length:
        raise BootstrapError(f"the password needs at least {password_min_length} characters")
    hasher = PasswordHasher()
    link = db.collection(EMAILS).document(email).get()
    if link.exists:
        user_id = str((link.to_dict() or {})["user_id"])
        ref = db.collection(USERS).document(user_id)
        current = ref.get().to_dict() or {}
        change: dict[str, Any] = {"role": "admin"}
        new_password = False
        if reset_password:
            if password is None:
                raise BootstrapError("--reset-password needs --password")
            new_password = not _same_password(hasher, current.get("password_hash"), password)
            change["password_hash"] = hasher.hash(password)
        ref.update(change)
        if new_password or current.get("role") != "admin":
            if sessions is not None:
                sessions.end_all(user_id)
            else:
                ref.update({"session_epoch": firestore.Increment(1)})
        return user_id, False
    if password is None:
        raise BootstrapError(f"no user {email}: give --password to create one")
    user_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    batch = db.batch()
    batch.create(db.collection(EMAILS).document(email), {"user_id": user_id, "created_at": now})
    batch.create(
        db.collection(USERS).document(user_id),
        {
            "email": email,
            "password_hash": hasher.hash(password),
            "role": "admin",
            "created_at": now,
        },
    )
    try:
        batch.commit()
    except gexc.AlreadyExists:  # signed up in between: promote instead
        return make_admin(
            db,
            email,
            password,
            reset_password=reset_password,
            sessions=sessions,
            password_min_length=password_min_length,
        )
    return user_id, True


def _same_password(hasher: PasswordHasher, stored: Any, password: str) -> bool:
    """Whether ``password`` is the one already stored (a reset to it changes nothing: ``make
    run`` resets the local admin's at every start)."""
    try:
        return isinstance(stored, str) and hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m functions.admin.bootstrap", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--email", required=True)
    parser.add_argument(
        "--password", help="needed to create the user; at least PASSWORD_MIN_LENGTH (10) characters"
    )
    parser.add_argument("--reset-password", action="store_true")
    args = parser.parse_args(argv)
    try:
        cfg = AdminBootstrapConfig.load()
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    db = firestore.Client(project=cfg.project)
    client = redis.Redis.from_url(cfg.redis_url) if cfg.redis_url else None
    sessions = SessionStore(client, db, cfg.ended_session_retain_s) if client is not None else None
    try:
        user_id, created = make_admin(
            db,
            args.email,
            args.password,
            reset_password=args.reset_password,
            sessions=sessions,
            password_min_length=cfg.password_min_length,
        )
    except BootstrapError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    finally:
        db.close()  # type: ignore[no-untyped-call]
        if client is not None:
            client.close()
    verb = "created" if created else "promoted"
    sys.stdout.write(f"{verb} admin {args.email.strip().lower()} (user id {user_id})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
