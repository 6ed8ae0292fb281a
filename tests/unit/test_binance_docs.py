"""docs/binance-api.md and examples/ccxt_bot.py configure ccxt the same way, and that way keeps
every section of ccxt's binance class on the exchange's base URL that a spot bot uses."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("ccxt_bot", REPO / "examples" / "ccxt_bot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_points_ccxt_at_the_exchange() -> None:
    ex = _example().exchange("http://127.0.0.1:8080", "ak_0", "secret")
    api = ex.urls["api"]
    assert api["public"] == api["private"] == "http://127.0.0.1:8080/api/v3"
    assert api["sapi"].startswith("http://127.0.0.1:8080/")
    assert api["v1"].startswith("http://127.0.0.1:8080/")
    assert ex.options["fetchMarkets"]["types"] == ["spot"]
    assert ex.options["fetchCurrencies"] is False and ex.options["fetchMargins"] is False
    assert ex.market_id  # a ccxt exchange, not sandboxed
    assert not ex.isSandboxModeEnabled


def test_the_docs_show_the_examples_configuration() -> None:
    docs = (REPO / "docs" / "binance-api.md").read_text()
    block = re.search(r"```python\n(.*?)```", docs, re.S)
    assert block is not None
    example = (REPO / "examples" / "ccxt_bot.py").read_text()
    for needle in (
        '"public": BASE + "/api/v3"', '"private": BASE + "/api/v3"', '"v1": BASE + "/api/v1"',
        '"sapi": BASE + "/sapi/v1"', '"fetchMarkets": {"types": ["spot"]}',
        '"fetchCurrencies": False', '"fetchMargins": False',
    ):  # fmt: skip
        assert needle in block.group(1), needle
        assert needle.replace("BASE", "base") in example, needle
