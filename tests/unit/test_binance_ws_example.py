"""examples/ccxt_pro_watch.py and docs/binance-api.md point ccxt.pro's streams at the ws service
the same way: market streams on ``<WS>/ws``, the account on ``<WS>/ws-api/v3``, REST as
ccxt's."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ccxt_pro_watch.py"


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("ccxt_pro_watch", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_points_ccxt_pro_at_the_ws_service() -> None:
    ex = _example().exchange("http://127.0.0.1:8080", "ws://127.0.0.1:8081", "ak_0", "secret")
    api = ex.urls["api"]
    assert api["public"] == api["private"] == "http://127.0.0.1:8080/api/v3"
    assert api["ws"]["spot"] == "ws://127.0.0.1:8081/ws"
    assert api["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:8081/ws-api/v3"
    assert ex.options["fetchMarkets"]["types"] == ["spot"]
    assert not ex.isSandboxModeEnabled


def test_the_docs_show_the_examples_stream_urls() -> None:
    docs = (REPO / "docs" / "binance-api.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", docs, re.S) if "ccxt.pro" in b]
    assert len(blocks) == 1
    example = EXAMPLE.read_text()
    needle = '"ws": {"spot": WS + "/ws", "ws-api": {"spot": WS + "/ws-api/v3"}}'
    assert needle in blocks[0]
    assert needle.replace("WS", "ws") in example
