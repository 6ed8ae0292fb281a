"""The replay tool: from scratch, from a snapshot and from an exported file, one state hash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from msgspec.structs import asdict

from matcher_service.engine.snapshot import snapshot, state_hash
from matcher_service.persistence import Store
from matcher_service.replay import from_file, replay, summary
from shared.config import MatcherConfig
from shared.db import connect
from shared.messages import AmendOrder, AnyCommand, PlaceOco, PlaceOrder
from tests.integration.matcher_helpers import (
    ETH,
    USDT,
    funded,
    market_setup,
    oplog_count,
    publish,
    running,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_replay_paths_agree(matcher_cfg: MatcherConfig, tmp_path: Path) -> None:
    orders: list[AnyCommand] = [
        PlaceOrder(id=f"p{i}", user=f"u{i % 2}", market="ETH-USDT",
                   side="buy" if i % 3 else "sell", price=(2000 + i % 7) * USDT, amount=ETH // 5)
        for i in range(40)
    ]  # fmt: skip
    # Stop orders resting through the snapshot (some trigger after it), an OCO list, a
    # good-till-date order and amends: every path replays to one state.
    for i in (2, 8, 14):
        orders[i] = PlaceOrder(
            id=f"p{i}", user=f"u{i % 2}", market="ETH-USDT", side="sell", price=1989 * USDT,
            amount=ETH // 5, stop="stop_loss", stop_price=1990 * USDT,
        )  # fmt: skip
    orders[5] = PlaceOco(
        id="p5", user="u1", market="ETH-USDT", side="sell", amount=ETH // 5, price=2100 * USDT,
        stop_price=1950 * USDT,
    )  # fmt: skip
    orders[10] = PlaceOrder(
        id="p10", user="u0", market="ETH-USDT", side="buy", price=1900 * USDT, amount=ETH // 5,
        expires_at=2**50,
    )  # fmt: skip
    for i in (24, 27):
        orders[i] = PlaceOrder(
            id=f"p{i}", user=f"u{i % 2}", market="ETH-USDT", side="buy", price=2010 * USDT,
            amount=ETH // 10, stop="stop_loss", stop_price=2004 * USDT,
        )  # fmt: skip
    orders[30] = AmendOrder(id="p30", user="u0", order_id=1, price=1999 * USDT)
    orders[31] = AmendOrder(id="p31", user="u1", order_id=2, amount=ETH // 10)
    with running(matcher_cfg) as matcher:
        publish(matcher_cfg.pubsub, [*market_setup(), *funded(["u0", "u1"]), *orders[:20]])
        wait_for(lambda: oplog_count(matcher_cfg) == 27, what="first half")
        assert matcher.engine.stops and matcher.engine.lists and matcher.engine.expiries
        matcher.write_snapshot()
        publish(matcher_cfg.pubsub, orders[20:])
        wait_for(lambda: oplog_count(matcher_cfg) == 47, what="second half")
        live = state_hash(matcher.engine)

    env = {
        **os.environ,
        **{f"PG{k.upper()}": str(v) for k, v in asdict(matcher_cfg.postgres).items()
           if k in ("user", "database", "host", "port")},
    }  # fmt: skip
    env["PGDATABASE"] = matcher_cfg.postgres.database
    export = tmp_path / "oplog.jsonl"
    run = [sys.executable, "-m", "matcher_service.replay"]
    subprocess.run([*run, "--export", str(export)], env=env, check=True)
    assert len(export.read_text().splitlines()) == 47
    scratch = subprocess.run(run, env=env, check=True, capture_output=True, text=True).stdout
    from_snap = subprocess.run(
        [*run, "--from-snapshot"], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert f'"state_hash": "{live}"' in scratch
    assert f'"state_hash": "{live}"' in from_snap

    engine = replay(from_file(export))
    report = summary(engine)
    assert report["state_hash"] == live and report["audit"] == []
    assert report["seq"] == 47

    db = connect(matcher_cfg.postgres)
    snap = Store(db).latest_snapshot()
    db.close()
    assert snap is not None and snap[0] == 27
    assert snap[2] != snapshot(engine)  # an older state, kept for replay
