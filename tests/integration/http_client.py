"""A small JSON client for the API over real HTTP (no proxies), for the integration tests."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class HttpClient:
    base: str

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        status, doc, _ = self.raw(method, path, data, headers)
        return status, doc

    def raw(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """Any request as given: (status, the body's JSON or None, the response's headers)."""
        request = urllib.request.Request(
            self.base + path, data, {"Accept": "application/json", **(headers or {})}, method=method
        )
        try:
            with NO_PROXY.open(request, timeout=30) as resp:
                status, raw, got = int(resp.status), resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            status, raw, got = int(exc.code), exc.read(), dict(exc.headers)
        return status, orjson.loads(raw) if raw else None, got

    def ok(
        self, method: str, path: str, body: Any = None, token: str | None = None, status: int = 200
    ) -> Any:
        got, doc = self.call(method, path, body, token)
        assert got == status, (method, path, got, doc)
        return doc

    def get(self, path: str, token: str | None = None) -> Any:
        return self.ok("GET", path, token=token)
