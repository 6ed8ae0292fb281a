"""The live feed (ws_service, docs/ws.md) against a real local exchange: the matcher, the
gateway and ``python -m ws_service`` as processes on this test's database, Pub/Sub topics,
Redis and Firestore project; real websockets clients; orders through the HTTP API.

- a trade shows up on trades, depth, ticker and klines for subscribers, and on orders and
  balances for the two users who traded (a token on the socket, an API-key signature on the
  socket, a token in the opening handshake), and for no one else;
- clients that follow depth from their snapshot (one subscribed before the orders, one while
  they flow) end with exactly the book ``GET /v1/markets/{m}/depth`` returns; a dropped
  update (on the client, or lost upstream) is seen as a gap, and subscribing again recovers;
- a slow client is cut off with a reason while a fast one keeps every update;
- bad messages get errors, not crashes; limits, idle and dead connections, probes, SIGTERM;
- private subscriptions end when the token expires, and come back with a fresh one;
- when Redis goes away clients are told to reconnect, and the service comes back with it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from google.cloud import firestore
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from api.auth import issue_access_token, new_secrets_document, parse_secrets, sign_request
from infra.ports import free_port
from infra.processes import REPO_ROOT
from shared.config import ApiConfig, MatcherConfig
from shared.redis_keys import KLINE_INTERVAL_NAMES
from tests.integration.matcher_helpers import wait_for
from tests.integration.ws_helpers import (
    MARKET,
    WS_TEST_ENV,
    DepthBook,
    Feed,
    User,
    WsProcess,
    exchange,
    get_json,
    slow_socket,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DEPTH = f"depth:{MARKET}"
TRADES = f"trades:{MARKET}"
TICKER = f"ticker:{MARKET}"
LEVELS = 20  # the matcher's DEPTH_LEVELS in these tests (conftest.matcher_cfg)


def updates_until(
    feed: Feed, channel: str, done: Any, what: str, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The items of ``channel``'s updates, gathered until ``done(items)``."""
    items: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(items):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {what}; got {items}"
        items += feed.of("update", channel, timeout=left)["data"]
    return items


def follow(feed: Feed, book: DepthBook, until_seq: int) -> None:
    """Apply ``feed``'s depth updates to ``book`` up to ``until_seq``; each must continue the
    book exactly (no gap, no overlap)."""
    while book.seq < until_seq:
        update = feed.of("update", DEPTH)["data"]
        assert update["prev_seq"] == book.seq, (book.seq, update)
        book.apply(update)


