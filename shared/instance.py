"""What a function instance builds once and keeps for its life (configuration, clients,
connections), and the one reset that forgets all of it (tests that change the environment).

::

    @per_instance
    def database() -> SharedConnection:
        return SharedConnection(PostgresConfig.load())

``database()`` builds on first use and answers the same object after; ``reset_instance()``
forgets every such object, in the reverse order of their building, calling the ``close()``
of those that have one (connections, clients).

A function keeps all of it in one services object, built per instance, whose members are
each built on their first use (a request that needs no database opens none)::

    class Services:
        @lazy
        def db(self) -> SharedConnection:
            return SharedConnection(PostgresConfig.load())

        def close(self) -> None:
            close_members(self)

    @per_instance
    def services() -> Services:
        return Services()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
Owner = TypeVar("Owner")

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


class lazy(Generic[Owner, T]):  # noqa: N801 (a decorator, named like property)
    """Decorator of a method: a member of a per-instance object, built by the method on its
    first use and kept with the object (closed with it by ``close_members``). A build that
    raises keeps nothing: the next use tries again."""

    def __init__(self, build: Callable[[Owner], T]) -> None:
        self._build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type[Owner], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Owner] | None = None) -> lazy[Owner, T]: ...

    @overload
    def __get__(self, obj: Owner, owner: type[Owner] | None = None) -> T: ...

    def __get__(self, obj: Owner | None, owner: type[Owner] | None = None) -> lazy[Owner, T] | T:
        if obj is None:
            return self
        # Once built, the value is in the object's __dict__, which attribute lookup reads
        # before this (non-data) descriptor: only the first use comes here.
        members: dict[str, Any] = obj.__dict__
        with _lock:
            if self.name not in members:
                members[self.name] = self._build(obj)
            value: T = members[self.name]
            return value


def close_members(obj: object) -> None:
    """Forget the ``lazy`` members ``obj`` has built, the last built first, calling the
    ``close()`` of those that have one."""
    members: dict[str, Any] = obj.__dict__
    for name in reversed(list(members)):
        if isinstance(getattr(type(obj), name, None), lazy):
            close = getattr(members.pop(name), "close", None)
            if callable(close):
                close()
