"""One idiom for what an instance keeps, one reset for all of it."""

from __future__ import annotations

import pytest

from shared.instance import close_members, lazy, per_instance, reset_instance


class _Client:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_built_once_then_closed_and_forgotten_by_the_one_reset() -> None:
    builds: list[str] = []

    @per_instance
    def client() -> _Client:
        builds.append("client")
        return _Client()

    @per_instance
    def setting() -> int:
        builds.append("setting")
        return 42

    first = client()
    assert client() is first and setting() == 42 and setting() == 42
    assert builds == ["client", "setting"]
    reset_instance()
    assert first.closed
    assert client() is not first
    assert builds == ["client", "setting", "client"]


def test_an_unbuilt_one_is_not_built_by_the_reset() -> None:
    @per_instance
    def never() -> int:
        raise AssertionError("built")

    reset_instance()
    assert not never.built


class _Services:
    """A function's one services object: each member built on first use."""

    def __init__(self, builds: list[str]) -> None:
        self.builds = builds

    @lazy
    def db(self) -> _Client:
        self.builds.append("db")
        return _Client()

    @lazy
    def port(self) -> int:
        self.builds.append("port")
        return 5432

    @lazy
    def broken(self) -> int:
        self.builds.append("broken")
        raise ValueError("not configured")

    def close(self) -> None:
        close_members(self)


def test_members_are_built_on_first_use_and_closed_with_the_object() -> None:
    builds: list[str] = []

    @per_instance
    def services() -> _Services:
        return _Services(builds)

    svc = services()
    assert builds == []  # nothing a request does not use
    db = svc.db
    assert svc.db is db and svc.port == 5432 and svc.port == 5432
    assert builds == ["db", "port"]
    reset_instance()
    assert db.closed
    assert services() is not svc
    assert services().db is not db


def test_a_member_that_fails_to_build_is_tried_again() -> None:
    builds: list[str] = []
    svc = _Services(builds)
    for _ in range(2):
        with pytest.raises(ValueError, match="not configured"):
            _ = svc.broken
    assert builds == ["broken", "broken"]
    svc.close()  # nothing built, nothing to close
