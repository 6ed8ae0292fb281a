"""Who may use the ws service, and for how long.

- The opening handshake with credentials in its headers, over a raw socket (so every byte of
  the request is ours): header names in any case (HTTP/2 proxies send them in lower case),
  duplicated, empty or not ASCII, both kinds of credentials at once, odd queries. Each answer
  is 101 (a good credential) or a 4xx in the API's error format, never a 5xx.
- Ended sessions (api.sessions): refused at connect and on ``auth``, and live connections
  lose their private subscriptions at once: a logout, every session of a user, a deleted key.

The ws service alone, on this test's Redis and Firestore project; its tokens are made here
with its keys, its API key written to Firestore as the auth function writes one, sessions
ended with ``SessionStore`` as the auth function ends them.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from google.cloud import firestore

from api.auth import (
    AuthSecrets,
    api_key_secret,
    issue_access_token,
    new_secrets_document,
    parse_secrets,
    secret_fingerprint,
    sign_request,
)
from api.sessions import SessionStore
from infra.processes import REPO_ROOT
from shared.config import ApiConfig
from tests.integration.ws_helpers import WS_TEST_ENV, Feed, WsProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY_ID = "ak_" + "5" * 24


@dataclass
class Service:
    ws: WsProcess
    secrets: AuthSecrets
    cfg: ApiConfig
    key_secret: str

    def token(self, user: str = "u1", sid: str = "s1", epoch: int = 0) -> str:
        return issue_access_token(self.secrets, self.cfg, user, "user", session_id=sid, epoch=epoch)

    def signed(self, query: str = "", ts: int | None = None) -> list[tuple[str, str]]:
        stamp = ts if ts is not None else int(time.time() * 1000)
        signature = sign_request(self.key_secret, stamp, "GET", "/v1/ws", query)
        return [("x-api-key", KEY_ID), ("x-api-timestamp", str(stamp)),
                ("x-api-signature", signature)]  # fmt: skip


@pytest.fixture
def service(
    firestore_db: firestore.Client,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Service]:
    keys = orjson.dumps(new_secrets_document()).decode()
    monkeypatch.setenv("AUTH_KEYS_JSON", keys)
    for name in ("AUTH_KEYS_FILE", "AUTH_KEYS_SECRET", "OIDC_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    secrets = parse_secrets(keys.encode())
    master = secrets.api_key_master_id
    secret = api_key_secret(secrets, master, KEY_ID)
    for user in ("u1", "u2"):
        firestore_db.collection("users").document(user).set({"email": f"{user}@example.com"})
    firestore_db.collection("api_keys").document(KEY_ID).set(
        {"user_id": "u2", "label": "ws", "scopes": ["read"], "master_id": master,
         "secret_sha256": secret_fingerprint(secret), "created_at": datetime.now(UTC)}
    )  # fmt: skip
    env = {**os.environ, **WS_TEST_ENV, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PORT", None)
    ws = WsProcess(env, tmp_path / "ws.log")
    try:
        yield Service(ws, secrets, ApiConfig.load(), secret)
    finally:
        assert ws.stop() == 0


def handshake(port: int, headers: list[tuple[str, str]], target: str = "/v1/ws") -> tuple[int, Any]:
    """Open a WebSocket with exactly these extra headers (ISO-8859-1, as HTTP/1.1 allows);
    the status and, for an error, its JSON body."""
    lines = [
        f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
        "Connection: Upgrade", "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode(),
        *(f"{name}: {value}" for name, value in headers),
    ]  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, f"closed without an answer: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status == 101:
            return status, None
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = sock.recv(4096)
            assert chunk, "closed in the middle of the body"
            body += chunk
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:  # not the API's error format: shown by code_of
        return status, {"status": status, "text": body.decode("latin-1")}


def code_of(answer: tuple[int, Any]) -> tuple[int, str | None]:
    status, body = answer
    if body is None:
        return status, None
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return status, body["error"]["code"]


def test_credential_headers_are_case_insensitive(service: Service) -> None:
    port, token = service.ws.port, service.token()
    for name in ("Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"):
        assert code_of(handshake(port, [(name, f"Bearer {token}")])) == (101, None), name
        assert code_of(handshake(port, [(name, f"bearer {token}")])) == (101, None), name
    # The API-key headers, in lower case (and in the canonical case).
    assert code_of(handshake(port, service.signed())) == (101, None)
    canonical = [(n.title().replace("Api", "API"), v) for n, v in service.signed()]
    assert code_of(handshake(port, canonical)) == (101, None)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ([("authorization", "")], "invalid_token"),
        ([("authorization", "Bearer")], "invalid_token"),
        ([("authorization", "Basic dTpw")], "invalid_token"),
        ([("authorization", "Bearer not.a.jwt")], "invalid_token"),
        ([("authorization", "Bearer \xff\xfe")], "invalid_token"),
        ([("authorization", "Bearer " + "a" * 4000)], "invalid_token"),
        ([("x-api-key", "")], "invalid_api_key"),
        ([("x-api-key", "ak_\xe9"), ("x-api-timestamp", "1"), ("x-api-signature", "0" * 64)],
         "invalid_api_key"),
        ([("x-api-key", KEY_ID), ("x-api-timestamp", "\xb9\xb2"),
          ("x-api-signature", "0" * 64)], "invalid_timestamp"),
        ([("x-api-key", KEY_ID), ("x-api-timestamp", "1" * 40),
          ("x-api-signature", "0" * 64)], "invalid_timestamp"),
    ],
)  # fmt: skip
def test_bad_credentials_are_refused_not_failed(
    service: Service, headers: list[tuple[str, str]], code: str
) -> None:
    assert code_of(handshake(service.ws.port, headers)) == (401, code)


def test_odd_combinations_are_refused_not_failed(service: Service) -> None:
    port, token = service.ws.port, service.token()
    # The same credential twice, or two: one request, one credential.
    twice = [("Authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")]
    assert code_of(handshake(port, twice))[0] == 401
    both = [("authorization", f"Bearer {token}"), *service.signed()]
    assert code_of(handshake(port, both)) == (401, "invalid_request")
    # A query the signature does not cover; odd bytes in it.
    assert code_of(handshake(port, service.signed(), "/v1/ws?x=1")) == (401, "invalid_signature")
    signed = service.signed("a=%zz&b=%FF")
    assert code_of(handshake(port, signed, "/v1/ws?a=%zz&b=%FF")) == (101, None)
    assert code_of(handshake(port, [("authorization", f"Bearer {token}")], "/v1/ws?%")) == (
        101, None,
    )  # fmt: skip


# ---------------------------------------------------------------- ended sessions


def test_ended_sessions_are_refused_and_cut_off(
    service: Service, firestore_db: firestore.Client, redis_db: redis.Redis
) -> None:
    store = SessionStore(redis_db, firestore_db, retain_s=960)
    port = service.ws.port
    # Alice (u1) on two sessions, one by the handshake, one by op auth; Bob (u2) by his key.
    by_header = Feed(
        service.ws.url, additional_headers={"Authorization": f"Bearer {service.token()}"}
    )
    by_header.subscribe("orders")
    by_op = Feed(service.ws.url)
    assert by_op.call(op="auth", token=service.token(sid="s2"))["type"] == "authenticated"
    by_op.subscribe("balances")
    by_key = Feed(service.ws.url)
    stamp = int(time.time() * 1000)
    signature = sign_request(service.key_secret, stamp, "GET", "/v1/ws")
    answer = by_key.call(op="auth", api_key=KEY_ID, timestamp=stamp, signature=signature)
    assert answer["type"] == "authenticated"
    by_key.subscribe("orders")

    # Logout of session s1: its connection loses orders at once; s2 keeps balances.
    store.end_session("u1", "s1")
    ended = by_header.of("error")
    assert (ended["code"], ended["channels"]) == ("session_revoked", ["orders"])
    assert by_header.call(op="subscribe", channel="orders")["code"] == "auth_required"
    assert code_of(handshake(port, [("authorization", f"Bearer {service.token()}")])) == (
        401, "session_revoked",
    )  # fmt: skip
    assert Feed(service.ws.url).call(op="auth", token=service.token())["code"] == (
        "session_revoked"
    )
    assert by_op.call(op="ping")["type"] == "pong"
    assert not [m for m in by_op.backlog if m["type"] == "error"]

    # Every session of u1 (a password change): s2 ends too, and tokens of a new session at
    # the new epoch work.
    epoch = store.end_all("u1")
    ended = by_op.of("error")
    assert (ended["code"], ended["channels"]) == ("session_revoked", ["balances"])
    assert code_of(handshake(port, [("authorization", f"Bearer {service.token(sid='s3')}")])) == (
        401, "session_revoked",
    )  # fmt: skip
    fresh = service.token(sid="s4", epoch=epoch)
    assert code_of(handshake(port, [("authorization", f"Bearer {fresh}")])) == (101, None)

    # Bob's key deleted: his connection is told; nobody else's is touched.
    firestore_db.collection("api_keys").document(KEY_ID).delete()
    store.api_key_deleted("u2", KEY_ID)
    ended = by_key.of("error")
    assert (ended["code"], ended["channels"]) == ("session_revoked", ["orders"])
    assert by_key.call(op="ping")["type"] == "pong"  # the connection itself goes on
    for feed in (by_header, by_op, by_key):
        feed.close()
