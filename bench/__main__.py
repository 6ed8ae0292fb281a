"""``python -m bench`` (``make bench``): every benchmark in turn, each in its own process,
their output shown as it comes; the last line merges their JSON figures."""

from __future__ import annotations

import json
import subprocess
import sys

SUITES = ["bench.engine", "bench.pipeline", "bench.api", "bench.ws", "bench.cpu"]


def main() -> int:
    merged: dict[str, object] = {}
    status = 0
    for module in SUITES:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *sys.argv[1:]] if module == "bench.engine" else
            [sys.executable, "-m", module],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        last = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.strip():
                last = line
        status |= proc.wait()
        try:
            merged.update(json.loads(last))
        except json.JSONDecodeError:
            print(f"{module} printed no JSON figures", file=sys.stderr)
            status |= 1
    print(json.dumps(merged))
    return status


if __name__ == "__main__":
    sys.exit(main())
