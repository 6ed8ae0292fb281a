"""The benchmarks' ``--quick`` shortens their defaults without overriding what is given."""

from __future__ import annotations

from bench import api, cpu


def test_cpu_quick_sets_short_windows() -> None:
    args = cpu.options(["--quick"])
    assert (args.window, args.idle, args.users, args.climb) == (8.0, 8.0, 30, 2)


def test_cpu_quick_keeps_the_flags_given() -> None:
    args = cpu.options(["--quick", "--idle", "20", "--climb", "0", "--window", "12"])
    assert (args.window, args.idle, args.climb) == (12.0, 20.0, 0)
    assert args.users == 30  # not given: the quick default


def test_cpu_defaults_without_quick() -> None:
    args = cpu.options([])
    assert (args.window, args.idle, args.climb) == (20.0, 20.0, 4)


def test_api_quick_keeps_a_given_window() -> None:
    assert api.options(["--quick"]).window == 10.0
    assert api.options(["--quick", "--window", "30"]).window == 30.0


def test_api_climbs_both_kinds_unless_told_one() -> None:
    assert api.options([]).only is None
    assert api.options(["--only", "depth"]).only == "depth"
