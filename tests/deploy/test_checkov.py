"""checkov (its own virtualenv, pinned in requirements-checkov.txt, run with --skip-download so
it never calls out) passes on terraform/ and on the Dockerfiles. Every check skipped, for the
whole deployment (terraform/.checkov.yaml) or at one resource (a ``checkov:skip`` comment), is
listed with its reason in docs/deploy.md."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.tools import REPO, TERRAFORM, clean_env, tf_files, tool_venv

CONFIG = TERRAFORM / ".checkov.yaml"
DOCKERFILES = [REPO / "matcher_service" / "Dockerfile", REPO / "ws_service" / "Dockerfile"]
INLINE = re.compile(r"checkov:skip=(CKV2?_[A-Z]+_\d+):(.+)")


def checkov() -> Path:
    venv = tool_venv("checkov", (REPO / "requirements-checkov.txt").read_text())
    return venv / "bin" / "checkov"


def run_checkov(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(checkov()), *args, "--skip-download", "--output", "json", "--quiet"],
        cwd=REPO,
        env=clean_env(BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def failures(reports: list[dict[str, Any]]) -> list[str]:
    return [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]


def skipped_everywhere() -> dict[str, str]:
    """Check id -> where it is skipped (the config, or file: reason)."""
    config = yaml.safe_load(CONFIG.read_text())["skip-check"]
    skips = dict.fromkeys(config, "terraform/.checkov.yaml")
    for path in [*tf_files(), *DOCKERFILES]:
        if path.is_file():
            for check, reason in INLINE.findall(path.read_text()):
                skips.setdefault(check, f"{path.relative_to(REPO)}: {reason}")
    return skips


@pytest.mark.tools
@pytest.mark.timeout(1200)
def test_checkov_passes_on_terraform() -> None:
    reports = run_checkov("--directory", "terraform", "--config-file", str(CONFIG))
    assert not failures(reports), "\n".join(failures(reports))
    summary = reports[0]["summary"]
    assert summary["passed"] > 100, summary
    assert summary["parsing_errors"] == 0, summary


@pytest.mark.tools
@pytest.mark.timeout(1200)
def test_checkov_passes_on_the_dockerfiles() -> None:
    present = [str(p.relative_to(REPO)) for p in DOCKERFILES if p.is_file()]
    args = [a for path in present for a in ("--file", path)]
    reports = run_checkov(*args, "--framework", "dockerfile")
    assert not failures(reports), "\n".join(failures(reports))
    assert reports[0]["summary"]["passed"] >= 10 * len(present)


def test_config_skips_have_reasons() -> None:
    """Each id in .checkov.yaml's skip-check is preceded by a comment saying why."""
    lines = CONFIG.read_text().splitlines()
    ids = yaml.safe_load(CONFIG.read_text())["skip-check"]
    assert ids, "nothing skipped?"
    for check in ids:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {check}")
        assert lines[index - 1].strip().startswith("#"), f"{check} has no reason above it"


def test_every_skipped_check_is_listed_in_the_deploy_docs() -> None:
    docs = (REPO / "docs" / "deploy.md").read_text()
    for check, where in skipped_everywhere().items():
        assert check in docs, f"{check} (skipped in {where}) is not in docs/deploy.md"