def balances_of(items: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """The last (available, frozen) per asset in a list of balance updates."""
    return {b["asset"]: (b["available"], b["frozen"]) for b in items}


# ---------------------------------------------------------------- who sees a trade


def test_a_trade_reaches_its_subscribers_and_no_one_else(
    firestore_db: firestore.Client, matcher_cfg: MatcherConfig, tmp_path: Path
) -> None:
    with exchange(matcher_cfg, firestore_db, tmp_path) as ex:
        ex.list_market()
        alice, bob, carol = ex.user("alice"), ex.user("bob"), ex.user("carol")
        ws = ex.start_ws()

        # A public watcher: each subscription starts with a snapshot (an empty market).
        watcher = Feed(ws.url)
        book = DepthBook(watcher.subscribe(DEPTH))
        assert (book.bids, book.asks) == ({}, {})
        assert watcher.subscribe(TRADES) == []
        assert (watcher.subscribe(TICKER))["last"] is None
        assert watcher.subscribe(f"kline:{MARKET}:1m") == []

        # Alice: her access token on the socket.
        a = Feed(ws.url)
        answer = a.call(op="auth", token=alice.token)
        assert (answer["type"], answer["user_id"], answer["via"]) == (
            "authenticated", alice.user_id, "jwt",
        )  # fmt: skip
        assert answer["expires_at"] > time.time() * 1000  # the token's exp, in ms
        a.subscribe("orders")
        a.subscribe("balances")
        # Bob: an API key (read scope) signs GET /v1/ws on the socket; a replay is refused.
        key = ex.http.ok("POST", "/v1/api-keys", {"label": "ws", "scopes": ["read"]},
                         bob.token, 201)  # fmt: skip
        ts = int(time.time() * 1000)
        signed = {"api_key": key["id"], "timestamp": ts,
                  "signature": sign_request(key["secret"], ts, "GET", "/v1/ws")}  # fmt: skip
        b = Feed(ws.url)
        answer = b.call(op="auth", **signed)
        assert (answer["type"], answer["user_id"], answer["via"]) == (
            "authenticated", bob.user_id, "api_key",
        )  # fmt: skip
        b.subscribe("orders")
        b.subscribe("balances")
        replay = Feed(ws.url).call(op="auth", **signed)
        assert (replay["type"], replay["code"]) == ("error", "replayed_request")
        # Carol: her token in the opening handshake, as for any HTTP request.
        c = Feed(ws.url, additional_headers={"Authorization": f"Bearer {carol.token}"})
        c.subscribe("orders")
        c.subscribe("balances")

        # Alice offers 1.5 ETH at 2000; Bob takes 1 of it at up to 2010.
        sell = ex.order(alice, side="sell", price="2000", amount="1.5")
        buy = ex.order(bob, side="buy", price="2010", amount="1")
        assert buy["status"] == "filled"

        # Everyone subscribed sees the trade, the depth, the ticker and the candle.
        (trade,) = updates_until(watcher, TRADES, lambda t: t, "the trade")
        assert {k: trade[k] for k in ("market", "price", "amount", "quote", "taker_side")} == {
            "market": MARKET, "price": "2000", "amount": "1", "quote": "2000",
            "taker_side": "buy",
        }  # fmt: skip
        assert watcher.of("update", TICKER)["data"]["last"] == "2000"
        (candle,) = watcher.of("update", f"kline:{MARKET}:1m")["data"]
        assert (candle["close"], candle["volume"], candle["trades"]) == ("2000", "1", 1)
        follow(watcher, book, ex.depth()["seq"])
        assert book.view(LEVELS) == ex.depth() == {
            "bids": [], "asks": [["2000", "0.5"]], "seq": book.seq,
        }  # fmt: skip

        # Alice and Bob see their own order, fill and balances, and only theirs.
        def order_events(feed: Feed, order_id: int) -> list[dict[str, Any]]:
            events = updates_until(
                feed, "orders",
                lambda e: any(x["event"] == "trade" for x in e)
                and any(x["event"] == "order_updated" for x in e),
                "the trade and the order's update",
            )  # fmt: skip
            assert {e["order_id"] for e in events} == {order_id}, events
            return events

        alice_events = order_events(a, sell["order_id"])
        bob_events = order_events(b, buy["order_id"])
        (a_fill,) = [e for e in alice_events if e["event"] == "trade"]
        (b_fill,) = [e for e in bob_events if e["event"] == "trade"]
        assert (a_fill["role"], a_fill["fee"], a_fill["fee_asset"]) == ("maker", "2", "USDT")
        assert (b_fill["role"], b_fill["fee"], b_fill["fee_asset"]) == ("taker", "0.002", "ETH")
        assert a_fill["trade_id"] == b_fill["trade_id"] == trade["trade_id"]
        assert [e["status"] for e in alice_events if e["event"] == "order_updated"] == [
            "partially_filled"
        ]
        alice_balances = updates_until(
            a, "balances", lambda bs: balances_of(bs).get("USDT", ("",))[0] == "1001998",
            "Alice's USDT",
        )  # fmt: skip
        assert balances_of(alice_balances) == {
            "ETH": ("98.5", "0.5"), "USDT": ("1001998", "0"),
        }  # fmt: skip
        bob_balances = updates_until(
            b, "balances", lambda bs: balances_of(bs).get("USDT") == ("998000", "0"),
            "Bob's refund",
        )  # fmt: skip
        assert balances_of(bob_balances) == {"ETH": ("100.998", "0"), "USDT": ("998000", "0")}
        assert ex.http.get("/v1/balances", alice.token) == {
            asset: {"available": av, "frozen": fr}
            for asset, (av, fr) in balances_of(alice_balances).items()
        }

        # Carol's first message is her own deposit, made after the trade: nothing of the
        # others' reached her.
        ex.deposit(carol, "ETH", "1")
        first = c.recv()
        assert (first["type"], first["channel"]) == ("update", "balances"), first
        assert [(x["asset"], x["available"], x["reason"]) for x in first["data"]] == [
            ("ETH", "101", "deposit")
        ]
        # The watcher, unauthenticated, has no private channel.
        refused = watcher.call(op="subscribe", channel="orders")
        assert (refused["type"], refused["code"]) == ("error", "auth_required")
        for feed in (watcher, a, b, c):
            feed.close()


# ---------------------------------------------------------------- depth followers and gaps


def test_depth_followers_end_with_the_http_book_and_gaps_are_detectable(
    firestore_db: firestore.Client,
    matcher_cfg: MatcherConfig,
    redis_db: redis.Redis,
    tmp_path: Path,
) -> None:
    with exchange(matcher_cfg, firestore_db, tmp_path) as ex:
        ex.list_market()
        alice, bob = ex.user("alice"), ex.user("bob")
        ws = ex.start_ws()
        early = Feed(ws.url)
        early_book = DepthBook(early.subscribe(DEPTH))

        # Orders flow from a thread (resting on both sides, some crossing, some cancelled)
        # while a second client subscribes mid-stream.
        errors: list[BaseException] = []

        def flow(n: int, seed: int) -> None:
            rng = random.Random(seed)
            placed: list[tuple[User, int]] = []
            try:
                for _ in range(n):
                    if placed and rng.random() < 0.2:
                        user, oid = placed.pop(rng.randrange(len(placed)))
                        ex.http.call("DELETE", f"/v1/orders/{oid}", token=user.token)
                        continue
                    user, side = rng.choice(((alice, "sell"), (bob, "buy")))
                    cents = 200_000 + rng.randint(-40, 40)
                    order = ex.order(user, side=side, price=f"{cents / 100:.2f}",
                                     amount=f"{rng.randint(1, 50) / 100:.2f}")  # fmt: skip
                    if order["status"] in ("open", "partially_filled"):
                        placed.append((user, order["order_id"]))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=flow, args=(60, 1))
        thread.start()
        follow(early, early_book, early_book.seq + 5)
        late = Feed(ws.url)
        late_book = DepthBook(late.subscribe(DEPTH))
        assert late_book.seq > 1
        thread.join(240)
        assert not errors, errors
        final = ex.depth(LEVELS)
        for feed, book in ((early, early_book), (late, late_book)):
            follow(feed, book, final["seq"])
            assert book.view(LEVELS) == final
        assert final["bids"] and final["asks"]

        # A dropped update is detectable: skip one, and the next does not continue the book.
        ex.order(alice, side="sell", price="2100", amount="0.1")
        ex.order(alice, side="sell", price="2101", amount="0.1")
        late.of("update", DEPTH)  # dropped
        assert not late_book.continues(late.of("update", DEPTH)["data"])
        # Subscribing again is the resync: a new snapshot the updates continue.
        late_book.reset(late.subscribe(DEPTH))
        ex.order(bob, side="buy", price="1900", amount="0.1")
        final = ex.depth(LEVELS)
        follow(late, late_book, final["seq"])
        follow(early, early_book, final["seq"])
        assert late_book.view(LEVELS) == early_book.view(LEVELS) == final

        # An update lost upstream (the matcher's PUBLISH never arrived; here, one made up that
        # skips a version): the service forwards it, so clients see the gap, and reloads.
        seq = final["seq"]
        redis_db.publish(
            f"live:depth:{MARKET}",
            orjson.dumps({"market": MARKET, "seq": seq + 2, "prev_seq": seq + 1,
                          "bids": [["1", "1"]], "asks": []}),
        )  # fmt: skip
        gapped = early.of("update", DEPTH)["data"]
        assert gapped["seq"] == seq + 2 and not early_book.continues(gapped)
        early_book.reset(early.subscribe(DEPTH))
        assert early_book.view(LEVELS) == final  # the state in Redis, not the made-up one
        ex.order(bob, side="buy", price="1901", amount="0.1")
        final = ex.depth(LEVELS)
        follow(early, early_book, final["seq"])
        assert early_book.view(LEVELS) == final
        early.close()
        late.close()


