"""A book side's ``best`` key, which the order path reads instead of asking the sorted dict,
follows every change the engine makes to a side."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from matcher_service.engine.book import Level, Side

# ("add", key): a level at key (replacing one there); ("del", i): delete the i-th key (mod
# the count); ("pop", 0) / ("pop", -1): pop the best / the worst level.
change = st.one_of(
    st.tuples(st.just("add"), st.integers(-50, 50)),
    st.tuples(st.just("del"), st.integers(0, 100)),
    st.tuples(st.just("pop"), st.sampled_from([0, -1])),
)


@given(st.lists(change, max_size=60))
def test_best_is_the_first_key_after_every_change(changes: list[tuple[str, int]]) -> None:
    side = Side()
    for kind, arg in changes:
        if kind == "add":
            side[arg] = Level(abs(arg))
        elif kind == "del" and side:
            del side[list(side)[arg % len(side)]]
        elif kind == "pop" and side:
            side.popitem(arg)
        assert side.best == (min(side) if side else None)


def test_a_popped_or_deleted_best_hands_over_to_the_next_key() -> None:
    side = Side()
    for key in (5, -3, 7):
        side[key] = Level(abs(key))
    assert side.best == -3
    assert side.popitem(0)[0] == -3
    assert side.best == 5
    del side[5]
    assert side.best == 7
    side.popitem(0)
    assert side.best is None
