"""Engine benchmark: one seeded stream per scenario through our engine and every peer that
is installed, in one run. Fills must agree; the last line printed is JSON.

Usage: ``python -m bench.engine [--n 200000] [--seed 1] [--repeat 3] [--orders 1000000]
[--cpu]``; ``--cpu`` times the ops by the process's CPU time instead of the wall clock.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from bench.ours import run_ours, run_ours_stops
from bench.peers import PeerResult, Runner, available_peers, use_cpu_time
from bench.streams import cancel_stream, mixed_stream, place_stream, stops_stream

Scenario = Callable[[int, int], tuple[list[Any], list[Any]]]

SCENARIOS: dict[str, Scenario] = {
    "place": lambda n, seed: ([], place_stream(n, seed)),
    "cancel": cancel_stream,
    "mixed": mixed_stream,
}


def best_of(runner: Runner, setup: list[Any], ops: list[Any], repeat: int) -> PeerResult:
    """The fastest of ``repeat`` runs; every run must give the same counts."""
    results = [runner(setup, ops) for _ in range(max(1, repeat))]
    counts = {(r.fills, r.filled_qty, r.cancel_noops) for r in results}
    if len(counts) != 1:
        raise RuntimeError(f"{results[0].name} is not deterministic: {sorted(counts)}")
    return min(results, key=lambda r: r.seconds)


def memory_per_order(orders: int) -> float:
    """Bytes of resident memory per resting order, measured in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", str(orders)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["engine_bytes_per_order"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="engine vs peers")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--orders", type=int, default=1_000_000, help="for the memory probe")
    parser.add_argument("--cpu", action="store_true", help="time by CPU time, not wall clock")
    args = parser.parse_args(argv)
    if args.cpu:
        use_cpu_time()

    runners: dict[str, Runner] = {"ours": run_ours, **available_peers()}
    for missing in sorted({"pyorderbook", "liquibook", "orderly-chaos"} - runners.keys()):
        print(f"{missing}: not installed (make bench installs requirements-bench.txt)")
    table: dict[str, dict[str, PeerResult]] = {name: {} for name in runners}
    agree = True
    for scenario, make in SCENARIOS.items():
        setup, ops = make(args.n, args.seed)
        for name, runner in runners.items():
            table[name][scenario] = best_of(runner, setup, ops, args.repeat)
        counts = {
            name: (row[scenario].fills, row[scenario].filled_qty) for name, row in table.items()
        }
        if len(set(counts.values())) != 1:
            agree = False
            print(f"fills disagree in {scenario}: {counts}")
        ref = table["ours"][scenario]
        print(f"{scenario}: {len(ops):,} ops after {len(setup):,} setup, {ref.fills:,} fills")

    print(f"\n| engine | {' | '.join(f'{s}/s' for s in SCENARIOS)} |")
    print("|---" * (len(SCENARIOS) + 1) + "|")
    for name, row in table.items():
        print(f"| {name} | {' | '.join(f'{row[s].ops_per_sec:,.0f}' for s in SCENARIOS)} |")

    bytes_per_order = memory_per_order(args.orders)
    print(f"\nmemory: {bytes_per_order:,.0f} bytes per resting order ({args.orders:,} orders)")
    figures: dict[str, Any] = {}
    for name, row in table.items():
        for scenario, result in row.items():
            key = name.replace("ours", "engine").replace("-", "_")
            figures[f"{key}_{scenario}_per_s"] = round(result.ops_per_sec)
    # Stop orders: our engine only (no peer has them).
    setup, ops = stops_stream(args.n, args.seed)
    stops = best_of(run_ours_stops, setup, ops, args.repeat)
    print(f"stops: {len(ops):,} ops, {stops.fills:,} fills, {stops.ops_per_sec:,.0f}/s (ours only)")
    figures["engine_stops_per_s"] = round(stops.ops_per_sec)
    ours, pyob = figures["engine_mixed_per_s"], figures.get("pyorderbook_mixed_per_s")
    liqui = figures.get("liquibook_mixed_per_s")
    figures.update(
        fills_agree=agree,
        engine_bytes_per_order=round(bytes_per_order),
        n=args.n,
        seed=args.seed,
        clock="cpu" if args.cpu else "wall",
        mixed_vs_pyorderbook=round(ours / pyob, 2) if pyob else None,
        mixed_vs_liquibook=round(ours / liqui, 2) if liqui else None,
    )
    print(json.dumps(figures))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
