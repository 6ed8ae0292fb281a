"""Each user's order (docs/engine.md): the engine records where each user's command stands
among the user's commands and refuses one that comes after a later one was applied."""

from __future__ import annotations

from matcher_service.engine import Engine
from matcher_service.engine.engine import MAX_SKIPPED
from matcher_service.engine.snapshot import restore, snapshot, state_hash
from shared.messages import (
    CancelAll,
    OrderRejected,
    PlaceOrder,
    Reason,
    RequestWithdrawal,
    UpdateMarket,
    UserSeq,
)
from tests.engine.helpers import MARKET, deposit, eth, next_id, price, setup_commands, usdt

EPOCH = 1_700_000_000_000


def engine() -> Engine:
    e = Engine()
    for cmd in setup_commands():
        assert e.apply(cmd).ok
    assert e.apply(deposit("alice", "USDT", usdt(100_000))).ok
    return e


def order(n: int, epoch: int = EPOCH, user: str = "alice") -> PlaceOrder:
    return PlaceOrder(
        id=next_id(), user=user, market=MARKET, side="buy", price=price(1000), amount=eth(0.01),
        user_seq=UserSeq(epoch, n),
    )  # fmt: skip


def test_in_order_commands_apply_and_are_recorded() -> None:
    e = engine()
    for n in (1, 2, 3):
        assert e.apply(order(n)).ok
    assert e.user_seqs == {"alice": (EPOCH, 3, ())}


def test_a_gap_applied_past_is_remembered_and_a_late_command_refused() -> None:
    e = engine()
    assert e.apply(order(1)).ok
    assert e.apply(order(4)).ok  # 2 and 3 were missing for too long
    assert e.user_seqs["alice"] == (EPOCH, 4, ((2, 3),))
    before = (e.balances(), len(e.orders))
    late = order(3)
    applied = e.apply(late)
    assert (applied.ok, applied.reason) == (False, Reason.OUT_OF_ORDER)
    assert applied.events == [OrderRejected("alice", MARKET, None, Reason.OUT_OF_ORDER)]
    assert (e.balances(), len(e.orders)) == before, "a refused command changes nothing"
    assert e.user_seqs["alice"] == (EPOCH, 4, ((2, 3),))
    assert e.apply(order(5)).ok


def test_a_counter_set_back_counts_on_from_where_it_is() -> None:
    """Redis lost its newest increments (a failover): numbers never seen are new commands."""
    e = engine()
    for n in (1, 2, 3, 4):
        assert e.apply(order(n)).ok
    assert e.apply(order(3)).ok
    assert e.user_seqs["alice"] == (EPOCH, 3, ())
    assert e.apply(order(4)).ok and e.apply(order(5)).ok


def test_a_counter_set_back_into_a_gap_forgets_the_gaps_above() -> None:
    e = engine()
    assert e.apply(order(1)).ok and e.apply(order(5)).ok and e.apply(order(9)).ok
    assert e.user_seqs["alice"][2] == ((2, 4), (6, 8))
    assert e.apply(order(7)).reason == Reason.OUT_OF_ORDER
    assert e.apply(order(5)).ok  # 5 was applied, not skipped: the counter went back to it
    assert e.user_seqs["alice"] == (EPOCH, 5, ((2, 4),))
    assert e.apply(order(6)).ok and e.apply(order(7)).ok  # given out again: new commands
    assert e.apply(order(3)).reason == Reason.OUT_OF_ORDER


def test_a_new_epoch_starts_a_fresh_count_and_the_old_one_is_late() -> None:
    e = engine()
    for n in (1, 2, 3):
        assert e.apply(order(n)).ok
    later = EPOCH + 5_000
    assert e.apply(order(1, later)).ok  # Redis lost the counter: it began again
    assert e.user_seqs["alice"] == (later, 1, ())
    assert e.apply(order(4, EPOCH)).reason == Reason.OUT_OF_ORDER
    assert e.apply(order(3, later)).ok
    assert dict(e.user_seqs) == {"alice": (later, 3, ((2, 2),))}


def test_a_refused_command_still_takes_its_place() -> None:
    e = engine()
    too_big = RequestWithdrawal(
        id=next_id(), user="alice", asset="USDT", amount=usdt(10**9), fee=0,
        withdrawal_id="w1", user_seq=UserSeq(EPOCH, 1),
    )  # fmt: skip
    assert e.apply(too_big).reason == Reason.INSUFFICIENT_FUNDS
    assert e.user_seqs["alice"] == (EPOCH, 1, ())
    assert e.apply(CancelAll(id=next_id(), user="alice", user_seq=UserSeq(EPOCH, 2))).ok


def test_commands_without_a_user_or_a_place_are_not_ordered() -> None:
    e = engine()
    assert e.apply(deposit("bob", "USDT", usdt(5))).ok
    halt = UpdateMarket(id=next_id(), market=MARKET, status="halted", user_seq=UserSeq(1, 9))
    assert e.apply(halt).ok
    assert e.user_seqs == {}
    bad = order(0)
    assert e.apply(bad).reason == Reason.INVALID
    assert e.user_seqs == {}


def test_only_the_latest_gaps_are_remembered() -> None:
    e = engine()
    n = 1
    for _ in range(MAX_SKIPPED + 4):
        n += 2
        assert e.apply(order(n)).ok
    skipped = e.user_seqs["alice"][2]
    assert len(skipped) == MAX_SKIPPED and skipped[-1] == (n - 1, n - 1)


def test_the_place_of_each_user_is_part_of_the_state_and_its_snapshot() -> None:
    e = engine()
    before = state_hash(e)
    assert restore(snapshot(e)).user_seqs == {}
    assert e.apply(order(1)).ok and e.apply(order(3)).ok
    assert e.apply(order(2, user="bob")).reason == Reason.INSUFFICIENT_FUNDS
    assert state_hash(e) != before
    copy = restore(snapshot(e))
    assert copy.user_seqs == e.user_seqs and state_hash(copy) == state_hash(e)
    assert copy.apply(order(2)).reason == Reason.OUT_OF_ORDER
