"""The local gateway serves the built web page beside the API (infra/web_files.py): the page
never cached, hashed assets cached for good, the CSP on every answer, nothing outside the
build directory reachable, the API's routes and 404s unchanged."""

from __future__ import annotations

from pathlib import Path

import flask
import pytest
from flask.testing import FlaskClient

from infra.gateway import create_app
from infra.web_files import IMMUTABLE, WebFiles
from shared.config import WebConfig


def _api(request: flask.Request) -> flask.Response:
    return flask.Response(b'{"ok":true}', content_type="application/json")


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text('<script type="module" src="/assets/index-a1.js">')
    (tmp_path / "assets" / "index-a1.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("not served")
    return tmp_path


@pytest.fixture
def client(dist: Path) -> FlaskClient:
    web = WebFiles(WebConfig(dist=str(dist), ws_url="ws://127.0.0.1:8081/v1/ws"))
    return create_app((("/v1/markets", _api),), web).test_client()


def test_the_page_is_never_cached_and_carries_its_policy(client: FlaskClient) -> None:
    for path in ("/", "/index.html"):
        resp = client.get(path)
        assert resp.status_code == 200
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.mimetype == "text/html"
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "connect-src 'self' ws://127.0.0.1:8081" in csp
        assert "frame-ancestors 'none'" in csp


def test_hashed_assets_are_immutable(client: FlaskClient) -> None:
    resp = client.get("/assets/index-a1.js")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == IMMUTABLE
    assert resp.mimetype in ("text/javascript", "application/javascript")


def test_the_feed_is_found_in_config_json(client: FlaskClient) -> None:
    resp = client.get("/config.json")
    assert resp.get_json() == {"ws_url": "ws://127.0.0.1:8081/v1/ws"}
    assert resp.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path", ["/secret.txt", "/assets/../secret.txt", "/assets/%2e%2e/secret.txt", "/assets/", "/x"]
)
def test_nothing_else_is_served(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"


def test_the_api_keeps_its_routes(client: FlaskClient) -> None:
    assert client.get("/v1/markets").get_json() == {"ok": True}
    assert client.post("/").status_code == 404  # the page is read-only
    assert client.get("/v1/nothing").get_json()["error"]["code"] == "not_found"


def test_a_missing_build_says_how_to_make_it(tmp_path: Path) -> None:
    web = WebFiles(WebConfig(dist=str(tmp_path / "none")))
    resp = create_app((), web).test_client().get("/")
    assert resp.status_code == 503
    assert b"make run" in resp.data
    assert "connect-src 'self';" in resp.headers["Content-Security-Policy"]
