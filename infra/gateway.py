"""The local API gateway: every HTTP function under one port, routed by path prefix as the
cloud's single API entry routes them.

    python -m infra.gateway [--host 127.0.0.1] [--port 8080] [--server auto|gunicorn|werkzeug]

It expects the services' environment (``FIRESTORE_EMULATOR_HOST``, ``REDIS_URL``, ...; what
``python -m infra.local_stack up`` prints). Without ``AUTH_KEYS_*`` it makes a development
secrets document in ``.state/auth-keys.json`` (kept, so tokens survive a restart), without
``CURSOR_KEY*`` a development cursor key in ``.state/cursor-key``. ``make run``
(infra/run.py) starts it with ``AUTH_KEYS_FILE`` and ``CURSOR_KEY_FILE`` pointing into its
state dir.

It serves with gunicorn (threaded workers, as in production; it comes with
functions-framework), or with Werkzeug's threaded development server when gunicorn is not
installed or ``--server werkzeug`` asks for it. SIGTERM stops it gracefully (in-flight requests
get a few seconds), SIGINT at once.

``ROUTES`` is made from the functions' own route declarations (infra.api_spec, which also
writes the cloud load balancer's table): a path prefix and the ``module:entry`` that
functions-framework would serve (``--source functions/<name>/main.py --target <entry>``). The
longest matching prefix wins; a prefix matches itself and anything below it
(``/v1/orders`` matches ``/v1/orders`` and ``/v1/orders/42``, not ``/v1/orders2``). A prefix
may start with a method (``"GET /v1/orders"``): it then takes only requests of that method (and
CORS preflights asking for it), ahead of a plain prefix of the same path, as the cloud's entry
routes by method and path (reads of orders go to queries, placing and cancelling to orders).
Outside the API's routes it serves the built web page (``infra.web_files``: ``/``,
``/assets/...``, ``/config.json``; docs/web.md). Anything else answers 404 in the API's error
format.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import flask
import orjson
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.serving import run_simple

from api.auth import new_secrets_document
from api.http import REQUEST_ID_HEADER, add_security_headers, error_response, request_id_of
from infra import api_spec
from infra.processes import REPO_ROOT
from infra.services import write_command_keys
from infra.web_files import WebFiles
from shared import heap, logs

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("gateway")

Endpoint = Callable[[flask.Request], flask.Response]

ROUTES: Final[tuple[tuple[str, str], ...]] = api_spec.gateway_routes()
"""``([METHOD ]prefix, "functions.<name>.main:<entry point>")``, from the functions' routes."""

_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
DEV_KEYS_FILE: Final = REPO_ROOT / ".state" / "auth-keys.json"
DEV_CURSOR_KEY_FILE: Final = REPO_ROOT / ".state" / "cursor-key"
DEV_COMMAND_KEYS_FILE: Final = REPO_ROOT / ".state" / "command-keys.json"


def load_endpoint(target: str) -> Endpoint:
    """``"functions.auth.main:auth"`` -> that function."""
    module_name, _, attr = target.partition(":")
    endpoint: Endpoint = getattr(importlib.import_module(module_name), attr)
    return endpoint


