"""Asset and market definitions the engine refuses."""

from __future__ import annotations

import pytest

from matcher_service.engine import Engine
from shared.messages import CreateAsset, CreateMarket, Reason


@pytest.mark.parametrize("code", ["ETH\n", "eth", "E", "ETH-X", "A" * 13, ""])
def test_bad_asset_codes_are_refused(code: str) -> None:
    applied = Engine().apply(CreateAsset(id="a", asset=code, precision=8))
    assert (applied.ok, applied.reason) == (False, Reason.INVALID)


def test_a_tick_times_step_finer_than_the_quote_precision_is_refused() -> None:
    engine = Engine()
    engine.apply(CreateAsset(id="a1", asset="ETH", precision=8))
    engine.apply(CreateAsset(id="a2", asset="USDT", precision=6))
    applied = engine.apply(
        CreateMarket(
            id="m", market="ETH-USDT", base="ETH", quote="USDT", tick="0.000001",
            step="0.00000001", min_amount="0", min_notional="0", maker_fee="0",
            taker_fee="0",
        )
    )  # fmt: skip
    assert (applied.ok, applied.reason) == (False, Reason.INVALID)
    assert engine.markets == {}