# ---------------------------------------------------------------- backpressure


def test_a_slow_client_is_cut_off_while_a_fast_one_keeps_up(
    firestore_db: firestore.Client, matcher_cfg: MatcherConfig, tmp_path: Path
) -> None:
    with exchange(matcher_cfg, firestore_db, tmp_path) as ex:
        ex.list_market()
        alice, bob = ex.user("alice"), ex.user("bob")
        ws = ex.start_ws(
            WS_MAX_BUFFER_BYTES="16384", WS_WRITE_LIMIT_BYTES="16384", WS_SEND_BUFFER_BYTES="8192",
            WS_PING_INTERVAL_S="120", WS_PING_TIMEOUT_S="120", WS_CLOSE_TIMEOUT_S="120",
            WS_IDLE_TIMEOUT_S="120",
        )  # fmt: skip
        channels = [DEPTH, TRADES, TICKER] + [f"kline:{MARKET}:{iv}" for iv in KLINE_INTERVAL_NAMES]
        fast = Feed(ws.url)
        book = DepthBook(fast.subscribe(DEPTH))
        for channel in channels[1:]:
            fast.subscribe(channel)
        # The slow client subscribes, then never reads: a small socket buffer, and the
        # library stops reading once one message waits.
        slow = Feed(ws.url, sock=slow_socket(ws.port), max_queue=1)
        for channel in channels:
            slow.send(op="subscribe", channel=channel)

        # Trades until the service has cut the slow client off.
        trades = 0
        for i in range(400):
            price = f"{2000 + i % 7}"
            ex.order(alice, side="sell", price=price, amount="0.1")
            ex.order(bob, side="buy", price=price, amount="0.1")
            trades += 1
            if ws.stats()["slow_consumers"] >= 1:
                break
        assert ws.stats()["slow_consumers"] == 1

        # The slow client, reading at last, finds the reason it was closed.
        closed = slow.closed()
        assert closed.rcvd is not None, closed
        assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "slow consumer: buffer overflow")
        # The fast one has every update, in order, and is still connected.
        got = updates_until(fast, TRADES, lambda t: len(t) == trades, f"{trades} trades")
        assert len({t["trade_id"] for t in got}) == trades
        follow(fast, book, ex.depth()["seq"])
        assert book.view(LEVELS) == ex.depth(LEVELS)
        assert fast.call(op="ping")["type"] == "pong"
        wait_for(lambda: ws.stats()["connections"] == 1, 30, "only the fast client left")
        fast.close()


