"""Where the matcher's health server listens: loopback by default and under ``make run``,
every interface in the container image (Cloud Run probes it from outside the container)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import matcher_service.__main__ as matcher_main
from infra.run import Exchange, RunConfig
from infra.services import StackConfig
from matcher_service.health import serve
from shared.config import MatcherConfig
from tests.deploy.test_dockerfiles import instructions
from tests.deploy.tools import REPO


def test_the_health_server_binds_loopback_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MATCHER_HOST", raising=False)
    assert MatcherConfig.load().host == "127.0.0.1"
    monkeypatch.setenv("MATCHER_HOST", "0.0.0.0")
    assert MatcherConfig.load().host == "0.0.0.0"


def test_the_matcher_serves_health_on_its_configured_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MATCHER_HOST", raising=False)
    monkeypatch.setenv("PORT", "0")
    served: list[tuple[Any, ...]] = []

    class FakeMatcher:
        def __init__(self, cfg: MatcherConfig) -> None:
            self.ready = threading.Event()

        def run(self) -> None:
            pass

    class FakeServer:
        def shutdown(self) -> None:
            pass

    def fake_serve(*args: Any) -> FakeServer:
        served.append(args)
        return FakeServer()

    monkeypatch.setattr(matcher_main, "Matcher", FakeMatcher)
    monkeypatch.setattr(matcher_main, "install_signal_handlers", lambda m: None)
    monkeypatch.setattr(matcher_main, "serve", fake_serve)
    assert matcher_main.main() == 0
    (args,) = served
    assert args[2:] == ("127.0.0.1",), args


def test_serve_listens_on_the_host_given() -> None:
    server = serve(0, threading.Event(), "127.0.0.1")
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_make_run_gives_the_matcher_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATCHER_HOST", "0.0.0.0")  # whatever the developer's shell says
    cfg = RunConfig(
        state_dir=tmp_path,
        stack=StackConfig(state_dir=tmp_path / "stack"),
        api_port=18080,
        matcher_port=18090,
        admin_email="admin@local.test",
    )
    env = Exchange(cfg)._child_env()
    assert env["MATCHER_HOST"] == "127.0.0.1"
    monkeypatch.setenv("MATCHER_HOST", env["MATCHER_HOST"])
    assert MatcherConfig.load().host == "127.0.0.1"


def test_the_image_binds_every_interface() -> None:
    env = " ".join(
        args for word, args in instructions(REPO / "matcher_service/Dockerfile") if word == "ENV"
    )
    assert "MATCHER_HOST=0.0.0.0" in env.split()
