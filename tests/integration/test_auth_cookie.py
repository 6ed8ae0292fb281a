"""The browser page's session (docs/web.md): login with ``refresh_cookie`` puts the refresh token
in an HttpOnly, SameSite=Strict cookie scoped to /v1/auth, never in the body; refresh and logout
read it from there, rotate it and clear it; reuse of a spent one still ends the session."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.integration.test_auth import PASSWORD, client, configure, error, me, secrets_doc, signup

__all__ = ["client", "configure", "secrets_doc"]  # the fixtures test_auth defines


def cookie_login(client: FlaskClient, email: str = "carol@example.com") -> dict[str, object]:
    assert signup(client, email).status_code == 201
    resp = client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD, "refresh_cookie": True}
    )
    assert resp.status_code == 200, resp.get_json()
    header = resp.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/v1/auth"):
        assert attribute in header, header
    assert "Secure" not in header  # plain HTTP: the local gateway
    body: dict[str, object] = resp.get_json()
    assert "refresh_token" not in body and body["token_type"] == "Bearer"
    return body


def refresh_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("refresh_token", path="/v1/auth")
    return None if cookie is None else cookie.value


def test_the_refresh_token_lives_in_the_cookie(client: FlaskClient) -> None:
    tokens = cookie_login(client)
    first = refresh_cookie(client)
    assert first is not None and first.startswith("rt_")
    assert me(client, str(tokens["access_token"])).status_code == 200

    resp = client.post("/v1/auth/refresh", json={})
    assert resp.status_code == 200
    assert "refresh_token" not in resp.get_json()
    second = refresh_cookie(client)
    assert second is not None and second != first
    assert me(client, resp.get_json()["access_token"]).status_code == 200

    # The spent one again (a thief's copy): the session ends, the current cookie with it.
    resp = client.post("/v1/auth/refresh", json={"refresh_token": first})
    assert resp.status_code == 401 and error(resp) == "refresh_token_reused"
    resp = client.post("/v1/auth/refresh", json={})
    assert resp.status_code == 401 and error(resp) == "invalid_refresh_token"


def test_logout_clears_the_cookie_and_ends_the_session(client: FlaskClient) -> None:
    tokens = cookie_login(client)
    resp = client.post("/v1/auth/logout", json={})
    assert resp.status_code == 204
    assert refresh_cookie(client) is None
    resp = me(client, str(tokens["access_token"]))
    assert resp.status_code == 401 and error(resp) == "session_revoked"
    # No cookie left: a refresh asks to log in again; a logout is still fine.
    resp = client.post("/v1/auth/refresh", json={})
    assert resp.status_code == 401 and error(resp) == "invalid_refresh_token"


def test_only_json_bodies_refresh(client: FlaskClient) -> None:
    """A form post from another site cannot use the cookie: the body must be JSON (a cross-site
    JSON request needs CORS' leave), besides the cookie being SameSite=Strict."""
    cookie_login(client)
    resp = client.post("/v1/auth/refresh", data="refresh_token=", content_type="text/plain")
    assert resp.status_code == 415
    resp = client.post(
        "/v1/auth/refresh", data={"x": "1"}, content_type="application/x-www-form-urlencoded"
    )
    assert resp.status_code == 415


def test_the_body_still_works_without_the_cookie(client: FlaskClient) -> None:
    assert signup(client, "dave@example.com").status_code == 201
    resp = client.post("/v1/auth/login", json={"email": "dave@example.com", "password": PASSWORD})
    assert "Set-Cookie" not in resp.headers
    pair = resp.get_json()
    resp = client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert resp.status_code == 200 and resp.get_json()["refresh_token"].startswith("rt_")
