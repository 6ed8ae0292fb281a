"""The wallet's jobs against a real anvil node, a real matcher, Postgres, Redis, Pub/Sub and
Firestore: deposits credited after exactly N confirmations and once, reorganisations, what is
never credited, the sweep, withdrawals end to end with crashes and a revert, a stuck
withdrawal replaced, and on-chain conservation after each scenario.

anvil mines one block per transaction here (automine) and ``anvil_mine`` adds empty blocks, so
confirmations are counted exactly; every test runs between an ``evm_snapshot`` and an
``evm_revert`` of the module's node, so each starts from the same chain."""

from __future__ import annotations

import http.server
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import msgspec
import orjson
import pytest
import redis
from eth_account import Account
from eth_account.signers.local import LocalAccount
from google.cloud import firestore
from web3 import Web3

from infra.devchain import send_eth
from infra.processes import REPO_ROOT
from infra.services import Stack, StackConfig
from infra.services.anvil import eth_rpc
from infra.token import USDT_DECIMALS, deploy_token, mint, transfer
from shared.config import MatcherConfig, PostgresConfig, SecretSource, WalletConfig
from shared.db import Database, connect
from shared.messages import RequestWithdrawal
from tests.integration.matcher_helpers import market_setup, publish, running, wait_for
from wallet import addresses
from wallet.assets import load_asset_chains
from wallet.audit import ChainAudit, audit_chain
from wallet.chain import connect as chain_connect
from wallet.chain import token_balance
from wallet.jobs import Runtime, send_once, sweep_once, watch_once
from wallet.keys import HdWallet, new_mnemonic
from wallet.sender import Steps, run_sender

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHAIN_ID = 31337
N = 3  # confirmations for both assets here
GWEI = 10**9
ETHER = 10**18
USDT_UNIT = 10**USDT_DECIMALS
# anvil's dev accounts 0 (token owner, funder) and 1..2 (outside senders)
FUNDER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
OUTSIDER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
OUTSIDER2_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
OPERATOR_ETH = 2 * ETHER  # put in the hot wallet for withdrawal gas


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    with Stack(StackConfig.with_free_ports(), services=["anvil"]) as stack:
        yield stack.url("anvil")