# ---------------------------------------------------------------- bad messages and limits


def test_bad_messages_get_errors_and_limits_hold(
    firestore_db: firestore.Client, matcher_cfg: MatcherConfig, tmp_path: Path
) -> None:
    with exchange(matcher_cfg, firestore_db, tmp_path) as ex:
        ex.list_market()
        alice = ex.user("alice")
        ws = ex.start_ws()

        # Probes: plain HTTP.
        assert get_json(f"http://127.0.0.1:{ws.port}/readyz")[1]["ready"] is True
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{ws.port}/v2/ws", open_timeout=10, legacy=True)
        assert refused.value.response.status_code == 404
        with pytest.raises(InvalidStatus) as refused:
            connect(ws.url, open_timeout=10, legacy=True, additional_headers={"Authorization": "x"})
        assert refused.value.response.status_code == 401

        feed = Feed(ws.url)
        cases: list[tuple[Any, str]] = [
            ("not json", "invalid_json"),
            ("[1, 2]", "invalid_message"),
            ('{"channel": "depth:ETH-USDT"}', "unknown_op"),
            ('{"op": "launch"}', "unknown_op"),
            ('{"op": "subscribe"}', "invalid_channel"),
            ('{"op": "subscribe", "channel": "weather:ETH-USDT"}', "unknown_channel"),
            ('{"op": "subscribe", "channel": "depth:eth"}', "unknown_channel"),
            ('{"op": "subscribe", "channel": "depth:BTC-EUR"}', "unknown_market"),
            ('{"op": "subscribe", "channel": "kline:ETH-USDT:2m"}', "unknown_interval"),
            ('{"op": "subscribe", "channel": "orders"}', "auth_required"),
            ('{"op": "unsubscribe", "channel": "trades:ETH-USDT"}', "not_subscribed"),
            ('{"op": "auth", "token": "not a token"}', "invalid_token"),
            ('{"op": "auth"}', "invalid_request"),
            ('{"op": "auth", "api_key": "ak_0", "timestamp": 1, "signature": "00"}',
             "invalid_api_key"),
            ('{"op": "ping", "id": {"no": 1}}', "invalid_message"),
            (b"\x00binary", "invalid_message"),
        ]  # fmt: skip
        for raw, code in cases:
            feed.ws.send(raw)
            answer = feed.recv()
            assert (answer["type"], answer["code"]) == ("error", code), (raw, answer)
            assert answer["message"]
        # An API key without the read scope.
        key = ex.http.ok("POST", "/v1/api-keys", {"label": "t", "scopes": ["trade"]},
                         alice.token, 201)  # fmt: skip
        ts = int(time.time() * 1000)
        answer = feed.call(op="auth", api_key=key["id"], timestamp=ts,
                           signature=sign_request(key["secret"], ts, "GET", "/v1/ws"))  # fmt: skip
        assert answer["code"] == "insufficient_scope"
        # After all that the connection works, up to its subscription limit (10 here).
        assert feed.call(op="ping")["type"] == "pong"
        names = [f"kline:{MARKET}:{iv}" for iv in KLINE_INTERVAL_NAMES]
        for name in [*names, DEPTH, TRADES, TICKER]:
            feed.subscribe(name)
        assert feed.call(op="auth", token=alice.token)["type"] == "authenticated"
        feed.subscribe("orders")
        answer = feed.call(op="subscribe", channel="balances")
        assert (answer["type"], answer["code"]) == ("error", "too_many_subscriptions")
        feed.subscribe(DEPTH)  # again: a resync (a new snapshot), not one more subscription
        answer = feed.call(op="unsubscribe", channel=TICKER)
        assert (answer["type"], answer["channel"]) == ("unsubscribed", TICKER)
        feed.subscribe("balances")
        assert feed.call(op="ping")["type"] == "pong"
        other = Feed(ws.url)
        other.subscribe(TRADES)

        # Too large a message closes the connection (1009).
        feed.ws.send("x" * 20_000)
        assert feed.closed().rcvd.code == 1009  # type: ignore[union-attr]
        # Too many messages too fast: closed (1008).
        spammer = Feed(ws.url)
        with contextlib.suppress(ConnectionClosed):  # it may be closed before the last one
            for _ in range(200):
                spammer.send(op="ping")
        closed = spammer.closed()
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "too many messages")
        # Idle: no subscription within WS_IDLE_TIMEOUT_S (3 s here).
        idle = Feed(ws.url)
        closed = idle.closed()
        assert closed.rcvd is not None and closed.rcvd.code == 1008
        assert closed.rcvd.reason.startswith("idle")
        # Dead: a client that stops answering pings (it stops reading once a message waits)
        # is closed (1011) after WS_PING_INTERVAL_S + WS_PING_TIMEOUT_S (1 + 2 s here).
        dead = Feed(ws.url, max_queue=1)
        dead.send(op="subscribe", channel=TRADES)
        wait_for(lambda: ws.stats()["connections"] == 1, 30, "the dead client closed")
        closed = dead.closed()
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (1011, "keepalive ping timeout")

        # SIGTERM: clients are told (1001), the process exits cleanly.
        assert ws.stop() == 0
        closed = other.closed()
        assert closed.rcvd is not None and closed.rcvd.code == 1001


