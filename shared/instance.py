"""What a function instance builds once and keeps for its life (configuration, clients,
connections), and the one reset that forgets all of it (tests that change the environment).

::

    @per_instance
    def database() -> SharedConnection:
        return SharedConnection(PostgresConfig.load())

``database()`` builds on first use and answers the same object after; ``reset_instance()``
forgets every such object, in the reverse order of their building, calling the ``close()``
of those that have one (connections, clients).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_lock = threading.RLock()
_built: list[PerInstance[object]] = []
"""The ones holding a value, in the order they were built."""


class PerInstance(Generic[T]):
    """``build()`` once per instance; ``reset()`` forgets (and closes) it."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._has = False
        self.__doc__ = build.__doc__
        self.__name__ = getattr(build, "__name__", "per_instance")

    def __call__(self) -> T:
        if self._has:
            return self._value  # type: ignore[return-value]
        with _lock:
            if not self._has:
                self._value = self._build()
                self._has = True
                _built.append(self)  # type: ignore[arg-type]
            return self._value

    @property
    def built(self) -> bool:
        return self._has

    def reset(self) -> None:
        with _lock:
            if not self._has:
                return
            value, self._value, self._has = self._value, None, False
            if self in _built:
                _built.remove(self)  # type: ignore[arg-type]
            close = getattr(value, "close", None)
            if callable(close):
                close()


def per_instance(build: Callable[[], T]) -> PerInstance[T]:
    """Decorator: the function's result, built on first use and kept for the instance's life
    (closed, when it has a ``close()``, and forgotten by ``reset_instance``)."""
    return PerInstance(build)


def reset_instance() -> None:
    """Forget everything built per instance, the last built first (tests that change the
    environment)."""
    with _lock:
        for item in reversed(list(_built)):
            item.reset()