@dataclass
class Wallet:
    w3: Web3
    url: str
    rt: Runtime
    cfg: WalletConfig
    db: Database
    token: str
    hd: HdWallet
    hot: LocalAccount
    gas: LocalAccount
    addr: dict[str, str]

    # ---- the chain
    def mine(self, blocks: int = 1) -> None:
        eth_rpc(self.url, "anvil_mine", [hex(blocks)])

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    def send_eth(self, key: str, to: str, value: int) -> bytes:
        return send_eth(self.w3, key, to, value)

    def send_usdt(self, key: str, to: str, amount: int) -> None:
        mint(self.w3, FUNDER_KEY, self.token, Account.from_key(key).address, amount)
        transfer(self.w3, key, self.token, to, amount)

    def eth_of(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def usdt_of(self, address: str) -> int:
        return token_balance(self.w3, self.token, address)

    # ---- the exchange
    def watch(self) -> dict[str, Any]:
        return watch_once(self.rt)

    def balance(self, user: str, asset: str) -> tuple[int, int]:
        rows = self.db.run(
            "SELECT available, frozen FROM balances WHERE user_id = :u AND asset = :a",
            u=user, a=asset,
        )  # fmt: skip
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def deposits(self, user: str) -> list[tuple[str, str, int, int, str]]:
        return [
            (str(r[0]), str(r[1]), int(r[2]), int(r[3]), str(r[4]))
            for r in self.db.run(
                "SELECT ref, asset, amount, dust, status FROM chain_deposits WHERE user_id = :u"
                " ORDER BY block_number, log_index",
                u=user,
            )
        ]

    def credits(self, ref_like: str = "%") -> int:
        return int(self.db.run("SELECT count(*) FROM deposits WHERE ref LIKE :r", r=ref_like)[0][0])

    def watch_until_credited(self, user: str, asset: str, amount: int) -> None:
        def done() -> bool:
            self.watch()
            return self.balance(user, asset)[0] >= amount

        wait_for(done, 30, f"{user}'s {asset} credited")

    def request_withdrawal(self, user: str, asset: str, amount: int, fee: int, to: str) -> str:
        """What POST /v1/withdrawals stores and publishes (the route is tested on its own)."""
        wid = uuid.uuid4().hex
        chains = load_asset_chains(self.rt.redis, N)
        self.db.run(
            "INSERT INTO withdrawal_requests (withdrawal_id, user_id, asset, amount, fee,"
            " token_amount, address, chain_id, state, command_id)"
            " VALUES (:w, :u, :a, :amt, :fee, :ta, :to, :c, 'requested', :cid)",
            w=wid, u=user, a=asset, amt=amount, fee=fee, ta=chains[asset].to_token(amount),
            to=to, c=CHAIN_ID, cid=f"wd:{wid}",
        )  # fmt: skip
        self.rt.publish(
            RequestWithdrawal(
                id=f"wd:{wid}", user=user, asset=asset, amount=amount, fee=fee, withdrawal_id=wid
            ),
            user,
        )
        wait_for(
            lambda: bool(self.db.run("SELECT 1 FROM withdrawals WHERE withdrawal_id = :w", w=wid)),
            20,
            "withdrawal held",
        )
        return wid

    def withdrawal(self, wid: str) -> tuple[str, str | None, str | None]:
        r = self.db.run(
            "SELECT r.state, r.tx_hash, w.state FROM withdrawal_requests r"
            " LEFT JOIN withdrawals w USING (withdrawal_id) WHERE withdrawal_id = :w",
            w=wid,
        )[0]
        return str(r[0]), r[1], r[2]

    def send_until(self, wid: str, state: str, matcher_state: str) -> None:
        def done() -> bool:
            send_once(self.rt)
            self.mine()
            s, _tx, m = self.withdrawal(wid)
            return s == state and m == matcher_state

        wait_for(done, 60, f"withdrawal {state}/{matcher_state}")

    def sweep_until_quiet(self) -> None:
        """Run the sweep (mining between runs) until a run sends nothing and nothing is open."""

        def quiet() -> bool:
            report = sweep_once(self.rt)
            self.mine()
            open_txs = self.db.run(
                "SELECT count(*) FROM wallet_txs WHERE purpose <> 'withdrawal'"
                " AND status IN ('signed', 'broadcast')"
            )[0][0]
            return not report["swept"] and not report["topped_up"] and int(open_txs) == 0

        wait_for(quiet, 60, "sweep quiet")

    def audit(self) -> dict[str, int]:
        """Difference between held on chain and what the books say, per asset (0 = exact)."""
        return {name: a.difference for name, a in self.chain_audit().assets.items()}

    def chain_audit(self, **limits: int) -> ChainAudit:
        owners = addresses.owners(self.rt.firestore, CHAIN_ID)
        return audit_chain(
            self.db, self.w3, CHAIN_ID, load_asset_chains(self.rt.redis, N), owners,
            self.hot.address, operator_funding=OPERATOR_ETH, gas_wallet=self.gas.address,
            start_block=self.cfg.start_block, **limits,
        )  # fmt: skip


@pytest.fixture
def w(
    node: str,
    matcher_cfg: MatcherConfig,
    pg: PostgresConfig,
    redis_db: redis.Redis,
    firestore_db: firestore.Client,
) -> Iterator[Wallet]:
    snapshot = eth_rpc(node, "evm_snapshot")
    w3 = Web3(Web3.HTTPProvider(node, request_kwargs={"timeout": 10}))
    token = deploy_token(w3, FUNDER_KEY, "Tether USD", "USDT", USDT_DECIMALS)
    hd_words = new_mnemonic()
    hd = HdWallet.from_mnemonic(hd_words)
    hot, gas = Account.create(), Account.create()
    cfg = WalletConfig(
        rpc_url=node, chain_id=CHAIN_ID,
        mnemonic=SecretSource("WALLET_MNEMONIC", value=hd_words),
        hot_wallet_key=SecretSource("HOT_WALLET_KEY", value=hot.key.hex()),
        gas_wallet_key=SecretSource("GAS_WALLET_KEY", value=gas.key.hex()),
        redis_url=os.environ["REDIS_URL"], hot_wallet_address=hot.address,
        gas_wallet_address=gas.address, confirmations=N,
        start_block=int(w3.eth.block_number) + 1, replace_after_s=3600,
    )  # fmt: skip
    pubsub = matcher_cfg.pubsub
    rt = Runtime(cfg=cfg, postgres=pg, pubsub=pubsub, redis=redis_db, firestore=firestore_db)
    db = connect(pg)
    with running(matcher_cfg):
        publish(pubsub, market_setup())
        wait_for(lambda: redis_db.hlen("md:assets") == 2, 20, "assets listed")
        chains: dict[Any, Any] = {
            "ETH": (
                '{"kind": "native", "contract": null, "decimals": 18, "confirmations": 3,'
                ' "min_deposit": "0.001", "withdrawal_fee": "0.0005",'
                ' "min_withdrawal": "0.001", "sweep_threshold": "0.0001"}'
            ),
            "USDT": (
                f'{{"kind": "erc20", "contract": "{token.lower()}", "decimals": 6,'
                ' "confirmations": 3, "min_deposit": "1", "withdrawal_fee": "1",'
                ' "min_withdrawal": "5", "sweep_threshold": "1"}'
            ),
        }
        redis_db.hset("md:asset_chains", mapping=chains)
        for name, chain in chains.items():  # the durable copy, as the admin route writes it
            firestore_db.collection("assets").document(name).set(
                {"asset": name, "chain": orjson.loads(chain)}
            )
        next_index = addresses.next_index_from(lambda: db)
        addr = {
            user: addresses.allocate(firestore_db, next_index, hd, CHAIN_ID, user)
            for user in ("alice", "bob")
        }
        wallet = Wallet(w3, node, rt, cfg, db, token, hd, hot, gas, addr)
        wallet.send_eth(FUNDER_KEY, gas.address, 10 * ETHER)
        wallet.send_eth(FUNDER_KEY, hot.address, OPERATOR_ETH)
        try:
            yield wallet
        finally:
            db.close()
    eth_rpc(node, "evm_revert", [snapshot])


# --------------------------------------------------------------------------------------------
# deposits
# --------------------------------------------------------------------------------------------


def test_eth_and_usdt_deposits_credit_after_exactly_n_confirmations_once(w: Wallet) -> None:
    dust = 123  # wei below ETH's precision (8 decimals: units of 10**10 wei)
    w.send_eth(OUTSIDER_KEY, w.addr["alice"], 3 * ETHER // 2 + dust)
    w.send_usdt(OUTSIDER_KEY, w.addr["alice"], 250 * USDT_UNIT + 500_000)
    # The USDT transfer's block is the head: 1 confirmation; the ETH one has 3 (mint, transfer).
    w.watch()
    deposits = w.deposits("alice")
    assert [(d[1], d[2], d[3]) for d in deposits] == [
        ("ETH", 150_000_000, dust),
        ("USDT", 250_500_000, 0),
    ]
    eth_ref, usdt_ref = deposits[0][0], deposits[1][0]
    assert eth_ref.endswith(":-1") and eth_ref.startswith(f"{CHAIN_ID}:0x")
    # ETH had 3 confirmations at that run: crediting; USDT (1 of 3): pending.
    statuses = {d[1]: d[4] for d in w.deposits("alice")}
    assert statuses == {"ETH": "crediting", "USDT": "pending"}
    wait_for(lambda: w.balance("alice", "ETH") == (150_000_000, 0), 20, "ETH credited")
    w.mine()  # USDT: 2 of 3
    w.watch()
    time.sleep(0.5)
    assert w.balance("alice", "USDT") == (0, 0)
    assert {d[1]: d[4] for d in w.deposits("alice")}["USDT"] == "pending"
    w.mine()  # 3 of 3
    # Two overlapping runs at the moment of crediting: one credit.
    threads = [threading.Thread(target=w.watch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: w.balance("alice", "USDT") == (250_500_000, 0), 20, "USDT credited")
    for _ in range(3):
        w.mine()
        w.watch()
    assert {d[1]: d[4] for d in w.deposits("alice")} == {"ETH": "credited", "USDT": "credited"}
    assert w.credits(eth_ref) == 1 and w.credits(usdt_ref) == 1
    assert w.balance("alice", "ETH") == (150_000_000, 0)
    assert w.balance("alice", "USDT") == (250_500_000, 0)
    assert w.audit() == {"ETH": 0, "USDT": 0}


def test_reorg_before_confirmation_never_credits_and_a_replay_credits_once(w: Wallet) -> None:
    before = eth_rpc(w.url, "evm_snapshot")
    raw = w.send_eth(OUTSIDER_KEY, w.addr["bob"], 2 * ETHER)
    w.watch()
    [(ref, _, amount, _, status)] = w.deposits("bob")
    assert (amount, status) == (200_000_000, "pending")
    # The block holding the deposit leaves the chain; a longer chain without it replaces it.
    eth_rpc(w.url, "evm_revert", [before])
    w.mine(2)
    report = w.watch()
    assert report["reorg_to"] is not None and report["orphaned"] == 1
    assert [d[4] for d in w.deposits("bob")] == ["orphaned"]
    w.mine(N + 2)
    w.watch()
    time.sleep(0.5)
    assert [d[4] for d in w.deposits("bob")] == ["orphaned"]
    assert w.balance("bob", "ETH") == (0, 0) and w.credits() == 0
    # The same transaction is mined again in another block: pending again, credited once.
    w.w3.eth.send_raw_transaction(raw)
    w.watch()
    assert [(d[0], d[4]) for d in w.deposits("bob")] == [(ref, "pending")]
    w.mine(N)
    w.watch_until_credited("bob", "ETH", 200_000_000)
    for _ in range(2):
        w.mine()
        w.watch()
    assert w.credits() == 1 and w.balance("bob", "ETH") == (200_000_000, 0)
    assert w.audit() == {"ETH": 0, "USDT": 0}


def test_failed_unlisted_and_too_small_transfers_are_never_credited(w: Wallet) -> None:
    # A token transfer that fails on chain (status 0: more than the sender holds).
    mint(w.w3, FUNDER_KEY, w.token, Account.from_key(OUTSIDER_KEY).address, 10 * USDT_UNIT)
    failed = transfer(w.w3, OUTSIDER_KEY, w.token, w.addr["alice"], 11 * USDT_UNIT, gas=100_000,
                      wait=False)  # fmt: skip
    assert w.w3.eth.wait_for_transaction_receipt(failed)["status"] == 0
    # A transfer of a token that is not listed.
    other = deploy_token(w.w3, FUNDER_KEY, "Other", "OTH", 6)
    mint(w.w3, FUNDER_KEY, other, Account.from_key(OUTSIDER2_KEY).address, 100 * USDT_UNIT)
    transfer(w.w3, OUTSIDER2_KEY, other, w.addr["alice"], 100 * USDT_UNIT)
    # ETH below the minimum (0.001).
    w.send_eth(OUTSIDER_KEY, w.addr["alice"], ETHER // 2000)
    w.mine(N + 2)
    for _ in range(2):
        w.watch()
    assert [(d[1], d[2], d[4]) for d in w.deposits("alice")] == [("ETH", 50_000, "below_minimum")]
    time.sleep(0.5)
    assert w.credits() == 0 and w.balance("alice", "ETH") == (0, 0)
    assert w.audit() == {"ETH": 0, "USDT": 0}


# --------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------


def test_sweep_empties_deposit_addresses_into_the_hot_wallet(w: Wallet) -> None:
    w.send_eth(OUTSIDER_KEY, w.addr["alice"], ETHER)
    w.send_usdt(OUTSIDER_KEY, w.addr["alice"], 40 * USDT_UNIT)
    w.send_usdt(OUTSIDER2_KEY, w.addr["bob"], 75 * USDT_UNIT)  # bob has no ETH for gas
    w.mine(N)
    w.watch_until_credited("alice", "USDT", 40 * USDT_UNIT)
    w.watch_until_credited("bob", "USDT", 75 * USDT_UNIT)
    w.watch()
    hot_eth = w.eth_of(w.hot.address)
    w.sweep_until_quiet()
    assert w.usdt_of(w.addr["alice"]) == 0 and w.usdt_of(w.addr["bob"]) == 0
    assert w.usdt_of(w.hot.address) == 115 * USDT_UNIT
    assert w.eth_of(w.addr["alice"]) == 0  # balance minus the exact gas cost
    assert w.eth_of(w.hot.address) > hot_eth
    # bob's address was topped up by the gas wallet; that is not a deposit of bob's.
    topups = w.db.run("SELECT recipient FROM wallet_txs WHERE purpose = 'gas_topup'")
    assert [r[0] for r in topups] == [w.addr["bob"].lower()]
    w.watch()
    assert [d[1] for d in w.deposits("bob")] == ["USDT"]
    # Repeated runs do nothing more.
    count = w.db.run("SELECT count(*) FROM wallet_txs")[0][0]
    for _ in range(2):
        report = sweep_once(w.rt)
        assert not report["swept"] and not report["topped_up"]
    assert w.db.run("SELECT count(*) FROM wallet_txs")[0][0] == count
    assert w.audit() == {"ETH": 0, "USDT": 0}


# --------------------------------------------------------------------------------------------
# withdrawals
# --------------------------------------------------------------------------------------------


def _funded_alice(w: Wallet) -> None:
    w.send_eth(OUTSIDER_KEY, w.addr["alice"], 3 * ETHER)
    w.send_usdt(OUTSIDER_KEY, w.addr["alice"], 500 * USDT_UNIT)
    w.mine(N)
    w.watch_until_credited("alice", "ETH", 300_000_000)
    w.watch_until_credited("alice", "USDT", 500 * USDT_UNIT)
    w.sweep_until_quiet()


def test_withdrawals_end_to_end(w: Wallet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _funded_alice(w)
    outside = Account.create().address
    wid = w.request_withdrawal("alice", "ETH", 100_000_000, 50_000, outside)  # 1 ETH + fee
    assert w.balance("alice", "ETH") == (300_000_000 - 100_050_000, 100_050_000)
    report = send_once(w.rt)
    assert report["signed"] == [wid] and report["broadcast"] == [wid]
    state, tx_hash, _ = w.withdrawal(wid)
    assert state == "broadcast" and tx_hash is not None
    w.send_until(wid, "confirmed", "settled")
    assert w.eth_of(outside) == ETHER
    assert w.balance("alice", "ETH") == (300_000_000 - 100_050_000, 0)
    tx = w.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    assert tx["to"] == outside and tx["value"] == ETHER and tx["from"] == w.hot.address

    wid2 = w.request_withdrawal("alice", "USDT", 120 * USDT_UNIT, USDT_UNIT, outside)
    w.send_until(wid2, "confirmed", "settled")
    assert w.usdt_of(outside) == 120 * USDT_UNIT
    assert w.balance("alice", "USDT") == (500 * USDT_UNIT - 121 * USDT_UNIT, 0)
    assert w.audit() == {"ETH": 0, "USDT": 0}
    # Nothing secret was logged, at any level, by the jobs or the libraries under them.
    secrets = [w.cfg.mnemonic.read(), w.hot.key.hex(), w.gas.key.hex()]
    secrets += [w.hd.account(i).key.hex() for i in range(2)]
    assert caplog.records and not [s for s in secrets if s.removeprefix("0x") in caplog.text]


def _hot_sent(w: Wallet) -> int:
    return int(w.w3.eth.get_transaction_count(w.hot.address))


def test_a_crash_before_or_after_broadcast_sends_one_transaction(w: Wallet) -> None:
    _funded_alice(w)
    outside = Account.create().address
    hot = w.hot
    w3 = chain_connect(w.cfg)

    def run(steps: Steps) -> None:
        assets = load_asset_chains(w.rt.redis, N)
        run_sender(w.db, w3, w.cfg, assets, hot, w.rt.publish, w.rt.verdict, time.time, steps)

    sent_before = _hot_sent(w)
    # Crash after signing, before broadcasting: the next run sends the stored bytes.
    wid = w.request_withdrawal("alice", "ETH", 10_000_000, 50_000, outside)
    run(Steps(broadcast=False, follow=False))
    assert w.withdrawal(wid)[0] == "signed" and _hot_sent(w) == sent_before
    stored = w.withdrawal(wid)[1]
    # Crash after broadcasting, before following: the next runs re-send the same bytes.
    wid2 = w.request_withdrawal("alice", "ETH", 20_000_000, 50_000, outside)
    run(Steps(follow=False))
    run(Steps(follow=False))
    assert w.withdrawal(wid)[1] == stored  # never signed again
    w.send_until(wid, "confirmed", "settled")
    w.send_until(wid2, "confirmed", "settled")
    assert _hot_sent(w) == sent_before + 2  # two withdrawals, two transactions
    assert w.eth_of(outside) == 3 * ETHER // 10
    rows = w.db.run("SELECT count(*) FROM wallet_txs WHERE purpose = 'withdrawal'")[0][0]
    assert rows == 2
    assert w.audit() == {"ETH": 0, "USDT": 0}


def test_a_withdrawal_that_fails_on_chain_refunds_the_user(w: Wallet) -> None:
    _funded_alice(w)
    # Ether sent with 21,000 gas to an address with code (here a token contract) runs out of
    # gas: mined with status 0.
    wid = w.request_withdrawal("alice", "ETH", 50_000_000, 50_000, w.token)
    w.send_until(wid, "refunded", "refunded")
    assert w.balance("alice", "ETH") == (300_000_000, 0)
    assert w.eth_of(w.token) == 0
    rows = w.db.run("SELECT status, gas_cost FROM wallet_txs WHERE withdrawal_id = :w", w=wid)
    assert [r[0] for r in rows] == ["failed"] and int(rows[0][1]) > 0
    assert w.audit() == {"ETH": 0, "USDT": 0}


def test_a_stuck_withdrawal_is_replaced_at_the_same_nonce(w: Wallet) -> None:
    _funded_alice(w)
    outside = Account.create().address
    wid = w.request_withdrawal("alice", "ETH", 10_000_000, 50_000, outside)
    eth_rpc(w.url, "evm_setAutomine", [False])  # nothing gets mined: the transaction is stuck
    try:
        send_once(w.rt)
        first = w.withdrawal(wid)[1]
        assert w.withdrawal(wid)[0] == "broadcast" and first is not None
        impatient = replace(w.rt, cfg=msgspec.structs.replace(w.cfg, replace_after_s=1))
        time.sleep(1.1)
        report = send_once(impatient)
        assert report["replaced"] == [wid]
        second = w.withdrawal(wid)[1]
        assert second != first
    finally:
        eth_rpc(w.url, "evm_setAutomine", [True])
    w.send_until(wid, "confirmed", "settled")
    assert w.withdrawal(wid)[1] == second
    assert w.eth_of(outside) == ETHER // 10  # sent once
    attempts = w.db.run(
        "SELECT attempt, nonce, status, max_fee FROM wallet_txs WHERE withdrawal_id = :w"
        " ORDER BY attempt",
        w=wid,
    )
    assert [(a[0], a[2]) for a in attempts] == [(0, "replaced"), (1, "mined")]
    assert attempts[0][1] == attempts[1][1]
    assert int(attempts[1][3]) >= int(attempts[0][3]) * 125 // 100
    assert w.audit() == {"ETH": 0, "USDT": 0}


def test_chain_details_lost_by_redis_come_back_from_firestore(w: Wallet) -> None:
    redis_db, fs = w.rt.redis, w.rt.firestore
    saved = redis_db.hgetall("md:asset_chains")
    for asset, chain in saved.items():
        name = asset.decode() if isinstance(asset, bytes) else asset
        fs.collection("assets").document(name).set({"asset": name, "chain": orjson.loads(chain)})
    redis_db.delete("md:asset_chains")  # Memorystore restarted
    w.send_eth(OUTSIDER_KEY, w.addr["alice"], ETHER)
    w.mine(N)
    w.watch_until_credited("alice", "ETH", 100_000_000)
    restored = redis_db.hgetall("md:asset_chains")
    assert {k: orjson.loads(v) for k, v in restored.items()} == {
        k: orjson.loads(v) for k, v in saved.items()
    }


class _StallingNode:
    """A JSON-RPC proxy in front of anvil that stalls ``eth_sendRawTransaction`` forever, after
    forwarding it or not: a sender process killed there has crashed before, or just after, the
    network got its transaction."""

    def __init__(self, upstream: str, forward_sends: bool) -> None:
        self.sends = threading.Event()
        self.release = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if orjson.loads(body).get("method") == "eth_sendRawTransaction":
                    if forward_sends:
                        _forward(upstream, body)
                    proxy.sends.set()
                    proxy.release.wait(60)  # the client is killed meanwhile
                    return
                reply = _forward(upstream, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


def _forward(upstream: str, body: bytes) -> bytes:
    request = urllib.request.Request(
        upstream, data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return bytes(resp.read())


@pytest.mark.parametrize("network_got_it", [False, True], ids=["before-send", "after-send"])
def test_a_sender_killed_mid_broadcast_sends_one_transaction(
    w: Wallet, pg: PostgresConfig, matcher_cfg: MatcherConfig, network_got_it: bool
) -> None:
    _funded_alice(w)
    outside = Account.create().address
    wid = w.request_withdrawal("alice", "ETH", 100_000_000, 50_000, outside)
    sent_before = _hot_sent(w)
    node = _StallingNode(w.url, forward_sends=network_got_it)
    env = {
        **os.environ,
        "ETH_RPC_URL": node.url, "CHAIN_ID": str(CHAIN_ID), "HOT_WALLET_KEY": w.hot.key.hex(),
        "PGDATABASE": pg.database, "COMMANDS_TOPIC": matcher_cfg.pubsub.commands_topic,
        "DEPOSIT_CONFIRMATIONS": str(N),
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", "from wallet.jobs import send_once; send_once()"],
        env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert node.sends.wait(60), "the sender never broadcast"
        # Signed and stored before the broadcast began; killed in the middle of it.
        assert w.withdrawal(wid)[0] == "signed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        node.close()
    stored = w.withdrawal(wid)[1]
    assert _hot_sent(w) == sent_before + (1 if network_got_it else 0)
    w.send_until(wid, "confirmed", "settled")
    assert w.withdrawal(wid)[1] == stored  # the same transaction, never signed again
    assert _hot_sent(w) == sent_before + 1 and w.eth_of(outside) == ETHER
    assert w.audit() == {"ETH": 0, "USDT": 0}
