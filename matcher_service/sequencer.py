"""Each user's commands in the order the user sent them, whatever order Pub/Sub hands them
out in (docs/decisions/0006).

The functions number each user's commands (``user_seq``: one Redis increment). The matcher
offers every command it pulls to the ``Sequencer``: one that is its user's next (or that
comes late: the engine then refuses it or counts on from it) is applied at once; one that
comes ahead of a missing number is *parked* until the missing one arrives, or until the gap
has been held long enough, when the lowest parked command is applied past the gap (the
engine remembers the gap; a command that fills it later is refused as ``out_of_order``).

Parked commands are written to Postgres (``parked``) in the transaction of the batch that
parked them, so their messages can be acknowledged with that batch: Pub/Sub, which keeps a
key's messages in order, would not hand out the missing one while a later one is still out.
A parked command is removed in the transaction of the batch that applies it. Pure: no I/O,
no clock (times in milliseconds come from the caller).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from matcher_service.engine.engine import SeqState
from shared.messages import AnyCommand, UserSeq

Place = Literal["late", "next", "ahead"]


def place(state: SeqState | None, us: UserSeq) -> Place:
    """Where ``us`` stands against the user's last applied command: at or before it
    (``late``: apply now, the engine decides), right after it (``next``), or past a gap."""
    epoch, last = (state[0], state[1]) if state is not None else (0, 0)
    if us.epoch < epoch or (us.epoch == epoch and us.n <= last):
        return "late"
    if (us.epoch == epoch and us.n == last + 1) or (us.epoch > epoch and us.n == 1):
        return "next"
    return "ahead"


def maybe_applied(cmd: AnyCommand, state: SeqState | None) -> bool:
    """Whether ``cmd`` may be in the oplog already (a redelivery), so that only Postgres can
    tell. A command numbered past its user's last applied one cannot be: the engine's place
    for each user (``state``) counts every command in the oplog, and a command keeps its id
    and number wherever it is redelivered. Commands without a number always may be."""
    us = cmd.user_seq
    if us is None or user_of(cmd) is None:
        return True
    return place(state, us) == "late"


def user_of(cmd: AnyCommand) -> str | None:
    """The user whose order ``cmd`` takes a place in, None when it is not ordered."""
    if cmd.user_seq is None:
        return None
    user = getattr(cmd, "user", None)
    return user if isinstance(user, str) else None


@dataclass(slots=True)
class Parked:
    cmd: AnyCommand
    user: str
    parked_at: int
    """When it was parked (ms, the matcher's clock)."""
    durable: bool
    """Already in the ``parked`` table."""

    @property
    def key(self) -> tuple[int, int]:
        us = self.cmd.user_seq
        assert us is not None
        return us.epoch, us.n


class Sequencer:
    def __init__(self, state: Callable[[str], SeqState | None], hold_ms: int) -> None:
        self._state = state
        self.hold_ms = hold_ms
        self.hold_floor = 0
        """No gap is applied past before this time (ms): set after a takeover to when the
        previous matcher's leases have run out, since its messages come back only then."""
        self._users: dict[str, dict[str, Parked]] = {}
        self._ids: dict[str, Parked] = {}
        self._gone: list[str] = []  # durable ones released since the last commit

    def __len__(self) -> int:
        return len(self._ids)

    def is_parked(self, command_id: str) -> bool:
        return command_id in self._ids

    def load(self, rows: Iterable[tuple[AnyCommand, int]]) -> None:
        """The commands Postgres holds parked, with when they were parked."""
        for cmd, parked_at in rows:
            user = user_of(cmd)
            if user is not None:
                self._add(Parked(cmd, user, parked_at, durable=True))

    def offer(self, cmd: AnyCommand, now_ms: int) -> bool:
        """True when ``cmd`` is parked (ahead of a missing command of its user, or parked
        already: a duplicate); False when it should be applied now. Then ``take`` gives the
        user's parked commands that follow it."""
        if cmd.id in self._ids:
            return True
        user = user_of(cmd)
        if user is None:
            return False
        assert cmd.user_seq is not None
        if place(self._state(user), cmd.user_seq) != "ahead":
            return False
        self._add(Parked(cmd, user, now_ms, durable=False))
        return True

    def take(self, user: str, now_ms: int) -> tuple[AnyCommand, int] | None:
        """The user's lowest parked command when it may be applied now: it is the next (or
        late), or the gap before it has been held long enough. With how long it waited past
        a gap (ms; 0 when it was not applied past one). The caller applies it before the
        next call, which sees the engine's new state."""
        parked = self._users.get(user)
        if not parked:
            return None
        lowest = min(parked.values(), key=lambda p: p.key)
        assert lowest.cmd.user_seq is not None
        waited = 0
        if place(self._state(user), lowest.cmd.user_seq) == "ahead":
            since = min(p.parked_at for p in parked.values())
            if now_ms < max(since + self.hold_ms, self.hold_floor):
                return None
            waited = now_ms - since
        self._remove(lowest)
        return lowest.cmd, waited

    def waiting(self, now_ms: int) -> list[str]:
        """Users whose gap has been held long enough: ``take`` applies past it."""
        if now_ms < self.hold_floor:
            return []
        due = now_ms - self.hold_ms
        return [u for u, ps in self._users.items() if min(p.parked_at for p in ps.values()) <= due]

    def next_due(self) -> int | None:
        """When the next held gap is due (ms), None when nothing is parked."""
        if not self._ids:
            return None
        oldest = min(p.parked_at for p in self._ids.values())
        return max(oldest + self.hold_ms, self.hold_floor)

    def changes(self) -> tuple[list[Parked], list[str]]:
        """What the next batch's transaction writes: the commands parked since the last
        commit and still parked, and the ids of durable ones released since."""
        return [p for p in self._ids.values() if not p.durable], list(self._gone)

    def committed(self) -> None:
        for p in self._ids.values():
            p.durable = True
        self._gone.clear()

    def _add(self, p: Parked) -> None:
        self._users.setdefault(p.user, {})[p.cmd.id] = p
        self._ids[p.cmd.id] = p

    def _remove(self, p: Parked) -> None:
        del self._ids[p.cmd.id]
        parked = self._users[p.user]
        del parked[p.cmd.id]
        if not parked:
            del self._users[p.user]
        if p.durable:
            self._gone.append(p.cmd.id)
