"""Self-check of the peer adapters: run every available peer on each scenario, compare its
fills, filled_qty and no-op cancels with ``run_floor``, and print ops/s.

Usage: ``python -m bench.selfcheck [--n 200000] [--seed 1] [--peers floor,liquibook]``.
Exits 1 if any peer disagrees with the floor. Not a test: it takes a minute or two.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from bench.peers import PEERS, PeerResult, Runner, available_peers
from bench.streams import cancel_stream, mixed_stream, place_stream

Scenario = Callable[[int, int], tuple[list[Any], list[Any]]]

SCENARIOS: dict[str, Scenario] = {
    "place": lambda n, seed: ([], place_stream(n, seed)),
    "cancel": cancel_stream,
    "mixed": mixed_stream,
}


def _best(runner: Runner, setup: list[Any], ops: list[Any], repeat: int) -> PeerResult:
    """The fastest of ``repeat`` runs (all runs of one peer must give the same counts)."""
    results = [runner(setup, ops) for _ in range(max(1, repeat))]
    counts = {(r.fills, r.filled_qty, r.cancel_noops) for r in results}
    if len(counts) != 1:
        raise RuntimeError(f"{results[0].name} is not deterministic: {sorted(counts)}")
    return min(results, key=lambda r: r.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peer names")
    parser.add_argument("--repeat", type=int, default=1, help="runs per peer; the fastest is kept")
    args = parser.parse_args(argv)

    found = available_peers()
    wanted = [name for name in args.peers.split(",") if name]
    for name in wanted:
        if name not in found:
            print(f"{name}: not installed", file=sys.stderr)
    runners = {name: found[name] for name in wanted if name in found}
    runners.setdefault("floor", found["floor"])

    ok = True
    table: dict[str, dict[str, PeerResult]] = {name: {} for name in runners}
    for scenario, make in SCENARIOS.items():
        setup, ops = make(args.n, args.seed)
        reference = _best(runners["floor"], setup, ops, args.repeat)
        table["floor"][scenario] = reference
        for name, runner in runners.items():
            if name == "floor":
                continue
            result = _best(runner, setup, ops, args.repeat)
            table[name][scenario] = result
            got = (result.fills, result.filled_qty, result.cancel_noops)
            want = (reference.fills, reference.filled_qty, reference.cancel_noops)
            if got != want:
                ok = False
                print(f"MISMATCH {name}/{scenario}: (fills, qty, noops) {got} != floor {want}")
        print(
            f"{scenario}: n={len(ops)} setup={len(setup)} fills={reference.fills} "
            f"filled_qty={reference.filled_qty} cancel_noops={reference.cancel_noops}",
            file=sys.stderr,
        )

    header = f"| peer | {' | '.join(f'{s} ops/s' for s in SCENARIOS)} |"
    print(header)
    print("|---" * (len(SCENARIOS) + 1) + "|")
    for name, row in table.items():
        cells = " | ".join(f"{row[s].ops_per_sec:,.0f}" for s in SCENARIOS)
        print(f"| {name} | {cells} |")
    print("fills agree with floor" if ok else "FILLS DISAGREE WITH FLOOR")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
