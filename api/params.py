"""Query strings, checked the same way by every function: only the names a route allows, each
at most once, none empty; integers and times in range. Errors are 400s in the API's format."""

from __future__ import annotations

import re
from typing import Final

from werkzeug.datastructures import MultiDict

from api.http import ApiRequest, bad_request

INT_RE: Final = re.compile(r"0|[1-9][0-9]{0,17}")
TIME_MS_MAX: Final = 253_402_300_799_999
"""The last millisecond of year 9999 UTC: the latest time a query parameter may name."""


class QueryParams:
    """The query string, checked: only ``allowed`` names, each at most once, none empty."""

    def __init__(self, req: ApiRequest, *allowed: str) -> None:
        args: MultiDict[str, str] = req.raw.args
        for name in args:
            if name not in allowed:
                expected = ", ".join(allowed) or "none"
                raise bad_request(
                    f"unknown query parameter {name!r} (expected: {expected})", "unknown_parameter"
                )
            values = args.getlist(name)
            if len(values) > 1:
                raise bad_request(f"query parameter {name!r} is given more than once")
            if values[0] == "":
                raise bad_request(f"query parameter {name!r} is empty")
        self._args = args

    def text(self, name: str) -> str | None:
        value: str | None = self._args.get(name)
        return value

    def integer(self, name: str, low: int, high: int, default: int | None = None) -> int | None:
        raw = self._args.get(name)
        if raw is None:
            return default
        if not INT_RE.fullmatch(raw) or not low <= int(raw) <= high:
            raise bad_request(f"{name} must be an integer from {low} to {high}", f"invalid_{name}")
        return int(raw)

    def time_ms(self, name: str) -> int | None:
        """A time in milliseconds since the epoch, from 0 to ``TIME_MS_MAX``."""
        return self.integer(name, 0, TIME_MS_MAX)

    def limit(self, default: int, maximum: int) -> int:
        value = self.integer("limit", 1, maximum, default)
        assert value is not None
        return value
