"""Start, wait for and stop the local services the exchange runs against.

The command line; the services and the library (``Stack``, ``StackConfig``) are in
infra/services/ (a module per service), the tools they need in infra/tools.py, the process
toolkit in infra/processes.py.

CLI::

    python -m infra.local_stack up        # start everything, print `export` lines, wait for Ctrl-C
    python -m infra.local_stack install   # only install missing tools (redis-server, anvil)
"""

from __future__ import annotations

import argparse
import atexit
import logging
import shlex
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from infra.processes import LaunchError, tail
from infra.services import Stack, StackConfig
from infra.tools import ALL_SERVICES, ensure_tools, normalize_services

log = logging.getLogger("infra.local_stack")


class _Shutdown(BaseException):
    """Raised from the signal handler to unwind the CLI's foreground loop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _parse_services(value: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    try:
        return normalize_services(names)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local_stack", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start services, print env, stay in the foreground")
    install = sub.add_parser("install", help="install missing tools and exit")
    for p in (up, install):
        p.add_argument(
            "--services",
            type=_parse_services,
            default=list(ALL_SERVICES),
            help=f"comma-separated subset of: {','.join(ALL_SERVICES)}",
        )
    defaults = StackConfig()
    for name in ALL_SERVICES:
        up.add_argument(f"--{name}-port", type=int, default=defaults.port(name))
    up.add_argument("--host", default=defaults.host)
    up.add_argument("--project", default=defaults.project)
    up.add_argument("--state-dir", type=Path, help="data and logs (default: a temp dir)")
    up.add_argument("--keep-state", action="store_true", help="keep the temp state dir on exit")
    mining = up.add_mutually_exclusive_group()
    mining.add_argument(
        "--block-time", type=float, default=1.0, help="anvil seconds per block (default 1)"
    )
    mining.add_argument("--automine", action="store_true", help="anvil: one block per tx")
    mining.add_argument("--no-mining", action="store_true", help="anvil: mine only on evm_mine")
    up.add_argument("--pg-durable", action="store_true", help="keep postgres fsync on")
    up.add_argument("--no-install", action="store_true", help="do not install missing tools")
    up.add_argument("--env-file", type=Path, help="also write the export lines to this file")
    up.add_argument("--startup-timeout", type=float, default=defaults.startup_timeout)
    return parser


def _export_lines(env: Mapping[str, str]) -> str:
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def _cmd_install(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    binaries = ensure_tools(args.services)
    for name, path in binaries.items():
        log.info("%s: %s", name, path)
    log.info("tools ready in %.1fs", time.monotonic() - t0)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    config = StackConfig(
        host=args.host,
        project=args.project,
        state_dir=args.state_dir,
        keep_state=args.keep_state,
        block_time=None if (args.automine or args.no_mining) else args.block_time,
        no_mining=args.no_mining,
        pg_fast=not args.pg_durable,
        install=not args.no_install,
        startup_timeout=args.startup_timeout,
        **{f"{name}_port": getattr(args, f"{name}_port") for name in ALL_SERVICES},
    )
    stack = Stack(config, services=args.services)
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stopping:
            raise _Shutdown(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(stack.stop)
    exit_code = 0
    try:
        stack.start()
        exports = _export_lines(stack.env())
        sys.stdout.write(exports)
        sys.stdout.flush()
        if args.env_file is not None:
            args.env_file.write_text(exports)
        log.info("state dir: %s", stack.state_dir)
        log.info("local stack is up; Ctrl-C to stop")
        while True:
            time.sleep(0.5)
            dead = stack.dead_services()
            if dead:
                for name in dead:
                    log.error(
                        "%s exited unexpectedly. Last lines of %s:\n%s",
                        name,
                        stack.log_path(name),
                        tail(stack.log_path(name)),
                    )
                exit_code = 1
                break
    except _Shutdown as exc:
        log.info("received %s, stopping", signal.Signals(exc.signum).name)
        exit_code = 0 if exc.signum in (signal.SIGINT, signal.SIGTERM) else 128 + exc.signum
    except LaunchError as exc:
        log.error("%s", exc)
        exit_code = 1
    finally:
        stopping = True
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        log.info("stopped")
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="local_stack: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "install":
        try:
            return _cmd_install(args)
        except LaunchError as exc:
            log.error("%s", exc)
            return 1
    return _cmd_up(args)


if __name__ == "__main__":
    sys.exit(main())
