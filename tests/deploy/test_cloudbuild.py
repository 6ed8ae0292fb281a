"""cloudbuild.yaml parses, runs the stages in the promised order, names only files, folders,
images and Terraform variables that exist, keeps bash's own variables away from Cloud Build's
substitutions, and holds no secret. The smoke test it ends with runs here against a local
stand-in of the API."""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.tools import ENV_ROOT, REPO, load_dir, locals_of, named_blocks

BUILD = REPO / "cloudbuild.yaml"
BUILTINS = {
    "PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "COMMIT_SHA", "SHORT_SHA",
    "REVISION_ID", "BRANCH_NAME", "TAG_NAME", "REPO_NAME", "REPO_FULL_NAME", "TRIGGER_NAME",
    "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT",
}  # fmt: skip
# (earlier, later): lint and unit tests, integration tests, then staging and the images (in
# parallel), terraform, the migrations, the smoke test.
ORDER = [
    ("lint-and-unit-tests", "integration-tests"),
    ("integration-tests", "stage-functions"),
    ("integration-tests", "build-matcher"),
    ("integration-tests", "build-ws"),
    ("stage-functions", "terraform-plan"),
    ("build-matcher", "terraform-plan"),
    ("build-ws", "terraform-plan"),
    ("terraform-init", "terraform-plan"),
    ("terraform-plan", "terraform-apply"),
    ("terraform-apply", "migrate"),
    ("migrate", "smoke-test"),
    ("integration-tests", "build-web"),
    ("build-web", "upload-web"),
    ("terraform-apply", "upload-web"),
    ("upload-web", "smoke-test"),
]


@cache
def build() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(BUILD.read_text())
    return doc


def steps() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = build()["steps"]
    return found


def substitute(text: str) -> str:
    subs = build()["substitutions"]
    for _ in range(3):
        text = re.sub(r"\$\{(_[A-Z0-9_]+)\}", lambda m: str(subs[m.group(1)]), text)
    return text


def step_text(step: dict[str, Any]) -> str:
    return "\n".join(str(a) for a in step.get("args", []))


