"""``python -m matcher_service``: run the matcher (config from the environment)."""

from __future__ import annotations

import sys

from matcher_service.health import serve
from matcher_service.service import Matcher, install_signal_handlers
from shared import heap, logs
from shared.config import ConfigError, MatcherConfig


def main() -> int:
    logs.setup()
    try:
        cfg = MatcherConfig.load()
    except ConfigError as exc:
        print(f"matcher: {exc}", file=sys.stderr)
        return 2
    matcher = Matcher(cfg)
    heap.freeze_startup_heap("matcher")  # its modules and clients; not in tests' processes
    install_signal_handlers(matcher)
    server = serve(cfg.port, matcher.ready, cfg.host)
    try:
        matcher.run()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