# ---------------------------------------------------------------- tokens that expire


def test_private_subscriptions_end_when_the_token_expires(
    firestore_db: firestore.Client,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ws service alone (tokens made here with the service's keys; private messages
    published on Redis in the matcher's shape)."""
    keys = orjson.dumps(new_secrets_document()).decode()
    monkeypatch.setenv("AUTH_KEYS_JSON", keys)
    for name in ("AUTH_KEYS_FILE", "AUTH_KEYS_SECRET", "OIDC_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    cfg = ApiConfig.load()
    secrets = parse_secrets(keys.encode())
    env = {**os.environ, **WS_TEST_ENV, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PORT", None)
    ws = WsProcess(env, tmp_path / "ws.log")
    try:
        # A token that expires in 3 s.
        issued = time.time() - cfg.access_ttl_s + 3
        token = issue_access_token(secrets, cfg, "u1", "user", session_id="s1", now=issued)
        feed = Feed(ws.url)
        answer = feed.call(op="auth", token=token)
        assert (answer["type"], answer["user_id"]) == ("authenticated", "u1")
        assert answer["expires_at"] == (int(issued) + cfg.access_ttl_s) * 1000
        feed.subscribe("orders")

        # Only the user's own messages reach it.
        def private(user: str, order_id: int) -> None:
            item = {"channel": "orders", "event": "order_updated", "order_id": order_id,
                    "market": MARKET, "side": "buy", "status": "cancelled", "filled": "0",
                    "filled_quote": "0", "fee": "0", "frozen": "0", "reason": "x"}  # fmt: skip
            redis_db.publish(f"live:user:{user}", orjson.dumps([item]))

        private("u2", 2)
        private("u1", 1)
        update = feed.of("update", "orders")
        assert [e["order_id"] for e in update["data"]] == [1]
        assert "channel" not in update["data"][0]

        # At expiry the private subscriptions end, and say so.
        expired = feed.of("error", timeout=30)
        assert (expired["code"], expired["channels"]) == ("token_expired", ["orders"])
        refused = feed.call(op="subscribe", channel="orders")
        assert refused["code"] == "auth_required"
        # A fresh token of the same user: subscribed again. Another user's: refused.
        fresh = issue_access_token(secrets, cfg, "u1", "user", session_id="s1")
        assert feed.call(op="auth", token=fresh)["type"] == "authenticated"
        feed.subscribe("orders")
        other = issue_access_token(secrets, cfg, "u2", "user", session_id="s2")
        assert feed.call(op="auth", token=other)["code"] == "already_authenticated"
        private("u1", 3)
        assert [e["order_id"] for e in feed.of("update", "orders")["data"]] == [3]
        feed.close()
    finally:
        assert ws.stop() == 0


# ---------------------------------------------------------------- Redis goes away


def test_a_lost_feed_closes_clients_and_the_service_comes_back(
    firestore_db: firestore.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ws service on a Redis of its own, which is stopped and started again: clients are
    told to reconnect (1013), new ones are refused meanwhile, and all works again after."""
    binary = shutil.which("redis-server")
    assert binary is not None
    port = free_port()

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=port)
        wait_for(lambda: _pings(client), 10, "redis-server")
        client.hset("md:markets", MARKET, b"{}")
        client.close()
        return proc

    monkeypatch.setenv("AUTH_KEYS_JSON", orjson.dumps(new_secrets_document()).decode())
    for name in ("AUTH_KEYS_FILE", "AUTH_KEYS_SECRET", "OIDC_ISSUER", "PORT"):
        monkeypatch.delenv(name, raising=False)
    env = {**os.environ, **WS_TEST_ENV, "PYTHONPATH": str(REPO_ROOT),
           "REDIS_URL": f"redis://127.0.0.1:{port}/0"}  # fmt: skip
    server = start_redis()
    ws = WsProcess(env, tmp_path / "ws.log")
    try:
        feed = Feed(ws.url)
        assert feed.subscribe(DEPTH) == {"market": MARKET, "bids": [], "asks": [], "seq": 0}
        server.terminate()
        server.wait(10)
        closed = feed.closed()
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (
            1013, "market data feed interrupted: reconnect",
        )  # fmt: skip
        assert get_json(f"http://127.0.0.1:{ws.port}/readyz")[0] == 503
        with pytest.raises(InvalidStatus) as refused:
            connect(ws.url, open_timeout=10, legacy=True)
        assert refused.value.response.status_code == 503
        server = start_redis()
        wait_for(lambda: get_json(f"http://127.0.0.1:{ws.port}/readyz")[0] == 200, 30, "ready")
        again = Feed(ws.url)
        assert again.subscribe(DEPTH)["seq"] == 0
        assert ws.stats()["feed_losses"] >= 1
        again.close()
    finally:
        assert ws.stop() == 0
        server.terminate()
        server.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
