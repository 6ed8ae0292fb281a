"""The depth route's answers, cut and encoded once per snapshot and limit
(functions.queries.main.DepthAnswers): always the cut of the very bytes Redis gave."""

from __future__ import annotations

from typing import Any

import orjson

from functions.queries.main import DepthAnswers


def snapshot(seq: int, levels: int) -> bytes:
    bids = [[f"{2000 - i}", f"0.{i + 1}"] for i in range(levels)]
    asks = [[f"{2001 + i}", f"1.{i}"] for i in range(levels)]
    return orjson.dumps({"market": "ETH-USDT", "bids": bids, "asks": asks, "seq": seq})


def cut(raw: bytes, limit: int) -> dict[str, Any]:
    whole = orjson.loads(raw)
    return {"bids": whole["bids"][:limit], "asks": whole["asks"][:limit], "seq": whole["seq"]}


def test_each_limit_is_the_cut_of_the_snapshot() -> None:
    answers, raw = DepthAnswers(), snapshot(7, 50)
    for limit in (20, 1, 50, 20, 3):
        body = answers.body("ETH-USDT", raw, limit)
        assert orjson.loads(body) == cut(raw, limit)
    assert list(orjson.loads(answers.body("ETH-USDT", raw, 2))) == ["bids", "asks", "seq"]


def test_a_new_snapshot_is_never_answered_from_the_last() -> None:
    answers = DepthAnswers()
    first, second = snapshot(7, 50), snapshot(8, 50)
    assert orjson.loads(answers.body("ETH-USDT", first, 20))["seq"] == 7
    assert orjson.loads(answers.body("ETH-USDT", second, 20)) == cut(second, 20)
    # The same bytes in a new object (as each read from Redis gives) are the same snapshot.
    again = bytes(bytearray(second))
    assert answers.body("ETH-USDT", again, 20) is answers.body("ETH-USDT", second, 20)
    # A snapshot written back (a matcher's recovery) is cut afresh, not taken for another one.
    assert orjson.loads(answers.body("ETH-USDT", first, 20)) == cut(first, 20)


def test_markets_are_kept_apart_and_none_written_is_an_empty_book() -> None:
    answers = DepthAnswers()
    eth, btc = snapshot(3, 5), snapshot(9, 2)
    assert orjson.loads(answers.body("ETH-USDT", eth, 20)) == cut(eth, 20)
    assert orjson.loads(answers.body("BTC-USDT", btc, 20)) == cut(btc, 20)
    assert orjson.loads(answers.body("ETH-USDT", eth, 20)) == cut(eth, 20)
    assert orjson.loads(answers.body("SOL-USDT", None, 20)) == {"bids": [], "asks": [], "seq": 0}
