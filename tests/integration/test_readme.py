"""The README's "Your first trade" walkthrough, run as written against a real ``make run``.

``python -m infra.run`` is started as a child on free ports (the gateway too) with a state dir
of its own, so a developer's ``make run`` may keep running beside it. The blocks marked
``<!-- walkthrough -->`` run in order in one bash (``set -euo pipefail``: a failing command
fails its block), in a directory whose ``.state`` is that state dir (the walkthrough reads the
admin's password from ``.state/admin.json``), with ``API`` set to the gateway's URL (the
walkthrough's first line defaults it to ``http://127.0.0.1:8080``). Every block must finish,
and the answers (balances, orders, trades, fees, market data, the audit) are exactly what the
README says. At the end SIGTERM stops the exchange and no process of it may be left.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from infra.ports import free_port
from infra.processes import REPO_ROOT, ProcId, proc_alive, process_tree
from tests.readme_blocks import README, order_types_blocks, walkthrough_blocks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CHAIN_BLOCK_RE = re.compile(r"^<!-- chain walkthrough -->\n```sh\n(.*?)^```$", re.S | re.M)
MARKER = "@@walkthrough block {} ok@@"
# What a developer's shell might hold that must not leak into the exchange under test.
_CONFIG_PREFIXES = (
    "PUBSUB_", "FIRESTORE_", "PG", "REDIS_", "GOOGLE_CLOUD_PROJECT", "COMMANDS_", "EVENTS_",
    "DEAD_LETTER_", "AUTH_", "API_", "JWT_", "OIDC_", "DATABASE_URL", "ETH_", "PORT",
)  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
    return {**env, **extra}


@dataclass
class LocalExchange:
    proc: subprocess.Popen[bytes]
    api: str
    workdir: Path
    output: list[str] = field(default_factory=list)
    processes: set[ProcId] = field(default_factory=set)


def _read_lines(proc: subprocess.Popen[bytes], out: list[str], up: threading.Event) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip("\n")
        out.append(line)
        if "The local exchange is up" in line:
            up.set()


@contextmanager
def local_exchange(workdir: Path, startup_timeout: float = 150.0) -> Iterator[LocalExchange]:
    """``python -m infra.run`` on free ports with ``workdir/.state``; stopped with SIGTERM."""
    api_port = free_port()
    cmd = [
        sys.executable, "-m", "infra.run", "--free-ports", "--api-port", str(api_port),
        "--state-dir", str(workdir / ".state"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=clean_env(PYTHONPATH=str(REPO_ROOT)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ex = LocalExchange(proc, f"http://127.0.0.1:{api_port}", workdir)
    up = threading.Event()
    reader = threading.Thread(target=_read_lines, args=(proc, ex.output, up), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not up.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("infra.run did not come up:\n" + "\n".join(ex.output[-60:]))
        ex.processes = process_tree(proc.pid)
        yield ex
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(10)
    assert code == 0, "\n".join(ex.output[-40:])
    assert ex.output[-1] == "stopped"
    deadline = time.monotonic() + 10
    while (left := [p for p in ex.processes if proc_alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"


@dataclass
class Walkthrough:
    blocks: list[list[Any]]
    """Per block, the JSON documents it printed (one per line), in order."""
    text: list[str]


def run_walkthrough(ex: LocalExchange, blocks: list[str], **env: str) -> Walkthrough:
    script = ["set -euo pipefail"]
    for i, block in enumerate(blocks):
        script += [block, f"printf '\\n{MARKER.format(i)}\\n'"]
    path = ex.workdir / "walkthrough.sh"
    path.write_text("\n".join(script) + "\n")
    result = subprocess.run(
        ["bash", str(path)],
        cwd=ex.workdir,
        env=clean_env(API=ex.api, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = result.stdout
    texts: list[str] = []
    for i in range(len(blocks)):
        marker = MARKER.format(i)
        assert marker in out, (
            f"walkthrough block {i} failed (bash exit {result.returncode}):\n{blocks[i]}\n"
            f"--- its output:\n{out}\n--- stderr:\n{result.stderr}"
        )
        text, out = out.split(marker, 1)
        texts.append(text)
    assert result.returncode == 0, result.stderr
    docs = [[orjson.loads(line) for line in t.splitlines() if line.strip()] for t in texts]
    return Walkthrough(docs, texts)


def without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in keys}


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory Postgres (running as the postgres user when we are root) can reach:
    pytest's tmp_path sits below a directory only its owner may enter."""
    path = Path(tempfile.mkdtemp(prefix="readme-walkthrough-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_your_first_trade(workdir: Path) -> None:
    blocks = walkthrough_blocks()
    with local_exchange(workdir) as ex:
        out = run_walkthrough(ex, blocks).blocks

    market, me, deposits, sell, buy, private, public, final = out
    assert market == [
        {
            "market": "ETH-USDT", "base": "ETH", "quote": "USDT", "tick": "0.01",
            "step": "0.0001", "min_amount": "0.0001", "min_notional": "1",
            "maker_fee": "0.001", "taker_fee": "0.002", "status": "open",
        }
    ]  # fmt: skip
    assert len(me) == 1 and me[0]["email"] == "alice@example.com" and me[0]["role"] == "user"
    alice_id = me[0]["user_id"]
    assert [(d["user_id"] == alice_id, d["asset"], d["amount"]) for d in deposits] == [
        (True, "ETH", "2"),
        (False, "USDT", "5000"),
    ]
    bob_id = deposits[1]["user_id"]

    [offer] = sell
    assert without(offer, "order_id", "ts") == {
        "market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2000", "amount": "1.5",
        "quote_amount": None, "time_in_force": "GTC", "post_only": False,
        "client_order_id": None, "status": "open", "filled": "0", "filled_quote": "0",
        "fee": "0", "reason": None,
    }  # fmt: skip
    [bid] = buy
    assert without(bid, "order_id", "ts") == {
        "market": "ETH-USDT", "side": "buy", "type": "limit", "price": "2010", "amount": "1",
        "quote_amount": None, "time_in_force": "GTC", "post_only": False,
        "client_order_id": None, "status": "filled", "filled": "1", "filled_quote": "2000",
        "fee": "0.002", "reason": None,
    }  # fmt: skip

    alice_bal, bob_bal, alice_orders, bob_orders, alice_trades, bob_trades = private
    assert alice_bal == {
        "ETH": {"available": "0.5", "frozen": "0.5"},
        "USDT": {"available": "1998", "frozen": "0"},
    }
    assert bob_bal == {
        "ETH": {"available": "0.998", "frozen": "0"},
        "USDT": {"available": "3000", "frozen": "0"},
    }
    [a_order] = alice_orders["orders"]
    assert a_order["order_id"] == offer["order_id"] and alice_orders["next_cursor"] is None
    assert (a_order["status"], a_order["filled"], a_order["filled_quote"]) == (
        "partially_filled", "1", "2000",
    )  # fmt: skip
    assert (a_order["fee"], a_order["fee_asset"], a_order["frozen"]) == ("2", "USDT", "0.5")
    [b_order] = bob_orders["orders"]
    assert (b_order["order_id"], b_order["status"], b_order["frozen"]) == (
        bid["order_id"], "filled", "0",
    )  # fmt: skip
    [a_fill] = alice_trades["trades"]
    [b_fill] = bob_trades["trades"]
    assert without(a_fill, "ts") == {
        "trade_id": 1, "market": "ETH-USDT", "order_id": offer["order_id"], "side": "sell",
        "role": "maker", "price": "2000", "amount": "1", "quote": "2000", "fee": "2",
        "fee_asset": "USDT",
    }  # fmt: skip
    assert without(b_fill, "ts") == {
        "trade_id": 1, "market": "ETH-USDT", "order_id": bid["order_id"], "side": "buy",
        "role": "taker", "price": "2000", "amount": "1", "quote": "2000", "fee": "0.002",
        "fee_asset": "ETH",
    }  # fmt: skip
    ts = a_fill["ts"]

    depth, trades, ticker, klines = public
    assert without(depth, "seq") == {"bids": [], "asks": [["2000", "0.5"]]}
    assert trades == {
        "trades": [
            {"trade_id": 1, "market": "ETH-USDT", "price": "2000", "amount": "1",
             "quote": "2000", "taker_side": "buy", "ts": ts}
        ]
    }  # fmt: skip
    assert without(ticker, "ts") == {
        "market": "ETH-USDT", "last": "2000", "open": "2000", "high": "2000", "low": "2000",
        "volume": "1", "quote_volume": "2000", "change": "0", "trades": 1,
    }  # fmt: skip
    assert klines == {
        "klines": [
            {"open_time": ts - ts % 60_000, "open": "2000", "high": "2000", "low": "2000",
             "close": "2000", "volume": "1", "quote_volume": "2000", "trades": 1}
        ]
    }  # fmt: skip

    cancelled, alice_final, bob_final, audit = final
    assert cancelled == {
        "order_id": offer["order_id"], "market": "ETH-USDT", "side": "sell",
        "status": "cancelled", "filled": "1", "filled_quote": "2000", "fee": "2",
        "reason": "cancelled_by_user",
    }  # fmt: skip
    assert alice_final == {
        "ETH": {"available": "1", "frozen": "0"},
        "USDT": {"available": "1998", "frozen": "0"},
    }
    assert bob_final == {
        "ETH": {"available": "0.998", "frozen": "0"},
        "USDT": {"available": "3000", "frozen": "0"},
    }
    assert audit["ok"] is True and audit["mismatches"] == [], audit
    assert audit["assets"] == {
        "ETH": {"balances": "2", "fees": "0.002", "deposits": "2", "withdrawals": "0",
                "ok": True},
        "USDT": {"balances": "5000", "fees": "2", "deposits": "5000", "withdrawals": "0",
                 "ok": True},
    }  # fmt: skip
    assert alice_id != bob_id


def test_order_types(workdir: Path) -> None:
    """Stop-loss and take-profit orders, an OCO list, amends, a good-till-date order and a
    stop released by a trade, as the README shows them."""
    with local_exchange(workdir) as ex:
        out = run_walkthrough(ex, order_types_blocks()).blocks
    first, stops, oco, amends, trigger = out
    assert [o["status"] for o in first] == ["open", "filled"]

    stop, take_profit, refused, erin_balances = stops
    assert (stop["status"], stop["stop"], stop["stop_price"], stop["price"]) == (
        "open", "stop_loss", "1950", "1940",
    )  # fmt: skip
    assert (take_profit["stop"], take_profit["type"], take_profit["status"]) == (
        "take_profit", "market", "open",
    )  # fmt: skip
    assert refused["error"]["code"] == "would_trigger", refused
    assert erin_balances["ETH"] == {"available": "1", "frozen": "1.5"}

    listed, frank_balances = oco
    assert without(listed, "list_id", "limit_order_id", "stop_order_id") == {
        "market": "ETH-USDT", "side": "buy", "status": "open", "reason": None,
    }  # fmt: skip
    assert listed["stop_order_id"] == listed["limit_order_id"] + 1
    assert frank_balances["USDT"] == {"available": "6940", "frozen": "2060"}

    reduced, moved, expired = amends
    assert (reduced["amount"], reduced["price"], reduced["kept_priority"]) == ("0.5", "1980", True)
    assert (reduced["frozen"], moved["price"], moved["kept_priority"]) == ("990", "1985", False)
    assert (expired["status"], expired["reason"]) == ("cancelled", "expired")
    assert "expires_at" in expired

    sold, released, frank_orders, frank_list, depth, audit = trigger
    assert (sold["status"], sold["filled"]) == ("filled", "0.8")
    assert (released["status"], released["price"], released["amount"]) == ("open", "1940", "1")
    assert released["stop"] == "stop_loss" and released["triggered_ts"] >= released["ts"]
    reasons = {o["order_id"]: (o["status"], o["reason"]) for o in frank_orders["orders"]}
    assert reasons[listed["stop_order_id"]] == ("cancelled", "oco")
    assert reasons[listed["limit_order_id"]] == ("partially_filled", None)
    assert (frank_list["list_id"], frank_list["status"], frank_list["reason"]) == (
        listed["list_id"], "done", "traded",
    )  # fmt: skip
    assert without(depth, "seq") == {"bids": [["1900", "0.7"]], "asks": [["1940", "1"]]}
    assert audit["ok"] is True, audit


def test_deposit_trade_and_withdraw_on_the_local_chain(workdir: Path) -> None:
    blocks = CHAIN_BLOCK_RE.findall(README.read_text())
    assert len(blocks) == 4
    with local_exchange(workdir) as ex:
        out = run_walkthrough(ex, blocks, PY=sys.executable, PYTHONPATH=str(REPO_ROOT)).blocks
    addresses, deposits, trade, withdrawals = out
    [dave_address] = addresses
    assert dave_address["asset"] == "USDT" and dave_address["confirmations"] == 3
    assert dave_address["address"].startswith("0x") and dave_address["kind"] == "erc20"
    carol_deposits, dave_balances = deposits
    [credited] = carol_deposits["deposits"]
    assert (credited["asset"], credited["amount"], credited["status"]) == ("ETH", "2", "credited")
    assert credited["confirmations"] >= credited["confirmations_required"] == 3
    assert dave_balances["USDT"] == {"available": "5000", "frozen": "0"}
    sell, buy = trade
    assert sell["status"] == "open" and buy["status"] == "filled"
    w1, carol, dave, outside_usdt, outside_eth = withdrawals
    assert (w1["state"], w1["amount"], w1["fee"]) == ("confirmed", "1000", "1")
    assert w1["tx_hash"].startswith("0x")
    assert carol == {
        "ETH": {"available": "1", "frozen": "0"},
        "USDT": {"available": "997", "frozen": "0"},
    }
    assert dave == {
        "ETH": {"available": "0.497", "frozen": "0"},
        "USDT": {"available": "3000", "frozen": "0"},
    }
    assert (outside_usdt["USDT"], outside_usdt["ETH"]) == ("1000", "0")
    assert (outside_eth["USDT"], outside_eth["ETH"]) == ("0", "0.5")
