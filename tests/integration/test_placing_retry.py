"""A command's numbering sent again (api.redis_client sends a batch once more when its
connection fails, and Redis may have run it already) answers the number it gave and counts
nothing again (docs/decisions/0041): against a real Redis, then through the orders function
with the reply of the numbering dropped on the wire after Redis ran it, against a real
matcher."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any, cast

import orjson
import pytest
import redis

from api import redis_client
from api.dispatch import UserSeqs, new_command_id, services
from api.http import ApiRequest, RateHit
from api.listings import queue_market
from api.placing import KnownMarkets, Placement, count_and_number
from api.redis_client import connect
from shared import outbox
from shared.messages import PlaceOrder, UserSeq
from shared.redis_keys import OUTBOX_KEY, rate_limit_key, user_seq_key
from tests.integration.matcher_helpers import running, wait_for
from tests.integration.test_orders_admin import (
    MARKET,
    Exchange,
    bearer,
    exchange,
    list_market,
    order,
    trader,
)

__all__ = ["exchange"]  # fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


class ReplyDropper:
    """A TCP proxy in front of Redis that, once armed, lets the next request holding
    ``marker`` through to Redis, throws Redis's reply away and closes the connection: the
    client sees its connection fail after Redis ran the request."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    def close(self) -> None:
        self._listener.close()
        for s in self._open:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            self._open += [client, server]
            doomed = threading.Event()
            threading.Thread(
                target=self._requests, args=(client, server, doomed), daemon=True
            ).start()
            threading.Thread(
                target=self._replies, args=(server, client, doomed), daemon=True
            ).start()

    def _requests(self, src: socket.socket, dst: socket.socket, doomed: threading.Event) -> None:
        tail = b""
        while data := _recv(src):
            with self._lock:
                marker = self._marker
                if marker is not None and marker in tail + data:
                    self._marker = None
                    doomed.set()  # before Redis can answer: its reply is dropped
            tail = data[-64:]
            try:
                dst.sendall(data)
            except OSError:
                return

    def _replies(self, src: socket.socket, dst: socket.socket, doomed: threading.Event) -> None:
        while data := _recv(src):
            if doomed.is_set():
                with self._lock:
                    self.dropped += 1
                for s in (dst, src):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                return
            try:
                dst.sendall(data)
            except OSError:
                return


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def dropper(redis_db: redis.Redis) -> Iterator[ReplyDropper]:
    kwargs = redis_db.connection_pool.connection_kwargs
    proxy = ReplyDropper((kwargs["host"], kwargs["port"]))
    yield proxy
    proxy.close()


def user_commands(ex: Exchange, user: str) -> list[dict[str, Any]]:
    rows = ex.sql(
        "SELECT command FROM oplog WHERE command::json->>'user' = :u ORDER BY seq", u=user
    )
    commands = [orjson.loads(r[0]) for r in rows]
    return [c for c in commands if c.get("user_seq") is not None]


# ---------------------------------------------------------------------------------- scripts


