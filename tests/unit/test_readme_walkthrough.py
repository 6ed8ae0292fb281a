"""The README's walkthrough blocks are there, in the shape the walkthrough test runs them."""

from __future__ import annotations

from tests.readme_blocks import order_types_blocks, walkthrough_blocks


def test_the_walkthrough_blocks_are_there() -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) == 8
    assert blocks[0].startswith("API=${API:-http://127.0.0.1:8080}\n")
    assert all("$API/v1/" in b for b in blocks)


def test_the_order_types_blocks_are_there() -> None:
    blocks = order_types_blocks()
    assert len(blocks) == 5
    assert blocks[0].startswith("API=${API:-http://127.0.0.1:8080}\n")
    assert all("$API/v1/" in b or "order " in b for b in blocks)
