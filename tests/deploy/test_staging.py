"""infra/stage_functions.py: one folder and one deterministic, content-named zip per function
(its folder, the project's packages it imports and its requirements.txt), and a manifest
Terraform reads. The staged functions are imported the way Cloud Functions imports them:
functions-framework's ``create_app(target=NAME, source="main.py")`` in a clean virtualenv made
from that function's own requirements.txt alone, with the staged folder as the working
directory and nothing of the repository on the path: a function that imports what its
requirements do not bring in fails here, not at its first cold start."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import stage_functions as sf
from tests.deploy.tools import (
    REPO,
    TOOLS,
    clean_env,
    function_folders,
    pinned_requirements,
    tool_venv,
)

# The environment a deployed function gets (terraform/environments/prod/main.tf), with
# stand-in values: importing must not need any service.
DEPLOYED_ENV = {
    "GOOGLE_CLOUD_PROJECT": "staging-test",
    "AUTH_KEYS_SECRET": "projects/staging-test/secrets/exchange-prod-auth-keys/versions/latest",
    "CURSOR_KEY_SECRET": "projects/staging-test/secrets/exchange-prod-cursor-key/versions/latest",
    "JWT_ISSUER": "https://api.example.com",
    "JWT_AUDIENCE": "exchange-api",
    "API_CORS_ORIGINS": "",
    "API_TRUSTED_PROXY_HOPS": "2",
    "REDIS_URL": "redis://:auth@10.0.0.3:6379/0",
    "CLOUD_SQL_INSTANCE": "staging-test:us-central1:exchange-prod-pg-0000",
    "PGUSER": "exchange",
    "PGPASSWORD": "stand-in",
    "PGDATABASE": "exchange",
    "COMMANDS_TOPIC": "commands",
    "COMMANDS_SUBSCRIPTION": "commands-matcher",
    "EVENTS_TOPIC": "events",
    "DEAD_LETTER_TOPIC": "commands-dead-letter",
    "MAX_DELIVERY_ATTEMPTS": "10",
    "ETH_RPC_URL": "https://rpc.invalid",
    "CHAIN_ID": "1",
    "HOT_WALLET_ADDRESS": "0x" + "11" * 20,
    "WALLET_MNEMONIC_SECRET": "projects/staging-test/secrets/m/versions/latest",
    "HOT_WALLET_KEY_SECRET": "projects/staging-test/secrets/h/versions/latest",
    "GAS_WALLET_KEY_SECRET": "projects/staging-test/secrets/g/versions/latest",
}

# Runs inside the clean virtualenv, in the staged folder: load the function as the runtime
# does and report where main.py and shared/ were loaded from.
PROBE = r"""
import json, sys
from pathlib import Path
from functions_framework import create_app
app = create_app(target=sys.argv[1], source="main.py")
here = Path.cwd().resolve()
local = sorted(
    str(Path(m.__file__).resolve().relative_to(here))
    for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and Path(m.__file__).resolve().is_relative_to(here)
)
print(json.dumps({"local": local, "shared": sys.modules["shared"].__file__}))
"""


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("functions")
    sf.stage(out)
    yield out


def manifest(out: Path) -> dict[str, dict[str, object]]:
    data = json.loads((out / "manifest.json").read_text())
    assert data["runtime"] == sf.RUNTIME
    functions: dict[str, dict[str, object]] = data["functions"]
    return functions


def test_every_function_is_staged(staged: Path) -> None:
    functions = manifest(staged)
    assert sorted(functions) == function_folders()
    for name, entry in functions.items():
        folder = staged / name
        assert (folder / "main.py").is_file()
        assert (folder / "requirements.txt").read_bytes() == (
            REPO / "functions" / name / "requirements.txt"
        ).read_bytes()
        assert (folder / "shared" / "__init__.py").is_file()
        assert entry["entry_point"] == name
        zip_name = str(entry["zip"])
        assert zip_name == f"{name}-{str(entry['sha256'])[: sf.HASH_CHARS]}.zip"
        assert entry["object"] == f"functions/{zip_name}"
        with zipfile.ZipFile(staged / zip_name) as zf:
            names = zf.namelist()
            assert names == sorted(names) == entry["files"]
            for arcname in names:
                assert zf.read(arcname) == (folder / arcname).read_bytes(), arcname
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_staging_is_deterministic(staged: Path, tmp_path: Path) -> None:
    again = sf.stage(tmp_path)
    first = manifest(staged)
    for s in again:
        assert s.sha256 == first[s.name]["sha256"], f"{s.name}: same content, other zip"


def fake_repo(root: Path) -> Path:
    (root / "functions" / "alpha").mkdir(parents=True)
    (root / "functions" / "alpha" / "main.py").write_text(
        "from shared import util\n\ndef alpha(request):\n    return 'a'\n"
    )
    (root / "functions" / "alpha" / "requirements.txt").write_text("flask==3.1.3\n")
    (root / "functions" / "beta").mkdir()
    (root / "functions" / "beta" / "main.py").write_text(
        "import shared\n\ndef beta(request):\n    return 'b'\n"
    )
    (root / "functions" / "beta" / "requirements.txt").write_text("flask==3.1.3\n")
    (root / "functions" / "not_a_function").mkdir()
    (root / "shared").mkdir()
    (root / "shared" / "__init__.py").write_text("")
    (root / "shared" / "util.py").write_text("from wallet import keys\n")
    (root / "wallet").mkdir()
    (root / "wallet" / "__init__.py").write_text("")
    (root / "wallet" / "keys.py").write_text("")
    (root / "infra").mkdir()
    (root / "infra" / "__init__.py").write_text("")
    (root / "shared" / "__pycache__").mkdir()
    (root / "shared" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    return root


def test_a_change_gets_a_new_object_name_and_only_there(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    out = tmp_path / "out"
    first = {s.name: s for s in sf.stage(out, repo=repo)}
    assert sorted(first) == ["alpha", "beta"], "folders without main.py are not functions"
    (repo / "functions" / "alpha" / "main.py").write_text(
        "import shared\n\ndef alpha(r):\n    pass\n"
    )
    second = {s.name: s for s in sf.stage(out, repo=repo)}
    assert second["alpha"].object_name != first["alpha"].object_name
    assert second["beta"].object_name == first["beta"].object_name
    assert sorted(p.name for p in out.glob("alpha-*.zip")) == [second["alpha"].zip_path.name]
    (repo / "shared" / "util.py").write_text("X = 1\n")
    third = {s.name: s for s in sf.stage(out, repo=repo)}
    assert third["beta"].object_name != second["beta"].object_name, "shared/ is in both zips"
    assert "shared/util.py" in third["alpha"].files
    assert not any("__pycache__" in f for f in third["alpha"].files)


def test_a_function_gets_only_the_packages_it_imports(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    assert sf.packages_of("alpha", repo) == ["shared", "wallet"], "through shared/util.py"
    (repo / "shared" / "util.py").write_text("X = 1\n")
    assert sf.packages_of("alpha", repo) == ["shared"]
    staged = {s.name: s for s in sf.stage(tmp_path / "out", repo=repo)}
    assert not any(f.startswith("wallet/") for f in staged["beta"].files)
    (repo / "functions" / "beta" / "main.py").write_text("from infra import x\n")
    with pytest.raises(sf.StageError, match="imports infra"):
        sf.stage(tmp_path / "out", repo=repo)


def test_the_functions_packages() -> None:
    for name in function_folders():
        packages = sf.packages_of(name)
        assert "shared" in packages, name
        assert ("wallet" in packages) == (
            name in {"wallet", "watcher", "sweep", "sender", "reserves", "admin"}
        ), name


def test_a_function_without_requirements_is_refused(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    (repo / "functions" / "beta" / "requirements.txt").unlink()
    with pytest.raises(sf.StageError, match=r"requirements\.txt"):
        sf.stage(tmp_path / "out", repo=repo)
    with pytest.raises(sf.StageError, match="no such function"):
        sf.stage(tmp_path / "out", only=["gamma"], repo=repo)


def test_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        ["python3", "-m", "infra.stage_functions", "--out", str(tmp_path), "--only", "docs"],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "docs" in result.stdout
    assert list(json.loads((tmp_path / "manifest.json").read_text())["functions"]) == ["docs"]


def test_function_requirements_are_pinned_like_the_root() -> None:
    root = pinned_requirements(REPO / "requirements.txt")
    for name in function_folders():
        pins = pinned_requirements(REPO / "functions" / name / "requirements.txt")
        assert "functions-framework" in pins, name
        for package, version in pins.items():
            assert root.get(package) == version, f"functions/{name}: {package}=={version}"


def requirements_of(name: str) -> str:
    """A function's requirements as pins only (comments dropped): the venv's key."""
    pins = pinned_requirements(REPO / "functions" / name / "requirements.txt")
    return "".join(f"{p}=={v}\n" for p, v in sorted(pins.items()))


def function_venv(requirements: str) -> Path:
    """A clean virtualenv with exactly these requirements, shared by the functions that have
    the same ones (.tools/fn-<hash>-<hash>)."""
    key = hashlib.sha256(requirements.encode()).hexdigest()[:8]
    return tool_venv(f"fn-{key}", requirements)


@pytest.mark.tools
@pytest.mark.timeout(1800)
def test_every_staged_function_imports_in_a_clean_virtualenv(staged: Path, tmp_path: Path) -> None:
    """Each function with a virtualenv of its own requirements.txt alone, cwd = its staged
    folder, no PYTHONPATH, no user site: what Cloud Functions' Python runtime does."""
    home = tmp_path / "home"
    home.mkdir()
    venvs: dict[str, Path] = {}
    problems = []
    for name in sorted(manifest(staged)):
        requirements = requirements_of(name)
        if requirements not in venvs:
            venvs[requirements] = function_venv(requirements)
        python = venvs[requirements] / "bin" / "python"
        folder = tmp_path / name
        shutil.copytree(staged / name, folder)  # nothing but the upload
        result = subprocess.run(
            [str(python), "-E", "-s", "-c", PROBE, name],
            cwd=folder,
            env=clean_env(HOME=str(home), **DEPLOYED_ENV),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            problems.append(f"{name}: import failed:\n{result.stderr[-3000:]}")
            continue
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert Path(report["shared"]).resolve().is_relative_to(folder.resolve()), report["shared"]
        assert "main.py" in report["local"], f"{name}: main.py was not loaded from the upload"
    # Virtualenvs of requirements no function has any more go.
    wanted = {v.name for v in venvs.values()} | {
        v.name.rsplit("-", 1)[0] + ".lock" for v in venvs.values()
    }
    for stale in TOOLS.glob("fn-*"):
        if stale.name not in wanted:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
    assert not problems, "\n".join(problems)
