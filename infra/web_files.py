"""The built web page (web/, docs/web.md) as the local gateway serves it, beside the API.

``/`` and ``/index.html`` answer the page, never cached (a new build shows at the next load);
``/assets/...`` the files Vite named by their content hash, cached for good (``immutable``);
``/config.json`` where the page finds the live feed. Every answer carries the page's
Content-Security-Policy: scripts, styles and connections to this origin (and the feed's) only.
The cloud serves the same files from a bucket behind the load balancer, with the same headers
(terraform/modules/web).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import flask
import orjson

from infra.processes import REPO_ROOT
from shared.config import WebConfig

DEFAULT_DIST: Final = REPO_ROOT / "web" / "dist"
IMMUTABLE: Final = "public, max-age=31536000, immutable"
NOT_CACHED: Final = "no-cache"


def content_security_policy(ws_url: str | None) -> str:
    """The page's policy: nothing but this origin (and the live feed's, when elsewhere)."""
    connect = "'self'"
    if ws_url:
        parts = urlsplit(ws_url)
        connect += f" {parts.scheme}://{parts.netloc}"
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


class WebFiles:
    """Answers the page's requests from its build directory; None for a path it does not
    hold (the gateway's 404 then)."""

    def __init__(self, config: WebConfig | None = None) -> None:
        cfg = config or WebConfig.load()
        self.dist = Path(cfg.dist) if cfg.dist else DEFAULT_DIST
        self.ws_url = cfg.ws_url
        self.csp = content_security_policy(cfg.ws_url)

    def answer(self, request: flask.Request) -> flask.Response | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        if path == "/config.json":
            return self._respond(
                orjson.dumps({"ws_url": self.ws_url}), "application/json", NOT_CACHED
            )
        if path in ("/", "/index.html"):
            index = self.dist / "index.html"
            if not index.is_file():
                body = b"The web page is not built: make run builds it (npm ci and build in web/)."
                response = self._respond(body, "text/plain; charset=utf-8", "no-store")
                response.status_code = 503
                return response
            return self._respond(index.read_bytes(), "text/html; charset=utf-8", NOT_CACHED)
        if path.startswith("/assets/"):
            name = path.removeprefix("/assets/")
            # Only a plain file name in assets/: nothing outside it can be asked for.
            if not name or "/" in name or "\\" in name or name.startswith("."):
                return None
            file = self.dist / "assets" / name
            if not file.is_file():
                return None
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind == "application/javascript":
                kind += "; charset=utf-8"
            return self._respond(file.read_bytes(), kind, IMMUTABLE)
        return None

    def _respond(self, body: bytes, mimetype: str, cache: str) -> flask.Response:
        response = flask.Response(body, content_type=mimetype)
        response.headers["Cache-Control"] = cache
        response.headers["Content-Security-Policy"] = self.csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        return response