def test_parses_with_unique_ids_and_known_dependencies() -> None:
    ids = [s["id"] for s in steps()]
    assert len(ids) == len(set(ids))
    for step in steps():
        for dep in step.get("waitFor", []):
            assert dep in ids[: ids.index(step["id"])], f"{step['id']} waits for {dep}"
    assert build()["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def depends_on(step_id: str) -> set[str]:
    """Every step that must finish before ``step_id`` (waitFor, or all earlier steps)."""
    ids = [s["id"] for s in steps()]
    by_id = {s["id"]: s for s in steps()}
    direct = by_id[step_id].get("waitFor", ids[: ids.index(step_id)])
    closure: set[str] = set()
    for dep in direct:
        if dep != "-":
            closure |= {dep} | depends_on(dep)
    return closure


def test_stages_run_in_order() -> None:
    for earlier, later in ORDER:
        assert earlier in depends_on(later), f"{later} does not wait for {earlier}"


def test_every_substitution_is_defined() -> None:
    text = BUILD.read_text()
    defined = set(build()["substitutions"]) | BUILTINS
    for name in re.findall(r"(?<!\$)\$\{([A-Za-z0-9_]+)\}", text):
        assert name in defined, f"${{{name}}} is not a substitution"
    for name in re.findall(r"(?<![$\w])\$([A-Za-z_][A-Za-z0-9_]*)", text):
        assert name in defined, f"${name}: write $${name} for a shell variable"


def test_images_are_pinned() -> None:
    for step in steps():
        image = substitute(step["name"])
        if image.startswith("gcr.io/cloud-builders/"):
            continue  # Google's builders, kept current by Google
        assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:", image), f"{step['id']}: {image}"


def test_files_and_folders_named_exist() -> None:
    for step in steps():
        if "dir" in step:
            directory = substitute(step["dir"])
            assert (REPO / directory).is_dir(), directory
            if "terraform" in step["name"]:
                assert list((REPO / directory).glob("*.tf"))
        text = step_text(step)
        for dockerfile in re.findall(r"-f (\S+Dockerfile)", text):
            assert (REPO / dockerfile).is_file(), dockerfile
        for module in re.findall(r"-m ([a-z_]+\.[a-z_.]+)", text):
            assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
        for script in re.findall(r"\b(terraform/scripts/\S+\.py)", text):
            assert (REPO / script).is_file(), script
    assert "make lint" in step_text(next(s for s in steps() if s["id"] == "lint-and-unit-tests"))
    assert re.search(r"^lint:", (REPO / "Makefile").read_text(), re.MULTILINE)
    module_args = next(s for s in steps() if s["id"] == "stage-functions")["args"]
    assert module_args[:2] == ["-m", "infra.stage_functions"]
    assert (REPO / "infra" / "stage_functions.py").is_file()


def test_pushed_images_are_the_ones_terraform_deploys() -> None:
    pushed = {
        m.group(1)
        for s in steps()
        for m in re.finditer(r"/\$\{_ARTIFACT_REPO\}/([a-z]+):\$\{_IMAGE_TAG\}", step_text(s))
    }
    images = locals_of(load_dir(ENV_ROOT))["images"]
    deployed = {re.search(r"/([a-z]+):\$\{var\.image_tag\}", v).group(1) for v in images.values()}  # type: ignore[union-attr]
    assert pushed == deployed == {"matcher", "ws"}
    variables = named_blocks(load_dir(ENV_ROOT), "variable")
    assert build()["substitutions"]["_ARTIFACT_REPO"] == variables["artifact_repository"]["default"]
    for step in steps():
        if "docker build" in step_text(step):
            assert "docker push" in step_text(step), "pushed before terraform deploys it"


def test_terraform_gets_every_variable_it_needs() -> None:
    plan = next(s for s in steps() if s["id"] == "terraform-plan")
    passed = {
        a.removeprefix("-var=").split("=", 1)[0] for a in plan["args"] if a.startswith("-var=")
    }
    variables = named_blocks(load_dir(ENV_ROOT), "variable")
    assert passed <= set(variables)
    example = (ENV_ROOT / "terraform.tfvars.example").read_text()
    for name, body in variables.items():
        if "default" not in body:
            assert name in passed or re.search(rf"^{name}\s*=", example, re.MULTILINE), name
    init = next(s for s in steps() if s["id"] == "terraform-init")
    assert any("backend-config=bucket=${_TF_STATE_BUCKET}" in a for a in init["args"])


def test_no_secrets_in_the_file() -> None:
    text = BUILD.read_text()
    assert "secretEnv" not in text and "availableSecrets" not in text
    for pattern in (
        r"-----BEGIN",
        r"AIza[0-9A-Za-z_-]{20}",
        r"(?i)password\s*[:=]",
        r"0x[0-9a-f]{64}",
    ):
        assert not re.search(pattern, text), pattern


# ------------------------------------------------------------------------------- smoke test


def smoke_module() -> ModuleType:
    path = REPO / "terraform" / "scripts" / "smoke_test.py"
    spec = importlib.util.spec_from_file_location("smoke_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeApi(BaseHTTPRequestHandler):
    """Answers as the deployed API does (or, with ``broken``, lets anyone see balances)."""

    broken = False

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str) -> None:
        self._json(status, {"error": {"code": code, "message": code}})

    def do_GET(self) -> None:
        if self.path == "/v1/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
        elif self.path == "/v1/time":
            self._json(200, {"server_time": 1_700_000_000_000})
        elif self.path == "/api/v3/ping":
            self._json(200, {})
        elif self.path == "/v1/openapi.json":
            self._json(200, {"openapi": "3.1.0", "paths": {"/v1/time": {}}})
        elif self.path == "/v1/markets":
            self._json(200, {"markets": []})
        elif self.path == "/v1/balances" and self.broken:
            self._json(200, {})
        elif self.path in ("/v1/balances", "/v1/auth/me", "/v1/admin/audit", "/v1/deposits"):
            self._error(401, "unauthorized")
        else:
            self._error(404, "not_found")

    def do_POST(self) -> None:
        self._error(401 if self.path == "/v1/orders" else 404, "unauthorized")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[tuple[str, type[FakeApi]]]:
    handler = type("Handler", (FakeApi,), {"broken": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_smoke_test_passes_against_a_working_api(
    fake_api: tuple[str, type[FakeApi]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = fake_api
    outputs = tmp_path / "outputs.json"
    ws = url.replace("http://", "ws://") + "/v1/ws"
    outputs.write_text(json.dumps({"api_url": {"value": url}, "ws_url": {"value": ws}}))
    assert smoke_module().main(["--outputs", str(outputs), "--wait", "5"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "101 Switching Protocols" in out


def test_smoke_test_fails_when_a_route_misbehaves(
    fake_api: tuple[str, type[FakeApi]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, handler = fake_api
    handler.broken = True
    assert smoke_module().main(["--api", url]) == 1
    assert "FAIL  GET /v1/balances without a token" in capsys.readouterr().out


def test_smoke_test_gives_up_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    module = smoke_module()
    with pytest.raises(module.SmokeError, match="not up"):
        module.wait_until_up("http://127.0.0.1:9", wait_s=0, every_s=0)
