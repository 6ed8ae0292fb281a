"""Smoke test of a deployed exchange: the API answers through its HTTPS entry, routes each path
to the right function, and the WebSocket endpoint upgrades.

    python3 terraform/scripts/smoke_test.py --outputs tf-outputs.json [--wait 1800]
    python3 terraform/scripts/smoke_test.py --api https://api.example.com --ws wss://.../v1/ws

``--outputs`` is ``terraform output -json`` of an environment root (api_url, ws_url). The
first deploy waits until the managed certificate is active and the load balancer answers
(``--wait`` seconds, checking every 15 s); then every check must pass once. Standard library
only (Cloud Build runs it in a bare Python image). Exit 0 when all pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

Check = Callable[[], str]


class SmokeError(AssertionError):
    pass


def fetch(url: str, method: str = "GET", timeout: float = 15.0) -> tuple[int, Any]:
    """(status, decoded JSON or None) of one request; HTTP errors are answers, not failures."""
    request = urllib.request.Request(
        url, method=method, headers={"Accept": "application/json", "User-Agent": "smoke-test"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None


def expect(url: str, status: int, method: str = "GET") -> Any:
    got, body = fetch(url, method)
    if got != status:
        raise SmokeError(f"{method} {url}: expected {status}, got {got} {body!r}"[:500])
    return body


def expect_error(url: str, status: int, method: str = "GET") -> str:
    body = expect(url, status, method)
    if not (isinstance(body, dict) and isinstance(body.get("error"), dict)):
        raise SmokeError(f"{method} {url}: not the API's error format: {body!r}"[:500])
    return str(body["error"].get("code"))


def websocket_upgrades(url: str, timeout: float = 15.0) -> int:
    """The status line's code of a WebSocket opening handshake to ``url`` (ws:// or wss://)."""
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
    try:
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path or "/"
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nUser-Agent: smoke-test\r\n\r\n"
        )
        sock.sendall(request.encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
    finally:
        sock.close()
    fields = status_line.split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise SmokeError(f"{url}: no HTTP status line in {status_line!r}")
    return int(fields[1])


def checks(api: str, ws: str) -> list[tuple[str, Check]]:
    api = api.rstrip("/")

    def time_answers() -> str:
        body = expect(f"{api}/v1/time", 200)
        if not isinstance(body, dict) or not isinstance(body.get("server_time"), int):
            raise SmokeError(f"/v1/time: {body!r}")
        return f"server_time {body['server_time']}"

    def openapi_served() -> str:
        body = expect(f"{api}/v1/openapi.json", 200)
        if not isinstance(body, dict) or not str(body.get("openapi", "")).startswith("3."):
            raise SmokeError("/v1/openapi.json is not an OpenAPI 3 document")
        return f"OpenAPI {body['openapi']}, {len(body.get('paths', {}))} paths"

    def markets_listed() -> str:
        body = expect(f"{api}/v1/markets", 200)
        if not isinstance(body, dict) or not isinstance(body.get("markets"), list):
            raise SmokeError(f"/v1/markets: {body!r}"[:500])
        return f"{len(body['markets'])} markets (Redis and Postgres reachable)"

    def binance_dialect_answers() -> str:
        body = expect(f"{api}/api/v3/ping", 200)
        if body != {}:
            raise SmokeError(f"/api/v3/ping: {body!r}"[:500])
        return "the Binance dialect answers"

    def unknown_path_is_404() -> str:
        return expect_error(f"{api}/v1/no-such-route", 404)

    def balances_need_auth() -> str:
        return expect_error(f"{api}/v1/balances", 401)

    def orders_need_auth() -> str:
        return expect_error(f"{api}/v1/orders", 401, method="POST")

    def me_needs_auth() -> str:
        return expect_error(f"{api}/v1/auth/me", 401)

    def admin_needs_auth() -> str:
        return expect_error(f"{api}/v1/admin/audit", 401)

    def deposits_need_auth() -> str:
        return expect_error(f"{api}/v1/deposits", 401)

    def websocket_upgrade() -> str:
        code = websocket_upgrades(ws)
        if code != 101:
            raise SmokeError(f"{ws}: expected 101 Switching Protocols, got {code}")
        return "101 Switching Protocols"

    def http_redirects() -> str:
        if not api.startswith("https://"):
            return "skipped (not https)"
        plain = "http://" + api.removeprefix("https://") + "/v1/time"
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            opener.open(plain, timeout=15)
        except urllib.error.HTTPError as exc:
            if exc.code in (301, 308) and exc.headers.get("Location", "").startswith("https://"):
                return f"{exc.code} to https"
            raise SmokeError(f"{plain}: expected a redirect to https, got {exc.code}") from None
        raise SmokeError(f"{plain}: answered without redirecting to https")

    return [
        ("GET /v1/time", time_answers),
        ("GET /v1/openapi.json", openapi_served),
        ("GET /v1/markets", markets_listed),
        ("GET /api/v3/ping", binance_dialect_answers),
        ("unknown path", unknown_path_is_404),
        ("GET /v1/balances without a token", balances_need_auth),
        ("POST /v1/orders without a token", orders_need_auth),
        ("GET /v1/auth/me without a token", me_needs_auth),
        ("GET /v1/admin/audit without a token", admin_needs_auth),
        ("GET /v1/deposits without a token", deposits_need_auth),
        ("WebSocket upgrade", websocket_upgrade),
        ("http redirects to https", http_redirects),
    ]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def wait_until_up(api: str, wait_s: float, every_s: float = 15.0) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            status, _ = fetch(f"{api.rstrip('/')}/v1/time", timeout=10)
            if status == 200:
                return
            problem = f"status {status}"
        except (OSError, ssl.SSLError) as exc:  # DNS, TLS (certificate not yet active), ...
            problem = repr(exc)
        if time.monotonic() >= deadline:
            raise SmokeError(f"{api} not up after {wait_s:.0f} s: {problem}")
        print(f"waiting for {api}: {problem}", flush=True)
        time.sleep(every_s)


def run(api: str, ws: str, wait_s: float) -> int:
    wait_until_up(api, wait_s)
    failed = 0
    for name, check in checks(api, ws):
        try:
            print(f"ok    {name}: {check()}", flush=True)
        except (SmokeError, OSError) as exc:
            failed += 1
            print(f"FAIL  {name}: {exc}", flush=True)
    total = len(checks(api, ws))
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--outputs", help="terraform output -json of the environment")
    parser.add_argument("--api", help="the API's base URL (instead of --outputs)")
    parser.add_argument("--ws", help="the WebSocket URL (default: from --outputs or API/v1/ws)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the API")
    args = parser.parse_args(argv)
    api, ws = args.api, args.ws
    if args.outputs:
        with open(args.outputs, encoding="utf-8") as f:
            outputs = json.load(f)
        api = api or outputs["api_url"]["value"]
        ws = ws or outputs["ws_url"]["value"]
    if not api:
        parser.error("give --outputs or --api")
    if not ws:
        scheme = "wss" if api.startswith("https://") else "ws"
        ws = scheme + "://" + api.split("://", 1)[1].rstrip("/") + "/v1/ws"
    try:
        return run(api, ws, args.wait)
    except SmokeError as exc:
        print(f"FAIL  {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