def _prefix_matches(prefix: str, path: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _split_method(prefix: str) -> tuple[str | None, str]:
    """``"GET /v1/orders"`` -> ``("GET", "/v1/orders")``; ``"/v1/auth"`` -> ``(None, ...)``."""
    method, sep, path = prefix.partition(" ")
    if not sep:
        return None, prefix.rstrip("/")
    if method.upper() not in _METHODS:
        raise ValueError(f"unknown method in route prefix {prefix!r}")
    return method.upper(), path.strip().rstrip("/")


def _routing_method(request: flask.Request) -> str:
    """The method a request is routed by: a CORS preflight goes where its request will."""
    if request.method == "OPTIONS":
        asked = request.headers.get("Access-Control-Request-Method", "").strip().upper()
        if asked:
            return asked
    return request.method.upper()


def create_app(
    routes: Sequence[tuple[str, str | Endpoint]] = ROUTES, web: WebFiles | None = None
) -> flask.Flask:
    """The gateway as a Flask app (tests use its ``test_client()``). ``routes`` entries are
    ``([METHOD ]prefix, "module:entry")`` or ``([METHOD ]prefix, callable)``; ``web`` serves
    the page outside them (default: ``WEB_DIST``'s, else web/dist)."""
    page = web or WebFiles()
    table = sorted(
        (
            (*_split_method(prefix), load_endpoint(target) if isinstance(target, str) else target)
            for prefix, target in routes
        ),
        key=lambda row: (len(row[1]), row[0] is not None),
        reverse=True,
    )
    app = flask.Flask("gateway")

    # Every request is dispatched before Flask's own routing would answer it: werkzeug's
    # rules answer some paths themselves, in HTML (a newline in a path is no match for
    # "<path:...>", "//" is redirected, an unlisted method is 405), where the cloud's entry
    # hands any path and method to the function, which answers in the API's format.
    @app.before_request
    def dispatch() -> flask.Response:
        request = flask.request
        method = _routing_method(request)
        for only, prefix, endpoint in table:
            if (only is None or only == method) and _prefix_matches(prefix, request.path):
                return endpoint(request)
        if not request.path.startswith("/v1/"):
            answer = page.answer(request)
            if answer is not None:
                return answer
        return _error(request, 404, "not_found", f"no route for {request.path}")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> flask.Response:
        return _http_error(flask.request, exc)

    flask_wsgi = app.wsgi_app

    # The functions' routes skip Flask's request handling (its contexts, its dispatch and
    # its response processing: a tenth of an order's CPU, docs/benchmarks.md): the function
    # gets the same request object and answers it alone, as before_request made it do. The
    # rest (the web page, the 404s) is Flask's.
    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = flask.Request(environ)
        method, path = _routing_method(request), request.path
        for only, prefix, endpoint in table:
            if (only is None or only == method) and _prefix_matches(prefix, path):
                try:
                    response = endpoint(request)
                except HTTPException as exc:
                    response = _http_error(request, exc)
                except Exception:
                    log.exception("unhandled error on %s %s", request.method, path)
                    response = _http_error(request, InternalServerError())
                return response(environ, start_response)
        return flask_wsgi(environ, start_response)

    app.wsgi_app = wsgi  # type: ignore[method-assign]
    return app


def _http_error(request: flask.Request, exc: HTTPException) -> flask.Response:
    code = (exc.name or "error").lower().replace(" ", "_")
    return _error(request, exc.code or 500, code, exc.description or code)


def _error(request: flask.Request, status: int, code: str, message: str) -> flask.Response:
    response = error_response(status, code, message)
    response.headers[REQUEST_ID_HEADER] = request_id_of(request)
    add_security_headers(response)
    return response


def _write_once(path: Path, make: Callable[[], bytes], what: str) -> Path:
    """Write ``make()`` to ``path`` (owner-only) unless a file is there."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made by a concurrent start
            return path
        with os.fdopen(fd, "wb") as f:
            f.write(make())
        log.info("made %s in %s", what, path)
    return path


def write_dev_keys(path: Path) -> Path:
    """Make a development secrets document at ``path`` (owner-only) unless one is there."""
    return _write_once(
        path,
        lambda: orjson.dumps(new_secrets_document(), option=orjson.OPT_INDENT_2),
        "development auth keys",
    )


def write_dev_cursor_key(path: Path) -> Path:
    """Make a development cursor key (api.cursors) at ``path`` unless one is there."""
    return _write_once(path, lambda: secrets.token_urlsafe(32).encode(), "a development cursor key")


def ensure_dev_keys(
    path: Path = DEV_KEYS_FILE, cursor_key_path: Path = DEV_CURSOR_KEY_FILE
) -> None:
    """Point ``AUTH_KEYS_FILE`` at a development secrets document, ``CURSOR_KEY_FILE`` at a
    development cursor key and ``COMMAND_KEYS_FILE`` at development command keys, each unless
    a source of it is set."""
    if not any(os.environ.get(n) for n in ("AUTH_KEYS_SECRET", "AUTH_KEYS_FILE", "AUTH_KEYS_JSON")):
        os.environ["AUTH_KEYS_FILE"] = str(write_dev_keys(path))
    if not any(os.environ.get(n) for n in ("CURSOR_KEY", "CURSOR_KEY_FILE", "CURSOR_KEY_SECRET")):
        os.environ["CURSOR_KEY_FILE"] = str(write_dev_cursor_key(cursor_key_path))
    if not any(
        os.environ.get(n) for n in ("COMMAND_KEYS", "COMMAND_KEYS_FILE", "COMMAND_KEYS_SECRET")
    ):
        # The producers' signing keys (shared.producers); a matcher must read the same file.
        os.environ["COMMAND_KEYS_FILE"] = str(write_command_keys(DEV_COMMAND_KEYS_FILE))


def serve_gunicorn(host: str, port: int, workers: int, threads: int) -> None:
    """Serve ``create_app()`` with gunicorn's threaded workers. The app is built (the functions
    imported) once, before the workers fork: that is safe because the functions make their
    clients (gRPC channels, connections) on first use, in the worker."""
    from gunicorn.app.base import BaseApplication

    class Gateway(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "preload_app": True,
                "timeout": 120,
                "graceful_timeout": 5,
                "keepalive": 5,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": "warning",
                "proc_name": "exchange-gateway",
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> flask.Flask:
            app = create_app()
            heap.freeze_startup_heap("gateway")  # before the workers fork: they share it
            return app

    Gateway().run()


def main(argv: Sequence[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m infra.gateway", description=summary)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--server", choices=("auto", "gunicorn", "werkzeug"), default="auto")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker")
    args = parser.parse_args(argv)
    logs.setup()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the functions log each request
    ensure_dev_keys()
    server = args.server
    if server == "auto":
        server = "gunicorn" if importlib.util.find_spec("gunicorn") else "werkzeug"
    log.info("gateway on http://%s:%d (%s)", args.host, args.port, server)
    if server == "gunicorn":
        serve_gunicorn(args.host, args.port, args.workers, args.threads)
    else:
        run_simple(args.host, args.port, create_app(), threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
