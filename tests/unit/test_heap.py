"""The start-up heap is moved out of the collector's full passes."""

from __future__ import annotations

import gc
import logging

import pytest

from shared import heap


class _Node:
    """A tracked object (instances of plain classes are)."""


def test_freeze_moves_the_heap_out_of_collections(caplog: pytest.LogCaptureFixture) -> None:
    before = _Node()
    assert gc.is_tracked(before)
    gc.unfreeze()
    try:
        with caplog.at_level(logging.INFO, logger="heap"):
            heap.freeze_startup_heap("test")
        frozen = gc.get_freeze_count()
        assert frozen > 0
        # A full pass walks only what came after: the frozen objects are not among them.
        assert all(o is not before for o in gc.get_objects())
        after = _Node()
        assert any(o is after for o in gc.get_objects())
        (record,) = [r for r in caplog.records if r.getMessage() == "start-up heap frozen"]
        assert record.__dict__["part"] == "test"
        assert record.__dict__["frozen_objects"] >= frozen > 0  # some since freed
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
    assert any(o is before for o in gc.get_objects())
