"""The wallet's scheduled jobs never put the RPC URL's key, or any other secret, in a log line
or an answer: a node provider's URL carries its API key, and web3's and requests' exceptions
quote the URL (an HTTP error) or its path alone (a connection error)."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from functions_framework import create_app

from infra import scheduler
from infra.ports import free_port
from shared import logs
from wallet import jobs

FAKE_KEY = "fake0provider0key0c0ffee0123456789abcdef"
"""What a provider puts in the path: https://mainnet.example/v3/<key>."""
REPO = Path(__file__).resolve().parents[2]


class Refuses(BaseHTTPRequestHandler):
    """A provider refusing the key: 401 to everything."""

    def do_POST(self) -> None:
        body = b'{"error": "invalid project id"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v3/{FAKE_KEY}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_node() -> str:
    return f"http://127.0.0.1:{free_port()}/v3/{FAKE_KEY}"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Every log line, as the JSON formatter writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


def wallet_env(monkeypatch: pytest.MonkeyPatch, rpc_url: str) -> None:
    for prefix in ("WALLET_MNEMONIC", "HOT_WALLET_KEY", "GAS_WALLET_KEY"):
        for suffix in ("_FILE", "_SECRET"):
            monkeypatch.delenv(prefix + suffix, raising=False)
    monkeypatch.setenv("ETH_RPC_URL", rpc_url)
    monkeypatch.setenv("CHAIN_ID", "31337")
    monkeypatch.setenv("HOT_WALLET_ADDRESS", "0x" + "11" * 20)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "jobs-test")
    jobs.runtime.reset()


JOB_NAMES = {"reserves": "chain-audit"}
"""The name a function's runs are logged under, where it is not the function's."""


@pytest.mark.parametrize("job", ["watcher", "sweep", "sender", "reserves"])
@pytest.mark.parametrize("node", ["refusing_node", "no_node"])
def test_a_failing_run_logs_and_answers_without_the_rpc_key(
    job: str,
    node: str,
    request: pytest.FixtureRequest,
    captured: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rpc_url: str = request.getfixturevalue(node)
    wallet_env(monkeypatch, rpc_url)
    # As Cloud Functions serves it: functions-framework, the function's main.py.
    app = create_app(target=job, source=str(REPO / "functions" / job / "main.py"))  # type: ignore[no-untyped-call]
    app.testing = False  # an exception is logged and answered, as in production
    resp = app.test_client().post("/")
    lines = captured.getvalue()
    assert FAKE_KEY not in lines, lines
    assert resp.status_code == 500
    assert FAKE_KEY not in resp.get_data(as_text=True)
    assert f"{JOB_NAMES.get(job, job)} run failed" in lines, lines
    assert "[redacted]" in lines, lines  # the error was logged, the key replaced
    jobs.runtime.reset()


def test_the_local_scheduler_logs_without_the_rpc_key(
    no_node: str, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet_env(monkeypatch, no_node)
    assert scheduler.tick() == ["watcher", "sweep", "sender"]
    lines = captured.getvalue()
    assert FAKE_KEY not in lines, lines
    assert lines.count("run failed") == 3, lines
    jobs.runtime.reset()


def test_the_forms_a_url_takes_in_error_messages_are_redacted() -> None:
    url = f"https://user0001:pass0001word@mainnet.example.io/v3/{FAKE_KEY}?apikey=q0u1e2r3y4"
    logs.hide_url(url)
    for text in (
        f"401 Client Error: Unauthorized for url: {url}",
        f"Max retries exceeded with url: /v3/{FAKE_KEY} (Caused by ...)",
        f"key {FAKE_KEY} refused",
        "credentials pass0001word and query q0u1e2r3y4",
    ):
        redacted = logs.redact(text)
        for secret in (FAKE_KEY, "pass0001word", "q0u1e2r3y4"):
            assert secret not in redacted, (text, redacted)
    assert logs.redact("mainnet.example.io /v3") == "mainnet.example.io /v3"  # not secrets


def test_a_secret_read_from_the_environment_is_never_logged(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.config import SecretSource

    key = "0x" + "ab" * 32
    monkeypatch.setenv("HOT_WALLET_KEY", key)
    assert SecretSource.load("HOT_WALLET_KEY").read() == key
    logging.getLogger("test").error("oops %s", key, extra={"detail": {"k": [key]}})
    lines = captured.getvalue()
    assert key not in lines and lines.count(logs.REDACTED) == 2, lines


def test_a_secret_is_redacted_whatever_json_escapes_in_it(captured: io.StringIO) -> None:
    """A line is scrubbed when a secret shows in it in its JSON-escaped form, in the message,
    a field's key or a nested value; a line without one is written as it is."""
    secret = 'q"uo\\te\nd é\x01-secret'
    logs.hide(secret)
    log = logging.getLogger("test.escaped")
    log.warning("plain line", extra={"detail": {"list": ["nothing hidden"]}})
    log.warning("got %s", secret, extra={"detail": {"list": [f"<{secret}>"], secret: 1}})
    plain, scrubbed = captured.getvalue().splitlines()[-2:]
    assert orjson.loads(plain)["detail"] == {"list": ["nothing hidden"]}
    entry = orjson.loads(scrubbed)
    assert secret not in scrubbed and secret not in str(entry)
    assert entry["message"] == "got [redacted]"
    assert entry["detail"] == {"list": ["<[redacted]>"], "[redacted]": 1}
