"""The Dockerfiles of the matcher and the ws service (no Docker engine here, so no build): a
base pinned to an exact release or a digest, a non-root user, a health check, an exec-form
command that runs a package that exists, and COPY sources that exist in the repository and
are not left out of the build context by .dockerignore."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest

from tests.deploy.tools import REPO

IMAGES = {"matcher": "matcher_service", "ws": "ws_service"}
PINNED = re.compile(
    r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?|[\w./-]+@sha256:[0-9a-f]{64}"
)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    out = []
    for line in joined:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; ``!`` re-includes."""
    result = False
    parts = rel.strip("/").split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "*/"))
            for p in prefixes
        ):
            result = not negate
    return result


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.strip().startswith("#")]


def dockerfile(image: str) -> Path:
    package = IMAGES[image]
    if not (REPO / package / "__main__.py").is_file():
        pytest.skip(f"{package}/ is not written yet")
    return REPO / package / "Dockerfile"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_base_is_pinned(image: str) -> None:
    bases = [args.split()[0] for word, args in instructions(dockerfile(image)) if word == "FROM"]
    assert bases
    for base in bases:
        assert PINNED.fullmatch(base), f"{base}: pin an exact release (x.y.z) or a digest"
        assert not base.endswith(":latest")


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_runs_as_non_root_with_a_health_check(image: str) -> None:
    steps = instructions(dockerfile(image))
    users = [args for word, args in steps if word == "USER"]
    assert users, "no USER"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    words = [word for word, _ in steps]
    assert "HEALTHCHECK" in words
    healthcheck = next(args for word, args in steps if word == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert words.index("USER") < words.index("CMD")


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_command_runs_the_package(image: str) -> None:
    steps = instructions(dockerfile(image))
    cmd = json.loads(next(args for word, args in reversed(steps) if word == "CMD"))
    assert cmd == ["python", "-m", IMAGES[image]], "exec form, the package's __main__"
    assert (REPO / IMAGES[image] / "__main__.py").is_file()


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_copied_files_exist_and_are_in_the_context(image: str) -> None:
    patterns = dockerignore()
    for word, args in instructions(dockerfile(image)):
        if word != "COPY" or "--from=" in args:
            continue
        *sources, _dest = shlex.split(args)
        for source in sources:
            path = REPO / source
            assert path.exists(), f"COPY {source}: not in the repository"
            assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
            if path.is_dir():
                files = [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
                rel = [str(p.relative_to(REPO)) for p in files]
                assert rel and not any(
                    ignored(r, patterns) for r in rel if not r.endswith(".pyc")
                ), source


def test_the_migration_job_image_carries_the_migrations() -> None:
    copied = " ".join(
        args
        for word, args in instructions(REPO / "matcher_service" / "Dockerfile")
        if word == "COPY"
    )
    for needed in ("migrations/", "shared/"):
        assert needed in copied, needed
    assert ignored(".venv/bin/python", dockerignore())
    assert ignored(".state/x", dockerignore())
    assert not ignored("shared/config.py", dockerignore())