def test_a_batch_is_sent_again_after_redis_ran_it_only_soon_after(
    dropper: ReplyDropper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the numbering must be safe to send again: a batch whose reply is lost after Redis
    ran it is sent once more, and runs twice; not when the failure came late."""
    client = connect(f"redis://127.0.0.1:{dropper.port}/0")
    count = "return redis.call('INCR', KEYS[1])"
    assert client.batch().get("runs").execute() == [None]  # the connection is now reused
    dropper.arm(b"INCR")
    assert client.batch().eval(count, 1, "runs").execute() == [2]
    assert dropper.dropped == 1
    monkeypatch.setattr(redis_client, "RETRY_WITHIN_S", 0.0)
    dropper.arm(b"INCR")
    with pytest.raises(redis.ConnectionError):
        client.batch().eval(count, 1, "runs").execute()
    assert dropper.dropped == 2
    assert client.batch().get("runs").execute() == [b"3"]
    client.close()


def test_numbering_a_command_again_answers_its_number(redis_db: redis.Redis) -> None:
    """``UserSeqs``: the numbering script, alone, in a batch and keeping the outbox entry, run
    twice for one command gives it one number; the next command gets the next."""
    client = connect(os.environ["REDIS_URL"])
    seqs = UserSeqs(client)
    first = seqs.next("ann", "c1")
    assert seqs.next("ann", "c1") == first
    assert first.n == 1 and seqs.next("ann", "c2").n == 2

    in_batch = [client.batch() for _ in range(2)]
    got = [seqs.next("ann", "c3", client=b).execute()[0] for b in in_batch]
    assert got[0] == got[1] and got[0][1] == 3

    cmd = PlaceOrder(id="c4", user="ann", market=MARKET, side="buy", price=1, amount=1)
    template = outbox.numbered_template(cmd, "ann")
    assert template is not None
    kept = [seqs.next("ann", "c4", client=client.batch(), kept=template).execute()[0]]
    client.hdel(OUTBOX_KEY, "c4")  # were the entry written again, it would be back
    kept.append(seqs.next("ann", "c4", client=client.batch(), kept=template).execute()[0])
    assert kept[0] == kept[1] and kept[0][1] == 4
    assert not outbox.holds(client, "c4")
    assert int(client.hget(user_seq_key("ann"), "n") or 0) == 4
    client.close()


def test_an_order_numbered_twice_is_counted_and_numbered_once(exchange: Exchange) -> None:
    """The order's one-trip script (api.placing) run twice for one command, as the retry
    would: one number, each limit counted once, the order placed once, and the user's next
    order numbered next and applied at once."""
    ex = exchange
    with running(ex.cfg) as matcher:
        list_market(ex)
        alice, token = trader(ex, "alice")
        assert order(ex, token, side="buy", price="1990", amount="0.1").status_code == 201

        svc = services()
        known_markets = KnownMarkets()
        pipe = svc.redis.pipeline(transaction=False)
        queue_market(pipe, MARKET)
        known_markets.remember(MARKET, *pipe.execute())
        known = known_markets.get(MARKET)
        assert known is not None
        req = ApiRequest(raw=cast(Any, None), request_id="r", client_ip="192.0.2.1")
        hits: list[RateHit] = [("trade:user", alice, 100, 60), ("trade:ip", "192.0.2.1", 100, 60)]
        cmd = PlaceOrder(id=new_command_id(), user=alice, market=MARKET, side="buy",
                         price=1991 * 10**6, amount=10**7)  # fmt: skip

        def numbered() -> UserSeq | None:
            cmd.user_seq = None
            placed = count_and_number(req, svc.auth, svc.commands, hits, known, cmd, alice)
            assert placed is Placement.NUMBERED
            return cmd.user_seq

        first, again = numbered(), numbered()
        assert first is not None and first.n == 2 and again == first
        assert int(ex.redis.get(rate_limit_key("trade:user", alice)) or 0) == 2
        assert int(ex.redis.get(rate_limit_key("trade:ip", "192.0.2.1")) or 0) == 1

        svc.commands.publish(cmd, ordering_key=alice, owner=alice, numbered=True)
        assert svc.commands.wait_reply(cmd.id, 10) is not None
        resp = order(ex, token, side="buy", price="1992", amount="0.1")
        assert resp.status_code == 201, resp.get_json()
        assert matcher.stats["gaps"] == 0 and matcher.stats["parked"] == 0

    assert [c["user_seq"][1] for c in user_commands(ex, alice)] == [1, 2, 3]
    assert ex.sql("SELECT count(*) FROM oplog WHERE command_id = :c", c=cmd.id) == [[1]]


# ---------------------------------------------------------------------------------- on the wire


def test_a_numbering_whose_reply_is_lost_is_sent_again_without_a_gap(
    exchange: Exchange, dropper: ReplyDropper
) -> None:
    """Through the orders function, with the reply to the batch that numbers an order (the
    one-trip script), then a cancel (the numbering with the command's owner), dropped after
    Redis ran it: each answers as usual, each request is counted once, every command of the
    user has the next number, and the order is placed once."""
    ex = exchange
    ex.configure(REDIS_URL=f"redis://127.0.0.1:{dropper.port}/0")
    with running(ex.cfg) as matcher:
        list_market(ex)
        alice, token = trader(ex, "alice")
        assert order(ex, token, side="buy", price="1990", amount="0.1").status_code == 201

        dropper.arm(b"HINCRBY")  # the numbering's script
        resp = order(ex, token, side="buy", price="1991", amount="0.1")
        assert resp.status_code == 201, resp.get_json()
        assert dropper.dropped == 1
        retried = resp.get_json()["order_id"]

        dropper.arm(b"HINCRBY")
        resp = ex.client.delete(f"/v1/orders/{retried}", headers=bearer(token))
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["status"] == "cancelled"
        assert dropper.dropped == 2

        resp = order(ex, token, side="buy", price="1992", amount="0.1")
        assert resp.status_code == 201, resp.get_json()
        wait_for(lambda: len(user_commands(ex, alice)) == 4, 10, "the commands applied")
        assert matcher.stats["gaps"] == 0 and matcher.stats["parked"] == 0

    commands = user_commands(ex, alice)
    assert [c["user_seq"][1] for c in commands] == [1, 2, 3, 4]
    assert [c["command"] for c in commands] == [
        "place_order",
        "place_order",
        "cancel_order",
        "place_order",
    ]
    assert ex.sql("SELECT count(*) FROM orders WHERE order_id = :o", o=int(retried)) == [[1]]
    assert int(ex.redis.get(rate_limit_key("trade:user", alice)) or 0) == 4
