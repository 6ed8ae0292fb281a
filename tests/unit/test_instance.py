"""One idiom for what an instance keeps, one reset for all of it."""

from __future__ import annotations

from shared.instance import per_instance, reset_instance


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
