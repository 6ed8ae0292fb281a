"""The matcher's sequencer (matcher_service/sequencer.py) against a real engine: each user's
commands go in the user's order; a gap is held for ``hold_ms``, then applied past."""

from __future__ import annotations

from matcher_service.engine import Engine
from matcher_service.sequencer import Sequencer, maybe_applied, place
from shared.messages import AnyCommand, CancelAll, CreateAsset, Deposit, Reason, UserSeq

EPOCH = 1_000


class Harness:
    """An engine, a sequencer, and what the matcher does with what the sequencer says."""

    def __init__(self, hold_ms: int = 1000) -> None:
        self.engine = Engine()
        self.engine.apply(CreateAsset(id="eth", asset="ETH", precision=8))
        self.seq = Sequencer(lambda user: self.engine.user_seqs.get(user), hold_ms)
        self.applied: list[str] = []
        self.reasons: dict[str, str | None] = {}

    def apply(self, cmd: AnyCommand) -> None:
        self.applied.append(cmd.id)
        self.reasons[cmd.id] = self.engine.apply(cmd).reason

    def drain(self, user: str, now: int) -> None:
        while (taken := self.seq.take(user, now)) is not None:
            self.apply(taken[0])

    def arrive(self, cmd: AnyCommand, now: int = 0) -> None:
        if self.seq.offer(cmd, now):
            return
        self.apply(cmd)
        self.drain(getattr(cmd, "user", ""), now)

    def tick(self, now: int) -> None:
        for user in self.seq.waiting(now):
            self.drain(user, now)


def cmd(n: int, user: str = "u", epoch: int = EPOCH) -> CancelAll:
    return CancelAll(id=f"{user}{epoch}:{n}", user=user, user_seq=UserSeq(epoch, n))


def test_place() -> None:
    assert place(None, UserSeq(EPOCH, 1)) == "next"
    assert place(None, UserSeq(EPOCH, 2)) == "ahead"
    assert place((EPOCH, 4, ()), UserSeq(EPOCH, 5)) == "next"
    assert place((EPOCH, 4, ()), UserSeq(EPOCH, 4)) == "late"
    assert place((EPOCH, 4, ()), UserSeq(EPOCH - 1, 9)) == "late"
    assert place((EPOCH, 4, ()), UserSeq(EPOCH + 1, 1)) == "next"
    assert place((EPOCH, 4, ()), UserSeq(EPOCH + 1, 2)) == "ahead"


def test_commands_that_come_ahead_wait_for_the_missing_one() -> None:
    h = Harness()
    for n in (3, 5, 2, 4):
        h.arrive(cmd(n))
    assert h.applied == [] and len(h.seq) == 4
    h.arrive(cmd(1))
    assert h.applied == [cmd(n).id for n in (1, 2, 3, 4, 5)]
    assert len(h.seq) == 0 and h.engine.user_seqs["u"] == (EPOCH, 5, ())


def test_a_gap_is_held_for_hold_ms_then_applied_past_and_the_late_one_refused() -> None:
    h = Harness(hold_ms=1000)
    h.arrive(cmd(1), 0)
    h.arrive(cmd(3), 100)
    h.arrive(cmd(4), 600)
    h.tick(1099)
    assert h.applied == [cmd(1).id] and h.seq.next_due() == 1100
    h.tick(1100)
    assert h.applied == [cmd(n).id for n in (1, 3, 4)]
    h.arrive(cmd(2), 1200)
    assert h.reasons[cmd(2).id] == Reason.OUT_OF_ORDER


def test_a_floor_keeps_every_gap_until_a_predecessors_leases_ran_out() -> None:
    h = Harness(hold_ms=1000)
    h.seq.hold_floor = 5000
    h.arrive(cmd(2), 0)
    h.tick(4999)
    assert h.applied == [] and h.seq.next_due() == 5000
    h.tick(5000)
    assert h.applied == [cmd(2).id]


def test_users_are_held_apart_and_unordered_commands_pass() -> None:
    h = Harness()
    h.arrive(cmd(2, "a"))
    h.arrive(cmd(1, "b"))
    dep = Deposit(id="d", user="a", asset="ETH", amount=5, ref="r")
    h.arrive(dep)
    assert h.applied == [cmd(1, "b").id, "d"]
    assert h.seq.waiting(10_000) == ["a"]


def test_late_and_new_epoch_commands_are_not_held() -> None:
    h = Harness()
    h.arrive(cmd(1))
    h.arrive(cmd(2))
    h.arrive(cmd(2, epoch=EPOCH - 1))  # an old count: late, refused by the engine
    h.arrive(cmd(1, epoch=EPOCH + 5))  # a new count: applies at once
    assert len(h.seq) == 0
    assert h.reasons[cmd(2, epoch=EPOCH - 1).id] == Reason.OUT_OF_ORDER
    assert h.reasons[cmd(1, epoch=EPOCH + 5).id] is None


def test_parked_commands_are_written_once_and_removed_once() -> None:
    h = Harness()
    h.arrive(cmd(3), 5)
    h.arrive(cmd(2), 7)
    new, gone = h.seq.changes()
    assert sorted(p.cmd.id for p in new) == [cmd(2).id, cmd(3).id] and gone == []
    assert h.seq.offer(cmd(3), 9) is True, "already parked: a duplicate"
    assert len(h.seq) == 2
    assert h.seq.is_parked(cmd(3).id)
    h.seq.committed()
    assert h.seq.changes() == ([], [])
    h.arrive(cmd(1))
    assert h.seq.changes() == ([], [cmd(2).id, cmd(3).id])
    h.seq.committed()
    assert h.seq.changes() == ([], [])


def test_parked_in_and_out_within_one_batch_are_never_written() -> None:
    h = Harness()
    h.arrive(cmd(2))
    h.arrive(cmd(1))
    assert h.seq.changes() == ([], [])


def test_loaded_parked_commands_keep_when_they_were_parked() -> None:
    h = Harness(hold_ms=1000)
    h.seq.load([(cmd(2), 50), (cmd(3), 40)])
    assert h.seq.changes() == ([], []) and h.seq.next_due() == 1040
    h.tick(1040)
    assert h.applied == [cmd(2).id, cmd(3).id]
    assert h.seq.changes() == ([], [cmd(2).id, cmd(3).id])


def test_only_a_command_at_or_before_its_users_place_may_be_in_the_oplog() -> None:
    """The matcher looks up in Postgres only the commands that may be redeliveries: one
    numbered past its user's last applied command cannot have been applied."""
    h = Harness()
    user = "u"  # cmd()'s
    assert not maybe_applied(cmd(1), h.engine.user_seqs.get(user)), "nothing applied yet"
    h.arrive(cmd(1))
    h.arrive(cmd(2))
    state = h.engine.user_seqs.get(user)
    assert maybe_applied(cmd(1), state) and maybe_applied(cmd(2), state)  # redeliveries
    assert not maybe_applied(cmd(3), state) and not maybe_applied(cmd(7), state)
    assert not maybe_applied(cmd(1, epoch=EPOCH + 1), state), "a new count"
    assert maybe_applied(cmd(9, epoch=EPOCH - 1), state), "an old count"
    deposit = Deposit(id="d", user=user, asset="ETH", amount=1, ref="r")
    assert maybe_applied(deposit, state), "not numbered: only Postgres can tell"
